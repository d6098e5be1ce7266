//! AF_VSOCK stream listener for vsock-listen (the kernel has vsock since 3.9; on older
//! guests socket() fails with EAFNOSUPPORT and the agent says so).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::check;

/// A non-blocking listening socket: a peer that connects and leaves before the accept
/// must not leave the agent blocked in accept(2).
pub fn listen(cid: u32, port: u32) -> io::Result<OwnedFd> {
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: plain socket(2) call; the result is checked and owned at once.
    let raw = check(unsafe { libc::socket(libc::AF_VSOCK, kind, 0) })?;
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero sockaddr_vm is valid; the fields are set below.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    // SAFETY: `addr` lives for the call and the length matches its type.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_vm as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    })?;
    // SAFETY: `fd` is a bound socket.
    check(unsafe { libc::listen(fd.as_raw_fd(), 1) })?;
    Ok(fd)
}

/// Accepts one connection, non-blocking and close-on-exec; returns it with the peer's
/// CID. EAGAIN (nobody waiting) comes back as `WouldBlock`.
pub fn accept(listener: &OwnedFd) -> io::Result<(OwnedFd, u32)> {
    // SAFETY: an all-zero sockaddr_vm is valid; accept4 fills it in.
    let mut peer: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: `peer` and `len` live for the call and `len` is its size; the result is
    // checked and owned at once.
    let raw = check(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            &mut peer as *mut libc::sockaddr_vm as *mut libc::sockaddr,
            &mut len,
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    })?;
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    Ok((unsafe { OwnedFd::from_raw_fd(raw) }, peer.svm_cid))
}
