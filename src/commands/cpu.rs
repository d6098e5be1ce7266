//! CPUs: guest-get-vcpus and guest-set-vcpus through
//! /sys/devices/system/cpu/cpuN/online (CPU hotplug, 2.6.x on), guest-get-cpustats
//! (/proc/stat) and guest-get-load (/proc/loadavg).

use std::io;

use serde::{Deserialize, Serialize};

use super::{write_attribute, NoArgs};
use crate::ctx::Ctx;
use crate::error::Error;
use crate::proc::{self, CpuTimes};

const CPU_DIR: &str = "sys/devices/system/cpu";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LogicalProcessor {
    pub logical_id: i64,
    pub online: bool,
    /// Optional in the schema, always present in replies (as qemu-ga fills it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_offline: Option<bool>,
}

/// A vcpus entry from the host; `can-offline` is accepted and ignored, as in qemu-ga.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogicalProcessorArg {
    pub logical_id: i64,
    pub online: bool,
    #[allow(dead_code)]
    pub can_offline: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetVcpusArgs {
    pub vcpus: Vec<LogicalProcessorArg>,
}

/// Every cpuN directory, in logical-id order. A CPU without an `online` file (cpu0 on
/// most x86 kernels) is online and cannot be offlined.
pub fn get_vcpus(ctx: &Ctx, _: NoArgs) -> Result<Vec<LogicalProcessor>, Error> {
    let entries = std::fs::read_dir(ctx.path(CPU_DIR))
        .map_err(|e| Error::io(format!("failed to list entries: /{CPU_DIR}"), e))?;
    // The entry's type comes with the listing: no stat per CPU directory.
    let mut ids: Vec<i64> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| cpu_id(&e.file_name().to_string_lossy()))
        .collect();
    ids.sort_unstable();
    ids.into_iter()
        .map(|id| {
            let online = online_state(ctx, id)?;
            Ok(LogicalProcessor {
                logical_id: id,
                online: online.unwrap_or(true),
                can_offline: Some(online.is_some()),
            })
        })
        .collect()
}

/// The N of a "cpuN" directory name ("cpufreq", "cpuidle" are not CPUs).
fn cpu_id(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("cpu")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Brings CPUs on or offline in order; returns how many were handled before the first
/// failure, and the error only when the very first one fails (qemu-ga's contract).
pub fn set_vcpus(ctx: &Ctx, args: SetVcpusArgs) -> Result<i64, Error> {
    let mut processed = 0;
    for vcpu in &args.vcpus {
        if let Err(e) = transfer_vcpu(ctx, vcpu) {
            if processed == 0 {
                return Err(e);
            }
            break;
        }
        processed += 1;
    }
    Ok(processed)
}

fn transfer_vcpu(ctx: &Ctx, vcpu: &LogicalProcessorArg) -> Result<(), Error> {
    let id = vcpu.logical_id;
    match read_online(ctx, id)? {
        None if !vcpu.online => Err(Error::Failed(format!(
            "logical processor #{id} can't be offlined"
        ))),
        // No `online` file: the CPU is always online; "re-onlining" it succeeds.
        None => Ok(()),
        Some(current) if current == vcpu.online => Ok(()),
        Some(_) => {
            let rel = format!("{CPU_DIR}/cpu{id}/online");
            let value = if vcpu.online { "1" } else { "0" };
            write_attribute(ctx, &rel, value)
                .map_err(|e| Error::io(format!("pwrite(\"/{rel}\")"), e))
        }
    }
}

/// The state in cpuN/online: Some(online), or None when the file does not exist.
fn read_online(ctx: &Ctx, id: i64) -> Result<Option<bool>, Error> {
    let dir = format!("{CPU_DIR}/cpu{id}");
    if let Err(e) = std::fs::metadata(ctx.path(&dir)).and_then(|m| {
        if m.is_dir() {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOTDIR))
        }
    }) {
        return Err(Error::io(format!("open(\"/{dir}/\")"), e));
    }
    online_state(ctx, id)
}

/// [`read_online`] for a CPU directory known to exist.
fn online_state(ctx: &Ctx, id: i64) -> Result<Option<bool>, Error> {
    let rel = format!("{CPU_DIR}/cpu{id}/online");
    match crate::whole_file::read(&ctx.path(&rel)) {
        Ok(bytes) => match bytes.first() {
            Some(&b) => Ok(Some(b != b'0')),
            None => Err(Error::Failed(format!("pread(\"/{rel}\"): unexpected EOF"))),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("open(\"/{rel}\")"), e)),
    }
}

/// One CPU's times in milliseconds. The union's discriminator `type` is always "linux";
/// members the kernel does not print are left out (guestnice before 2.6.33).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub cpu: i64,
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iowait: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub softirq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steal: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<u64>,
    /// The wire name has no hyphen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guestnice: Option<u64>,
}

/// Each "cpuN" line of /proc/stat (not the aggregate), converted from clock ticks.
pub fn get_cpustats(ctx: &Ctx, _: NoArgs) -> Result<Vec<CpuStats>, Error> {
    let stat = proc::parse_stat(&ctx.read("proc/stat")?)?;
    Ok(cpu_stats(&stat.cpus, proc::clock_ticks()))
}

pub fn cpu_stats(cpus: &[(u32, CpuTimes)], ticks_per_sec: u64) -> Vec<CpuStats> {
    let ms = |ticks: u64| ticks.saturating_mul(1000) / ticks_per_sec.max(1);
    cpus.iter()
        .map(|(n, t)| CpuStats {
            kind: "linux",
            cpu: i64::from(*n),
            user: ms(t.user),
            nice: ms(t.nice),
            system: ms(t.system),
            idle: ms(t.idle),
            iowait: t.iowait.map(ms),
            irq: t.irq.map(ms),
            softirq: t.softirq.map(ms),
            steal: t.steal.map(ms),
            guest: t.guest.map(ms),
            guestnice: t.guest_nice.map(ms),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadAverage {
    pub load1m: f64,
    pub load5m: f64,
    pub load15m: f64,
}

/// The 1, 5 and 15 minute load averages (qemu-ga 10.0).
pub fn get_load(ctx: &Ctx, _: NoArgs) -> Result<LoadAverage, Error> {
    let l = proc::parse_loadavg(&ctx.read("proc/loadavg")?)?;
    Ok(LoadAverage {
        load1m: l.one,
        load5m: l.five,
        load15m: l.fifteen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_directory_names() {
        assert_eq!(cpu_id("cpu0"), Some(0));
        assert_eq!(cpu_id("cpu17"), Some(17));
        assert_eq!(cpu_id("cpufreq"), None);
        assert_eq!(cpu_id("cpuidle"), None);
        assert_eq!(cpu_id("cpu"), None);
        assert_eq!(cpu_id("cpu1a"), None);
    }
}
