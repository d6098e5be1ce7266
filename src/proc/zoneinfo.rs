//! /proc/zoneinfo (2.6.13+): each memory zone's watermarks and lowmem reserves, which
//! the kernel holds back from user space. MemAvailable's estimate on kernels without
//! it (before 3.14) subtracts them, as mm/page_alloc.c's si_mem_available does.
//! Falls back to /proc/sys/vm/min_free_kbytes where zoneinfo cannot be read.

use crate::ctx::Ctx;

/// One `Node N, zone NAME` block, in pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zone {
    pub free: u64,
    pub min: u64,
    pub low: u64,
    pub high: u64,
    pub present: u64,
    /// Since 3.8; `present` stands in before.
    pub managed: Option<u64>,
    /// lowmem_reserve[]: pages kept from allocations that could use a higher zone.
    pub protection: Vec<u64>,
}

/// Parses every zone block. Lines of other shapes (per-node and per-zone counters,
/// pagesets, whose `high:` carries a colon) are skipped.
pub fn parse_zoneinfo(text: &str) -> Vec<Zone> {
    let mut zones: Vec<Zone> = Vec::new();
    for line in text.lines() {
        if line.starts_with("Node ") {
            zones.push(Zone::default());
            continue;
        }
        let Some(zone) = zones.last_mut() else {
            continue;
        };
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        if key == "protection:" {
            zone.protection = line
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            continue;
        }
        let number = |v: &str| v.parse::<u64>().ok();
        match (key, value) {
            ("pages", "free") => zone.free = words.next().and_then(number).unwrap_or(0),
            ("min", v) => zone.min = number(v).unwrap_or(0),
            ("low", v) => zone.low = number(v).unwrap_or(0),
            ("high", v) => zone.high = number(v).unwrap_or(0),
            ("present", v) => zone.present = number(v).unwrap_or(0),
            ("managed", v) => zone.managed = number(v),
            _ => {}
        }
    }
    zones
}

/// What the kernel keeps from user space, in kB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserves {
    /// The sum of the zones' low watermarks.
    pub wmark_low: u64,
    /// totalreserve_pages: per zone its high watermark plus its largest lowmem
    /// reserve, at most the zone's managed pages (calculate_totalreserve_pages).
    pub total: u64,
}

impl Reserves {
    /// From the zones of /proc/zoneinfo; `page_kib` is the page size in KiB.
    pub fn from_zones(zones: &[Zone], page_kib: u64) -> Reserves {
        let wmark_low = zones.iter().map(|z| z.low).sum::<u64>();
        let total = zones
            .iter()
            .map(|z| {
                let reserve = z.protection.iter().copied().max().unwrap_or(0) + z.high;
                reserve.min(z.managed.unwrap_or(z.present))
            })
            .sum::<u64>();
        Reserves {
            wmark_low: wmark_low * page_kib,
            total: total * page_kib,
        }
    }

    /// From vm.min_free_kbytes alone, the sum of the min watermarks. Before 4.6 (every
    /// kernel without MemAvailable) low is 5/4 and high 3/2 of min; the lowmem
    /// reserves are unknown and left out. procps-ng estimates with the same low mark.
    pub fn from_min_free(min_free_kib: u64) -> Reserves {
        Reserves {
            wmark_low: min_free_kib * 5 / 4,
            total: min_free_kib * 3 / 2,
        }
    }
}

/// The kernel's default vm.min_free_kbytes (init_per_zone_wmark_min):
/// sqrt(16 × lowmem kB), from 128 to 65536.
pub fn default_min_free(total_kib: u64) -> u64 {
    (total_kib * 16).isqrt().clamp(128, 65536)
}

/// The reserves of the system below `ctx`: from /proc/zoneinfo, else from
/// /proc/sys/vm/min_free_kbytes, else from that sysctl's default for `total_kib`.
pub fn read_reserves(ctx: &Ctx, total_kib: u64) -> Reserves {
    let zones = ctx
        .read("proc/zoneinfo")
        .map(|t| parse_zoneinfo(&t))
        .unwrap_or_default();
    if !zones.is_empty() {
        return Reserves::from_zones(&zones, crate::sys::sysconf::page_size() / 1024);
    }
    let min_free = ctx
        .read("proc/sys/vm/min_free_kbytes")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| default_min_free(total_kib));
    Reserves::from_min_free(min_free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_blocks_and_reserves() {
        // A 2.6.32 layout (no `managed`), then a 6.x one; pagesets' "high:" is skipped.
        let text = "Node 0, zone      DMA\n  pages free     3936\n        min      8\n        \
                    low      10\n        high     12\n        scanned  0\n        spanned  4080\n        \
                    present  3920\n    nr_free_pages 3936\n        protection: (0, 2991, 3948, 3948)\n  \
                    pagesets\n    cpu: 0\n              count: 0\n              high:  0\n\
                    Node 0, zone    DMA32\n  pages free     772917\n        min      4938\n        \
                    low      6172\n        high     7406\n        present  782336\n        \
                    managed  772917\n        protection: (0, 0, 7296, 7296, 7296)\n";
        let zones = parse_zoneinfo(text);
        assert_eq!(zones.len(), 2);
        assert_eq!(
            zones[0],
            Zone {
                free: 3936,
                min: 8,
                low: 10,
                high: 12,
                present: 3920,
                managed: None,
                protection: vec![0, 2991, 3948, 3948],
            }
        );
        assert_eq!(zones[1].managed, Some(772917));
        let r = Reserves::from_zones(&zones, 4);
        // DMA: 3948 + 12 capped at 3920 present; DMA32: 7296 + 7406.
        assert_eq!(r.total, (3920 + 7296 + 7406) * 4);
        assert_eq!(r.wmark_low, (10 + 6172) * 4);
    }

    #[test]
    fn min_free_default_follows_the_kernel() {
        assert_eq!(default_min_free(1_048_576), 4096);
        assert_eq!(default_min_free(100), 128);
        assert_eq!(default_min_free(1 << 40), 65536);
        assert_eq!(
            Reserves::from_min_free(4096),
            Reserves {
                wmark_low: 5120,
                total: 6144
            }
        );
    }
}
