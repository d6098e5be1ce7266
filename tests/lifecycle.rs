//! The process around the protocol: options and config file, -D round trip, allow and
//! block lists, pidfile locking, daemonizing, signals, the host client, serial channels.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent_command, client_command, Agent, TempDir};
use serde_json::json;

fn qemu_ga(args: &[&str]) -> std::process::Output {
    agent_command()
        .args(args)
        .env("QGA_CONF", "/nonexistent/qga.conf")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "agent did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(pid: i32, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn bad_options_print_one_line_and_exit_1() {
    for args in [
        &["-x"][..],
        &["-m", "carrier-pigeon"],
        &["-m", "unix-listen"],
        &["-t", "relative/dir", "-m", "unix-listen", "-p", "/tmp/x"],
        &["-c", "/nonexistent/explicit.conf"],
    ] {
        let out = qemu_ga(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("qemu-ga: "), "{err}");
    }
}

#[test]
fn block_help_lists_the_registry() {
    for flag in ["-b", "-a", "--blacklist"] {
        let out = qemu_ga(&[flag, "help"]);
        assert!(out.status.success());
        let names = String::from_utf8(out.stdout).unwrap();
        let names: Vec<_> = names.lines().collect();
        let expected: Vec<_> = qga::registry::COMMANDS.iter().map(|c| c.name).collect();
        assert_eq!(names, expected);
    }
}

#[test]
fn version_and_help() {
    // issue 14 item 1: the emulated qemu-ga release first, then ours.
    let out = qemu_ga(&["-V"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "QEMU Guest Agent 7.2.0 (qga-bc {})\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let out = qemu_ga(&["--help"]);
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("--retry-path"));
}

#[test]
fn dump_conf_merges_file_and_options_and_reads_back_the_same() {
    let dir = TempDir::new("conf");
    let conf = dir.join("qemu-ga.conf");
    std::fs::write(
        &conf,
        "[general]\nmethod=unix-listen\npath=/tmp/from-file\nblacklist=guest-ping\nverbose=1\n\
         [user-checks]\ndisk=df -h\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let out = qemu_ga(&["-c", conf, "-p", "/tmp/from-cli", "-b", "guest-info", "-D"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8(out.stdout).unwrap();
    assert!(dump.contains("path=/tmp/from-cli\n"), "{dump}");
    assert!(
        dump.contains("block-rpcs=guest-ping,guest-info\n"),
        "{dump}"
    );
    assert!(dump.contains("verbose=true\n"), "{dump}");
    assert!(dump.contains("[user-checks]\ndisk=df -h\n"), "{dump}");

    // The first line says which file was read; the rest reads back the same.
    assert_eq!(
        dump.lines().next(),
        Some(format!("# config file '{conf}'").as_str())
    );
    let again = dir.join("again.conf");
    std::fs::write(&again, &dump).unwrap();
    let out = qemu_ga(&["-c", again.to_str().unwrap(), "-D"]);
    let body = |d: &str| d.split_once('\n').unwrap().1.to_string();
    assert_eq!(body(&String::from_utf8(out.stdout).unwrap()), body(&dump));
}

#[test]
fn unknown_config_keys_are_warned_about_not_fatal() {
    let dir = TempDir::new("conf");
    let conf = dir.join("qemu-ga.conf");
    std::fs::write(
        &conf,
        "[general]\nverbose=1\nkey-of-qemu-ga-11=x\n[bc]\nnew-thing=1\n",
    )
    .unwrap();
    let out = qemu_ga(&[
        "-c",
        conf.to_str().unwrap(),
        "-m",
        "unix-listen",
        "-p",
        "/s",
        "-D",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("unknown key 'key-of-qemu-ga-11'"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown key 'new-thing'"), "{stderr}");
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("verbose=true\n"));

    // And the running agent starts, logging which file it read and the warning.
    let log = dir.join("qga.log");
    let agent = Agent::start_with_env(
        &["-v", "-l", log.to_str().unwrap()],
        &[("QGA_CONF", conf.to_str().unwrap())],
    );
    assert_eq!(agent.call("guest-ping", json!({})), json!({}));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("configuration: config file '{}'", conf.display())),
        "{text}"
    );
    assert!(text.contains("unknown key 'key-of-qemu-ga-11'"), "{text}");
}

#[test]
fn dump_names_a_missing_default_file() {
    let out = qemu_ga(&["-m", "unix-listen", "-p", "/s", "-D"]);
    let dump = String::from_utf8(out.stdout).unwrap();
    assert!(
        dump.starts_with("# no config file ('/nonexistent/qga.conf' missing)\n[general]\n"),
        "{dump}"
    );
}

#[test]
fn allow_list_then_block_list() {
    let agent = Agent::start(&["-a", "guest-ping,guest-info,guest-sync", "-b", "guest-sync"]);
    assert_eq!(agent.call("guest-ping", json!({})), json!({}));
    for name in ["guest-sync", "guest-sync-delimited"] {
        let reply = agent.request(&format!(r#"{{"execute":"{name}","arguments":{{"id":1}}}}"#));
        assert_eq!(
            reply,
            json!({"error": {"class": "CommandNotFound",
                   "desc": format!("Command {name} has been disabled: the command is not allowed")}})
        );
    }
    let info = agent.call("guest-info", json!({}));
    let enabled: Vec<_> = info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["enabled"] == true)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(enabled, ["guest-ping", "guest-info"]);
}

#[test]
fn config_file_block_list_applies() {
    let dir = TempDir::new("conf-block");
    let conf = dir.join("c.conf");
    std::fs::write(&conf, "[general]\nblock-rpcs=guest-ping\n").unwrap();
    let agent = Agent::start(&["-c", conf.to_str().unwrap()]);
    let reply = agent.request(r#"{"execute":"guest-ping"}"#);
    assert_eq!(reply["error"]["class"], "CommandNotFound");
}

#[test]
fn pidfile_is_locked_and_removed_on_sigterm() {
    let dir = TempDir::new("pid");
    let pidfile = dir.join("qga.pid");
    let pidfile_s = pidfile.to_str().unwrap().to_string();
    let mut agent = Agent::start(&["-f", &pidfile_s]);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, agent.pid());

    let sock2 = dir.join("second.sock");
    let out = qemu_ga(&[
        "-m",
        "unix-listen",
        "-p",
        sock2.to_str().unwrap(),
        "-f",
        &pidfile_s,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("locked") && err.contains(&pid.to_string()),
        "{err}"
    );
    // The first instance still owns and serves.
    assert_eq!(agent.call("guest-ping", json!({})), json!({}));

    kill(agent.pid(), libc::SIGTERM);
    let status = wait_exit(&mut agent.child);
    assert_eq!(status.code(), Some(0));
    assert!(!pidfile.exists(), "pidfile left behind");
    assert!(!agent.socket.exists(), "socket left behind");
}

#[test]
fn sigint_exits_cleanly_too() {
    let mut agent = Agent::start(&[]);
    kill(agent.pid(), libc::SIGINT);
    assert_eq!(wait_exit(&mut agent.child).code(), Some(0));
}

#[test]
fn daemonize_returns_once_serving_and_writes_the_pidfile() {
    let dir = TempDir::new("daemon");
    let sock = dir.join("d.sock");
    let pidfile = dir.join("d.pid");
    let log = dir.join("d.log");
    // Relative paths, as `make run` passes them: they mean the caller's directory even
    // though the daemon changes to "/".
    let status = agent_command()
        .args([
            "-d",
            "-v",
            "-m",
            "unix-listen",
            "-p",
            "d.sock",
            "-f",
            "d.pid",
            "-l",
            "d.log",
        ])
        .arg("-t")
        .arg(dir.path())
        .current_dir(dir.path())
        .env("QGA_CONF", "/nonexistent/qga.conf")
        .status()
        .unwrap();
    assert!(status.success());
    // The parent returned only after the child was serving: no retry loop needed.
    let mut c = common::Client::connect(&sock);
    c.send(br#"{"execute":"guest-ping"}"#);
    assert_eq!(c.reply(), json!({"return": {}}));
    drop(c);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
    // fields[3] is the session id: setsid made the daemon its own session leader.
    assert_eq!(fields[3], pid.to_string());
    kill(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pidfile.exists() {
        assert!(Instant::now() < deadline, "daemon did not clean up");
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains(": debug: executing guest-ping"), "{log}");
}

#[test]
fn daemonize_reports_startup_failure_to_the_caller() {
    let dir = TempDir::new("daemon-fail");
    let out = agent_command()
        .args([
            "-d",
            "-m",
            "unix-listen",
            "-p",
            "/nonexistent/dir/sock",
            "-f",
        ])
        .arg(dir.join("p.pid"))
        .env("QGA_CONF", "/nonexistent/qga.conf")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/sock"));
}

#[test]
fn verbose_log_names_commands_but_not_arguments() {
    let dir = TempDir::new("log");
    let log = dir.join("qga.log");
    let agent = Agent::start(&["-v", "-l", log.to_str().unwrap()]);
    agent.call("guest-sync", json!({"id": 987654321}));
    drop(agent);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("debug: executing guest-sync"), "{text}");
    assert!(!text.contains("987654321"), "{text}");
    let first = text.lines().next().unwrap();
    let stamp = first.split(':').next().unwrap();
    assert!(stamp.contains('.') && stamp.replace('.', "").bytes().all(|b| b.is_ascii_digit()));
}

#[test]
fn client_prints_return_and_uses_exit_status() {
    let agent = Agent::start(&[]);
    let sock = agent.socket.to_str().unwrap();
    // Leave a half-sent request behind: the client's 0xFF must flush it.
    {
        let mut c = agent.connect();
        c.send(br#"{"execute":"guest-sync","arguments":{"#);
    }
    let out = client_command()
        .args(["--socket", sock, "guest-sync", r#"{"id": 4242}"#])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "4242\n");

    let out = client_command()
        .args(["--socket", sock, "guest-no-such-command"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("has not been found"));

    let out = client_command()
        .args(["--socket", "/nonexistent/sock", "guest-ping"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn client_on_a_closed_stdout_exits_quietly() {
    let agent = Agent::start(&[]);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = client_command()
        .env("QGA_SOCKET", &agent.socket)
        .arg("guest-info")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn client_defaults_outlast_a_user_check_and_name_no_relative_socket() {
    let out = client_command().arg("--help").output().unwrap();
    let usage = String::from_utf8(out.stdout).unwrap();
    assert!(
        usage.contains("default $QGA_SOCKET, else /var/run/qemu-ga.sock"),
        "{usage}"
    );
    assert!(usage.contains("(default 30)"), "{usage}");
    let out = client_command()
        .env_remove("QGA_SOCKET")
        .arg("guest-ping")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/var/run/qemu-ga.sock"), "{stderr}");
}

#[test]
fn client_times_out_with_status_2() {
    // A listener that accepts and never answers.
    let dir = TempDir::new("mute");
    let path = dir.join("mute.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let out = client_command()
        .args([
            "--socket",
            path.to_str().unwrap(),
            "--timeout",
            "0.3",
            "guest-ping",
        ])
        .output()
        .unwrap();
    drop(listener);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("timed out"));
}

/// logrotate moves the log away and sends SIGHUP: the agent opens a new file by the
/// same path and logs there from then on.
#[test]
fn sighup_reopens_the_log_file() {
    let dir = TempDir::new("logrotate");
    let log = dir.join("qga.log");
    let rotated = dir.join("qga.log.1");
    let agent = Agent::start(&["-v", "-l", log.to_str().unwrap()]);
    agent.call("guest-ping", json!({}));
    std::fs::rename(&log, &rotated).unwrap();
    kill(agent.pid(), libc::SIGHUP);
    let until = Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        assert!(Instant::now() < until, "no new log file after SIGHUP");
        std::thread::sleep(Duration::from_millis(10));
    }
    agent.call("guest-get-time", json!({}));
    drop(agent);
    let new = std::fs::read_to_string(&log).unwrap();
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(new.contains("info: log file reopened (SIGHUP)"), "{new}");
    assert!(new.contains("executing guest-get-time"), "{new}");
    assert!(old.contains("executing guest-ping"), "{old}");
    assert!(!old.contains("guest-get-time"), "{old}");
}
