//! Users: guest-get-users (logged-in users from /var/run/utmp, glibc records parsed by
//! src/utmp.rs) and guest-set-user-password (chpasswd through src/accounts.rs, the
//! password on its stdin only).

use serde::{Deserialize, Serialize};

use super::{Empty, NoArgs};
use crate::accounts;
use crate::base64;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::job::Step;
use crate::sys::secret::wipe;
use crate::utmp::{self, UtmpRecord};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    pub user: String,
    /// Seconds since the epoch, fractional: the earliest login of this user.
    pub login_time: f64,
}

/// One entry per user with a USER_PROCESS record, in first-seen order.
pub fn get_users(ctx: &Ctx, _: NoArgs) -> Result<Vec<User>, Error> {
    Ok(logged_in(&utmp::read_current(ctx)?))
}

pub fn logged_in(records: &[UtmpRecord]) -> Vec<User> {
    let mut users: Vec<User> = Vec::new();
    for r in records.iter().filter(|r| r.kind == utmp::USER_PROCESS) {
        let time = r.tv_sec as f64 + f64::from(r.tv_usec) / 1e6;
        match users.iter_mut().find(|u| u.user == r.user) {
            Some(u) => u.login_time = u.login_time.min(time),
            None => users.push(User {
                user: r.user.clone(),
                login_time: time,
            }),
        }
    }
    users
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordArgs {
    pub username: String,
    /// Base64 of the password (or of its crypt(3) hash when `crypted`).
    pub password: String,
    pub crypted: bool,
}

/// Checks in qemu-ga's order and wording, then refuses a user /etc/passwd does not
/// know (qemu-ga lets chpasswd fail with "child process has failed..."), then runs
/// chpasswd. The password never reaches an error or a log line; its encoded and decoded
/// copies are wiped once chpasswd has it (a core would not show them, see main.rs).
pub fn set_user_password(ctx: &Ctx, args: SetPasswordArgs) -> Result<Step<Empty>, Error> {
    let decoded = base64::decode(&args.password);
    wipe(&mut args.password.into_bytes());
    let raw = Secret(decoded?);
    accounts::check_credentials(&args.username, &raw.0)?;
    let (username, crypted) = (args.username, args.crypted);
    accounts::find_user(ctx, &username)?.then(ctx, move |_, user| {
        if user.is_none() {
            return Err(Error::Failed(format!("user '{username}' does not exist")));
        }
        accounts::chpasswd(&username, &raw.0, crypted)?.map(|()| Ok(Empty {}))
    })
}

/// A decoded password, wiped when dropped.
struct Secret(Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: i16, user: &str, sec: i64, usec: i32) -> UtmpRecord {
        UtmpRecord {
            kind,
            user: user.into(),
            tv_sec: sec,
            tv_usec: usec,
            ..UtmpRecord::default()
        }
    }

    #[test]
    fn one_entry_per_user_with_the_earliest_login() {
        let records = [
            rec(utmp::BOOT_TIME, "reboot", 100, 0),
            rec(utmp::USER_PROCESS, "alice", 2000, 500_000),
            rec(utmp::USER_PROCESS, "root", 3000, 0),
            rec(utmp::LOGIN_PROCESS, "LOGIN", 50, 0),
            rec(utmp::USER_PROCESS, "alice", 1000, 250_000),
            rec(utmp::DEAD_PROCESS, "bob", 10, 0),
        ];
        assert_eq!(
            logged_in(&records),
            [
                User {
                    user: "alice".into(),
                    login_time: 1000.25
                },
                User {
                    user: "root".into(),
                    login_time: 3000.0
                },
            ]
        );
    }

    #[test]
    fn password_checks_use_upstream_wording_before_any_lookup() {
        let ctx = Ctx::with_root("/nonexistent-root");
        let call = |user: &str, password: &str| {
            let args = SetPasswordArgs {
                username: user.into(),
                password: password.into(),
                crypted: false,
            };
            set_user_password(&ctx, args).unwrap_err().to_string()
        };
        assert_eq!(
            call("root", "!!!"),
            "Base64 data contains invalid characters"
        );
        // "x\ny" and "x\0y"
        assert_eq!(call("root", "eAp5"), "forbidden characters in raw password");
        assert_eq!(call("root", "eAB5"), "forbidden characters in raw password");
        assert_eq!(call("a:b", "eA=="), "forbidden characters in username");
        assert_eq!(call("a\nb", "eA=="), "forbidden characters in username");
    }
}
