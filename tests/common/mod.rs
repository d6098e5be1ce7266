//! Test harness: starts the real `qemu-ga` binary on a unix socket in a temporary
//! directory and talks bytes to it. Small and ours; no extra dev-dependencies.
//!
//! Every start of the agent or the client goes through [`agent_command`] or
//! [`client_command`], so `make test` can run the same tests against each binary we ship:
//! - `QGA_BIN`: the agent under test (default: the one cargo built for this run);
//! - `QGA_CLIENT_BIN`: the client under test (default: `qemu-ga-client` beside `QGA_BIN`,
//!   or cargo's);
//! - `QGA_AS2632=1`: start them under the Linux 2.6.32 seccomp filter ([`as2632`]).
#![allow(dead_code)]

pub mod as2632;
pub mod many_procs;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The agent under test: `$QGA_BIN`, else this build's.
pub fn agent_bin() -> PathBuf {
    match std::env::var_os("QGA_BIN") {
        Some(p) => std::path::absolute(p).unwrap(),
        None => PathBuf::from(env!("CARGO_BIN_EXE_qemu-ga")),
    }
}

/// The client under test: `$QGA_CLIENT_BIN`, else the one beside `$QGA_BIN`, else this
/// build's.
pub fn client_bin() -> PathBuf {
    match (
        std::env::var_os("QGA_CLIENT_BIN"),
        std::env::var_os("QGA_BIN"),
    ) {
        (Some(p), _) => std::path::absolute(p).unwrap(),
        (None, Some(_)) => agent_bin().with_file_name("qemu-ga-client"),
        (None, None) => PathBuf::from(env!("CARGO_BIN_EXE_qemu-ga-client")),
    }
}

/// Whether `QGA_AS2632=1` asks for the 2.6.32 filter. Any other value than unset, "",
/// "0" or "1" panics: a typo must not test without the filter unnoticed.
pub fn as2632_on() -> bool {
    match std::env::var("QGA_AS2632").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("" | "0") => false,
        Ok("1") => true,
        other => panic!("QGA_AS2632 must be 1 or 0, not {other:?}"),
    }
}

/// `cmd` as the matrix asks: under the 2.6.32 filter when [`as2632_on`].
pub fn as_tested(mut cmd: Command) -> Command {
    if as2632_on() {
        as2632::install(&mut cmd);
    }
    cmd
}

/// A command starting the agent under test.
pub fn agent_command() -> Command {
    as_tested(Command::new(agent_bin()))
}

/// A command starting the client under test.
pub fn client_command() -> Command {
    as_tested(Command::new(client_bin()))
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "qga-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A mount for a test (a loop-mounted ext4 image, or a bind mount), thawed and unmounted
/// (the loop device detached) on drop, even when the test fails. Root only.
pub struct LoopMount(PathBuf);

impl LoopMount {
    /// A `mib` MiB ext4 image in `dir` (named after the mountpoint, so one `dir` holds
    /// several), mounted on `mnt` with `options`.
    pub fn ext4(dir: &TempDir, mib: u64, mnt: &Path, options: &str) -> LoopMount {
        let name = mnt.file_name().unwrap().to_string_lossy();
        let image = dir.join(&format!("{name}.img"));
        std::fs::create_dir_all(mnt).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .status()
            .unwrap();
        assert!(ok.success(), "mkfs.ext4");
        let ok = Command::new("mount")
            .args(["-o", options])
            .arg(&image)
            .arg(mnt)
            .status()
            .unwrap();
        assert!(ok.success(), "mount -o {options}");
        LoopMount(mnt.to_path_buf())
    }

    /// A tmpfs of `size` ("64k") on `mnt` (created).
    pub fn tmpfs(mnt: &Path, size: &str) -> LoopMount {
        std::fs::create_dir_all(mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mnt)
            .status()
            .unwrap();
        assert!(ok.success(), "mount -t tmpfs");
        LoopMount(mnt.to_path_buf())
    }

    /// `src` bind-mounted on `mnt` (created).
    pub fn bind(src: &Path, mnt: &Path) -> LoopMount {
        std::fs::create_dir_all(mnt).unwrap();
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(src)
            .arg(mnt)
            .status()
            .unwrap();
        assert!(ok.success(), "mount --bind");
        LoopMount(mnt.to_path_buf())
    }
}

impl Drop for LoopMount {
    /// Thawed first (a failed freeze test must not leave it frozen), then unmounted.
    fn drop(&mut self) {
        thaw_and_unmount([self.0.as_path()]);
    }
}

/// A running agent in unix-listen mode.
pub struct Agent {
    pub child: Child,
    pub dir: TempDir,
    pub socket: PathBuf,
}

impl Agent {
    /// Starts `qemu-ga -m unix-listen -p DIR/qga.sock -t DIR` plus `extra` arguments and
    /// waits until the socket accepts connections.
    pub fn start(extra: &[&str]) -> Agent {
        Agent::start_with_env(extra, &[])
    }

    /// As [`Agent::start`], with extra environment variables (a fake program's PATH).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Agent {
        let dir = TempDir::new("agent");
        let socket = dir.join("qga.sock");
        let child = agent_command()
            .args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(dir.path())
            .args(extra)
            .env("QGA_CONF", dir.join("no-such.conf"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", agent_bin().display()));
        let agent = Agent { child, dir, socket };
        agent.wait_ready();
        agent
    }

    /// Starts the agent reading the system below `root` (a fixture tree).
    pub fn with_sysroot(root: &Path, extra: &[&str]) -> Agent {
        let mut args = vec!["--sysroot", root.to_str().unwrap()];
        args.extend_from_slice(extra);
        Agent::start(&args)
    }

    fn wait_ready(&self) {
        connect_when_listening(
            &self.socket,
            Duration::from_secs(10),
            Duration::from_millis(10),
        );
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// One request on a fresh connection; returns the reply object.
    pub fn request(&self, request: &str) -> Value {
        let mut c = self.connect();
        c.send(request.as_bytes());
        c.reply()
    }

    /// The `return` of a command that must succeed.
    pub fn call(&self, command: &str, args: Value) -> Value {
        let req = serde_json::json!({"execute": command, "arguments": args});
        let reply = self.request(&req.to_string());
        match reply.get("return") {
            Some(v) => v.clone(),
            None => panic!("{command} failed: {reply}"),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first connection to `path` once something listens there, tried every `every`;
/// panics after `within`.
pub fn connect_when_listening(path: &Path, within: Duration, every: Duration) -> UnixStream {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = UnixStream::connect(path) {
            return s;
        }
        assert!(
            t0.elapsed() < within,
            "nothing listens on {} after {within:?}",
            path.display()
        );
        std::thread::sleep(every);
    }
}

/// One connection to the agent, reading newline-terminated replies.
pub struct Client {
    pub stream: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).expect("connect to agent");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to agent");
    }

    /// The next reply line as raw bytes (including a leading 0xFF if any, without '\n').
    pub fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return line[..line.len() - 1].to_vec();
            }
            let mut chunk = [0u8; 65536];
            // A socket read with a timeout fails with EINTR when the test process is
            // stopped and continued (signal(7)); that is not the agent's doing.
            let n = match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => other.expect("read reply"),
            };
            assert!(n > 0, "agent closed the connection; pending {:?}", self.buf);
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next reply line as text.
    pub fn text(&mut self) -> String {
        String::from_utf8(self.line()).expect("reply is UTF-8")
    }

    pub fn reply(&mut self) -> Value {
        let line = self.line();
        serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!(
                "reply is not JSON ({e}): {}",
                String::from_utf8_lossy(&line)
            )
        })
    }

    /// Asserts that nothing more arrives within a short while (for no-reply cases).
    pub fn expect_silence(&mut self, wait: Duration) {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => panic!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(_) => {}
        }
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
    }
}

/// The fixture tree of one distribution: tests/fixtures/<distro>.
pub fn fixture(distro: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(distro)
}

/// Every distribution we ship fixtures for.
pub const DISTROS: [&str; 5] = ["centos6", "centos7", "ubuntu1204", "ubuntu1404", "modern"];

/// A `/proc/PID/status` field in KiB ("VmRSS:", "VmHWM:").
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Copies a fixture tree to a temporary root that a test may change.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(target, &dest).unwrap();
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A directory of fake programs to put first (or alone) on the agent's PATH. Each one
/// appends "name args…" to `calls.log` and saves its stdin as `<name>.stdin`, using
/// shell builtins only, so PATH may hold nothing else.
pub struct FakeBin {
    pub dir: TempDir,
}

impl FakeBin {
    pub fn new() -> FakeBin {
        FakeBin {
            dir: TempDir::new("fakebin"),
        }
    }

    /// A program that records its call and exits with `code`.
    pub fn program(&self, name: &str, code: i32) -> &Self {
        self.script(name, &format!("exit {code}"))
    }

    /// A program that records its call, then runs `body` (sh).
    pub fn script(&self, name: &str, body: &str) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir.path().display();
        let text = format!(
            "#!/bin/sh\nprintf '%s\\n' \"${{0##*/}} $*\" >> '{dir}/calls.log'\n\
             while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done > '{dir}/{name}.stdin'\n\
             {body}\n"
        );
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    /// The calls so far, one "name args" line each.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// What `name` read on its stdin at its last call.
    pub fn stdin_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(&format!("{name}.stdin"))).unwrap_or_default()
    }

    /// The PATH value naming only this directory.
    pub fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

/// xorshift64*: a deterministic stream, so a failure reproduces from its seed (no rand
/// crate for tests).
pub struct Rng(pub u64);

impl Rng {
    /// At least `len` bytes of `pieces` picked at random, then 0xFF and a
    /// guest-sync-delimited with id 4242: a garbage flood a host can resync after.
    pub fn garbage(&mut self, pieces: &[&[u8]], len: usize) -> Vec<u8> {
        let mut input = Vec::new();
        while input.len() < len {
            input.extend_from_slice(pieces[self.below(pieces.len())]);
        }
        input.extend_from_slice(
            b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":4242}}",
        );
        input
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Thaws each of `dirs` until refused (util-linux fsfreeze(8): whatever a failed
/// freeze test left frozen), then unmounts it. For the drop of loop-mount fixtures.
pub fn thaw_and_unmount<'a>(dirs: impl IntoIterator<Item = &'a Path>) {
    for dir in dirs {
        for _ in 0..8 {
            let thawed = Command::new("fsfreeze")
                .arg("-u")
                .arg(dir)
                .stderr(Stdio::null())
                .status();
            if !thawed.is_ok_and(|s| s.success()) {
                break;
            }
        }
        let _ = Command::new("umount").arg(dir).status();
    }
}

/// The reference agent of the comparisons (tests/upstream_compat.rs, `make bench`).
pub const REFERENCE: &str = "/usr/sbin/qemu-ga";

/// Whether [`REFERENCE`] really is Debian's qemu-ga 7.2 (see [`is_debians_qemu_ga_72`]).
pub fn reference_is_debians_72() -> Result<(), String> {
    is_debians_qemu_ga_72(REFERENCE)
}

/// Whether `bin` is Debian's qemu-ga 7.2: dpkg says the package qemu-guest-agent owns it
/// and `-V` says 7.2. Once our deb has replaced Debian's package on a development
/// machine, the comparisons would silently compare us with ourselves.
pub fn is_debians_qemu_ga_72(bin: &str) -> Result<(), String> {
    let dpkg = Command::new("dpkg")
        .args(["-S", bin])
        .output()
        .map_err(|e| format!("dpkg -S {bin}: {e}"))?;
    let owner = String::from_utf8_lossy(&dpkg.stdout);
    if !dpkg.status.success() || !owner.starts_with("qemu-guest-agent:") {
        return Err(format!(
            "{bin} is not Debian's qemu-guest-agent (dpkg -S says '{}'): \
             reinstall it with `apt-get install --reinstall qemu-guest-agent`",
            owner.trim()
        ));
    }
    let version = Command::new(bin)
        .arg("-V")
        .output()
        .map_err(|e| format!("{bin} -V: {e}"))?;
    let version = String::from_utf8_lossy(&version.stdout);
    let wanted = "QEMU Guest Agent 7.2.";
    if !version.starts_with(wanted) || version.contains("qga-bc") {
        return Err(format!(
            "{bin} -V says '{}', not Debian's qemu-ga 7.2",
            version.trim()
        ));
    }
    Ok(())
}
