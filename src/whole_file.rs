//! Whole files read in as few syscalls as they allow. Not `fs::read`: it asks fstat and
//! lseek for the size first, which a /proc or /sys file does not give (0), then reads
//! from 32 bytes up: eight reads for /proc/stat, seven for /proc/diskstats, where one
//! with room enough and one that says end of file do.

use std::io::{self, Read};
use std::path::Path;

/// What the first read may fill: most /proc and /sys files fit.
const FIRST_READ: usize = 4096;

/// Appends the file's bytes to `buf`.
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    buf.reserve(FIRST_READ);
    // Through `Take`, read_to_end fills `buf` without File's size probe.
    Read::take(&mut file, u64::MAX).read_to_end(buf)?;
    Ok(())
}

/// The file's bytes.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_into(path, &mut buf)?;
    Ok(buf)
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
        let mut buf = b"head".to_vec();
        read_into(&dir.join("big"), &mut buf).unwrap();
        assert_eq!(&buf[..4], b"head");
        assert!(buf[4..] == big[..]);
        std::fs::write(dir.join("latin1"), b"caf\xe9").unwrap();
        let e = read_to_string(&dir.join("latin1")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
