//! Serial transports through a pseudo-terminal: the agent opens the pty's slave as its
//! isa-serial or virtio-serial port, the test plays the host on the master side.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent_command, TempDir};
use qga::protocol::framer::{Frame, Framer};
use serde_json::Value;

/// Opens a pty master and returns it with its slave's path.
fn open_pty() -> (File, String) {
    let master = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open("/dev/ptmx")
        .unwrap();
    let fd = master.as_raw_fd();
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `fd` is an open ptmx descriptor; `name` is a writable buffer of the given size.
    unsafe {
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
    }
    // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    (master, path.to_str().unwrap().to_string())
}

struct SerialAgent {
    child: Child,
    _dir: TempDir,
}

impl SerialAgent {
    /// Starts the agent on `path` with the state directory `dir`, plus `extra` options.
    fn start_in(dir: TempDir, method: &str, path: &str, extra: &[&str]) -> SerialAgent {
        let child = agent_command()
            .args(extra)
            .args(["-m", method, "-p", path, "-t"])
            .arg(dir.path())
            .env("QGA_CONF", "/nonexistent/qga.conf")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        SerialAgent { child, _dir: dir }
    }

    fn start(method: &str, path: &str) -> SerialAgent {
        SerialAgent::start_in(TempDir::new("serial"), method, path, &[])
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SerialAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends guest-sync-delimited until the agent answers with our id (the agent may not
/// have opened the port yet; a line discipline may echo our own bytes back).
fn sync(master: &mut File, id: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let request =
        format!("\u{0}{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{id}}}}}\n");
    let mut framer = Framer::default();
    loop {
        assert!(Instant::now() < deadline, "no sync reply");
        let _ = master.write_all(request.as_bytes());
        if read_until(master, &mut framer, Duration::from_millis(300), |v| {
            v["return"] == id
        })
        .is_some()
        {
            return;
        }
    }
}

/// Reads frames until one satisfies `want` or `wait` passes.
fn read_until(
    master: &mut File,
    framer: &mut Framer,
    wait: Duration,
    want: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = Instant::now() + wait;
    let mut pending = Vec::new();
    while Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        match master.read(&mut buf) {
            Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
        while !pending.is_empty() {
            let (n, frame) = framer.feed(&pending);
            pending.drain(..n);
            if let Some(Frame::Text(t)) = frame {
                if let Ok(v) = serde_json::from_slice::<Value>(&t) {
                    if want(&v) {
                        return Some(v);
                    }
                }
            }
        }
    }
    None
}

fn context_switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn isa_serial_serves_over_a_raw_line() {
    let (mut master, slave) = open_pty();
    let agent = SerialAgent::start("isa-serial", &slave);
    sync(&mut master, 31);
    master
        .write_all(br#"{"execute":"guest-ping","id":"tty"}"#)
        .unwrap();
    let mut framer = Framer::default();
    let reply = read_until(&mut master, &mut framer, Duration::from_secs(10), |v| {
        v["id"] == "tty"
    });
    assert_eq!(reply, Some(serde_json::json!({"return": {}, "id": "tty"})));
    drop(agent);
}

#[test]
fn virtio_serial_without_host_does_not_spin_and_still_exits_on_sigterm() {
    let (mut master, slave) = open_pty();
    let mut agent = SerialAgent::start("virtio-serial", &slave);
    sync(&mut master, 32);
    // The host side goes away: the port now reports a hang-up on every poll.
    drop(master);
    std::thread::sleep(Duration::from_millis(300));
    let before = context_switches(agent.pid());
    std::thread::sleep(Duration::from_millis(2500));
    let woken = context_switches(agent.pid()) - before;
    // One re-check per second is the design; a spinning loop would show thousands.
    assert!(woken <= 8, "{woken} wake-ups in 2.5 s without a host");

    let rc = Command::new("kill")
        .arg(agent.pid().to_string())
        .status()
        .unwrap();
    assert!(rc.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agent ignored SIGTERM while the host was away"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn retry_path_waits_for_a_missing_port_and_then_serves() {
    let (mut master, slave) = open_pty();
    let dir = TempDir::new("retry");
    let link = dir.join("org.qemu.guest_agent.0");
    let link_s = link.to_str().unwrap().to_string();
    let log = dir.join("qga.log");
    let log_s = log.to_str().unwrap().to_string();
    let mut agent = SerialAgent::start_in(dir, "isa-serial", &link_s, &["-r", "-l", &log_s]);
    // Two retries (every 5 s) pass without the port.
    std::thread::sleep(Duration::from_millis(10_500));
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "agent gave up on a missing port"
    );
    // The port appears (hot-plug): the agent opens it on its next retry.
    std::os::unix::fs::symlink(&slave, &link).unwrap();
    sync(&mut master, 33);
    // The outage is logged once, and its end once, not every retry (issue #12).
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("channel not available").count(), 1, "{text}");
    assert_eq!(text.matches("is back").count(), 1, "{text}");
}
