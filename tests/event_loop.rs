//! The loop keeps turning while a request waits for a child (issue #8 §2): SIGTERM ends
//! the agent and the child's whole group at once, replies stay in request order, and a
//! child past its deadline is answered without waiting for it to die.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Agent, TempDir};

/// Waits for `pid`'s process to be gone or a zombie (reaped by init later), up to `max`.
fn gone_within(pid: i32, max: Duration) -> bool {
    let until = Instant::now() + max;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(") ").next().map(|r| r.chars().next()));
        if matches!(state, None | Some(Some('Z'))) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_config(dir: &TempDir, text: &str) -> String {
    let path = dir.join("qga.conf");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn read_pids(path: &std::path::Path) -> Vec<i32> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let pids: Vec<i32> = text
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if pids.len() == 2 {
                return pids;
            }
        }
        assert!(Instant::now() < until, "the check never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_during_a_user_check_ends_the_agent_and_the_check_group() {
    let conf_dir = TempDir::new("loop-term");
    let conf = write_config(&conf_dir, "[general]\nuser-check-timeout=60\n");
    let mut agent = Agent::start(&["-c", &conf]);
    let pids = conf_dir.join("pids");
    let mut c = agent.connect();
    // The shell and a background child in its group, both far longer than the test.
    let script = format!(
        "sleep 50 & echo $$ $! > {}.tmp; mv {0}.tmp {0}; wait",
        pids.display()
    );
    let req = serde_json::json!({"execute": "guest-user-check",
        "arguments": {"command-name": "long", "command": script}});
    c.send(req.to_string().as_bytes());
    let started = read_pids(&pids);

    let t0 = Instant::now();
    // SAFETY: kill takes plain integers; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(agent.pid(), libc::SIGTERM) }, 0);
    let until = t0 + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < until,
            "agent still running after SIGTERM while a check runs"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    println!(
        "SIGTERM during a 50 s user check: agent exited in {} ms",
        t0.elapsed().as_millis()
    );
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    for pid in started {
        assert!(
            gone_within(pid, Duration::from_secs(10)),
            "check process {pid} outlived the agent"
        );
    }
}

#[test]
fn replies_stay_in_request_order_while_a_check_runs() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let check = serde_json::json!({"execute": "guest-user-check", "id": "check",
        "arguments": {"command-name": "slow", "command": "sleep 1; echo slept"}});
    let batch = format!(
        "{check}{}{}",
        r#"{"execute":"guest-ping","id":"ping"}"#,
        r#"{"execute":"guest-sync","arguments":{"id":9}}"#
    );
    c.stream.write_all(batch.as_bytes()).unwrap();
    let first = c.reply();
    assert_eq!(first["id"], "check", "{first}");
    assert_eq!(first["return"]["result"], "slept\n");
    assert_eq!(c.reply()["id"], "ping");
    assert_eq!(c.reply()["return"], 9);
}

#[test]
fn a_check_past_its_deadline_is_answered_at_the_deadline() {
    let conf_dir = TempDir::new("loop-deadline");
    let conf = write_config(&conf_dir, "[general]\nuser-check-timeout=1\n");
    let agent = Agent::start(&["-c", &conf]);
    let pids = conf_dir.join("pids");
    let t0 = Instant::now();
    // Ignores SIGTERM and holds the output pipe: only a group SIGKILL ends it.
    let script = format!(
        "trap '' TERM; sleep 50 & echo $$ $! > {}.tmp; mv {0}.tmp {0}; wait",
        pids.display()
    );
    let got = agent.call(
        "guest-user-check",
        serde_json::json!({"command-name": "stuck", "command": script}),
    );
    println!(
        "1 s deadline, check sleeping 50 s: answered in {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(got["timed-out"], true);
    assert_eq!(got["exit-status"], -1);
    for pid in read_pids(&pids) {
        assert!(
            gone_within(pid, Duration::from_secs(10)),
            "{pid} survived its deadline"
        );
    }
    // And the agent still serves.
    assert_eq!(
        agent.call("guest-ping", serde_json::json!({})),
        serde_json::json!({})
    );
}

/// A client that leaves between its request and the reply (issue #12): no SIGPIPE death,
/// and the next client gets its own reply, not the one nobody read.
#[test]
fn a_client_leaving_before_its_reply_harms_nobody() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let check = serde_json::json!({"execute": "guest-user-check", "id": "gone",
        "arguments": {"command-name": "slow", "command": "sleep 0.3; echo late"}});
    c.send(check.to_string().as_bytes());
    drop(c);
    let mut next = agent.connect();
    next.send(br#"{"execute":"guest-ping","id":"mine"}"#);
    let reply = next.reply();
    assert_eq!(reply["id"], "mine", "{reply}");
    drop(next);
    assert_eq!(agent.call("guest-sync", serde_json::json!({"id": 3})), 3);
}
