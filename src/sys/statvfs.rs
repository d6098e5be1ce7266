//! statvfs(2) on a mount point, directly or in a forked child (which the child manager
//! bounds with a deadline) so that a hung network filesystem cannot hang the agent.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::check;

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

/// Starts statvfs(path) in a forked child, in a process group of its own, that writes
/// its answer to the returned pipe and exits; a hung network filesystem then hangs only
/// the child, which the caller kills at its deadline (NFS waits are killable since
/// 2.6.25). Decode what the pipe delivered with [`decode_answer`].
pub fn start_in_child(path: &Path) -> io::Result<(u32, OwnedFd)> {
    // Everything the child needs is prepared before the fork: it only makes syscalls.
    let cpath = c_path(path)?;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the agent is single-threaded, and the child only makes async-signal-safe
    // calls (setpgid, statvfs, write, _exit): no allocation, no locks.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        let msg = match raw_statvfs(&cpath) {
            Ok(st) => st.encode(),
            Err(e) => {
                let mut msg = [0u8; ENCODED];
                msg[0] = FAILED;
                msg[1..5].copy_from_slice(&e.raw_os_error().unwrap_or(libc::EIO).to_ne_bytes());
                msg
            }
        };
        // SAFETY: setpgid(0, 0) takes plain integers; `msg` is valid for reads of its
        // length; _exit never returns and runs no destructors of the parent's state.
        unsafe {
            libc::setpgid(0, 0);
            libc::write(writer.as_raw_fd(), msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
    }
    Ok((pid as u32, reader))
}

/// What a [`start_in_child`] child wrote: its statvfs, or the errno it failed with.
/// A short message (the child was killed first) reads as EIO.
pub fn decode_answer(msg: &[u8]) -> io::Result<FsStat> {
    let Ok(msg) = <&[u8; ENCODED]>::try_from(msg) else {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    };
    if msg[0] == FAILED {
        let errno = i32::from_ne_bytes(msg[1..5].try_into().unwrap_or([0; 4]));
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(FsStat::decode(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_an_error() {
        assert!(statvfs(Path::new("/nonexistent/qga")).is_err());
    }

    #[test]
    fn answers_round_trip() {
        let st = statvfs(Path::new("/")).unwrap();
        assert_eq!(decode_answer(&st.encode()).unwrap(), st);
        assert_eq!(
            decode_answer(&[0u8; 3]).unwrap_err().raw_os_error(),
            Some(libc::EIO)
        );
    }
}
