//! /proc/meminfo: the memory and swap totals every memory command reports.

use super::kv_number;
use crate::error::Error;

/// The /proc/meminfo fields the agent uses, in kB (the kernel's "kB" is KiB).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub buffers: u64,
    pub cached: u64,
    pub swap_total: u64,
    pub swap_free: u64,
    pub swap_cached: u64,
    /// MemAvailable: absent before 3.14 (CentOS 6, Ubuntu 12.04, Ubuntu 14.04's 3.13).
    pub available: Option<u64>,
    /// Shmem: since 2.6.32; tmpfs and shared memory, already counted in Cached.
    pub shmem: Option<u64>,
    /// SReclaimable: since 2.6.19; procps-ng >= 3.3.10 counts it in "buff/cache".
    pub sreclaimable: Option<u64>,
}

impl MemInfo {
    /// MemAvailable, or on kernels without it what `free` showed as free on its
    /// "-/+ buffers/cache" line: MemFree + Buffers + Cached.
    pub fn available_or_estimate(&self) -> u64 {
        self.available
            .unwrap_or(self.free + self.buffers + self.cached)
    }
}

/// Parses /proc/meminfo. MemTotal and MemFree are required; every other field may be
/// missing (an old or stripped-down kernel) and then reads as 0 / `None`.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, Error> {
    let mut m = MemInfo::default();
    let (mut have_total, mut have_free) = (false, false);
    for (key, value) in text.lines().filter_map(kv_number) {
        match key {
            "MemTotal" => {
                m.total = value;
                have_total = true;
            }
            "MemFree" => {
                m.free = value;
                have_free = true;
            }
            "MemAvailable" => m.available = Some(value),
            "Buffers" => m.buffers = value,
            "Cached" => m.cached = value,
            "SwapCached" => m.swap_cached = value,
            "SwapTotal" => m.swap_total = value,
            "SwapFree" => m.swap_free = value,
            "Shmem" => m.shmem = Some(value),
            "SReclaimable" => m.sreclaimable = Some(value),
            _ => {}
        }
    }
    if !(have_total && have_free) {
        return Err(Error::Failed(
            "malformed /proc/meminfo: no MemTotal or MemFree".into(),
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_without_memavailable() {
        let m = parse_meminfo(
            "MemTotal:        1922380 kB\nMemFree:          102400 kB\nBuffers:           20480 kB\n\
             Cached:           512000 kB\nSwapCached:            0 kB\nSwapTotal:       2097148 kB\n\
             SwapFree:        2097148 kB\n",
        )
        .unwrap();
        assert_eq!(m.available, None);
        assert_eq!(m.available_or_estimate(), 102400 + 20480 + 512000);
        assert_eq!(m.swap_total, 2097148);
    }

    #[test]
    fn meminfo_with_memavailable_prefers_it() {
        let m = parse_meminfo("MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 60 kB\n").unwrap();
        assert_eq!(m.available_or_estimate(), 60);
        assert_eq!(m.buffers, 0);
    }

    #[test]
    fn meminfo_without_memtotal_is_an_error() {
        assert!(parse_meminfo("MemFree: 10 kB\n").is_err());
        assert!(parse_meminfo("").is_err());
    }
}
