//! The single place where JSON arguments become typed handler arguments and typed
//! results become JSON, with serde's messages reworded the way qemu-ga words them.
//! Arguments are read from their text straight into the handler's type and results
//! written straight to bytes: no `serde_json::Value` tree on either side, so memory
//! follows the request and the reply, not how many tokens they hold.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::argpath::{Path, Tracked};
pub use super::reply::Encoded;

use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::job::Step;

/// Runs a read-only handler on JSON arguments.
pub fn call<A, R>(
    ctx: &Ctx,
    _: &mut Session,
    args: &RawValue,
    f: fn(&Ctx, A) -> Result<R, Error>,
) -> Result<Step<Encoded>, Error>
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
    args: &RawValue,
    f: fn(&Ctx, &mut Session, A) -> Result<R, Error>,
) -> Result<Step<Encoded>, Error>
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
    args: &RawValue,
    f: fn(&Ctx, A) -> Result<Step<R>, Error>,
) -> Result<Step<Encoded>, Error>
where
    A: DeserializeOwned,
    R: Serialize + 'static,
{
    f(ctx, parse_args(args)?)?.map(|r| encode(&r))
}

/// Runs a handler that may wait for a program and changes session state (its
/// continuations get the session too) on JSON arguments.
pub fn call_job_mut<A, R>(
    ctx: &Ctx,
    session: &mut Session,
    args: &RawValue,
    f: fn(&Ctx, &mut Session, A) -> Result<Step<R>, Error>,
) -> Result<Step<Encoded>, Error>
where
    A: DeserializeOwned,
    R: Serialize + 'static,
{
    f(ctx, session, parse_args(args)?)?.map(|r| encode(&r))
}

fn encode<R: Serialize>(result: R) -> Result<Encoded, Error> {
    Encoded::of(&result).map_err(|e| Error::Failed(format!("cannot encode reply: {e}")))
}

/// Arguments as JSON text: the request's own (borrowed), or a `Value` built by a test.
pub trait ArgsText {
    fn text(&self) -> Cow<'_, str>;
}

impl ArgsText for &RawValue {
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.get())
    }
}

impl ArgsText for Value {
    fn text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }
}

/// Deserializes `args` (a JSON object) into `A`, mapping errors to qemu-ga's wording.
pub fn parse_args<A: DeserializeOwned>(args: impl ArgsText) -> Result<A, Error> {
    let text = args.text();
    let mut de = serde_json::Deserializer::from_str(&text);
    // The text, plus twice its size for what it becomes: with the request's own buffer
    // that keeps a request within 3x its size (and a few MiB for small ones).
    let path = Path::with_budget(2 * text.len() + (4 << 20));
    let parsed = A::deserialize(Tracked::new(&mut de, &path)).and_then(|a| de.end().map(|()| a));
    parsed.map_err(|e| {
        let msg = without_position(&e);
        if path.over_budget() {
            Error::Args(format!("Parameter '{}' is too large", path.render(None)))
        } else if msg.starts_with("duplicate field `") {
            // qemu-ga's parser refuses a repeated member before any command sees it.
            Error::Args("JSON parse error, duplicate key".into())
        } else if e.is_data() {
            Error::Args(reword(&msg, &path))
        } else {
            // The text was checked when the request was framed; what is left is what
            // only a full parse finds (a lone surrogate, more than 128 levels).
            Error::Args(format!("JSON parse error, {msg}"))
        }
    })
}

/// serde_json's message without the " at line L column C" it appends: qemu-ga's
/// messages have no position.
pub fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
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

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Keys {
        keys: Vec<String>,
    }

    #[test]
    fn arguments_that_cost_far_more_than_their_text_are_refused() {
        // 3 MiB of `"",`: a million empty strings, 24 MiB as a Vec<String>.
        let text = format!(r#"{{"keys":[{}""]}}"#, r#""","#.repeat(1 << 20));
        let raw: &RawValue = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parse_args::<Keys>(raw).unwrap_err().to_string(),
            "Parameter 'keys' is too large"
        );
        let small: &RawValue = serde_json::from_str(r#"{"keys":["a","b"]}"#).unwrap();
        assert_eq!(parse_args::<Keys>(small).unwrap().keys, ["a", "b"]);
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
