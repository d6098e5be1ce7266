//! Which distribution this is, in python-distro's order: os-release (the file
//! `$QGA_OS_RELEASE` names, else etc/os-release, else usr/lib/os-release), then
//! /etc/lsb-release, then the distributions' own release files (/etc/centos-release,
//! /etc/redhat-release, /etc/SuSE-release, /etc/system-release …, /etc/debian_version).
//! The first source that names the distribution answers; an empty os-release does not.

use std::ffi::OsStr;

use crate::ctx::Ctx;

/// The environment variable qemu-ga reads os-release from instead of /etc/os-release
/// (qga/commands-posix.c, used by upstream's tests and image pipelines).
pub const OS_RELEASE_ENV: &str = "QGA_OS_RELEASE";

/// os-release fields (os-release(5)); `None` when the source does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distro {
    pub id: Option<String>,
    pub name: Option<String>,
    pub pretty_name: Option<String>,
    pub version: Option<String>,
    pub version_id: Option<String>,
    pub variant: Option<String>,
    pub variant_id: Option<String>,
    /// The full release from the distribution's own file, which os-release rounds off:
    /// "7.9.2009" from /etc/centos-release where VERSION_ID is "7", "12.8" from
    /// /etc/debian_version where it is "12". Read even when os-release answers.
    pub full_version: Option<String>,
}

impl Distro {
    fn names_something(&self) -> bool {
        self.id.is_some() || self.name.is_some()
    }
}

/// Identifies the distribution below the context's root, honouring `$QGA_OS_RELEASE`.
/// Never fails: an unknown system gives an all-`None` `Distro`.
pub fn identify(ctx: &Ctx) -> Distro {
    identify_with(ctx, std::env::var_os(OS_RELEASE_ENV).as_deref())
}

/// As [`identify`] without `full_version` (left `None` unless the release file is what
/// answered): guest-get-osinfo has no use for it, and looking for it means trying up to
/// ten release files on every call.
pub fn identify_os(ctx: &Ctx) -> Distro {
    match std::env::var_os(OS_RELEASE_ENV) {
        Some(path) => identify_with(ctx, Some(&path)),
        None => from_files(ctx),
    }
}

/// As [`identify`], with the value of `$QGA_OS_RELEASE` given. As in qemu-ga, a set
/// variable names the only os-release file read: a path on the running system (not
/// below the context's root; a relative one is relative to the agent's working
/// directory), and nothing else is consulted, so a test or pipeline that sets it gets
/// exactly that file's answer. Unreadable or empty, it leaves every field out.
pub fn identify_with(ctx: &Ctx, os_release: Option<&OsStr>) -> Distro {
    if let Some(path) = os_release {
        return std::fs::read_to_string(path)
            .map(|t| parse_os_release(&t))
            .unwrap_or_default();
    }
    let full_version = release_file(ctx).and_then(|d| d.full_version);
    let mut d = from_files(ctx);
    d.full_version = full_version;
    d
}

fn from_files(ctx: &Ctx) -> Distro {
    // os-release(5): read /etc first and fall back to /usr/lib, never both.
    let os_release = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|f| ctx.read(f).ok())
        .map(|t| parse_os_release(&t));
    if let Some(d) = os_release.filter(Distro::names_something) {
        return d;
    }
    // CentOS 6's lsb-release (redhat-lsb-core) holds only LSB_VERSION: no answer.
    if let Some(d) = ctx
        .read("etc/lsb-release")
        .ok()
        .map(|t| parse_lsb_release(&t))
        .filter(Distro::names_something)
    {
        return d;
    }
    release_file(ctx).unwrap_or_default()
}

/// The distributions' own files, most specific first: Oracle Linux's redhat-release
/// claims "Red Hat Enterprise Linux", so oracle-release comes before it; CentOS's
/// redhat-release and system-release are links to centos-release.
const RELEASE_FILES: &[&str] = &[
    "oracle-release",
    "centos-release",
    "sl-release",
    "cloudlinux-release",
    "fedora-release",
    "mandriva-release",
    "SuSE-release",
    "redhat-release",
    "system-release",
];

fn release_file(ctx: &Ctx) -> Option<Distro> {
    RELEASE_FILES
        .iter()
        .find_map(|f| {
            let text = ctx.read(&format!("etc/{f}")).ok()?;
            if *f == "SuSE-release" {
                parse_suse_release(&text)
            } else {
                parse_redhat_release(&text)
            }
        })
        .or_else(|| parse_debian_version(&ctx.read("etc/debian_version").ok()?))
}

/// The os-release ID of a distribution by the name its release file starts with.
/// os-release ids as those distributions' later os-release files spell them.
const IDS_BY_NAME: &[(&str, &str)] = &[
    ("CentOS", "centos"),
    ("Red Hat", "rhel"),
    ("Scientific Linux", "scientific"),
    ("CloudLinux", "cloudlinux"),
    ("Amazon Linux", "amzn"),
    ("Oracle Linux", "ol"),
    ("Enterprise Linux Enterprise Linux", "ol"),
    ("Fedora", "fedora"),
    ("BigCloud", "bclinux"),
    ("Mandriva", "mandriva"),
    ("Mageia", "mageia"),
    ("Rocky Linux", "rocky"),
    ("AlmaLinux", "almalinux"),
    ("EulerOS", "euleros"),
    ("openEuler", "openEuler"),
    ("XenServer", "xenserver"),
    ("SUSE Linux Enterprise Server", "sles"),
    ("SUSE Linux Enterprise Desktop", "sled"),
    ("openSUSE", "opensuse"),
];

fn id_for_name(name: &str) -> Option<String> {
    IDS_BY_NAME
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, id)| id.to_string())
}

/// Parses os-release's shell-like `KEY=value` lines (values optionally quoted).
pub fn parse_os_release(text: &str) -> Distro {
    let mut d = Distro::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        let slot = match key.trim() {
            "ID" => &mut d.id,
            "NAME" => &mut d.name,
            "PRETTY_NAME" => &mut d.pretty_name,
            "VERSION" => &mut d.version,
            "VERSION_ID" => &mut d.version_id,
            "VARIANT" => &mut d.variant,
            "VARIANT_ID" => &mut d.variant_id,
            _ => continue,
        };
        if !value.is_empty() {
            *slot = Some(value);
        }
    }
    d
}

/// Parses the one line of a Red Hat style release file, "NAME release VERSION (CODE)":
/// "CentOS release 6.10 (Final)", "Red Hat Enterprise Linux Server release 6.5
/// (Santiago)", "Amazon Linux AMI release 2014.03", "Mandriva Linux release 2011.0
/// (Official) for x86_64". `version_id` is the release's major.minor, as the later
/// os-release files of RHEL rebuilds have it ("7.1.1503" gives "7.1" … except CentOS,
/// whose os-release says just "7": see `full_version`).
pub fn parse_redhat_release(text: &str) -> Option<Distro> {
    let line = text.lines().next()?.trim();
    let (name, rest) = line.split_once(" release ")?;
    let full = rest.split_whitespace().next()?.to_string();
    let name = name.trim();
    let id = id_for_name(name);
    // CentOS 7+ os-release has VERSION_ID "7"; every other rebuild "7.1" or so.
    let version_id = if id.as_deref() == Some("centos") && full.matches('.').count() > 1 {
        full.split('.').next().unwrap_or(&full).to_string()
    } else {
        full.clone()
    };
    Some(Distro {
        id,
        // CentOS 7's file says "CentOS Linux"; CentOS 6's just "CentOS".
        name: Some(name.to_string()),
        pretty_name: Some(line.to_string()),
        version: Some(rest.trim().to_string()),
        version_id: Some(version_id),
        full_version: Some(full),
        ..Distro::default()
    })
}

/// Parses /etc/SuSE-release (SLES 11 and older have nothing else):
/// "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 3", named as
/// SLES 12's os-release names it: VERSION_ID "11.3", VERSION "11-SP3".
pub fn parse_suse_release(text: &str) -> Option<Distro> {
    let mut lines = text.lines();
    let first = lines.next()?.trim();
    // The first line is "<name> <version> (<arch>)".
    let head = first.split(" (").next().unwrap_or(first).trim();
    let (mut version, mut patch) = (None, None);
    for line in lines {
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "VERSION" => version = Some(v.trim().to_string()),
                "PATCHLEVEL" => patch = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let version = version.or_else(|| head.rsplit(' ').next().map(str::to_string))?;
    let name = head
        .strip_suffix(version.as_str())
        .unwrap_or(head)
        .trim()
        .to_string();
    if name.is_empty() {
        return None;
    }
    let sp = patch.filter(|p| p != "0");
    let version_id = match &sp {
        Some(p) => format!("{version}.{p}"),
        None => version.clone(),
    };
    Some(Distro {
        id: id_for_name(&name),
        pretty_name: Some(match &sp {
            Some(p) => format!("{name} {version} SP{p}"),
            None => format!("{name} {version}"),
        }),
        version: Some(match &sp {
            Some(p) => format!("{version}-SP{p}"),
            None => version.clone(),
        }),
        full_version: Some(version_id.clone()),
        version_id: Some(version_id),
        name: Some(name),
        ..Distro::default()
    })
}

/// /etc/debian_version: "12.8" on Debian (the point release os-release leaves out),
/// "bookworm/sid" on Ubuntu and Debian testing, which names no release.
fn parse_debian_version(text: &str) -> Option<Distro> {
    let v = text.trim();
    if v.is_empty() {
        return None;
    }
    let numeric = v.starts_with(|c: char| c.is_ascii_digit());
    Some(Distro {
        id: Some("debian".into()),
        name: Some("Debian GNU/Linux".into()),
        pretty_name: Some(format!("Debian GNU/Linux {v}")),
        version: Some(v.to_string()),
        version_id: Some(v.to_string()),
        full_version: numeric.then(|| v.to_string()),
        ..Distro::default()
    })
}

/// Parses /etc/lsb-release (DISTRIB_ID, DISTRIB_RELEASE, DISTRIB_DESCRIPTION). The id
/// is DISTRIB_ID lower-cased without spaces, as python-distro normalizes it
/// ("MandrivaLinux" gives "mandrivalinux").
pub fn parse_lsb_release(text: &str) -> Distro {
    let mut d = Distro::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "DISTRIB_ID" => {
                d.id = Some(value.to_ascii_lowercase().replace(' ', ""));
                d.name = Some(value);
            }
            "DISTRIB_RELEASE" => {
                d.version = Some(value.clone());
                d.version_id = Some(value);
            }
            "DISTRIB_DESCRIPTION" => d.pretty_name = Some(value),
            _ => {}
        }
    }
    d
}

/// Strips one level of matching single or double quotes and the shell escapes
/// os-release(5) allows inside double quotes.
fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        let inner = &v[1..v.len() - 1];
        if b[0] == b'\'' {
            return inner.to_string();
        }
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                _ => out.push(c),
            }
        }
        return out;
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quotes_and_escapes() {
        let d = parse_os_release(
            "NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=centos\nVERSION_ID='7'\n\
             PRETTY_NAME=\"A \\\"quoted\\\" name\"\n# comment\nBOGUS\n",
        );
        assert_eq!(d.name.as_deref(), Some("CentOS Linux"));
        assert_eq!(d.id.as_deref(), Some("centos"));
        assert_eq!(d.version_id.as_deref(), Some("7"));
        assert_eq!(d.pretty_name.as_deref(), Some("A \"quoted\" name"));
        assert_eq!(d.variant, None);
    }

    #[test]
    fn centos6_release_file() {
        let d = parse_redhat_release("CentOS release 6.10 (Final)\n").unwrap();
        assert_eq!(d.name.as_deref(), Some("CentOS"));
        assert_eq!(d.version_id.as_deref(), Some("6.10"));
        assert_eq!(d.id.as_deref(), Some("centos"));
        assert_eq!(d.version.as_deref(), Some("6.10 (Final)"));
    }

    #[test]
    fn rhel_release_file() {
        let d =
            parse_redhat_release("Red Hat Enterprise Linux Server release 6.5 (Santiago)").unwrap();
        assert_eq!(d.id.as_deref(), Some("rhel"));
        assert_eq!(d.name.as_deref(), Some("Red Hat Enterprise Linux Server"));
        assert!(parse_redhat_release("garbage").is_none());
    }

    #[test]
    fn lsb_release_file() {
        let d = parse_lsb_release(
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=12.04\nDISTRIB_CODENAME=precise\n\
             DISTRIB_DESCRIPTION=\"Ubuntu 12.04.5 LTS\"\n",
        );
        assert_eq!(d.name.as_deref(), Some("Ubuntu"));
        assert_eq!(d.id.as_deref(), Some("ubuntu"));
        assert_eq!(d.version_id.as_deref(), Some("12.04"));
        assert_eq!(d.pretty_name.as_deref(), Some("Ubuntu 12.04.5 LTS"));
    }

    #[test]
    fn suse_release_without_patchlevel() {
        let d = parse_suse_release("openSUSE 42.1 (x86_64)").unwrap();
        assert_eq!(d.id.as_deref(), Some("opensuse"));
        assert_eq!(d.name.as_deref(), Some("openSUSE"));
        assert_eq!(d.version_id.as_deref(), Some("42.1"));
        assert!(parse_suse_release("").is_none());
    }
}
