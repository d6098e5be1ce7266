//! Every registered read-only command, asked in the VM and compared with what the guest
//! really has (read through the guest monitor) and with the VM's [`Spec`]. A command
//! that changes state is skipped here; later issues add theirs (files, exec, freeze).

use serde_json::{json, Value};

use crate::harness::{Spec, Vm};

/// What the guest has, read by the guest shell rather than by the agent.
pub struct Facts {
    pub spec: Spec,
    pub kernel_release: String,
    pub hostname: String,
    pub uname_r: String,
    pub machine: String,
    pub mem_total_kib: u64,
    pub cpus: u64,
    pub mac: String,
    pub agent_pid: u64,
    pub block_size: u64,
    pub epoch: i64,
    pub boot_epoch: i64,
    pub tcp_snmp: Vec<(String, i64)>,
    pub tcp_sockets: u64,
    pub tcp_listen: u64,
    pub data_mount: String,
    /// The data disk's sysfs directory ("/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda").
    pub data_sysfs: String,
    pub data_serial: String,
}

/// The guest port a listening socket is opened on, so the TCP commands have something.
pub const LISTEN_PORT: u16 = 5555;

impl Facts {
    /// Prepares the guest (a listening socket, an authorized_keys file) and reads it.
    pub fn read(vm: &mut Vm) -> Facts {
        vm.guest(&format!(
            "(nc -l -p {LISTEN_PORT} </dev/null >/dev/null 2>&1 &); \
             mkdir -p /home/vmuser/.ssh && printf '%s\\n' '{SSH_KEY}' > /home/vmuser/.ssh/authorized_keys && \
             chown -R 1000:1000 /home/vmuser && chmod 700 /home/vmuser/.ssh && \
             chmod 600 /home/vmuser/.ssh/authorized_keys; sleep 0.3"
        ));
        let g = |vm: &mut Vm, line: &str| vm.guest(line).trim().to_owned();
        let num =
            |s: String| -> u64 { s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}")) };
        let snmp = g(vm, "grep '^Tcp:' /proc/net/snmp");
        let mut lines = snmp.lines();
        let keys: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .collect();
        let vals: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .collect();
        let tcp_snmp = keys
            .iter()
            .zip(vals)
            .map(|(k, v)| (k.to_lowercase(), v.parse().unwrap_or(i64::MIN)))
            .collect();
        // The data disk's sysfs layout, logged for the virtio-blk fixture
        // (tests/fixtures/virtio-blk/README.md).
        let layout = g(
            vm,
            "d=$(readlink -f /sys/block/vda); echo $d; cat $d/uevent; \
             readlink $d/../../driver; readlink $d/../../../driver; ls /sys/block",
        );
        crate::harness::log(&format!("data disk sysfs: {}", layout.replace('\n', " | ")));
        let epoch: i64 = g(vm, "date +%s").parse().unwrap();
        let uptime: f64 = g(vm, "cut -d' ' -f1 /proc/uptime").parse().unwrap();
        Facts {
            spec: vm.spec.clone(),
            kernel_release: vm.kernel_release.clone(),
            hostname: g(vm, "hostname"),
            uname_r: g(vm, "uname -r"),
            machine: g(vm, "uname -m"),
            mem_total_kib: num(g(vm, "awk '/^MemTotal:/ {print $2}' /proc/meminfo")),
            cpus: num(g(vm, "grep -c ^processor /proc/cpuinfo")),
            mac: g(vm, "cat /sys/class/net/eth0/address"),
            agent_pid: num(g(vm, "cat /run/qga.pid")),
            block_size: u64::from_str_radix(
                &g(vm, "cat /sys/devices/system/memory/block_size_bytes"),
                16,
            )
            .unwrap(),
            epoch,
            boot_epoch: epoch - uptime as i64,
            tcp_snmp,
            tcp_sockets: num(g(
                vm,
                "cat /proc/net/tcp /proc/net/tcp6 | grep -vc local_address",
            )),
            tcp_listen: num(g(
                vm,
                "cat /proc/net/tcp /proc/net/tcp6 | awk '$4 == \"0A\"' | wc -l",
            )),
            data_mount: g(vm, "grep ' /mnt/data ' /proc/mounts"),
            data_sysfs: g(vm, "readlink -f /sys/block/vda"),
            data_serial: g(vm, "cat /sys/block/vda/serial"),
        }
    }
}

const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvmtestkeyvmtestkeyvmtestkeyvmtestkey0 vm@test";

/// Commands this check never runs: they change the guest (or end it).
pub fn changes_state(name: &str) -> bool {
    [
        "set-",
        "shutdown",
        "suspend",
        "fsfreeze",
        "file-",
        "exec",
        "ssh-add",
        "ssh-remove",
    ]
    .iter()
    .any(|p| name.contains(p))
        || name.starts_with("change-")
}

type Check = fn(&Value, &Facts) -> Result<(), String>;

/// The arguments a command is asked with and what its `return` must hold.
pub fn expectation(name: &str) -> Option<(Option<Value>, Check)> {
    let e: (Option<Value>, Check) = match name {
        "guest-sync" | "guest-sync-delimited" => (Some(json!({"id": 4242})), |r, _| {
            eq(r, &json!(4242), "id echoed")
        }),
        "guest-ping" => (None, |r, _| eq(r, &json!({}), "empty object")),
        "guest-info" => (None, |r, _| {
            let names = r["supported_commands"]
                .as_array()
                .ok_or("no supported_commands")?;
            ensure(
                names.iter().any(|c| c["name"] == "guest-ping"),
                "lists guest-ping",
            )?;
            ensure(
                r["version"].as_str().is_some_and(|v| !v.is_empty()),
                "has a version",
            )
        }),
        "guest-get-host-name" => (None, |r, f| {
            eq(&r["host-name"], &json!(f.hostname), "host-name")?;
            eq(
                &r["host-name"],
                &json!(f.spec.hostname),
                "host-name is the VM's",
            )
        }),
        "guest-get-osinfo" => (None, |r, f| {
            eq(&r["kernel-release"], &json!(f.uname_r), "kernel-release")?;
            eq(
                &r["kernel-release"],
                &json!(f.kernel_release),
                "kernel-release is the booted package's",
            )?;
            eq(&r["machine"], &json!(f.machine), "machine")?;
            eq(&r["id"], &json!("qgavm"), "id from /etc/os-release")?;
            eq(
                &r["version-id"],
                &json!("8"),
                "version-id from /etc/os-release",
            )
        }),
        "guest-get-system-info" => (None, |r, f| {
            eq(&r["fqdn"], &json!(f.hostname), "fqdn")?;
            eq(&r["kernel-version"], &json!(f.uname_r), "kernel-version")?;
            eq(&r["os-name"], &json!("qga-bc test VM"), "os-name")
        }),
        "guest-get-memory-status" => (None, |r, f| memory_status(r, f)),
        "guest-get-monitoring-items" => (None, |r, f| {
            memory_status(&r["memory"], f)?;
            disk_status(&r["disk"], f)?;
            eq(&r["system"]["fqdn"], &json!(f.hostname), "system.fqdn")
        }),
        "guest-get-disk-status" => (None, disk_status),
        "bc-guest-get-diskstats" => (None, |r, f| {
            let vda = find(r, "name", "vda").ok_or("no vda")?;
            eq(&vda["fstype"], &json!("ext4"), "vda fstype")?;
            ensure(f.data_mount.contains("ext4"), "guest mounts vda as ext4")?;
            eq(
                &vda["mount-points"],
                &json!(["/mnt/data"]),
                "vda mount-points",
            )
        }),
        "guest-get-fsinfo" => (None, |r, f| {
            let data = find(r, "mountpoint", "/mnt/data").ok_or("no /mnt/data")?;
            eq(&data["name"], &json!("vda"), "name")?;
            eq(&data["type"], &json!("ext4"), "type")?;
            let total = data["total-bytes"].as_u64().ok_or("no total-bytes")?;
            ensure(
                total > 0 && total <= f.spec.disk_mib << 20,
                "total-bytes fits the disk",
            )?;
            len(&data["disk"], 1, "one disk")?;
            data_disk(&data["disk"][0], f)
        }),
        "guest-get-disks" => (None, |r, f| {
            let vda = find(r, "name", "/dev/vda").ok_or("no /dev/vda")?;
            eq(&vda["partition"], &json!(false), "partition")?;
            data_disk(&vda["address"], f)
        }),
        "guest-get-diskstats" => (None, |r, _| {
            let vda = find(r, "name", "vda").ok_or("no vda")?;
            let reads = vda["stats"]["read-ios"].as_u64().ok_or("no read-ios")?;
            ensure(reads > 0, "vda has been read (it is mounted)")
        }),
        "guest-fstrim" => (Some(json!({"minimum": 0})), |r, _| {
            let data = find(&r["paths"], "path", "/mnt/data").ok_or("no /mnt/data")?;
            let ok = data["trimmed"].is_u64() || data["error"] == "trim not supported";
            ensure(ok, &format!("/mnt/data trimmed or not supported: {data}"))
        }),
        "guest-get-cpustinfo" => (None, |r, f| {
            eq(&r["cpu-count"], &json!(f.cpus), "cpu-count")?;
            eq(&r["cpu-count"], &json!(f.spec.cpus), "cpu-count is -smp")?;
            len(&r["cpus"], f.cpus, "cpus")
        }),
        "guest-get-vcpus" => (None, |r, f| {
            len(r, f.spec.cpus, "vcpus (-smp)")?;
            let all = r.as_array().unwrap().iter().all(|c| c["online"] == true);
            ensure(all, "every vcpu online")
        }),
        "guest-get-cpustats" => (None, |r, f| len(r, f.cpus, "per-cpu stats")),
        "guest-network-get-interfaces" => (None, |r, f| {
            let eth0 = find(r, "name", "eth0").ok_or("no eth0")?;
            eq(&eth0["hardware-address"], &json!(f.mac), "eth0 MAC (guest)")?;
            eq(
                &eth0["hardware-address"],
                &json!(f.spec.mac),
                "eth0 MAC is the virtio NIC's",
            )?;
            let v4 = find(&eth0["ip-addresses"], "ip-address", "10.0.2.15")
                .ok_or("eth0 lacks 10.0.2.15")?;
            eq(&v4["prefix"], &json!(24), "eth0 prefix")?;
            find(r, "name", "lo").ok_or("no lo")?;
            Ok(())
        }),
        "guest-network-get-route" => (None, |r, _| {
            let list = r.as_array().ok_or("not a list")?;
            let default = list.iter().any(|e| {
                e["destination"] == "0.0.0.0" && e["gateway"] == "10.0.2.2" && e["iface"] == "eth0"
            });
            ensure(default, "default route via 10.0.2.2 on eth0")
        }),
        "guest-get-time" => (None, |r, f| {
            let ns = r.as_i64().ok_or("not a number")?;
            ensure(
                (ns / 1_000_000_000 - f.epoch).abs() < 120,
                "within 2 min of the guest's date",
            )
        }),
        "guest-get-timezone" => (None, |r, _| {
            eq(r, &json!({"offset": 0, "zone": "UTC"}), "UTC")
        }),
        "guest-get-users" => (None, |r, _| eq(r, &json!([]), "nobody logged in")),
        "guest-get-load" => (None, |r, _| {
            let ok = ["load1m", "load5m", "load15m"]
                .iter()
                .all(|k| r[k].as_f64().is_some_and(|v| v >= 0.0));
            ensure(ok, "three load figures")
        }),
        "guest-get-load-average" => (None, |r, _| {
            let ok = ["load1-average", "load5-average", "load15-average"]
                .iter()
                .all(|k| r[k].as_str().and_then(|s| s.parse::<f64>().ok()).is_some());
            ensure(ok, "three load figures")
        }),
        "guest-get-lastboot-time" => (None, |r, f| {
            let t = r["lastboot"].as_str().ok_or("no lastboot")?;
            let epoch = parse_utc(t).ok_or("lastboot not YYYY-MM-DD HH:MM:SS")?;
            ensure(
                (epoch - f.boot_epoch).abs() <= 3,
                "lastboot is the guest's boot time",
            )
        }),
        "guest-get-cpu-utilization" => (None, |r, _| {
            let part = |k: &str| r[k].as_str().and_then(|s| s.parse::<f64>().ok());
            let util = part("cpu-util").ok_or("no cpu-util")?;
            let idle = part("idle").ok_or("no idle")?;
            let iowait = part("iowait").ok_or("no iowait")?;
            // Busy is everything but idle and iowait (each rounded to 0.01).
            let sum = util + idle + iowait;
            ensure(
                (sum - 100.0).abs() < 0.05,
                &format!("cpu-util + idle + iowait = 100: {r}"),
            )
        }),
        "guest-get-memory-blocks" => (None, |r, f| {
            let n = r.as_array().ok_or("not a list")?.len() as u64;
            let mem = f.spec.mem_mib << 20;
            eq(
                &json!(n),
                &json!(mem.div_ceil(f.block_size)),
                "blocks cover -m",
            )
        }),
        "guest-get-memory-block-info" => (None, |r, f| {
            eq(&r["size"], &json!(f.block_size), "block_size_bytes")
        }),
        "guest-get-oom-status" => (None, |r, _| {
            eq(&r["oom-count"], &json!(0), "no OOM")?;
            eq(&r["oom-happened"], &json!(false), "no OOM")
        }),
        "guest-get-app-status" => (None, |r, f| {
            let agent = find(&r["processes"], "pid", f.agent_pid).ok_or("agent not listed")?;
            eq(&agent["command"], &json!("qemu-ga"), "the agent's command")
        }),
        "guest-get-cputopn-status" => {
            (Some(json!({"cputopn-num": "3"})), |r, _| len(r, 3, "top 3"))
        }
        "guest-get-memtopn-status" => (Some(json!({"memtopn-num": 4})), |r, _| len(r, 4, "top 4")),
        "bc-guest-get-tcp-snmp" => (None, |r, f| {
            for (k, v) in &f.tcp_snmp {
                if let Some(got) = r.get(k) {
                    // Counters the agent's own reading cannot move: no traffic in the guest.
                    if !matches!(k.as_str(), "insegs" | "outsegs") {
                        eq(got, &json!(v), k)?;
                    }
                }
            }
            ensure(r.get("rtoalgorithm").is_some(), "has rtoalgorithm")
        }),
        "guest-get-tcp-conn-state" => (None, |r, f| {
            eq(&r["total"], &json!(f.tcp_sockets), "total sockets")?;
            eq(&r["listen"], &json!(f.tcp_listen), "listening sockets")?;
            ensure(f.tcp_listen >= 1, "guest has the nc listener")
        }),
        "guest-get-tcp-conn" => (None, |r, f| {
            eq(&r["total"], &json!(f.tcp_sockets), "total sockets")?;
            let nc = find(&r["connections"], "local-port", LISTEN_PORT).ok_or("no nc listener")?;
            eq(&nc["state"], &json!("listen"), "nc listener state")
        }),
        "guest-ssh-get-authorized-keys" => (Some(json!({"username": "vmuser"})), |r, _| {
            eq(&r["keys"], &json!([SSH_KEY]), "the key the guest has")
        }),
        "guest-user-check" => (
            Some(json!({"command-name": "vm-echo", "command": "echo vm-check-ok; id -u"})),
            |r, _| {
                eq(&r["exit-status"], &json!(0), "exit-status")?;
                eq(&r["result"], &json!("vm-check-ok\n0\n"), "output")
            },
        ),
        _ => return None,
    };
    Some(e)
}

fn memory_status(r: &Value, f: &Facts) -> Result<(), String> {
    let total = r["total"].as_u64().ok_or("no total")?;
    let guest = f.mem_total_kib / 1024;
    ensure(
        total.abs_diff(guest) <= 1,
        &format!("total {total} MiB vs MemTotal {guest} MiB"),
    )?;
    ensure(
        total <= f.spec.mem_mib && total >= f.spec.mem_mib / 2,
        &format!("total {total} MiB fits -m {}", f.spec.mem_mib),
    )
}

fn disk_status(r: &Value, f: &Facts) -> Result<(), String> {
    let data = r.get("/mnt/data").ok_or("no /mnt/data")?;
    let total = data["total"].as_u64().ok_or("no total")?;
    ensure(
        total > 0 && total <= f.spec.disk_mib,
        &format!(
            "/mnt/data total {total} MiB on a {} MiB disk",
            f.spec.disk_mib
        ),
    )?;
    eq(&data["writable"], &json!(true), "/mnt/data writable")
}

/// The data disk's address: virtio-blk on the PCI slot the guest's sysfs path names.
fn data_disk(a: &Value, f: &Facts) -> Result<(), String> {
    eq(&a["bus-type"], &json!("virtio"), "bus-type")?;
    eq(&a["dev"], &json!("/dev/vda"), "dev")?;
    eq(&a["serial"], &json!(f.data_serial), "serial (guest sysfs)")?;
    eq(
        &a["serial"],
        &json!(f.spec.disk_label),
        "serial is -device serial=",
    )?;
    // "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda": the last PCI function.
    let pci = f
        .data_sysfs
        .rsplit('/')
        .find_map(|c| {
            let (dbs, func) = c.rsplit_once('.')?;
            let n: Vec<i64> = dbs
                .split(':')
                .chain([func])
                .map(|x| i64::from_str_radix(x, 16).ok())
                .collect::<Option<_>>()?;
            (n.len() == 4).then_some(n)
        })
        .ok_or(format!("no PCI address in {}", f.data_sysfs))?;
    let want = json!({"domain": pci[0], "bus": pci[1], "slot": pci[2], "function": pci[3]});
    eq(&a["pci-controller"], &want, "pci-controller")?;
    for k in ["bus", "target", "unit"] {
        eq(&a[k], &json!(0), k)?;
    }
    Ok(())
}

fn find<'a, T: Into<Value>>(list: &'a Value, key: &str, want: T) -> Option<&'a Value> {
    let want = want.into();
    list.as_array()?.iter().find(|e| e[key] == want)
}

fn eq(got: &Value, want: &Value, what: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got}, want {want}"))
    }
}

fn len(list: &Value, n: u64, what: &str) -> Result<(), String> {
    let got = list.as_array().map(|a| a.len() as u64);
    ensure(
        got == Some(n),
        &format!("{what}: {got:?} entries, want {n}"),
    )
}

fn ensure(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

/// "YYYY-MM-DD HH:MM:SS" (UTC: the guest has no /etc/localtime) to seconds since 1970.
fn parse_utc(t: &str) -> Option<i64> {
    let n = |s: &str| s.parse::<i64>().ok();
    let (date, time) = t.split_once(' ')?;
    let d: Vec<i64> = date.split('-').map(n).collect::<Option<_>>()?;
    let h: Vec<i64> = time.split(':').map(n).collect::<Option<_>>()?;
    let (&[y, m, day], &[hh, mm, ss]) = (d.as_slice(), h.as_slice()) else {
        return None;
    };
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[test]
fn parse_utc_known_dates() {
    assert_eq!(parse_utc("1970-01-01 00:00:00"), Some(0));
    assert_eq!(parse_utc("2000-03-01 00:00:01"), Some(951_868_801));
    assert_eq!(parse_utc("2026-12-01 09:55:45"), Some(1_796_118_945));
}
