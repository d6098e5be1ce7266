//! The agent's log: stderr or `-l FILE`, one timestamped line per message, as qemu-ga
//! writes it ("SECONDS.MICROS: level: message"). Debug lines only with `-v`. Control
//! characters in a message are escaped, so text a host or guest user chose (a name
//! with a newline) cannot start a forged line. While filesystems are frozen nothing is
//! written: lines are held in memory (at most [`HELD_MAX`], then counted) and written
//! after the thaw. A warning or error that repeats is written at most once a minute,
//! then with how often it came meanwhile: a command polled every few seconds, or a peer
//! refused again and again, cannot fill the disk with one line per call.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Lines held while frozen; the ones after these are only counted.
pub const HELD_MAX: usize = 1000;

struct Sink {
    file: Option<File>,
    /// Where `file` was opened, for [`reopen`].
    path: Option<PathBuf>,
    verbose: bool,
    /// Set while filesystems are frozen: nothing may write to them.
    held: Option<Held>,
    /// A log file to open at the thaw (an agent that started frozen).
    open_at_release: Option<PathBuf>,
    repeats: Repeats,
}

/// How long the same warning stays quiet after it was written.
const REPEAT_WINDOW: Duration = Duration::from_secs(60);
/// Distinct recent messages remembered; the oldest is forgotten first.
const REPEAT_TRACKED: usize = 32;

/// Recent warnings and errors: text, when last written, how often suppressed since.
struct Repeats {
    recent: Vec<(String, Instant, u64)>,
}

impl Repeats {
    /// What to write for `msg` at `now`; None while the same text is quiet.
    fn admit(&mut self, msg: &str, now: Instant) -> Option<String> {
        if let Some(entry) = self.recent.iter_mut().find(|e| e.0 == msg) {
            if now.duration_since(entry.1) < REPEAT_WINDOW {
                entry.2 += 1;
                return None;
            }
            let (since, n) = (now.duration_since(entry.1), std::mem::take(&mut entry.2));
            entry.1 = now;
            return Some(match n {
                0 => msg.to_string(),
                n => format!(
                    "{msg} (and {n} more times in the {} s before)",
                    since.as_secs()
                ),
            });
        }
        if self.recent.len() >= REPEAT_TRACKED {
            if let Some(oldest) = (0..self.recent.len()).min_by_key(|&i| self.recent[i].1) {
                self.recent.swap_remove(oldest);
            }
        }
        self.recent.push((msg.to_string(), now, 0));
        Some(msg.to_string())
    }
}

#[derive(Default)]
struct Held {
    lines: Vec<String>,
    dropped: u64,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    file: None,
    path: None,
    verbose: false,
    held: None,
    open_at_release: None,
    repeats: Repeats { recent: Vec::new() },
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

/// Sends the log to `path` once [`release`] is called: opening a file for writing on a
/// frozen filesystem would block the agent (an agent that starts frozen).
pub fn open_at_release(path: &Path, verbose: bool) {
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    sink.open_at_release = Some(path.to_path_buf());
    sink.verbose = verbose;
}

/// Holds log lines in memory instead of writing them (a freeze).
pub fn hold() {
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    sink.held.get_or_insert_with(Held::default);
}

/// Writes the held lines, and how many were dropped, and logs normally again (a thaw).
pub fn release() {
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(held) = sink.held.take() else {
        return;
    };
    let mut failed_open = None;
    if let Some(path) = sink.open_at_release.take() {
        match crate::untrusted::open_log(&path) {
            Ok(file) => sink.file = Some(file),
            Err(e) => failed_open = Some(format!("cannot open logfile '{}': {e}", path.display())),
        }
    }
    for line in &held.lines {
        emit(&mut sink, line);
    }
    if held.dropped > 0 {
        let msg = format!("{} log lines dropped while frozen", held.dropped);
        let line = format_line("warning", &msg);
        emit(&mut sink, &line);
    }
    if let Some(msg) = failed_open {
        let line = format_line("critical", &msg);
        emit(&mut sink, &line);
    }
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
    if needs_verbose && !sink.verbose {
        return;
    }
    let limited;
    let msg = if needs_verbose {
        msg
    } else {
        match sink.repeats.admit(msg, Instant::now()) {
            Some(text) => {
                limited = text;
                limited.as_str()
            }
            None => return,
        }
    };
    let line = format_line(level, msg);
    if let Some(held) = sink.held.as_mut() {
        if held.lines.len() < HELD_MAX {
            held.lines.push(line);
        } else {
            held.dropped += 1;
        }
        return;
    }
    emit(&mut sink, &line);
}

fn format_line(level: &str, msg: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:06}: {level}: {}\n",
        now.as_secs(),
        now.subsec_micros(),
        escape_controls(msg)
    )
}

fn emit(sink: &mut Sink, line: &str) {
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
    fn a_repeated_warning_is_written_once_a_minute_with_its_count() {
        let mut r = Repeats { recent: Vec::new() };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            r.admit("nfs /a did not answer", at(0)).as_deref(),
            Some("nfs /a did not answer")
        );
        for s in 1..60 {
            assert_eq!(r.admit("nfs /a did not answer", at(s)), None, "{s}");
        }
        // Another message is not held back by the first.
        assert!(r.admit("refused CID 1", at(30)).is_some());
        assert_eq!(
            r.admit("nfs /a did not answer", at(61)).as_deref(),
            Some("nfs /a did not answer (and 59 more times in the 61 s before)")
        );
        assert_eq!(
            r.admit("nfs /a did not answer", at(200)).as_deref(),
            Some("nfs /a did not answer")
        );
        // Bounded: many distinct messages forget the oldest.
        for i in 0..100 {
            r.admit(&format!("m{i}"), at(300 + i));
        }
        assert_eq!(r.recent.len(), REPEAT_TRACKED);
    }

    #[test]
    fn control_characters_cannot_start_a_line() {
        assert_eq!(escape_controls("plain 'x'"), "plain 'x'");
        assert_eq!(
            escape_controls("a\n1.0: critical: FORGED\r\t\u{1b}[2J\u{85}"),
            "a\\n1.0: critical: FORGED\\r\\t\\u{1b}[2J\\u{85}"
        );
    }
}
