//! The guest's identity: guest-get-host-name (the kernel's node name, as gethostname(2)
//! gives it; not resolved through DNS) and guest-get-osinfo (uname(2) and the
//! distribution files through src/distro.rs).

use serde::Serialize;

use super::NoArgs;
use crate::ctx::Ctx;
use crate::distro::{self, Distro};
use crate::error::Error;
use crate::sys::uname::{self, Uts};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HostName {
    pub host_name: String,
}

pub fn get_host_name(_: &Ctx, _: NoArgs) -> Result<HostName, Error> {
    let uts = uname::uname().map_err(|e| Error::io("uname failed", e))?;
    Ok(HostName {
        host_name: uts.nodename,
    })
}

/// Every member is optional in the schema; a missing one is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OsInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant_id: Option<String>,
}

/// uname plus os-release. Where there is no os-release (CentOS 6) the distribution is
/// taken from /etc/centos-release and friends; qemu-ga leaves those members out.
pub fn get_osinfo(ctx: &Ctx, _: NoArgs) -> Result<OsInfo, Error> {
    let uts = uname::uname().map_err(|e| Error::io("uname failed", e))?;
    Ok(osinfo(&uts, distro::identify_os(ctx)))
}

pub fn osinfo(uts: &Uts, d: Distro) -> OsInfo {
    OsInfo {
        kernel_release: Some(uts.release.clone()),
        kernel_version: Some(uts.version.clone()),
        machine: Some(uts.machine.clone()),
        id: d.id,
        name: d.name,
        pretty_name: d.pretty_name,
        version: d.version,
        version_id: d.version_id,
        variant: d.variant,
        variant_id: d.variant_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_is_the_node_name() {
        let h = get_host_name(&Ctx::with_root("/"), NoArgs {}).unwrap();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(h.host_name, kernel.trim_end());
    }
}
