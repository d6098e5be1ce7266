//! The only place with `unsafe`: thin wrappers over the syscalls std does not offer.
//! Each returns `io::Result` and knows nothing of JSON. Everything here exists on
//! Linux 2.6.32; anything newer gets an ENOSYS fallback and names its version.
#![allow(unsafe_code)]

pub mod alloc;
pub mod child;
pub mod clock;
pub mod dirfd;
pub mod fd;
pub mod fitrim;
pub mod freeze;
pub mod fsids;
pub mod hostname;
pub mod ifaddrs;
pub mod klog;
pub mod mem;
pub mod nvme;
pub mod poll;
pub mod process;
pub mod rlimit;
pub mod secret;
pub mod signal;
pub mod statvfs;
pub mod sysconf;
pub mod tty;
pub mod uname;
pub mod vsock;

use std::io;

/// Turns a `-1` return into the errno error.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
