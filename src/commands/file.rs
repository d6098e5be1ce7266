//! guest-file-open, -read, -write, -seek, -flush and -close, as qemu-ga 7.2 answers them:
//! fopen(3) modes, O_NOCTTY|O_NONBLOCK|O_CLOEXEC, a new file made 0666 whatever the
//! umask, the 48 MiB read limit, qemu-ga's error texts. Unlike qemu-ga there is no stdio
//! buffer between the host and the file: a write is in the file when its reply is sent,
//! and a read of a FIFO or a device with nothing to give answers `count 0, eof false`
//! instead of an EAGAIN error. The handles live in the session ([`crate::files`]).
//!
//! Paths are used as the host gives them (like the statedir, not below `ctx.root`): the
//! fixture root models /proc, /sys and /etc, not the files a host moves in and out.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::Empty;
use crate::base64;
use crate::ctx::{Ctx, Session};
use crate::error::Error;

/// guest-file-read's default `count` (`QGA_READ_COUNT_DEFAULT`).
pub const READ_COUNT_DEFAULT: i64 = 4096;
/// The largest `count` qemu-ga (>= 5.0) reads at once: 48 MiB, whose base64 fits its
/// 64 MiB JSON limit.
pub const READ_COUNT_MAX: i64 = 48 << 20;
/// The mode of a file guest-file-open creates, independent of the umask (qemu-ga).
const NEW_FILE_MODE: u32 = 0o666;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenArgs {
    pub path: String,
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandleArgs {
    pub handle: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    pub handle: i64,
    pub count: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    pub handle: i64,
    #[serde(rename = "buf-b64")]
    pub buf_b64: String,
    pub count: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeekArgs {
    pub handle: i64,
    pub offset: i64,
    pub whence: Whence,
}

/// `GuestFileWhence`: the integer 0/1/2 or (since 2.6) "set"/"cur"/"end".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    Set,
    Cur,
    End,
    /// An integer other than 0, 1, 2: qemu-ga rejects it after the handle lookup.
    Code(i64),
    /// Neither an integer nor a string: reported as qemu-ga's type error before anything
    /// else is looked at (the argument layer has no words for an alternate type).
    NotAWhence,
}

impl<'de> Deserialize<'de> for Whence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Whence, D::Error> {
        d.deserialize_any(WhenceVisitor)
    }
}

struct WhenceVisitor;

impl<'de> Visitor<'de> for WhenceVisitor {
    type Value = Whence;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("GuestFileWhence")
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Whence, E> {
        Ok(match n {
            0 => Whence::Set,
            1 => Whence::Cur,
            2 => Whence::End,
            n => Whence::Code(n),
        })
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Whence, E> {
        // Beyond int64 qemu-ga's alternate fails as an integer, as does a fraction.
        let n = i64::try_from(n)
            .map_err(|_| E::invalid_type(de::Unexpected::Unsigned(n), &"an integer"))?;
        self.visit_i64(n)
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Whence, E> {
        Err(E::invalid_type(de::Unexpected::Float(x), &"an integer"))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Whence, E> {
        match s {
            "set" => Ok(Whence::Set),
            "cur" => Ok(Whence::Cur),
            "end" => Ok(Whence::End),
            _ => Err(E::unknown_variant(s, &["set", "cur", "end"])),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Whence, E> {
        Ok(Whence::NotAWhence)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Whence, E> {
        Ok(Whence::NotAWhence)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Whence, A::Error> {
        Ok(Whence::NotAWhence)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Whence, A::Error> {
        Ok(Whence::NotAWhence)
    }
}

/// Declared in the order the reply writer sorts members into, so that it never has to
/// move the large one.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FileRead {
    #[serde(rename = "buf-b64")]
    pub buf_b64: String,
    pub count: usize,
    pub eof: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FileWrite {
    pub count: usize,
    pub eof: bool,
}

/// Member order as qemu-ga sends it: "eof" first.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FileSeek {
    pub eof: bool,
    pub position: u64,
}

/// What an fopen(3) mode asks of open(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Access {
    read: bool,
    write: bool,
    append: bool,
    create: bool,
    truncate: bool,
}

/// The modes qemu-ga accepts ("b" is meaningless on POSIX but allowed).
fn parse_mode(mode: &str) -> Result<Access, Error> {
    let (read, write, append, create, truncate) = match mode {
        "r" | "rb" => (true, false, false, false, false),
        "w" | "wb" => (false, true, false, true, true),
        "a" | "ab" => (false, true, true, true, false),
        "r+" | "rb+" | "r+b" => (true, true, false, false, false),
        "w+" | "wb+" | "w+b" => (true, true, false, true, true),
        "a+" | "ab+" | "a+b" => (true, true, true, true, false),
        _ => return Err(Error::Failed(format!("invalid file open mode '{mode}'"))),
    };
    Ok(Access {
        read,
        write,
        append,
        create,
        truncate,
    })
}

impl Access {
    fn options(&self, create_new: bool) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.read(self.read)
            .write(self.write && !self.append)
            .append(self.append)
            .truncate(self.truncate)
            .create_new(create_new)
            // std adds O_CLOEXEC. O_NONBLOCK: a FIFO opens at once and is read without
            // waiting; O_NOCTTY: a terminal never becomes the agent's.
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK);
        if create_new {
            // Mode bits are set by fchmod below, independent of the umask.
            o.mode(0o000);
        }
        o
    }
}

pub fn open(ctx: &Ctx, session: &mut Session, args: OpenArgs) -> Result<i64, Error> {
    let mode = args.mode.as_deref().unwrap_or("r");
    let access = parse_mode(mode)?;
    let max = ctx.config.max_file_handles;
    let limit = session.files.capacity(max);
    if session.files.len() >= limit {
        let why = if limit == max {
            "the max-file-handles setting"
        } else {
            "all the descriptor limit leaves"
        };
        return Err(Error::Failed(format!(
            "too many open file handles ({limit}, {why}): \
             close one with guest-file-close first"
        )));
    }
    let path = &args.path;
    let what = || format!("failed to open file '{path}' (mode: '{mode}')");
    // As qemu-ga: create exclusively so the new file's mode can be set whatever the
    // umask; if it exists, open it as it is (its mode untouched).
    let (file, created) = match access.options(access.create).open(path) {
        Ok(f) => (f, access.create),
        Err(e) if access.create && e.kind() == io::ErrorKind::AlreadyExists => {
            let f = access
                .options(false)
                .open(path)
                .map_err(|e| Error::io(what(), e))?;
            (f, false)
        }
        Err(e) => return Err(Error::io(what(), e)),
    };
    if created {
        if let Err(e) = file.set_permissions(Permissions::from_mode(NEW_FILE_MODE)) {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(Error::io(
                format!("failed to set permission 0{NEW_FILE_MODE:o} on new file '{path}' (mode: '{mode}')"),
                e,
            ));
        }
    }
    session.files.insert(ctx.statedir(), file)
}

pub fn close(_: &Ctx, session: &mut Session, args: HandleArgs) -> Result<Empty, Error> {
    drop(session.files.remove(args.handle)?);
    Ok(Empty {})
}

pub fn read(_: &Ctx, session: &mut Session, args: ReadArgs) -> Result<FileRead, Error> {
    let file = session.files.get(args.handle)?;
    let count = args.count.unwrap_or(READ_COUNT_DEFAULT);
    if !(0..=READ_COUNT_MAX).contains(&count) {
        return Err(invalid_count(count));
    }
    let (bytes, eof) =
        read_up_to(file, count as usize).map_err(|e| Error::io("failed to read file", e))?;
    let buf_b64 = base64::encode(&bytes);
    Ok(FileRead {
        count: bytes.len(),
        buf_b64,
        eof,
    })
}

/// Reads until `count` bytes, the end of the file (`eof`), or a FIFO or device that has
/// nothing more now (EAGAIN: what was read so far, not at the end). One buffer of
/// `count` bytes is reserved; pages a short file never fills are never touched.
fn read_up_to(file: &mut File, count: usize) -> io::Result<(Vec<u8>, bool)> {
    let mut bytes = Vec::with_capacity(count);
    match file.take(count as u64).read_to_end(&mut bytes) {
        // Short of `count` without an error: read(2) returned 0.
        Ok(_) => {
            let eof = bytes.len() < count;
            Ok((bytes, eof))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((bytes, false)),
        Err(e) => Err(e),
    }
}

pub fn write(_: &Ctx, session: &mut Session, args: WriteArgs) -> Result<FileWrite, Error> {
    let file = session.files.get(args.handle)?;
    let bytes = base64::decode(&args.buf_b64)?;
    let count = match args.count {
        None => bytes.len(),
        Some(c) if c < 0 || c as u64 > bytes.len() as u64 => return Err(invalid_count(c)),
        Some(c) => c as usize,
    };
    let written =
        write_up_to(file, &bytes[..count]).map_err(|e| Error::io("failed to write to file", e))?;
    Ok(FileWrite {
        count: written,
        eof: false,
    })
}

/// Writes all of `bytes`, or as much as a full FIFO or device takes now (EAGAIN).
fn write_up_to(file: &mut File, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

pub fn seek(_: &Ctx, session: &mut Session, args: SeekArgs) -> Result<FileSeek, Error> {
    if args.whence == Whence::NotAWhence {
        return Err(not_a_whence());
    }
    let file = session.files.get(args.handle)?;
    let to = match args.whence {
        Whence::Set => match u64::try_from(args.offset) {
            Ok(o) => SeekFrom::Start(o),
            // lseek's answer to a negative absolute offset.
            Err(_) => return Err(seek_failed(io::Error::from_raw_os_error(libc::EINVAL))),
        },
        Whence::Cur => SeekFrom::Current(args.offset),
        Whence::End => SeekFrom::End(args.offset),
        Whence::Code(n) => return Err(Error::Failed(format!("invalid whence code {n}"))),
        Whence::NotAWhence => return Err(not_a_whence()),
    };
    let position = file.seek(to).map_err(seek_failed)?;
    // qemu-ga's fseek clears the end-of-file indicator.
    Ok(FileSeek {
        eof: false,
        position,
    })
}

pub fn flush(_: &Ctx, session: &mut Session, args: HandleArgs) -> Result<Empty, Error> {
    // No user-space buffer: every write already reached the kernel.
    session
        .files
        .get(args.handle)?
        .flush()
        .map_err(|e| Error::io("failed to flush file", e))?;
    Ok(Empty {})
}

fn invalid_count(count: i64) -> Error {
    Error::Failed(format!("value '{count}' is invalid for argument count"))
}

fn not_a_whence() -> Error {
    Error::Args("Invalid parameter type for 'whence', expected: GuestFileWhence".into())
}

fn seek_failed(e: io::Error) -> Error {
    Error::io("failed to seek file", e)
}
