//! The BC-Linux commands (issue #3) end to end: the real `qemu-ga` binary on a unix
//! socket, fixture or temporary roots through `--sysroot`, config files through `-c`,
//! and a fake `chpasswd` first on PATH. Nothing here changes the test machine.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{fixture, Agent, LoopMount, TempDir};
use serde_json::{json, Value};

const BC_COMMANDS: [&str; 9] = [
    "guest-get-memory-status",
    "guest-get-system-info",
    "guest-get-oom-status",
    "guest-get-app-status",
    "guest-get-disk-status",
    "guest-user-check",
    "change-hostname",
    "change-password",
    "guest-get-monitoring-items",
];

/// A config file in its own directory.
fn config(text: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new("bc-conf");
    let path = dir.join("qemu-ga.conf");
    fs::write(&path, text).unwrap();
    (dir, path)
}

fn error_of(reply: &Value) -> (&str, &str) {
    let e = &reply["error"];
    (e["class"].as_str().unwrap(), e["desc"].as_str().unwrap())
}

#[test]
fn guest_info_lists_the_bc_commands_and_block_list_applies() {
    let agent = Agent::start(&["-b", "change-password"]);
    let info = agent.call("guest-info", json!({}));
    let cmds = info["supported_commands"].as_array().unwrap();
    for name in BC_COMMANDS {
        let c = cmds
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(c["enabled"], name != "change-password", "{name}");
    }
    let reply = agent.request(r#"{"execute":"change-password","arguments":{"new-password":"x"}}"#);
    assert_eq!(error_of(&reply).0, "CommandNotFound");
}

#[test]
fn memory_status_reply_on_centos6() {
    let agent = Agent::with_sysroot(&fixture("centos6"), &[]);
    let got = agent.call("guest-get-memory-status", json!({}));
    // issue 14 item 4: no MemAvailable on 2.6.32, so the kernel's estimate: MemFree +
    // file LRU + SReclaimable less the reserves of the default vm.min_free_kbytes (no
    // zoneinfo in this tree), not MemFree + Buffers + Cached (1156).
    assert_eq!(
        got,
        json!({"total": 1877, "used": 1697, "free": 179, "available": 1251, "buffer": 120,
               "cached": 856, "swap": {"total": 4031, "used": 28, "free": 4003}})
    );
}

#[test]
fn system_info_and_oom_on_fixtures() {
    let agent = Agent::with_sysroot(&fixture("centos6"), &[]);
    let sys = agent.call("guest-get-system-info", json!({}));
    assert_eq!(sys["os-name"], "CentOS");
    assert_eq!(sys["system-version"], "6.10");
    assert_eq!(sys["kernel-version"], "2.6.32-754.35.1.el6.x86_64");
    assert_eq!(sys["fqdn"], "bc-c6-web01.bc.example.com");
    let oom = agent.call("guest-get-oom-status", json!({}));
    assert_eq!(oom["oom-happened"], true);
    assert_eq!(oom["oom-count"], 1);
    // The detection was recorded in the statedir, keyed by the boot id.
    let state = fs::read_to_string(agent.dir.join("qga-bc-oom.json")).unwrap();
    assert!(
        state.contains("3c1e8a52-6f7b-4d3e-9a41-2b8c5d6e7f10"),
        "{state}"
    );
}

/// On the running system the queries after the first reuse its reading of the kernel
/// log while /dev/kmsg shows nothing logged since (issue 15); they answer what an agent
/// that reads the log afresh answers.
#[test]
#[ignore = "needs root"]
fn oom_status_live_kept_reading_answers_as_a_fresh_one() {
    let agent = Agent::start(&[]);
    let first = agent.call("guest-get-oom-status", json!({}));
    for _ in 0..3 {
        assert_eq!(agent.call("guest-get-oom-status", json!({})), first);
    }
    let items = agent.call("guest-get-monitoring-items", json!({}));
    assert_eq!(items["oom"], first);
    let fresh = Agent::start(&[]);
    assert_eq!(fresh.call("guest-get-oom-status", json!({})), first);
}

#[test]
fn app_status_and_monitoring_items_on_fixtures() {
    let agent = Agent::with_sysroot(&fixture("modern"), &[]);
    let apps = agent.call("guest-get-app-status", json!({}));
    let text = apps["appStatus"].as_str().unwrap();
    assert!(text.starts_with("top - "));
    assert!(text.lines().count() <= 200);
    assert_eq!(apps["processes"].as_array().unwrap().len(), 9);
    assert_eq!(apps["processes"][0]["command"], "python3");
    let items = agent.call("guest-get-monitoring-items", json!({}));
    for key in ["memory", "disk", "oom", "system", "load", "uptime-seconds"] {
        assert!(items.get(key).is_some(), "{key}");
    }
    assert_eq!(items["load"], json!({"1m": 0.52, "5m": 0.58, "15m": 0.59}));
    assert_eq!(items["uptime-seconds"], 604800);
    assert_eq!(items["oom"]["oom-count"], 2);
}

#[test]
fn disk_status_list_format_from_config() {
    let root = TempDir::new("bc-disk-root");
    fs::create_dir_all(root.join("proc/self")).unwrap();
    fs::create_dir_all(root.join("data")).unwrap();
    fs::write(
        root.join("proc/self/mounts"),
        "/dev/vda1 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n/dev/vdb /data xfs ro 0 0\n",
    )
    .unwrap();
    let (_c, conf) = config("[bc]\ndisk-status-format=list\n");
    let agent = Agent::with_sysroot(root.path(), &["-c", conf.to_str().unwrap()]);
    let got = agent.call("guest-get-disk-status", json!({}));
    let list = got.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["mount-place"], "/");
    assert_eq!(list[1]["mount-place"], "/data");
    assert_eq!(list[1]["mount-info"]["writable"], false);
    assert!(list[0]["mount-info"]["total"].is_string());
}

#[test]
fn user_check_pipes_and_globs_work() {
    let agent = Agent::start(&[]);
    let got = agent.call(
        "guest-user-check",
        json!({"command-name": "pipe", "command": "printf 'sda1\\nvdb\\ntmpfs\\n' | grep -E '^[v,s]d' | wc -l; mount | egrep /dev/[v,s]d >/dev/null; echo rc=$?"}),
    );
    assert_eq!(got["command-name"], "pipe");
    let result = got["result"].as_str().unwrap();
    assert!(result.trim_start().starts_with("2\n"), "{result}");
    assert!(result.contains("rc="), "{result}");
    assert_eq!(got["exit-status"], 0);
    assert_eq!(got["timed-out"], false);
}

#[test]
fn user_check_reports_exit_status_and_stderr() {
    let agent = Agent::start(&[]);
    let got = agent.call(
        "guest-user-check",
        json!({"command-name": "fail", "command": "echo oops >&2; exit 3"}),
    );
    assert_eq!(got["result"], "oops\n");
    assert_eq!(got["exit-status"], 3);
}

#[test]
fn user_check_output_is_capped_at_64k() {
    let agent = Agent::start(&[]);
    let got = agent.call(
        "guest-user-check",
        json!({"command-name": "big", "command": "head -c 300000 /dev/zero | tr '\\0' a"}),
    );
    assert_eq!(got["result"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(got["truncated"], true);
    assert_eq!(got["exit-status"], 0);
}

/// True once `pid` no longer runs (gone, or a zombie nobody reaped yet).
fn process_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Children of `parent` that are zombies.
fn zombie_children(parent: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                let Some((_, rest)) = s.rsplit_once(") ") else {
                    return false;
                };
                let f: Vec<&str> = rest.split_whitespace().collect();
                f.first() == Some(&"Z") && f.get(1) == Some(&parent.to_string().as_str())
            })
        })
        .collect()
}

#[test]
fn user_check_timeout_kills_the_group_and_leaves_no_orphan() {
    let (dir, conf) = config("[general]\nuser-check-timeout=1\n");
    let pidfile = dir.join("bg.pid");
    let agent = Agent::start(&["-c", conf.to_str().unwrap()]);
    let script = format!(
        "sleep 300 & echo $! > {}; echo started; sleep 300",
        pidfile.display()
    );
    let got = agent.call(
        "guest-user-check",
        json!({"command-name": "slow", "command": script}),
    );
    assert_eq!(got["exit-status"], -1);
    assert_eq!(got["timed-out"], true);
    assert_eq!(got["result"], "started\n");
    let bg: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_gone(bg), "background child {bg} survived the timeout");
    assert!(
        zombie_children(agent.pid() as u32).is_empty(),
        "agent left a zombie"
    );
    // The agent still serves.
    assert_eq!(agent.call("guest-ping", json!({})), json!({}));
}

#[test]
fn named_checks_and_adhoc_refusal() {
    let (_d, conf) = config(
        "[general]\nuser-check-adhoc=false\n[user-checks]\nroot-fs=mount | grep -c ' / ' >/dev/null; echo checked\n",
    );
    let agent = Agent::start(&["-c", conf.to_str().unwrap()]);
    let got = agent.call("guest-user-check", json!({"command-name": "root-fs"}));
    assert_eq!(got["result"], "checked\n");
    let reply = agent.request(
        &json!({"execute": "guest-user-check", "arguments": {"command-name": "x", "command": "echo hi"}})
            .to_string(),
    );
    let (class, desc) = error_of(&reply);
    assert_eq!(class, "GenericError");
    assert!(desc.contains("user-check-adhoc"), "{desc}");
}

#[test]
fn shell_metacharacters_in_the_name_are_never_run() {
    let dir = TempDir::new("bc-meta");
    let marker = dir.join("pwned");
    let name = format!(
        "x; touch {m}; $(touch {m}) `touch {m}`",
        m = marker.display()
    );
    let agent = Agent::start(&[]);
    // Unknown named check: an error naming it, nothing run.
    let reply = agent.request(
        &json!({"execute": "guest-user-check", "arguments": {"command-name": name}}).to_string(),
    );
    assert_eq!(error_of(&reply).0, "GenericError");
    // Ad hoc: only the command runs; the name comes back verbatim.
    let got = agent.call(
        "guest-user-check",
        json!({"command-name": name, "command": "echo ok"}),
    );
    assert_eq!(got["command-name"], name.as_str());
    assert_eq!(got["result"], "ok\n");
    assert!(!marker.exists(), "the name was interpreted by a shell");
}

#[test]
fn missing_command_name_is_an_argument_error() {
    let agent = Agent::start(&[]);
    let reply = agent.request(r#"{"execute":"guest-user-check","arguments":{"command":"true"}}"#);
    assert_eq!(
        error_of(&reply),
        ("GenericError", "Parameter 'command-name' is missing")
    );
}

/// A directory with a fake `chpasswd` that records its argv and stdin.
fn fake_chpasswd(exit: i32) -> TempDir {
    let dir = TempDir::new("bc-fakebin");
    fs::create_dir_all(dir.join("bin")).unwrap();
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$#\" \"$@\" > {d}/argv\ncat > {d}/stdin\nexit {exit}\n",
        d = dir.path().display()
    );
    let bin = dir.join("bin/chpasswd");
    fs::write(&bin, script).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn fake_path(fake: &TempDir) -> String {
    let bin = fake.join("bin");
    // Guard: the real chpasswd (found after PATH in /usr/sbin) must never run here.
    assert!(
        bin.join("chpasswd")
            .metadata()
            .unwrap()
            .permissions()
            .mode()
            & 0o111
            != 0
    );
    format!("{}:/usr/bin:/bin", bin.display())
}

#[test]
fn change_password_goes_to_chpasswd_stdin_only() {
    let fake = fake_chpasswd(0);
    let path = fake_path(&fake);
    let log = fake.join("agent.log");
    let agent = Agent::start_with_env(&["-v", "-l", log.to_str().unwrap()], &[("PATH", &path)]);
    let password = "S3cret pw:$(id)`x`;|&";
    let got = agent.call("change-password", json!({"new-password": password}));
    assert_eq!(got, json!({"errnum": 0}));
    assert_eq!(
        fs::read_to_string(fake.join("stdin")).unwrap(),
        format!("root:{password}\n")
    );
    assert_eq!(
        fs::read_to_string(fake.join("argv")).unwrap(),
        "0\n",
        "no arguments"
    );
    drop(agent);
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("executing change-password"), "{logged}");
    assert!(
        !logged.contains("S3cret"),
        "the password reached the log: {logged}"
    );
}

#[test]
fn change_password_failures_are_errno_values() {
    let fake = fake_chpasswd(1);
    let path = fake_path(&fake);
    let agent = Agent::start_with_env(&[], &[("PATH", &path)]);
    let got = agent.call("change-password", json!({"new-password": "pw"}));
    assert_eq!(got, json!({"errnum": libc::EIO}));
    let got = agent.call("change-password", json!({"new-password": "a\nb"}));
    assert_eq!(got, json!({"errnum": libc::EINVAL}));
    let long = "x".repeat(4097);
    assert_eq!(
        agent.call("change-password", json!({"new-password": long})),
        json!({"errnum": libc::EINVAL})
    );
}

#[test]
fn change_hostname_in_a_temporary_root() {
    let root = TempDir::new("bc-hostroot");
    common::copy_tree(&fixture("centos6"), root.path());
    let agent = Agent::with_sysroot(root.path(), &[]);
    let got = agent.call("change-hostname", json!({"new-hostname": "web02"}));
    assert_eq!(got, json!({"errnum": 0}));
    let net = fs::read_to_string(root.join("etc/sysconfig/network")).unwrap();
    assert!(net.contains("\nHOSTNAME=web02\n"), "{net}");
    let hosts = fs::read_to_string(root.join("etc/hosts")).unwrap();
    assert!(
        hosts.contains("192.168.10.21 web02.bc.example.com web02\n"),
        "{hosts}"
    );
    assert_eq!(
        fs::read_to_string(root.join("proc/sys/kernel/hostname")).unwrap(),
        "web02\n"
    );
    let sys = agent.call("guest-get-system-info", json!({}));
    assert_eq!(sys["fqdn"], "web02.bc.example.com");
    let bad = agent.call("change-hostname", json!({"new-hostname": "bad name"}));
    assert_eq!(bad, json!({"errnum": libc::EINVAL}));
}

#[test]
fn change_hostname_on_first_boot_keeps_localhost() {
    // issue 14 item 8: fixtures/firstboot, a fresh guest named localhost.localdomain.
    let stock = "127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4\n\
                 ::1         localhost localhost.localdomain localhost6 localhost6.localdomain6\n";
    for (d, file, persisted) in [
        (
            "centos6",
            "etc/sysconfig/network",
            "NETWORKING=yes\nHOSTNAME=db02\n",
        ),
        ("centos7", "etc/hostname", "db02\n"),
    ] {
        let root = TempDir::new("bc-firstboot");
        common::copy_tree(&fixture(&format!("firstboot/{d}")), root.path());
        let agent = Agent::with_sysroot(root.path(), &[]);
        let got = agent.call("change-hostname", json!({"new-hostname": "db02"}));
        assert_eq!(got, json!({"errnum": 0}), "{d}");
        let hosts = fs::read_to_string(root.join("etc/hosts")).unwrap();
        assert_eq!(hosts, format!("{stock}127.0.1.1\tdb02\n"), "{d}");
        assert_eq!(
            fs::read_to_string(root.join(file)).unwrap(),
            persisted,
            "{d}"
        );
        // A second rename updates the name's own line, and localhost still stays.
        let got = agent.call(
            "change-hostname",
            json!({"new-hostname": "db03.example.com"}),
        );
        assert_eq!(got, json!({"errnum": 0}), "{d}");
        let hosts = fs::read_to_string(root.join("etc/hosts")).unwrap();
        assert_eq!(
            hosts,
            format!("{stock}127.0.1.1\tdb03.example.com\n"),
            "{d}"
        );
        let sys = agent.call("guest-get-system-info", json!({}));
        assert_eq!(sys["fqdn"], "db03.example.com", "{d}");
    }
}

#[test]
#[ignore = "needs root"]
fn disk_status_sees_a_read_only_loop_mounted_ext4() {
    let dir = TempDir::new("bc-loop");
    let mnt = dir.join("mnt");
    let _guard = LoopMount::ext4(&dir, 32, &mnt, "loop,ro");
    let agent = Agent::start(&[]);
    let got = agent.call("guest-get-disk-status", json!({}));
    let key = mnt.to_str().unwrap();
    let entry = &got[key];
    assert_eq!(entry["writable"], false, "{got}");
    let total = entry["total"].as_u64().unwrap();
    assert!((20..=32).contains(&total), "{entry}");
    assert!(entry["used"].as_u64().unwrap() < total);
}
