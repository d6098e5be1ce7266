//! Upstream parity I (issue #4), the commands that run programs: guest-shutdown,
//! guest-suspend-*, guest-set-time (hwclock), end to end through the binary with fake
//! programs alone on PATH and a temporary copy of a fixture tree as the root. Only
//! times that fail validation are ever sent: the real clock is never set.

mod common;

use std::path::Path;

use common::{copy_tree, fixture, Agent, FakeBin, TempDir};
use serde_json::{json, Value};

/// A copy of a fixture tree that tests may write to.
fn writable_fixture(distro: &str) -> TempDir {
    let dir = TempDir::new(&format!("root-{distro}"));
    copy_tree(&fixture(distro), dir.path());
    dir
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap()
}

/// The agent on `root` with PATH set to the fake programs only.
fn agent_with_path(root: &Path, bin: &FakeBin) -> Agent {
    Agent::start_with_env(
        &["--sysroot", root.to_str().unwrap()],
        &[("PATH", bin.path())],
    )
}

/// Sends `request`, then a ping: a command without success reply must leave the ping's
/// reply as the next line.
fn silent_on_success(agent: &Agent, request: Value) {
    let mut c = agent.connect();
    c.send(request.to_string().as_bytes());
    c.send(br#"{"execute":"guest-ping"}"#);
    assert_eq!(c.reply(), json!({"return": {}}));
}

fn error_of(agent: &Agent, request: Value) -> String {
    let reply = agent.request(&request.to_string());
    reply["error"]["desc"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {reply}"))
        .to_string()
}

#[test]
fn shutdown_runs_shutdown_with_upstream_argv_and_no_reply() {
    let bin = FakeBin::new();
    bin.program("shutdown", 0);
    let root = writable_fixture("centos6");
    let agent = agent_with_path(root.path(), &bin);
    silent_on_success(&agent, json!({"execute": "guest-shutdown"}));
    for mode in ["halt", "reboot", "powerdown"] {
        silent_on_success(
            &agent,
            json!({"execute": "guest-shutdown", "arguments": {"mode": mode}}),
        );
    }
    assert_eq!(
        bin.calls(),
        [
            "shutdown -h -P +0 hypervisor initiated shutdown",
            "shutdown -h -H +0 hypervisor initiated shutdown",
            "shutdown -h -r +0 hypervisor initiated shutdown",
            "shutdown -h -P +0 hypervisor initiated shutdown",
        ]
    );
}

#[test]
fn shutdown_errors_are_replied() {
    let bin = FakeBin::new();
    bin.program("shutdown", 1);
    let root = writable_fixture("modern");
    let agent = agent_with_path(root.path(), &bin);
    assert_eq!(
        error_of(&agent, json!({"execute": "guest-shutdown"})),
        "child process has failed to shutdown"
    );
    assert_eq!(
        error_of(
            &agent,
            json!({"execute": "guest-shutdown", "arguments": {"mode": "sleep"}})
        ),
        "mode is invalid (valid values are: halt|powerdown|reboot"
    );
    assert_eq!(bin.calls().len(), 1, "an invalid mode runs nothing");
}

#[test]
fn suspend_failures_fall_through_to_the_next_mechanism() {
    let bin = FakeBin::new();
    // Exit 3 says "unit exists but inactive" to the probe and fails the verb.
    bin.program("systemctl", 3).program("pm-is-supported", 0);
    let root = writable_fixture("modern");
    let agent = agent_with_path(root.path(), &bin);
    // systemctl suspend fails, pm-suspend is missing, /sys/power/state takes "mem".
    silent_on_success(&agent, json!({"execute": "guest-suspend-ram"}));
    assert_eq!(
        bin.calls(),
        [
            "systemctl status systemd-suspend",
            "systemctl suspend",
            "pm-is-supported --suspend"
        ]
    );
    assert_eq!(read(root.path(), "sys/power/state"), "mem");
    // Hybrid sleep has no sysfs fallback: the last failure is the answer (qemu-ga
    // would answer nothing, as if the guest had gone to sleep).
    assert_eq!(
        error_of(&agent, json!({"execute": "guest-suspend-hybrid"})),
        "the helper program 'pm-suspend-hybrid' was not found"
    );
}

#[test]
fn suspend_through_systemd_sends_no_reply() {
    let bin = FakeBin::new();
    let root = writable_fixture("modern");
    // A systemctl whose status probe says "inactive" (3) and whose verb succeeds.
    bin.script("systemctl", "[ \"$1\" = status ] && exit 3\nexit 0");
    let agent = agent_with_path(root.path(), &bin);
    silent_on_success(&agent, json!({"execute": "guest-suspend-disk"}));
    silent_on_success(&agent, json!({"execute": "guest-suspend-hybrid"}));
    assert_eq!(
        bin.calls(),
        [
            "systemctl status systemd-hibernate",
            "systemctl hibernate",
            "systemctl status systemd-hybrid-sleep",
            "systemctl hybrid-sleep"
        ]
    );
}

#[test]
fn suspend_falls_back_to_pm_utils() {
    let bin = FakeBin::new();
    bin.program("systemctl", 4)
        .program("pm-is-supported", 0)
        .program("pm-hibernate", 0);
    let root = writable_fixture("centos6");
    let agent = agent_with_path(root.path(), &bin);
    silent_on_success(&agent, json!({"execute": "guest-suspend-disk"}));
    assert_eq!(
        bin.calls(),
        [
            "systemctl status systemd-hibernate",
            "pm-is-supported --hibernate",
            "pm-hibernate"
        ]
    );
}

#[test]
fn suspend_falls_back_to_sys_power_state() {
    let bin = FakeBin::new();
    bin.program("pm-is-supported", 1);
    let root = writable_fixture("centos6");
    let agent = agent_with_path(root.path(), &bin);
    silent_on_success(&agent, json!({"execute": "guest-suspend-ram"}));
    assert_eq!(read(root.path(), "sys/power/state"), "mem");
    std::fs::write(root.path().join("sys/power/state"), "standby\n").unwrap();
    assert_eq!(
        error_of(&agent, json!({"execute": "guest-suspend-disk"})),
        "the requested suspend mode is not supported by the guest"
    );
    assert_eq!(
        error_of(&agent, json!({"execute": "guest-suspend-hybrid"})),
        "the requested suspend mode is not supported by the guest"
    );
}

#[test]
fn set_time_without_rtc_device_runs_hwclock() {
    let bin = FakeBin::new();
    bin.program("hwclock", 0);
    let root = writable_fixture("centos7");
    let agent = agent_with_path(root.path(), &bin);
    assert_eq!(agent.call("guest-set-time", json!({})), json!({}));
    assert_eq!(bin.calls(), ["hwclock -s"]);
}

#[test]
fn set_time_hwclock_failure_is_reported() {
    let bin = FakeBin::new();
    bin.program("hwclock", 1);
    let root = writable_fixture("centos6");
    let agent = agent_with_path(root.path(), &bin);
    assert_eq!(
        error_of(&agent, json!({"execute": "guest-set-time"})),
        "hwclock failed to set system time from hardware clock"
    );
}

/// Only times settimeofday would refuse or that fail validation: never the real clock.
#[test]
fn set_time_validates_the_range_before_touching_the_clock() {
    let bin = FakeBin::new();
    bin.program("hwclock", 0);
    let root = writable_fixture("ubuntu1404");
    let agent = agent_with_path(root.path(), &bin);
    for ns in [
        -1_000_000_000i64,
        3_155_760_000_000_000_000,
        i64::MAX,
        i64::MIN,
    ] {
        assert_eq!(
            error_of(
                &agent,
                json!({"execute": "guest-set-time", "arguments": {"time": ns}})
            ),
            "Invalid time",
            "{ns}"
        );
    }
    assert!(bin.calls().is_empty());
    assert_eq!(
        error_of(
            &agent,
            json!({"execute": "guest-set-time", "arguments": {"time": "soon"}})
        ),
        "Invalid parameter type for 'time', expected: integer"
    );
}
