//! Raw serial line setup for isa-serial: cfmakeraw, 38400 baud, VMIN=1/VTIME=0, input
//! flushed (qemu-ga's channel-posix settings, with a full cfmakeraw).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::check;

pub fn make_raw(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: `tio` is a valid termios filled by tcgetattr before use; `fd` is open.
    unsafe {
        let mut tio: libc::termios = std::mem::zeroed();
        check(libc::tcgetattr(fd, &mut tio))?;
        libc::cfmakeraw(&mut tio);
        check(libc::cfsetispeed(&mut tio, libc::B38400))?;
        check(libc::cfsetospeed(&mut tio, libc::B38400))?;
        tio.c_cc[libc::VMIN] = 1;
        tio.c_cc[libc::VTIME] = 0;
        check(libc::tcflush(fd, libc::TCIFLUSH))?;
        check(libc::tcsetattr(fd, libc::TCSANOW, &tio))?;
    }
    Ok(())
}
