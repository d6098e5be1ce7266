//! guest-get-fsinfo and guest-fstrim: the mounted filesystems qemu-ga acts on
//! (/proc/self/mountinfo, [`proc::read_fs_mounts`]), their disks from sysfs
//! ([`sysfs::block`]), statvfs(2) through [`fs_usage`] and FITRIM ([`sys::fitrim`]).

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fs_usage::{self, measured_in_child};
use super::NoArgs;
use crate::ctx::Ctx;
use crate::error::{strerror, Error};
use crate::job::Step;
use crate::log;
use crate::proc::{self, MountInfo};
use crate::sys::fitrim;
use crate::sys::statvfs::FsStat;
use crate::sysfs::block::{self, Device, DiskAddress};

/// GuestFilesystemInfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FsInfo {
    /// The kernel's block device name ("vda1", "dm-0").
    pub name: String,
    pub mountpoint: String,
    #[serde(rename = "type")]
    pub fstype: String,
    /// Absent when statvfs failed or did not answer in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Used plus what unprivileged users may still use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// All blocks, the root reserve included: qemu-ga 8.2+, not in 7.2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes_privileged: Option<u64>,
    pub disk: Vec<DiskAddress>,
}

/// guest-get-fsinfo: one entry per filesystem, in reverse mount order (qemu-ga builds
/// the list by prepending).
pub fn get_fsinfo(ctx: &Ctx, _: NoArgs) -> Result<Step<Vec<FsInfo>>, Error> {
    let mounts = proc::read_fs_mounts(ctx)?;
    let root = block::canonical_root(ctx)?;
    let mut infos = Vec::with_capacity(mounts.len());
    for m in &mounts {
        infos.push(fs_disks(ctx, &root, m)?);
    }
    fs_usage::measure(ctx, "fsinfo", mounts)?.map(move |measured| {
        let mut out: Vec<FsInfo> = infos
            .into_iter()
            .zip(measured)
            .map(|(mut info, (_, st))| {
                if let Some(st) = st {
                    sizes(&mut info, &st);
                }
                info
            })
            .collect();
        out.reverse();
        Ok(out)
    })
}

/// qemu-ga's arithmetic: used = blocks - free, total = used + available to users.
fn sizes(info: &mut FsInfo, st: &FsStat) {
    let used = st.blocks.wrapping_sub(st.bfree);
    info.used_bytes = Some(used.wrapping_mul(st.frsize));
    info.total_bytes = Some(used.wrapping_add(st.bavail).wrapping_mul(st.frsize));
    info.total_bytes_privileged = Some(st.blocks.wrapping_mul(st.frsize));
}

/// The name and disks of one mount, from /sys/dev/block/M:m (`build_guest_fsinfo`).
fn fs_disks(ctx: &Ctx, root: &Path, m: &MountInfo) -> Result<FsInfo, Error> {
    let mut info = FsInfo {
        name: String::new(),
        mountpoint: m.mountpoint.clone(),
        fstype: m.fstype.clone(),
        used_bytes: None,
        total_bytes: None,
        total_bytes_privileged: None,
        disk: Vec::new(),
    };
    let link = format!("/sys/dev/block/{}:{}", m.major, m.minor);
    let mut name = None;
    device_disks(ctx, root, &link, &mut name, &mut info.disk, 0)?;
    info.name = name.unwrap_or_default();
    // qemu-ga prepends each disk it finds.
    info.disk.reverse();
    Ok(info)
}

/// Virtual devices (dm, md) nest; sysfs has no cycles, but a fixture or a confused
/// tree must not recurse forever.
const MAX_DEPTH: usize = 8;

/// `build_guest_fsinfo_for_device`: a missing link (a container's partial /sys) names
/// the mount after the link and has no disks; a virtual device's disks are those of
/// its slaves; a real device has its address.
fn device_disks(
    ctx: &Ctx,
    root: &Path,
    link: &str,
    name: &mut Option<String>,
    disks: &mut Vec<DiskAddress>,
    depth: usize,
) -> Result<(), Error> {
    let dev = match Device::resolve(root, &ctx.path(link)) {
        Ok(dev) => dev,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            name.get_or_insert_with(|| link.rsplit('/').next().unwrap_or(link).to_string());
            return Ok(());
        }
        Err(e) => return Err(Error::io(format!("realpath(\"{link}\")"), e)),
    };
    name.get_or_insert_with(|| dev.name());
    if !dev.is_virtual() {
        disks.extend(block::address(root, &dev));
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    for slave in dev.slaves().unwrap_or_default() {
        let link = format!("{}/slaves/{slave}", dev.path);
        device_disks(ctx, root, &link, name, disks, depth + 1)?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrimArgs {
    /// Bytes; qemu-ga's schema says int and passes it on as the kernel's u64.
    pub minimum: Option<i64>,
}

/// GuestFilesystemTrimResult.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrimResult {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trimmed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrimResponse {
    pub paths: Vec<TrimResult>,
}

/// guest-fstrim: FITRIM on each filesystem, results in reverse mount order (qemu-ga
/// prepends), a failure reported in that path's `error`.
pub fn fstrim(ctx: &Ctx, args: TrimArgs) -> Result<TrimResponse, Error> {
    let minimum = args.minimum.unwrap_or(0) as u64;
    let mut paths: Vec<TrimResult> = proc::read_fs_mounts(ctx)?
        .into_iter()
        .map(|m| trim_one(ctx, &m, minimum))
        .collect();
    paths.reverse();
    Ok(TrimResponse { paths })
}

fn trim_one(ctx: &Ctx, m: &MountInfo, minimum: u64) -> TrimResult {
    let mut result = TrimResult {
        path: m.mountpoint.clone(),
        trimmed: None,
        minimum: None,
        error: None,
    };
    // open(2) and FITRIM on a FUSE mount (fuseblk has a device number) go to its
    // daemon, which need never answer; such mounts are not trimmed here, where
    // qemu-ga would hang with them.
    if measured_in_child(&m.fstype) {
        log::debug(&format!(
            "fstrim: '{}' ({}) skipped",
            m.mountpoint, m.fstype
        ));
        result.error = Some("trim not supported".into());
        return result;
    }
    let dir = match File::open(ctx.path(&m.mountpoint)) {
        Ok(dir) => dir,
        Err(e) => {
            result.error = Some(format!("failed to open: {}", strerror(&e)));
            return result;
        }
    };
    match fitrim::fitrim(&dir, minimum) {
        Ok(t) => {
            result.minimum = Some(t.minimum);
            result.trimmed = Some(t.trimmed);
        }
        // ENOTTY before 2.6.37 and on filesystems without the ioctl (CD-ROMs).
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EOPNOTSUPP)) => {
            result.error = Some("trim not supported".into());
        }
        Err(e) => result.error = Some(format!("failed to trim: {}", strerror(&e))),
    }
    result
}
