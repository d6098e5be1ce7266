//! Directory-relative file operations (openat, mkdirat, renameat; all 2.6.16) so that a
//! root agent writing into a user's home never follows a symlink the user planted.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::check;

/// open(2) flags for reading a file someone else may have planted: no final symlink, no
/// waiting for a FIFO's writer or a device.
pub const READ_NOFOLLOW: libc::c_int =
    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
/// Extra open(2) flags for a file opened by path (pidfile, log) that must not be a
/// symlink, a FIFO or a device: used with `OpenOptions::custom_flags`.
pub const NOFOLLOW_NONBLOCK: libc::c_int = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// An open directory; names passed to its methods are single components.
#[derive(Debug)]
pub struct Dir(File);

impl Dir {
    /// Opens the directory at `path`, following symlinks (a home directory may be one).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = cstring(path.as_os_str().as_bytes())?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        // SAFETY: `c` is NUL-terminated and lives for the call.
        let fd = check(unsafe { libc::open(c.as_ptr(), flags) })?;
        // SAFETY: `fd` was just returned by open and is owned by nobody else.
        Ok(Dir(unsafe { File::from_raw_fd(fd) }))
    }

    /// Opens the subdirectory `name`; a symlink there is refused (ELOOP or ENOTDIR).
    pub fn open_dir(&self, name: &str) -> io::Result<Dir> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        Ok(Dir(self.openat(name, flags, 0)?))
    }

    /// Opens the file `name` for reading, refusing a symlink. Non-blocking, so a FIFO
    /// or a device opens at once and the caller's fstat can refuse it.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        self.openat(name, READ_NOFOLLOW, 0)
    }

    /// Creates the file `name`, which must not exist yet, for writing with `mode`.
    pub fn create_new(&self, name: &str, mode: u32) -> io::Result<File> {
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        self.openat(name, flags, mode)
    }

    pub fn mkdir(&self, name: &str, mode: u32) -> io::Result<()> {
        let c = cstring(name.as_bytes())?;
        // SAFETY: the directory fd is open and `c` is NUL-terminated for the call.
        check(unsafe { libc::mkdirat(self.0.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })?;
        Ok(())
    }

    /// Renames `from` to `to` inside this directory, atomically replacing `to`.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (f, t) = (cstring(from.as_bytes())?, cstring(to.as_bytes())?);
        let fd = self.0.as_raw_fd();
        // SAFETY: the directory fd is open and both names are NUL-terminated.
        check(unsafe { libc::renameat(fd, f.as_ptr(), fd, t.as_ptr()) })?;
        Ok(())
    }

    pub fn unlink(&self, name: &str) -> io::Result<()> {
        let c = cstring(name.as_bytes())?;
        // SAFETY: the directory fd is open and `c` is NUL-terminated.
        check(unsafe { libc::unlinkat(self.0.as_raw_fd(), c.as_ptr(), 0) })?;
        Ok(())
    }

    /// The directory itself, for fstat, fchown and fchmod.
    pub fn as_file(&self) -> &File {
        &self.0
    }

    fn openat(&self, name: &str, flags: libc::c_int, mode: u32) -> io::Result<File> {
        let c = cstring(name.as_bytes())?;
        // SAFETY: the directory fd is open, `c` is NUL-terminated, and `mode` is only
        // read with O_CREAT.
        let fd = check(unsafe {
            libc::openat(self.0.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint)
        })?;
        // SAFETY: `fd` was just returned by openat and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }
}

/// True when an open(2) error means "the last component is a symlink" (O_NOFOLLOW
/// answers ELOOP; with O_DIRECTORY it may answer ENOTDIR).
pub fn is_symlink_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("qga-dirfd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn create_rename_and_read_back() {
        let d = tempdir("rw");
        let dir = Dir::open(&d).unwrap();
        dir.mkdir("sub", 0o700).unwrap();
        let sub = dir.open_dir("sub").unwrap();
        sub.create_new("t", 0o600)
            .unwrap()
            .write_all(b"hi")
            .unwrap();
        assert!(sub.create_new("t", 0o600).is_err());
        sub.rename("t", "f").unwrap();
        let mut s = String::new();
        sub.open_file("f").unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hi");
        sub.unlink("f").unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlinks_are_not_followed() {
        let d = tempdir("link");
        std::os::unix::fs::symlink("/etc", d.join("ln")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.join("lf")).unwrap();
        let dir = Dir::open(&d).unwrap();
        assert!(dir.open_dir("ln").is_err());
        assert!(dir.open_file("lf").is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
