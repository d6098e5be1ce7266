//! Pure parsers of the kernel's /proc files, shared by every command domain. Each
//! submodule owns one file format; reading goes through `Ctx` in the caller (or in the
//! few `read_*` helpers here that take a `Ctx`), so tests can use fixture trees.

pub mod cpuinfo;
pub mod diskstats;
pub mod loadavg;
pub mod meminfo;
pub mod mounts;
pub mod net;
pub mod process;
pub mod stat;
pub mod tcp;
pub mod zoneinfo;

pub use loadavg::{parse_loadavg, LoadAvg};
pub use meminfo::{parse_meminfo, read_meminfo, MemInfo};
pub use mounts::{parse_mountinfo, parse_mounts, Mount, MountInfo};
pub use process::{read_processes, CpuSampler, ProcReader, Process, Usage};
pub use stat::{clock_ticks, parse_stat, CpuTimes, Stat};

use crate::ctx::Ctx;
use crate::error::Error;

/// Seconds since boot from /proc/uptime ("35.32 62.13": uptime, summed idle).
pub fn parse_uptime(text: &str) -> Result<f64, Error> {
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| Error::Failed("malformed /proc/uptime".into()))
}

/// Reads /proc/uptime below the context's root.
pub fn read_uptime(ctx: &Ctx) -> Result<f64, Error> {
    parse_uptime(&ctx.read("proc/uptime")?)
}

/// The filesystems guest-fsfreeze-*, guest-fstrim and guest-get-fsinfo act on
/// ([`mounts::fs_mounts_from_mountinfo`]), from /proc/self/mountinfo, or
/// /proc/self/mounts before 2.6.26; sources are stat'ed below the root.
pub fn read_fs_mounts(ctx: &Ctx) -> Result<Vec<MountInfo>, Error> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let stat = |dev: &str| match std::fs::metadata(ctx.path(dev)) {
        Ok(m) if m.is_dir() => mounts::Source::Dir,
        Ok(m) if m.file_type().is_block_device() => {
            mounts::Source::Block(libc::major(m.rdev()), libc::minor(m.rdev()))
        }
        _ => mounts::Source::Other,
    };
    if let Ok(text) = ctx.read("proc/self/mountinfo") {
        return Ok(mounts::fs_mounts_from_mountinfo(
            parse_mountinfo(&text),
            stat,
        ));
    }
    let text = ctx
        .read("proc/self/mounts")
        .map_err(|_| Error::Failed("failed to open mtab file: '/proc/self/mounts'".into()))?;
    Ok(mounts::fs_mounts_from_mtab(parse_mounts(&text), stat))
}

/// The value of a "Key:   1234 kB" line (meminfo, status) as a number, unit dropped.
pub(crate) fn kv_number(line: &str) -> Option<(&str, u64)> {
    let (key, rest) = line.split_once(':')?;
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((key.trim(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_takes_the_first_number() {
        assert_eq!(parse_uptime("350735.47 234388.90\n").unwrap(), 350735.47);
        assert!(parse_uptime("").is_err());
        assert!(parse_uptime("x y").is_err());
    }
}
