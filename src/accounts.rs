//! Local accounts: /etc/passwd lookups, and password changes through chpasswd(8) with
//! the secret on its stdin only (never argv, a log line or an error message).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::child::Run;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::job::Step;

/// One /etc/passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// Parses /etc/passwd; malformed lines and NIS "+"/"-" entries are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() || f[0].starts_with(['+', '-']) {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

/// Looks `name` up in /etc/passwd below the context's root.
pub fn lookup_user(ctx: &Ctx, name: &str) -> Result<Option<PasswdEntry>, Error> {
    let text = ctx.read("etc/passwd")?;
    Ok(parse_passwd(&text).into_iter().find(|e| e.name == name))
}

/// How long `getent` may take: a directory server that does not answer in this time
/// will not answer the host either.
const GETENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Looks `name` up in /etc/passwd, then with `getent passwd NAME`: the static agent's
/// libc has no NSS, so users from LDAP, SSSD or NIS are known only to the system's
/// own libc, which getent uses. `None` when neither knows the user.
pub fn find_user(ctx: &Ctx, name: &str) -> Result<Step<Option<PasswdEntry>>, Error> {
    if let Some(entry) = lookup_user(ctx, name)? {
        return Ok(Step::Done(Some(entry)));
    }
    // Names getent could take for an option, or that no passwd line can hold.
    let plausible = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('-')
        && !name.contains([':', '\n', '\0']);
    let Some(getent) = find_program("getent").filter(|_| plausible) else {
        return Ok(Step::Done(None));
    };
    let mut cmd = Command::new(getent);
    cmd.arg("passwd").arg(name);
    let name = name.to_string();
    let run = Run::program(cmd, Vec::new(), GETENT_TIMEOUT, 64 * 1024);
    Ok(Step::wait(run, move |_, _, result| {
        let done = result.map_err(|e| Error::io("failed to run getent", e))?;
        if done.timed_out() {
            return Err(Error::Failed(format!(
                "failed to lookup user '{name}': getent did not answer in time"
            )));
        }
        // Exit 2: no such user. Anything else unusual reads as unknown too.
        if done.exit_code() != 0 {
            return Ok(Step::Done(None));
        }
        let text = String::from_utf8_lossy(&done.output);
        Ok(Step::Done(
            parse_passwd(&text).into_iter().find(|e| e.name == name),
        ))
    }))
}

/// uid -> user name for every /etc/passwd entry (the first entry wins for a shared uid,
/// as getpwuid does); empty if the file is unreadable.
pub fn user_names(ctx: &Ctx) -> std::collections::HashMap<u32, String> {
    let mut names = std::collections::HashMap::new();
    for e in ctx
        .read("etc/passwd")
        .map(|t| parse_passwd(&t))
        .unwrap_or_default()
    {
        names.entry(e.uid).or_insert(e.name);
    }
    names
}

/// Longest password accepted; chpasswd reads lines into fixed buffers on old shadow.
pub const MAX_PASSWORD: usize = 4096;
/// How long chpasswd may take (PAM modules can be slow, but not this slow).
const CHPASSWD_TIMEOUT: Duration = Duration::from_secs(30);
/// Directories searched after $PATH: the agent may be started with a minimal PATH.
const SBIN_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Sets `user`'s password by running `chpasswd` (`-e` when `password` is already
/// crypted) with "user:password\n" on its stdin.
/// What chpasswd's `user:password` line cannot carry, in qemu-ga's words (Args: the
/// BC commands answer it with EINVAL).
pub fn check_credentials(user: &str, password: &[u8]) -> Result<(), Error> {
    if password.contains(&b'\n') || password.contains(&0) {
        return Err(Error::Args("forbidden characters in raw password".into()));
    }
    if password.len() > MAX_PASSWORD {
        return Err(Error::Args(format!(
            "password is longer than {MAX_PASSWORD} bytes"
        )));
    }
    if user.is_empty() || user.contains([':', '\n', '\0']) {
        return Err(Error::Args("forbidden characters in username".into()));
    }
    Ok(())
}

pub fn chpasswd(user: &str, password: &[u8], crypted: bool) -> Result<Step<()>, Error> {
    check_credentials(user, password)?;
    let program = find_program("chpasswd").ok_or_else(|| {
        Error::Failed("cannot find 'chpasswd' on PATH, /usr/sbin or /sbin".into())
    })?;
    let mut cmd = Command::new(&program);
    if crypted {
        cmd.arg("-e");
    }
    let mut line = Vec::with_capacity(user.len() + password.len() + 2);
    line.extend_from_slice(user.as_bytes());
    line.push(b':');
    line.extend_from_slice(password);
    line.push(b'\n');
    // The line is zeroed when the Run is dropped, once written to chpasswd's stdin.
    let run = Run::program(cmd, line, CHPASSWD_TIMEOUT, 4096);
    Ok(Step::wait(run, |_, _, result| {
        let done = result.map_err(|e| Error::io("failed to run chpasswd", e))?;
        if done.timed_out() {
            return Err(Error::Failed("chpasswd did not finish in time".into()));
        }
        if done.exit_code() != 0 {
            // chpasswd's own output is not passed on: it may quote the input line.
            return Err(Error::Failed(format!(
                "child process has failed to set user password (exit status {})",
                done.exit_code()
            )));
        }
        Ok(Step::Done(()))
    }))
}

/// The first executable `name` in $PATH, then /usr/sbin, /sbin, /usr/bin and /bin.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                          broken:x:notanumber:1::/:/bin/sh\n\
                          +nisuser::::::\n\
                          toor:x:0:0::/root:/bin/sh\n";

    #[test]
    fn passwd_skips_malformed_and_nis_lines() {
        let e = parse_passwd(PASSWD);
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].name, "daemon");
        assert_eq!(e[1].home, "/usr/sbin");
    }

    #[test]
    fn shared_uid_keeps_the_first_name() {
        let dir = std::env::temp_dir().join(format!("qga-acct-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/passwd"), PASSWD).unwrap();
        let ctx = Ctx::with_root(&dir);
        assert_eq!(user_names(&ctx)[&0], "root");
        assert_eq!(lookup_user(&ctx, "daemon").unwrap().unwrap().uid, 1);
        assert_eq!(lookup_user(&ctx, "nobody").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn chpasswd_rejects_bad_input_before_running_anything() {
        assert!(matches!(
            chpasswd("ro:ot", b"x", false),
            Err(Error::Args(_))
        ));
        assert!(matches!(
            chpasswd("root", b"a\nb", false),
            Err(Error::Args(_))
        ));
        assert!(matches!(
            chpasswd("root", b"a\0b", false),
            Err(Error::Args(_))
        ));
        let long = vec![b'a'; MAX_PASSWORD + 1];
        assert!(matches!(
            chpasswd("root", &long, false),
            Err(Error::Args(_))
        ));
    }
}
