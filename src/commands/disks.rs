//! guest-get-disks (the block devices in /sys/block, their partitions and what they are
//! built on, [`sysfs::block`]) and guest-get-diskstats (/proc/diskstats).

use serde::Serialize;

use super::NoArgs;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::proc::diskstats::{parse_diskstats, DiskStat};
use crate::sysfs::block::{self, Device, DiskAddress};

/// GuestDiskInfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskInfo {
    /// The device node ("/dev/vda", "/dev/dm-0").
    pub name: String,
    pub partition: bool,
    /// Device nodes this one is built on: a partition's disk, a dm device's slaves;
    /// absent for a disk without a `slaves` directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<DiskAddress>,
    /// The device-mapper name ("vg0-root").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// guest-get-disks: every non-empty disk in /sys/block with its partitions. qemu-ga
/// prepends each disk and then its partitions while reading the directory; the
/// directory is read here in name order, so the reply is the reverse of that.
pub fn get_disks(ctx: &Ctx, _: NoArgs) -> Result<Vec<DiskInfo>, Error> {
    let root = std::fs::canonicalize(&ctx.root)
        .map_err(|e| Error::io(format!("realpath(\"{}\")", ctx.root.display()), e))?;
    let dir = ctx.path("sys/block");
    let rd =
        std::fs::read_dir(&dir).map_err(|e| Error::io("Can't open directory \"/sys/block\"", e))?;
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let Ok(dev) = Device::resolve(&root, &dir.join(&n)) else {
            continue;
        };
        if dev.size().is_none_or(|s| s == 0) {
            continue;
        }
        let Some(node) = dev.devnode() else {
            continue;
        };
        let dependencies = dev.slaves().map(|slaves| {
            let mut deps: Vec<String> = slaves
                .iter()
                .filter_map(|s| Device::resolve(&root, &dev.dir.join("slaves").join(s)).ok())
                .filter_map(|s| s.devnode())
                .collect();
            deps.reverse();
            deps
        });
        out.push(DiskInfo {
            name: node.clone(),
            partition: false,
            dependencies,
            address: (!dev.is_virtual())
                .then(|| block::address(&root, &dev))
                .flatten(),
            alias: dev.dm_name(),
        });
        for part in dev.partitions() {
            let Some(pnode) = part.devnode() else {
                continue;
            };
            out.push(DiskInfo {
                name: pnode,
                partition: true,
                dependencies: Some(vec![node.clone()]),
                address: None,
                alias: None,
            });
        }
    }
    out.reverse();
    Ok(out)
}

/// GuestDiskStatsInfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskStatsInfo {
    pub name: String,
    pub major: u64,
    pub minor: u64,
    pub stats: DiskStats,
}

/// GuestDiskStats: every member optional, as the line's form allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DiskStats {
    pub read_sectors: u64,
    pub read_ios: u64,
    pub read_merges: u64,
    pub write_sectors: u64,
    pub write_ios: u64,
    pub write_merges: u64,
    /// Discard counters: 4.18+ (18-field lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discard_sectors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discard_ios: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discard_merges: Option<u64>,
    /// Flush counters: 5.5+ (20-field lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_ios: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_ticks: Option<u64>,
    pub read_ticks: u64,
    pub write_ticks: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discard_ticks: Option<u64>,
    pub ios_pgr: u64,
    pub total_ticks: u64,
    pub weight_ticks: u64,
}

/// guest-get-diskstats: every line of /proc/diskstats, in the kernel's order.
pub fn get_diskstats(ctx: &Ctx, _: NoArgs) -> Result<Vec<DiskStatsInfo>, Error> {
    let text = std::fs::read(ctx.path("proc/diskstats"))
        .map_err(|e| Error::io("Could not open '/proc/diskstats'", e))?;
    Ok(parse_diskstats(&String::from_utf8_lossy(&text))
        .iter()
        .map(stats_info)
        .collect())
}

/// qemu-ga reads ios_pgr, total_ticks, weight_ticks and the discard and flush ticks
/// into 32-bit ints ("%u"): the values wrap as there.
fn stats_info(s: &DiskStat) -> DiskStatsInfo {
    let u32w = |v: u64| u64::from(v as u32);
    DiskStatsInfo {
        name: s.name.clone(),
        major: s.major.into(),
        minor: s.minor.into(),
        stats: DiskStats {
            read_sectors: s.read_sectors,
            read_ios: s.read_ios,
            read_merges: s.read_merges,
            write_sectors: s.write_sectors,
            write_ios: s.write_ios,
            write_merges: s.write_merges,
            discard_sectors: s.discard.map(|d| d.sectors),
            discard_ios: s.discard.map(|d| d.ios),
            discard_merges: s.discard.map(|d| d.merges),
            flush_ios: s.flush.map(|f| f.ios),
            flush_ticks: s.flush.map(|f| u32w(f.ticks)),
            read_ticks: s.read_ticks,
            write_ticks: u32w(s.write_ticks),
            discard_ticks: s.discard.map(|d| u32w(d.ticks)),
            ios_pgr: u32w(s.ios_in_progress),
            total_ticks: u32w(s.io_ticks),
            weight_ticks: u32w(s.weighted_io_ticks),
        },
    }
}
