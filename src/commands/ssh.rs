//! SSH keys: guest-ssh-get/add/remove-authorized-keys on ~user/.ssh/authorized_keys.
//! Every file operation runs with the user's filesystem ids (setfsuid/setfsgid, see
//! src/untrusted.rs), through directory fds (src/sys/dirfd.rs), so the root agent can
//! read and write there only what the user could: a symlink or hard link the user
//! planted, a FIFO, or a file that is not theirs is refused. Writes go to a new file
//! that is renamed over the old one. Adding and removing are linear in the key count.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt;

use serde::{Deserialize, Serialize};

use super::Empty;
use crate::accounts::{self, PasswdEntry};
use crate::ctx::Ctx;
use crate::error::Error;
use crate::job::Step;
use crate::sys::dirfd::Dir;
use crate::sys::fsids::FsIds;
use crate::untrusted::{self, Account};

const SSH_DIR: &str = ".ssh";
const AUTHORIZED_KEYS: &str = "authorized_keys";
/// Largest authorized_keys read or written: 16 MiB is 20,000 RSA-4096 keys.
pub const AUTHORIZED_KEYS_CAP: u64 = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetKeysArgs {
    pub username: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddKeysArgs {
    pub username: String,
    pub keys: Vec<String>,
    /// Replace the file's content instead of adding to it.
    pub reset: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveKeysArgs {
    pub username: String,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizedKeys {
    pub keys: Vec<String>,
}

pub fn get_authorized_keys(ctx: &Ctx, args: GetKeysArgs) -> Result<Step<AuthorizedKeys>, Error> {
    with_user(ctx, args.username, move |ctx, user| {
        Ok(AuthorizedKeys {
            keys: read_keys(ctx, owner(&user))?,
        })
    })
}

/// Keys are checked before the user is looked up, as in qemu-ga.
pub fn add_authorized_keys(ctx: &Ctx, args: AddKeysArgs) -> Result<Step<Empty>, Error> {
    validate_keys(&args.keys)?;
    let AddKeysArgs {
        username,
        keys,
        reset,
    } = args;
    with_user(ctx, username, move |ctx, user| {
        add_keys(ctx, owner(&user), &keys, reset.unwrap_or(false))?;
        Ok(Empty {})
    })
}

pub fn remove_authorized_keys(ctx: &Ctx, args: RemoveKeysArgs) -> Result<Step<Empty>, Error> {
    validate_keys(&args.keys)?;
    let RemoveKeysArgs { username, keys } = args;
    with_user(ctx, username, move |ctx, user| {
        remove_keys(ctx, owner(&user), &keys)?;
        Ok(Empty {})
    })
}

/// Runs `f` on the user's passwd entry (/etc/passwd, then getent); qemu-ga's message
/// for an unknown user begins the same way.
fn with_user<R: 'static>(
    ctx: &Ctx,
    username: String,
    f: impl FnOnce(&Ctx, PasswdEntry) -> Result<R, Error> + 'static,
) -> Result<Step<R>, Error> {
    accounts::find_user(ctx, &username)?.then(ctx, move |ctx, user| {
        let user = user.ok_or_else(|| {
            Error::Failed(format!(
                "failed to lookup user '{username}': no such user in /etc/passwd"
            ))
        })?;
        f(ctx, user).map(Step::Done)
    })
}

fn owner(user: &PasswdEntry) -> KeyOwner<'_> {
    KeyOwner {
        home: &user.home,
        uid: user.uid,
        gid: user.gid,
    }
}

/// Whose keys: the passwd entry's home (a guest path, read below the ctx root) and ids.
#[derive(Debug, Clone, Copy)]
pub struct KeyOwner<'a> {
    pub home: &'a str,
    pub uid: u32,
    pub gid: u32,
}

impl KeyOwner<'_> {
    /// A guest path below the home directory, for messages.
    fn shown(&self, rel: &str) -> String {
        format!("{}/{rel}", self.home.trim_end_matches('/'))
    }

    fn account(&self) -> Account {
        Account {
            uid: self.uid,
            gid: self.gid,
        }
    }

    /// File access as this user until the guard is dropped.
    fn switch(&self) -> Result<FsIds, Error> {
        untrusted::as_user(self.account()).map_err(|e| {
            Error::io(
                format!("failed to take the file permissions of uid {}", self.uid),
                e,
            )
        })
    }
}

/// Rejects what cannot be one line of authorized_keys: qemu-ga refuses comments and
/// newlines; empty keys, carriage returns and NULs are refused as well.
pub fn validate_keys(keys: &[String]) -> Result<(), Error> {
    for key in keys {
        let bad = key.trim().is_empty() || key.starts_with('#') || key.contains(['\n', '\r', '\0']);
        if bad {
            return Err(Error::Failed(format!(
                "invalid OpenSSH public key: '{key}'"
            )));
        }
    }
    Ok(())
}

/// The keys in authorized_keys text: trimmed lines that are neither blank nor comments.
pub fn key_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The lines of a file, without the empty piece after a final newline.
fn lines_of(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

/// `existing` plus each key not yet present (compared trimmed); other lines, comments
/// included, stay as they were. Every line ends in a newline. One set lookup per line
/// and per key: linear, where comparing every key with every line was quadratic.
pub fn with_keys_added(existing: &str, keys: &[String]) -> String {
    let mut lines: Vec<&str> = lines_of(existing);
    let mut present: HashSet<Trimmed> = lines.iter().map(|l| Trimmed::of(l)).collect();
    for key in keys {
        if present.insert(Trimmed::of(key)) {
            lines.push(key);
        }
    }
    joined(&lines)
}

/// `existing` without the lines equal (trimmed) to one of `keys`; linear as above.
pub fn with_keys_removed(existing: &str, keys: &[String]) -> String {
    let gone: HashSet<Trimmed> = keys.iter().map(|k| Trimmed::of(k)).collect();
    let lines: Vec<&str> = lines_of(existing)
        .into_iter()
        .filter(|l| !gone.contains(&Trimmed::of(l)))
        .collect();
    joined(&lines)
}

/// A line or key as compared: without surrounding blanks.
#[derive(Hash)]
struct Trimmed<'a>(&'a str);

impl<'a> Trimmed<'a> {
    fn of(s: &'a str) -> Trimmed<'a> {
        Trimmed(s.trim())
    }
}

impl PartialEq for Trimmed<'_> {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(test)]
        tests::COMPARISONS.with(|c| c.set(c.get() + 1));
        self.0 == other.0
    }
}

impl Eq for Trimmed<'_> {}

fn joined(lines: &[&str]) -> String {
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The user's keys; a missing .ssh or authorized_keys means no keys (qemu-ga reports
/// an error there).
pub fn read_keys(ctx: &Ctx, owner: KeyOwner) -> Result<Vec<String>, Error> {
    let _as_user = owner.switch()?;
    let home = open_home(ctx, owner)?;
    let Some(ssh) = open_ssh_dir(&home, owner)? else {
        return Ok(Vec::new());
    };
    Ok(read_authorized_keys(&ssh, owner)?
        .map(|text| key_lines(&text))
        .unwrap_or_default())
}

/// Adds `keys` (validated by the caller); with `reset`, they replace the file.
pub fn add_keys(ctx: &Ctx, owner: KeyOwner, keys: &[String], reset: bool) -> Result<(), Error> {
    let _as_user = owner.switch()?;
    let home = open_home(ctx, owner)?;
    let ssh = match open_ssh_dir(&home, owner)? {
        Some(ssh) => ssh,
        None => create_ssh_dir(&home, owner)?,
    };
    let existing = if reset {
        String::new()
    } else {
        read_authorized_keys(&ssh, owner)?.unwrap_or_default()
    };
    write_authorized_keys(&ssh, owner, &with_keys_added(&existing, keys))
}

/// Removes `keys`; a missing file or key is not an error.
pub fn remove_keys(ctx: &Ctx, owner: KeyOwner, keys: &[String]) -> Result<(), Error> {
    let _as_user = owner.switch()?;
    let home = open_home(ctx, owner)?;
    let Some(ssh) = open_ssh_dir(&home, owner)? else {
        return Ok(());
    };
    let Some(existing) = read_authorized_keys(&ssh, owner)? else {
        return Ok(());
    };
    let updated = with_keys_removed(&existing, keys);
    if updated == existing {
        return Ok(());
    }
    write_authorized_keys(&ssh, owner, &updated)
}

fn open_home(ctx: &Ctx, owner: KeyOwner) -> Result<Dir, Error> {
    Dir::open(&ctx.path(owner.home))
        .map_err(|e| Error::io(format!("failed to open home directory '{}'", owner.home), e))
}

/// ~/.ssh, or None if it does not exist. A symlink there is refused.
fn open_ssh_dir(home: &Dir, owner: KeyOwner) -> Result<Option<Dir>, Error> {
    match home.open_dir(SSH_DIR) {
        Ok(dir) => Ok(Some(dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(
            format!("failed to open directory '{}'", owner.shown(SSH_DIR)),
            refused_dir_link(e),
        )),
    }
}

/// Creates ~/.ssh as the user (so it is theirs), mode exactly 0700.
fn create_ssh_dir(home: &Dir, owner: KeyOwner) -> Result<Dir, Error> {
    let shown = owner.shown(SSH_DIR);
    home.mkdir(SSH_DIR, 0o700)
        .map_err(|e| Error::io(format!("failed to create directory '{shown}'"), e))?;
    let dir = home
        .open_dir(SSH_DIR)
        .map_err(|e| Error::io(format!("failed to open directory '{shown}'"), e))?;
    // In a set-group-ID home the new directory would take the home's group.
    std::os::unix::fs::fchown(dir.as_file(), Some(owner.uid), Some(owner.gid))
        .map_err(|e| Error::io(format!("failed to set ownership of '{shown}'"), e))?;
    // mkdir's mode is reduced by the umask; the directory must be exactly 0700.
    dir.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("failed to set permissions of '{shown}'"), e))?;
    Ok(dir)
}

/// The file's text, or None if it does not exist. Opened as the user and refused unless
/// it is a regular file of theirs with one link, so the content of a file the user may
/// not read (a symlink or hard link to /etc/shadow) never reaches their authorized_keys
/// or the host, and a FIFO or a huge file cannot stall the agent.
fn read_authorized_keys(ssh: &Dir, owner: KeyOwner) -> Result<Option<String>, Error> {
    let shown = owner.shown(&format!("{SSH_DIR}/{AUTHORIZED_KEYS}"));
    let failed = |e| Error::io(format!("failed to read '{shown}'"), e);
    let opened =
        untrusted::open_user_file(ssh, AUTHORIZED_KEYS, owner.account(), AUTHORIZED_KEYS_CAP);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    let bytes = untrusted::read_capped(&mut file, AUTHORIZED_KEYS_CAP).map_err(failed)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Writes `text` to a new file (the user's: the caller switched to them) with mode 0600
/// and renames it over authorized_keys, so sshd sees either the old or the new file.
fn write_authorized_keys(ssh: &Dir, owner: KeyOwner, text: &str) -> Result<(), Error> {
    let shown = owner.shown(&format!("{SSH_DIR}/{AUTHORIZED_KEYS}"));
    if text.len() as u64 > AUTHORIZED_KEYS_CAP {
        return Err(Error::Failed(format!(
            "failed to write to '{shown}': it would be larger than {AUTHORIZED_KEYS_CAP} bytes"
        )));
    }
    untrusted::replace(ssh, AUTHORIZED_KEYS, 0o600, text.as_bytes())
        .map_err(|e| Error::io(format!("failed to write to '{shown}'"), e))
}

/// O_NOFOLLOW|O_DIRECTORY reports a symlink as ELOOP or ENOTDIR; say what it is.
fn refused_dir_link(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::NotADirectory {
        io::Error::other("not a directory (symbolic links are refused)")
    } else {
        untrusted::refused_link(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Key comparisons made on this thread (see `Trimmed`'s `PartialEq`).
        pub static COMPARISONS: Cell<u64> = const { Cell::new(0) };
    }

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn key_validation_follows_upstream_and_more() {
        assert!(validate_keys(&keys(&["ssh-ed25519 AAAA a@b"])).is_ok());
        for bad in ["#c", "a\nb", "a\rb", "a\0b", "", "   "] {
            let e = validate_keys(&keys(&["ssh-rsa A", bad])).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid OpenSSH public key: '{bad}'")
            );
        }
    }

    #[test]
    fn key_lines_skip_comments_and_blanks() {
        let text = "# managed\n\nssh-rsa AAA a@b\n  ssh-ed25519 BBB c@d  \r\n#x\n";
        assert_eq!(
            key_lines(text),
            keys(&["ssh-rsa AAA a@b", "ssh-ed25519 BBB c@d"])
        );
    }

    #[test]
    fn adding_keeps_other_lines_and_skips_present_keys() {
        let existing = "# managed\nssh-rsa AAA a@b\r\n";
        let out = with_keys_added(existing, &keys(&["ssh-rsa AAA a@b", "ssh-ed25519 BBB"]));
        assert_eq!(out, "# managed\nssh-rsa AAA a@b\r\nssh-ed25519 BBB\n");
        // A file without a final newline gets one instead of a glued line.
        assert_eq!(with_keys_added("k1", &keys(&["k2"])), "k1\nk2\n");
        assert_eq!(with_keys_added("", &keys(&["k2", "k2"])), "k2\n");
    }

    #[test]
    fn removing_keeps_the_rest() {
        let existing = "# c\nk1\nk2\nk1 \n";
        assert_eq!(
            with_keys_removed(existing, &keys(&["k1", "k9"])),
            "# c\nk2\n"
        );
    }

    /// Key comparisons for adding `n` new keys to a file of `n` keys, then removing them.
    fn comparisons_for(n: usize) -> u64 {
        let old: Vec<String> = (0..n).map(|i| format!("ssh-rsa OLD{i}")).collect();
        let new: Vec<String> = (0..n).map(|i| format!("ssh-rsa NEW{i}")).collect();
        let existing = joined(&old.iter().map(String::as_str).collect::<Vec<_>>());
        COMPARISONS.with(|c| c.set(0));
        let added = with_keys_added(&existing, &new);
        let removed = with_keys_removed(&added, &new);
        assert_eq!(removed, existing);
        COMPARISONS.with(|c| c.get())
    }

    #[test]
    fn twenty_thousand_keys_take_linear_comparisons() {
        // Comparing every key with every line made n * n / 2 = 2e8 comparisons here.
        let (small, big) = (comparisons_for(2_000), comparisons_for(20_000));
        eprintln!("key comparisons: 2,000 keys {small}, 20,000 keys {big}");
        assert!(big <= 4 * 20_000, "{big} comparisons for 20,000 keys");
        // Ten times the keys, about ten times the work (quadratic would be 100 times).
        assert!(big <= 15 * small.max(2_000), "{small} -> {big}");
    }

    #[test]
    fn duplicate_keys_in_one_request_are_added_once() {
        let out = with_keys_added("a\n", &keys(&["b", " b ", "a", "c", "b"]));
        assert_eq!(out, "a\nb\nc\n");
    }

    mod files {
        use super::*;
        use std::os::unix::fs::MetadataExt;
        use std::path::{Path, PathBuf};

        struct Home {
            root: PathBuf,
            uid: u32,
            gid: u32,
        }

        impl Home {
            fn new(tag: &str) -> Home {
                let root =
                    std::env::temp_dir().join(format!("qga-ssh-{tag}-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&root);
                std::fs::create_dir_all(root.join("home/alice")).unwrap();
                let meta = std::fs::metadata(&root).unwrap();
                Home {
                    root,
                    uid: meta.uid(),
                    gid: meta.gid(),
                }
            }

            fn ctx(&self) -> Ctx {
                Ctx::with_root(&self.root)
            }

            fn owner(&self) -> KeyOwner<'static> {
                KeyOwner {
                    home: "/home/alice",
                    uid: self.uid,
                    gid: self.gid,
                }
            }

            fn path(&self, rel: &str) -> PathBuf {
                self.root.join("home/alice").join(rel)
            }
        }

        impl Drop for Home {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.root);
            }
        }

        fn mode(p: &Path) -> u32 {
            std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
        }

        #[test]
        fn add_creates_ssh_dir_and_file_with_modes_and_owner() {
            let h = Home::new("create");
            add_keys(&h.ctx(), h.owner(), &keys(&["k1", "k2"]), false).unwrap();
            assert_eq!(mode(&h.path(".ssh")), 0o700);
            assert_eq!(mode(&h.path(".ssh/authorized_keys")), 0o600);
            let meta = std::fs::metadata(h.path(".ssh/authorized_keys")).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (h.uid, h.gid));
            let text = std::fs::read_to_string(h.path(".ssh/authorized_keys")).unwrap();
            assert_eq!(text, "k1\nk2\n");
            assert_eq!(read_keys(&h.ctx(), h.owner()).unwrap(), keys(&["k1", "k2"]));
            // No temporary file is left behind.
            let names: Vec<_> = std::fs::read_dir(h.path(".ssh")).unwrap().collect();
            assert_eq!(names.len(), 1);
        }

        #[test]
        fn add_existing_is_a_no_op_and_reset_replaces() {
            let h = Home::new("reset");
            add_keys(&h.ctx(), h.owner(), &keys(&["k1"]), false).unwrap();
            add_keys(&h.ctx(), h.owner(), &keys(&["k1"]), false).unwrap();
            assert_eq!(read_keys(&h.ctx(), h.owner()).unwrap(), keys(&["k1"]));
            add_keys(&h.ctx(), h.owner(), &keys(&["k2"]), true).unwrap();
            assert_eq!(read_keys(&h.ctx(), h.owner()).unwrap(), keys(&["k2"]));
        }

        #[test]
        fn remove_missing_key_or_file_is_ok() {
            let h = Home::new("remove");
            remove_keys(&h.ctx(), h.owner(), &keys(&["k1"])).unwrap();
            assert!(!h.path(".ssh").exists());
            add_keys(&h.ctx(), h.owner(), &keys(&["k1", "k2"]), false).unwrap();
            remove_keys(&h.ctx(), h.owner(), &keys(&["k1", "k9"])).unwrap();
            assert_eq!(read_keys(&h.ctx(), h.owner()).unwrap(), keys(&["k2"]));
        }

        #[test]
        fn missing_file_reads_as_no_keys() {
            let h = Home::new("nokeys");
            assert!(read_keys(&h.ctx(), h.owner()).unwrap().is_empty());
        }

        #[test]
        fn symlinked_ssh_dir_is_refused() {
            let h = Home::new("linkdir");
            let elsewhere = h.root.join("elsewhere");
            std::fs::create_dir(&elsewhere).unwrap();
            std::os::unix::fs::symlink(&elsewhere, h.path(".ssh")).unwrap();
            let e = add_keys(&h.ctx(), h.owner(), &keys(&["k1"]), false).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
            assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        }

        #[test]
        fn symlinked_authorized_keys_is_not_read_or_followed() {
            let h = Home::new("linkfile");
            std::fs::create_dir(h.path(".ssh")).unwrap();
            let secret = h.root.join("secret");
            std::fs::write(&secret, "secret-line\n").unwrap();
            std::os::unix::fs::symlink(&secret, h.path(".ssh/authorized_keys")).unwrap();
            assert!(read_keys(&h.ctx(), h.owner()).is_err());
            assert!(add_keys(&h.ctx(), h.owner(), &keys(&["k1"]), false).is_err());
            // With reset nothing is read; the link itself is replaced, not its target.
            add_keys(&h.ctx(), h.owner(), &keys(&["k1"]), true).unwrap();
            assert_eq!(std::fs::read_to_string(&secret).unwrap(), "secret-line\n");
            assert_eq!(read_keys(&h.ctx(), h.owner()).unwrap(), keys(&["k1"]));
        }
    }
}
