//! FITRIM (2.6.37+): discard the unused blocks of a mounted filesystem. On older
//! kernels the ioctl is unknown and fails with ENOTTY, which callers report as "trim
//! not supported", as qemu-ga does.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// struct fstrim_range (linux/fs.h).
#[repr(C)]
struct FstrimRange {
    start: u64,
    len: u64,
    minlen: u64,
}

/// _IOWR('X', 121, struct fstrim_range).
const FITRIM: libc::c_ulong = 0xC018_5879;

/// What the kernel answered: the minimum it used (it may raise the one asked for to
/// the device's discard granularity) and the bytes trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    pub minimum: u64,
    pub trimmed: u64,
}

/// Trims the whole filesystem that `dir` (opened read-only) is on, skipping free
/// extents shorter than `minimum` bytes.
pub fn fitrim(dir: &File, minimum: u64) -> io::Result<Trimmed> {
    let mut range = FstrimRange {
        start: 0,
        len: u64::MAX,
        minlen: minimum,
    };
    // SAFETY: `dir` stays open for the call; `range` is a valid fstrim_range the
    // kernel reads and writes back.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FITRIM as _, &mut range) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(Trimmed {
        minimum: range.minlen,
        trimmed: range.len,
    })
}
