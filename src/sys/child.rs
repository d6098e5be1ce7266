//! Signals to and reaping of child processes the agent started (kill(2) on a process
//! group, waitpid(2)), for commands that must not outlive their deadline.

use std::io;

use super::check;

/// Sends `sig` to every process in the group `pgid` (the group leader's pid).
pub fn kill_group(pgid: u32, sig: libc::c_int) -> io::Result<()> {
    let pgid =
        libc::pid_t::try_from(pgid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    if pgid <= 1 {
        // kill(-1) would signal every process we may signal; never let a bad pid do that.
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: kill takes plain integers; a negative pid addresses the process group.
    check(unsafe { libc::kill(-pgid, sig) })?;
    Ok(())
}

/// Sends `sig` to one process.
pub fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    if pid <= 1 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: kill takes plain integers.
    check(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// waitpid(pid, WNOHANG): `Some(status)` once the child has exited and is reaped.
pub fn try_wait(pid: u32) -> io::Result<Option<libc::c_int>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid out-pointer for the call.
    let rc = check(unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) })?;
    Ok((rc != 0).then_some(status))
}
