//! The single place where JSON arguments become typed handler arguments and typed
//! results become JSON, with serde's messages reworded the way qemu-ga words them.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::argpath::{Path, Tracked};

use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::job::Step;

/// Runs a read-only handler on JSON arguments.
pub fn call<A, R>(
    ctx: &Ctx,
    _: &mut Session,
    args: Value,
    f: fn(&Ctx, A) -> Result<R, Error>,
) -> Result<Step<Value>, Error>
where
    A: DeserializeOwned,
    R: Serialize,
{
    encode(f(ctx, parse_args(args)?)?).map(Step::Done)
}

/// Runs a handler that changes session state on JSON arguments.
pub fn call_mut<A, R>(
    ctx: &Ctx,
    session: &mut Session,
    args: Value,
    f: fn(&Ctx, &mut Session, A) -> Result<R, Error>,
) -> Result<Step<Value>, Error>
where
    A: DeserializeOwned,
    R: Serialize,
{
    encode(f(ctx, session, parse_args(args)?)?).map(Step::Done)
}

/// Runs a handler that may wait for a program on JSON arguments.
pub fn call_job<A, R>(
    ctx: &Ctx,
    _: &mut Session,
    args: Value,
    f: fn(&Ctx, A) -> Result<Step<R>, Error>,
) -> Result<Step<Value>, Error>
where
    A: DeserializeOwned,
    R: Serialize + 'static,
{
    f(ctx, parse_args(args)?)?.map(encode::<R>)
}

fn encode<R: Serialize>(result: R) -> Result<Value, Error> {
    serde_json::to_value(result).map_err(|e| Error::Failed(format!("cannot encode reply: {e}")))
}

/// Deserializes `args` (a JSON object) into `A`, mapping errors to qemu-ga's wording.
pub fn parse_args<A: DeserializeOwned>(args: Value) -> Result<A, Error> {
    let path = Path::default();
    A::deserialize(Tracked {
        value: &args,
        path: &path,
    })
    .map_err(|e| Error::Args(reword(&e.to_string(), &path)))
}

/// serde's message and the failure's location, in qemu-ga's words.
fn reword(msg: &str, path: &Path) -> String {
    if let Some(name) = quoted_after(msg, "missing field `") {
        // Raised by the struct that lacks it: the path is the struct's.
        return format!("Parameter '{}' is missing", path.render(Some(&name)));
    }
    if let Some(name) = quoted_after(msg, "unknown field `") {
        let at = path.render(None);
        let at = if at.is_empty() { name } else { at };
        return format!("Parameter '{at}' is unexpected");
    }
    let mut at = path.render(None);
    if at.is_empty() {
        at = "arguments".to_string();
    }
    if let Some(value) = quoted_after(msg, "unknown variant `") {
        return format!("Parameter '{at}' does not accept value '{value}'");
    }
    let expected = msg
        .rsplit_once("expected ")
        .map(|(_, e)| e)
        .unwrap_or("valid value");
    format!(
        "Invalid parameter type for '{at}', expected: {}",
        qapi_type(expected)
    )
}

/// The backtick-quoted word following `prefix` in a serde message.
fn quoted_after(msg: &str, prefix: &str) -> Option<String> {
    let start = msg.find(prefix)? + prefix.len();
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
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

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    #[allow(dead_code)]
    struct Cpu {
        logical_id: i64,
        online: bool,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        vcpus: Vec<Cpu>,
    }

    fn nested(v: Value) -> String {
        parse_args::<Nested>(v).unwrap_err().to_string()
    }

    #[test]
    fn nested_members_are_named_by_path() {
        assert_eq!(
            nested(json!({"vcpus": [{"logical-id": 0, "online": true}, {"logical-id": 1}]})),
            "Parameter 'vcpus[1].online' is missing"
        );
        assert_eq!(
            nested(json!({"vcpus": [{"logical-id": "a", "online": true}]})),
            "Invalid parameter type for 'vcpus[0].logical-id', expected: integer"
        );
        assert_eq!(
            nested(json!({"vcpus": [{"logical-id": 0, "online": true, "x": 1}]})),
            "Parameter 'vcpus[0].x' is unexpected"
        );
        assert_eq!(
            nested(json!({"vcpus": "x"})),
            "Invalid parameter type for 'vcpus', expected: array"
        );
        assert_eq!(
            nested(json!({"vcpus": ["x"]})),
            "Invalid parameter type for 'vcpus[0]', expected: object"
        );
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
