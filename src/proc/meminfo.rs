//! /proc/meminfo: the memory and swap totals every memory command reports, and
//! MemAvailable's estimate (with /proc/zoneinfo's reserves) on kernels without it.

use super::kv_number;
use super::zoneinfo::{self, Reserves};
use crate::ctx::Ctx;
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
    /// KReclaimable: since 4.20; SReclaimable plus other reclaimable kernel memory.
    pub kreclaimable: Option<u64>,
    /// Active(file) and Inactive(file): since 2.6.28; the page cache on the LRU lists.
    pub active_file: Option<u64>,
    pub inactive_file: Option<u64>,
    /// MemAvailable as [`MemInfo::estimate_available`] gives it, set by
    /// [`read_meminfo`] when the kernel has no MemAvailable.
    pub estimate: Option<u64>,
}

impl MemInfo {
    /// MemAvailable; else its estimate (see [`read_meminfo`]); else, for a text parsed
    /// without the reserves, MemFree + Buffers + Cached.
    pub fn available_or_estimate(&self) -> u64 {
        self.available
            .or(self.estimate)
            .unwrap_or(self.free + self.buffers + self.cached)
    }

    /// MemAvailable as the kernel computes it (mm/page_alloc.c si_mem_available, 4.6+):
    /// free memory above the reserves, plus the page cache and the reclaimable slab
    /// less what must stay (half of each, at most the low watermarks). Unlike
    /// MemFree + Buffers + Cached it leaves out Shmem (tmpfs, shared memory), which is
    /// in Cached but not on the file LRU lists and cannot be dropped.
    pub fn estimate_available(&self, r: &Reserves) -> u64 {
        // Before 2.6.28 there are no file LRU counts: Cached + Buffers less Shmem.
        let pagecache = match (self.active_file, self.inactive_file) {
            (Some(a), Some(i)) => a + i,
            _ => (self.cached + self.buffers).saturating_sub(self.shmem.unwrap_or(0)),
        };
        let reclaimable = self.kreclaimable.or(self.sreclaimable).unwrap_or(0);
        let kept = |v: u64| v - (v / 2).min(r.wmark_low);
        (self.free + kept(pagecache) + kept(reclaimable)).saturating_sub(r.total)
    }
}

/// Reads /proc/meminfo below the context's root; without MemAvailable (before 3.14)
/// its estimate is worked out from /proc/zoneinfo's reserves.
pub fn read_meminfo(ctx: &Ctx) -> Result<MemInfo, Error> {
    let mut m = parse_meminfo(&ctx.read("proc/meminfo")?)?;
    if m.available.is_none() {
        m.estimate = Some(m.estimate_available(&zoneinfo::read_reserves(ctx, m.total)));
    }
    Ok(m)
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
            "KReclaimable" => m.kreclaimable = Some(value),
            "Active(file)" => m.active_file = Some(value),
            "Inactive(file)" => m.inactive_file = Some(value),
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
    fn estimate_leaves_out_shmem_and_the_reserves() {
        let m = MemInfo {
            free: 1000,
            buffers: 100,
            cached: 5000,
            shmem: Some(3000),
            sreclaimable: Some(400),
            active_file: Some(1000),
            inactive_file: Some(1100),
            ..MemInfo::default()
        };
        let r = Reserves {
            wmark_low: 150,
            total: 200,
        };
        // 1000 - 200 + (2100 - 150) + (400 - 150)
        assert_eq!(m.estimate_available(&r), 3000);
        // Without file LRU counts (before 2.6.28): Cached + Buffers - Shmem.
        let old = MemInfo {
            active_file: None,
            inactive_file: None,
            ..m.clone()
        };
        assert_eq!(old.estimate_available(&r), 1000 - 200 + 1950 + 250);
        // Never below zero.
        let r = Reserves {
            wmark_low: 0,
            total: 1 << 40,
        };
        assert_eq!(m.estimate_available(&r), 0);
    }

    #[test]
    fn meminfo_without_memtotal_is_an_error() {
        assert!(parse_meminfo("MemFree: 10 kB\n").is_err());
        assert!(parse_meminfo("").is_err());
    }
}
