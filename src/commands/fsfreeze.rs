//! guest-fsfreeze-status, -freeze, -freeze-list and -thaw: FIFREEZE/FITHAW
//! (src/sys/freeze.rs) on the filesystems of /proc/self/mountinfo
//! (src/proc/mountinfo.rs), the fsfreeze hook (`<hook> freeze` before, `<hook> thaw`
//! after, through the child manager), `<statedir>/qga.state.isfrozen` (written before
//! the first FIFREEZE, so an agent restarted while frozen comes back frozen), the held
//! log, and the safety qemu-ga lacks: a freeze nobody thaws is thawed after
//! `fsfreeze-timeout` seconds, and a stopping agent thaws before it exits.

use std::fs::File;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::NoArgs;
use crate::child::{self, Finished, Run};
use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::job::Step;
use crate::log;
use crate::proc;
use crate::proc::mounts::{is_fuse_type, MountInfo};
use crate::sys::dirfd::Dir;
use crate::sys::freeze;
use crate::untrusted;

/// The marker qemu-ga keeps in the statedir while frozen.
pub const ISFROZEN: &str = "qga.state.isfrozen";
/// Hook output kept for the error text.
const HOOK_OUTPUT_CAP: usize = 64 * 1024;
/// FITHAW calls per filesystem: each undoes one FIFREEZE; the kernel refuses the one
/// after the last, so this only bounds a kernel that never does.
const MAX_THAWS: usize = 64;

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FreezeStatus {
    Thawed,
    Frozen,
}

pub fn status(_: &Ctx, session: &mut Session, _: NoArgs) -> Result<FreezeStatus, Error> {
    Ok(if session.frozen {
        FreezeStatus::Frozen
    } else {
        FreezeStatus::Thawed
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeListArgs {
    #[serde(default)]
    pub mountpoints: Option<Vec<String>>,
}

/// guest-fsfreeze-freeze: every filesystem.
pub fn freeze_all(ctx: &Ctx, session: &mut Session, _: NoArgs) -> Result<Step<i64>, Error> {
    freeze_list(ctx, session, FreezeListArgs { mountpoints: None })
}

/// guest-fsfreeze-freeze-list: the hook's `freeze`, then the freeze; the count frozen.
/// Requests after this one wait until it is answered, so a status asked meanwhile
/// says "frozen", never "thawed" while the hook runs.
pub fn freeze_list(
    ctx: &Ctx,
    session: &mut Session,
    args: FreezeListArgs,
) -> Result<Step<i64>, Error> {
    log::info("guest-fsfreeze called");
    let wanted = args.mountpoints;
    match hook_run(ctx, "freeze")? {
        None => finish_freeze(ctx, session, wanted.as_deref()),
        Some(run) => Ok(Step::wait(run, move |ctx, session, result| {
            hook_result(ctx, result)?;
            finish_freeze(ctx, session, wanted.as_deref())
        })),
    }
}

/// The freeze after the hook; when it fails or freezes nothing, the hook's `thaw` undoes
/// what its `freeze` did (qemu-ga runs it on failure only).
fn finish_freeze(
    ctx: &Ctx,
    session: &mut Session,
    wanted: Option<&[String]>,
) -> Result<Step<i64>, Error> {
    let outcome = freeze_now(ctx, session, wanted);
    if matches!(outcome, Ok(n) if n > 0) {
        return outcome.map(Step::Done);
    }
    match hook_run(ctx, "thaw") {
        Ok(Some(run)) => Ok(Step::wait(run, move |ctx, _, result| {
            if let Err(e) = hook_result(ctx, result) {
                log::warn(&format!("fsfreeze hook thaw after a failed freeze: {e}"));
            }
            outcome.map(Step::Done)
        })),
        _ => outcome.map(Step::Done),
    }
}

/// Marks the agent frozen, then freezes the filesystems (all, or those in `wanted`) in
/// reverse mount order, leaves first. EOPNOTSUPP and EBUSY are not failures (a
/// filesystem without freeze support; one already frozen). Any other error thaws what
/// this call froze and is returned. When nothing was frozen the agent is thawed again.
fn freeze_now(ctx: &Ctx, session: &mut Session, wanted: Option<&[String]>) -> Result<i64, Error> {
    let mounts = freezable(ctx)?;
    set_frozen(ctx, session)?;
    let mut frozen: Vec<File> = Vec::new();
    let mut failure = None;
    for mount in mounts.iter().rev() {
        if wanted.is_some_and(|w| !w.contains(&mount.mountpoint)) {
            continue;
        }
        let dir = match open_mount(ctx, mount) {
            Ok(dir) => dir,
            Err(e) => {
                failure = Some(Error::io(format!("failed to open {}", mount.mountpoint), e));
                break;
            }
        };
        match freeze::freeze(&dir) {
            Ok(()) => frozen.push(dir),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EBUSY)) => {}
            Err(e) => {
                failure = Some(Error::io(
                    format!("failed to freeze {}", mount.mountpoint),
                    e,
                ));
                break;
            }
        }
    }
    let count = frozen.len() as i64;
    if failure.is_some() || count == 0 {
        for dir in &frozen {
            let _ = freeze::thaw(dir);
        }
        unset_frozen(ctx, session);
    }
    match failure {
        Some(e) => {
            log::warn(&format!("guest-fsfreeze failed: {e}"));
            Err(e)
        }
        None => {
            if count > 0 {
                let timeout = ctx.config.fsfreeze_timeout;
                session.freeze_deadline =
                    (timeout > 0).then(|| Instant::now() + Duration::from_secs(timeout));
            }
            Ok(count)
        }
    }
}

/// guest-fsfreeze-thaw: FITHAW on every filesystem until it refuses (each FIFREEZE,
/// ours or another program's, needs one); the count of filesystems thawed; then the
/// hook's `thaw`, whose failure is the reply although the filesystems are thawed.
pub fn thaw(ctx: &Ctx, session: &mut Session, _: NoArgs) -> Result<Step<i64>, Error> {
    let count = thaw_now(ctx, session)?;
    log::info(&format!("guest-fsfreeze-thaw: {count} filesystems thawed"));
    match hook_run(ctx, "thaw")? {
        None => Ok(Step::Done(count)),
        Some(run) => Ok(Step::wait(run, move |ctx, _, result| {
            hook_result(ctx, result)?;
            Ok(Step::Done(count))
        })),
    }
}

fn thaw_now(ctx: &Ctx, session: &mut Session) -> Result<i64, Error> {
    let mounts = match freezable(ctx) {
        Ok(m) => m,
        Err(e) => {
            // The mount table is gone (no /proc): still leave the frozen state.
            unset_frozen(ctx, session);
            return Err(e);
        }
    };
    let mut count = 0;
    for mount in &mounts {
        let Ok(dir) = open_mount(ctx, mount) else {
            continue;
        };
        let mut thawed = false;
        for _ in 0..MAX_THAWS {
            if freeze::thaw(&dir).is_err() {
                break;
            }
            thawed = true;
        }
        count += i64::from(thawed);
    }
    unset_frozen(ctx, session);
    Ok(count)
}

/// The loop's timer: the freeze's deadline passed with nobody thawing. Thaws, logs it
/// (after the thaw, so the line is written) and starts the hook's `thaw`, whose result
/// nobody waits for.
pub fn on_timer(ctx: &Ctx, session: &mut Session) {
    let Some(deadline) = session.freeze_deadline else {
        return;
    };
    if Instant::now() < deadline {
        return;
    }
    let result = thaw_now(ctx, session);
    let secs = ctx.config.fsfreeze_timeout;
    match result {
        Ok(n) => log::warn(&format!(
            "not thawed by the host within fsfreeze-timeout ({secs} s): {n} filesystems thawed"
        )),
        Err(e) => log::error(&format!(
            "fsfreeze-timeout ({secs} s) passed, thaw failed: {e}"
        )),
    }
    match hook_run(ctx, "thaw") {
        Ok(Some(run)) => {
            if let Err(e) = session.children.start(run) {
                log::warn(&format!("cannot run fsfreeze hook thaw: {e}"));
            }
        }
        Ok(None) => {}
        Err(e) => log::warn(&e.to_string()),
    }
}

/// A stopping agent (SIGTERM, SIGINT) thaws first: qemu-ga ignores the signal instead,
/// and a guest left frozen by a dead agent hangs every writer. The hook's `thaw` runs
/// to completion (its deadline) before the agent exits.
pub fn thaw_at_exit(ctx: &Ctx, session: &mut Session) {
    if !session.frozen {
        return;
    }
    match thaw_now(ctx, session) {
        Ok(n) => log::warn(&format!("stopping while frozen: {n} filesystems thawed")),
        Err(e) => log::error(&format!("stopping while frozen, thaw failed: {e}")),
    }
    match hook_run(ctx, "thaw") {
        Ok(Some(run)) => {
            if let Err(e) = hook_result(ctx, child::run_blocking(run)) {
                log::warn(&e.to_string());
            }
        }
        Ok(None) => {}
        Err(e) => log::warn(&e.to_string()),
    }
}

/// An agent started while `qga.state.isfrozen` exists comes back frozen, as qemu-ga
/// does: only the `while_frozen` commands run, the log is held, until a thaw (or the
/// timeout, counted from the start).
pub fn restore(ctx: &Ctx, session: &mut Session) {
    if !is_marked_frozen(ctx.statedir()) {
        return;
    }
    session.frozen = true;
    log::hold();
    let timeout = ctx.config.fsfreeze_timeout;
    session.freeze_deadline = (timeout > 0).then(|| Instant::now() + Duration::from_secs(timeout));
    log::warn("started while frozen (qga.state.isfrozen exists): waiting for guest-fsfreeze-thaw");
}

/// Whether the statedir holds the agent's own isfrozen marker. One planted by another
/// user (a writable statedir) does not freeze the agent.
pub fn is_marked_frozen(statedir: &Path) -> bool {
    let Ok(dir) = Dir::open(statedir) else {
        return false;
    };
    match untrusted::open_own_file(&dir, ISFROZEN, untrusted::STATE_FILE_CAP) {
        Ok(found) => found.is_some(),
        Err(e) => {
            log::warn(&format!("ignoring {}/{ISFROZEN}: {e}", statedir.display()));
            false
        }
    }
}

/// The frozen state: the marker first (written while nothing is frozen yet), then the
/// gate and the held log.
fn set_frozen(ctx: &Ctx, session: &mut Session) -> Result<(), Error> {
    let statedir = ctx.statedir();
    Dir::open(statedir)
        .and_then(|dir| untrusted::replace(&dir, ISFROZEN, 0o600, b""))
        .map_err(|e| {
            Error::io(
                format!("failed to create {}/{ISFROZEN}", statedir.display()),
                e,
            )
        })?;
    session.frozen = true;
    log::hold();
    Ok(())
}

fn unset_frozen(ctx: &Ctx, session: &mut Session) {
    session.frozen = false;
    session.freeze_deadline = None;
    let removed = Dir::open(ctx.statedir()).and_then(|dir| dir.unlink(ISFROZEN));
    log::release();
    if let Err(e) = removed {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn(&format!("cannot remove {ISFROZEN}: {e}"));
        }
    }
}

/// The filesystems to freeze or thaw, in mount order: qemu-ga's list, which fstrim and
/// fsinfo share ([`proc::read_fs_mounts`]: a device number, each device once), less
/// FUSE types — fuseblk (ntfs-3g) has a real device, but its daemon must keep writing
/// while the kernel waits for it, so freezing it can deadlock (qemu-ga does not skip
/// it) — and less sources an old mtab gives no device number.
fn freezable(ctx: &Ctx) -> Result<Vec<MountInfo>, Error> {
    Ok(proc::read_fs_mounts(ctx)?
        .into_iter()
        .filter(|m| !is_fuse_type(&m.fstype) && (m.major, m.minor) != (0, 0))
        .collect())
}

/// The mount's root directory, read-only: what FIFREEZE and FITHAW are issued on.
fn open_mount(ctx: &Ctx, mount: &MountInfo) -> io::Result<File> {
    File::open(ctx.path(&mount.mountpoint))
}

/// The hook to run with `arg`, when one is configured; qemu-ga's check first.
fn hook_run(ctx: &Ctx, arg: &str) -> Result<Option<Run>, Error> {
    let Some(hook) = &ctx.config.fsfreeze_hook else {
        return Ok(None);
    };
    crate::sys::process::check_executable(hook).map_err(|e| {
        Error::io(
            format!("can't access fsfreeze hook '{}'", hook.display()),
            e,
        )
    })?;
    log::info(&format!("executing fsfreeze hook with arg '{arg}'"));
    let mut cmd = Command::new(hook);
    cmd.arg(arg);
    let timeout = Duration::from_secs(ctx.config.fsfreeze_hook_timeout);
    Ok(Some(Run::program(
        cmd,
        Vec::new(),
        timeout,
        HOOK_OUTPUT_CAP,
    )))
}

/// The hook's result in qemu-ga 9.1's words (`ga_run_command`): its output, or the exit
/// status when it printed nothing.
fn hook_result(ctx: &Ctx, result: io::Result<Finished>) -> Result<(), Error> {
    let done = result.map_err(|e| Error::io("failed to execute fsfreeze hook", e))?;
    let out = String::from_utf8_lossy(&done.output).into_owned();
    let with_out = |base: String| {
        if out.is_empty() {
            base
        } else {
            format!("{base}: {out}")
        }
    };
    let Some(status) = done.status else {
        return Err(Error::Failed(with_out(format!(
            "child process has failed to execute fsfreeze hook: killed after {} s",
            ctx.config.fsfreeze_hook_timeout
        ))));
    };
    match status.code() {
        Some(0) => Ok(()),
        Some(code) if out.is_empty() => Err(Error::Failed(format!(
            "child process has failed to execute fsfreeze hook: exit status {code}"
        ))),
        Some(_) => Err(Error::Failed(format!(
            "child process has failed to execute fsfreeze hook: {out}"
        ))),
        None => Err(Error::Failed(with_out(
            "child process has terminated abnormally".into(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    const SAMPLE: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
40 28 252:16 / /mnt/my\\040data rw,relatime shared:20 - ext4 /dev/vdb rw
41 28 252:16 /sub /srv/bind rw,relatime shared:20 - ext4 /dev/vdb rw
42 28 0:45 / /net rw,relatime shared:21 - nfs4 server:/export rw,vers=4.2
43 28 8:17 / /win rw,relatime shared:22 - fuseblk /dev/sdb1 rw
44 28 0:46 / /tmp rw shared:23 - tmpfs tmpfs rw
bad line without separator
";

    #[test]
    fn freeze_list_skips_virtual_network_fuse_and_bind_mounts() {
        let root = std::env::temp_dir().join(format!("qga-freezable-{}", std::process::id()));
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        std::fs::write(root.join("proc/self/mountinfo"), SAMPLE).unwrap();
        let dirs: Vec<String> = freezable(&Ctx::with_root(&root))
            .unwrap()
            .into_iter()
            .map(|m| m.mountpoint)
            .collect();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(dirs, ["/", "/mnt/my data"]);
    }

    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn finished(raw_status: Option<i32>, output: &str) -> io::Result<Finished> {
        Ok(Finished {
            status: raw_status.map(ExitStatus::from_raw),
            output: output.as_bytes().to_vec(),
            ..Finished::default()
        })
    }

    fn desc(result: Result<(), Error>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn hook_errors_in_qemu_ga_9_1_words() {
        let ctx = Ctx::with_root("/");
        assert!(hook_result(&ctx, finished(Some(0), "noise\n")).is_ok());
        assert_eq!(
            desc(hook_result(&ctx, finished(Some(3 << 8), "db busy\n"))),
            "child process has failed to execute fsfreeze hook: db busy\n"
        );
        assert_eq!(
            desc(hook_result(&ctx, finished(Some(4 << 8), ""))),
            "child process has failed to execute fsfreeze hook: exit status 4"
        );
        assert_eq!(
            desc(hook_result(&ctx, finished(Some(libc::SIGSEGV), ""))),
            "child process has terminated abnormally"
        );
        assert_eq!(
            desc(hook_result(&ctx, finished(None, "stuck\n"))),
            "child process has failed to execute fsfreeze hook: killed after 60 s: stuck\n"
        );
    }

    #[test]
    fn a_planted_isfrozen_link_does_not_freeze_the_agent() {
        let d = std::env::temp_dir().join(format!("qga-isfrozen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        assert!(!is_marked_frozen(&d));
        std::os::unix::fs::symlink("/etc/hostname", d.join(ISFROZEN)).unwrap();
        assert!(!is_marked_frozen(&d));
        std::fs::remove_file(d.join(ISFROZEN)).unwrap();
        std::fs::write(d.join(ISFROZEN), b"").unwrap();
        assert!(is_marked_frozen(&d));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn status_follows_the_session_flag() {
        let ctx = Ctx::with_root("/");
        let mut s = Session::default();
        assert_eq!(
            status(&ctx, &mut s, NoArgs {}).unwrap(),
            FreezeStatus::Thawed
        );
        s.frozen = true;
        assert_eq!(
            status(&ctx, &mut s, NoArgs {}).unwrap(),
            FreezeStatus::Frozen
        );
    }
}
