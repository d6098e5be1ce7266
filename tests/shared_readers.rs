//! The shared readers (src/proc, distro, utmp, accounts, localtime) against the fixture
//! tree of every distribution: one table per reader, every distro in each.

mod common;

use common::{fixture, DISTROS};
use qga::ctx::Ctx;
use qga::{accounts, distro, localtime, proc, utmp};

fn ctx(distro: &str) -> Ctx {
    Ctx::with_root(fixture(distro))
}

#[test]
fn meminfo_every_distro() {
    // (distro, total, free, available as the kernel reports it, swap total)
    let table = [
        ("centos6", 1922380, 184212, None, 4128764),
        ("centos7", 3880344, 214340, Some(2866028), 2097148),
        ("ubuntu1204", 1016860, 95940, None, 1044476),
        ("ubuntu1404", 2048156, 180228, Some(1524892), 0),
        ("modern", 8029624, 1204816, Some(6123400), 1048572),
    ];
    assert_eq!(table.len(), DISTROS.len());
    for (d, total, free, available, swap) in table {
        let m = proc::parse_meminfo(&ctx(d).read("proc/meminfo").unwrap()).unwrap();
        assert_eq!(
            (m.total, m.free, m.available, m.swap_total),
            (total, free, available, swap),
            "{d}"
        );
        if available.is_none() {
            assert_eq!(
                m.available_or_estimate(),
                m.free + m.buffers + m.cached,
                "{d}"
            );
        }
    }
}

#[test]
fn loadavg_and_uptime_every_distro() {
    let table = [
        ("centos6", ["0.00", "0.01", "0.05"], 182, 86400.50),
        ("centos7", ["0.08", "0.03", "0.05"], 213, 350735.47),
        ("ubuntu1204", ["0.15", "0.10", "0.13"], 96, 12000.0),
        ("ubuntu1404", ["1.02", "0.77", "0.61"], 240, 7200.25),
        ("modern", ["0.52", "0.58", "0.59"], 1190, 604800.99),
    ];
    for (d, text, total, uptime) in table {
        let c = ctx(d);
        let l = proc::parse_loadavg(&c.read("proc/loadavg").unwrap()).unwrap();
        assert_eq!(l.text, text.map(String::from), "{d}");
        assert_eq!(l.total, total, "{d}");
        assert_eq!(proc::read_uptime(&c).unwrap(), uptime, "{d}");
    }
}

#[test]
fn stat_every_distro() {
    // (distro, cpus, has guest_nice (2.6.33+), btime)
    let table = [
        ("centos6", 2, false, 1700000000),
        ("centos7", 4, true, 1699649265),
        ("ubuntu1204", 1, true, 1700088000),
        ("ubuntu1404", 2, true, 1700092800),
        ("modern", 8, true, 1699395200),
    ];
    for (d, cpus, guest_nice, btime) in table {
        let s = proc::parse_stat(&ctx(d).read("proc/stat").unwrap()).unwrap();
        assert_eq!(s.cpus.len(), cpus, "{d}");
        assert_eq!(s.total.guest_nice.is_some(), guest_nice, "{d}");
        assert_eq!(s.btime, btime, "{d}");
        assert!(s.total.busy() < s.total.total(), "{d}");
    }
}

#[test]
fn processes_every_distro() {
    // (distro, process count, a pid, its command line, uid, state)
    let table = [
        (
            "centos6",
            7,
            1544,
            "/usr/libexec/mysqld --basedir=/usr --datadir=/var/lib/mysql",
            27,
            'S',
        ),
        (
            "centos7",
            8,
            2290,
            "python3 worker.py --queue jobs",
            1000,
            'R',
        ),
        (
            "ubuntu1204",
            8,
            2301,
            "dd if=/dev/zero of=/data/big",
            0,
            'D',
        ),
        ("ubuntu1404", 8, 1102, "/usr/sbin/mysqld", 105, 'S'),
        ("modern", 9, 15, "[kworker/0:1-events]", 0, 'I'),
    ];
    for (d, count, pid, cmd, uid, state) in table {
        let procs = proc::read_processes(&ctx(d));
        assert_eq!(procs.len(), count, "{d}");
        let p = procs.iter().find(|p| p.pid == pid).unwrap();
        assert_eq!(p.command_line(), cmd, "{d}");
        assert_eq!((p.uid, p.state), (uid, state), "{d}");
        assert!(procs.windows(2).all(|w| w[0].pid < w[1].pid), "{d}: sorted");
    }
    let zombie = proc::read_processes(&ctx("centos6"))
        .into_iter()
        .find(|p| p.state == 'Z')
        .unwrap();
    assert_eq!(zombie.shared_kib, None, "zombie without statm");
}

#[test]
fn mounts_every_distro() {
    // (distro, entries, the mount point of the first block device, a decoded name)
    let table = [
        ("centos6", 13, "/", None),
        ("centos7", 23, "/", None),
        ("ubuntu1204", 13, "/", Some("/mnt/backup disk")),
        ("ubuntu1404", 18, "/", None),
        ("modern", 24, "/", None),
    ];
    for (d, n, first, decoded) in table {
        let m = proc::parse_mounts(&ctx(d).read("proc/self/mounts").unwrap());
        assert_eq!(m.len(), n, "{d}");
        let block = m.iter().find(|m| m.device.starts_with("/dev/")).unwrap();
        assert_eq!(block.mountpoint, first, "{d}");
        if let Some(name) = decoded {
            assert!(m.iter().any(|m| m.mountpoint == name), "{d}");
        }
    }
}

#[test]
fn distro_every_distro() {
    // (distro, name, version_id, id, pretty name)
    let table = [
        (
            "centos6",
            "CentOS",
            "6.10",
            "centos",
            "CentOS release 6.10 (Final)",
        ),
        (
            "centos7",
            "CentOS Linux",
            "7",
            "centos",
            "CentOS Linux 7 (Core)",
        ),
        (
            "ubuntu1204",
            "Ubuntu",
            "12.04",
            "ubuntu",
            "Ubuntu precise (12.04.5 LTS)",
        ),
        (
            "ubuntu1404",
            "Ubuntu",
            "14.04",
            "ubuntu",
            "Ubuntu 14.04.6 LTS",
        ),
        (
            "modern",
            "Debian GNU/Linux",
            "12",
            "debian",
            "Debian GNU/Linux 12 (bookworm)",
        ),
    ];
    for (d, name, version_id, id, pretty) in table {
        let x = distro::identify(&ctx(d));
        assert_eq!(x.name.as_deref(), Some(name), "{d}");
        assert_eq!(x.version_id.as_deref(), Some(version_id), "{d}");
        assert_eq!(x.id.as_deref(), Some(id), "{d}");
        assert_eq!(x.pretty_name.as_deref(), Some(pretty), "{d}");
    }
}

#[test]
fn wtmp_every_distro() {
    // (distro, records, last login user, host)
    let table = [
        ("centos6", 6, "bcadmin", "10.20.30.40"),
        ("centos7", 6, "bcadmin", "10.20.30.40"),
        ("ubuntu1204", 5, "root", "192.168.10.7"),
        ("ubuntu1404", 6, "ubuntu", "10.20.30.40"),
        ("modern", 6, "ubuntu", "10.20.30.40"),
    ];
    for (d, n, user, host) in table {
        let bytes = std::fs::read(fixture(d).join("var/log/wtmp")).unwrap();
        let recs = utmp::parse_records(&bytes);
        assert_eq!(recs.len(), n, "{d}");
        assert_eq!(recs[0].kind, utmp::BOOT_TIME, "{d}");
        let last = utmp::last_login(&recs).unwrap();
        assert_eq!(
            (last.user.as_str(), last.host.as_str()),
            (user, host),
            "{d}"
        );
    }
}

#[test]
fn passwd_every_distro() {
    for (d, mysql_uid) in [
        ("centos6", 27),
        ("centos7", 27),
        ("ubuntu1204", 105),
        ("ubuntu1404", 105),
        ("modern", 105),
    ] {
        let c = ctx(d);
        let root = accounts::lookup_user(&c, "root").unwrap().unwrap();
        assert_eq!((root.uid, root.home.as_str()), (0, "/root"), "{d}");
        assert_eq!(accounts::user_names(&c)[&mysql_uid], "mysql", "{d}");
        assert_eq!(
            accounts::lookup_user(&c, "nosuchuser").unwrap(),
            None,
            "{d}"
        );
    }
}

#[test]
fn localtime_every_distro() {
    // 2024-01-15 12:00:00 UTC and 2024-07-15 12:00:00 UTC.
    let (jan, jul) = (1_705_320_000, 1_721_044_800);
    let table = [
        (
            "centos6",
            (28800, "CST"),
            (28800, "CST"),
            "2024-01-15 20:00:00",
        ),
        (
            "centos7",
            (28800, "CST"),
            (28800, "CST"),
            "2024-01-15 20:00:00",
        ),
        ("ubuntu1204", (0, "UTC"), (0, "UTC"), "2024-01-15 12:00:00"),
        (
            "ubuntu1404",
            (-18000, "EST"),
            (-14400, "EDT"),
            "2024-01-15 07:00:00",
        ),
        (
            "modern",
            (3600, "CET"),
            (7200, "CEST"),
            "2024-01-15 13:00:00",
        ),
    ];
    for (d, winter, summer, text) in table {
        let zone = localtime::zone(&ctx(d), None);
        assert_eq!(zone.offset_at(jan), (winter.0, winter.1.to_string()), "{d}");
        assert_eq!(zone.offset_at(jul), (summer.0, summer.1.to_string()), "{d}");
        let (off, _) = zone.offset_at(jan);
        assert_eq!(localtime::format_utc(jan + off), text, "{d}");
        // Far beyond the file's transitions: the footer rule decides.
        let jul_2100 = 4_119_163_200;
        assert_eq!(zone.offset_at(jul_2100).0, summer.0, "{d} in 2100");
    }
}

#[test]
fn tz_variable_forms() {
    let c = ctx("modern");
    assert_eq!(localtime::zone(&c, Some("")).offset_at(0).0, 0);
    assert_eq!(localtime::zone(&c, Some("CST-8")).offset_at(0).0, 28800);
    // A file path is resolved below the context's root, like every other file.
    assert_eq!(
        localtime::zone(&c, Some(":/etc/localtime")).offset_at(0).0,
        3600
    );
    assert_eq!(localtime::zone(&c, Some(":No/Such")).offset_at(0).0, 0);
    assert_eq!(
        localtime::zone(&c, Some("../../etc/passwd")).offset_at(0).0,
        0
    );
}
