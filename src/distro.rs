//! Which distribution this is: os-release (etc/os-release, else usr/lib/os-release),
//! then the older release files (/etc/centos-release, /etc/redhat-release,
//! /etc/lsb-release, /etc/debian_version) for systems without os-release (CentOS 6).

use crate::ctx::Ctx;

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
}

/// Identifies the distribution below the context's root. Never fails: an unknown
/// system gives an all-`None` `Distro`.
pub fn identify(ctx: &Ctx) -> Distro {
    // os-release(5): read /etc first and fall back to /usr/lib, never both.
    for file in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(text) = ctx.read(file) {
            return parse_os_release(&text);
        }
    }
    for file in [
        "etc/centos-release",
        "etc/redhat-release",
        "etc/system-release",
    ] {
        if let Some(d) = ctx.read(file).ok().and_then(|t| parse_redhat_release(&t)) {
            return d;
        }
    }
    if let Ok(text) = ctx.read("etc/lsb-release") {
        let d = parse_lsb_release(&text);
        if d.name.is_some() {
            return d;
        }
    }
    if let Ok(text) = ctx.read("etc/debian_version") {
        let v = text.trim();
        if !v.is_empty() {
            return Distro {
                id: Some("debian".into()),
                name: Some("Debian GNU/Linux".into()),
                pretty_name: Some(format!("Debian GNU/Linux {v}")),
                version: Some(v.to_string()),
                version_id: Some(v.to_string()),
                ..Distro::default()
            };
        }
    }
    Distro::default()
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

/// Parses the one line of /etc/centos-release or /etc/redhat-release:
/// "CentOS release 6.10 (Final)", "Red Hat Enterprise Linux Server release 6.5 (Santiago)".
pub fn parse_redhat_release(text: &str) -> Option<Distro> {
    let line = text.lines().next()?.trim();
    let (name, rest) = line.split_once(" release ")?;
    let version_id = rest.split_whitespace().next()?.to_string();
    let id = if name.starts_with("CentOS") {
        "centos"
    } else if name.starts_with("Red Hat") {
        "rhel"
    } else if name.starts_with("Fedora") {
        "fedora"
    } else if name.starts_with("BigCloud") {
        "bclinux"
    } else {
        ""
    };
    Some(Distro {
        id: (!id.is_empty()).then(|| id.to_string()),
        // CentOS 7's file says "CentOS Linux"; CentOS 6's just "CentOS".
        name: Some(name.to_string()),
        pretty_name: Some(line.to_string()),
        version: Some(rest.to_string()),
        version_id: Some(version_id),
        ..Distro::default()
    })
}

/// Parses /etc/lsb-release (DISTRIB_ID, DISTRIB_RELEASE, DISTRIB_DESCRIPTION).
pub fn parse_lsb_release(text: &str) -> Distro {
    let mut d = Distro::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "DISTRIB_ID" => {
                d.id = Some(value.to_ascii_lowercase());
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
}
