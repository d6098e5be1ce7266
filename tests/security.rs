//! What a guest user can and cannot do to the root agent (issue 13, issue 8 §3), each
//! case through the real binary; README's "Security" section names these tests. The
//! attacker steps run as uid 1000 in a temporary root, so those tests need root. No
//! test waits unboundedly: a reply is read with the harness's timeout, a start-up that
//! must fail is given 10 s.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent_command, Agent, TempDir};
use serde_json::{json, Value};

/// The attacker: an ordinary user.
const UID: u32 = 1000;
const SECRET: &str = "root:$6$SECRETHASH$xyz:19000:0:99999:7:::";

/// Runs `program args` as the attacker; true if it succeeded.
fn attacker(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .uid(UID)
        .gid(UID)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

fn mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A root with mallory (uid 1000, home /home/mallory with .ssh, both hers) and a
/// root-only etc/shadow.
fn mallory_root() -> TempDir {
    let root = TempDir::new("sec-root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("home/mallory/.ssh")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\nmallory:x:{UID}:{UID}::/home/mallory:/bin/sh\n"),
    )
    .unwrap();
    std::fs::write(root.join("etc/shadow"), format!("{SECRET}\n")).unwrap();
    mode(&root.join("etc/shadow"), 0o600);
    std::fs::write(root.join("etc/motd"), "world-readable, root's\n").unwrap();
    mode(&root.join("etc/motd"), 0o644);
    chown(&root.join("home/mallory"), UID);
    chown(&root.join("home/mallory/.ssh"), UID);
    mode(&root.join("home/mallory/.ssh"), 0o700);
    root
}

/// Hard-links `target` at `link` as the attacker. Where fs.protected_hardlinks is on
/// (not on CentOS 6, which lacks it) the kernel refuses her, so root makes the link the
/// attacker could have made there.
fn attacker_hard_link(target: &Path, link: &Path) {
    if !attacker("ln", &[target.to_str().unwrap(), link.to_str().unwrap()]) {
        std::fs::hard_link(target, link).unwrap();
    }
}

fn error_of(reply: &Value) -> String {
    reply["error"]["desc"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {reply}"))
        .to_string()
}

fn request(agent: &Agent, command: &str, args: Value) -> Value {
    agent.request(&json!({"execute": command, "arguments": args}).to_string())
}

fn still_answers(agent: &Agent) {
    assert_eq!(agent.call("guest-ping", json!({})), json!({}));
}

#[test]
#[ignore = "needs root"]
fn hard_link_to_a_root_only_file_is_neither_sent_nor_extended() {
    let root = mallory_root();
    let keys = root.join("home/mallory/.ssh/authorized_keys");
    for target in ["etc/shadow", "etc/motd"] {
        let _ = std::fs::remove_file(&keys);
        let target = root.join(target);
        let before = std::fs::read(&target).unwrap();
        attacker_hard_link(&target, &keys);
        let agent = Agent::with_sysroot(root.path(), &[]);
        let get = request(
            &agent,
            "guest-ssh-get-authorized-keys",
            json!({"username": "mallory"}),
        );
        let desc = error_of(&get);
        // shadow: EACCES, opened as mallory; motd: readable, but two links and root's.
        assert!(
            desc.contains("Permission denied") || desc.contains("hard links"),
            "{desc}"
        );
        assert!(!get.to_string().contains("SECRETHASH"), "{get}");
        let add = json!({"username": "mallory", "keys": ["ssh-ed25519 AAAA m@x"]});
        let desc = error_of(&request(&agent, "guest-ssh-add-authorized-keys", add));
        assert!(desc.starts_with("failed to read"), "{desc}");
        let remove = json!({"username": "mallory", "keys": ["ssh-ed25519 AAAA m@x"]});
        let reply = request(&agent, "guest-ssh-remove-authorized-keys", remove);
        assert!(reply.get("error").is_some(), "{reply}");
        let st = std::fs::metadata(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), before);
        assert_eq!((st.uid(), st.nlink()), (0, 2));
    }
}

#[test]
#[ignore = "needs root"]
fn keys_are_written_as_the_user_and_stay_hers() {
    let root = mallory_root();
    let agent = Agent::with_sysroot(root.path(), &[]);
    let add = json!({"username": "mallory", "keys": ["ssh-ed25519 AAAA m@x"]});
    assert_eq!(agent.call("guest-ssh-add-authorized-keys", add), json!({}));
    let st = std::fs::metadata(root.join("home/mallory/.ssh/authorized_keys")).unwrap();
    assert_eq!((st.uid(), st.gid(), st.mode() & 0o777), (UID, UID, 0o600));
    // A .ssh she cannot write (root's, 0755) is not written by root on her behalf.
    let ssh = root.join("home/mallory/.ssh");
    std::fs::remove_dir_all(&ssh).unwrap();
    std::fs::create_dir(&ssh).unwrap();
    mode(&ssh, 0o755);
    let add = json!({"username": "mallory", "keys": ["ssh-ed25519 BBBB m@x"]});
    let desc = error_of(&request(&agent, "guest-ssh-add-authorized-keys", add));
    assert!(desc.contains("Permission denied"), "{desc}");
    assert_eq!(std::fs::read_dir(&ssh).unwrap().count(), 0);
}

/// A root with alice, whose ids are this process's: runs without root.
fn own_root() -> TempDir {
    let root = TempDir::new("sec-own");
    let meta = std::fs::metadata(root.path()).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("home/alice/.ssh")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        format!(
            "alice:x:{}:{}::/home/alice:/bin/sh\n",
            meta.uid(),
            meta.gid()
        ),
    )
    .unwrap();
    root
}

#[test]
fn fifo_or_huge_authorized_keys_does_not_stall_the_agent() {
    let root = own_root();
    let keys = root.join("home/alice/.ssh/authorized_keys");
    assert!(Command::new("mkfifo")
        .arg(&keys)
        .status()
        .unwrap()
        .success());
    let agent = Agent::with_sysroot(root.path(), &[]);
    let get = json!({"username": "alice"});
    let desc = error_of(&request(
        &agent,
        "guest-ssh-get-authorized-keys",
        get.clone(),
    ));
    assert!(
        desc.ends_with("is a FIFO, not a regular file, refused"),
        "{desc}"
    );
    still_answers(&agent);
    std::fs::remove_file(&keys).unwrap();
    // Sparse: 17 MiB that take no disk, over the 16 MiB cap.
    std::fs::File::create(&keys)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let desc = error_of(&request(&agent, "guest-ssh-get-authorized-keys", get));
    assert!(
        desc.ends_with("is larger than 16777216 bytes, refused"),
        "{desc}"
    );
    let add = json!({"username": "alice", "keys": ["ssh-rsa AAAA"]});
    assert!(request(&agent, "guest-ssh-add-authorized-keys", add)
        .get("error")
        .is_some());
    assert_eq!(std::fs::metadata(&keys).unwrap().len(), 17 << 20);
    still_answers(&agent);
}

fn many_keys(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{tag}{i:08} k{i}@host"))
        .collect()
}

/// 20,000 keys added to 20,000 and removed again through the binary. The linear bound
/// itself is asserted on a count of comparisons (ssh.rs's
/// `twenty_thousand_keys_take_linear_comparisons`); here the figures are printed.
#[test]
fn twenty_thousand_keys_are_added_and_removed() {
    let root = own_root();
    let agent = Agent::with_sysroot(root.path(), &[]);
    let first = many_keys(20_000, "a");
    let second = many_keys(20_000, "b");
    let add = |keys: &[String]| {
        agent.call(
            "guest-ssh-add-authorized-keys",
            json!({"username": "alice", "keys": keys}),
        )
    };
    let started = Instant::now();
    add(&first);
    let one = started.elapsed();
    add(&second);
    let two = started.elapsed();
    let got = agent.call(
        "guest-ssh-get-authorized-keys",
        json!({"username": "alice"}),
    );
    assert_eq!(got["keys"].as_array().unwrap().len(), 40_000);
    agent.call(
        "guest-ssh-remove-authorized-keys",
        json!({"username": "alice", "keys": first}),
    );
    let got = agent.call(
        "guest-ssh-get-authorized-keys",
        json!({"username": "alice"}),
    );
    assert_eq!(got["keys"], json!(second));
    eprintln!(
        "20,000 keys added to none in {one:?}, to 20,000 in {:?}; all done in {:?}",
        two - one,
        started.elapsed()
    );
}

/// A directory the attacker may write: hers, as a careless statedir or pidfile
/// directory might be. Not a sticky /tmp-like one, where the kernel's own
/// fs.protected_{symlinks,regular,fifos} (3.6+, 4.19+; CentOS 6 has none) would refuse
/// some of these opens before the agent's checks are reached.
fn writable_dir(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    chown(d.path(), UID);
    mode(d.path(), 0o755);
    d
}

/// A fixture root whose kernel log holds one OOM kill, so the agent records it.
fn oom_root() -> TempDir {
    let root = TempDir::new("sec-oom");
    std::fs::create_dir_all(root.join("proc/sys/kernel/random")).unwrap();
    std::fs::write(
        root.join("proc/sys/kernel/random/boot_id"),
        "6b2b6c1e-0c1f-4a43-9d32-000000000001\n",
    )
    .unwrap();
    std::fs::write(
        root.join("proc/kmsg"),
        "<3>Out of memory: Killed process 42 (x) total-vm:1kB\n",
    )
    .unwrap();
    root
}

fn oom_status(agent: &Agent) -> Value {
    agent.call("guest-get-oom-status", json!({}))
}

#[test]
#[ignore = "needs root"]
fn statedir_fifo_and_symlinks_are_not_followed() {
    let root = oom_root();
    let state = writable_dir("sec-state");
    let record = state.join("qga-bc-oom.json");
    let victim = root.join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    let agent = Agent::with_sysroot(root.path(), &["-t", state.path().to_str().unwrap()]);
    // A FIFO as the record: answered at once (it used to block in open forever).
    assert!(attacker("mkfifo", &[record.to_str().unwrap()]));
    assert_eq!(oom_status(&agent)["oom-count"], 1);
    still_answers(&agent);
    // The FIFO was replaced by the agent's own record.
    let st = std::fs::symlink_metadata(&record).unwrap();
    assert!(st.is_file() && st.uid() == 0, "{st:?}");
    std::fs::remove_file(&record).unwrap();
    // A symlink as the temporary file and one as the record: neither target changes.
    let tmp = state.join(&format!("qga-bc-oom.json.qga-{}", agent.pid()));
    assert!(attacker(
        "ln",
        &["-s", victim.to_str().unwrap(), tmp.to_str().unwrap()]
    ));
    assert!(attacker(
        "ln",
        &["-s", victim.to_str().unwrap(), record.to_str().unwrap()]
    ));
    assert_eq!(oom_status(&agent)["oom-count"], 1);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    assert!(std::fs::symlink_metadata(&record).unwrap().is_file());
    // A forged record of hers is not believed.
    std::fs::remove_file(&record).unwrap();
    let forged = r#"{"boot_id":"6b2b6c1e-0c1f-4a43-9d32-000000000001","count":99,"last":"forged"}"#;
    assert!(attacker(
        "sh",
        &[
            "-c",
            &format!("printf '%s' '{forged}' > {}", record.display())
        ]
    ));
    let status = oom_status(&agent);
    assert_eq!(status["oom-count"], 1);
    assert!(!status["last-oom"].as_str().unwrap().contains("forged"));
}

/// Starts the agent with `extra` arguments where it must refuse to start; returns its
/// stderr. Panics if it is still running after 10 s (serving, or blocked on a FIFO).
fn refused_start(extra: &[&str]) -> String {
    let dir = TempDir::new("sec-start");
    let mut child = agent_command()
        .args(["-m", "unix-listen", "-p"])
        .arg(dir.join("qga.sock"))
        .arg("-t")
        .arg(dir.path())
        .args(extra)
        .env("QGA_CONF", dir.join("no-such.conf"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(!status.success(), "started with {extra:?}");
            return err;
        }
        if Instant::now() > deadline {
            let serving = std::os::unix::net::UnixStream::connect(dir.join("qga.sock")).is_ok();
            let _ = child.kill();
            let _ = child.wait();
            match serving {
                true => panic!("agent with {extra:?} started"),
                false => panic!("agent with {extra:?} neither started nor failed: blocked"),
            }
        }
        std::thread::yield_now();
    }
}

/// The planted things a pidfile or log position can hold, each made by the attacker
/// in a directory anyone may write; returns the path to give the agent.
fn plant(dir: &Path, victim: &Path, what: &str) -> PathBuf {
    let path = dir.join(format!("planted-{what}"));
    let (p, v) = (path.to_str().unwrap(), victim.to_str().unwrap());
    match what {
        "symlink" => assert!(attacker("ln", &["-s", v, p])),
        "fifo" => assert!(attacker("mkfifo", &[p])),
        "hardlink" => attacker_hard_link(victim, &path),
        "hers" => assert!(attacker("sh", &["-c", &format!("echo 1 > {p}")])),
        _ => unreachable!(),
    }
    path
}

#[test]
#[ignore = "needs root"]
fn pidfile_and_logfile_plants_are_refused() {
    let dir = writable_dir("sec-plant");
    let victim = dir.join("victim");
    std::fs::write(&victim, "12\n").unwrap();
    for option in ["-f", "-l"] {
        for what in ["symlink", "fifo", "hardlink", "hers"] {
            let path = plant(dir.path(), &victim, what);
            let err = refused_start(&[option, path.to_str().unwrap()]);
            let want = match what {
                "symlink" => "is a symbolic link, refused",
                // O_NONBLOCK: a FIFO opens at once (read-write) or fails with ENXIO
                // (write-only, no reader) instead of waiting for a peer.
                "fifo" if option == "-l" => "No such device or address",
                "fifo" => "is a FIFO, not a regular file, refused",
                "hardlink" => "has 2 hard links, not 1, refused",
                _ => "is owned by uid 1000, not 0, refused",
            };
            assert!(err.contains(want), "{option} {what}: {err}");
            assert_eq!(std::fs::read_to_string(&victim).unwrap(), "12\n");
            std::fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn user_check_name_with_a_newline_forges_no_log_line() {
    let dir = TempDir::new("sec-log");
    let log = dir.join("agent.log");
    let agent = Agent::start(&["-v", "-l", log.to_str().unwrap()]);
    let name = "x\n1700000000.000000: critical: FORGED";
    let check = agent.call(
        "guest-user-check",
        json!({"command-name": name, "command": "echo ok"}),
    );
    assert_eq!(check["command-name"], name);
    // A command name the registry does not know is not logged either.
    let unknown = agent.request(r#"{"execute":"x\n1.0: critical: FORGED2"}"#);
    assert!(unknown.get("error").is_some());
    drop(agent);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("FORGED"), "{text}");
    for line in text.lines() {
        let (stamp, rest) = line.split_once(": ").unwrap();
        assert!(
            stamp
                .split_once('.')
                .is_some_and(|(s, us)| { s.bytes().all(|b| b.is_ascii_digit()) && us.len() == 6 }),
            "{line}"
        );
        assert!(
            ["debug: ", "info: ", "warning: ", "critical: "]
                .iter()
                .any(|l| rest.starts_with(l)),
            "{line}"
        );
    }
    assert!(text.contains("debug: user check exited with 0"), "{text}");
}

#[test]
fn process_named_with_a_newline_forges_no_app_status_line() {
    // The shell renames itself, then spins (no fork, so the name stays and it is at
    // the top of the %CPU order).
    let mut helper = Command::new("sh")
        .args([
            "-c",
            "printf 'x\\nFORGED' > /proc/self/comm; while :; do :; done",
        ])
        .spawn()
        .unwrap();
    let pid = helper.id();
    let agent = Agent::start(&[]);
    let mut found = None;
    for _ in 0..200 {
        let status = agent.call("guest-get-app-status", json!({}));
        let named = status["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == pid && p["command"] == "x\nFORGED");
        if named {
            found = Some(status);
            break;
        }
    }
    let _ = helper.kill();
    let _ = helper.wait();
    let status = found.expect("helper never listed under its new name");
    let text = status["appStatus"].as_str().unwrap();
    assert!(text.contains(" x?FORGED\n"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("FORGED")), "{text}");
}

#[test]
#[ignore = "needs root"]
fn agent_is_not_dumpable() {
    let dir = TempDir::new("sec-dump");
    chown(dir.path(), UID);
    let socket = dir.join("qga.sock");
    let mut child = agent_command()
        .args(["-m", "unix-listen", "-p"])
        .arg(&socket)
        .arg("-t")
        .arg(dir.path())
        .env("QGA_CONF", dir.join("no-such.conf"))
        .uid(UID)
        .gid(UID)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "agent did not start");
        std::thread::yield_now();
    }
    // A process that is not dumpable has its /proc files owned by root, whoever runs it.
    let owner = std::fs::metadata(format!("/proc/{}/status", child.id()))
        .unwrap()
        .uid();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(owner, 0);
}
