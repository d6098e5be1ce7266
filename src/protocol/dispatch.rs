//! One framed request in, at most one reply out: request validation in qemu-ga's order
//! and wording, registry lookup, the allow/block and frozen gates, and the panic net.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{Map, Value};

use super::framer::Frame;
use super::reply::Reply;
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

fn generic(desc: impl Into<String>, id: Option<Value>) -> Reply {
    Reply::Error {
        class: "GenericError",
        desc: desc.into(),
        id,
    }
}

fn handle_text(ctx: &mut Ctx, bytes: &[u8]) -> Option<Reply> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return Some(generic(parse_error(&e), None)),
    };
    let Value::Object(request) = value else {
        return Some(generic("QMP input must be a JSON object", None));
    };
    let id = request.get("id").cloned();
    let (name, args) = match validate(request) {
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
fn execute(ctx: &mut Ctx, cmd: &Command, args: Value, id: Option<Value>) -> Option<Reply> {
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

/// Checks the request members (qmp-dispatch.c order); returns the command name and its
/// arguments object.
fn validate(request: Map<String, Value>) -> Result<(String, Value), String> {
    let mut name = None;
    let mut args = Value::Object(Map::new());
    for (key, value) in request {
        match key.as_str() {
            "execute" => match value {
                Value::String(s) => name = Some(s),
                _ => return Err("QMP input member 'execute' must be a string".into()),
            },
            "arguments" => match value {
                Value::Object(_) => args = value,
                _ => return Err("QMP input member 'arguments' must be an object".into()),
            },
            "id" => {}
            // Includes "exec-oob": qemu-ga has no out-of-band execution.
            _ => return Err(format!("QMP input member '{key}' is unexpected")),
        }
    }
    let name = name.ok_or("QMP input lacks member 'execute'")?;
    Ok((name, args))
}

fn parse_error(e: &serde_json::Error) -> String {
    // serde appends " at line L column C"; qemu-ga's messages have no position.
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => &msg,
    };
    format!("JSON parse error, {msg}")
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
        let reply = execute(&mut ctx, &cmd, Value::Null, Some(Value::from(3))).unwrap();
        let wire = String::from_utf8(reply.to_bytes()).unwrap();
        assert_eq!(
            wire,
            "{\"id\": 3, \"error\": {\"class\": \"GenericError\", \"desc\": \"internal error while executing test-panic\"}}\n"
        );
        assert!(!ctx.delimit_next_reply);
    }

    #[test]
    fn no_success_response_sends_nothing_on_success() {
        let cmd = Command::new("test-quiet", |_, _| Ok(Value::Null)).no_success_response();
        let mut ctx = Ctx::with_root("/");
        assert!(execute(&mut ctx, &cmd, Value::Null, None).is_none());
        let failing =
            Command::new("test-fail", |_, _| Err(Error::Failed("no".into()))).no_success_response();
        assert!(execute(&mut ctx, &failing, Value::Null, None).is_some());
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
