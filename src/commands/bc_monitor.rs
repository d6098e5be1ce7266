//! BC-Linux monitoring: guest-get-memory-status, guest-get-system-info and the
//! one-round-trip guest-get-monitoring-items. Reads /proc/meminfo, /proc/loadavg,
//! /proc/uptime, /proc/sys/kernel/{hostname,osrelease}, the release files, /etc/hosts
//! and wtmp, all through `Ctx`.

use serde::Serialize;

use super::bc_disk::{self, DiskStatus};
use super::bc_oom::{self, OomStatus};
use super::NoArgs;
use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::job::Step;
use crate::proc::{self, MemInfo};
use crate::{distro, localtime, utmp};

/// Memory figures in MiB (kB / 1024, rounded down), as the old fork reported them.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MemoryStatus {
    pub total: u64,
    /// MemTotal - MemFree: buffers and cache count as used, as in the old fork.
    pub used: u64,
    pub free: u64,
    /// MemAvailable (3.14+), else the kernel's estimate from MemFree, the file page
    /// cache, reclaimable slab and /proc/zoneinfo's reserves; clients compute usage as
    /// total - available, so it must never be missing.
    pub available: u64,
    pub buffer: u64,
    pub cached: u64,
    pub swap: SwapStatus,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SwapStatus {
    pub total: u64,
    pub used: u64,
    pub free: u64,
}

fn mib(kib: u64) -> u64 {
    kib / 1024
}

impl From<&MemInfo> for MemoryStatus {
    fn from(m: &MemInfo) -> MemoryStatus {
        MemoryStatus {
            total: mib(m.total),
            used: mib(m.total.saturating_sub(m.free)),
            free: mib(m.free),
            available: mib(m.available_or_estimate()),
            buffer: mib(m.buffers),
            cached: mib(m.cached),
            swap: SwapStatus {
                total: mib(m.swap_total),
                used: mib(m.swap_total.saturating_sub(m.swap_free)),
                free: mib(m.swap_free),
            },
        }
    }
}

pub fn get_memory_status(ctx: &Ctx, _: NoArgs) -> Result<MemoryStatus, Error> {
    Ok(MemoryStatus::from(&proc::read_meminfo(ctx)?))
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct SystemInfo {
    pub os_name: String,
    pub kernel_version: String,
    /// The full release: the distribution's own file ("7.9.2009" from
    /// /etc/centos-release, "12.8" from /etc/debian_version), else os-release's
    /// VERSION_ID. The old qga-bc fork's users read the full release on CentOS.
    pub system_version: String,
    /// os-release's VERSION_ID ("7"), what guest-get-osinfo calls `version-id`;
    /// "" when the system does not say.
    pub version_id: String,
    pub fqdn: String,
    /// "USER TTY HOST YYYY-MM-DD HH:MM:SS" (local time), "" when wtmp has no login.
    pub lastlogin: String,
}

pub fn get_system_info(ctx: &Ctx, _: NoArgs) -> Result<SystemInfo, Error> {
    Ok(system_info(ctx))
}

/// Never fails: a field whose source is missing is "" (the os name "Linux").
pub fn system_info(ctx: &Ctx) -> SystemInfo {
    let d = distro::identify(ctx);
    let hostname = read_line(ctx, "proc/sys/kernel/hostname");
    let fqdn = match ctx.read("etc/hosts") {
        Ok(hosts) => canonical_name(&hosts, &hostname).unwrap_or_else(|| hostname.clone()),
        Err(_) => hostname,
    };
    SystemInfo {
        os_name: d.name.unwrap_or_else(|| "Linux".into()),
        // The uname release; /proc/sys/kernel/osrelease holds the same string.
        kernel_version: read_line(ctx, "proc/sys/kernel/osrelease"),
        system_version: d
            .full_version
            .or_else(|| d.version_id.clone())
            .or(d.version)
            .unwrap_or_default(),
        version_id: d.version_id.unwrap_or_default(),
        fqdn,
        lastlogin: last_login(ctx).unwrap_or_default(),
    }
}

fn read_line(ctx: &Ctx, rel: &str) -> String {
    ctx.read(rel)
        .map(|t| t.lines().next().unwrap_or_default().trim().to_string())
        .unwrap_or_default()
}

/// What `hostname -f` would print when resolving through /etc/hosts only: the first
/// name on the first line that lists `hostname` (DNS is never asked, so a dead
/// resolver cannot stall the agent). A line whose first name is "localhost…" (RHEL
/// appends the hostname to the 127.0.0.1 line) names no FQDN, so it is passed over.
pub fn canonical_name(hosts: &str, hostname: &str) -> Option<String> {
    if hostname.is_empty() {
        return None;
    }
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        fields.next()?;
        let names: Vec<&str> = fields.collect();
        let listed = names.iter().any(|n| n.eq_ignore_ascii_case(hostname));
        (listed && !names[0].starts_with("localhost")).then(|| names[0].to_string())
    })
}

/// The newest login in wtmp (or the rotated wtmp.1), formatted for `lastlogin`.
fn last_login(ctx: &Ctx) -> Option<String> {
    ["var/log/wtmp", "var/log/wtmp.1"].iter().find_map(|rel| {
        let rec = utmp::last_login_in_file(&ctx.path(rel)).ok()??;
        let when = localtime::format_local(ctx, rec.tv_sec);
        let parts = [
            rec.user.as_str(),
            rec.line.as_str(),
            rec.host.as_str(),
            when.as_str(),
        ];
        Some(
            parts
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
        )
    })
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Load {
    #[serde(rename = "1m")]
    pub one: f64,
    #[serde(rename = "5m")]
    pub five: f64,
    #[serde(rename = "15m")]
    pub fifteen: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MonitoringItems {
    pub memory: MemoryStatus,
    pub disk: DiskStatus,
    pub oom: OomStatus,
    pub system: SystemInfo,
    pub load: Load,
    pub uptime_seconds: u64,
}

/// Everything a monitoring poll needs in one request instead of five.
pub fn get_monitoring_items(
    ctx: &Ctx,
    session: &mut Session,
    _: NoArgs,
) -> Result<Step<MonitoringItems>, Error> {
    let l = proc::parse_loadavg(&ctx.read("proc/loadavg")?)?;
    let memory = get_memory_status(ctx, NoArgs {})?;
    let oom = bc_oom::oom_status(ctx, session)?;
    let system = system_info(ctx);
    let uptime_seconds = proc::read_uptime(ctx)? as u64;
    bc_disk::disk_status(ctx)?.map(move |disk| {
        Ok(MonitoringItems {
            memory,
            disk,
            oom,
            system,
            load: Load {
                one: l.one,
                five: l.five,
                fifteen: l.fifteen,
            },
            uptime_seconds,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_from_hosts_only() {
        let hosts = "127.0.0.1 localhost\n# 10.0.0.1 vm1.wrong vm1\n\
                     192.168.1.5 vm1.example.com vm1 # comment\n";
        assert_eq!(
            canonical_name(hosts, "vm1").as_deref(),
            Some("vm1.example.com")
        );
        assert_eq!(
            canonical_name(hosts, "VM1").as_deref(),
            Some("vm1.example.com")
        );
        assert_eq!(canonical_name(hosts, "other"), None);
        assert_eq!(canonical_name("127.0.0.1 localhost vm2\n", "vm2"), None);
        assert_eq!(canonical_name(hosts, ""), None);
    }

    #[test]
    fn memory_mib_rounds_down() {
        let m = MemInfo {
            total: 2047,
            free: 1023,
            swap_total: 3000,
            swap_free: 1000,
            ..MemInfo::default()
        };
        let s = MemoryStatus::from(&m);
        assert_eq!((s.total, s.used, s.free, s.available), (1, 1, 0, 0));
        assert_eq!((s.swap.total, s.swap.used, s.swap.free), (2, 1, 0));
    }
}
