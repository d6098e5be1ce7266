//! The kernel hostname (sethostname(2)) and SELinux labels of rewritten files
//! (getxattr/setxattr, 2.4+), for change-hostname.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::check;

/// Sets the kernel hostname (UTS namespace). EPERM without CAP_SYS_ADMIN; EINVAL over
/// 64 bytes.
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes; the kernel copies them.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

const SELINUX_XATTR: &[u8] = b"security.selinux\0";

/// Copies the SELinux label of `from` to `to`, so a file replaced by rename keeps its
/// label (/etc/hosts is net_conf_t on RHEL, not the etc_t a new file would get).
/// Ok(false) when `from` has no label (SELinux off or unsupported).
pub fn copy_selinux_label(from: &Path, to: &Path) -> io::Result<bool> {
    let cfrom = CString::new(from.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let cto = CString::new(to.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = [0u8; 1024];
    // SAFETY: both strings are NUL-terminated; `buf` is valid for its length.
    let n = unsafe {
        libc::getxattr(
            cfrom.as_ptr(),
            SELINUX_XATTR.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n == -1 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(false),
            _ => Err(e),
        };
    }
    // SAFETY: as above; `n` bytes of `buf` were filled by getxattr.
    check(unsafe {
        libc::setxattr(
            cto.as_ptr(),
            SELINUX_XATTR.as_ptr().cast(),
            buf.as_ptr().cast(),
            n as usize,
            0,
        )
    })?;
    Ok(true)
}
