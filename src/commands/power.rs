//! Power: guest-shutdown (the distro's `shutdown`, so init runs its scripts) and
//! guest-suspend-{disk,ram,hybrid} (systemd, then pm-utils, then /sys/power/state, in
//! qemu-ga's order). Success sends no reply; the registry marks them so.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use super::{Empty, NoArgs};
use crate::accounts::find_program;
use crate::child::{Finished, Run};
use crate::ctx::Ctx;
use crate::error::Error;
use crate::job::Step;
use crate::log;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownArgs {
    pub mode: Option<String>,
}

/// The message `shutdown` broadcasts, as qemu-ga sends it.
const SHUTDOWN_MESSAGE: &str = "hypervisor initiated shutdown";

pub fn shutdown(_: &Ctx, args: ShutdownArgs) -> Result<Step<Empty>, Error> {
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
    Ok(Step::wait(
        run(cmd, SHUTDOWN_TIMEOUT),
        |_, _, result| match exit_code(&started(result)?) {
            None => Err(Error::Failed(
                "child process has terminated abnormally".into(),
            )),
            Some(0) => Ok(Step::Done(Empty {})),
            Some(_) => Err(Error::Failed("child process has failed to shutdown".into())),
        },
    ))
}

/// `shutdown +0` only asks init to act and returns at once.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// `systemctl status` and `pm-is-supported` answer quickly.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// pm-hibernate and friends return after the guest resumes; the monotonic clock a
/// deadline uses stands still while the guest sleeps, but writing a hibernation image
/// of a large guest takes a while.
const SUSPEND_TIMEOUT: Duration = Duration::from_secs(600);

/// A power program to run (output discarded) under a deadline.
fn run(cmd: Command, timeout: Duration) -> Run {
    Run::program(cmd, Vec::new(), timeout, 0)
}

/// A program's result, or why it could not be started in qemu-ga's words.
fn started(result: io::Result<Finished>) -> Result<Finished, Error> {
    result.map_err(|e| Error::io("failed to create child process", e))
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

pub fn suspend_disk(ctx: &Ctx, _: NoArgs) -> Result<Step<Empty>, Error> {
    suspend(ctx, SuspendMode::Disk)
}

pub fn suspend_ram(ctx: &Ctx, _: NoArgs) -> Result<Step<Empty>, Error> {
    suspend(ctx, SuspendMode::Ram)
}

pub fn suspend_hybrid(ctx: &Ctx, _: NoArgs) -> Result<Step<Empty>, Error> {
    suspend(ctx, SuspendMode::Hybrid)
}

const SYS_POWER_STATE: &str = "sys/power/state";

/// The rest of a suspend, once the mechanisms before have been tried.
type Next = Result<Step<Empty>, Error>;

/// Tries each mechanism that says it supports `mode`; the first to succeed wins. Unlike
/// qemu-ga, a supported mechanism that failed is reported even when a later one does
/// not apply (qemu-ga then answers nothing, as if the guest had suspended).
fn suspend(ctx: &Ctx, mode: SuspendMode) -> Next {
    log::info(&format!(
        "guest-suspend called, mode: {}",
        mode.systemctl_verb()
    ));
    // `systemctl status <unit>` exits 1-3 (LSB "not running") for a unit that exists
    // and 4 for one that does not, so 1-3 means this kind of sleep is available
    // (qemu-ga).
    let unit = mode.systemd_unit();
    probe(
        ctx,
        "systemctl",
        &["status", unit],
        1..=3,
        move |ctx, yes| {
            if !yes {
                return with_pm_utils(ctx, mode, None);
            }
            helper(
                ctx,
                "systemctl",
                &[mode.systemctl_verb()],
                move |ctx, failed| with_pm_utils(ctx, mode, failed),
            )
        },
    )
}

/// `pm-is-supported --<mode>` exits 0 when the mode works.
fn with_pm_utils(ctx: &Ctx, mode: SuspendMode, failure: Option<Error>) -> Next {
    let flag = mode.pm_is_supported_flag();
    probe(ctx, "pm-is-supported", &[flag], 0..=0, move |ctx, yes| {
        if !yes {
            return with_sysfs(ctx, mode, failure);
        }
        helper(ctx, mode.pm_program(), &[], move |ctx, failed| {
            with_sysfs(ctx, mode, failed.or(failure))
        })
    })
}

fn with_sysfs(ctx: &Ctx, mode: SuspendMode, failure: Option<Error>) -> Next {
    if let Some(state) = mode.sysfs_state() {
        let available = ctx.read(SYS_POWER_STATE).unwrap_or_default();
        if available.split_whitespace().any(|w| w == state) {
            return write_power_state(ctx, state).map(|()| Step::Done(Empty {}));
        }
    }
    Err(failure.unwrap_or_else(|| {
        Error::Failed("the requested suspend mode is not supported by the guest".into())
    }))
}

/// Runs `name args` from PATH, if there, and continues with whether it exited with a
/// code in `yes`.
fn probe(
    ctx: &Ctx,
    name: &str,
    args: &[&str],
    yes: std::ops::RangeInclusive<i32>,
    then: impl FnOnce(&Ctx, bool) -> Next + 'static,
) -> Next {
    let Some(program) = find_on_path(name) else {
        return then(ctx, false);
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    Ok(Step::wait(
        run(cmd, PROBE_TIMEOUT),
        move |ctx, _, result| {
            let supported = result
                .ok()
                .and_then(|done| exit_code(&done))
                .is_some_and(|code| yes.contains(&code));
            then(ctx, supported)
        },
    ))
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

/// Runs a suspend helper from PATH: done when it succeeds, otherwise continues with
/// its failure in qemu-ga's wording.
fn helper(
    ctx: &Ctx,
    name: &str,
    args: &[&str],
    otherwise: impl FnOnce(&Ctx, Option<Error>) -> Next + 'static,
) -> Next {
    let shown = std::iter::once(name)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let Some(program) = find_on_path(name) else {
        let e = Error::Failed(format!("the helper program '{shown}' was not found"));
        return otherwise(ctx, Some(e));
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    Ok(Step::wait(
        run(cmd, SUSPEND_TIMEOUT),
        move |ctx, _, result| match exit_code(&started(result)?) {
            Some(0) => Ok(Step::Done(Empty {})),
            code => otherwise(
                ctx,
                Some(Error::Failed(format!(
                    "the helper program '{shown}' returned an unexpected exit status code ({})",
                    code.unwrap_or(-1)
                ))),
            ),
        },
    ))
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
