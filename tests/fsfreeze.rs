//! guest-fsfreeze-* on real filesystems: two ext4 images on loop devices, mounted below
//! a temporary sysroot whose proc/self/mountinfo lists only them (and a bind mount of
//! one), so even guest-fsfreeze-freeze ("everything") can only reach them; the test
//! machine's own filesystems are never in the list. Every fixture thaws its mounts with
//! util-linux fsfreeze(8) on drop, so a failing assertion never leaves them frozen.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Agent, LoopMount, TempDir};
use serde_json::{json, Value};

/// Two mounted ext4 images and a bind mount of the first, below `root`.
struct Mounts {
    /// Dropped first, last mounted first: the bind mount before what is under it.
    _mounted: Vec<LoopMount>,
    root: TempDir,
}

/// The mountpoints as the agent sees them (below the sysroot).
const A: &str = "/mnt/a";
const B: &str = "/mnt/b";
const BIND: &str = "/mnt/bind";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

impl Mounts {
    fn new() -> Mounts {
        let root = TempDir::new("fsfreeze");
        let mut mounted = Vec::new();
        for name in ["a", "b"] {
            let dir = root.join(&format!("mnt/{name}"));
            mounted.push(LoopMount::ext4(&root, 32, &dir, "loop"));
        }
        let sub = root.join("mnt/a/sub");
        std::fs::create_dir(&sub).unwrap();
        mounted.push(LoopMount::bind(&sub, &root.join("mnt/bind")));
        // Vec drops front to back: keep the last mounted first.
        mounted.reverse();
        let m = Mounts {
            _mounted: mounted,
            root,
        };
        let mut info = String::new();
        for (i, rel) in [A, B, BIND].iter().enumerate() {
            let dev = std::fs::metadata(m.dir(rel)).unwrap().dev();
            let (major, minor) = (libc::major(dev), libc::minor(dev));
            info.push_str(&format!(
                "{} 1 {major}:{minor} / {rel} rw,relatime - ext4 /dev/loop{i} rw\n",
                30 + i
            ));
        }
        std::fs::create_dir_all(m.root.join("proc/self")).unwrap();
        std::fs::write(m.root.join("proc/self/mountinfo"), info).unwrap();
        m
    }

    /// The real path of a mountpoint.
    fn dir(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    fn agent(&self, extra: &[&str]) -> Agent {
        Agent::with_sysroot(self.root.path(), extra)
    }
}

fn req(command: &str, args: Value) -> String {
    json!({"execute": command, "arguments": args}).to_string()
}

fn status(agent: &Agent) -> Value {
    agent.call("guest-fsfreeze-status", json!({}))
}

/// A child writing a file below `dir` (its open for writing waits on a frozen
/// filesystem; no sync(1), which would wait for other tests' frozen filesystems).
fn writer(dir: &Path) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg("echo data > \"$1/written\"")
        .arg("sh")
        .arg(dir)
        .spawn()
        .unwrap()
}

/// The scheduler state of `pid` ('D': blocked in the kernel, as on a frozen filesystem).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Waits until `child` blocks in the kernel; it must not exit meanwhile.
fn wait_blocked(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(child.id()) != Some('D') {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the writer finished while frozen"
        );
        assert!(Instant::now() < deadline, "the writer never blocked");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(child.try_wait().unwrap().is_none());
}

/// Waits (bounded) until `child` exits successfully.
fn wait_done(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the writer still blocks: not thawed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn enabled(info: &Value) -> Vec<String> {
    let mut names: Vec<String> = info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["enabled"] == json!(true))
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
#[ignore = "needs root"]
fn freeze_blocks_writers_until_thaw() {
    let m = Mounts::new();
    let agent = m.agent(&[]);
    assert_eq!(status(&agent), json!("thawed"));
    let t = Instant::now();
    // The bind mount of /mnt/a is not counted again.
    assert_eq!(agent.call("guest-fsfreeze-freeze", json!({})), json!(2));
    let freeze_time = t.elapsed();
    assert_eq!(status(&agent), json!("frozen"));
    assert!(agent.dir.join("qga.state.isfrozen").exists());
    let mut writers = [writer(&m.dir(A)), writer(&m.dir(B))];
    for w in &mut writers {
        wait_blocked(w);
    }
    let t = Instant::now();
    assert_eq!(agent.call("guest-fsfreeze-thaw", json!({})), json!(2));
    let thaw_time = t.elapsed();
    eprintln!("freeze of 2 loop-mounted ext4: {freeze_time:?}, thaw: {thaw_time:?}");
    for w in &mut writers {
        wait_done(w);
    }
    assert_eq!(status(&agent), json!("thawed"));
    assert!(!agent.dir.join("qga.state.isfrozen").exists());
    assert_eq!(agent.call("guest-fsfreeze-thaw", json!({})), json!(0));
}

#[test]
#[ignore = "needs root"]
fn freeze_list_of_one_mount() {
    let m = Mounts::new();
    let agent = m.agent(&[]);
    let one = agent.request(&req(
        "guest-fsfreeze-freeze-list",
        json!({"mountpoints": [B]}),
    ));
    assert_eq!(one["return"], json!(1), "{one}");
    let mut w = writer(&m.dir(B));
    wait_blocked(&mut w);
    // /mnt/a is not frozen.
    let mut free = writer(&m.dir(A));
    wait_done(&mut free);
    assert_eq!(agent.call("guest-fsfreeze-thaw", json!({})), json!(1));
    wait_done(&mut w);
    // The bind mount names /mnt/a's filesystem: frozen once, thawed once.
    let bind = agent.request(&req(
        "guest-fsfreeze-freeze-list",
        json!({"mountpoints": [A, BIND]}),
    ));
    assert_eq!(bind["return"], json!(1), "{bind}");
    assert_eq!(agent.call("guest-fsfreeze-thaw", json!({})), json!(1));
    // Nothing listed that is mounted: nothing frozen, and the agent is not frozen.
    let none = agent.request(&req(
        "guest-fsfreeze-freeze-list",
        json!({"mountpoints": ["/nonexistent"]}),
    ));
    assert_eq!(none["return"], json!(0), "{none}");
    assert_eq!(status(&agent), json!("thawed"));
}

#[test]
#[ignore = "needs root"]
fn restarted_while_frozen_comes_back_frozen() {
    let m = Mounts::new();
    let state = TempDir::new("fsfreeze-state");
    let statedir = state.path().to_str().unwrap();
    let mut first = m.agent(&["-t", statedir]);
    assert_eq!(first.call("guest-fsfreeze-freeze", json!({})), json!(2));
    // Killed without a chance to thaw.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(state.join("qga.state.isfrozen").exists());
    let second = m.agent(&["-t", statedir]);
    assert_eq!(status(&second), json!("frozen"));
    let info = second.call("guest-info", json!({}));
    assert_eq!(
        enabled(&info),
        [
            "guest-fsfreeze-status",
            "guest-fsfreeze-thaw",
            "guest-info",
            "guest-ping",
            "guest-sync",
            "guest-sync-delimited"
        ]
    );
    let refused = second.request(&req("guest-get-time", json!({})));
    assert_eq!(
        refused["error"]["desc"],
        json!("Command guest-get-time has been disabled: the agent is in frozen state")
    );
    assert_eq!(second.call("guest-fsfreeze-thaw", json!({})), json!(2));
    assert!(!state.join("qga.state.isfrozen").exists());
    assert_eq!(status(&second), json!("thawed"));
    assert!(second.request(&req("guest-get-time", json!({})))["return"].is_number());
}

/// A hook script writing its argument to a file outside the frozen filesystems.
fn hook(dir: &TempDir, body: &str) -> PathBuf {
    let path = dir.join("hook");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$1\" >> {}/calls\n{body}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

fn calls(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.join("calls")).unwrap_or_default()
}

#[test]
#[ignore = "needs root"]
fn hook_runs_around_the_freeze_and_status_waits_for_it() {
    let m = Mounts::new();
    let h = TempDir::new("fsfreeze-hook");
    // The freeze hook takes a moment: a status sent meanwhile is answered after it.
    let script = hook(&h, "[ \"$1\" = freeze ] && sleep 0.3; exit 0");
    let agent = m.agent(&[&format!("-F{}", script.display())]);
    let mut c = agent.connect();
    c.send(
        format!(
            "{}{}",
            req("guest-fsfreeze-freeze", json!({})),
            req("guest-fsfreeze-status", json!({}))
        )
        .as_bytes(),
    );
    assert_eq!(c.reply()["return"], json!(2));
    assert_eq!(c.reply()["return"], json!("frozen"));
    assert_eq!(calls(&h), "freeze\n");
    // One client at a time, as qemu-ga: the next connects after this one.
    drop(c);
    assert_eq!(agent.call("guest-fsfreeze-thaw", json!({})), json!(2));
    assert_eq!(calls(&h), "freeze\nthaw\n");
}

#[test]
#[ignore = "needs root"]
fn failing_hook_aborts_the_freeze_with_its_output() {
    let m = Mounts::new();
    let h = TempDir::new("fsfreeze-hook");
    let script = hook(
        &h,
        "[ \"$1\" = freeze ] && { echo database busy; exit 3; }; exit 0",
    );
    let agent = m.agent(&[&format!("-F{}", script.display())]);
    let reply = agent.request(&req("guest-fsfreeze-freeze", json!({})));
    assert_eq!(
        reply["error"],
        json!({"class": "GenericError", "desc": "child process has failed to execute fsfreeze hook: database busy\n"})
    );
    assert_eq!(status(&agent), json!("thawed"));
    assert!(!agent.dir.join("qga.state.isfrozen").exists());
    let mut w = writer(&m.dir(A));
    wait_done(&mut w);
    // Silent failure: the exit status.
    let quiet = hook(&h, "exit 4");
    let agent = m.agent(&[&format!("-F{}", quiet.display())]);
    let reply = agent.request(&req("guest-fsfreeze-freeze", json!({})));
    assert_eq!(
        reply["error"]["desc"],
        json!("child process has failed to execute fsfreeze hook: exit status 4")
    );
    // A hook that is not there: qemu-ga's access(2) check.
    let agent = m.agent(&["-F/nonexistent/hook"]);
    let reply = agent.request(&req("guest-fsfreeze-freeze", json!({})));
    assert_eq!(
        reply["error"]["desc"],
        json!("can't access fsfreeze hook '/nonexistent/hook': No such file or directory")
    );
    assert_eq!(status(&agent), json!("thawed"));
}

#[test]
#[ignore = "needs root"]
fn hung_hook_is_killed_at_its_deadline() {
    let m = Mounts::new();
    let h = TempDir::new("fsfreeze-hook");
    let script = hook(&h, "[ \"$1\" = freeze ] && exec sleep 60; exit 0");
    std::fs::write(h.join("qga.conf"), "[general]\nfsfreeze-hook-timeout=1\n").unwrap();
    let conf = h.join("qga.conf");
    let agent = m.agent(&[
        "-c",
        conf.to_str().unwrap(),
        &format!("-F{}", script.display()),
    ]);
    let t = Instant::now();
    let reply = agent.request(&req("guest-fsfreeze-freeze", json!({})));
    assert_eq!(
        reply["error"]["desc"],
        json!("child process has failed to execute fsfreeze hook: killed after 1 s")
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(status(&agent), json!("thawed"));
}

fn wait_status(agent: &Agent, want: &str, within: Duration) -> Duration {
    let t = Instant::now();
    while status(agent) != json!(want) {
        assert!(t.elapsed() < within, "still not {want} after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

#[test]
#[ignore = "needs root"]
fn auto_thaw_after_fsfreeze_timeout_and_not_by_an_older_timer() {
    let m = Mounts::new();
    let h = TempDir::new("fsfreeze-conf");
    std::fs::write(h.join("qga.conf"), "[general]\nfsfreeze-timeout=2\n").unwrap();
    let log = h.join("qga.log");
    let conf = h.join("qga.conf");
    let agent = m.agent(&["-c", conf.to_str().unwrap(), "-l", log.to_str().unwrap()]);
    assert_eq!(agent.call("guest-fsfreeze-freeze", json!({})), json!(2));
    let mut w = writer(&m.dir(A));
    wait_blocked(&mut w);
    let after = wait_status(&agent, "thawed", Duration::from_secs(10));
    wait_done(&mut w);
    eprintln!("auto-thawed {after:?} after the freeze (fsfreeze-timeout=2)");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("not thawed by the host within fsfreeze-timeout (2 s): 2 filesystems thawed"));
    // Freeze, thaw after a second, freeze again: the first timer (due one second into
    // the second freeze) must not end it; the second's own timer does, 2 s after it.
    assert_eq!(agent.call("guest-fsfreeze-freeze", json!({})), json!(2));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(agent.call("guest-fsfreeze-thaw", json!({})), json!(2));
    let second = Instant::now();
    assert_eq!(agent.call("guest-fsfreeze-freeze", json!({})), json!(2));
    wait_status(&agent, "thawed", Duration::from_secs(10));
    let lasted = second.elapsed();
    eprintln!("second freeze lasted {lasted:?}");
    assert!(
        lasted >= Duration::from_millis(1900),
        "thawed by the older timer after {lasted:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn nothing_is_logged_while_frozen() {
    let m = Mounts::new();
    let h = TempDir::new("fsfreeze-log");
    let log = h.join("qga.log");
    let agent = m.agent(&["-v", "-l", log.to_str().unwrap()]);
    assert_eq!(agent.call("guest-fsfreeze-freeze", json!({})), json!(2));
    let frozen_len = std::fs::metadata(&log).unwrap().len();
    for _ in 0..5 {
        assert_eq!(status(&agent), json!("frozen"));
        agent.request(&req("guest-get-time", json!({})));
    }
    // A reply is sent after its log line would have been written.
    assert_eq!(std::fs::metadata(&log).unwrap().len(), frozen_len);
    assert_eq!(agent.call("guest-fsfreeze-thaw", json!({})), json!(2));
    let text = std::fs::read_to_string(&log).unwrap();
    let held = &text[frozen_len as usize..];
    assert_eq!(
        held.matches("executing guest-fsfreeze-status").count(),
        5,
        "{held}"
    );
    assert!(held.contains("guest-fsfreeze-thaw: 2 filesystems thawed"));
    // At most 1000 lines are held; the rest are counted.
    assert_eq!(agent.call("guest-fsfreeze-freeze", json!({})), json!(2));
    let mut c = agent.connect();
    let many = req("guest-fsfreeze-status", json!({})).repeat(1200);
    c.send(many.as_bytes());
    for _ in 0..1200 {
        assert_eq!(c.reply()["return"], json!("frozen"));
    }
    drop(c);
    let frozen_len = std::fs::metadata(&log).unwrap().len();
    assert_eq!(agent.call("guest-fsfreeze-thaw", json!({})), json!(2));
    let text = std::fs::read_to_string(&log).unwrap();
    let held = &text[frozen_len as usize..];
    let kept = held.matches("executing guest-fsfreeze-status").count();
    assert!((990..1000).contains(&kept), "{kept} kept");
    assert!(held.contains("log lines dropped while frozen"), "{held}");
}

#[test]
#[ignore = "needs root"]
fn sigterm_while_frozen_thaws_before_exit() {
    let m = Mounts::new();
    let mut agent = m.agent(&[]);
    assert_eq!(agent.call("guest-fsfreeze-freeze", json!({})), json!(2));
    let mut w = writer(&m.dir(B));
    wait_blocked(&mut w);
    run(Command::new("kill")
        .arg("-TERM")
        .arg(agent.pid().to_string()));
    let st = agent.child.wait().unwrap();
    assert!(st.success(), "{st:?}");
    wait_done(&mut w);
    assert!(!agent.dir.join("qga.state.isfrozen").exists());
}

/// An error other than EOPNOTSUPP/EBUSY (here: a listed mountpoint that is gone, last in
/// the reverse order) thaws what the call had frozen and is the reply, in qemu-ga's words.
#[test]
#[ignore = "needs root"]
fn a_failed_freeze_thaws_what_it_froze() {
    let m = Mounts::new();
    let info = m.root.join("proc/self/mountinfo");
    let listed = std::fs::read_to_string(&info).unwrap();
    std::fs::write(
        &info,
        format!("29 1 254:99 / /mnt/gone rw - ext4 /dev/gone rw\n{listed}"),
    )
    .unwrap();
    let agent = m.agent(&[]);
    let reply = agent.request(&req("guest-fsfreeze-freeze", json!({})));
    assert_eq!(
        reply["error"],
        json!({"class": "GenericError", "desc": "failed to open /mnt/gone: No such file or directory"})
    );
    assert_eq!(status(&agent), json!("thawed"));
    assert!(!agent.dir.join("qga.state.isfrozen").exists());
    for dir in [A, B] {
        let mut w = writer(&m.dir(dir));
        wait_done(&mut w);
    }
    assert_eq!(agent.call("guest-fsfreeze-thaw", json!({})), json!(0));
}
