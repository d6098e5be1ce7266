//! guest-exec through the binary (issue #9): the child runs while the agent serves, its
//! pipes are fed and drained from the loop, output is capped, a background grandchild
//! does not hold the status, and a thousand execs leave no zombie and no fd behind.
//! Reply shapes and texts against qemu-ga 7.2 are in upstream_compat.rs.

mod common;

use std::time::{Duration, Instant};

use common::Agent;
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    qga::base64::encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    qga::base64::decode(v.as_str().unwrap_or("")).unwrap()
}

fn exec(agent: &Agent, args: Value) -> Value {
    agent.call("guest-exec", args)["pid"].clone()
}

/// Polls guest-exec-status until exited (bounded), returning the exited status.
fn wait_exited(agent: &Agent, pid: &Value) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let st = agent.call("guest-exec-status", json!({"pid": pid}));
        if st["exited"] == true {
            return st;
        }
        assert!(Instant::now() < until, "pid {pid} never exited: {st}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn echo_and_its_status_once() {
    let agent = Agent::start(&[]);
    let pid = exec(
        &agent,
        json!({"path": "/bin/echo", "arg": ["hello", "world"], "capture-output": true}),
    );
    let st = wait_exited(&agent, &pid);
    assert_eq!(st["exitcode"], 0);
    assert_eq!(unb64(&st["out-data"]), b"hello world\n");
    let again = agent
        .request(&json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}).to_string());
    assert_eq!(again["error"]["desc"], "Invalid parameter 'pid'");
}

/// The host's path and arguments are an argv, never shell text (README.md, "Security
/// model"): metacharacters reach the program verbatim and nothing they name runs.
#[test]
fn shell_text_in_path_and_args_is_never_interpreted() {
    let dir = common::TempDir::new("exec-meta");
    let marker = dir.join("pwned");
    let m = marker.display();
    let args = [
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("; touch {m}"),
        format!("| touch {m} && touch {m}"),
    ];
    let agent = Agent::start(&[]);
    let pid = exec(
        &agent,
        json!({"path": "/bin/echo", "arg": args, "capture-output": true}),
    );
    let st = wait_exited(&agent, &pid);
    assert_eq!(
        unb64(&st["out-data"]),
        format!("{}\n", args.join(" ")).as_bytes()
    );
    let reply = agent.request(
        &json!({"execute": "guest-exec", "arguments": {"path": format!("/bin/true; touch {m}")}})
            .to_string(),
    );
    assert!(reply["error"].is_object(), "{reply}");
    assert!(!marker.exists(), "host text was interpreted by a shell");
}

#[test]
fn twenty_mib_of_output_is_capped_without_stalling_the_agent() {
    let agent = Agent::start(&[]);
    let pid = exec(
        &agent,
        json!({"path": "/bin/sh", "arg": ["-c", "head -c 20971520 /dev/zero; echo done >&2"],
               "capture-output": true}),
    );
    assert_eq!(agent.call("guest-ping", json!({})), json!({}));
    let st = wait_exited(&agent, &pid);
    assert_eq!(st["exitcode"], 0);
    assert_eq!(st["out-truncated"], true);
    assert_eq!(unb64(&st["out-data"]).len(), 16 * 1024 * 1024);
    assert_eq!(st["err-truncated"], false);
    assert_eq!(unb64(&st["err-data"]), b"done\n");
}

#[test]
fn one_mib_of_input_is_fed_while_output_is_read() {
    let agent = Agent::start(&[]);
    // cat echoes as it reads: with both pipes far beyond a pipe buffer, a feeder that
    // wrote all input before reading output would deadlock.
    let input: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let pid = exec(
        &agent,
        json!({"path": "/bin/cat", "input-data": b64(&input), "capture-output": "merged"}),
    );
    let st = wait_exited(&agent, &pid);
    assert_eq!(st["exitcode"], 0);
    assert!(unb64(&st["out-data"]) == input, "cat returned its input");
    assert!(st.get("err-data").is_none());
}

#[test]
fn capture_modes() {
    let agent = Agent::start(&[]);
    let script = json!(["-c", "echo out; echo err >&2"]);
    let run = |mode: Value| {
        let pid = exec(
            &agent,
            json!({"path": "/bin/sh", "arg": script, "capture-output": mode}),
        );
        let st = wait_exited(&agent, &pid);
        (
            String::from_utf8(unb64(&st["out-data"])).unwrap(),
            String::from_utf8(unb64(&st["err-data"])).unwrap(),
        )
    };
    assert_eq!(run(json!("none")), ("".into(), "".into()));
    assert_eq!(run(json!("stdout")), ("out\n".into(), "".into()));
    assert_eq!(run(json!("stderr")), ("".into(), "err\n".into()));
    assert_eq!(run(json!("separated")), ("out\n".into(), "err\n".into()));
    assert_eq!(run(json!("merged")), ("out\nerr\n".into(), "".into()));
}

#[test]
fn a_signal_is_reported_as_signal() {
    let agent = Agent::start(&[]);
    let pid = exec(
        &agent,
        json!({"path": "/bin/sh", "arg": ["-c", "kill -TERM $$"]}),
    );
    let st = wait_exited(&agent, &pid);
    assert_eq!(st, json!({"exited": true, "signal": 15}));
}

/// The agent blocks the signals it waits for and catches SIGHUP; what it runs must
/// start with nothing blocked and SIGHUP at its default.
#[test]
fn children_start_with_default_signals() {
    let agent = Agent::start(&[]);
    let pid = exec(
        &agent,
        json!({"path": "/bin/grep", "arg": ["^Sig[BI]", "/proc/self/status"], "capture-output": true}),
    );
    let exec_status = String::from_utf8(unb64(&wait_exited(&agent, &pid)["out-data"])).unwrap();
    let check = agent.call(
        "guest-user-check",
        json!({"command-name": "sig", "command": "exec grep '^Sig[BI]' /proc/self/status"}),
    );
    for text in [exec_status.as_str(), check["result"].as_str().unwrap()] {
        let field = |name: &str| {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(field("SigBlk:"), 0, "{text}");
        assert_eq!(field("SigIgn:") & 1 << (libc::SIGHUP - 1), 0, "{text}");
    }
}

#[test]
fn a_background_grandchild_does_not_hold_the_status() {
    let agent = Agent::start(&[]);
    let pid = exec(
        &agent,
        json!({"path": "/bin/sh", "arg": ["-c", "sleep 600 & echo $!"], "capture-output": true}),
    );
    let st = wait_exited(&agent, &pid);
    assert_eq!(st["exitcode"], 0);
    let sleeper: i32 = String::from_utf8(unb64(&st["out-data"]))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // It was the host's to start: the agent leaves it running.
    assert!(std::path::Path::new(&format!("/proc/{sleeper}")).exists());
    // SAFETY: kill takes plain integers; the pid was just reported by our own child.
    unsafe { libc::kill(sleeper, libc::SIGKILL) };
}

#[test]
fn ping_is_answered_while_a_child_runs() {
    let agent = Agent::start(&[]);
    let pid = exec(&agent, json!({"path": "/bin/sleep", "arg": ["5"]}));
    let t0 = Instant::now();
    assert_eq!(agent.call("guest-ping", json!({})), json!({}));
    println!(
        "guest-ping while a sleep 5 runs: {} µs",
        t0.elapsed().as_micros()
    );
    let st = agent.call("guest-exec-status", json!({"pid": pid}));
    assert_eq!(st, json!({"exited": false}), "the child was still running");
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn zombie_children(pid: i32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let rest = stat.rsplit(") ").next().unwrap_or("");
            let mut f = rest.split_whitespace();
            let state = f.next();
            let ppid = f.next().and_then(|p| p.parse::<i32>().ok());
            state == Some("Z") && ppid == Some(pid)
        })
        .count()
}

#[test]
fn a_thousand_execs_leave_no_zombie_and_no_fd() {
    let agent = Agent::start(&[]);
    let pid = agent.pid();
    // One connection throughout, so the agent's fds are counted in the same state.
    let mut c = agent.connect();
    let mut call = |command: &str, args: Value| {
        c.send(
            json!({"execute": command, "arguments": args})
                .to_string()
                .as_bytes(),
        );
        c.reply()["return"].clone()
    };
    let mut run = |capture: Value| {
        let child = call(
            "guest-exec",
            json!({"path": "/bin/true", "capture-output": capture}),
        )["pid"]
            .clone();
        let until = Instant::now() + Duration::from_secs(60);
        while call("guest-exec-status", json!({"pid": child}))["exited"] != true {
            assert!(Instant::now() < until, "{child} never exited");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    run(json!(true));
    let fds_before = fd_count(pid);
    for i in 0..1000 {
        run(json!(i % 2 == 0));
    }
    let (fds_after, zombies) = (fd_count(pid), zombie_children(pid));
    println!("after 1,000 execs: {zombies} zombies, fds {fds_before} -> {fds_after}");
    assert_eq!(zombies, 0);
    assert_eq!(fds_after, fds_before);
}
