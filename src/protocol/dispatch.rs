//! One framed request in, at most one reply out: request validation in qemu-ga's order
//! and wording, registry lookup, the allow/block and frozen gates, and the panic net.
//! The request is read borrowing from its text: `arguments` stays text for the
//! handler's typed parse, `id` is re-written for the reply without a tree. A command
//! that waits for a program comes back as [`Outcome::Wait`]; the loop runs the program
//! and hands its result to [`resume`].

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::args::without_position;
use super::framer::Frame;
use super::reply::{Encoded, Reply};
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
    id: Option<Encoded>,
    then: Then<Encoded>,
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
    let step = catch_unwind(AssertUnwindSafe(|| then(ctx, session, result)));
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

fn generic(desc: impl Into<String>, id: Option<Encoded>) -> Reply {
    Reply::Error {
        class: "GenericError",
        desc: desc.into(),
        id,
    }
}

fn handle_text(ctx: &Ctx, session: &mut Session, bytes: &[u8]) -> Outcome {
    let request = match parse(bytes) {
        Ok(r) => r,
        Err(desc) => return send(session, generic(desc, None)),
    };
    let id = match request
        .id
        .map(|raw| Encoded::transcode(raw.get()))
        .transpose()
    {
        Ok(id) => id,
        Err(e) => return send(session, generic(parse_error(&e), None)),
    };
    let (name, args) = match validate(&request) {
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
    args: &RawValue,
    id: Option<Encoded>,
) -> Outcome {
    let step = catch_unwind(AssertUnwindSafe(|| (cmd.handler)(ctx, session, args)));
    conclude(session, cmd, id, step)
}

/// Turns a handler's (or continuation's) result into the reply or the next wait.
fn conclude(
    session: &mut Session,
    cmd: &'static Command,
    id: Option<Encoded>,
    step: std::thread::Result<Result<Step<Encoded>, Error>>,
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

    fn reply(outcome: Outcome) -> Option<Vec<u8>> {
        match outcome {
            Outcome::Silent => None,
            Outcome::Reply(bytes) => Some(bytes),
            Outcome::Wait(..) => panic!("unexpected wait"),
        }
    }

    fn run_bytes(ctx: &Ctx, session: &mut Session, text: &str) -> Vec<u8> {
        reply(handle(ctx, session, Frame::Text(text.as_bytes().to_vec()))).unwrap()
    }

    fn run(ctx: &Ctx, session: &mut Session, text: &str) -> String {
        String::from_utf8_lossy(&run_bytes(ctx, session, text)).into_owned()
    }

    fn leak(cmd: Command) -> &'static Command {
        Box::leak(Box::new(cmd))
    }

    #[test]
    fn delimited_reply_gets_the_byte_once() {
        let ctx = Ctx::with_root("/");
        let mut s = Session::default();
        let out = run_bytes(
            &ctx,
            &mut s,
            r#"{"execute":"guest-sync-delimited","arguments":{"id":7}}"#,
        );
        assert_eq!(out, b"\xff{\"return\": 7}\n");
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
        let id = Encoded::of(&3).unwrap();
        let out = reply(execute(&ctx, &mut s, cmd, no_arguments(), Some(id))).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\": 3, \"error\": {\"class\": \"GenericError\", \"desc\": \"internal error while executing test-panic\"}}\n"
        );
        assert!(!s.delimit_next_reply);
    }

    #[test]
    fn no_success_response_sends_nothing_on_success() {
        let cmd = leak(
            Command::new("test-quiet", |_, _, _| {
                Ok(Step::Done(Encoded::of(&()).unwrap()))
            })
            .no_success_response(),
        );
        let ctx = Ctx::with_root("/");
        let mut s = Session::default();
        assert!(reply(execute(&ctx, &mut s, cmd, no_arguments(), None)).is_none());
        let failing = leak(
            Command::new("test-fail", |_, _, _| Err(Error::Failed("no".into())))
                .no_success_response(),
        );
        assert!(reply(execute(&ctx, &mut s, failing, no_arguments(), None)).is_some());
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
            Ok(Step::wait(run, |_, _, r| {
                Ok(Step::Done(Encoded::of(&r.is_ok()).unwrap()))
            }))
        }));
        let ctx = Ctx::with_root("/");
        let mut s = Session::default();
        let Outcome::Wait(_run, waiting) = execute(&ctx, &mut s, cmd, no_arguments(), None) else {
            panic!("expected a wait");
        };
        let failed = Err(io::Error::from_raw_os_error(libc::ENOENT));
        let out = reply(resume(&ctx, &mut s, waiting, failed)).unwrap();
        assert_eq!(out, b"{\"return\": false}\n");
    }

    #[test]
    fn repeated_members_are_refused_like_qemu_ga() {
        let ctx = Ctx::with_root("/");
        let mut s = Session::default();
        let dup = "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, duplicate key\"}}\n";
        assert_eq!(
            run(
                &ctx,
                &mut s,
                r#"{"execute":"guest-ping","execute":"guest-ping"}"#
            ),
            dup
        );
        assert_eq!(
            run(
                &ctx,
                &mut s,
                r#"{"execute":"guest-sync","arguments":{"id":1,"id":2}}"#
            ),
            dup
        );
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
