//! guest-get-cpustinfo (BC-Linux, VMAnalyzer): the CPUs the guest sees, from
//! /proc/cpuinfo (every architecture's layout, src/proc/cpuinfo.rs), the topology files
//! under /sys/devices/system/cpu/cpuN/topology, and the cpuN directories there when
//! cpuinfo has no per-CPU blocks (uniprocessor ARM before 3.8, s390x before 4.7).

use std::collections::BTreeSet;

use serde::Serialize;

use super::{cpu, NoArgs};
use crate::ctx::Ctx;
use crate::error::Error;
use crate::proc::cpuinfo::{parse_cpuinfo, CpuInfo, Processor};

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct CpustInfo {
    /// Online logical CPUs: the blocks of /proc/cpuinfo, else what its header says
    /// (s390x), else the online cpuN of /sys/devices/system/cpu.
    pub cpu_count: usize,
    pub sockets: usize,
    pub cores_per_socket: usize,
    pub threads_per_core: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// Of the first CPU, as printed ("2394.454"); x86 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_mhz: Option<String>,
    /// As printed ("16384 KB"); x86 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<String>,
    /// The CPUID hypervisor bit: the guest knows it runs virtualized.
    pub hypervisor: bool,
    /// The first CPU's feature flags, as listed (x86 `flags`, ARM `Features`).
    pub flags: Vec<String>,
    pub cpus: Vec<LogicalCpu>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct LogicalCpu {
    pub processor: u32,
    pub socket: u32,
    pub core: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_mhz: Option<String>,
}

pub fn get_cpustinfo(ctx: &Ctx, _: NoArgs) -> Result<CpustInfo, Error> {
    let info = parse_cpuinfo(&ctx.read("proc/cpuinfo")?);
    let fallback: Vec<Processor>;
    let processors = if info.processors.is_empty() {
        fallback = unlisted_cpus(ctx, &info)
            .into_iter()
            .map(|index| Processor {
                index,
                fields: Vec::new(),
            })
            .collect();
        &fallback
    } else {
        &info.processors
    };
    let cpus = processors
        .iter()
        .map(|p| {
            let (socket, core) = placement(ctx, p);
            LogicalCpu {
                processor: p.index,
                socket,
                core,
                cpu_mhz: p.mhz().map(str::to_string),
            }
        })
        .collect();
    Ok(summarize(&info, cpus))
}

/// The CPU numbers when /proc/cpuinfo has no per-CPU blocks: the online cpuN of sysfs
/// (guest-get-vcpus' view); else 0..N for the count the header gives (s390x); else
/// one CPU, as a uniprocessor ARM kernel prints just the one description.
fn unlisted_cpus(ctx: &Ctx, info: &CpuInfo) -> Vec<u32> {
    let online: Vec<u32> = cpu::get_vcpus(ctx, NoArgs {})
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.online)
        .filter_map(|c| u32::try_from(c.logical_id).ok())
        .collect();
    if !online.is_empty() {
        return online;
    }
    match info.declared_count() {
        Some(n) => (0..n as u32).collect(),
        None if !info.other.is_empty() => vec![0],
        None => Vec::new(),
    }
}

/// Socket and core of one CPU: sysfs knows them on every architecture (2.6.16+);
/// /proc/cpuinfo's `physical id`/`core id` are x86 only. Without either, each CPU
/// counts as its own core of socket 0.
fn placement(ctx: &Ctx, p: &Processor) -> (u32, u32) {
    let topo = |file: &str| {
        let text = ctx
            .read(&format!(
                "sys/devices/system/cpu/cpu{}/topology/{file}",
                p.index
            ))
            .ok()?;
        // -1 means "unknown" (some ARM and s390 kernels).
        text.trim().parse::<u32>().ok()
    };
    let socket = topo("physical_package_id").or(p.physical_id()).unwrap_or(0);
    let core = topo("core_id").or(p.core_id()).unwrap_or(p.index);
    (socket, core)
}

fn summarize(info: &CpuInfo, cpus: Vec<LogicalCpu>) -> CpustInfo {
    let sockets: BTreeSet<u32> = cpus.iter().map(|c| c.socket).collect();
    let cores: BTreeSet<(u32, u32)> = cpus.iter().map(|c| (c.socket, c.core)).collect();
    let per = |a: usize, b: usize| a.checked_div(b).unwrap_or(0);
    let first = info.processors.first();
    let owned = |v: Option<&str>| v.map(str::to_string);
    let flags = info.flags();
    CpustInfo {
        cpu_count: cpus.len(),
        sockets: sockets.len(),
        cores_per_socket: per(cores.len(), sockets.len()),
        threads_per_core: per(cpus.len(), cores.len()),
        vendor: owned(info.vendor()),
        model_name: owned(info.model_name()),
        cpu_mhz: owned(first.and_then(Processor::mhz)),
        cache_size: owned(first.and_then(Processor::cache_size)),
        hypervisor: flags.contains(&"hypervisor"),
        flags: flags.into_iter().map(str::to_string).collect(),
        cpus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_falls_back_to_cpuinfo_then_to_one_core_each() {
        let dir = std::env::temp_dir().join(format!("qga-cpuinfo-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        std::fs::write(
            dir.join("proc/cpuinfo"),
            "processor\t: 0\nphysical id\t: 0\ncore id\t: 0\n\n\
             processor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\n\
             processor\t: 2\n\nprocessor\t: 3\n\n",
        )
        .unwrap();
        let r = get_cpustinfo(&Ctx::with_root(&dir), NoArgs {}).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let placed: Vec<_> = r.cpus.iter().map(|c| (c.socket, c.core)).collect();
        assert_eq!(placed, [(0, 0), (0, 0), (0, 2), (0, 3)]);
        assert_eq!((r.cpu_count, r.sockets, r.cores_per_socket), (4, 1, 3));
        assert!(!r.hypervisor);
        assert_eq!(r.model_name, None);
    }
}
