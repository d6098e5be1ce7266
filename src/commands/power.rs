//! Power: guest-shutdown (the distro's `shutdown`, so init runs its scripts) and
//! guest-suspend-{disk,ram,hybrid} (systemd, then pm-utils, then /sys/power/state, in
//! qemu-ga's order). Success sends no reply; the registry marks them so.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use super::{Empty, NoArgs};
use crate::accounts::find_program;
use crate::child::{self, Finished};
use crate::ctx::Ctx;
use crate::error::Error;
use crate::log;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownArgs {
    pub mode: Option<String>,
}

/// The message `shutdown` broadcasts, as qemu-ga sends it.
const SHUTDOWN_MESSAGE: &str = "hypervisor initiated shutdown";

pub fn shutdown(_: &Ctx, args: ShutdownArgs) -> Result<Empty, Error> {
    let flag = shutdown_flag(args.mode.as_deref())?;
    log::info(&format!(
        "guest-shutdown called, mode: {}",
        args.mode.as_deref().unwrap_or("powerdown")
    ));
    let program = find_program("shutdown").ok_or_else(|| {
        Error::Failed("cannot find 'shutdown' program in PATH, /usr/sbin or /sbin".into())
    })?;
    let mut cmd = Command::new(program);
    // "-h" first, as qemu-ga: sysvinit and upstart take the last of -h/-r.
    cmd.args(["-h", flag, "+0", SHUTDOWN_MESSAGE]);
    let done = run(cmd, SHUTDOWN_TIMEOUT)?;
    match exit_code(&done) {
        None => Err(Error::Failed(
            "child process has terminated abnormally".into(),
        )),
        Some(0) => Ok(Empty {}),
        Some(_) => Err(Error::Failed("child process has failed to shutdown".into())),
    }
}

/// `shutdown +0` only asks init to act and returns at once.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// `systemctl status` and `pm-is-supported` answer quickly.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// pm-hibernate and friends return after the guest resumes; the monotonic clock a
/// deadline uses stands still while the guest sleeps, but writing a hibernation image
/// of a large guest takes a while.
const SUSPEND_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs a power program (output discarded) under a deadline.
fn run(cmd: Command, timeout: Duration) -> Result<Finished, Error> {
    child::run(cmd, b"", timeout, 0).map_err(|e| Error::io("failed to create child process", e))
}

/// The exit code; None when a signal or the deadline ended the program.
fn exit_code(done: &Finished) -> Option<i32> {
    done.status.and_then(|s| s.code())
}

/// The `shutdown` option for a guest-shutdown mode (default powerdown).
fn shutdown_flag(mode: Option<&str>) -> Result<&'static str, Error> {
    match mode {
        None | Some("powerdown") => Ok("-P"),
        Some("halt") => Ok("-H"),
        Some("reboot") => Ok("-r"),
        // The missing ')' is qemu-ga's text.
        Some(_) => Err(Error::Failed(
            "mode is invalid (valid values are: halt|powerdown|reboot".into(),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspendMode {
    Disk,
    Ram,
    Hybrid,
}

impl SuspendMode {
    fn systemd_unit(self) -> &'static str {
        match self {
            SuspendMode::Disk => "systemd-hibernate",
            SuspendMode::Ram => "systemd-suspend",
            SuspendMode::Hybrid => "systemd-hybrid-sleep",
        }
    }

    fn systemctl_verb(self) -> &'static str {
        match self {
            SuspendMode::Disk => "hibernate",
            SuspendMode::Ram => "suspend",
            SuspendMode::Hybrid => "hybrid-sleep",
        }
    }

    fn pm_is_supported_flag(self) -> &'static str {
        match self {
            SuspendMode::Disk => "--hibernate",
            SuspendMode::Ram => "--suspend",
            SuspendMode::Hybrid => "--suspend-hybrid",
        }
    }

    fn pm_program(self) -> &'static str {
        match self {
            SuspendMode::Disk => "pm-hibernate",
            SuspendMode::Ram => "pm-suspend",
            SuspendMode::Hybrid => "pm-suspend-hybrid",
        }
    }

    /// The word for /sys/power/state; hybrid sleep has none.
    fn sysfs_state(self) -> Option<&'static str> {
        match self {
            SuspendMode::Disk => Some("disk"),
            SuspendMode::Ram => Some("mem"),
            SuspendMode::Hybrid => None,
        }
    }
}

pub fn suspend_disk(ctx: &Ctx, _: NoArgs) -> Result<Empty, Error> {
    suspend(ctx, SuspendMode::Disk)
}

pub fn suspend_ram(ctx: &Ctx, _: NoArgs) -> Result<Empty, Error> {
    suspend(ctx, SuspendMode::Ram)
}

pub fn suspend_hybrid(ctx: &Ctx, _: NoArgs) -> Result<Empty, Error> {
    suspend(ctx, SuspendMode::Hybrid)
}

const SYS_POWER_STATE: &str = "sys/power/state";

/// Tries each mechanism that says it supports `mode`; the first to succeed wins. Unlike
/// qemu-ga, a supported mechanism that failed is reported even when a later one does
/// not apply (qemu-ga then answers nothing, as if the guest had suspended).
fn suspend(ctx: &Ctx, mode: SuspendMode) -> Result<Empty, Error> {
    log::info(&format!(
        "guest-suspend called, mode: {}",
        mode.systemctl_verb()
    ));
    let mut failure = None;
    if systemd_supports(mode) {
        match helper("systemctl", &[mode.systemctl_verb()]) {
            Ok(()) => return Ok(Empty {}),
            Err(e) => failure = Some(e),
        }
    }
    if pm_utils_supports(mode) {
        match helper(mode.pm_program(), &[]) {
            Ok(()) => return Ok(Empty {}),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(state) = mode.sysfs_state() {
        let available = ctx.read(SYS_POWER_STATE).unwrap_or_default();
        if available.split_whitespace().any(|w| w == state) {
            return write_power_state(ctx, state).map(|()| Empty {});
        }
    }
    Err(failure.unwrap_or_else(|| {
        Error::Failed("the requested suspend mode is not supported by the guest".into())
    }))
}

/// `systemctl status <unit>` exits 1-3 (LSB "not running") for a unit that exists and
/// 4 for one that does not, so 1-3 means this kind of sleep is available (qemu-ga).
fn systemd_supports(mode: SuspendMode) -> bool {
    probe("systemctl", &["status", mode.systemd_unit()], 1..=3)
}

/// `pm-is-supported --<mode>` exits 0 when the mode works.
fn pm_utils_supports(mode: SuspendMode) -> bool {
    probe("pm-is-supported", &[mode.pm_is_supported_flag()], 0..=0)
}

fn probe(name: &str, args: &[&str], yes: std::ops::RangeInclusive<i32>) -> bool {
    let Some(program) = find_on_path(name) else {
        return false;
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    run(cmd, PROBE_TIMEOUT)
        .ok()
        .and_then(|done| exit_code(&done))
        .is_some_and(|code| yes.contains(&code))
}

/// Suspend helpers are looked up on PATH only, as qemu-ga's g_spawn SEARCH_PATH does
/// (shutdown and hwclock also try /usr/sbin and /sbin): a PATH without them means the
/// mechanism is absent, which also keeps tests with a fake PATH off the real tools.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs a suspend helper from PATH; errors in qemu-ga's wording.
fn helper(name: &str, args: &[&str]) -> Result<(), Error> {
    let shown = std::iter::once(name)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let program = find_on_path(name)
        .ok_or_else(|| Error::Failed(format!("the helper program '{shown}' was not found")))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    let done = run(cmd, SUSPEND_TIMEOUT)?;
    match exit_code(&done) {
        Some(0) => Ok(()),
        code => Err(Error::Failed(format!(
            "the helper program '{shown}' returned an unexpected exit status code ({})",
            code.unwrap_or(-1)
        ))),
    }
}

fn write_power_state(ctx: &Ctx, state: &str) -> Result<(), Error> {
    std::fs::write(ctx.path(SYS_POWER_STATE), state)
        .map_err(|e| Error::io(format!("suspend: cannot write to '/{SYS_POWER_STATE}'"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_modes_map_to_upstream_flags() {
        assert_eq!(shutdown_flag(None).unwrap(), "-P");
        assert_eq!(shutdown_flag(Some("powerdown")).unwrap(), "-P");
        assert_eq!(shutdown_flag(Some("halt")).unwrap(), "-H");
        assert_eq!(shutdown_flag(Some("reboot")).unwrap(), "-r");
    }

    #[test]
    fn invalid_shutdown_mode_has_upstream_text() {
        assert_eq!(
            shutdown_flag(Some("sleep")).unwrap_err().to_string(),
            "mode is invalid (valid values are: halt|powerdown|reboot"
        );
    }

    #[test]
    fn hybrid_has_no_sysfs_state() {
        assert_eq!(SuspendMode::Disk.sysfs_state(), Some("disk"));
        assert_eq!(SuspendMode::Ram.sysfs_state(), Some("mem"));
        assert_eq!(SuspendMode::Hybrid.sysfs_state(), None);
    }
}
