//! guest-get-disk-status: size, use and writability of every disk-backed filesystem in
//! /proc/self/mounts, measured with statvfs(2). Network and FUSE filesystems are measured
//! in a forked child with a deadline, so a hung NFS server or a FUSE daemon that never
//! answers (a guest user can mount one) cannot hang the agent.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::NoArgs;
use crate::child::Run;
use crate::config::DiskStatusFormat;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::job::Step;
use crate::log;
use crate::proc::{self, Mount};
use crate::sys::statvfs::{self, FsStat};

/// Filesystems without a disk behind them.
const PSEUDO: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "usbfs",
    // Read-only compressed images (snaps on loop devices) are always 100 % "used";
    // reporting them would make every such host alert.
    "squashfs",
];

/// Filesystems whose statvfs talks to a server and may block forever.
const NETWORK: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "smb3",
    "ceph",
    "glusterfs",
    "fuse.glusterfs",
    "fuse.sshfs",
    "fuse.s3fs",
    "9p",
    "afs",
    "ncpfs",
    "lustre",
    "gfs2",
    "ocfs2",
    "fuse.cephfs",
];

/// Disk-backed filesystems whose "device" is not a /dev path.
const LOCAL_WITHOUT_DEV: &[&str] = &["zfs"];

/// How long one network filesystem may take to answer statvfs.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(2);
/// All network filesystems together: many dead servers must not add up.
const NETWORK_BUDGET: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
pub struct DiskInfo {
    /// MiB.
    pub total: u64,
    /// MiB, counted as df does: blocks - free blocks.
    pub used: u64,
    pub writable: bool,
}

/// The old fork's shape, kept for monitoring systems that still parse it.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct DiskEntry {
    pub mount_place: String,
    pub mount_info: DiskInfoText,
}

/// Sizes as `df -h` prints them ("20G", "3.1G").
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DiskInfoText {
    pub total: String,
    pub used: String,
    pub writable: bool,
}

/// The reply: a map keyed by mount point, or the old list (config `[bc]`).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum DiskStatus {
    Map(BTreeMap<String, DiskInfo>),
    List(Vec<DiskEntry>),
}

pub fn get_disk_status(ctx: &Ctx, _: NoArgs) -> Result<Step<DiskStatus>, Error> {
    disk_status(ctx)
}

pub fn disk_status(ctx: &Ctx) -> Result<Step<DiskStatus>, Error> {
    let text = ctx
        .read("proc/self/mounts")
        .or_else(|_| ctx.read("proc/mounts"))?;
    let measuring = Measuring {
        left: select(proc::parse_mounts(&text)).into(),
        measured: Vec::new(),
        budget_end: Instant::now() + NETWORK_BUDGET,
    };
    let format = ctx.config.disk_status_format;
    measure(ctx, measuring)?.map(move |measured| Ok(shape(format, &measured)))
}

fn shape(format: DiskStatusFormat, measured: &[(Mount, FsStat)]) -> DiskStatus {
    match format {
        DiskStatusFormat::Map => DiskStatus::Map(
            measured
                .iter()
                .map(|(m, st)| (m.mountpoint.clone(), info(m, st)))
                .collect(),
        ),
        DiskStatusFormat::List => DiskStatus::List(
            measured
                .iter()
                .map(|(m, st)| DiskEntry {
                    mount_place: m.mountpoint.clone(),
                    mount_info: DiskInfoText {
                        total: human(st.blocks * st.frsize),
                        used: human(st.blocks.saturating_sub(st.bfree) * st.frsize),
                        writable: writable(m, st),
                    },
                })
                .collect(),
        ),
    }
}

fn writable(m: &Mount, st: &FsStat) -> bool {
    // Both: an ext4 remounted read-only after errors may still say "rw" in an old
    // mtab, and ST_RDONLY misses nothing the kernel enforces.
    !m.is_readonly() && !st.readonly
}

fn info(m: &Mount, st: &FsStat) -> DiskInfo {
    const MIB: u64 = 1024 * 1024;
    DiskInfo {
        total: st.blocks * st.frsize / MIB,
        used: st.blocks.saturating_sub(st.bfree) * st.frsize / MIB,
        writable: writable(m, st),
    }
}

pub fn is_network(fstype: &str) -> bool {
    NETWORK.contains(&fstype)
}

/// Whose statvfs may block forever, so it is measured in a child with a deadline: a
/// network filesystem's server, or a FUSE daemon (any user may run one).
pub fn measured_in_child(fstype: &str) -> bool {
    is_network(fstype) || proc::mounts::is_fuse_type(fstype)
}

/// The mounts to report, in table order: disk-backed or network filesystems; for a
/// mount point mounted over, the top mount; for a device mounted several times (bind
/// mounts, btrfs subvolumes), the first mount only.
pub fn select(mounts: Vec<Mount>) -> Vec<Mount> {
    let top: Vec<Mount> = {
        let mut seen = HashSet::new();
        let mut rev: Vec<Mount> = mounts
            .into_iter()
            .rev()
            .filter(|m| seen.insert(m.mountpoint.clone()))
            .collect();
        rev.reverse();
        rev
    };
    let mut devices = HashSet::new();
    top.into_iter()
        .filter(|m| !PSEUDO.contains(&m.fstype.as_str()))
        .filter(|m| {
            m.device.starts_with("/dev/")
                || is_network(&m.fstype)
                || LOCAL_WITHOUT_DEV.contains(&m.fstype.as_str())
        })
        .filter(|m| devices.insert(m.device.clone()))
        .collect()
}

/// Mounts still to measure and those measured so far.
struct Measuring {
    left: VecDeque<Mount>,
    measured: Vec<(Mount, FsStat)>,
    /// Network filesystems share one budget: many dead servers must not add up.
    budget_end: Instant,
}

/// statvfs of each mount (below the context's root), network and FUSE ones in a child
/// the loop bounds, one after the other; unanswered mounts are left out.
fn measure(ctx: &Ctx, mut m: Measuring) -> Result<Step<Vec<(Mount, FsStat)>>, Error> {
    while let Some(mount) = m.left.pop_front() {
        let path = ctx.path(&mount.mountpoint);
        if !measured_in_child(&mount.fstype) {
            match statvfs::statvfs(&path) {
                Ok(st) => m.measured.push((mount, st)),
                Err(e) => log::debug(&format!("disk-status: statvfs '{}': {e}", mount.mountpoint)),
            }
            continue;
        }
        let left = m.budget_end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::debug(&format!(
                "disk-status: no time left for '{}'",
                mount.mountpoint
            ));
            continue;
        }
        let run = Run::Statvfs {
            path,
            timeout: left.min(NETWORK_TIMEOUT),
        };
        return Ok(Step::wait(run, move |ctx, _, result| {
            match result.and_then(|done| {
                if done.timed_out() {
                    Ok(None)
                } else {
                    statvfs::decode_answer(&done.output).map(Some)
                }
            }) {
                Ok(Some(st)) => m.measured.push((mount, st)),
                Ok(None) => log::warn(&format!(
                    "disk-status: {} '{}' did not answer statvfs in time, skipped",
                    mount.fstype, mount.mountpoint
                )),
                Err(e) => log::debug(&format!("disk-status: statvfs '{}': {e}", mount.mountpoint)),
            }
            measure(ctx, m)
        }));
    }
    Ok(Step::Done(m.measured))
}

/// A size as `df -h` prints it: powers of 1024, one decimal below 10, always rounded
/// up ("3.1G", "20G", "512M", "0").
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        let tenths = (value * 10.0).ceil() / 10.0;
        if tenths < 10.0 {
            return format!("{tenths:.1}{}", UNITS[unit]);
        }
        value = tenths;
    }
    let whole = value.ceil();
    if whole >= 1024.0 && unit < UNITS.len() - 1 {
        return format!("1.0{}", UNITS[unit + 1]);
    }
    format!("{whole:.0}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(dev: &str, mp: &str, fs: &str, opts: &str) -> Mount {
        Mount {
            device: dev.into(),
            mountpoint: mp.into(),
            fstype: fs.into(),
            options: opts.split(',').map(String::from).collect(),
        }
    }

    #[test]
    fn df_human_sizes() {
        let table = [
            (0, "0"),
            (1023, "1023"),
            (1024, "1.0K"),
            (3 * 1024 * 1024 * 1024 + 100 * 1024 * 1024, "3.1G"),
            (20 * 1024 * 1024 * 1024, "20G"),
            (512 * 1024 * 1024, "512M"),
            (1024 * 1024 * 1024 - 1, "1.0G"),
            ((9.99 * 1024.0 * 1024.0) as u64, "10M"),
        ];
        for (bytes, want) in table {
            assert_eq!(human(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn select_skips_pseudo_bind_and_overmounted() {
        let m = vec![
            mount("rootfs", "/", "rootfs", "rw"),
            mount("/dev/vda1", "/", "ext4", "rw"),
            mount("proc", "/proc", "proc", "rw"),
            mount("tmpfs", "/run", "tmpfs", "rw"),
            mount("/dev/vdb", "/data", "xfs", "rw"),
            mount("/dev/vdb", "/srv/bind", "xfs", "rw"),
            mount("/dev/vdc", "/mnt", "ext4", "rw"),
            mount("/dev/vdd", "/mnt", "ext4", "ro"),
            mount("srv:/x", "/nfs", "nfs4", "rw"),
            mount("/dev/loop0", "/snap/core/1", "squashfs", "ro"),
            mount("overlay", "/var/lib/docker/o/merged", "overlay", "rw"),
            mount("tank/home", "/home", "zfs", "rw"),
        ];
        let got: Vec<(String, String)> = select(m)
            .into_iter()
            .map(|m| (m.device, m.mountpoint))
            .collect();
        let want = [
            ("/dev/vda1", "/"),
            ("/dev/vdb", "/data"),
            ("/dev/vdd", "/mnt"),
            ("srv:/x", "/nfs"),
            ("tank/home", "/home"),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((d, mp), (wd, wmp)) in got.iter().zip(want) {
            assert_eq!((d.as_str(), mp.as_str()), (wd, wmp));
        }
    }

    #[test]
    fn fuse_and_network_mounts_are_measured_in_a_child() {
        for t in [
            "fuse",
            "fuseblk",
            "fuse.sshfs",
            "fuse.lxcfs",
            "fuse.portal",
            "nfs4",
            "cifs",
        ] {
            assert!(measured_in_child(t), "{t}");
        }
        for t in ["ext4", "xfs", "btrfs", "zfs", "fusectl", "vfat"] {
            assert!(!measured_in_child(t), "{t}");
        }
    }

    #[test]
    fn readonly_from_either_source() {
        let st = FsStat {
            frsize: 4096,
            blocks: 256 * 100,
            bfree: 256 * 40,
            bavail: 256 * 30,
            readonly: false,
        };
        let rw = mount("/dev/vda1", "/", "ext4", "rw");
        let ro = mount("/dev/vda1", "/", "ext4", "ro,relatime");
        assert_eq!(
            info(&rw, &st),
            DiskInfo {
                total: 100,
                used: 60,
                writable: true
            }
        );
        assert!(!info(&ro, &st).writable);
        let kernel_ro = FsStat {
            readonly: true,
            ..st
        };
        assert!(!info(&rw, &kernel_ro).writable);
    }
}
