//! MemAvailable's estimate on kernels without it (issue 14 item 4), checked against
//! real meminfo (+ zoneinfo) files that carry the kernel's own figure, with that line
//! removed (tests/fixtures/memavailable, origins in its README).

mod common;

use common::{copy_tree, fixture, TempDir};
use qga::ctx::Ctx;
use qga::proc;

/// Every pair: the estimate within 3 % of the kernel's MemAvailable, and closer to it
/// than the MemFree + Buffers + Cached we reported before.
#[test]
fn estimate_matches_the_kernel_on_real_files() {
    let pairs = [
        "live-idle",
        "live-shmem3g",
        "live-anon6g",
        "live-shm-freed",
        "rhel8-sosreport",
        "debian11",
        "gopsutil-intelcorei5",
        "gopsutil-issue1002",
    ];
    for pair in pairs {
        let src = fixture(&format!("memavailable/{pair}"));
        let root = TempDir::new("memavail");
        copy_tree(&src, root.path());
        let text = std::fs::read_to_string(src.join("proc/meminfo")).unwrap();
        let kernel = proc::parse_meminfo(&text).unwrap().available.unwrap();
        let without: String = text
            .lines()
            .filter(|l| !l.starts_with("MemAvailable:"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(root.join("proc/meminfo"), without).unwrap();
        let m = proc::read_meminfo(&Ctx::with_root(root.path())).unwrap();
        assert_eq!(m.available, None, "{pair}");
        let estimate = m.available_or_estimate();
        let old = m.free + m.buffers + m.cached;
        let off = |v: u64| (v as f64 - kernel as f64) / kernel as f64 * 100.0;
        eprintln!(
            "{pair:22} kernel {kernel:>9} estimate {estimate:>9} ({:+.2} %) old {old:>9} ({:+.2} %)",
            off(estimate),
            off(old)
        );
        assert!(off(estimate).abs() < 3.0, "{pair}: {estimate} vs {kernel}");
        assert!(
            estimate.abs_diff(kernel) < old.abs_diff(kernel),
            "{pair}: estimate {estimate}, old {old}, kernel {kernel}"
        );
    }
}

/// With zoneinfo captured at the same moment, the estimate is the kernel's formula.
#[test]
fn estimate_is_exact_with_zoneinfo_of_the_same_moment() {
    for pair in ["live-shmem3g", "debian11"] {
        let dir = fixture(&format!("memavailable/{pair}"));
        let text = std::fs::read_to_string(dir.join("proc/meminfo")).unwrap();
        let m = proc::parse_meminfo(&text).unwrap();
        let zones = proc::zoneinfo::parse_zoneinfo(
            &std::fs::read_to_string(dir.join("proc/zoneinfo")).unwrap(),
        );
        let r = proc::zoneinfo::Reserves::from_zones(&zones, 4);
        assert!(
            m.estimate_available(&r).abs_diff(m.available.unwrap()) <= 4,
            "{pair}"
        );
    }
}

/// A real 3.2 pair (Ubuntu 12.04): zones without `managed`, the layout the estimate
/// is for; the reply carries the estimate, not MemFree + Buffers + Cached.
#[test]
fn estimate_on_a_3_2_kernel_reads_its_zoneinfo() {
    let dir = fixture("memavailable/ubuntu1204-3.2");
    let zones = proc::zoneinfo::parse_zoneinfo(
        &std::fs::read_to_string(dir.join("proc/zoneinfo")).unwrap(),
    );
    assert_eq!(zones.len(), 3);
    assert!(zones.iter().all(|z| z.managed.is_none()));
    assert_eq!(zones[0].protection, [0, 3237, 7994, 7994]);
    let r = proc::zoneinfo::Reserves::from_zones(&zones, 4);
    // DMA: 7994 + 48 capped at 3900 present; DMA32: 4756 + 10243; Normal: 15049.
    assert_eq!(r.total, (3900 + 4756 + 10243 + 15049) * 4);
    assert_eq!(r.wmark_low, (40 + 8536 + 12541) * 4);
    let m = proc::read_meminfo(&Ctx::with_root(&dir)).unwrap();
    assert_eq!(m.available, None);
    // 5740368 - 135792 + (1833856 - 84468) + (219532 - 84468)
    assert_eq!(m.available_or_estimate(), 7_489_028);
    assert_eq!(m.free + m.buffers + m.cached, 7_575_532);
    let status = qga::commands::bc_monitor::get_memory_status(
        &Ctx::with_root(&dir),
        qga::commands::NoArgs {},
    )
    .unwrap();
    assert_eq!(status.available, 7_489_028 / 1024);
}
