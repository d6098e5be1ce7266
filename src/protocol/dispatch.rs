//! One framed request in, at most one reply out: request validation in qemu-ga's order
//! and wording, registry lookup, the allow/block and frozen gates, and the panic net.
//! The request is read borrowing from its text: `arguments` stays text for the
//! handler's typed parse, `id` is re-written for the reply without a tree.

use std::borrow::Cow;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::args::without_position;
use super::framer::Frame;
use super::reply::{Encoded, Reply};
use crate::ctx::Ctx;
use crate::error::Error;
use crate::log;
use crate::registry::{self, Command};

/// The byte that precedes the reply to guest-sync-delimited.
pub const DELIMITER: u8 = 0xFF;

/// Handles one frame; returns the bytes to send (none for a successful command that
/// sends no reply).
pub fn handle(ctx: &mut Ctx, frame: Frame) -> Option<Vec<u8>> {
    let reply = match frame {
        Frame::Error(desc) => Some(generic(desc, None)),
        Frame::Text(bytes) => handle_text(ctx, &bytes),
    }?;
    let mut out = reply.to_bytes();
    if std::mem::take(&mut ctx.delimit_next_reply) {
        out.insert(0, DELIMITER);
    }
    Some(out)
}

fn generic(desc: impl Into<String>, id: Option<Encoded>) -> Reply {
    Reply::Error {
        class: "GenericError",
        desc: desc.into(),
        id,
    }
}

fn handle_text(ctx: &mut Ctx, bytes: &[u8]) -> Option<Reply> {
    let request = match parse(bytes) {
        Ok(r) => r,
        Err(desc) => return Some(generic(desc, None)),
    };
    let id = match request
        .id
        .map(|raw| Encoded::transcode(raw.get()))
        .transpose()
    {
        Ok(id) => id,
        Err(e) => return Some(generic(parse_error(&e), None)),
    };
    let (name, args) = match validate(&request) {
        Ok(v) => v,
        Err(desc) => return Some(generic(desc, id)),
    };
    let Some(cmd) = registry::find(&name) else {
        return Some(Reply::error(&Error::NotFound(name), id));
    };
    if !ctx.filter.allows(cmd.name) {
        let err = Error::Disabled {
            name,
            reason: "the command is not allowed",
        };
        return Some(Reply::error(&err, id));
    }
    if ctx.frozen && !cmd.while_frozen {
        let err = Error::Disabled {
            name,
            reason: "the agent is in frozen state",
        };
        return Some(Reply::error(&err, id));
    }
    log::debug(&format!("executing {}", cmd.name));
    execute(ctx, cmd, args, id)
}

/// Runs one enabled command; a panic in its handler becomes a GenericError reply.
fn execute(ctx: &mut Ctx, cmd: &Command, args: &RawValue, id: Option<Encoded>) -> Option<Reply> {
    let result = catch_unwind(AssertUnwindSafe(|| (cmd.handler)(ctx, args)));
    match result {
        Ok(Ok(value)) => cmd.success_response.then_some(Reply::Return { value, id }),
        Ok(Err(err)) => {
            // A failed handler must not leave a stale one-shot flag behind.
            ctx.delimit_next_reply = false;
            Some(Reply::error(&err, id))
        }
        Err(_) => {
            ctx.delimit_next_reply = false;
            log::error(&format!("command {} panicked", cmd.name));
            Some(generic(
                format!("internal error while executing {}", cmd.name),
                id,
            ))
        }
    }
}

/// The request's members, borrowed from its text.
#[derive(Default)]
struct Request<'a> {
    execute: Option<&'a RawValue>,
    arguments: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    /// The first other member in name order: qmp-dispatch.c checks members in its
    /// dict's order, which was name order here.
    unexpected: Option<Cow<'a, str>>,
}

/// The whole text must be JSON before anything else is said about it; then it must be
/// an object.
fn parse(bytes: &[u8]) -> Result<Request<'_>, String> {
    let raw: &RawValue = serde_json::from_slice(bytes).map_err(|e| parse_error(&e))?;
    if !raw.get().starts_with('{') {
        return Err("QMP input must be a JSON object".into());
    }
    serde_json::from_str(raw.get()).map_err(|e| parse_error(&e))
}

impl<'de> Deserialize<'de> for Request<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = Request<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Request<'de>, A::Error> {
        let mut r = Request::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                "execute" => &mut r.execute,
                "arguments" => &mut r.arguments,
                "id" => &mut r.id,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    if r.unexpected.as_ref().is_none_or(|u| key < *u) {
                        r.unexpected = Some(key);
                    }
                    continue;
                }
            };
            if slot.is_some() {
                // qemu-ga's parser refuses a repeated member anywhere in a request.
                return Err(de::Error::custom("duplicate key"));
            }
            *slot = Some(map.next_value()?);
        }
        Ok(r)
    }
}

/// Checks the request members (qmp-dispatch.c order); returns the command name and its
/// arguments object.
fn validate<'a>(request: &Request<'a>) -> Result<(String, &'a RawValue), String> {
    // Members were checked in name order: the first failing one in that order speaks.
    let mut failures: Vec<(&str, String)> = Vec::new();
    if let Some(args) = request.arguments {
        if !args.get().starts_with('{') {
            failures.push((
                "arguments",
                "QMP input member 'arguments' must be an object".into(),
            ));
        }
    }
    let name = match request.execute {
        Some(raw) if raw.get().starts_with('"') => {
            Some(serde_json::from_str::<String>(raw.get()).map_err(|e| parse_error(&e))?)
        }
        Some(_) => {
            failures.push((
                "execute",
                "QMP input member 'execute' must be a string".into(),
            ));
            None
        }
        None => None,
    };
    if let Some(key) = &request.unexpected {
        // Includes "exec-oob": qemu-ga has no out-of-band execution.
        failures.push((key, format!("QMP input member '{key}' is unexpected")));
    }
    if let Some((_, desc)) = failures.into_iter().min_by(|a, b| a.0.cmp(b.0)) {
        return Err(desc);
    }
    let name = name.ok_or("QMP input lacks member 'execute'")?;
    Ok((name, request.arguments.unwrap_or(no_arguments())))
}

/// `{}`, the arguments of a request that has none.
fn no_arguments() -> &'static RawValue {
    serde_json::from_str("{}").expect("an empty object is JSON")
}

fn parse_error(e: &serde_json::Error) -> String {
    format!("JSON parse error, {}", without_position(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ctx: &mut Ctx, text: &str) -> String {
        let out = handle(ctx, Frame::Text(text.as_bytes().to_vec())).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn delimited_reply_gets_the_byte_once() {
        let mut ctx = Ctx::with_root("/");
        let out = handle(
            &mut ctx,
            Frame::Text(br#"{"execute":"guest-sync-delimited","arguments":{"id":7}}"#.to_vec()),
        )
        .unwrap();
        assert_eq!(out, b"\xff{\"return\": 7}\n");
        assert_eq!(
            run(&mut ctx, r#"{"execute":"guest-ping"}"#),
            "{\"return\": {}}\n"
        );
    }

    #[test]
    fn failed_delimited_sync_is_not_delimited() {
        let mut ctx = Ctx::with_root("/");
        let out = run(
            &mut ctx,
            r#"{"execute":"guest-sync-delimited","arguments":{}}"#,
        );
        assert!(out.starts_with('{'));
        assert!(!ctx.delimit_next_reply);
    }

    #[test]
    fn panicking_handler_becomes_an_error_reply() {
        let cmd = Command::new("test-panic", |_, _| panic!("boom"));
        let mut ctx = Ctx::with_root("/");
        ctx.delimit_next_reply = true;
        let id = Encoded::of(&3).unwrap();
        let reply = execute(&mut ctx, &cmd, no_arguments(), Some(id)).unwrap();
        let wire = String::from_utf8(reply.to_bytes()).unwrap();
        assert_eq!(
            wire,
            "{\"id\": 3, \"error\": {\"class\": \"GenericError\", \"desc\": \"internal error while executing test-panic\"}}\n"
        );
        assert!(!ctx.delimit_next_reply);
    }

    #[test]
    fn no_success_response_sends_nothing_on_success() {
        let cmd =
            Command::new("test-quiet", |_, _| Ok(Encoded::of(&()).unwrap())).no_success_response();
        let mut ctx = Ctx::with_root("/");
        assert!(execute(&mut ctx, &cmd, no_arguments(), None).is_none());
        let failing =
            Command::new("test-fail", |_, _| Err(Error::Failed("no".into()))).no_success_response();
        assert!(execute(&mut ctx, &failing, no_arguments(), None).is_some());
    }

    #[test]
    fn repeated_members_are_refused_like_qemu_ga() {
        let mut ctx = Ctx::with_root("/");
        let dup = "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, duplicate key\"}}\n";
        assert_eq!(
            run(
                &mut ctx,
                r#"{"execute":"guest-ping","execute":"guest-ping"}"#
            ),
            dup
        );
        assert_eq!(
            run(
                &mut ctx,
                r#"{"execute":"guest-sync","arguments":{"id":1,"id":2}}"#
            ),
            dup
        );
    }

    #[test]
    fn frozen_gate_uses_the_registry_flag() {
        let mut ctx = Ctx::with_root("/");
        ctx.frozen = true;
        assert_eq!(
            run(&mut ctx, r#"{"execute":"guest-ping"}"#),
            "{\"return\": {}}\n"
        );
    }
}
