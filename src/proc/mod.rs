//! Pure parsers of the kernel's /proc files, shared by every command domain. Each
//! submodule owns one file format; reading goes through `Ctx` in the caller (or in the
//! few `read_*` helpers here that take a `Ctx`), so tests can use fixture trees.

pub mod cpuinfo;
pub mod diskstats;
pub mod loadavg;
pub mod meminfo;
pub mod mountinfo;
pub mod mounts;
pub mod net;
pub mod process;
pub mod stat;
pub mod tcp;

pub use loadavg::{parse_loadavg, LoadAvg};
pub use meminfo::{parse_meminfo, MemInfo};
pub use mounts::{parse_mounts, Mount};
pub use process::{read_processes, CpuSampler, Process};
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
