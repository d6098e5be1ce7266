//! Child-process set-up std does not offer: a new session for programs the agent starts
//! (shutdown, hwclock, suspend helpers), as qemu-ga's children get.

use std::process::Command;

use std::os::unix::process::CommandExt;

/// Makes the child call setsid(2) before exec, so it has no controlling terminal and is
/// not in the agent's process group (a signal to the agent's group leaves it alone).
pub fn new_session(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure only calls setsid, which is async-signal-safe, between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}
