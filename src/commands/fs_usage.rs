//! statvfs(2) of a list of mounts, for guest-get-disk-status and guest-get-fsinfo. Local
//! filesystems are measured here; network and FUSE filesystems in a forked child with a
//! deadline (`Run::Statvfs`, run by the loop), so a hung NFS server or a FUSE daemon that
//! never answers (a guest user can mount one) cannot hang the agent.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::child::Run;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::job::Step;
use crate::log;
use crate::proc::{self, Mount, MountInfo};
use crate::sys::statvfs::{self, FsStat};

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

/// How long one network filesystem may take to answer statvfs.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(2);
/// All network filesystems together: many dead servers must not add up.
const NETWORK_BUDGET: Duration = Duration::from_secs(5);

pub fn is_network(fstype: &str) -> bool {
    NETWORK.contains(&fstype)
}

/// Whose statvfs may block forever, so it is measured in a child with a deadline: a
/// network filesystem's server, or a FUSE daemon (any user may run one).
pub fn measured_in_child(fstype: &str) -> bool {
    is_network(fstype) || proc::mounts::is_fuse_type(fstype)
}

/// A mount table entry that can be measured.
pub trait Mounted {
    fn mountpoint(&self) -> &str;
    fn fstype(&self) -> &str;
}

impl Mounted for Mount {
    fn mountpoint(&self) -> &str {
        &self.mountpoint
    }
    fn fstype(&self) -> &str {
        &self.fstype
    }
}

impl Mounted for MountInfo {
    fn mountpoint(&self) -> &str {
        &self.mountpoint
    }
    fn fstype(&self) -> &str {
        &self.fstype
    }
}

/// Each mount with its statvfs, `None` where it failed or did not answer in time.
pub type Measured<T> = Vec<(T, Option<FsStat>)>;

/// Mounts still to measure and those measured so far.
struct Measuring<T> {
    /// Names the command in log lines.
    what: &'static str,
    left: VecDeque<T>,
    measured: Measured<T>,
    budget_end: Instant,
}

/// statvfs of each mount (below the context's root) in table order, network and FUSE
/// ones in a child the loop bounds, one after the other. A mount that failed or did
/// not answer in time comes back with `None` (and a log line).
pub fn measure<T: Mounted + 'static>(
    ctx: &Ctx,
    what: &'static str,
    mounts: Vec<T>,
) -> Result<Step<Measured<T>>, Error> {
    next(
        ctx,
        Measuring {
            what,
            left: mounts.into(),
            measured: Vec::new(),
            budget_end: Instant::now() + NETWORK_BUDGET,
        },
    )
}

fn next<T: Mounted + 'static>(ctx: &Ctx, mut m: Measuring<T>) -> Result<Step<Measured<T>>, Error> {
    let what = m.what;
    while let Some(mount) = m.left.pop_front() {
        let path = ctx.path(mount.mountpoint());
        if !measured_in_child(mount.fstype()) {
            let st = statvfs::statvfs(&path)
                .map_err(|e| log::debug(&format!("{what}: statvfs '{}': {e}", mount.mountpoint())))
                .ok();
            m.measured.push((mount, st));
            continue;
        }
        let left = m.budget_end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::debug(&format!(
                "{what}: no time left for '{}'",
                mount.mountpoint()
            ));
            m.measured.push((mount, None));
            continue;
        }
        let run = Run::Statvfs {
            path,
            timeout: left.min(NETWORK_TIMEOUT),
        };
        return Ok(Step::wait(run, move |ctx, _, result| {
            let st = match result.and_then(|done| {
                if done.timed_out() {
                    Ok(None)
                } else {
                    statvfs::decode_answer(&done.output).map(Some)
                }
            }) {
                Ok(Some(st)) => Some(st),
                Ok(None) => {
                    log::warn(&format!(
                        "{what}: {} '{}' did not answer statvfs in time, skipped",
                        mount.fstype(),
                        mount.mountpoint()
                    ));
                    None
                }
                Err(e) => {
                    log::debug(&format!("{what}: statvfs '{}': {e}", mount.mountpoint()));
                    None
                }
            };
            m.measured.push((mount, st));
            next(ctx, m)
        }));
    }
    Ok(Step::Done(m.measured))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
