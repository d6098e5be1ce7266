//! Process-level calls for daemonizing: fork, setsid, umask, stdio to /dev/null.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

use super::check;

pub enum Fork {
    Parent,
    Child,
}

/// fork(2). Called before any other thread exists (the agent has none).
pub fn fork() -> io::Result<Fork> {
    // SAFETY: the agent is single-threaded, so the child may run arbitrary code.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 { Fork::Child } else { Fork::Parent })
}

pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments; fails only if already a group leader.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

pub fn set_umask(mask: u32) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// Points stdin, stdout and stderr at /dev/null.
pub fn stdio_to_null() -> io::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in 0..3 {
        // SAFETY: both descriptors are open; dup2 replaces `target` atomically.
        check(unsafe { libc::dup2(null.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// Makes the process non-dumpable (prctl PR_SET_DUMPABLE 0, since 2.3.20): no core
/// file, no ptrace by the same uid, /proc/PID files owned by root. A core of the agent
/// could hold a password on its way to chpasswd.
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE reads only its integer argument.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// access(2) with X_OK: whether the real ids may execute `path` (qemu-ga's check of the
/// fsfreeze hook, whose errno it reports).
pub fn check_executable(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    super::check(unsafe { libc::access(c.as_ptr(), libc::X_OK) }).map(|_| ())
}
