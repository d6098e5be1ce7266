//! File-descriptor flags: non-blocking mode and SIGIO ownership (fcntl); and an open(2)
//! for reading that sets close-on-exec without one.

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

/// Opens `path` read-only and close-on-exec with openat(AT_FDCWD) (2.6.16): musl's
/// open() follows O_CLOEXEC with an fcntl(F_SETFD) for kernels before 2.6.23, which
/// ignore the flag, and its openat() does not. That is one syscall in four where the
/// agent reads hundreds of /proc files for one reply.
pub fn open_readonly(path: &std::ffi::CStr) -> io::Result<std::fs::File> {
    // SAFETY: `path` is NUL-terminated and lives for the call.
    let fd = unsafe {
        libc::openat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}
