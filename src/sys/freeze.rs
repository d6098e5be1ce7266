//! FIFREEZE and FITHAW (linux/fs.h, since 2.6.29): freeze and thaw the filesystem that
//! holds an open directory.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `_IOWR('X', 119, int)`.
const FIFREEZE: libc::c_ulong = 0xC004_5877;
/// `_IOWR('X', 120, int)`.
const FITHAW: libc::c_ulong = 0xC004_5878;

/// Freezes the filesystem mounted at `dir` (FIFREEZE, since 2.6.29).
pub fn freeze(dir: &File) -> io::Result<()> {
    // SAFETY: `dir` stays open for the call; FIFREEZE reads no argument.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FIFREEZE as _, 0) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Thaws the filesystem mounted at `dir` once (FITHAW, since 2.6.29). EINVAL: it was
/// not frozen.
pub fn thaw(dir: &File) -> io::Result<()> {
    // SAFETY: `dir` stays open for the call; FITHAW reads no argument.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FITHAW as _, 0) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
