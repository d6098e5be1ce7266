//! The agent's log: stderr or `-l FILE`, one timestamped line per message, as qemu-ga
//! writes it ("SECONDS.MICROS: level: message"). Debug lines only with `-v`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

struct Sink {
    file: Option<File>,
    verbose: bool,
    /// Off while filesystems are frozen: nothing may write to them.
    enabled: bool,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    file: None,
    verbose: false,
    enabled: true,
});

/// Sends the log to `path` (appending) instead of stderr.
pub fn open(path: &Path, verbose: bool) -> std::io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    sink.file = Some(file);
    sink.verbose = verbose;
    Ok(())
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
        "{}.{:06}: {level}: {msg}\n",
        now.as_secs(),
        now.subsec_micros()
    );
    // A log that cannot be written must not take the agent down.
    let _ = match sink.file.as_mut() {
        Some(f) => f.write_all(line.as_bytes()),
        None => std::io::stderr().write_all(line.as_bytes()),
    };
}
