//! Files in places a guest user can write: ~/.ssh (src/commands/ssh.rs), the statedir
//! (src/commands/bc_oom.rs), the pidfile and the log. Root opening such a path is the
//! classic hole, so each is opened without following a final symlink and non-blocking
//! (a FIFO or a device opens at once instead of hanging the agent), then checked with
//! fstat — what was opened, not what was asked for: a regular file, one link, the
//! expected owner, no larger than a cap — and read no further than that cap. New files
//! are written beside the old one with O_EXCL|O_NOFOLLOW and renamed over it.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::sys::dirfd::{self, Dir};
use crate::sys::fsids::{self, FsIds};

/// A pidfile holds one number; anything longer was not written by an agent.
pub const PIDFILE_CAP: u64 = 64;
/// The statedir's records are small JSON documents.
pub const STATE_FILE_CAP: u64 = 64 * 1024;

/// Whose file: the ids the kernel checks access against, and the owner it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Switches this thread's file access to `user` until the guard is dropped.
pub fn as_user(user: Account) -> io::Result<FsIds> {
    FsIds::switch_to(user.uid, user.gid)
}

/// Opens `name` below a user's home as that user would (setfsuid/setfsgid around the
/// open, so a hard link to a file the user cannot read fails with EACCES): no symlink
/// at the end, no FIFO or device, one link, owned by the user, at most `cap` bytes.
pub fn open_user_file(dir: &Dir, name: &str, user: Account, cap: u64) -> io::Result<File> {
    let _as_user = as_user(user)?;
    let file = dir.open_file(name).map_err(refused_link)?;
    check(&file, user.uid, cap)?;
    Ok(file)
}

/// Opens a file the agent itself keeps (statedir): as [`open_user_file`], owned by the
/// agent's effective uid. `Ok(None)` when it does not exist.
pub fn open_own_file(dir: &Dir, name: &str, cap: u64) -> io::Result<Option<File>> {
    let file = match dir.open_file(name) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refused_link(e)),
    };
    check(&file, fsids::euid(), cap)?;
    Ok(Some(file))
}

/// Opens (creating it, mode 0644, not truncating) the pidfile at `path`: not through a
/// symlink, a regular file with one link, owned by the agent, at most [`PIDFILE_CAP`].
pub fn open_pidfile(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(dirfd::NOFOLLOW_NONBLOCK)
        .open(path)
        .map_err(refused_link)?;
    check(&file, fsids::euid(), PIDFILE_CAP)?;
    Ok(file)
}

/// Opens the log at `path` for appending (creating it): not through a symlink, a
/// regular file with one link, owned by the agent. No cap: rotating it is logrotate's job.
pub fn open_log(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(dirfd::NOFOLLOW_NONBLOCK)
        .open(path)
        .map_err(refused_link)?;
    check(&file, fsids::euid(), u64::MAX)?;
    Ok(file)
}

/// The fstat checks, on what was opened. The error says which rule the file broke.
pub fn check(file: &File, owner: u32, cap: u64) -> io::Result<Metadata> {
    let st = file.metadata()?;
    let broken = if !st.file_type().is_file() {
        Some(format!("is {}, not a regular file", kind(&st)))
    } else if st.nlink() != 1 {
        Some(format!("has {} hard links, not 1", st.nlink()))
    } else if st.uid() != owner {
        Some(format!("is owned by uid {}, not {owner}", st.uid()))
    } else if st.len() > cap {
        Some(format!("is larger than {cap} bytes"))
    } else {
        None
    };
    match broken {
        Some(why) => Err(io::Error::other(format!("{why}, refused"))),
        None => Ok(st),
    }
}

/// The file's bytes, at most `cap` of them: a file that grew past the cap after the
/// fstat is refused rather than read whole.
pub fn read_capped(file: &mut File, cap: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::other(format!(
            "grew past {cap} bytes while read, refused"
        )));
    }
    Ok(bytes)
}

/// Replaces `name` in `dir` by a file holding `bytes` with `mode`: written to a new
/// temporary file (O_EXCL|O_NOFOLLOW, so a planted symlink or file there is never
/// written through) and renamed over `name`, so readers see the old or the new file.
/// The new file belongs to whoever the thread's filesystem ids say.
pub fn replace(dir: &Dir, name: &str, mode: u32, bytes: &[u8]) -> io::Result<()> {
    let tmp = format!("{name}.qga-{}", std::process::id());
    // A leftover from an agent killed mid-write (unlink never follows a symlink).
    let _ = dir.unlink(&tmp);
    let result = (|| {
        let mut file = dir.create_new(&tmp, mode)?;
        // create's mode is reduced by the umask; the file must have exactly `mode`.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        dir.rename(&tmp, name)?;
        // Make the rename itself durable; the new file is in place either way.
        let _ = dir.as_file().sync_all();
        Ok(())
    })();
    if result.is_err() {
        let _ = dir.unlink(&tmp);
    }
    result
}

/// Says "is a symbolic link" instead of O_NOFOLLOW's "Too many levels of symbolic links".
pub fn refused_link(e: io::Error) -> io::Error {
    if dirfd::is_symlink_refusal(&e) {
        io::Error::other("is a symbolic link, refused")
    } else {
        e
    }
}

fn kind(st: &Metadata) -> &'static str {
    let t = st.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("qga-untrusted-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn each_rule_names_itself() {
        let d = tempdir("rules");
        let dir = Dir::open(&d).unwrap();
        std::fs::write(d.join("big"), vec![b'x'; 10]).unwrap();
        std::fs::write(d.join("one"), b"ok").unwrap();
        std::fs::hard_link(d.join("one"), d.join("two")).unwrap();
        std::os::unix::fs::symlink(d.join("big"), d.join("link")).unwrap();
        let err = |name: &str, cap: u64| open_own_file(&dir, name, cap).unwrap_err().to_string();
        assert_eq!(err("big", 9), "is larger than 9 bytes, refused");
        assert_eq!(err("one", 9), "has 2 hard links, not 1, refused");
        assert_eq!(err("link", 9), "is a symbolic link, refused");
        std::fs::create_dir(d.join("sub")).unwrap();
        assert_eq!(err("sub", 9), "is a directory, not a regular file, refused");
        assert!(open_own_file(&dir, "missing", 9).unwrap().is_none());
        let mut f = open_own_file(&dir, "big", 10).unwrap().unwrap();
        assert_eq!(read_capped(&mut f, 10).unwrap().len(), 10);
        let mut f = File::open(d.join("big")).unwrap();
        assert!(read_capped(&mut f, 5).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replace_never_writes_through_a_planted_temporary_name() {
        let d = tempdir("replace");
        let dir = Dir::open(&d).unwrap();
        let victim = d.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let tmp = format!("state.qga-{}", std::process::id());
        std::os::unix::fs::symlink(&victim, d.join(&tmp)).unwrap();
        replace(&dir, "state", 0o600, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(d.join("state")).unwrap(), b"new");
        let mode = std::fs::metadata(d.join("state")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
