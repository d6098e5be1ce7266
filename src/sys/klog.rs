//! The kernel log ring buffer through syslog(2)/klogctl: SIZE_BUFFER (10, since 2.6.6)
//! and the non-destructive READ_ALL (3). /dev/kmsg records need 3.5, so not used.

use std::io;

use super::check;

const SYSLOG_ACTION_READ_ALL: libc::c_int = 3;
const SYSLOG_ACTION_SIZE_BUFFER: libc::c_int = 10;
/// Used when the size query fails; CONFIG_LOG_BUF_SHIFT defaults to 17 or 18.
const FALLBACK_SIZE: usize = 256 * 1024;
/// log_buf_len= can be set huge on the kernel command line; read at most this much.
const MAX_SIZE: usize = 16 * 1024 * 1024;

/// The whole ring buffer as the kernel formats it for READ_ALL ("<6>[ 1.23] text\n").
/// EPERM without CAP_SYSLOG/CAP_SYS_ADMIN when dmesg_restrict=1 (2.6.37+).
pub fn read_all() -> io::Result<Vec<u8>> {
    // SAFETY: SIZE_BUFFER ignores the buffer and length arguments.
    let size =
        match check(unsafe { libc::klogctl(SYSLOG_ACTION_SIZE_BUFFER, std::ptr::null_mut(), 0) }) {
            Ok(n) if n > 0 => (n as usize).min(MAX_SIZE),
            _ => FALLBACK_SIZE,
        };
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` is valid for writes of `size` bytes, and `size` fits a c_int.
    let n = check(unsafe {
        libc::klogctl(
            SYSLOG_ACTION_READ_ALL,
            buf.as_mut_ptr().cast::<libc::c_char>(),
            size as libc::c_int,
        )
    })?;
    buf.truncate(n as usize);
    Ok(buf)
}
