//! Whole files read in as few syscalls as they allow. Not `fs::read`: it asks fstat and
//! lseek for the size first, which a /proc or /sys file does not give (0), then reads
//! from 32 bytes up: eight reads for /proc/stat, seven for /proc/diskstats, where one
//! with room enough and one that says end of file do (or the one, for the /proc files
//! the kernel hands over whole: [`Reads::One`]).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// The kernel hands over the whole file in one read that fits it (seq_file: stat,
    /// status; statm, a hundred bytes): a shorter read is the end, and the closing read
    /// that returns 0 is saved, one syscall per file.
    One,
    /// Read until a read returns 0.
    UntilEmpty,
}

/// Reads the file at `path` into `buf` (cleared first), opened without musl's extra
/// fcntl (sys::fd::open_readonly).
pub fn read_cstr(path: &CStr, buf: &mut Vec<u8>, reads: Reads) -> io::Result<()> {
    buf.clear();
    read_from(crate::sys::fd::open_readonly(path)?, buf, reads)
}

/// Reads the open file `f` to its end into `buf` (cleared first).
pub fn read_from(mut f: File, buf: &mut Vec<u8>, reads: Reads) -> io::Result<()> {
    const CHUNK: usize = 4096;
    buf.clear();
    loop {
        let len = buf.len();
        // What is left of the capacity, unless too little: the read that only confirms
        // the end then needs no bigger buffer.
        if buf.capacity() - len < CHUNK / 4 {
            buf.reserve(CHUNK);
        }
        let want = buf.capacity() - len;
        buf.resize(len + want, 0);
        match f.read(&mut buf[len..]) {
            Ok(n) => {
                buf.truncate(len + n);
                if n == 0 || (reads == Reads::One && n < want) {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => {
                buf.truncate(len);
                return Err(e);
            }
        }
    }
}

/// The file's bytes into `buf` (cleared first).
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    read_cstr(&path, buf, Reads::UntilEmpty)
}

/// The file's bytes.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_into(path, &mut buf)?;
    Ok(buf)
}

/// `bytes` as text, invalid UTF-8 replaced; valid text (the usual case) is kept as it is,
/// not copied as `String::from_utf8_lossy` would.
pub fn lossy_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`lossy_text`] of borrowed bytes: valid text is borrowed. `String::from_utf8_lossy`
/// would borrow it too, but checks it a byte at a time; `str::from_utf8` takes ASCII a
/// word at a time, which counts for the process table's hundreds of reads a request.
pub fn lossy_str(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.into(),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The file's text; not UTF-8 is an `InvalidData` error, as from `fs::read_to_string`.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_and_large_files_are_read_whole() {
        let stat = read_to_string(Path::new("/proc/stat")).unwrap();
        assert!(stat.starts_with("cpu ") && stat.ends_with('\n'));
        let dir = std::env::temp_dir().join(format!("qga-whole-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("big"), &big).unwrap();
        let mut buf = b"left over".to_vec();
        read_into(&dir.join("big"), &mut buf).unwrap();
        assert!(buf == big);
        let mut stat = Vec::new();
        read_cstr(c"/proc/self/stat", &mut stat, Reads::One).unwrap();
        assert!(stat.ends_with(b"\n"));
        std::fs::write(dir.join("latin1"), b"caf\xe9").unwrap();
        let e = read_to_string(&dir.join("latin1")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
