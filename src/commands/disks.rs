//! guest-get-disks (the block devices in /sys/block, their partitions and what they are
//! built on, [`sysfs::block`]) and guest-get-diskstats (/proc/diskstats).

use serde::Serialize;

use super::NoArgs;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::log;
use crate::proc::diskstats::{parse_diskstats, DiskStat};
use crate::sys::nvme;
use crate::sysfs::block::{self, BusType, Device, DiskAddress};

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
    /// NVMe disks whose device node answers the SMART log (qemu-ga 7.1+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smart: Option<Smart>,
}

/// GuestDiskSmart: a union on `type`; only NVMe has members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Smart {
    Nvme(NvmeSmart),
}

/// GuestNVMeSmart: the health log page, 128-bit counters split in lo/hi halves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NvmeSmart {
    pub critical_warning: u64,
    pub temperature: u64,
    pub available_spare: u64,
    pub available_spare_threshold: u64,
    pub percentage_used: u64,
    pub data_units_read_lo: u64,
    pub data_units_read_hi: u64,
    pub data_units_written_lo: u64,
    pub data_units_written_hi: u64,
    pub host_read_commands_lo: u64,
    pub host_read_commands_hi: u64,
    pub host_write_commands_lo: u64,
    pub host_write_commands_hi: u64,
    pub controller_busy_time_lo: u64,
    pub controller_busy_time_hi: u64,
    pub power_cycles_lo: u64,
    pub power_cycles_hi: u64,
    pub power_on_hours_lo: u64,
    pub power_on_hours_hi: u64,
    pub unsafe_shutdowns_lo: u64,
    pub unsafe_shutdowns_hi: u64,
    pub media_errors_lo: u64,
    pub media_errors_hi: u64,
    pub number_of_error_log_entries_lo: u64,
    pub number_of_error_log_entries_hi: u64,
}

/// Decodes the SMART / health log page (NVMe base spec, Get Log Page 02h).
pub fn parse_smart_log(p: &[u8; nvme::SMART_LOG_LEN]) -> NvmeSmart {
    let u64_at = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().unwrap_or([0; 8]));
    NvmeSmart {
        critical_warning: p[0].into(),
        temperature: u16::from_le_bytes([p[1], p[2]]).into(),
        available_spare: p[3].into(),
        available_spare_threshold: p[4].into(),
        percentage_used: p[5].into(),
        data_units_read_lo: u64_at(32),
        data_units_read_hi: u64_at(40),
        data_units_written_lo: u64_at(48),
        data_units_written_hi: u64_at(56),
        host_read_commands_lo: u64_at(64),
        host_read_commands_hi: u64_at(72),
        host_write_commands_lo: u64_at(80),
        host_write_commands_hi: u64_at(88),
        controller_busy_time_lo: u64_at(96),
        controller_busy_time_hi: u64_at(104),
        power_cycles_lo: u64_at(112),
        power_cycles_hi: u64_at(120),
        power_on_hours_lo: u64_at(128),
        power_on_hours_hi: u64_at(136),
        unsafe_shutdowns_lo: u64_at(144),
        unsafe_shutdowns_hi: u64_at(152),
        media_errors_lo: u64_at(160),
        media_errors_hi: u64_at(168),
        number_of_error_log_entries_lo: u64_at(176),
        number_of_error_log_entries_hi: u64_at(184),
    }
}

/// The SMART log of an NVMe disk's device node below the root; None where it cannot
/// be opened or read (no node in a fixture, an older kernel, a controller refusing).
fn smart(ctx: &Ctx, address: Option<&DiskAddress>, node: &str) -> Option<Smart> {
    if address?.bus_type != BusType::Nvme {
        return None;
    }
    let dev = std::fs::File::open(ctx.path(node))
        .map_err(|e| log::debug(&format!("disks: open '{node}': {e}")))
        .ok()?;
    let page = nvme::smart_log(&dev)
        .map_err(|e| log::debug(&format!("disks: SMART log of '{node}': {e}")))
        .ok()?;
    Some(Smart::Nvme(parse_smart_log(&page)))
}

/// guest-get-disks: every non-empty disk in /sys/block with its partitions. qemu-ga
/// prepends each disk and then its partitions while reading the directory; the
/// directory is read here in name order, so the reply is the reverse of that.
pub fn get_disks(ctx: &Ctx, _: NoArgs) -> Result<Vec<DiskInfo>, Error> {
    let root = block::canonical_root(ctx)?;
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
        let address = (!dev.is_virtual())
            .then(|| block::address(&root, &dev))
            .flatten();
        out.push(DiskInfo {
            name: node.clone(),
            partition: false,
            dependencies,
            smart: smart(ctx, address.as_ref(), &node),
            address,
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
                smart: None,
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
    let text = crate::whole_file::read(&ctx.path("proc/diskstats"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_log_fields_at_their_offsets() {
        let mut p = [0u8; nvme::SMART_LOG_LEN];
        p[0] = 0x04;
        p[1..3].copy_from_slice(&310u16.to_le_bytes());
        (p[3], p[4], p[5]) = (100, 10, 3);
        p[32..40].copy_from_slice(&123_456u64.to_le_bytes());
        p[128..136].copy_from_slice(&8760u64.to_le_bytes());
        p[184..192].copy_from_slice(&1u64.to_le_bytes());
        let s = parse_smart_log(&p);
        assert_eq!((s.critical_warning, s.temperature), (4, 310));
        assert_eq!(
            (
                s.available_spare,
                s.available_spare_threshold,
                s.percentage_used
            ),
            (100, 10, 3)
        );
        assert_eq!((s.data_units_read_lo, s.power_on_hours_lo), (123_456, 8760));
        assert_eq!(s.number_of_error_log_entries_hi, 1);
        let json = serde_json::to_value(Smart::Nvme(s)).unwrap();
        assert_eq!(json["type"], "nvme");
        assert_eq!(json["power-on-hours-lo"], 8760);
    }
}
