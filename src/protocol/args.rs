//! The single place where JSON arguments become typed handler arguments and typed
//! results become JSON, with serde's messages reworded the way qemu-ga words them.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::ctx::Ctx;
use crate::error::Error;

/// Runs a read-only handler on JSON arguments.
pub fn call<A, R>(
    ctx: &mut Ctx,
    args: Value,
    f: fn(&Ctx, A) -> Result<R, Error>,
) -> Result<Value, Error>
where
    A: DeserializeOwned,
    R: Serialize,
{
    invoke(args, |a| f(ctx, a))
}

/// Runs a handler that changes agent state on JSON arguments.
pub fn call_mut<A, R>(
    ctx: &mut Ctx,
    args: Value,
    f: fn(&mut Ctx, A) -> Result<R, Error>,
) -> Result<Value, Error>
where
    A: DeserializeOwned,
    R: Serialize,
{
    invoke(args, |a| f(ctx, a))
}

fn invoke<A, R>(args: Value, run: impl FnOnce(A) -> Result<R, Error>) -> Result<Value, Error>
where
    A: DeserializeOwned,
    R: Serialize,
{
    let result = run(parse_args::<A>(args)?)?;
    serde_json::to_value(result).map_err(|e| Error::Failed(format!("cannot encode reply: {e}")))
}

/// Deserializes `args` (a JSON object) into `A`, mapping errors to qemu-ga's wording.
pub fn parse_args<A: DeserializeOwned>(args: Value) -> Result<A, Error> {
    match serde_json::from_value::<A>(args.clone()) {
        Ok(a) => Ok(a),
        Err(e) => Err(Error::Args(reword::<A>(&e.to_string(), &args))),
    }
}

fn reword<A: DeserializeOwned>(msg: &str, args: &Value) -> String {
    if let Some(name) = quoted_after(msg, "missing field `") {
        return format!("Parameter '{name}' is missing");
    }
    if let Some(name) = quoted_after(msg, "unknown field `") {
        return format!("Parameter '{name}' is unexpected");
    }
    let field = culprit::<A>(args).unwrap_or_else(|| "arguments".to_string());
    if let Some(value) = quoted_after(msg, "unknown variant `") {
        return format!("Parameter '{field}' does not accept value '{value}'");
    }
    let expected = msg
        .rsplit_once("expected ")
        .map(|(_, e)| e)
        .unwrap_or("valid value");
    format!(
        "Invalid parameter type for '{field}', expected: {}",
        qapi_type(expected)
    )
}

/// The backtick-quoted word following `prefix` in a serde message.
fn quoted_after(msg: &str, prefix: &str) -> Option<String> {
    let start = msg.find(prefix)? + prefix.len();
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// serde's messages do not name the member with the bad type; find it by deserializing
/// each member alone (serde reports a type error before any missing-field error).
fn culprit<A: DeserializeOwned>(args: &Value) -> Option<String> {
    let obj = args.as_object()?;
    obj.iter().find_map(|(k, v)| {
        let mut one = Map::new();
        one.insert(k.clone(), v.clone());
        let err = serde_json::from_value::<A>(Value::Object(one)).err()?;
        let msg = err.to_string();
        let is_type_error = msg.starts_with("invalid type")
            || msg.starts_with("invalid value")
            || msg.starts_with("unknown variant")
            || msg.starts_with("invalid length");
        is_type_error.then(|| k.clone())
    })
}

/// serde's expectation ("i64", "a string") as the QAPI type name qemu-ga prints.
fn qapi_type(expected: &str) -> &'static str {
    let e = expected.trim();
    if e.contains("i64")
        || e.contains("u64")
        || e.contains("i32")
        || e.contains("u32")
        || e.contains("u16")
        || e.contains("u8")
        || e.contains("integer")
    {
        "integer"
    } else if e.contains("f64") || e.contains("f32") || e.contains("number") {
        "number"
    } else if e.contains("string") || e.contains("char") {
        "string"
    } else if e.contains("bool") {
        "boolean"
    } else if e.contains("sequence") || e.contains("array") || e.contains("tuple") {
        "array"
    } else {
        "object"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        id: i64,
        name: Option<String>,
        list: Option<Vec<u32>>,
        flag: Option<bool>,
    }

    fn err(v: Value) -> String {
        parse_args::<Sample>(v).unwrap_err().to_string()
    }

    #[test]
    fn missing_member() {
        assert_eq!(err(json!({})), "Parameter 'id' is missing");
    }

    #[test]
    fn unexpected_member() {
        assert_eq!(err(json!({"id": 1, "z": 2})), "Parameter 'z' is unexpected");
    }

    #[test]
    fn wrong_types_name_the_member() {
        assert_eq!(
            err(json!({"id": "x"})),
            "Invalid parameter type for 'id', expected: integer"
        );
        assert_eq!(
            err(json!({"id": 1.5})),
            "Invalid parameter type for 'id', expected: integer"
        );
        assert_eq!(
            err(json!({"id": 1u64 << 63})),
            "Invalid parameter type for 'id', expected: integer"
        );
        assert_eq!(
            err(json!({"id": 1, "name": 3})),
            "Invalid parameter type for 'name', expected: string"
        );
        assert_eq!(
            err(json!({"id": 1, "list": "x"})),
            "Invalid parameter type for 'list', expected: array"
        );
        assert_eq!(
            err(json!({"id": 1, "flag": "x"})),
            "Invalid parameter type for 'flag', expected: boolean"
        );
    }
}
