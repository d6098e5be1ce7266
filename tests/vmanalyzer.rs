//! The VMAnalyzer commands (issue #5) against each distro's fixture tree, through the
//! handlers with `Ctx::with_root`.

mod common;

use common::{fixture, DISTROS};
use qga::commands::{cpu_info, disk_io, sysload, tcp, topn, NoArgs};
use qga::ctx::{Ctx, Session};
use qga::protocol::args::parse_args;
use serde_json::json;

fn ctx(distro: &str) -> Ctx {
    Ctx::with_root(fixture(distro))
}

#[test]
fn tcp_snmp_has_every_counter_of_the_kernel() {
    // (distro, counters, retranssegs, outsegs): InCsumErrors arrived in 3.10.
    let table = [
        ("centos6", 14, 1873, 1522307),
        ("centos7", 15, 5120, 3389120),
        ("ubuntu1204", 14, 88, 321744),
        ("ubuntu1404", 15, 402, 798410),
        ("modern", 15, 20431, 91002217),
    ];
    for (distro, n, retrans, out) in table {
        let m = tcp::get_tcp_snmp(&ctx(distro), NoArgs {}).unwrap();
        assert_eq!(m.len(), n, "{distro}");
        assert_eq!(m["retranssegs"], retrans, "{distro}");
        assert_eq!(m["outsegs"], out, "{distro}");
        assert_eq!(m["maxconn"], -1, "{distro}");
        assert_eq!(m.contains_key("incsumerrors"), n == 15, "{distro}");
    }
}

#[test]
fn tcp_conn_state_counts_both_tables() {
    // (distro, established, listen, time-wait, total)
    let table = [
        ("centos6", 1, 3, 1, 6),
        ("centos7", 2, 4, 0, 7),
        ("ubuntu1204", 1, 2, 0, 4),
        ("ubuntu1404", 1, 4, 0, 6),
        ("modern", 3, 3, 2, 8),
    ];
    for (distro, est, listen, tw, total) in table {
        let s = tcp::get_tcp_conn_state(&ctx(distro), NoArgs {}).unwrap();
        assert_eq!(
            (s.established, s.listen, s.time_wait, s.total),
            (est, listen, tw, total),
            "{distro}"
        );
    }
    let c6 = tcp::get_tcp_conn_state(&ctx("centos6"), NoArgs {}).unwrap();
    assert_eq!(c6.close_wait, 1);
    let c7 = tcp::get_tcp_conn_state(&ctx("centos7"), NoArgs {}).unwrap();
    assert_eq!(c7.syn_sent, 1);
}

#[test]
fn tcp_conn_without_tcp6_lists_ipv4_only() {
    assert!(!fixture("centos6").join("proc/net/tcp6").exists());
    let l = tcp::get_tcp_conn(&ctx("centos6"), NoArgs {}).unwrap();
    assert_eq!((l.total, l.truncated), (6, false));
    assert!(l.connections.iter().all(|c| c.family == "ipv4"));
    let ssh = &l.connections[3];
    assert_eq!(
        (
            ssh.local_address.as_str(),
            ssh.local_port,
            ssh.remote_address.as_str(),
            ssh.remote_port
        ),
        ("10.0.2.15", 22, "10.0.2.2", 49574)
    );
    assert_eq!((ssh.state, ssh.uid, ssh.inode), ("established", 0, 14235));
    let mysql = &l.connections[5];
    assert_eq!((mysql.state, mysql.uid), ("close-wait", 500));
}

#[test]
fn tcp_conn_decodes_ipv6_and_v4_mapped_addresses() {
    let l = tcp::get_tcp_conn(&ctx("modern"), NoArgs {}).unwrap();
    let v6: Vec<_> = l
        .connections
        .iter()
        .filter(|c| c.family == "ipv6")
        .collect();
    assert_eq!(v6.len(), 3);
    assert_eq!(
        (v6[0].local_address.as_str(), v6[0].state),
        ("::", "listen")
    );
    assert_eq!(
        (
            v6[1].local_address.as_str(),
            v6[1].remote_address.as_str(),
            v6[1].remote_port
        ),
        ("2001:db8::50", "2001:db8::1", 53124)
    );
    assert_eq!(v6[2].local_address, "::ffff:192.168.122.50");
    assert_eq!(v6[2].local_port, 8080);
    assert_eq!(l.connections[0].local_address, "127.0.0.53");
}

#[test]
fn cpustinfo_topology_per_distro() {
    // (distro, cpus, sockets, cores/socket, threads/core, model)
    let table = [
        (
            "centos6",
            2,
            2,
            1,
            1,
            "QEMU Virtual CPU version (cpu64-rhel6)",
        ),
        (
            "centos7",
            4,
            1,
            4,
            1,
            "Intel Core Processor (Haswell, no TSX)",
        ),
        ("ubuntu1204", 1, 1, 1, 1, "QEMU Virtual CPU version 1.0"),
        ("ubuntu1404", 2, 1, 2, 1, "Intel Xeon E312xx (Sandy Bridge)"),
        ("modern", 4, 1, 2, 2, "Intel(R) Xeon(R) Platinum 8480+"),
    ];
    for (distro, n, sockets, cores, threads, model) in table {
        let c = cpu_info::get_cpustinfo(&ctx(distro), NoArgs {}).unwrap();
        assert_eq!(
            (
                c.cpu_count,
                c.sockets,
                c.cores_per_socket,
                c.threads_per_core
            ),
            (n, sockets, cores, threads),
            "{distro}"
        );
        assert_eq!(c.model_name.as_deref(), Some(model), "{distro}");
        assert!(c.hypervisor, "{distro}");
        assert_eq!(c.vendor.as_deref(), Some("GenuineIntel"));
        assert!(c.flags.iter().any(|f| f == "sse2"), "{distro}");
        assert!(c.cpu_mhz.is_some() && c.cache_size.is_some(), "{distro}");
    }
    let c = cpu_info::get_cpustinfo(&ctx("centos7"), NoArgs {}).unwrap();
    assert_eq!(c.cpu_mhz.as_deref(), Some("2194.916"));
    assert_eq!(c.cache_size.as_deref(), Some("16384 KB"));
}

#[test]
fn diskstats_field_count_per_kernel() {
    // (distro, lines, has discard (4.18+), has flush (5.5+))
    let table = [
        ("centos6", 32, false, false),
        ("centos7", 5, false, false),
        ("ubuntu1204", 31, false, false),
        ("ubuntu1404", 12, false, false),
        ("modern", 11, true, true),
    ];
    for (distro, n, discard, flush) in table {
        let text = std::fs::read_to_string(fixture(distro).join("proc/diskstats")).unwrap();
        let d = qga::proc::diskstats::parse_diskstats(&text);
        assert_eq!(d.len(), n, "{distro}");
        assert!(d.iter().all(|s| s.discard.is_some() == discard), "{distro}");
        assert!(d.iter().all(|s| s.flush.is_some() == flush), "{distro}");
    }
}

#[test]
fn diskstats_lists_the_devices_behind_mounts() {
    // (distro, [(kernel name, source as mounted, mount points)])
    type Devices = &'static [(&'static str, &'static str, &'static [&'static str])];
    let table: [(&str, Devices); 5] = [
        (
            "centos6",
            &[
                ("vda1", "/dev/vda1", &["/boot"]),
                ("vdb1", "/dev/vdb1", &["/data"]),
                // A device-mapper node, found through /sys/block/dm-0/dm/name.
                ("dm-0", "/dev/mapper/VolGroup-lv_root", &["/"]),
            ],
        ),
        (
            "centos7",
            &[
                ("vda1", "/dev/vda1", &["/"]),
                ("vdb", "/dev/vdb", &["/var/lib/mysql", "/srv/mysql-bind"]),
            ],
        ),
        (
            "ubuntu1204",
            &[
                // Ubuntu 12.04's initramfs mounts / by its udev by-uuid link.
                (
                    "vda1",
                    "/dev/disk/by-uuid/6c2d2a1f-3c5e-4b62-a1d2-3f4e5d6c7b8a",
                    &["/"],
                ),
                ("vdb1", "/dev/vdb1", &["/mnt/backup disk"]),
            ],
        ),
        (
            "ubuntu1404",
            &[
                ("vda1", "/dev/vda1", &["/"]),
                ("vdb", "/dev/vdb", &["/data"]),
            ],
        ),
        (
            "modern",
            &[
                ("loop0", "/dev/loop0", &["/snap/core/16928"]),
                ("vda1", "/dev/vda1", &["/"]),
                ("vda15", "/dev/vda15", &["/boot/efi"]),
                ("vdb1", "/dev/vdb1", &["/srv/data"]),
            ],
        ),
    ];
    for (distro, expected) in table {
        let got = disk_io::get_diskstats(&ctx(distro), NoArgs {}).unwrap();
        let got: Vec<_> = got
            .iter()
            .map(|d| (d.name.as_str(), d.device.as_str(), d.mount_points.clone()))
            .collect();
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, d, m)| (*n, *d, m.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
            .collect();
        assert_eq!(got, expected, "{distro}");
    }
}

#[test]
fn diskstats_counters_per_kernel_format() {
    let c6 = disk_io::get_diskstats(&ctx("centos6"), NoArgs {}).unwrap();
    let root = c6.iter().find(|d| d.name == "dm-0").unwrap();
    assert_eq!(
        (root.major, root.minor, root.fstype.as_str()),
        (253, 0, "ext4")
    );
    assert_eq!(
        (root.read_sectors, root.write_sectors, root.io_ticks),
        (1071402, 968032, 87310)
    );
    assert_eq!((root.discard_ios, root.flush_ios), (None, None));
    let v = serde_json::to_value(root).unwrap();
    assert!(v.get("discard-ios").is_none() && v.get("flush-ios").is_none());
    let modern = disk_io::get_diskstats(&ctx("modern"), NoArgs {}).unwrap();
    let vdb1 = modern.iter().find(|d| d.name == "vdb1").unwrap();
    assert_eq!(
        (vdb1.discard_sectors, vdb1.flush_ios),
        (Some(2097152), Some(0))
    );
    assert_eq!(vdb1.fstype, "btrfs");
}

#[test]
fn load_average_strings_as_printed() {
    let table = [
        ("centos6", ["0.00", "0.01", "0.05"]),
        ("centos7", ["0.08", "0.03", "0.05"]),
        ("ubuntu1204", ["0.15", "0.10", "0.13"]),
        ("ubuntu1404", ["1.02", "0.77", "0.61"]),
        ("modern", ["0.52", "0.58", "0.59"]),
    ];
    for (distro, [one, five, fifteen]) in table {
        let l = sysload::get_load_average(&ctx(distro), NoArgs {}).unwrap();
        assert_eq!(
            [l.load1_average, l.load5_average, l.load15_average],
            [one, five, fifteen],
            "{distro}"
        );
    }
}

#[test]
fn lastboot_is_btime_in_the_fixture_zone() {
    // The fixture's /etc/localtime decides; a TZ in the test environment must not.
    std::env::remove_var("TZ");
    let table = [
        ("centos6", "2023-11-15 06:13:20"),
        ("centos7", "2023-11-11 04:47:45"),
        ("ubuntu1204", "2023-11-15 22:40:00"),
        ("ubuntu1404", "2023-11-15 19:00:00"),
        ("modern", "2023-11-07 23:13:20"),
    ];
    for (distro, when) in table {
        let b = sysload::get_lastboot_time(&ctx(distro), NoArgs {}).unwrap();
        assert_eq!(b.lastboot, when, "{distro}");
    }
}

#[test]
fn cpu_utilization_first_call_covers_the_time_since_boot() {
    let table = [
        ("centos6", "1.00", "98.98"),
        ("centos7", "2.14", "97.85"),
        ("ubuntu1204", "1.97", "97.93"),
        ("ubuntu1404", "2.47", "97.40"),
        ("modern", "3.37", "96.58"),
    ];
    for (distro, busy, idle) in table {
        let c = ctx(distro);
        let mut s = Session::default();
        let u = sysload::get_cpu_utilization(&c, &mut s, NoArgs {}).unwrap();
        assert_eq!(
            (u.cpu_util.as_str(), u.idle.as_str()),
            (busy, idle),
            "{distro}"
        );
        // Same /proc/stat again: no tick passed, so the since-boot figures stand.
        let again = sysload::get_cpu_utilization(&c, &mut s, NoArgs {}).unwrap();
        assert_eq!(again, u, "{distro}");
    }
}

#[test]
fn cpu_utilization_interval_is_its_own() {
    let dir = common::TempDir::new("cpu-util");
    let stat = |user: u64, idle: u64| {
        let text = format!("cpu  {user} 0 100 {idle} 0 0 0 0 0 0\ncpu0 {user} 0 100 {idle} 0 0 0 0 0 0\nbtime 1700000000\n");
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        std::fs::write(dir.join("proc/stat"), text).unwrap();
    };
    stat(100, 800);
    let c = Ctx::with_root(dir.path());
    let mut s = Session::default();
    sysload::get_cpu_utilization(&c, &mut s, NoArgs {}).unwrap();
    // Another command sampling the CPU in between must not shorten this interval.
    s.cpu_sampler.cpu_delta(qga::proc::CpuTimes::default());
    stat(400, 900);
    let u = sysload::get_cpu_utilization(&c, &mut s, NoArgs {}).unwrap();
    assert_eq!(
        (u.cpu_util.as_str(), u.user.as_str(), u.idle.as_str()),
        ("75.00", "75.00", "25.00")
    );
}

#[test]
fn topn_on_every_distro_is_never_empty_and_all_strings() {
    // (distro, top pid by CPU since start, top pid by memory)
    let table = [
        ("centos6", "3055", "3055"),
        ("centos7", "2301", "1102"),
        ("ubuntu1204", "1102", "1102"),
        ("ubuntu1404", "1102", "1102"),
        ("modern", "2301", "1102"),
    ];
    for (distro, cpu_first, mem_first) in table {
        let c = ctx(distro);
        let mut s = Session::default();
        let cpu = topn::get_cputopn_status(&c, &mut s, parse_args(json!({})).unwrap()).unwrap();
        assert_eq!(cpu.len(), 5, "{distro}");
        assert_eq!(cpu[0].process_id, cpu_first, "{distro}");
        let mem =
            topn::get_memtopn_status(&c, &mut s, parse_args(json!({"memtopn-num": "3"})).unwrap())
                .unwrap();
        assert_eq!(mem.len(), 3, "{distro}");
        assert_eq!(mem[0].process_id, mem_first, "{distro}");
        for p in cpu.iter().chain(&mem) {
            let v = serde_json::to_value(p).unwrap();
            for (k, x) in v["process-info"].as_object().unwrap() {
                assert!(x.is_string(), "{distro} {k}: {x}");
            }
        }
    }
    let c = ctx("centos6");
    let mut s = Session::default();
    let java =
        &topn::get_cputopn_status(&c, &mut s, parse_args(json!({"cputopn-num": 1})).unwrap())
            .unwrap()[0];
    assert_eq!(java.process_info.user, "bcadmin");
    assert_eq!(java.process_info.open_files, "120");
    assert_eq!(java.process_info.cmd_name, "java -Xmx2g -jar app.jar");
}

#[test]
fn every_distro_fixture_answers_every_command() {
    for distro in DISTROS {
        let c = ctx(distro);
        let mut s = Session::default();
        tcp::get_tcp_snmp(&c, NoArgs {}).unwrap();
        tcp::get_tcp_conn_state(&c, NoArgs {}).unwrap();
        tcp::get_tcp_conn(&c, NoArgs {}).unwrap();
        cpu_info::get_cpustinfo(&c, NoArgs {}).unwrap();
        disk_io::get_diskstats(&c, NoArgs {}).unwrap();
        sysload::get_load_average(&c, NoArgs {}).unwrap();
        sysload::get_lastboot_time(&c, NoArgs {}).unwrap();
        sysload::get_cpu_utilization(&c, &mut s, NoArgs {}).unwrap();
    }
}
