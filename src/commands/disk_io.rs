//! bc-guest-get-diskstats (BC-Linux, VMAnalyzer): the /proc/diskstats counters of each
//! block device that backs a mounted filesystem. Reads /proc/diskstats, the mount table,
//! device nodes and symlinks under /dev, /sys/block/dm-*/dm/name.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::ctx::Ctx;
use crate::proc::diskstats::DiskStat;

/// The index in `stats` of the block device a mount source names, or None for a source
/// that is no local block device (NFS, a vanished node). On a live guest the node's
/// rdev settles it; the name-based steps cover fixture trees, where /dev holds
/// symlinks at most, and a device-mapper name whose node is missing.
pub fn resolve_device(ctx: &Ctx, source: &str, stats: &[DiskStat]) -> Option<usize> {
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
