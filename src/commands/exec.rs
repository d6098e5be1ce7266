//! guest-exec and guest-exec-status: a program the host names runs as a child of the
//! loop (its input fed and its output read from the poll set, so neither side stalls on a
//! full pipe) while the agent keeps serving; its status is kept until the host has read
//! it once after it exited. Replies and error texts as qemu-ga 7.2; capture-output also
//! takes 8.1's modes.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::base64;
use crate::child::{Capture, ChildId, Finished, Run};
use crate::ctx::{Ctx, Session};
use crate::error::{strerror, Error};

/// Each captured stream keeps at most this much (qemu-ga's limit).
pub const OUTPUT_CAP: usize = 16 * 1024 * 1024;
/// Programs running at once: each may hold 2 × 16 MiB of output.
pub const MAX_RUNNING: usize = 64;
/// Exited programs whose status the host has not read; the oldest is forgotten first,
/// so a host that never asks cannot grow the agent's memory.
pub const MAX_UNCOLLECTED: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExecArgs {
    pub path: String,
    pub arg: Option<Vec<String>>,
    /// Replaces the environment ("NAME=value" each).
    pub env: Option<Vec<String>>,
    /// Base64 of what the program reads on stdin (then EOF); /dev/null without it.
    pub input_data: Option<String>,
    pub capture_output: Option<CaptureOutput>,
}

/// `capture-output`: a bool (7.2: true captures stdout and stderr apart) or, since
/// 8.1, "none", "stdout", "stderr", "separated" or "merged".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureOutput(pub Capture);

const CAPTURE_MODES: &[&str] = &["none", "stdout", "stderr", "separated", "merged"];

impl<'de> Deserialize<'de> for CaptureOutput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Mode;
        impl Visitor<'_> for Mode {
            type Value = CaptureOutput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a bool or a capture mode")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<CaptureOutput, E> {
                Ok(CaptureOutput(if v {
                    Capture::Separated
                } else {
                    Capture::None
                }))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CaptureOutput, E> {
                Ok(CaptureOutput(match v {
                    "none" => Capture::None,
                    "stdout" => Capture::Stdout,
                    "stderr" => Capture::Stderr,
                    "separated" => Capture::Separated,
                    "merged" => Capture::Merged,
                    _ => return Err(E::unknown_variant(v, CAPTURE_MODES)),
                }))
            }
        }
        d.deserialize_any(Mode)
    }
}

#[derive(Debug, Serialize)]
pub struct ExecStarted {
    pub pid: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecStatusArgs {
    pub pid: i64,
}

/// Member order as qemu-ga 7.2 sends it.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ExecStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exitcode: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_data: Option<String>,
    /// Present with the data it qualifies (Debian's 7.2 sends false too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_truncated: Option<bool>,
    pub exited: bool,
}

enum Record {
    Running(ChildId),
    Exited(Finished),
}

/// guest-exec children by pid: running, or exited with a status not yet read.
#[derive(Default)]
pub struct Execs {
    records: BTreeMap<u32, Record>,
    /// Exited pids, oldest first.
    exited: VecDeque<u32>,
}

impl Execs {
    fn running(&self) -> usize {
        self.records
            .values()
            .filter(|r| matches!(r, Record::Running(_)))
            .count()
    }

    /// A guest-exec child finished; ids the table does not know are ignored.
    pub fn exited(&mut self, id: ChildId, finished: Finished) {
        let pid = self
            .records
            .iter()
            .find(|(_, r)| matches!(r, Record::Running(rid) if *rid == id))
            .map(|(pid, _)| *pid);
        let Some(pid) = pid else {
            return;
        };
        self.records.insert(pid, Record::Exited(finished));
        self.exited.push_back(pid);
        while self.exited.len() > MAX_UNCOLLECTED {
            if let Some(old) = self.exited.pop_front() {
                self.records.remove(&old);
            }
        }
    }

    /// The status; an exited one is handed out once, then forgotten (qemu-ga).
    fn take_status(&mut self, pid: u32) -> Option<ExecStatus> {
        match self.records.get(&pid)? {
            Record::Running(_) => Some(ExecStatus::running()),
            Record::Exited(_) => {
                self.exited.retain(|&p| p != pid);
                match self.records.remove(&pid) {
                    Some(Record::Exited(f)) => Some(ExecStatus::of(&f)),
                    _ => None,
                }
            }
        }
    }
}

impl ExecStatus {
    fn running() -> ExecStatus {
        ExecStatus {
            exitcode: None,
            signal: None,
            err_data: None,
            out_data: None,
            err_truncated: None,
            out_truncated: None,
            exited: false,
        }
    }

    fn of(f: &Finished) -> ExecStatus {
        let data = |bytes: &[u8], truncated: bool| {
            if bytes.is_empty() {
                (None, None)
            } else {
                (Some(base64::encode(bytes)), Some(truncated))
            }
        };
        let (out_data, out_truncated) = data(&f.output, f.truncated);
        let (err_data, err_truncated) = data(&f.errors, f.errors_truncated);
        ExecStatus {
            exitcode: f.status.and_then(|s| s.code()),
            signal: f.status.and_then(|s| s.signal()),
            err_data,
            out_data,
            err_truncated,
            out_truncated,
            exited: true,
        }
    }
}

pub fn exec(_: &Ctx, session: &mut Session, args: ExecArgs) -> Result<ExecStarted, Error> {
    let input = match &args.input_data {
        Some(b64) => base64::decode(b64)?,
        None => Vec::new(),
    };
    if session.execs.running() >= MAX_RUNNING {
        return Err(Error::Failed(format!(
            "too many guest-exec processes are running (at most {MAX_RUNNING})"
        )));
    }
    let mut cmd = Command::new(&args.path);
    cmd.args(args.arg.iter().flatten());
    if let Some(env) = &args.env {
        cmd.env_clear();
        // An entry without '=' names no variable; exec could not pass it either way.
        cmd.envs(env.iter().filter_map(|e| e.split_once('=')));
    }
    let capture = args
        .capture_output
        .map_or(Capture::None, |CaptureOutput(c)| c);
    let run = Run::Exec {
        cmd: Box::new(cmd),
        input,
        capture,
        cap: OUTPUT_CAP,
    };
    let (id, pid) = session.children.start(run).map_err(|e| {
        Error::Failed(format!(
            "Guest agent command failed, error was 'Failed to execute child process \u{201C}{}\u{201D} ({})'",
            args.path,
            strerror(&e)
        ))
    })?;
    session.execs.records.insert(pid, Record::Running(id));
    Ok(ExecStarted { pid })
}

pub fn exec_status(
    _: &Ctx,
    session: &mut Session,
    args: ExecStatusArgs,
) -> Result<ExecStatus, Error> {
    u32::try_from(args.pid)
        .ok()
        .and_then(|pid| session.execs.take_status(pid))
        .ok_or_else(|| Error::Failed("Invalid parameter 'pid'".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::args::parse_args;
    use serde_json::json;

    fn capture(v: serde_json::Value) -> Result<Capture, String> {
        parse_args::<ExecArgs>(json!({"path": "/bin/true", "capture-output": v}))
            .map(|a| a.capture_output.map_or(Capture::None, |c| c.0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn capture_output_as_bool_or_mode() {
        assert_eq!(capture(json!(true)), Ok(Capture::Separated));
        assert_eq!(capture(json!(false)), Ok(Capture::None));
        assert_eq!(capture(json!("merged")), Ok(Capture::Merged));
        assert_eq!(capture(json!("stderr")), Ok(Capture::Stderr));
        assert_eq!(
            capture(json!("all")),
            Err("Parameter 'capture-output' does not accept value 'all'".into())
        );
        assert_eq!(
            capture(json!(3)),
            Err("Invalid parameter type for 'capture-output', expected: boolean".into())
        );
    }

    #[test]
    fn uncollected_statuses_are_bounded() {
        let mut execs = Execs::default();
        for pid in 0..(MAX_UNCOLLECTED as u32 + 10) {
            execs
                .records
                .insert(pid, Record::Running(ChildId::for_tests(pid)));
            execs.exited(ChildId::for_tests(pid), Finished::default());
        }
        assert_eq!(execs.records.len(), MAX_UNCOLLECTED);
        assert!(execs.take_status(0).is_none(), "the oldest was forgotten");
        let last = MAX_UNCOLLECTED as u32 + 9;
        assert!(execs.take_status(last).is_some_and(|s| s.exited));
        assert!(execs.take_status(last).is_none(), "handed out once");
    }
}
