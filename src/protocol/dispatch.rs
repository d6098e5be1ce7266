//! One framed request in, at most one reply out: request validation in qemu-ga's order
//! and wording, registry lookup, the allow/block and frozen gates, and the panic net.
//! A command that waits for a program comes back as [`Outcome::Wait`]; the loop runs
//! the program and hands its result to [`resume`].

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{Map, Value};

use super::framer::Frame;
use super::reply::Reply;
use crate::child::{Finished, Run};
use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::job::{Step, Then};
use crate::log;
use crate::registry::{self, Command};

/// The byte that precedes the reply to guest-sync-delimited.
pub const DELIMITER: u8 = 0xFF;

/// What one request leads to.
pub enum Outcome {
    /// Nothing to send (a successful command that sends no reply).
    Silent,
    /// The bytes to send.
    Reply(Vec<u8>),
    /// The command waits for a program: start `Run`, then [`resume`] with its result.
    Wait(Run, Waiting),
}

/// A command whose reply waits for a program.
pub struct Waiting {
    cmd: &'static Command,
    id: Option<Value>,
    then: Then<Value>,
}

/// Handles one frame.
pub fn handle(ctx: &Ctx, session: &mut Session, frame: Frame) -> Outcome {
    match frame {
        Frame::Error(desc) => send(session, generic(desc, None)),
        Frame::Text(bytes) => handle_text(ctx, session, &bytes),
    }
}

/// Continues a waiting command with its program's result.
pub fn resume(
    ctx: &Ctx,
    session: &mut Session,
    waiting: Waiting,
    result: io::Result<Finished>,
) -> Outcome {
    let Waiting { cmd, id, then } = waiting;
    let step = catch_unwind(AssertUnwindSafe(|| then(ctx, result)));
    conclude(session, cmd, id, step)
}

/// The reply's bytes; the one after guest-sync-delimited is preceded by 0xFF.
fn send(session: &mut Session, reply: Reply) -> Outcome {
    let mut out = reply.to_bytes();
    if std::mem::take(&mut session.delimit_next_reply) {
        out.insert(0, DELIMITER);
    }
    Outcome::Reply(out)
}

fn generic(desc: impl Into<String>, id: Option<Value>) -> Reply {
    Reply::Error {
        class: "GenericError",
        desc: desc.into(),
        id,
    }
}

fn handle_text(ctx: &Ctx, session: &mut Session, bytes: &[u8]) -> Outcome {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return send(session, generic(parse_error(&e), None)),
    };
    let Value::Object(request) = value else {
        return send(session, generic("QMP input must be a JSON object", None));
    };
    let id = request.get("id").cloned();
    let (name, args) = match validate(request) {
        Ok(v) => v,
        Err(desc) => return send(session, generic(desc, id)),
    };
    let Some(cmd) = registry::find(&name) else {
        return send(session, Reply::error(&Error::NotFound(name), id));
    };
    if !ctx.filter.allows(cmd.name) {
        let err = Error::Disabled {
            name,
            reason: "the command is not allowed",
        };
        return send(session, Reply::error(&err, id));
    }
    if session.frozen && !cmd.while_frozen {
        let err = Error::Disabled {
            name,
            reason: "the agent is in frozen state",
        };
        return send(session, Reply::error(&err, id));
    }
    log::debug(&format!("executing {}", cmd.name));
    execute(ctx, session, cmd, args, id)
}

/// Runs one enabled command; a panic in its handler becomes a GenericError reply.
fn execute(
    ctx: &Ctx,
    session: &mut Session,
    cmd: &'static Command,
    args: Value,
    id: Option<Value>,
) -> Outcome {
    let step = catch_unwind(AssertUnwindSafe(|| (cmd.handler)(ctx, session, args)));
    conclude(session, cmd, id, step)
}

/// Turns a handler's (or continuation's) result into the reply or the next wait.
fn conclude(
    session: &mut Session,
    cmd: &'static Command,
    id: Option<Value>,
    step: std::thread::Result<Result<Step<Value>, Error>>,
) -> Outcome {
    match step {
        Ok(Ok(Step::Done(value))) => {
            if cmd.success_response {
                send(session, Reply::Return { value, id })
            } else {
                Outcome::Silent
            }
        }
        Ok(Ok(Step::Wait(job))) => Outcome::Wait(
            job.run,
            Waiting {
                cmd,
                id,
                then: job.then,
            },
        ),
        Ok(Err(err)) => {
            // A failed handler must not leave a stale one-shot flag behind.
            session.delimit_next_reply = false;
            send(session, Reply::error(&err, id))
        }
        Err(_) => {
            session.delimit_next_reply = false;
            log::error(&format!("command {} panicked", cmd.name));
            send(
                session,
                generic(format!("internal error while executing {}", cmd.name), id),
            )
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

    fn reply(outcome: Outcome) -> Option<Vec<u8>> {
        match outcome {
            Outcome::Silent => None,
            Outcome::Reply(bytes) => Some(bytes),
            Outcome::Wait(..) => panic!("unexpected wait"),
        }
    }

    fn run(ctx: &Ctx, session: &mut Session, text: &str) -> String {
        let out = reply(handle(ctx, session, Frame::Text(text.as_bytes().to_vec()))).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn leak(cmd: Command) -> &'static Command {
        Box::leak(Box::new(cmd))
    }

    #[test]
    fn delimited_reply_gets_the_byte_once() {
        let ctx = Ctx::with_root("/");
        let mut s = Session::default();
        let out = run(
            &ctx,
            &mut s,
            r#"{"execute":"guest-sync-delimited","arguments":{"id":7}}"#,
        );
        assert_eq!(out.as_bytes(), "\u{FFFD}{\"return\": 7}\n".as_bytes());
        assert_eq!(
            run(&ctx, &mut s, r#"{"execute":"guest-ping"}"#),
            "{\"return\": {}}\n"
        );
    }

    #[test]
    fn failed_delimited_sync_is_not_delimited() {
        let ctx = Ctx::with_root("/");
        let mut s = Session::default();
        let out = run(
            &ctx,
            &mut s,
            r#"{"execute":"guest-sync-delimited","arguments":{}}"#,
        );
        assert!(out.starts_with('{'));
        assert!(!s.delimit_next_reply);
    }

    #[test]
    fn panicking_handler_becomes_an_error_reply() {
        let cmd = leak(Command::new("test-panic", |_, _, _| panic!("boom")));
        let ctx = Ctx::with_root("/");
        let mut s = Session {
            delimit_next_reply: true,
            ..Session::default()
        };
        let out = reply(execute(
            &ctx,
            &mut s,
            cmd,
            Value::Null,
            Some(Value::from(3)),
        ))
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\": 3, \"error\": {\"class\": \"GenericError\", \"desc\": \"internal error while executing test-panic\"}}\n"
        );
        assert!(!s.delimit_next_reply);
    }

    #[test]
    fn no_success_response_sends_nothing_on_success() {
        let cmd = leak(
            Command::new("test-quiet", |_, _, _| Ok(Step::Done(Value::Null))).no_success_response(),
        );
        let ctx = Ctx::with_root("/");
        let mut s = Session::default();
        assert!(reply(execute(&ctx, &mut s, cmd, Value::Null, None)).is_none());
        let failing = leak(
            Command::new("test-fail", |_, _, _| Err(Error::Failed("no".into())))
                .no_success_response(),
        );
        assert!(reply(execute(&ctx, &mut s, failing, Value::Null, None)).is_some());
    }

    #[test]
    fn a_waiting_command_replies_when_resumed() {
        let cmd = leak(Command::new("test-wait", |_, _, _| {
            let run = Run::program(
                std::process::Command::new("/bin/true"),
                Vec::new(),
                std::time::Duration::from_secs(1),
                0,
            );
            Ok(Step::wait(run, |_, r| {
                Ok(Step::Done(Value::from(r.is_ok())))
            }))
        }));
        let ctx = Ctx::with_root("/");
        let mut s = Session::default();
        let Outcome::Wait(_run, waiting) = execute(&ctx, &mut s, cmd, Value::Null, None) else {
            panic!("expected a wait");
        };
        let failed = Err(io::Error::from_raw_os_error(libc::ENOENT));
        let out = reply(resume(&ctx, &mut s, waiting, failed)).unwrap();
        assert_eq!(out, b"{\"return\": false}\n");
    }

    #[test]
    fn frozen_gate_uses_the_registry_flag() {
        let ctx = Ctx::with_root("/");
        let mut s = Session {
            frozen: true,
            ..Session::default()
        };
        // while_frozen: runs.
        assert_eq!(
            run(&ctx, &mut s, r#"{"execute":"guest-ping"}"#),
            "{\"return\": {}}\n"
        );
        // Not while_frozen: refused in qemu-ga's words, and shown disabled.
        assert_eq!(
            run(&ctx, &mut s, r#"{"execute":"guest-get-host-name"}"#),
            "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command guest-get-host-name has been disabled: the agent is in frozen state\"}}\n"
        );
        let info = run(&ctx, &mut s, r#"{"execute":"guest-info"}"#);
        assert!(info.contains(
            "{\"enabled\": false, \"name\": \"guest-get-host-name\", \"success-response\": true}"
        ));
        assert!(info
            .contains("{\"enabled\": true, \"name\": \"guest-ping\", \"success-response\": true}"));
    }
}
