//! File-descriptor flags: non-blocking mode and SIGIO ownership (fcntl).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::check;

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_flags(fd, libc::O_NONBLOCK)
}

/// Asks the kernel to send this process SIGIO on events of `fd`. virtio_console signals
/// host connect/disconnect this way (kernel commit 3eae0adea949), which lets the agent
/// sleep instead of polling a port that reports POLLHUP while no host is attached.
pub fn set_async_owner(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_SETOWN takes a pid argument and `fd` is open for the call.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETOWN, libc::getpid()) })?;
    // O_ASYNC is ignored by open(2) on Linux; it only takes effect through F_SETFL.
    set_flags(fd, libc::O_ASYNC | libc::O_NONBLOCK)
}

fn set_flags(fd: BorrowedFd<'_>, add: libc::c_int) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL take no pointers; `fd` is open for both calls.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above; `flags` came from F_GETFL on the same descriptor.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | add) })?;
    Ok(())
}
