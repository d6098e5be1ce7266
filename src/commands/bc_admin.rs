//! BC-Linux management: change-hostname (sethostname(2) plus the distro's files:
//! /etc/hostname, HOSTNAME= in /etc/sysconfig/network, the old name's /etc/hosts line)
//! and change-password (root's password through chpasswd's stdin). Both answer with an
//! errno value in `errnum` rather than an error, as the old fork's schema has it.

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::error::Error;
use crate::job::{self, Step};
use crate::{accounts, distro, log, rewrite};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Errnum {
    pub errnum: i32,
}

impl Errnum {
    fn of(result: Result<(), Error>) -> Errnum {
        Errnum {
            errnum: match result {
                Ok(()) => 0,
                Err(e) => {
                    log::warn(&e.to_string());
                    errno_of(&e)
                }
            },
        }
    }
}

/// The errno an error stands for: its OS error, EINVAL for bad input, else EIO.
pub fn errno_of(e: &Error) -> i32 {
    match e {
        Error::Args(_) => libc::EINVAL,
        Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        _ => libc::EIO,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostnameArgs {
    pub new_hostname: String,
}

/// HOST_NAME_MAX.
const MAX_HOSTNAME: usize = 64;

/// RFC 1123: dot-separated labels of 1..=63 letters, digits and inner hyphens; the
/// whole name at most 64 bytes (the kernel's limit).
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOSTNAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub fn change_hostname(ctx: &Ctx, args: HostnameArgs) -> Result<Errnum, Error> {
    let new = args.new_hostname;
    if !valid_hostname(&new) {
        return Ok(Errnum {
            errnum: libc::EINVAL,
        });
    }
    Ok(Errnum::of(set_hostname(ctx, &new)))
}

fn set_hostname(ctx: &Ctx, new: &str) -> Result<(), Error> {
    let kernel_old = first_line(ctx, "proc/sys/kernel/hostname");
    let persisted_old = first_line(ctx, "etc/hostname");
    set_kernel_hostname(ctx, new)?;
    // From here the kernel has the new name; a file that cannot be rewritten is
    // reported through errnum, and a retry with the same name finishes the job.
    persist_hostname(ctx, new)?;
    let hosts = ctx.path("etc/hosts");
    if let Ok(text) = std::fs::read_to_string(&hosts) {
        let olds: Vec<&str> = [kernel_old.as_str(), persisted_old.as_str()]
            .into_iter()
            .filter(|o| !o.is_empty())
            .collect();
        if let Some(updated) = rename_in_hosts(&text, &olds, new) {
            replace(&hosts, updated.as_bytes())?;
        }
    }
    log::info(&format!("hostname changed from '{kernel_old}' to '{new}'"));
    Ok(())
}

fn first_line(ctx: &Ctx, rel: &str) -> String {
    ctx.read(rel)
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_default()
}

/// The kernel step. On the live system, sethostname(2). Under another root (tests,
/// fixture trees) the root's proc/sys/kernel/hostname file stands in for the kernel,
/// so tests check the whole change without renaming the machine they run on.
fn set_kernel_hostname(ctx: &Ctx, new: &str) -> Result<(), Error> {
    if ctx.is_live() {
        crate::sys::hostname::sethostname(new).map_err(|e| Error::io("sethostname", e))
    } else {
        let path = ctx.path("proc/sys/kernel/hostname");
        std::fs::write(&path, format!("{new}\n"))
            .map_err(|e| Error::io(format!("failed to write '{}'", path.display()), e))
    }
}

/// Writes the name where the distro's boot scripts read it: /etc/hostname (systemd,
/// Debian, Ubuntu's upstart job) and/or HOSTNAME= in /etc/sysconfig/network (RHEL 6
/// rc.sysinit). Existing files decide; with neither, the distro does.
fn persist_hostname(ctx: &Ctx, new: &str) -> Result<(), Error> {
    let etc_hostname = ctx.path("etc/hostname");
    let network = ctx.path("etc/sysconfig/network");
    let mut written = false;
    if etc_hostname.exists() {
        replace(&etc_hostname, format!("{new}\n").as_bytes())?;
        written = true;
    }
    let network_text = std::fs::read_to_string(&network).ok();
    let has_hostname_line = network_text
        .as_deref()
        .is_some_and(|t| t.lines().any(|l| sysconfig_key(l) == Some("HOSTNAME")));
    let want_network =
        has_hostname_line || (!written && (network_text.is_some() || uses_sysconfig(ctx)));
    if want_network {
        let updated = set_sysconfig_hostname(network_text.as_deref().unwrap_or(""), new);
        replace(&network, updated.as_bytes())?;
        written = true;
    }
    if !written {
        replace(&etc_hostname, format!("{new}\n").as_bytes())?;
    }
    Ok(())
}

/// RHEL/CentOS before 7 keep the name in /etc/sysconfig/network only.
fn uses_sysconfig(ctx: &Ctx) -> bool {
    let d = distro::identify_os(ctx);
    let rhel_like = matches!(d.id.as_deref(), Some("centos" | "rhel" | "bclinux"))
        || d.name
            .as_deref()
            .is_some_and(|n| n.starts_with("Red Hat") || n.starts_with("CentOS"));
    let major = d
        .version_id
        .as_deref()
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    rhel_like && major.is_some_and(|m| m < 7)
}

fn replace(path: &std::path::Path, content: &[u8]) -> Result<(), Error> {
    rewrite::replace(path, content)
        .map_err(|e| Error::io(format!("failed to rewrite '{}'", path.display()), e))
}

fn sysconfig_key(line: &str) -> Option<&str> {
    let l = line.trim_start();
    let l = l.strip_prefix("export ").unwrap_or(l);
    Some(l.split_once('=')?.0.trim())
}

/// Sets HOSTNAME= in a sysconfig/network text, keeping every other line; appends the
/// line when there is none.
pub fn set_sysconfig_hostname(text: &str, new: &str) -> String {
    let mut out = String::with_capacity(text.len() + new.len() + 10);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        if sysconfig_key(line) == Some("HOSTNAME") {
            if !done {
                out.push_str(&format!("HOSTNAME={new}\n"));
                done = true;
            }
            continue;
        }
        out.push_str(line);
    }
    if !done {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("HOSTNAME={new}\n"));
    }
    out
}

/// The loopback names distributions ship in /etc/hosts (RHEL's `setup`, Debian's
/// netbase). They are never renamed, whatever the old hostname: a first-boot CentOS
/// guest is called `localhost.localdomain`, and renaming its tokens would make
/// `localhost` stop resolving.
fn is_localhost_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "localhost"
        || n.starts_with("localhost.")
        || n.starts_with("localhost4")
        || n.starts_with("localhost6")
        || n.starts_with("ip6-localhost")
        || n.starts_with("ip6-loopback")
}

/// Gives `new` its place in /etc/hosts: renames `olds` to `new` in the name columns
/// (exact names, the old short name, and "old.domain" when the new name is short),
/// keeping the rest of each line byte for byte; localhost names are never renamed.
/// When no line lists `new` afterwards (the old name was `localhost.localdomain`, or
/// never listed), the name gets its own line, `127.0.1.1 new [short]`, the Debian
/// installer's convention, so that it resolves without DNS. None when nothing changes.
pub fn rename_in_hosts(text: &str, olds: &[&str], new: &str) -> Option<String> {
    let olds: Vec<&str> = olds
        .iter()
        .copied()
        .filter(|o| !is_localhost_name(o))
        .collect();
    let new_short = new.split('.').next().unwrap_or(new);
    let rename = |name: &str| -> Option<String> {
        if is_localhost_name(name) {
            return None;
        }
        for old in &olds {
            let old_short = old.split('.').next().unwrap_or(old);
            if name.eq_ignore_ascii_case(old) {
                return Some(new.to_string());
            }
            if name.eq_ignore_ascii_case(old_short) {
                return Some(new_short.to_string());
            }
            if !old.contains('.') && !new.contains('.') {
                if let Some(domain) = name.get(old_short.len()..).filter(|d| {
                    d.starts_with('.') && name[..old_short.len()].eq_ignore_ascii_case(old_short)
                }) {
                    return Some(format!("{new}{domain}"));
                }
            }
        }
        None
    };
    let mut changed = false;
    let mut listed = false;
    let mut out = String::with_capacity(text.len() + new.len() + 16);
    for line in text.split_inclusive('\n') {
        let (body, comment) = match line.find('#') {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        let mut rebuilt = String::with_capacity(line.len());
        let mut field = 0;
        let mut rest = body;
        while !rest.is_empty() {
            let ws = rest.len() - rest.trim_start().len();
            rebuilt.push_str(&rest[..ws]);
            rest = &rest[ws..];
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let token = &rest[..end];
            if token.is_empty() {
                break;
            }
            // Field 0 is the address.
            let name = match (field > 0).then(|| rename(token)).flatten() {
                Some(n) if n != token => {
                    changed = true;
                    n
                }
                _ => token.to_string(),
            };
            listed |= field > 0 && name.eq_ignore_ascii_case(new);
            rebuilt.push_str(&name);
            rest = &rest[end..];
            field += 1;
        }
        rebuilt.push_str(comment);
        out.push_str(&rebuilt);
    }
    if !listed && !is_localhost_name(new) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("127.0.1.1\t");
        out.push_str(new);
        if new_short != new {
            out.push(' ');
            out.push_str(new_short);
        }
        out.push('\n');
        changed = true;
    }
    changed.then_some(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PasswordArgs {
    pub new_password: String,
}

/// Sets root's password; the secret goes only to chpasswd's stdin.
/// The request's copy of it is wiped afterwards.
pub fn change_password(_: &Ctx, args: PasswordArgs) -> Result<Step<Errnum>, Error> {
    let mut pw = args.new_password.into_bytes();
    if pw.contains(&b'\n') || pw.contains(&0) || pw.len() > accounts::MAX_PASSWORD {
        crate::sys::secret::wipe(&mut pw);
        return Ok(Step::Done(Errnum {
            errnum: libc::EINVAL,
        }));
    }
    // chpasswd copies the line it sends; this copy goes at once.
    let step = accounts::chpasswd("root", &pw, false);
    crate::sys::secret::wipe(&mut pw);
    job::settle(step, |r| Ok(Errnum::of(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1123_names() {
        for ok in ["a", "vm-01", "web01.example.com", "0day", &"a".repeat(63)] {
            assert!(valid_hostname(ok), "{ok}");
        }
        let long = format!("{}.{}", "a".repeat(40), "b".repeat(30));
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a.",
            "a b",
            "a_b",
            "ä",
            "a;reboot",
            &"a".repeat(64),
            &long,
        ] {
            assert!(!valid_hostname(bad), "{bad}");
        }
    }

    #[test]
    fn sysconfig_line_replaced_or_appended() {
        assert_eq!(
            set_sysconfig_hostname("NETWORKING=yes\nHOSTNAME=\"old\"\nGATEWAY=1.2.3.4\n", "new"),
            "NETWORKING=yes\nHOSTNAME=new\nGATEWAY=1.2.3.4\n"
        );
        assert_eq!(
            set_sysconfig_hostname("NETWORKING=yes", "new"),
            "NETWORKING=yes\nHOSTNAME=new\n"
        );
        assert_eq!(set_sysconfig_hostname("", "new"), "HOSTNAME=new\n");
    }

    #[test]
    fn hosts_lines_follow_the_rename() {
        let text = "127.0.0.1\tlocalhost\n127.0.1.1\told\n# old stays in comments\n\
                    10.0.0.5 old.example.com old   # old\nfe00::0 ip6-localnet\n";
        let got = rename_in_hosts(text, &["old"], "new").unwrap();
        assert_eq!(
            got,
            "127.0.0.1\tlocalhost\n127.0.1.1\tnew\n# old stays in comments\n\
             10.0.0.5 new.example.com new   # old\nfe00::0 ip6-localnet\n"
        );
        // A name no line lists gets its own line.
        assert_eq!(
            rename_in_hosts(text, &["absent"], "new").unwrap(),
            format!("{text}127.0.1.1\tnew\n")
        );
        assert_eq!(rename_in_hosts(&got, &["old"], "new"), None);
        // The address column is never touched.
        assert_eq!(
            rename_in_hosts("old old\n", &["old"], "new").unwrap(),
            "old new\n"
        );
    }

    #[test]
    fn localhost_tokens_are_never_renamed() {
        // issue 14 item 8: a first-boot CentOS guest is named localhost.localdomain.
        let rhel = "127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4\n\
                    ::1         localhost localhost.localdomain localhost6 localhost6.localdomain6\n";
        let got = rename_in_hosts(rhel, &["localhost.localdomain"], "db02").unwrap();
        assert_eq!(got, format!("{rhel}127.0.1.1\tdb02\n"));
        let got = rename_in_hosts(rhel, &["localhost"], "db02.example.com").unwrap();
        assert_eq!(got, format!("{rhel}127.0.1.1\tdb02.example.com db02\n"));
        // Debian's ip6-localhost/ip6-loopback stay too; the name's own line is updated.
        let deb = "127.0.0.1\tlocalhost\n127.0.1.1\tlocalhost\n::1 ip6-localhost ip6-loopback\n";
        let got = rename_in_hosts(deb, &["localhost"], "web").unwrap();
        assert_eq!(got, format!("{deb}127.0.1.1\tweb\n"));
        assert!(is_localhost_name("LOCALHOST.localdomain"));
        assert!(!is_localhost_name("localhostname"));
    }

    #[test]
    fn errno_mapping() {
        assert_eq!(errno_of(&Error::Args("x".into())), libc::EINVAL);
        let io = std::io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(errno_of(&Error::io("x", io)), libc::EPERM);
        assert_eq!(errno_of(&Error::Failed("x".into())), libc::EIO);
    }
}
