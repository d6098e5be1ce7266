//! ppoll(2) (2.6.16) with every signal unblocked for the duration of the wait only, so a
//! signal the agent waits for (SIGTERM, SIGIO) can never slip in between a check and
//! the wait.

use std::io;
use std::time::Duration;

pub use libc::pollfd as PollFd;
pub use libc::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};

pub fn pollfd(fd: i32, events: i16) -> PollFd {
    PollFd {
        fd,
        events,
        revents: 0,
    }
}

/// Waits for `fds` or `timeout` (None: forever). EINTR comes back as an error of kind
/// `Interrupted` after a handled signal.
pub fn wait(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: an all-zero sigset_t is a valid value; sigemptyset initialises it.
    let mut unblocked: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `unblocked` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut unblocked) };
    // SAFETY: `fds` is a valid slice for its length; `ts_ptr` is null or points to `ts`,
    // which outlives the call; `unblocked` was initialised above.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            ts_ptr,
            &unblocked,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}
