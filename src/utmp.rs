//! glibc utmp/wtmp records (/var/run/utmp, /var/log/wtmp), parsed by hand: musl's
//! `struct utmpx` is 400 bytes on x86_64 and its getutxent() is a stub, while the
//! files hold glibc's 384-byte records (same layout on x86_64 and i386).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Size of one glibc `struct utmp` on disk.
pub const RECORD_SIZE: usize = 384;

pub const EMPTY: i16 = 0;
pub const RUN_LVL: i16 = 1;
pub const BOOT_TIME: i16 = 2;
pub const NEW_TIME: i16 = 3;
pub const OLD_TIME: i16 = 4;
pub const INIT_PROCESS: i16 = 5;
pub const LOGIN_PROCESS: i16 = 6;
pub const USER_PROCESS: i16 = 7;
pub const DEAD_PROCESS: i16 = 8;
pub const ACCOUNTING: i16 = 9;

/// One record; strings are cut at the first NUL (the fields need not have one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UtmpRecord {
    /// `ut_type`: one of the constants above.
    pub kind: i16,
    pub pid: i32,
    /// Terminal ("pts/0", "tty1"; "~" for boot/shutdown/runlevel records).
    pub line: String,
    pub id: String,
    pub user: String,
    pub host: String,
    /// Seconds since the epoch. Read as unsigned 32-bit: glibc stores an int32 that
    /// wraps in 2038, and no wtmp predates 1970.
    pub tv_sec: i64,
    pub tv_usec: i32,
}

// Offsets in glibc's struct utmp (see compat.md §3.5).
const OFF_TYPE: usize = 0;
const OFF_PID: usize = 4;
const OFF_LINE: usize = 8;
const LEN_LINE: usize = 32;
const OFF_ID: usize = 40;
const LEN_ID: usize = 4;
const OFF_USER: usize = 44;
const LEN_USER: usize = 32;
const OFF_HOST: usize = 76;
const LEN_HOST: usize = 256;
const OFF_SEC: usize = 340;
const OFF_USEC: usize = 344;

/// Parses whole records; a trailing partial record (a file being written) is ignored.
/// glibc's _PATH_UTMP, then where systemd distributions keep it when /var/run is not
/// the /run symlink.
const UTMP_FILES: [&str; 2] = ["var/run/utmp", "run/utmp"];

/// The records of the current-sessions file below the root. No utmp file (systemd
/// without utmp support) reads as no sessions, as glibc's getutxent gives.
pub fn read_current(ctx: &crate::ctx::Ctx) -> Result<Vec<UtmpRecord>, crate::error::Error> {
    for rel in UTMP_FILES {
        match crate::whole_file::read(&ctx.path(rel)) {
            Ok(bytes) => return Ok(parse_records(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(crate::error::Error::io(
                    format!("failed to read '/{rel}'"),
                    e,
                ))
            }
        }
    }
    Ok(Vec::new())
}

pub fn parse_records(bytes: &[u8]) -> Vec<UtmpRecord> {
    bytes.chunks_exact(RECORD_SIZE).map(parse_record).collect()
}

fn parse_record(r: &[u8]) -> UtmpRecord {
    let i16_at = |o: usize| i16::from_le_bytes([r[o], r[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]]);
    let text = |o: usize, len: usize| {
        let field = &r[o..o + len];
        let end = field.iter().position(|&b| b == 0).unwrap_or(len);
        String::from_utf8_lossy(&field[..end]).into_owned()
    };
    UtmpRecord {
        kind: i16_at(OFF_TYPE),
        pid: u32_at(OFF_PID) as i32,
        line: text(OFF_LINE, LEN_LINE),
        id: text(OFF_ID, LEN_ID),
        user: text(OFF_USER, LEN_USER),
        host: text(OFF_HOST, LEN_HOST),
        tv_sec: i64::from(u32_at(OFF_SEC)),
        tv_usec: u32_at(OFF_USEC) as i32,
    }
}

/// Encodes a record in glibc's layout (over-long strings are cut). For building test
/// fixtures; the agent never writes utmp.
pub fn encode_record(rec: &UtmpRecord) -> [u8; RECORD_SIZE] {
    let mut r = [0u8; RECORD_SIZE];
    let mut put = |o: usize, len: usize, s: &str| {
        let b = s.as_bytes();
        let n = b.len().min(len);
        r[o..o + n].copy_from_slice(&b[..n]);
    };
    put(OFF_LINE, LEN_LINE, &rec.line);
    put(OFF_ID, LEN_ID, &rec.id);
    put(OFF_USER, LEN_USER, &rec.user);
    put(OFF_HOST, LEN_HOST, &rec.host);
    r[OFF_TYPE..OFF_TYPE + 2].copy_from_slice(&rec.kind.to_le_bytes());
    r[OFF_PID..OFF_PID + 4].copy_from_slice(&rec.pid.to_le_bytes());
    r[OFF_SEC..OFF_SEC + 4].copy_from_slice(&(rec.tv_sec as u32).to_le_bytes());
    r[OFF_USEC..OFF_USEC + 4].copy_from_slice(&rec.tv_usec.to_le_bytes());
    r
}

/// The newest USER_PROCESS record (wtmp is appended in time order, but a clock step can
/// break that, so compare times; the later record wins a tie).
pub fn last_login(records: &[UtmpRecord]) -> Option<&UtmpRecord> {
    records
        .iter()
        .filter(|r| r.kind == USER_PROCESS && !r.user.is_empty())
        .max_by_key(|r| (r.tv_sec, r.tv_usec))
}

/// The newest USER_PROCESS record of a utmp/wtmp file, read backwards from the end so
/// that a wtmp of hundreds of megabytes costs a few reads, not a full scan.
pub fn last_login_in_file(path: &Path) -> io::Result<Option<UtmpRecord>> {
    const CHUNK_RECORDS: u64 = 256;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut end = len - len % RECORD_SIZE as u64;
    let mut buf = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK_RECORDS * RECORD_SIZE as u64);
        buf.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        let recs = parse_records(&buf);
        if let Some(r) = recs
            .iter()
            .rev()
            .find(|r| r.kind == USER_PROCESS && !r.user.is_empty())
        {
            return Ok(Some(r.clone()));
        }
        end = start;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: i16, user: &str, line: &str, sec: i64) -> UtmpRecord {
        UtmpRecord {
            kind,
            pid: 42,
            line: line.into(),
            id: "ts/0".into(),
            user: user.into(),
            host: "10.0.0.1".into(),
            tv_sec: sec,
            tv_usec: 5,
        }
    }

    #[test]
    fn glibc_record_round_trip() {
        let r = rec(USER_PROCESS, "root", "pts/0", 1_700_000_000);
        let bytes = encode_record(&r);
        assert_eq!(bytes.len(), 384);
        // tv_sec at offset 340 as int32, as glibc writes it.
        assert_eq!(&bytes[340..344], &1_700_000_000u32.to_le_bytes());
        assert_eq!(parse_records(&bytes), vec![r]);
    }

    #[test]
    fn fields_without_nul_and_partial_tail() {
        let mut r = rec(USER_PROCESS, "u2345678901234567890123456789012", "l", 1);
        r.user.truncate(32);
        let mut bytes = encode_record(&r).to_vec();
        bytes.extend_from_slice(&[0u8; 100]);
        let parsed = parse_records(&bytes);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].user.len(), 32);
    }

    #[test]
    fn time_after_2038_reads_unsigned() {
        let r = rec(USER_PROCESS, "root", "pts/0", 3_000_000_000);
        assert_eq!(parse_records(&encode_record(&r))[0].tv_sec, 3_000_000_000);
    }

    #[test]
    fn last_login_in_file_reads_backwards_across_chunks() {
        let path = std::env::temp_dir().join(format!("qga-wtmp-{}", std::process::id()));
        let mut bytes = encode_record(&rec(USER_PROCESS, "early", "pts/0", 10)).to_vec();
        for i in 0..600 {
            bytes.extend_from_slice(&encode_record(&rec(DEAD_PROCESS, "", "pts/0", 20 + i)));
        }
        bytes.extend_from_slice(&[7u8; 100]);
        std::fs::write(&path, &bytes).unwrap();
        let r = last_login_in_file(&path).unwrap().unwrap();
        assert_eq!(r.user, "early");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(last_login_in_file(&path).unwrap(), None);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn last_login_picks_the_newest_user_process() {
        let recs = vec![
            rec(USER_PROCESS, "alice", "pts/0", 100),
            rec(USER_PROCESS, "bob", "pts/1", 300),
            rec(DEAD_PROCESS, "", "pts/1", 400),
            rec(BOOT_TIME, "reboot", "~", 500),
        ];
        assert_eq!(last_login(&recs).unwrap().user, "bob");
        assert!(last_login(&recs[2..]).is_none());
    }
}
