//! The kernel log ring buffer through syslog(2)/klogctl: SIZE_BUFFER (10, since 2.6.6)
//! and the non-destructive READ_ALL (3); and /dev/kmsg (records, 3.5+), only to learn
//! whether the log changed: READ_ALL formats the whole buffer, which costs the kernel
//! most of a millisecond for 128 KiB, while a record read that finds nothing costs a
//! microsecond.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

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

/// Two readers of /dev/kmsg: one left after the last record, so a read that finds
/// nothing (EAGAIN) means the kernel logged nothing since; and one sent to the first
/// record after the last SYSLOG_ACTION_CLEAR (SEEK_DATA), the start of what READ_ALL
/// returns, which `dmesg -C` moves without logging anything.
pub struct KmsgWatch {
    end: File,
    start: File,
}

/// Big enough for any record (CONSOLE_EXT_LOG_MAX); a smaller buffer gets EINVAL.
const RECORD_MAX: usize = 8192;

impl KmsgWatch {
    /// Fails before 3.5, where /dev/kmsg can only be written (read gives EINVAL), and
    /// without CAP_SYSLOG under dmesg_restrict.
    pub fn open() -> io::Result<KmsgWatch> {
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open("/dev/kmsg")
        };
        let mut watch = KmsgWatch {
            end: open()?,
            start: open()?,
        };
        watch.mark_end()?;
        // Proves that records can be read here at all.
        watch.logged_since_mark()?;
        Ok(watch)
    }

    /// Forgets every record so far: [`KmsgWatch::logged_since_mark`] reports only later ones.
    pub fn mark_end(&mut self) -> io::Result<()> {
        seek(&self.end, libc::SEEK_END)
    }

    /// Whether a record was logged since [`KmsgWatch::mark_end`]; EPIPE (records
    /// overwritten before being read) counts as logged.
    pub fn logged_since_mark(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; RECORD_MAX];
        match self.end.read(&mut buf) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The sequence number of the first record after the last clear that is still in
    /// the buffer; `None` when there is none.
    pub fn first_seq(&mut self) -> io::Result<Option<u64>> {
        seek(&self.start, libc::SEEK_DATA)?;
        let mut buf = [0u8; RECORD_MAX];
        // EPIPE: the first record after the clear was overwritten; the kernel has moved
        // this reader to the oldest one left, so the next read returns that. A few
        // tries, as records may be overwritten again in between.
        for _ in 0..4 {
            match self.start.read(&mut buf) {
                // "PRI,SEQ,TIME,FLAGS;text"
                Ok(n) => {
                    let seq = buf[..n]
                        .split(|&b| b == b',')
                        .nth(1)
                        .and_then(|f| std::str::from_utf8(f).ok()?.parse().ok());
                    return seq.map(Some).ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidData, "malformed /dev/kmsg record")
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::from_raw_os_error(libc::EPIPE))
    }
}

fn seek(file: &File, whence: libc::c_int) -> io::Result<()> {
    // SAFETY: `file` stays open for the call; lseek only moves its offset.
    let rc = unsafe { libc::lseek(file.as_raw_fd(), 0, whence) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The watch sees a record logged after its mark (this adds one harmless line to the
    /// machine's kernel log). Nothing is asserted before the write: parallel tests
    /// attach loop devices, which the kernel logs.
    #[test]
    #[ignore = "needs root"]
    fn watch_sees_a_record_logged_after_its_mark() {
        let mut w = KmsgWatch::open().unwrap();
        let first = w.first_seq().unwrap();
        w.mark_end().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .and_then(|mut f| f.write_all(b"qga-bc: kernel log watch test\n"))
            .unwrap();
        assert!(w.logged_since_mark().unwrap());
        // A record logged at the end leaves the start where it was, unless the buffer
        // wrapped (then the start moved on).
        assert!(w.first_seq().unwrap() >= first);
    }
}
