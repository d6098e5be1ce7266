//! guest-get-cpustinfo on each architecture's /proc/cpuinfo layout (issue 14 item 7),
//! real captures in tests/fixtures/cpuinfo (origins in its README).

mod common;

use common::{fixture, TempDir};
use qga::commands::cpu_info;
use qga::commands::NoArgs;
use qga::ctx::Ctx;

/// (tree, cpus, sockets, cores per socket, threads per core, vendor, model, flags)
type Row = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    Option<&'static str>,
    Option<&'static str>,
    &'static [&'static str],
);

#[test]
fn every_layout() {
    let table: [Row; 6] = [
        (
            "arm64-a510",
            8,
            3,
            2,
            1,
            Some("0x41"),
            None,
            &["fp", "asimd"],
        ),
        (
            "armv7-exynos5",
            2,
            1,
            2,
            1,
            Some("0x41"),
            Some("ARMv7 Processor rev 4 (v7l)"),
            &["swp", "half"],
        ),
        (
            "ppc64-power7",
            64,
            1,
            16,
            4,
            None,
            Some("POWER7 (architected), altivec supported"),
            &[],
        ),
        (
            "s390x-nested",
            2,
            2,
            1,
            1,
            Some("IBM/S390"),
            None,
            &["esan3", "zarch"],
        ),
        (
            "s390x-sles11sp2",
            3,
            1,
            3,
            1,
            Some("IBM/S390"),
            None,
            &["esan3", "zarch"],
        ),
        (
            "armv6-rpi",
            1,
            1,
            1,
            1,
            Some("0x41"),
            Some("ARMv6-compatible processor rev 7 (v6l)"),
            &["swp", "half"],
        ),
    ];
    for (tree, cpus, sockets, cores, threads, vendor, model, flags) in table {
        let ctx = Ctx::with_root(fixture(&format!("cpuinfo/{tree}")));
        let r = cpu_info::get_cpustinfo(&ctx, NoArgs {}).unwrap();
        assert_eq!(
            (
                r.cpu_count,
                r.sockets,
                r.cores_per_socket,
                r.threads_per_core
            ),
            (cpus, sockets, cores, threads),
            "{tree}"
        );
        assert_eq!(r.cpus.len(), cpus, "{tree}");
        assert_eq!(
            (r.vendor.as_deref(), r.model_name.as_deref()),
            (vendor, model),
            "{tree}"
        );
        assert!(
            r.flags
                .starts_with(&flags.iter().map(|f| f.to_string()).collect::<Vec<_>>()),
            "{tree}: {:?}",
            r.flags
        );
        assert!(!r.hypervisor, "{tree}");
    }
}

#[test]
fn count_from_sysfs_when_cpuinfo_has_no_blocks() {
    // The real armv6-rpi cpuinfo (no `processor :` line) under a made-up sysfs with
    // three CPUs, one of them offline: the online cpuN count, not 1.
    let root = TempDir::new("cpust-sysfs");
    common::copy_tree(&fixture("cpuinfo/armv6-rpi"), root.path());
    let cpu = root.join("sys/devices/system/cpu");
    for (n, online) in [(0, None), (1, Some("1\n")), (2, Some("0\n"))] {
        std::fs::create_dir_all(cpu.join(format!("cpu{n}"))).unwrap();
        if let Some(v) = online {
            std::fs::write(cpu.join(format!("cpu{n}/online")), v).unwrap();
        }
    }
    let r = cpu_info::get_cpustinfo(&Ctx::with_root(root.path()), NoArgs {}).unwrap();
    assert_eq!(r.cpu_count, 2);
    let ids: Vec<u32> = r.cpus.iter().map(|c| c.processor).collect();
    assert_eq!(ids, [0, 1]);
    assert_eq!(
        r.model_name.as_deref(),
        Some("ARMv6-compatible processor rev 7 (v6l)")
    );
}
