//! guest-get-cpustinfo (BC-Linux, VMAnalyzer): the CPUs the guest sees, from
//! /proc/cpuinfo and the topology files under /sys/devices/system/cpu/cpuN/topology.

use std::collections::BTreeSet;

use serde::Serialize;

use super::NoArgs;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::proc::cpuinfo::{parse_cpuinfo, CpuInfo, Processor};

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct CpustInfo {
    /// Online logical CPUs (the blocks of /proc/cpuinfo).
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
    let cpus = info
        .processors
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
    CpustInfo {
        cpu_count: cpus.len(),
        sockets: sockets.len(),
        cores_per_socket: per(cores.len(), sockets.len()),
        threads_per_core: per(cpus.len(), cores.len()),
        vendor: owned(first.and_then(Processor::vendor)),
        model_name: owned(first.and_then(Processor::model_name)),
        cpu_mhz: owned(first.and_then(Processor::mhz)),
        cache_size: owned(first.and_then(Processor::cache_size)),
        hypervisor: first.is_some_and(|p| p.has_flag("hypervisor")),
        flags: first
            .map(|p| p.flags().into_iter().map(str::to_string).collect())
            .unwrap_or_default(),
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
