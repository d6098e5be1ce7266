//! The VMAnalyzer commands (issue #5) against each distro's fixture tree, through the
//! handlers with `Ctx::with_root`.

mod common;

use common::{fixture, DISTROS};
use qga::commands::{cpu_info, tcp, NoArgs};
use qga::ctx::Ctx;

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
fn every_distro_fixture_answers_every_command() {
    for distro in DISTROS {
        let c = ctx(distro);
        tcp::get_tcp_snmp(&c, NoArgs {}).unwrap();
        tcp::get_tcp_conn_state(&c, NoArgs {}).unwrap();
        tcp::get_tcp_conn(&c, NoArgs {}).unwrap();
        cpu_info::get_cpustinfo(&c, NoArgs {}).unwrap();
    }
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
