//! /proc/self/mountinfo (since 2.6.26, fallback /proc/self/mounts): the mount table with
//! each mount's device numbers, and the list of disk-backed filesystems qemu-ga's
//! `build_fs_mount_list` gives (freeze, thaw; fstrim and fsinfo use the same list
//! upstream): virtual filesystems (device major 0) skipped except btrfs, and since
//! qemu-ga 10.0 each device once (bind mounts and duplicates dropped, the first kept).

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::mounts::{is_fuse_type, parse_mounts, unescape};
use crate::ctx::Ctx;
use crate::error::Error;

/// One line of mountinfo: "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3
/// /dev/root rw,errors=continue" (Documentation/filesystems/proc.txt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub major: u32,
    pub minor: u32,
    pub mountpoint: String,
    pub fstype: String,
    pub source: String,
}

/// Parses mountinfo; lines without the " - " separator or device numbers are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut f = left.split_whitespace();
            let (_id, _parent) = (f.next()?, f.next()?);
            let (major, minor) = f.next()?.split_once(':')?;
            let _root = f.next()?;
            let mountpoint = unescape(f.next()?);
            let mut r = right.split_whitespace();
            let fstype = unescape(r.next()?);
            let source = r.next().map(unescape).unwrap_or_default();
            Some(MountInfo {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                mountpoint,
                fstype,
                source,
            })
        })
        .collect()
}

/// A disk-backed filesystem the agent may freeze, in mount order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsMount {
    pub dir: String,
    pub fstype: String,
    pub major: u32,
    pub minor: u32,
}

/// The filesystems to freeze or thaw, in mount order, from mountinfo (or the mount
/// table on kernels without it).
pub fn fs_mount_list(ctx: &Ctx) -> Result<Vec<FsMount>, Error> {
    let candidates = match ctx.read("proc/self/mountinfo") {
        Ok(text) => from_mountinfo(ctx, &text),
        Err(_) => from_mounts(ctx, &ctx.read("proc/self/mounts")?),
    };
    Ok(dedup(candidates))
}

fn from_mountinfo(ctx: &Ctx, text: &str) -> Vec<FsMount> {
    parse_mountinfo(text)
        .into_iter()
        .filter_map(|m| {
            let (major, minor) = if m.major != 0 {
                (m.major, m.minor)
            } else if m.fstype == "btrfs" {
                // btrfs gives each subvolume an anonymous device; the disk's numbers
                // make every subvolume mount of one filesystem one entry.
                device_numbers(ctx, &m.source)?
            } else {
                // Virtual, network or FUSE: nothing to freeze, and a hung server
                // could hang the open.
                return None;
            };
            fs_mount(m.mountpoint, m.fstype, (major, minor))
        })
        .collect()
}

/// qemu-ga's mtab reading: only sources that are device nodes, never smbfs or cifs.
fn from_mounts(ctx: &Ctx, text: &str) -> Vec<FsMount> {
    parse_mounts(text)
        .into_iter()
        .filter(|m| m.device.starts_with('/') && m.fstype != "smbfs" && m.fstype != "cifs")
        .filter_map(|m| {
            let numbers = device_numbers(ctx, &m.device)?;
            fs_mount(m.mountpoint, m.fstype, numbers)
        })
        .collect()
}

/// The entry, unless the type is FUSE: fuseblk (ntfs-3g) has a real device, but its
/// daemon must keep writing while the kernel waits for it, so freezing it can deadlock
/// (qemu-ga does not skip it).
fn fs_mount(dir: String, fstype: String, (major, minor): (u32, u32)) -> Option<FsMount> {
    (!is_fuse_type(&fstype)).then_some(FsMount {
        dir,
        fstype,
        major,
        minor,
    })
}

/// The device numbers of the block device node at `path`.
fn device_numbers(ctx: &Ctx, path: &str) -> Option<(u32, u32)> {
    let st = std::fs::metadata(ctx.path(path)).ok()?;
    if !st.file_type().is_block_device() {
        return None;
    }
    let rdev = st.rdev();
    Some((libc::major(rdev), libc::minor(rdev)))
}

/// Keeps the first mount of each device (qemu-ga 10.0 `56ef123777`: a bind mount of a
/// frozen filesystem would otherwise be frozen twice, or deadlock).
fn dedup(mounts: Vec<FsMount>) -> Vec<FsMount> {
    let mut seen = HashSet::new();
    mounts
        .into_iter()
        .filter(|m| seen.insert((m.major, m.minor)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
40 28 252:16 / /mnt/my\\040data rw,relatime shared:20 - ext4 /dev/vdb rw
41 28 252:16 /sub /srv/bind rw,relatime shared:20 - ext4 /dev/vdb rw
42 28 0:45 / /net rw,relatime shared:21 - nfs4 server:/export rw,vers=4.2
43 28 8:17 / /win rw,relatime shared:22 - fuseblk /dev/sdb1 rw
44 28 0:46 / /tmp rw shared:23 - tmpfs tmpfs rw
bad line without separator
";

    #[test]
    fn mountinfo_fields_and_escapes() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 7);
        assert_eq!(
            m[2],
            MountInfo {
                major: 252,
                minor: 16,
                mountpoint: "/mnt/my data".into(),
                fstype: "ext4".into(),
                source: "/dev/vdb".into(),
            }
        );
    }

    #[test]
    fn freeze_list_skips_virtual_network_fuse_and_bind_mounts() {
        let ctx = Ctx::with_root("/nonexistent");
        let dirs: Vec<String> = dedup(from_mountinfo(&ctx, SAMPLE))
            .into_iter()
            .map(|m| m.dir)
            .collect();
        assert_eq!(dirs, ["/", "/mnt/my data"]);
    }
}
