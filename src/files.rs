//! The guest-file-* handle table: open files by handle, and the handle counter kept in
//! `<statedir>/qga.state` as qemu-ga keeps it (a GLib key-file, `[global]
//! fd_counter=N`, N the next handle, 1000 for a new file), so a handle number is never
//! handed out twice, not even across restarts.
//!
//! The statedir may be writable by a guest user, so the state file is read without
//! following a symlink, non-blocking (a FIFO there cannot hang the loop), only if it is a
//! regular file, and at most [`STATE_CAP`] bytes of it; it is replaced by writing a new
//! file with O_EXCL|O_NOFOLLOW beside it and renaming that over it, never by writing
//! through what is there. (A minimal version of the statedir rules of issue 13; the
//! shared helpers for them live on another branch.)

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::Error;
use crate::sys::dirfd::Dir;

/// The state file's name in the statedir (qemu-ga's).
pub const STATE_FILE: &str = "qga.state";
/// qemu-ga's first handle (`QGA_PSTATE_DEFAULT_FD_COUNTER`).
pub const FIRST_HANDLE: i64 = 1000;
/// A state file is one short group; anything longer was not written by an agent.
const STATE_CAP: u64 = 4096;
/// Descriptors kept free beyond the handles: the channel, children's pipes, state files.
const FD_RESERVE: u64 = 64;

/// The open files of guest-file-open, by handle.
#[derive(Default)]
pub struct FileHandles {
    open: BTreeMap<i64, File>,
    /// The next handle; read from the state file at the first open.
    next: Option<i64>,
    /// How many may be open; fixed at the first open (see [`FileHandles::capacity`]).
    capacity: Option<usize>,
}

impl FileHandles {
    /// How many handles are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// How many handles may be open at once: `max`, or fewer when the descriptor limit
    /// leaves less room. At the first call the soft RLIMIT_NOFILE is raised (up to the
    /// hard limit) to hold `max` handles plus a reserve, so the default 1024 handles fit
    /// under the usual soft limit of 1024 and opening them never takes the descriptors
    /// the loop needs. Children inherit the raised soft limit.
    pub fn capacity(&mut self, max: usize) -> usize {
        *self.capacity.get_or_insert_with(|| {
            let want = (max as u64).saturating_add(FD_RESERVE);
            let room = match crate::sys::rlimit::raise_nofile(want) {
                Ok(soft) => usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(max),
                Err(_) => max,
            };
            if room < max {
                crate::log::warn(&format!(
                    "RLIMIT_NOFILE leaves room for {room} guest-file handles, not {max}"
                ));
            }
            room.min(max)
        })
    }

    /// Takes the next handle for `file`, committing the counter to the state file first
    /// (qemu-ga's order: a handle that could not be recorded is not handed out).
    pub fn insert(&mut self, statedir: &Path, file: File) -> Result<i64, Error> {
        let handle = match self.next {
            Some(n) => n,
            None => load_counter(statedir)?,
        };
        let next = handle
            .checked_add(1)
            .ok_or_else(|| Error::Failed("the handle counter is exhausted".into()))?;
        if let Err(e) = save_counter(statedir, next) {
            crate::log::warn(&format!(
                "failed to write '{}': {e}",
                statedir.join(STATE_FILE).display()
            ));
            // qemu-ga's counter moves on even when the write failed; so does ours.
            self.next = Some(next);
            return Err(Error::Failed(
                "failed to commit persistent state to disk".into(),
            ));
        }
        self.next = Some(next);
        self.open.insert(handle, file);
        Ok(handle)
    }

    /// The file behind `handle`.
    pub fn get(&mut self, handle: i64) -> Result<&mut File, Error> {
        self.open.get_mut(&handle).ok_or_else(|| not_found(handle))
    }

    /// Forgets `handle`; the file is closed when the returned value is dropped.
    pub fn remove(&mut self, handle: i64) -> Result<File, Error> {
        self.open.remove(&handle).ok_or_else(|| not_found(handle))
    }
}

fn not_found(handle: i64) -> Error {
    Error::Failed(format!("handle '{handle}' has not been found"))
}

/// The next handle recorded in the statedir: [`FIRST_HANDLE`] without a state file or
/// without the key (as qemu-ga). A value that is not a number is an error rather than a
/// restart from 1000, which could hand out a handle again.
pub fn load_counter(statedir: &Path) -> Result<i64, Error> {
    let path = statedir.join(STATE_FILE);
    let what = || format!("failed to load persistent state from '{}'", path.display());
    let text = match read_state(&path) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(FIRST_HANDLE),
        Err(e) => return Err(Error::io(what(), e)),
    };
    match parse_counter(&text) {
        Ok(n) => Ok(n.unwrap_or(FIRST_HANDLE)),
        Err(why) => Err(Error::Failed(format!("{}: {why}", what()))),
    }
}

/// `fd_counter` of the `[global]` group; `Ok(None)` when the key is absent.
fn parse_counter(text: &str) -> Result<Option<i64>, String> {
    let mut group = "";
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            group = name;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("'{line}' is not a key=value line"));
        };
        if group == "global" && key.trim() == "fd_counter" {
            return value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("fd_counter '{}' is not a number", value.trim()));
        }
    }
    Ok(None)
}

/// The state file's text; `None` when there is none. No symlink, FIFO or device.
fn read_state(path: &Path) -> io::Result<Option<String>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::other("not a regular file, refused"));
    }
    let mut bytes = Vec::new();
    file.take(STATE_CAP + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > STATE_CAP {
        return Err(io::Error::other(format!(
            "larger than {STATE_CAP} bytes, refused"
        )));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Replaces the state file with one recording `next`, in qemu-ga's format.
pub fn save_counter(statedir: &Path, next: i64) -> io::Result<()> {
    let dir = Dir::open(statedir)?;
    let text = format!("[global]\nfd_counter={next}\n");
    let pid = std::process::id();
    // A name someone planted makes create_new fail; the next name is tried.
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let tmp = format!("{STATE_FILE}.{pid}.{attempt}");
        match dir.create_new(&tmp, 0o644) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .and_then(|()| dir.rename(&tmp, STATE_FILE));
    if written.is_err() {
        let _ = dir.unlink(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("qga-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn counter_defaults_and_round_trips_in_qemu_format() {
        let d = tempdir("rt");
        assert_eq!(load_counter(&d).unwrap(), FIRST_HANDLE);
        save_counter(&d, 1234).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join(STATE_FILE)).unwrap(),
            "[global]\nfd_counter=1234\n"
        );
        assert_eq!(load_counter(&d).unwrap(), 1234);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn key_file_parsing() {
        assert_eq!(parse_counter("[global]\nfd_counter=1007\n"), Ok(Some(1007)));
        assert_eq!(parse_counter("[other]\nfd_counter=5\n"), Ok(None));
        assert_eq!(parse_counter("# c\n\n[global]\nx=1\n"), Ok(None));
        assert!(parse_counter("[global]\nfd_counter=abc\n").is_err());
        assert!(parse_counter("garbage").is_err());
    }

    #[test]
    fn symlinked_or_fifo_state_is_refused_and_replaced_not_followed() {
        let d = tempdir("link");
        let target = d.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, d.join(STATE_FILE)).unwrap();
        assert!(load_counter(&d).is_err());
        save_counter(&d, 1001).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(load_counter(&d).unwrap(), 1001);
        std::fs::remove_file(d.join(STATE_FILE)).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(d.join(STATE_FILE))
            .status()
            .unwrap();
        assert!(status.success());
        assert!(load_counter(&d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn capacity_raises_the_descriptor_limit_to_hold_the_handles() {
        let mut h = FileHandles::default();
        assert_eq!(h.capacity(100), 100);
        let (soft, hard) = crate::sys::rlimit::nofile().unwrap();
        assert!(soft >= (100 + FD_RESERVE).min(hard));
        // Fixed at the first call.
        assert_eq!(h.capacity(5), 100);
    }

    #[test]
    fn handles_count_up_and_unknown_ones_are_named() {
        let d = tempdir("handles");
        let mut h = FileHandles::default();
        let a = h.insert(&d, File::open("/dev/null").unwrap()).unwrap();
        let b = h.insert(&d, File::open("/dev/null").unwrap()).unwrap();
        assert_eq!((a, b), (1000, 1001));
        assert_eq!(h.len(), 2);
        h.remove(a).unwrap();
        assert_eq!(
            h.get(a).unwrap_err().to_string(),
            "handle '1000' has not been found"
        );
        let mut again = FileHandles::default();
        assert_eq!(
            again.insert(&d, File::open("/dev/null").unwrap()).unwrap(),
            1002
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
