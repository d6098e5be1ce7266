//! The agent's log: stderr or `-l FILE`, one timestamped line per message, as qemu-ga
//! writes it ("SECONDS.MICROS: level: message"). Debug lines only with `-v`. Control
//! characters in a message are escaped, so text a host or guest user chose (a name
//! with a newline) cannot start a forged line.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

struct Sink {
    file: Option<File>,
    /// Where `file` was opened, for [`reopen`].
    path: Option<PathBuf>,
    verbose: bool,
    /// Off while filesystems are frozen: nothing may write to them.
    enabled: bool,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    file: None,
    path: None,
    verbose: false,
    enabled: true,
});

/// Sends the log to `path` (appending) instead of stderr. A symlink, FIFO, device, hard
/// link or another user's file there is refused (src/untrusted.rs).
pub fn open(path: &Path, verbose: bool) -> std::io::Result<()> {
    let file = crate::untrusted::open_log(path)?;
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    sink.file = Some(file);
    sink.path = Some(path.to_path_buf());
    sink.verbose = verbose;
    Ok(())
}

/// Opens the log file again by its path (SIGHUP, after logrotate moved it away), with
/// the same checks as [`open`]; the old file stays in use if that fails. Nothing to do
/// when the log is stderr.
pub fn reopen() -> std::io::Result<bool> {
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(path) = sink.path.clone() else {
        return Ok(false);
    };
    sink.file = Some(crate::untrusted::open_log(&path)?);
    Ok(true)
}

pub fn set_verbose(verbose: bool) {
    SINK.lock().unwrap_or_else(|e| e.into_inner()).verbose = verbose;
}

/// Turns logging off (freeze) and back on (thaw).
pub fn set_enabled(enabled: bool) {
    SINK.lock().unwrap_or_else(|e| e.into_inner()).enabled = enabled;
}

pub fn error(msg: &str) {
    write("critical", msg, false);
}

pub fn warn(msg: &str) {
    write("warning", msg, false);
}

pub fn info(msg: &str) {
    write("info", msg, true);
}

pub fn debug(msg: &str) {
    write("debug", msg, true);
}

fn write(level: &str, msg: &str, needs_verbose: bool) {
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    if !sink.enabled || (needs_verbose && !sink.verbose) {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let line = format!(
        "{}.{:06}: {level}: {}\n",
        now.as_secs(),
        now.subsec_micros(),
        escape_controls(msg)
    );
    // A log that cannot be written must not take the agent down.
    let _ = match sink.file.as_mut() {
        Some(f) => f.write_all(line.as_bytes()),
        None => std::io::stderr().write_all(line.as_bytes()),
    };
}

/// `msg` with every control character written as `\n`, `\r`, `\t` or `\u{…}`.
pub fn escape_controls(msg: &str) -> std::borrow::Cow<'_, str> {
    if !msg.chars().any(char::is_control) {
        return msg.into();
    }
    let mut out = String::with_capacity(msg.len() + 8);
    for c in msg.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_line() {
        assert_eq!(escape_controls("plain 'x'"), "plain 'x'");
        assert_eq!(
            escape_controls("a\n1.0: critical: FORGED\r\t\u{1b}[2J\u{85}"),
            "a\\n1.0: critical: FORGED\\r\\t\\u{1b}[2J\\u{85}"
        );
    }
}
