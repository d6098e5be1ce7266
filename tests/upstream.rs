//! Upstream parity I (issue #4): CPUs, memory blocks, counters and routes on every
//! distribution's fixture tree, the commands that change them against a temporary copy,
//! interfaces and host name end to end.

mod common;

use std::path::Path;

use common::{copy_tree, fixture, Agent, TempDir, DISTROS};
use qga::commands::cpu::{self, LogicalProcessor};
use qga::commands::memory::{self, BlockResponseType, MemoryBlock};
use qga::commands::net;
use qga::commands::NoArgs;
use qga::ctx::Ctx;
use serde_json::{json, Value};

/// A copy of a fixture tree that tests may write to.
fn writable_fixture(distro: &str) -> TempDir {
    let dir = TempDir::new(&format!("root-{distro}"));
    copy_tree(&fixture(distro), dir.path());
    dir
}

fn cpu(id: i64, online: bool, can_offline: bool) -> LogicalProcessor {
    LogicalProcessor {
        logical_id: id,
        online,
        can_offline: Some(can_offline),
    }
}

fn block(index: u64, online: bool, can_offline: bool) -> MemoryBlock {
    MemoryBlock {
        phys_index: index,
        online,
        can_offline: Some(can_offline),
    }
}

#[test]
fn vcpus_on_every_distro() {
    for distro in DISTROS {
        let expected = match distro {
            "centos6" => vec![cpu(0, true, false), cpu(1, true, true)],
            "centos7" => vec![
                cpu(0, true, false),
                cpu(1, true, true),
                cpu(2, true, true),
                cpu(3, true, true),
            ],
            "ubuntu1204" => vec![cpu(0, true, false)],
            "ubuntu1404" => vec![cpu(0, true, false), cpu(1, true, true)],
            "modern" => vec![
                cpu(0, true, false),
                cpu(1, true, true),
                cpu(2, true, true),
                cpu(3, true, true),
            ],
            _ => unreachable!(),
        };
        let ctx = Ctx::with_root(fixture(distro));
        assert_eq!(
            cpu::get_vcpus(&ctx, NoArgs {}).unwrap(),
            expected,
            "{distro}"
        );
    }
}

#[test]
fn memory_blocks_on_every_distro() {
    for distro in DISTROS {
        let expected = match distro {
            "centos6" => vec![
                block(0, true, false),
                block(1, true, true),
                block(2, true, true),
                block(3, true, true),
                block(4, false, true),
            ],
            "centos7" => vec![
                block(0, true, false),
                block(1, true, true),
                block(2, true, true),
                block(3, true, true),
                block(32, true, true),
                block(33, true, true),
            ],
            "ubuntu1204" => (0..4).map(|i| block(i, true, i != 0)).collect(),
            "ubuntu1404" => (0..8).map(|i| block(i, true, i != 0)).collect(),
            "modern" => vec![
                block(0, true, true),
                block(1, true, true),
                block(2, true, true),
                block(3, true, true),
                block(32, true, true),
                block(33, false, true),
            ],
            _ => unreachable!(),
        };
        let ctx = Ctx::with_root(fixture(distro));
        assert_eq!(
            memory::get_memory_blocks(&ctx, NoArgs {}).unwrap(),
            expected,
            "{distro}"
        );
        let info = memory::get_memory_block_info(&ctx, NoArgs {}).unwrap();
        assert_eq!(info.size, 128 << 20, "{distro}");
    }
}

#[test]
fn net_dev_counters_on_every_distro() {
    for distro in DISTROS {
        let text = std::fs::read_to_string(fixture(distro).join("proc/net/dev")).unwrap();
        let stats = qga::proc::net::parse_net_dev(&text);
        assert!(stats.contains_key("lo"), "{distro}");
        let nic = if distro == "modern" { "ens3" } else { "eth0" };
        let s = &stats[nic];
        assert!(
            s.rx_bytes > 0 && s.tx_bytes > 0 && s.rx_packets > 0,
            "{distro}"
        );
    }
    // 2.6.32 glues a wide counter to the colon.
    let text = std::fs::read_to_string(fixture("centos6").join("proc/net/dev")).unwrap();
    let eth0 = &qga::proc::net::parse_net_dev(&text)["eth0"];
    assert_eq!(
        (eth0.rx_bytes, eth0.rx_packets, eth0.rx_dropped),
        (1_234_567_890, 2_113_442, 3)
    );
}

#[test]
fn routes_on_every_distro() {
    for distro in DISTROS {
        let ctx = Ctx::with_root(fixture(distro));
        let routes = net::get_route(&ctx, NoArgs {}).unwrap();
        let value = serde_json::to_value(&routes).unwrap();
        let v4: Vec<&Value> = value
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["version"] == 4)
            .collect();
        let v6_count = routes.len() - v4.len();
        let (want_v4, want_v6, gateway) = match distro {
            "centos6" => (3, 5, "192.168.122.1"),
            "centos7" => (2, 5, "10.0.1.1"),
            // Booted with ipv6.disable=1: no /proc/net/ipv6_route at all.
            "ubuntu1204" => (2, 0, "192.168.0.1"),
            "ubuntu1404" => (2, 6, "192.168.1.254"),
            "modern" => (3, 7, "192.0.2.1"),
            _ => unreachable!(),
        };
        assert_eq!((v4.len(), v6_count), (want_v4, want_v6), "{distro}");
        let default = v4.iter().find(|r| r["destination"] == "0.0.0.0").unwrap();
        assert_eq!(default["gateway"], gateway, "{distro}");
        assert_eq!(default["mask"], "0.0.0.0", "{distro}");
        assert_eq!(default["flags"], 3, "{distro}");
    }
}

#[test]
fn route_fields_match_the_schema_per_version() {
    let ctx = Ctx::with_root(fixture("modern"));
    let routes = serde_json::to_value(net::get_route(&ctx, NoArgs {}).unwrap()).unwrap();
    let routes = routes.as_array().unwrap();
    let keys = |r: &Value| {
        let mut k: Vec<String> = r.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&routes[0]),
        [
            "destination",
            "flags",
            "gateway",
            "iface",
            "irtt",
            "mask",
            "metric",
            "mtu",
            "refcnt",
            "use",
            "version",
            "window"
        ]
    );
    assert_eq!(
        routes[1],
        json!({"iface": "ens3", "destination": "192.0.2.0", "gateway": "0.0.0.0",
               "mask": "255.255.255.0", "metric": 100, "flags": 1, "refcnt": 0,
               "use": 0, "irtt": 0, "window": 0, "mtu": 0, "version": 4})
    );
    let default6 = routes
        .iter()
        .find(|r| r["version"] == 6 && r["nexthop"] == "fd00::1")
        .unwrap();
    assert_eq!(
        default6,
        &json!({"iface": "ens3", "destination": "::", "desprefixlen": "0",
                "source": "::", "srcprefixlen": "0", "nexthop": "fd00::1",
                "metric": 1024, "flags": 3, "refcnt": 2, "use": 0, "version": 6})
    );
    // The unreachable catch-all: metric 0xffffffff reads as a C int, as in qemu-ga.
    let last = routes.last().unwrap();
    assert_eq!(
        (last["iface"].as_str(), last["metric"].as_i64()),
        (Some("lo"), Some(-1))
    );
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap()
}

#[test]
fn set_vcpus_writes_only_changed_cpus() {
    let root = writable_fixture("centos7");
    std::fs::write(
        root.path().join("sys/devices/system/cpu/cpu3/online"),
        "0\n",
    )
    .unwrap();
    let ctx = Ctx::with_root(root.path());
    assert_eq!(
        cpu::get_vcpus(&ctx, NoArgs {}).unwrap()[3],
        cpu(3, false, true)
    );
    let args = serde_json::from_value(json!({"vcpus": [
        {"logical-id": 1, "online": false},
        {"logical-id": 2, "online": true},
        {"logical-id": 3, "online": true, "can-offline": true},
        {"logical-id": 0, "online": true}
    ]}))
    .unwrap();
    assert_eq!(cpu::set_vcpus(&ctx, args).unwrap(), 4);
    let cpu_dir = root.path().join("sys/devices/system/cpu");
    assert_eq!(read(&cpu_dir, "cpu1/online"), "0");
    assert_eq!(
        read(&cpu_dir, "cpu2/online"),
        "1\n",
        "unchanged: not rewritten"
    );
    assert_eq!(read(&cpu_dir, "cpu3/online"), "1");
    assert!(!cpu_dir.join("cpu0/online").exists(), "never created");
}

#[test]
fn set_vcpus_counts_the_prefix_before_a_failure() {
    let root = writable_fixture("centos7");
    let ctx = Ctx::with_root(root.path());
    let args = serde_json::from_value(json!({"vcpus": [
        {"logical-id": 3, "online": true},
        {"logical-id": 0, "online": false},
        {"logical-id": 1, "online": false}
    ]}))
    .unwrap();
    assert_eq!(cpu::set_vcpus(&ctx, args).unwrap(), 1);
    let cpu_dir = root.path().join("sys/devices/system/cpu");
    assert_eq!(
        read(&cpu_dir, "cpu1/online"),
        "1\n",
        "after the failure: untouched"
    );
}

#[test]
fn set_vcpus_first_failure_is_the_error() {
    let root = writable_fixture("centos6");
    let ctx = Ctx::with_root(root.path());
    let offline_cpu0 = serde_json::from_value(json!({"vcpus": [
        {"logical-id": 0, "online": false}, {"logical-id": 1, "online": false}]}))
    .unwrap();
    assert_eq!(
        cpu::set_vcpus(&ctx, offline_cpu0).unwrap_err().to_string(),
        "logical processor #0 can't be offlined"
    );
    let missing =
        serde_json::from_value(json!({"vcpus": [{"logical-id": 99, "online": true}]})).unwrap();
    assert_eq!(
        cpu::set_vcpus(&ctx, missing).unwrap_err().to_string(),
        "open(\"/sys/devices/system/cpu/cpu99/\"): No such file or directory"
    );
    let none = serde_json::from_value(json!({"vcpus": []})).unwrap();
    assert_eq!(cpu::set_vcpus(&ctx, none).unwrap(), 0);
}

fn response(r: &memory::MemoryBlockResponse) -> (u64, BlockResponseType, Option<i32>) {
    (r.phys_index, r.response, r.error_code)
}

#[test]
fn set_memory_blocks_answers_per_block() {
    use BlockResponseType::*;
    let root = writable_fixture("centos6");
    let ctx = Ctx::with_root(root.path());
    let args = serde_json::from_value(json!({"mem-blks": [
        {"phys-index": 4, "online": true},
        {"phys-index": 3, "online": false, "can-offline": true},
        {"phys-index": 1, "online": true},
        {"phys-index": 99, "online": true}
    ]}))
    .unwrap();
    let r = memory::set_memory_blocks(&ctx, args).unwrap();
    let r: Vec<_> = r.iter().map(response).collect();
    assert_eq!(
        r,
        [
            (4, Success, None),
            (3, Success, None),
            (1, Success, None),
            (99, NotFound, Some(libc::ENOENT)),
        ]
    );
    let mem = root.path().join("sys/devices/system/memory");
    assert_eq!(read(&mem, "memory4/state"), "online");
    assert_eq!(read(&mem, "memory3/state"), "offline");
    assert_eq!(
        read(&mem, "memory1/state"),
        "online\n",
        "unchanged: not rewritten"
    );
}

#[test]
fn memory_block_without_state_is_always_online() {
    use BlockResponseType::*;
    let root = writable_fixture("ubuntu1204");
    std::fs::remove_file(root.path().join("sys/devices/system/memory/memory2/state")).unwrap();
    let ctx = Ctx::with_root(root.path());
    let blocks = memory::get_memory_blocks(&ctx, NoArgs {}).unwrap();
    assert_eq!(blocks[2], block(2, true, false));
    let args = serde_json::from_value(json!({"mem-blks": [
        {"phys-index": 2, "online": false}, {"phys-index": 2, "online": true}]}))
    .unwrap();
    let r = memory::set_memory_blocks(&ctx, args).unwrap();
    let r: Vec<_> = r.iter().map(response).collect();
    assert_eq!(
        r,
        [
            (2, OperationNotSupported, Some(libc::ENOENT)),
            (2, Success, None)
        ]
    );
}

#[test]
fn no_memory_hotplug_directory() {
    let root = TempDir::new("nomem");
    let ctx = Ctx::with_root(root.path());
    assert!(memory::get_memory_blocks(&ctx, NoArgs {})
        .unwrap()
        .is_empty());
    let args =
        serde_json::from_value(json!({"mem-blks": [{"phys-index": 0, "online": true}]})).unwrap();
    let r = memory::set_memory_blocks(&ctx, args).unwrap();
    assert_eq!(
        response(&r[0]),
        (
            0,
            BlockResponseType::OperationNotSupported,
            Some(libc::ENOENT)
        )
    );
    assert_eq!(
        memory::get_memory_block_info(&ctx, NoArgs {})
            .unwrap_err()
            .to_string(),
        "open(\"/sys/devices/system/memory/\"): No such file or directory"
    );
}

#[test]
fn interfaces_end_to_end_use_fixture_counters() {
    let root = writable_fixture("modern");
    // The live interfaces are this machine's; give its loopback known counters.
    std::fs::write(
        root.path().join("proc/net/dev"),
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n    lo: 11 2 0 0 0 0 0 0 33 4 0 0 0 0 0 0\n",
    )
    .unwrap();
    let agent = Agent::with_sysroot(root.path(), &[]);
    let ifs = agent.call("guest-network-get-interfaces", json!({}));
    let lo = ifs
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "lo")
        .unwrap();
    assert_eq!(lo["hardware-address"], "00:00:00:00:00:00");
    assert_eq!(
        lo["statistics"],
        json!({"rx-bytes": 11, "rx-packets": 2, "rx-errs": 0, "rx-dropped": 0,
               "tx-bytes": 33, "tx-packets": 4, "tx-errs": 0, "tx-dropped": 0})
    );
    let addrs = lo["ip-addresses"].as_array().unwrap();
    assert!(
        addrs.contains(&json!({"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}))
    );
}

#[test]
fn host_name_and_time_end_to_end() {
    let agent = Agent::start(&[]);
    let name = agent.call("guest-get-host-name", json!({}));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(name, json!({"host-name": kernel.trim_end()}));
    let t = agent.call("guest-get-time", json!({})).as_i64().unwrap();
    assert!(t > 1_600_000_000_000_000_000);
}
