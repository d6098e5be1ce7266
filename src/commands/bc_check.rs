//! guest-user-check: run a check the host names (`[user-checks]` in the config) or sends
//! (ad hoc, unless `user-check-adhoc=false`) with `/bin/sh -c`, as the feature intends,
//! under the configured deadline, in its own process group, output capped.

use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::child::Run;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::job::Step;
use crate::log;

/// Merged stdout and stderr kept per check.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// The shell of the running system (not of a fixture root: the check runs for real).
const SHELL: &str = "/bin/sh";
/// For an agent started by init with no PATH at all.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserCheckArgs {
    pub command_name: String,
    pub command: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct UserCheck {
    pub command_name: String,
    /// Merged stdout and stderr (invalid UTF-8 replaced), at most 64 KiB.
    pub result: String,
    /// The exit code; 128 + N when killed by signal N; -1 when timed out.
    pub exit_status: i32,
    pub timed_out: bool,
    /// The output was longer than the cap.
    pub truncated: bool,
}

pub fn user_check(ctx: &Ctx, args: UserCheckArgs) -> Result<Step<UserCheck>, Error> {
    let script = match &args.command {
        Some(cmd) => {
            if !ctx.config.user_check_adhoc {
                return Err(Error::Failed(
                    "ad-hoc user checks are disabled (user-check-adhoc=false); only checks named in [user-checks] may run".into(),
                ));
            }
            cmd.clone()
        }
        None => ctx
            .config
            .user_checks
            .get(&args.command_name)
            .cloned()
            .ok_or_else(|| {
                Error::Failed(format!(
                    "no user check named '{}' in [user-checks]",
                    args.command_name
                ))
            })?,
    };
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c").arg(&script).current_dir("/");
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
    let timeout = Duration::from_secs(ctx.config.user_check_timeout);
    let run = Run::program(cmd, Vec::new(), timeout, OUTPUT_CAP);
    Ok(Step::wait(run, move |_, _, result| {
        let done = result.map_err(|e| Error::io(format!("failed to run {SHELL}"), e))?;
        // Not the check's name: it is an argument, and -v logs none (README).
        log::debug(&format!(
            "user check exited with {}{}",
            done.exit_code(),
            if done.timed_out() { " (timed out)" } else { "" }
        ));
        Ok(Step::Done(UserCheck {
            command_name: args.command_name,
            result: String::from_utf8_lossy(&done.output).into_owned(),
            exit_status: done.exit_code(),
            timed_out: done.timed_out(),
            truncated: done.truncated,
        }))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, command: Option<&str>) -> UserCheckArgs {
        UserCheckArgs {
            command_name: name.into(),
            command: command.map(String::from),
        }
    }

    #[test]
    fn adhoc_command_runs_in_a_shell() {
        let ctx = Ctx::with_root("/");
        let r = user_check(
            &ctx,
            args("pipe", Some("printf 'a\\nb\\n' | grep b; exit 4")),
        )
        .unwrap()
        .finish(&ctx)
        .unwrap();
        assert_eq!(r.result, "b\n");
        assert_eq!(r.exit_status, 4);
        assert!(!r.timed_out);
    }

    #[test]
    fn named_check_from_config_and_unknown_name() {
        let mut ctx = Ctx::with_root("/");
        ctx.config
            .user_checks
            .insert("hello".into(), "echo hi".into());
        assert_eq!(
            user_check(&ctx, args("hello", None))
                .unwrap()
                .finish(&ctx)
                .unwrap()
                .result,
            "hi\n"
        );
        let err = user_check(&ctx, args("$(reboot)", None)).unwrap_err();
        assert!(err.to_string().contains("'$(reboot)'"));
    }

    #[test]
    fn adhoc_refused_when_disabled_but_named_still_runs() {
        let mut ctx = Ctx::with_root("/");
        ctx.config.user_check_adhoc = false;
        ctx.config.user_checks.insert("ok".into(), "true".into());
        assert!(user_check(&ctx, args("x", Some("true"))).is_err());
        let ok = user_check(&ctx, args("ok", None))
            .unwrap()
            .finish(&ctx)
            .unwrap();
        assert_eq!(ok.exit_status, 0);
    }
}
