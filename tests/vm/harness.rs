//! The test VM: boots it once under qemu-system-x86_64 (TCG), and talks to it through
//! two virtio-serial ports on host unix sockets: the agent's `org.qemu.guest_agent.0`
//! (attach, request, detach, as libvirt does) and `org.qga-bc.monitor.0`, a guest shell
//! that stays attached (monitor.sh).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::image::{self, Kernel};

/// What the VM looks like from the host; checks compare the agent's answers with it.
#[derive(Clone, Debug)]
pub struct Spec {
    pub mem_mib: u64,
    pub cpus: u64,
    pub hostname: String,
    pub mac: String,
    pub disk_mib: u64,
    pub disk_label: String,
    /// Extra agent options (the init script adds -d, -f, -t, -l).
    pub agent_args: String,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            mem_mib: 256,
            cpus: 2,
            hostname: "qga-vm".into(),
            mac: "52:54:00:12:34:56".into(),
            disk_mib: 64,
            disk_label: "qgadata".into(),
            agent_args: "-v".into(),
        }
    }
}

/// Why the VM cannot be booted here: a host tool or the kernel package is absent. The
/// test skips, unless [`required`] says it must run.
pub struct Missing(pub String);

/// True when the VM test must not skip: in CI (`CI` set, as .ci/run runs), or when
/// `QGA_VM_REQUIRED=1`. `make deps` installs everything the VM needs.
pub fn required() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("CI") || set("QGA_VM_REQUIRED")
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Host files the VM is built from.
pub struct Host {
    pub qemu: PathBuf,
    pub busybox: PathBuf,
    pub kernel: Kernel,
    pub firmware: Option<PathBuf>,
}

impl Host {
    /// Finds qemu, busybox-static, mkfs.ext4 and the unpacked kernel.
    pub fn find() -> Result<Host, Missing> {
        let need = |p: &str, pkg: &str| {
            which(p).ok_or_else(|| {
                Missing(format!("{p} not found (Debian package {pkg}; `make deps`)"))
            })
        };
        let qemu = need("qemu-system-x86_64", "qemu-system-x86")?;
        need("mkfs.ext4", "e2fsprogs")?;
        let busybox = need("busybox", "busybox-static")?;
        match image::is_static_elf(&busybox) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Missing(format!(
                    "{} is dynamically linked; install busybox-static (`make deps`)",
                    busybox.display()
                )))
            }
            Err(e) => return Err(Missing(e)),
        }
        let kernel = Kernel::find(&image::kernel_dir()).map_err(|e| {
            Missing(format!(
                "kernel: {e} (`make deps` unpacks linux-image-cloud-amd64 there)"
            ))
        })?;
        // qboot (in qemu-system-data) boots -kernel without SeaBIOS, and faster; SeaBIOS
        // is only a recommendation of qemu-system-x86.
        let firmware = Some(PathBuf::from("/usr/share/qemu/qboot.rom")).filter(|p| p.is_file());
        if firmware.is_none() && !Path::new("/usr/share/seabios/bios-256k.bin").is_file() {
            return Err(Missing(
                "no firmware: neither /usr/share/qemu/qboot.rom nor SeaBIOS".into(),
            ));
        }
        Ok(Host {
            qemu,
            busybox,
            kernel,
            firmware,
        })
    }
}

/// A booted VM. Dropping it kills qemu.
pub struct Vm {
    pub spec: Spec,
    pub dir: PathBuf,
    pub kernel_release: String,
    /// qemu start to the agent's first reply.
    pub boot_time: Duration,
    qga_socket: PathBuf,
    monitor: Monitor,
    qemu: Child,
    next_id: u64,
    /// Syncs [`Vm::request`] had to repeat on a new attach.
    pub sync_retries: u32,
}

impl Vm {
    /// Builds the initramfs and disk in `target/vm/run`, starts qemu and waits for the
    /// agent's first reply and the monitor's first answer. Panics with the serial
    /// console's tail when the guest does not come up.
    pub fn boot(host: &Host, spec: Spec) -> Vm {
        let agent = image::agent_binary();
        assert!(
            agent.is_file(),
            "{} missing: `make build` builds it (`make test` does so first)",
            agent.display()
        );
        assert!(
            image::is_static_elf(&agent).unwrap_or_else(|e| panic!("{e}")),
            "{}: not a static binary; the guest has no libc",
            agent.display()
        );
        let dir = run_dir();
        let (modules, built_in) = host
            .kernel
            .modules_for(image::WANTED_DRIVERS)
            .unwrap_or_else(|e| panic!("kernel {}: {e}", host.kernel.release));
        log(&format!(
            "kernel {}: built in {:?}, modules {:?}",
            host.kernel.release,
            built_in,
            modules.iter().map(|m| m.name.as_str()).collect::<Vec<_>>()
        ));
        let initrd = image::initramfs(&image::Parts {
            busybox: &host.busybox,
            agent: &agent,
            modules: &modules,
            hostname: &spec.hostname,
            agent_args: &spec.agent_args,
        })
        .unwrap_or_else(|e| panic!("initramfs: {e}"));
        fs::write(dir.join("initrd.cpio"), &initrd).unwrap();
        let disk = dir.join("disk.img");
        image::ext4_disk(&disk, spec.disk_mib, &spec.disk_label).unwrap_or_else(|e| panic!("{e}"));

        let qga_socket = dir.join("qga.sock");
        let monitor_socket = dir.join("monitor.sock");
        let console = dir.join("console.log");
        let mut cmd = Command::new(&host.qemu);
        cmd.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-machine", "pc,accel=tcg"])
        .args(["-smp", &spec.cpus.to_string()])
        .args(["-m", &spec.mem_mib.to_string()]);
        if let Some(fw) = &host.firmware {
            cmd.arg("-bios").arg(fw);
        }
        cmd.arg("-kernel")
            .arg(&host.kernel.vmlinuz)
            .arg("-initrd")
            .arg(dir.join("initrd.cpio"))
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .args(["-device", "virtio-serial-pci,id=vser0"])
            .arg("-chardev")
            .arg(format!(
                "socket,path={},server=on,wait=off,id=qga0",
                qga_socket.display()
            ))
            .args([
                "-device",
                "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
            ])
            .arg("-chardev")
            .arg(format!(
                "socket,path={},server=on,wait=off,id=mon0",
                monitor_socket.display()
            ))
            .args([
                "-device",
                "virtserialport,bus=vser0.0,chardev=mon0,name=org.qga-bc.monitor.0",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=disk0",
                disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=disk0,serial=qgadata"])
            // restrict=on: the guest reaches nothing outside qemu's own slirp stack.
            .args(["-netdev", "user,id=net0,restrict=on"])
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=net0,mac={},romfile=",
                spec.mac
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                fs::File::create(dir.join("qemu.stderr")).unwrap(),
            ));
        let start = Instant::now();
        let qemu = cmd.spawn().unwrap_or_else(|e| panic!("start qemu: {e}"));
        let mut vm = Vm {
            spec,
            kernel_release: host.kernel.release.clone(),
            boot_time: Duration::ZERO,
            qga_socket,
            monitor: Monitor::placeholder(),
            dir,
            qemu,
            next_id: 1000,
            sync_retries: 0,
        };
        vm.monitor = match Monitor::connect(&monitor_socket, start + Duration::from_secs(20)) {
            Ok(m) => m,
            Err(e) => vm.die(&format!("monitor socket: {e}")),
        };
        vm.boot_time = vm.wait_first_reply(start, Duration::from_secs(120));
        if let Err(e) = vm.monitor.run("true", Duration::from_secs(30)) {
            vm.die(&format!("guest monitor does not answer: {e}"));
        }
        vm
    }

    /// Sends guest-sync-delimited until one gets its reply (a reply can be lost, see
    /// issue 8 §1); returns the time from qemu's start.
    fn wait_first_reply(&mut self, start: Instant, limit: Duration) -> Duration {
        let mut session = loop {
            match self.attach() {
                Ok(s) => break s,
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => self.die(&format!("agent socket: {e}")),
            }
        };
        let mut sent = Vec::new();
        while start.elapsed() < limit {
            if let Some(status) = self.qemu.try_wait().unwrap() {
                self.die(&format!("qemu exited during boot: {status}"));
            }
            let id = self.id();
            sent.push(id);
            if session.send_sync(id).is_err() {
                session = self.attach().unwrap();
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Ok(Some(reply)) = session.next_reply(deadline) {
                if reply["return"].as_u64().is_some_and(|r| sent.contains(&r)) {
                    return start.elapsed();
                }
            }
        }
        self.die("no reply from the agent")
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Connects to the agent's chardev socket: the guest sees the host attach.
    pub fn attach(&self) -> io::Result<Session> {
        Ok(Session {
            stream: UnixStream::connect(&self.qga_socket)?,
            buf: Vec::new(),
        })
    }

    /// Attaches, syncs (0xFF + guest-sync-delimited), runs one command, detaches.
    /// Returns the whole reply object (`return` or `error`). A sync that gets no reply
    /// is retried on a fresh attach (the loss issue 8 §1 describes; the attach/detach
    /// check measures it), up to 5 times; `sync_retries` counts them.
    pub fn request(&mut self, execute: &str, arguments: Option<Value>) -> Value {
        let mut s = self.synced_session();
        s.request(execute, arguments, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{execute}: {e}"))
    }

    /// An attached session whose guest-sync-delimited has been answered.
    pub fn synced_session(&mut self) -> Session {
        let mut errors = Vec::new();
        for _ in 0..5 {
            let id = self.id();
            let mut s = self.attach().expect("attach");
            match s.sync(id, Duration::from_secs(3)) {
                Ok(_) => return s,
                Err(e) => errors.push(e.to_string()),
            }
            self.sync_retries += 1;
        }
        panic!("guest-sync-delimited on 5 attaches: {errors:?}")
    }

    /// Runs a shell command line in the guest; its output (stdout and stderr).
    pub fn guest(&mut self, line: &str) -> String {
        match self.monitor.run(line, Duration::from_secs(60)) {
            Ok((0, out)) => out,
            Ok((rc, out)) => panic!("guest `{line}` exited {rc}: {out}"),
            Err(e) => self.die(&format!("guest `{line}`: {e}")),
        }
    }

    /// As [`Vm::guest`], with a longer limit and the exit status.
    pub fn guest_status(&mut self, line: &str, limit: Duration) -> (i32, String) {
        match self.monitor.run(line, limit) {
            Ok(r) => r,
            Err(e) => self.die(&format!("guest `{line}`: {e}")),
        }
    }

    /// The serial console so far (kernel messages and vm-init lines).
    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Waits for qemu to exit (after guest-shutdown); its status, or None on timeout.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(st) = self.qemu.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn die(&mut self, why: &str) -> ! {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        let console = self.console();
        let tail: Vec<&str> = console.lines().rev().take(40).collect();
        let stderr = fs::read_to_string(self.dir.join("qemu.stderr")).unwrap_or_default();
        panic!(
            "VM: {why}\n--- qemu stderr ---\n{stderr}\n--- console (last 40 lines) ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

/// `target/vm/run`, emptied. It stays after the test (console.log, qemu.stderr) for a
/// look; sockets go to a temporary directory when that path is too long for sun_path.
fn run_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vm/run");
    let dir = if dir.join("monitor.sock").as_os_str().len() < 100 {
        dir
    } else {
        std::env::temp_dir().join(format!("qga-vm-{}", std::process::id()))
    };
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Prints past the test harness's capture, so the figures show in `make test` output.
pub fn log(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "vm: {line}");
}

/// One host attachment to the agent's port.
pub struct Session {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// Why a sync got no reply.
#[derive(Debug)]
pub enum SyncError {
    /// Nothing with our id before the deadline; `other` replies came instead.
    Lost {
        other: Vec<Value>,
    },
    Io(io::Error),
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            SyncError::Lost { other } => write!(f, "no reply (other replies: {other:?})"),
            SyncError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Session {
    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `0xFF` + guest-sync-delimited, as libvirt does on each connection.
    pub fn send_sync(&mut self, id: u64) -> io::Result<()> {
        let mut msg = vec![0xFF];
        let req = json!({"execute": "guest-sync-delimited", "arguments": {"id": id}});
        msg.extend_from_slice(req.to_string().as_bytes());
        self.send(&msg)
    }

    /// Sends the sync and waits for its reply; the time from sending to the reply.
    pub fn sync(&mut self, id: u64, limit: Duration) -> Result<Duration, SyncError> {
        let start = Instant::now();
        self.send_sync(id).map_err(SyncError::Io)?;
        self.wait_sync(id, start + limit).map(|()| start.elapsed())
    }

    /// Waits for `{"return": id}`, keeping other replies for the error.
    pub fn wait_sync(&mut self, id: u64, deadline: Instant) -> Result<(), SyncError> {
        let mut other = Vec::new();
        loop {
            match self.next_reply(deadline) {
                Ok(Some(r)) if r["return"].as_u64() == Some(id) => return Ok(()),
                Ok(Some(r)) => other.push(r),
                Ok(None) => return Err(SyncError::Lost { other }),
                Err(e) => return Err(SyncError::Io(e)),
            }
        }
    }

    /// Sends one command and returns its reply object.
    pub fn request(
        &mut self,
        execute: &str,
        arguments: Option<Value>,
        limit: Duration,
    ) -> Result<Value, String> {
        let req = match arguments {
            Some(a) => json!({"execute": execute, "arguments": a}),
            None => json!({"execute": execute}),
        };
        self.send(req.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        self.next_reply(Instant::now() + limit)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no reply within {limit:?}"))
    }

    /// The next reply line (0xFF delimiters dropped), parsed; None at the deadline or
    /// when the socket closes. A line that is not JSON comes back as a string.
    pub fn next_reply(&mut self, deadline: Instant) -> io::Result<Option<Value>> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).filter(|&b| b != 0xFF).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                return Ok(Some(
                    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())),
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(deadline - now))?;
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The host end of monitor.sh.
struct Monitor {
    stream: Option<UnixStream>,
    buf: Vec<u8>,
    seq: u64,
}

impl Monitor {
    fn placeholder() -> Monitor {
        Monitor {
            stream: None,
            buf: Vec::new(),
            seq: 0,
        }
    }

    fn connect(path: &Path, deadline: Instant) -> io::Result<Monitor> {
        loop {
            match UnixStream::connect(path) {
                Ok(s) => {
                    return Ok(Monitor {
                        stream: Some(s),
                        buf: Vec::new(),
                        seq: 0,
                    })
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Runs `line` in the guest; (exit status, output).
    fn run(&mut self, line: &str, limit: Duration) -> Result<(i32, String), String> {
        assert!(!line.contains('\n'), "one line per guest command");
        self.seq += 1;
        let seq = self.seq;
        let stream = self.stream.as_mut().ok_or("monitor not connected")?;
        stream
            .write_all(format!("{seq} {line}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let marker = format!("\n@@vm-monitor {seq} ");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = find(&self.buf, marker.as_bytes()) {
                let rest = &self.buf[at + marker.len()..];
                if let Some(end) = rest.iter().position(|&b| b == b'\n') {
                    let rc = String::from_utf8_lossy(&rest[..end])
                        .trim()
                        .parse()
                        .unwrap_or(-1);
                    let out = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                    self.buf.drain(..at + marker.len() + end + 1);
                    return Ok((rc, out));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "no answer within {limit:?}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
            stream
                .set_read_timeout(Some(deadline - now))
                .map_err(|e| e.to_string())?;
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk) {
                Ok(0) => return Err("monitor socket closed".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
