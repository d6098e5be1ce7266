//! Upstream parity I (issue #4), the read-only reports on every distribution's fixture
//! tree: guest-get-osinfo, guest-get-users, guest-get-timezone, guest-get-cpustats and
//! guest-get-load.

mod common;

use common::{fixture, Agent, TempDir, DISTROS};
use qga::commands::cpu::{self, CpuStats};
use qga::commands::host;
use qga::commands::time::{self, Timezone};
use qga::commands::users::{self, User};
use qga::commands::NoArgs;
use qga::ctx::Ctx;
use qga::localtime;
use serde_json::json;

fn ctx(distro: &str) -> Ctx {
    Ctx::with_root(fixture(distro))
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn osinfo_on_every_distro() {
    for distro in DISTROS {
        let info = host::get_osinfo(&ctx(distro), NoArgs {}).unwrap();
        // The kernel members come from this machine's uname, whatever the root.
        assert!(info.kernel_release.is_some() && info.machine.is_some());
        let got = (
            info.id.as_deref(),
            info.name.as_deref(),
            info.version_id.as_deref(),
        );
        let want = match distro {
            // No os-release: derived from /etc/centos-release (qemu-ga leaves these out).
            "centos6" => (Some("centos"), Some("CentOS"), Some("6.10")),
            "centos7" => (Some("centos"), Some("CentOS Linux"), Some("7")),
            "ubuntu1204" => (Some("ubuntu"), Some("Ubuntu"), Some("12.04")),
            "ubuntu1404" => (Some("ubuntu"), Some("Ubuntu"), Some("14.04")),
            // Only /usr/lib/os-release.
            "modern" => (Some("debian"), Some("Debian GNU/Linux"), Some("12")),
            _ => unreachable!(),
        };
        assert_eq!(got, want, "{distro}");
    }
    let c6 = host::get_osinfo(&ctx("centos6"), NoArgs {}).unwrap();
    assert_eq!(c6.pretty_name, s("CentOS release 6.10 (Final)"));
    assert_eq!(c6.version, s("6.10 (Final)"));
}

#[test]
fn osinfo_leaves_out_what_it_does_not_know() {
    let empty = TempDir::new("no-release");
    let info = host::get_osinfo(&Ctx::with_root(empty.path()), NoArgs {}).unwrap();
    let value = serde_json::to_value(&info).unwrap();
    let mut keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["kernel-release", "kernel-version", "machine"]);
}

fn user(name: &str, t: f64) -> User {
    User {
        user: name.into(),
        login_time: t,
    }
}

#[test]
fn users_on_every_distro() {
    for distro in DISTROS {
        let want = match distro {
            // root on tty1 and over ssh: the earlier ssh login counts.
            "centos6" => vec![
                user("root", 1_700_000_400.125),
                user("bcadmin", 1_700_001_000.5),
            ],
            "centos7" => vec![user("root", 1_710_000_300.654_321)],
            "ubuntu1204" => vec![user("ubuntu", 1_400_000_100.000_001)],
            "ubuntu1404" => vec![
                user("ubuntu", 1_500_000_200.999_999),
                user("root", 1_500_000_300.0),
            ],
            // The DEAD_PROCESS record of a closed session does not count.
            "modern" => vec![user("ubuntu", 1_730_000_200.5)],
            _ => unreachable!(),
        };
        assert_eq!(
            users::get_users(&ctx(distro), NoArgs {}).unwrap(),
            want,
            "{distro}"
        );
    }
}

#[test]
fn users_without_utmp_is_an_empty_list() {
    let empty = TempDir::new("no-utmp");
    let ctx = Ctx::with_root(empty.path());
    assert!(users::get_users(&ctx, NoArgs {}).unwrap().is_empty());
    // systemd distributions where /var/run is not a link keep it in /run.
    std::fs::create_dir_all(empty.join("run")).unwrap();
    std::fs::copy(
        fixture("modern").join("var/run/utmp"),
        empty.join("run/utmp"),
    )
    .unwrap();
    assert_eq!(users::get_users(&ctx, NoArgs {}).unwrap().len(), 1);
}

fn tz(zone: &str, offset: i64) -> Timezone {
    Timezone {
        zone: Some(zone.into()),
        offset,
    }
}

#[test]
fn timezone_on_every_distro_winter_and_summer() {
    const JANUARY: i64 = 1_705_320_000; // 2024-01-15T12:00:00Z
    const JULY: i64 = 1_721_044_800; // 2024-07-15T12:00:00Z
    for distro in DISTROS {
        // The fixture's /etc/localtime decides; a TZ in the test environment must not.
        let zone = localtime::zone(&ctx(distro), None);
        let got = (
            time::timezone_at(&zone, JANUARY),
            time::timezone_at(&zone, JULY),
        );
        let want = match distro {
            "centos6" | "centos7" => (tz("CST", 28_800), tz("CST", 28_800)),
            "ubuntu1204" => (tz("UTC", 0), tz("UTC", 0)),
            "ubuntu1404" => (tz("EST", -18_000), tz("EDT", -14_400)),
            "modern" => (tz("CET", 3_600), tz("CEST", 7_200)),
            _ => unreachable!(),
        };
        assert_eq!(got, want, "{distro}");
    }
}

#[test]
fn timezone_end_to_end_honours_tz() {
    let root = TempDir::new("tz");
    let agent = Agent::start_with_env(
        &["--sysroot", root.path().to_str().unwrap()],
        &[("TZ", "JST-9")],
    );
    assert_eq!(
        agent.call("guest-get-timezone", json!({})),
        json!({"zone": "JST", "offset": 32_400})
    );
}

#[test]
fn cpustats_on_every_distro_in_milliseconds() {
    for distro in DISTROS {
        let stats = cpu::get_cpustats(&ctx(distro), NoArgs {}).unwrap();
        let cpus = match distro {
            "ubuntu1204" => 1,
            "centos6" | "ubuntu1404" => 2,
            "centos7" => 4,
            "modern" => 8,
            _ => unreachable!(),
        };
        assert_eq!(stats.len(), cpus, "{distro}");
        assert!(stats.iter().enumerate().all(|(i, s)| s.cpu == i as i64));
        // guest_nice came with 2.6.33: CentOS 6 has no such column.
        assert_eq!(
            stats[0].guestnice.is_none(),
            distro == "centos6",
            "{distro}"
        );
        assert!(
            stats[0].steal.is_some() && stats[0].guest.is_some(),
            "{distro}"
        );
    }
    // "cpu0 61728 400 22839 8394506 1728 6 172 0 0" at USER_HZ 100.
    let c6 = &cpu::get_cpustats(&ctx("centos6"), NoArgs {}).unwrap()[0];
    assert_eq!(
        c6,
        &CpuStats {
            kind: "linux",
            cpu: 0,
            user: 617_280,
            nice: 4_000,
            system: 228_390,
            idle: 83_945_060,
            iowait: Some(17_280),
            irq: Some(60),
            softirq: Some(1_720),
            steal: Some(0),
            guest: Some(0),
            guestnice: None,
        }
    );
    assert_eq!(
        serde_json::to_value(c6).unwrap(),
        json!({"type": "linux", "cpu": 0, "user": 617_280, "nice": 4_000, "system": 228_390,
               "idle": 83_945_060, "iowait": 17_280, "irq": 60, "softirq": 1_720,
               "steal": 0, "guest": 0})
    );
}

#[test]
fn cpustats_of_an_old_kernel_line_leave_out_later_columns() {
    let stat = qga::proc::parse_stat("cpu 1 2 3 4\ncpu0 100 200 300 400\nbtime 1\n").unwrap();
    let stats = cpu::cpu_stats(&stat.cpus, 100);
    assert_eq!(
        serde_json::to_value(&stats).unwrap(),
        json!([{"type": "linux", "cpu": 0, "user": 1000, "nice": 2000, "system": 3000,
                "idle": 4000}])
    );
}

#[test]
fn load_on_every_distro() {
    for distro in DISTROS {
        let load = cpu::get_load(&ctx(distro), NoArgs {}).unwrap();
        let want = match distro {
            "centos6" => (0.00, 0.01, 0.05),
            "centos7" => (0.08, 0.03, 0.05),
            "ubuntu1204" => (0.15, 0.10, 0.13),
            "ubuntu1404" => (1.02, 0.77, 0.61),
            "modern" => (0.52, 0.58, 0.59),
            _ => unreachable!(),
        };
        assert_eq!((load.load1m, load.load5m, load.load15m), want, "{distro}");
    }
}

/// guest-get-load is absent from qemu-ga 7.2; its schema (10.0): three numbers.
#[test]
fn load_matches_the_schema() {
    let agent = Agent::start(&[]);
    let load = agent.call("guest-get-load", json!({}));
    let obj = load.as_object().unwrap();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    assert_eq!(keys, ["load15m", "load1m", "load5m"]);
    assert!(obj.values().all(|v| v.is_number()));
}
