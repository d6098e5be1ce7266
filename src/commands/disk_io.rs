//! bc-guest-get-diskstats (BC-Linux, VMAnalyzer): the /proc/diskstats counters of each
//! block device that backs a mounted filesystem. Reads /proc/diskstats, the mount table,
//! device nodes and symlinks under /dev, /sys/block/dm-*/dm/name.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::NoArgs;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::proc::diskstats::{parse_diskstats, DiskStat};
use crate::proc::parse_mounts;

/// One block device with a mounted filesystem, and its counters since boot. Counters
/// are integers (the host computes rates from two samples); times are milliseconds.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct MountedDiskStats {
    /// The kernel's name ("vda1", "dm-0").
    pub name: String,
    pub major: u32,
    pub minor: u32,
    /// The source as the mount table names it ("/dev/mapper/centos-root").
    pub device: String,
    pub fstype: String,
    pub mount_points: Vec<String>,
    pub read_ios: u64,
    pub read_merges: u64,
    pub read_sectors: u64,
    pub read_ticks: u64,
    pub write_ios: u64,
    pub write_merges: u64,
    pub write_sectors: u64,
    pub write_ticks: u64,
    pub ios_in_progress: u64,
    pub io_ticks: u64,
    pub weighted_io_ticks: u64,
    /// Discard and flush counters: 4.18+ and 5.5+.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discard_ios: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discard_merges: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discard_sectors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discard_ticks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_ios: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_ticks: Option<u64>,
}

/// bc-guest-get-diskstats: a list in /proc/diskstats order, one entry per device
/// however often it is mounted (bind mounts add mount points).
pub fn get_diskstats(ctx: &Ctx, _: NoArgs) -> Result<Vec<MountedDiskStats>, Error> {
    let stats = parse_diskstats(&ctx.read("proc/diskstats")?);
    let mounts = parse_mounts(&ctx.read("proc/self/mounts")?);
    let mut by_device: Vec<Option<MountedDiskStats>> = stats.iter().map(|_| None).collect();
    for m in &mounts {
        // A user's FUSE mount has no block device, and its source is any path she names,
        // even one inside her own FUSE mount, whose daemon need never answer a stat.
        // (fuseblk needs root's blkdev option: its source is a real device.)
        if m.is_fuse() && m.fstype != "fuseblk" {
            continue;
        }
        let Some(i) = resolve_device(ctx, &m.device, &stats)
            .or_else(|| root_device(ctx, &m.device, &m.mountpoint, &stats))
        else {
            continue;
        };
        let entry = by_device[i].get_or_insert_with(|| entry(&stats[i], &m.device, &m.fstype));
        if !entry.mount_points.contains(&m.mountpoint) {
            entry.mount_points.push(m.mountpoint.clone());
        }
    }
    Ok(by_device.into_iter().flatten().collect())
}

fn entry(s: &DiskStat, device: &str, fstype: &str) -> MountedDiskStats {
    MountedDiskStats {
        name: s.name.clone(),
        major: s.major,
        minor: s.minor,
        device: device.to_string(),
        fstype: fstype.to_string(),
        mount_points: Vec::new(),
        read_ios: s.read_ios,
        read_merges: s.read_merges,
        read_sectors: s.read_sectors,
        read_ticks: s.read_ticks,
        write_ios: s.write_ios,
        write_merges: s.write_merges,
        write_sectors: s.write_sectors,
        write_ticks: s.write_ticks,
        ios_in_progress: s.ios_in_progress,
        io_ticks: s.io_ticks,
        weighted_io_ticks: s.weighted_io_ticks,
        discard_ios: s.discard.map(|d| d.ios),
        discard_merges: s.discard.map(|d| d.merges),
        discard_sectors: s.discard.map(|d| d.sectors),
        discard_ticks: s.discard.map(|d| d.ticks),
        flush_ios: s.flush.map(|f| f.ios),
        flush_ticks: s.flush.map(|f| f.ticks),
    }
}

/// "/dev/root" (the kernel mounted / itself, no initramfs) usually has no node: the
/// device is the one the mount point lives on.
fn root_device(ctx: &Ctx, source: &str, mountpoint: &str, stats: &[DiskStat]) -> Option<usize> {
    if source != "/dev/root" {
        return None;
    }
    let dev = std::fs::metadata(ctx.path(mountpoint)).ok()?.dev();
    stats
        .iter()
        .position(|s| (s.major, s.minor) == (libc::major(dev), libc::minor(dev)))
}

/// The index in `stats` of the block device a mount source names, or None for a source
/// that is no local block device (NFS, a vanished node). On a live guest the node's
/// rdev settles it; the name-based steps cover fixture trees, where /dev holds
/// symlinks at most, and a device-mapper name whose node is missing.
fn resolve_device(ctx: &Ctx, source: &str, stats: &[DiskStat]) -> Option<usize> {
    if !source.starts_with('/') {
        return None;
    }
    let by_number = |(major, minor): (u32, u32)| {
        stats
            .iter()
            .position(|s| s.major == major && s.minor == minor)
    };
    let by_name = |name: &str| stats.iter().position(|s| s.name == name);
    if let Ok(meta) = std::fs::metadata(ctx.path(source)) {
        if meta.file_type().is_block_device() {
            return by_number((libc::major(meta.rdev()), libc::minor(meta.rdev())));
        }
    }
    let resolved = follow_links(ctx, source);
    if let Some(i) = resolved
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(by_name)
    {
        return Some(i);
    }
    if let Some(dm) = source.strip_prefix("/dev/mapper/") {
        if let Some(i) = dm_by_name(ctx, dm).as_deref().and_then(by_name) {
            return Some(i);
        }
    }
    None
}

/// `path` with its symlinks followed, staying below the context root: udev's
/// /dev/mapper, /dev/disk/by-uuid and /dev/root links are relative, but an absolute
/// target is taken as root-relative too.
fn follow_links(ctx: &Ctx, path: &str) -> PathBuf {
    let mut current = PathBuf::from(path);
    for _ in 0..8 {
        let Ok(target) = std::fs::read_link(ctx.path(&current.to_string_lossy())) else {
            break;
        };
        let base = current.parent().unwrap_or(Path::new("/"));
        current = normalize(&base.join(target));
    }
    current
}

/// Resolves `.` and `..` lexically in an absolute path (the links are device links;
/// no directory on the way is itself a link).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    out
}

/// The dm-N whose device-mapper name (`vg-lv`, as under /dev/mapper) is `name`.
fn dm_by_name(ctx: &Ctx, name: &str) -> Option<String> {
    let entries = std::fs::read_dir(ctx.path("sys/block")).ok()?;
    entries.flatten().find_map(|e| {
        let dev = e.file_name().to_string_lossy().into_owned();
        let dm_name = ctx.read(&format!("sys/block/{dev}/dm/name")).ok()?;
        (dev.starts_with("dm-") && dm_name.trim() == name).then_some(dev)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(major: u32, minor: u32, name: &str) -> DiskStat {
        DiskStat {
            major,
            minor,
            name: name.into(),
            ..DiskStat::default()
        }
    }

    struct Root(PathBuf);
    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn root(tag: &str) -> Root {
        let dir = std::env::temp_dir().join(format!("qga-diskio-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Root(dir)
    }

    #[test]
    fn sources_resolve_by_link_name_and_dm_name() {
        let r = root("resolve");
        let p = |s: &str| r.0.join(s);
        std::fs::create_dir_all(p("dev/mapper")).unwrap();
        std::fs::create_dir_all(p("dev/disk/by-uuid")).unwrap();
        std::os::unix::fs::symlink("../dm-1", p("dev/mapper/centos-root")).unwrap();
        std::os::unix::fs::symlink("../../vda1", p("dev/disk/by-uuid/0a1b")).unwrap();
        std::os::unix::fs::symlink("/dev/vdb", p("dev/root")).unwrap();
        std::fs::create_dir_all(p("sys/block/dm-0/dm")).unwrap();
        std::fs::write(p("sys/block/dm-0/dm/name"), "VolGroup-lv_root\n").unwrap();
        let ctx = Ctx::with_root(&r.0);
        let stats = [
            stat(252, 0, "vda"),
            stat(252, 1, "vda1"),
            stat(253, 0, "dm-0"),
            stat(253, 1, "dm-1"),
            stat(252, 16, "vdb"),
        ];
        let at = |s: &str| resolve_device(&ctx, s, &stats);
        assert_eq!(at("/dev/vda1"), Some(1));
        assert_eq!(at("/dev/mapper/centos-root"), Some(3));
        assert_eq!(at("/dev/disk/by-uuid/0a1b"), Some(1));
        assert_eq!(at("/dev/root"), Some(4));
        assert_eq!(at("/dev/mapper/VolGroup-lv_root"), Some(2));
        assert_eq!(at("/dev/mapper/other"), None);
        assert_eq!(at("10.0.0.1:/export"), None);
        assert_eq!(at("tmpfs"), None);
    }

    #[test]
    fn user_fuse_sources_are_not_looked_up() {
        let r = root("fuse");
        let p = |s: &str| r.0.join(s);
        std::fs::create_dir_all(p("proc/self")).unwrap();
        std::fs::create_dir_all(p("home/m")).unwrap();
        std::fs::write(
            p("proc/diskstats"),
            " 252       0 vdq 1 2 3 4 5 6 7 8 0 9 10\n",
        )
        .unwrap();
        // Her fsname is a link to vdq: looking it up would list her mount under vdq.
        std::os::unix::fs::symlink("/dev/vdq", p("home/m/src")).unwrap();
        std::fs::write(
            p("proc/self/mounts"),
            "/dev/vdq / ext4 rw 0 0\n/home/m/src /home/m/mnt fuse.sshfs rw,user_id=1000 0 0\n",
        )
        .unwrap();
        let got = get_diskstats(&Ctx::with_root(&r.0), NoArgs {}).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].mount_points, ["/"]);
    }

    #[test]
    fn dev_root_is_the_device_under_the_mount_point() {
        let r = root("devroot");
        let dev = std::fs::metadata(&r.0).unwrap().dev();
        let stats = [stat(libc::major(dev), libc::minor(dev), "vda")];
        let ctx = Ctx::with_root(&r.0);
        assert_eq!(root_device(&ctx, "/dev/root", "/", &stats), Some(0));
        assert_eq!(root_device(&ctx, "/dev/vdz", "/", &stats), None);
    }

    #[test]
    fn a_block_node_resolves_by_its_numbers() {
        // The test machine's own /dev: any block node found must map by rdev.
        let ctx = Ctx::with_root("/");
        let Some(node) = std::fs::read_dir("/dev")
            .unwrap()
            .flatten()
            .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
        else {
            return;
        };
        let meta = node.metadata().unwrap();
        let stats = [stat(
            libc::major(meta.rdev()),
            libc::minor(meta.rdev()),
            "not-the-node-name",
        )];
        let source = node.path().to_string_lossy().into_owned();
        assert_eq!(resolve_device(&ctx, &source, &stats), Some(0));
    }
}
