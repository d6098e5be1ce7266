//! statvfs(2) on a mount point, directly or in a forked child with a deadline so that
//! a hung network filesystem cannot hang the agent.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::check;
use super::child;
use super::poll::{self, POLLIN};

/// The statvfs fields the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStat {
    /// Fragment size: the unit of the block counts.
    pub frsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    /// Blocks available to unprivileged users.
    pub bavail: u64,
    /// Mounted read-only (ST_RDONLY), whatever the option string says.
    pub readonly: bool,
}

/// Tag byte, four u64 fields, the read-only flag.
const ENCODED: usize = 1 + 8 * 4 + 1;
const OK: u8 = 0;
const FAILED: u8 = 1;

impl FsStat {
    fn encode(&self) -> [u8; ENCODED] {
        let mut b = [0u8; ENCODED];
        b[0] = OK;
        for (i, v) in [self.frsize, self.blocks, self.bfree, self.bavail]
            .iter()
            .enumerate()
        {
            b[1 + i * 8..9 + i * 8].copy_from_slice(&v.to_ne_bytes());
        }
        b[33] = u8::from(self.readonly);
        b
    }

    fn decode(b: &[u8; ENCODED]) -> FsStat {
        let n = |i: usize| u64::from_ne_bytes(b[1 + i * 8..9 + i * 8].try_into().unwrap_or([0; 8]));
        FsStat {
            frsize: n(0),
            blocks: n(1),
            bfree: n(2),
            bavail: n(3),
            readonly: b[33] != 0,
        }
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn raw_statvfs(path: &CString) -> io::Result<FsStat> {
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer.
    check(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    Ok(FsStat {
        frsize: frsize as u64,
        blocks: st.f_blocks as u64,
        bfree: st.f_bfree as u64,
        bavail: st.f_bavail as u64,
        readonly: st.f_flag & libc::ST_RDONLY != 0,
    })
}

/// statvfs(path) in this process.
pub fn statvfs(path: &Path) -> io::Result<FsStat> {
    raw_statvfs(&c_path(path)?)
}

/// statvfs(path) in a forked child; `Ok(None)` if it did not answer within `timeout`
/// (the child is then SIGKILLed: NFS waits are killable since 2.6.25).
pub fn statvfs_bounded(path: &Path, timeout: Duration) -> io::Result<Option<FsStat>> {
    // Everything the child needs is prepared before the fork: it only makes syscalls.
    let cpath = c_path(path)?;
    let reply = in_child(timeout, || match raw_statvfs(&cpath) {
        Ok(st) => st.encode(),
        Err(e) => {
            let mut msg = [0u8; ENCODED];
            msg[0] = FAILED;
            msg[1..5].copy_from_slice(&e.raw_os_error().unwrap_or(libc::EIO).to_ne_bytes());
            msg
        }
    })?;
    match reply {
        None => Ok(None),
        Some(msg) if msg[0] == FAILED => {
            let errno = i32::from_ne_bytes(msg[1..5].try_into().unwrap_or([0; 4]));
            Err(io::Error::from_raw_os_error(errno))
        }
        Some(msg) => Ok(Some(FsStat::decode(&msg))),
    }
}

/// Runs `work` in a forked child and returns its message, or `None` when it did not
/// arrive within `timeout`; the child is always killed if needed and reaped. `work`
/// must only make async-signal-safe calls (no allocation, no locks).
fn in_child(
    timeout: Duration,
    work: impl FnOnce() -> [u8; ENCODED],
) -> io::Result<Option<[u8; ENCODED]>> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs only `work` (async-signal-safe by contract), write and
    // _exit, so it touches no lock another thread could hold.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        let msg = work();
        // SAFETY: `msg` is valid for reads of its length; _exit never returns and runs
        // no atexit handlers or destructors of the parent's state.
        unsafe {
            libc::write(writer.as_raw_fd(), msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
    }
    drop(writer);
    let pid = pid as u32;
    let result = read_message(std::fs::File::from(reader), Instant::now() + timeout);
    if !matches!(result, Ok(Some(_))) {
        let _ = child::kill(pid, libc::SIGKILL);
    }
    child::wait(pid)?;
    result
}

fn read_message(mut file: std::fs::File, deadline: Instant) -> io::Result<Option<[u8; ENCODED]>> {
    let mut got = Vec::with_capacity(ENCODED);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let mut pfd = [poll::pollfd(file.as_raw_fd(), POLLIN)];
        match poll::wait(&mut pfd, Some(left)) {
            Ok(0) => break,
            Ok(_) => {
                let mut buf = [0u8; ENCODED];
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                if got.len() >= ENCODED {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(<[u8; ENCODED]>::try_from(&got[..]).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_matches_direct() {
        let direct = statvfs(Path::new("/")).unwrap();
        let bounded = statvfs_bounded(Path::new("/"), Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert_eq!(direct.frsize, bounded.frsize);
        assert_eq!(direct.blocks, bounded.blocks);
        assert!(bounded.blocks > 0);
    }

    #[test]
    fn missing_path_is_an_error() {
        assert!(statvfs(Path::new("/nonexistent/qga")).is_err());
        let e =
            statvfs_bounded(Path::new("/nonexistent/qga"), Duration::from_secs(10)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn a_child_that_hangs_is_killed_and_reaped() {
        // Stands in for statvfs on a dead NFS server: the child never answers.
        let got = in_child(Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(300));
            [0u8; ENCODED]
        })
        .unwrap();
        assert_eq!(got, None);
    }
}
