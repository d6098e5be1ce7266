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

const ENCODED: usize = 8 * 4 + 1;

impl FsStat {
    fn encode(&self) -> [u8; ENCODED] {
        let mut b = [0u8; ENCODED];
        for (i, v) in [self.frsize, self.blocks, self.bfree, self.bavail]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
        }
        b[32] = u8::from(self.readonly);
        b
    }

    fn decode(b: &[u8; ENCODED]) -> FsStat {
        let n = |i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        FsStat {
            frsize: n(0),
            blocks: n(1),
            bfree: n(2),
            bavail: n(3),
            readonly: b[32] != 0,
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
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs only async-signal-safe code (statvfs, write, _exit) and
    // touches no lock another thread could hold.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        let msg = match raw_statvfs(&cpath) {
            Ok(st) => st.encode(),
            Err(_) => [0xff; ENCODED],
        };
        // SAFETY: `msg` is valid for reads of its length; _exit never returns and runs
        // no atexit handlers or destructors of the parent's state.
        unsafe {
            libc::write(writer.as_raw_fd(), msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
    }
    drop(writer);
    let pid = pid as u32;
    let deadline = Instant::now() + timeout;
    let mut file = std::fs::File::from(reader);
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
                    Err(e) => {
                        let _ = child::kill(pid, libc::SIGKILL);
                        let _ = child::wait(pid);
                        return Err(e);
                    }
                }
                if got.len() >= ENCODED {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = child::kill(pid, libc::SIGKILL);
                let _ = child::wait(pid);
                return Err(e);
            }
        }
    }
    if got.len() < ENCODED {
        let _ = child::kill(pid, libc::SIGKILL);
    }
    child::wait(pid)?;
    let Ok(msg) = <[u8; ENCODED]>::try_from(&got[..]) else {
        return Ok(None);
    };
    if msg == [0xff; ENCODED] {
        return Err(io::Error::other("statvfs failed"));
    }
    Ok(Some(FsStat::decode(&msg)))
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
        assert!(statvfs_bounded(Path::new("/nonexistent/qga"), Duration::from_secs(10)).is_err());
    }
}
