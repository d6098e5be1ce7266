//! The BC-Linux handlers (issue #3) called directly with `Ctx::with_root` on the fixture
//! tree of every distribution, against the expected replies; commands that change the
//! machine run against a temporary copy of the tree.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{fixture, TempDir, DISTROS};
use qga::commands::bc_admin::{self, Errnum, HostnameArgs};
use qga::commands::bc_apps;
use qga::commands::bc_disk::{self, DiskInfo, DiskStatus};
use qga::commands::bc_monitor::{self, MemoryStatus, SwapStatus, SystemInfo};
use qga::commands::bc_oom::{self, OomStatus};
use qga::commands::NoArgs;
use qga::config::DiskStatusFormat;
use qga::ctx::{Ctx, Session};

/// A context on the fixture with a private statedir.
fn ctx(distro: &str, state: &TempDir) -> Ctx {
    let mut c = Ctx::with_root(fixture(distro));
    c.config.statedir = state.path().to_path_buf();
    c
}

#[test]
fn memory_status_every_distro() {
    // issue 14 item 4: centos6 and ubuntu1204 have no MemAvailable, so the kernel's
    // estimate (no zoneinfo in these trees: reserves from the default min_free_kbytes).
    let table = [
        (
            "centos6",
            [1877, 1697, 179, 1251, 120, 856],
            [4031, 28, 4003],
        ),
        ("centos7", [3789, 3580, 209, 2798, 2, 2667], [2047, 0, 2047]),
        ("ubuntu1204", [993, 899, 93, 912, 58, 597], [1019, 14, 1005]),
        ("ubuntu1404", [2000, 1824, 176, 1489, 144, 1082], [0, 0, 0]),
        (
            "modern",
            [7841, 6664, 1176, 5979, 302, 4298],
            [1023, 8, 1015],
        ),
    ];
    assert_eq!(table.len(), DISTROS.len());
    let state = TempDir::new("bc-mem");
    for (d, [total, used, free, available, buffer, cached], [st, su, sf]) in table {
        let got = bc_monitor::get_memory_status(&ctx(d, &state), NoArgs {}).unwrap();
        let want = MemoryStatus {
            total,
            used,
            free,
            available,
            buffer,
            cached,
            swap: SwapStatus {
                total: st,
                used: su,
                free: sf,
            },
        };
        assert_eq!(got, want, "{d}");
    }
}

#[test]
fn system_info_every_distro() {
    // The fixture's /etc/localtime decides; a TZ in the test environment must not.
    std::env::remove_var("TZ");
    // issue 14 item 6: system-version is the full release, version-id os-release's.
    let table = [
        (
            "centos6",
            "CentOS",
            "2.6.32-754.35.1.el6.x86_64",
            "6.10",
            "6.10",
            "bc-c6-web01.bc.example.com",
            "bcadmin pts/1 10.20.30.40 2023-11-16 06:06:40",
        ),
        (
            "centos7",
            "CentOS Linux",
            "3.10.0-1160.119.1.el7.x86_64",
            "7.9.2009",
            "7",
            "bc-c7-db01",
            "bcadmin pts/1 10.20.30.40 2023-11-12 04:41:05",
        ),
        (
            "ubuntu1204",
            "Ubuntu",
            "3.2.0-126-generic",
            "12.04",
            "12.04",
            "precise-vm",
            "root pts/0 192.168.10.7 2023-11-15 23:40:00",
        ),
        (
            "ubuntu1404",
            "Ubuntu",
            "3.13.0-170-generic",
            "14.04",
            "14.04",
            "trusty-vm",
            "ubuntu pts/1 10.20.30.40 2023-11-16 18:53:20",
        ),
        (
            "modern",
            "Debian GNU/Linux",
            "6.1.0-27-amd64",
            "12.8",
            "12",
            "bookworm-vm",
            "ubuntu pts/1 10.20.30.40 2023-11-08 23:06:40",
        ),
    ];
    let state = TempDir::new("bc-sys");
    for (d, os, kernel, version, version_id, fqdn, last) in table {
        let got = bc_monitor::get_system_info(&ctx(d, &state), NoArgs {}).unwrap();
        let want = SystemInfo {
            os_name: os.into(),
            kernel_version: kernel.into(),
            system_version: version.into(),
            version_id: version_id.into(),
            fqdn: fqdn.into(),
            lastlogin: last.into(),
        };
        assert_eq!(got, want, "{d}");
    }
}

#[test]
fn system_info_of_an_empty_root_is_empty_not_an_error() {
    let root = TempDir::new("bc-empty");
    let got = bc_monitor::system_info(&Ctx::with_root(root.path()));
    assert_eq!(got.os_name, "Linux");
    assert_eq!((got.fqdn.as_str(), got.lastlogin.as_str()), ("", ""));
}

#[test]
fn oom_status_every_distro() {
    let table = [
        ("centos6", true, 1, "Killed process 3055, UID 500, (java) total-vm:3145728kB, anon-rss:1048000kB, file-rss:576kB"),
        ("centos7", true, 2, "[350200.000100] Killed process 2290 (python3) total-vm:500096kB, anon-rss:160000kB, file-rss:0kB, shmem-rss:0kB"),
        ("ubuntu1204", false, 0, ""),
        ("ubuntu1404", true, 1, "[ 7000.000300] Killed process 2290 (python3) total-vm:500096kB, anon-rss:160000kB, file-rss:12kB"),
        ("modern", true, 2, "[600100.000200] Memory cgroup out of memory: Killed process 4411 (stress) total-vm:264232kB, anon-rss:262144kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:560kB oom_score_adj:0"),
    ];
    for (d, happened, count, last) in table {
        let state = TempDir::new("bc-oom");
        let got =
            bc_oom::get_oom_status(&ctx(d, &state), &mut Session::default(), NoArgs {}).unwrap();
        let want = OomStatus {
            oom_happened: happened,
            oom_count: count,
            last_oom: last.into(),
        };
        assert_eq!(got, want, "{d}");
    }
}

#[test]
fn oom_seen_once_stays_until_reboot() {
    let root = TempDir::new("bc-oom-root");
    common::copy_tree(&fixture("centos7"), root.path());
    let state = TempDir::new("bc-oom-state");
    let mut c = Ctx::with_root(root.path());
    c.config.statedir = state.path().to_path_buf();
    let mut s = Session::default();
    assert_eq!(bc_oom::oom_status(&c, &mut s).unwrap().oom_count, 2);
    // The ring buffer wrapped: the kills are gone from it.
    fs::write(root.join("proc/kmsg"), "<6>[400000.0] eth0: link up\n").unwrap();
    let later = bc_oom::oom_status(&c, &mut s).unwrap();
    assert!(later.oom_happened);
    assert_eq!(later.oom_count, 2);
    assert!(later.last_oom.contains("Killed process 2290"));
    // A new kill after the wrap adds to the count.
    fs::write(
        root.join("proc/kmsg"),
        "<3>[400001.0] Killed process 812 (sshd) total-vm:1kB, anon-rss:1kB, file-rss:0kB\n",
    )
    .unwrap();
    assert_eq!(bc_oom::oom_status(&c, &mut s).unwrap().oom_count, 3);
    // Another boot: the memory no longer applies.
    fs::write(
        root.join("proc/sys/kernel/random/boot_id"),
        "another-boot\n",
    )
    .unwrap();
    fs::write(root.join("proc/kmsg"), "").unwrap();
    assert!(!bc_oom::oom_status(&c, &mut s).unwrap().oom_happened);
}

#[test]
fn app_status_every_distro() {
    // (distro, rows, the busiest command, its %CPU over its lifetime)
    let table = [
        ("centos6", 7, "java", 455.5),
        ("centos7", 8, "python3", 50.0),
        ("ubuntu1204", 8, "mysqld", 99.3),
        ("ubuntu1404", 8, "mysqld", 165.7),
        ("modern", 9, "python3", 50.0),
    ];
    let state = TempDir::new("bc-apps");
    for (d, rows, top, pct) in table {
        let c = ctx(d, &state);
        let mut s = Session::default();
        let got = bc_apps::get_app_status(&c, &mut s, NoArgs {}).unwrap();
        let lines: Vec<&str> = got.app_status.lines().collect();
        assert_eq!(lines.len(), 7 + rows, "{d}");
        assert!(lines[0].starts_with("top - "), "{d}: {}", lines[0]);
        assert!(lines[0].contains("load average: "), "{d}");
        assert!(lines[1].starts_with("Tasks: "), "{d}");
        assert!(lines[2].starts_with("%Cpu(s):"), "{d}");
        assert!(lines[3].starts_with("KiB Mem :"), "{d}");
        assert!(lines[4].starts_with("KiB Swap:"), "{d}");
        assert!(lines[6].starts_with("  PID USER"), "{d}");
        assert!(lines[7].ends_with(&format!(" {top}")), "{d}: {}", lines[7]);
        assert_eq!(got.processes.len(), rows, "{d}");
        assert_eq!(got.processes[0].command, top, "{d}");
        assert_eq!(
            got.processes[0].cpu_percent, pct,
            "{d}: {:?}",
            got.processes[0]
        );
        let sorted = got
            .processes
            .windows(2)
            .all(|w| w[0].cpu_percent >= w[1].cpu_percent);
        assert!(sorted, "{d}: sorted by %CPU");
    }
}

#[test]
fn app_status_cpu_is_over_the_interval_since_the_previous_call() {
    let root = TempDir::new("bc-apps-interval");
    common::copy_tree(&fixture("centos7"), root.path());
    let c = Ctx::with_root(root.path());
    let mut s = Session::default();
    bc_apps::get_app_status(&c, &mut s, NoArgs {}).unwrap();
    // Ten seconds later sshd (pid 812) used 5 s of CPU, nothing else ran.
    fs::write(root.join("proc/uptime"), "350745.47 1402978.90\n").unwrap();
    let stat = fs::read_to_string(root.join("proc/812/stat")).unwrap();
    let mut f: Vec<String> = stat.split_whitespace().map(String::from).collect();
    f[13] = (f[13].parse::<u64>().unwrap() + 500).to_string();
    fs::write(root.join("proc/812/stat"), f.join(" ") + "\n").unwrap();
    let got = bc_apps::get_app_status(&c, &mut s, NoArgs {}).unwrap();
    assert_eq!(
        (got.processes[0].pid, got.processes[0].cpu_percent),
        (812, 50.0)
    );
    assert!(got.processes[1..].iter().all(|p| p.cpu_percent == 0.0));
}

#[test]
fn app_status_rows_have_top_columns() {
    let state = TempDir::new("bc-apps-cols");
    let got = bc_apps::get_app_status(&ctx("centos6", &state), &mut Session::default(), NoArgs {})
        .unwrap();
    let mysql = got
        .app_status
        .lines()
        .find(|l| l.ends_with(" mysqld"))
        .unwrap();
    // PID USER PR NI VIRT RES SHR S %CPU %MEM TIME+ COMMAND
    let f: Vec<&str> = mysql.split_whitespace().collect();
    assert_eq!(
        &f[..8],
        ["1544", "mysql", "20", "0", "1109472", "163840", "4800", "S"]
    );
    assert_eq!(f[9], "8.5");
    assert_eq!(f[10], "110:00.00");
    let row = got.processes.iter().find(|p| p.pid == 1544).unwrap();
    assert_eq!(
        row.cmdline,
        "/usr/libexec/mysqld --basedir=/usr --datadir=/var/lib/mysql"
    );
    assert_eq!((row.user.as_str(), row.rss_kib), ("mysql", 163840));
}

/// A temporary root with the fixture's mount table and its mount points as directories.
fn disk_root(distro: &str) -> TempDir {
    let root = TempDir::new("bc-disk");
    let mounts = fs::read_to_string(fixture(distro).join("proc/self/mounts")).unwrap();
    fs::create_dir_all(root.join("proc/self")).unwrap();
    fs::write(root.join("proc/self/mounts"), &mounts).unwrap();
    for m in qga::proc::parse_mounts(&mounts) {
        fs::create_dir_all(root.path().join(m.mountpoint.trim_start_matches('/'))).unwrap();
    }
    root
}

#[test]
fn disk_status_every_distro() {
    let table: [(&str, &[(&str, bool)]); 5] = [
        (
            "centos6",
            &[
                ("/", true),
                ("/boot", true),
                ("/data", false),
                ("/mnt/nfs", true),
            ],
        ),
        (
            "centos7",
            &[("/", true), ("/var/lib/mysql", true), ("/mnt/cifs", true)],
        ),
        ("ubuntu1204", &[("/", true), ("/mnt/backup disk", true)]),
        (
            "ubuntu1404",
            &[("/", false), ("/data", true), ("/mnt/sshfs", true)],
        ),
        (
            "modern",
            &[
                ("/", true),
                ("/boot/efi", true),
                ("/srv/data", true),
                ("/mnt/nfs4", true),
            ],
        ),
    ];
    for (d, want) in table {
        let root = disk_root(d);
        let c = Ctx::with_root(root.path());
        let DiskStatus::Map(got) = bc_disk::get_disk_status(&c, NoArgs {})
            .unwrap()
            .finish(&c)
            .unwrap()
        else {
            panic!("{d}: map expected");
        };
        let keys: Vec<(&str, bool)> = got.iter().map(|(k, v)| (k.as_str(), v.writable)).collect();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(keys, want, "{d}");
        let root_fs: &DiskInfo = &got["/"];
        assert!(root_fs.total > 0 && root_fs.used <= root_fs.total, "{d}");
    }
}

#[test]
fn disk_status_list_format_uses_df_strings() {
    let root = disk_root("centos6");
    let mut c = Ctx::with_root(root.path());
    c.config.disk_status_format = DiskStatusFormat::List;
    let DiskStatus::List(got) = bc_disk::get_disk_status(&c, NoArgs {})
        .unwrap()
        .finish(&c)
        .unwrap()
    else {
        panic!("list expected");
    };
    let places: Vec<&str> = got.iter().map(|e| e.mount_place.as_str()).collect();
    assert_eq!(places, ["/", "/boot", "/data", "/mnt/nfs"]);
    let total = &got[0].mount_info.total;
    assert!(total.ends_with(['K', 'M', 'G', 'T', 'P']), "{total}");
    assert!(!got[2].mount_info.writable);
}

#[test]
fn monitoring_items_match_the_single_commands() {
    let state = TempDir::new("bc-items");
    for d in DISTROS {
        let c = ctx(d, &state);
        let mut s = Session::default();
        let items = bc_monitor::get_monitoring_items(&c, &mut s, NoArgs {})
            .unwrap()
            .finish(&c)
            .unwrap();
        assert_eq!(
            items.memory,
            bc_monitor::get_memory_status(&c, NoArgs {}).unwrap(),
            "{d}"
        );
        assert_eq!(items.system, bc_monitor::system_info(&c), "{d}");
        assert_eq!(items.oom, bc_oom::oom_status(&c, &mut s).unwrap(), "{d}");
        let l = qga::proc::parse_loadavg(&c.read("proc/loadavg").unwrap()).unwrap();
        assert_eq!(
            (items.load.one, items.load.five, items.load.fifteen),
            (l.one, l.five, l.fifteen)
        );
        assert_eq!(
            items.uptime_seconds,
            qga::proc::read_uptime(&c).unwrap() as u64,
            "{d}"
        );
    }
}

fn hostname_args(name: &str) -> HostnameArgs {
    serde_json::from_value(serde_json::json!({ "new-hostname": name })).unwrap()
}

#[test]
fn change_hostname_persists_per_distro() {
    // (distro, file that must hold the name, its expected content, hosts line expected)
    let table = [
        ("centos6", "etc/sysconfig/network", "NETWORKING=yes\nHOSTNAME=bc-new01\nGATEWAY=192.168.10.1\n",
         "192.168.10.21 bc-new01.bc.example.com bc-new01\n"),
        ("centos7", "etc/hostname", "bc-new01\n",
         "127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4 bc-new01\n"),
        ("ubuntu1204", "etc/hostname", "bc-new01\n", "127.0.1.1\tbc-new01\n"),
        ("ubuntu1404", "etc/hostname", "bc-new01\n", "127.0.1.1\tbc-new01\n"),
        ("modern", "etc/hostname", "bc-new01\n", "127.0.1.1\tbc-new01\n"),
    ];
    for (d, file, content, hosts_line) in table {
        let root = TempDir::new("bc-host");
        common::copy_tree(&fixture(d), root.path());
        fs::set_permissions(root.join("etc/hosts"), fs::Permissions::from_mode(0o640)).unwrap();
        let hosts_before = fs::read_to_string(root.join("etc/hosts")).unwrap();
        let c = Ctx::with_root(root.path());
        assert_eq!(
            bc_admin::change_hostname(&c, hostname_args("bc-new01")).unwrap(),
            Errnum { errnum: 0 },
            "{d}"
        );
        assert_eq!(fs::read_to_string(root.join(file)).unwrap(), content, "{d}");
        assert_eq!(
            fs::read_to_string(root.join("proc/sys/kernel/hostname")).unwrap(),
            "bc-new01\n",
            "{d}"
        );
        let hosts = fs::read_to_string(root.join("etc/hosts")).unwrap();
        assert!(hosts.contains(hosts_line), "{d}: {hosts}");
        // Every other line is kept byte for byte.
        assert_eq!(hosts.lines().count(), hosts_before.lines().count(), "{d}");
        let mode = fs::metadata(root.join("etc/hosts"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640, "{d}");
        if d == "centos6" {
            assert!(
                !root.join("etc/hostname").exists(),
                "CentOS 6 has no /etc/hostname"
            );
        }
        if d == "centos7" {
            let net = fs::read_to_string(root.join("etc/sysconfig/network")).unwrap();
            assert_eq!(net, "# Created by anaconda\nNETWORKING=yes\n", "untouched");
        }
    }
}

#[test]
fn change_hostname_rejects_invalid_names_without_touching_files() {
    let root = TempDir::new("bc-host-bad");
    common::copy_tree(&fixture("modern"), root.path());
    let c = Ctx::with_root(root.path());
    for bad in [
        "",
        "-x",
        "a b",
        "x;reboot",
        "$(id)",
        &"a".repeat(65),
        "a..b",
    ] {
        let got = bc_admin::change_hostname(&c, hostname_args(bad)).unwrap();
        assert_eq!(got.errnum, libc::EINVAL, "{bad}");
    }
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "bookworm-vm\n"
    );
}

#[test]
fn change_password_rejects_bad_passwords_with_einval() {
    let c = Ctx::with_root("/nonexistent");
    for bad in ["a\nb", "a\0b", &"x".repeat(4097)] {
        let args = serde_json::from_value(serde_json::json!({ "new-password": bad })).unwrap();
        assert_eq!(
            bc_admin::change_password(&c, args)
                .unwrap()
                .finish(&c)
                .unwrap()
                .errnum,
            libc::EINVAL
        );
    }
}
