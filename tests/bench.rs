//! `make bench`: the agent we ship (the static musl x86_64 build, `$QGA_BIN`) and the
//! reference, Debian's qemu-ga 7.2 (/usr/sbin/qemu-ga, checked with dpkg and `-V`), side by
//! side in one run: same machine, same client, interleaved rounds, medians, ratios.
//! The agent's cost is its own CPU time (/proc/PID/task/*/schedstat, ns) over a pipelined
//! burst, not wall time at the client. Asserts nothing about a number; `make test` skips it.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent_bin, connect_when_listening, status_kib, Rng, TempDir};

use common::REFERENCE;
/// Interleaved rounds per figure (`QGA_BENCH_ROUNDS` to change).
fn rounds() -> usize {
    std::env::var("QGA_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
}

/// The commands measured, each with its pipelined burst size (the heavy ones smaller, so
/// a round stays short) and its target (ours / qemu-ga CPU per request), from issue 15.
const COMMANDS: [(&str, usize, &str); 11] = [
    ("guest-ping", 5000, "<= 0.2x"),
    ("guest-info", 1000, "<= 0.5x"),
    ("guest-get-osinfo", 2000, "<= 0.5x"),
    ("guest-get-fsinfo", 300, "<= 0.5x"),
    ("guest-network-get-interfaces", 500, "<= 0.5x"),
    ("guest-get-vcpus", 1000, "<= 0.5x"),
    ("guest-get-users", 1000, "<= 0.5x"),
    ("guest-get-diskstats", 500, "<= 0.5x"),
    ("guest-get-cpustats", 1000, "<= 0.5x"),
    ("guest-get-monitoring-items", 200, "<= 0.3 ms"),
    ("guest-get-app-status", 50, "2x stat-read"),
];

/// Lock-step round trips per command and round, for the p50.
const LOCKSTEP: usize = 200;
/// The mixed requests between "after start" and "after 100,000 requests".
const MIXED: usize = 100_000;

/// Fails the bench unless /usr/sbin/qemu-ga is Debian's qemu-guest-agent, version 7.2
/// (common::reference_is_debians_72): a ratio against some other build would mean
/// nothing. Returns its `-V` line.
fn reference_version() -> String {
    if let Err(why) = common::reference_is_debians_72() {
        panic!("no reference to bench against: {why}");
    }
    let v = Command::new(REFERENCE).arg("-V").output().unwrap();
    String::from_utf8_lossy(&v.stdout).trim().to_string()
}

struct Running {
    child: Child,
    _dir: TempDir,
    sock: PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// How long an agent or the echo server may take to listen.
const STARTS_WITHIN: Duration = Duration::from_secs(10);

/// Starts `bin` on a fresh socket; returns it and the time from spawn to the first reply
/// (a guest-ping).
fn start(bin: &str) -> (Running, Duration) {
    let dir = TempDir::new("bench");
    let sock = dir.join("s.sock");
    let t0 = Instant::now();
    let child = Command::new(bin)
        .args(["-m", "unix-listen", "-p"])
        .arg(&sock)
        .arg("-t")
        .arg(dir.path())
        .env("QGA_CONF", "/nonexistent/qga.conf")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut s = connect_when_listening(&sock, STARTS_WITHIN, Duration::from_micros(100));
    s.write_all(br#"{"execute":"guest-ping"}"#).unwrap();
    read_lines(&mut s, 1);
    let up = t0.elapsed();
    drop(s);
    let agent = Running {
        child,
        _dir: dir,
        sock,
    };
    (agent, up)
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until `n` reply lines ('\n' never occurs inside one) have arrived; returns the
/// last chunk read.
fn read_lines(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 16];
    let mut seen = 0;
    let mut last = Vec::new();
    while seen < n {
        let k = match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other.unwrap(),
        };
        assert!(
            k > 0,
            "agent closed the connection after {seen} of {n} replies"
        );
        seen += buf[..k].iter().filter(|&&b| b == b'\n').count();
        last = buf[..k].to_vec();
    }
    last
}

/// The agent's CPU time so far in ns: the first field of schedstat, summed over every
/// thread, plus the CPU of children it has reaped (cutime + cstime, in clock ticks).
fn cpu_ns(pid: u32) -> u64 {
    let mut ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            ns += text.split(' ').next().unwrap().parse::<u64>().unwrap();
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
    let children: u64 = f[13].parse::<u64>().unwrap() + f[14].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux the agent targets.
    ns + children * 10_000_000
}

fn request(command: &str) -> String {
    format!(r#"{{"execute":"{command}"}}"#)
}

/// `n` copies of `req` written ahead by one thread while this one reads the replies;
/// returns the agent's CPU ns per request.
fn pipelined(agent: &Running, req: &str, n: usize) -> f64 {
    burst(agent, req.repeat(n).into_bytes(), n) as f64 / n as f64
}

/// Writes `bytes` (`n` requests) from one thread while this one reads the `n` replies;
/// returns the agent's CPU ns meanwhile.
fn burst(agent: &Running, bytes: Vec<u8>, n: usize) -> u64 {
    let mut s = UnixStream::connect(&agent.sock).unwrap();
    let mut w = s.try_clone().unwrap();
    let cpu0 = cpu_ns(agent.pid());
    let writer = std::thread::spawn(move || w.write_all(&bytes).unwrap());
    read_lines(&mut s, n);
    writer.join().unwrap();
    cpu_ns(agent.pid()) - cpu0
}

/// Lock-step round trips on one connection: the p50 in seconds.
fn lockstep_p50(sock: &Path, req: &str, n: usize) -> f64 {
    let mut s = UnixStream::connect(sock).unwrap();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        s.write_all(req.as_bytes()).unwrap();
        read_lines(&mut s, 1);
        times.push(t0.elapsed().as_secs_f64());
    }
    median(times)
}

/// A socket that answers every request (a '}' ends it here) with `{"return": {}}` at
/// once: the round-trip floor of this machine and client. It is a process of its own (this
/// test binary again, running only [`bench_echo_process`]), so that its round trip crosses
/// processes as an agent's does: a thread of the bench answered in a third of the time.
/// With `poll`, it waits in poll(2) before each read, as an event loop does (the agent
/// waits in ppoll): the floor of a loop that must watch more than one descriptor.
fn echo_server(poll: bool) -> Running {
    let dir = TempDir::new("bench-echo");
    let sock = dir.join("echo.sock");
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "bench_echo_process", "--ignored", "--nocapture"])
        .env(ECHO_ENV, &sock)
        .env(ECHO_POLL_ENV, if poll { "1" } else { "0" })
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    connect_when_listening(&sock, STARTS_WITHIN, Duration::from_micros(100));
    Running {
        child,
        _dir: dir,
        sock,
    }
}

/// Where [`bench_echo_process`] listens; unset, it returns at once.
const ECHO_ENV: &str = "QGA_BENCH_ECHO";
/// "1": it polls before each read.
const ECHO_POLL_ENV: &str = "QGA_BENCH_ECHO_POLL";

#[test]
#[ignore = "the bench's echo server: the bench runs it as a process of its own"]
fn bench_echo_process() {
    let Some(sock) = std::env::var_os(ECHO_ENV) else {
        return;
    };
    let poll = std::env::var(ECHO_POLL_ENV).is_ok_and(|v| v == "1");
    let listener = UnixListener::bind(sock).unwrap();
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { return };
        let mut buf = [0u8; 4096];
        loop {
            if poll {
                use std::os::fd::AsRawFd;
                let mut fd = libc::pollfd {
                    fd: conn.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                if unsafe { libc::poll(&mut fd, 1, -1) } < 0 {
                    break;
                }
            }
            let Ok(k) = conn.read(&mut buf) else { break };
            if k == 0 {
                break;
            }
            for _ in buf[..k].iter().filter(|&&b| b == b'}') {
                if conn.write_all(b"{\"return\": {}}\n").is_err() {
                    break;
                }
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The commands `bin` lists as enabled in guest-info.
fn supported(agent: &Running) -> Vec<String> {
    let mut s = UnixStream::connect(&agent.sock).unwrap();
    s.write_all(request("guest-info").as_bytes()).unwrap();
    let mut line = Vec::new();
    let mut buf = [0u8; 65536];
    while !line.ends_with(b"\n") {
        let k = s.read(&mut buf).unwrap();
        assert!(k > 0);
        line.extend_from_slice(&buf[..k]);
    }
    let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
    v["return"]["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["enabled"] == true)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// `MIXED` / 2 requests of a mix a host polls with, pipelined in bursts of 5,000.
fn mixed_requests(agent: &Running) {
    const MIX: [&str; 8] = [
        r#"{"execute":"guest-ping"}"#,
        r#"{"execute":"guest-sync","arguments":{"id":77}}"#,
        r#"{"execute":"guest-get-time"}"#,
        r#"{"execute":"guest-get-host-name"}"#,
        r#"{"execute":"guest-get-osinfo"}"#,
        r#"{"execute":"guest-get-vcpus"}"#,
        r#"{"execute":"guest-get-timezone"}"#,
        r#"{"execute":"guest-no-such-command"}"#,
    ];
    let mut rng = Rng(0x5eed_0fbe_7c40_0001);
    for _ in 0..MIXED / 2 / 5000 {
        let mut bytes = String::new();
        for _ in 0..5000 {
            bytes.push_str(MIX[rng.below(MIX.len())]);
        }
        burst(agent, bytes.into_bytes(), 5000);
    }
}

/// What a host sends by mistake: JSON-ish fragments, 4 MiB of them, then 0xFF and a
/// guest-sync-delimited. Reads replies until the sync's; false if it never came.
fn garbage_flood(agent: &Running) -> bool {
    const PIECES: [&[u8]; 12] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b",",
        b":",
        b"guest-ping",
        b"\"execute\"",
        b"12345",
        b"\n",
        b"\\u00",
    ];
    let mut rng = Rng(0x0bad_5eed_0bad_5eed);
    let input = rng.garbage(&PIECES, 4 << 20);
    let mut s = UnixStream::connect(&agent.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&input);
    });
    let mut buf = vec![0u8; 1 << 16];
    let mut tail = Vec::new();
    let found = loop {
        let k = match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(k) if k > 0 => k,
            _ => break false,
        };
        tail.extend_from_slice(&buf[..k]);
        if tail.windows(14).any(|w| w == b"\"return\": 4242") {
            break true;
        }
        let keep = tail.len().saturating_sub(16);
        tail.drain(..keep);
    };
    drop(s);
    let _ = writer.join();
    found
}

/// Bytes on disk of every file mapped into the process: the executable and each shared
/// library it loaded.
fn mapped_bytes(pid: u32) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut files: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .collect();
    files.sort();
    files.dedup();
    files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// This thread's CPU ns so far.
fn own_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    text.split(' ').next().unwrap().parse().unwrap()
}

/// The floor for guest-get-app-status: opening and reading every process's `stat` once,
/// in this process. Returns CPU ns and the number of processes.
fn stat_read_floor() -> (f64, usize) {
    let cpu0 = own_cpu_ns();
    let mut n = 0;
    let mut buf = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(mut f) = std::fs::File::open(e.path().join("stat")) {
            buf.clear();
            if f.read_to_end(&mut buf).is_ok() {
                n += 1;
            }
        }
    }
    ((own_cpu_ns() - cpu0) as f64, n)
}

/// One agent's figures over the rounds.
#[derive(Default)]
struct Sample {
    startup: Vec<f64>,
    cpu: Vec<Vec<f64>>,
    p50: Vec<Vec<f64>>,
    /// RSS and VmHWM (KiB) after start, after the mixed requests, after the garbage.
    rss: [Vec<f64>; 3],
    hwm: [Vec<f64>; 3],
    /// RSS half way through the mixed requests.
    half: Vec<f64>,
    /// RSS after the mixed requests and 1.5 s of nothing (ours gives kept memory back
    /// after 1 s idle).
    idle: Vec<f64>,
    garbage_ok: bool,
    disk: f64,
    has: Vec<bool>,
}

fn measure(bin: &str, sample: &mut Sample) {
    let (agent, up) = start(bin);
    let pid = agent.pid();
    sample.startup.push(up.as_secs_f64());
    sample.rss[0].push(status_kib(pid, "VmRSS:") as f64);
    sample.hwm[0].push(status_kib(pid, "VmHWM:") as f64);
    let names = supported(&agent);
    sample.has = COMMANDS
        .iter()
        .map(|c| names.iter().any(|n| n == c.0))
        .collect();
    sample.cpu.resize(COMMANDS.len(), Vec::new());
    sample.p50.resize(COMMANDS.len(), Vec::new());
    for (i, &(name, n, _)) in COMMANDS.iter().enumerate() {
        if !sample.has[i] {
            continue;
        }
        let req = request(name);
        sample.cpu[i].push(pipelined(&agent, &req, n));
        sample.p50[i].push(lockstep_p50(&agent.sock, &req, LOCKSTEP.min(n)));
    }
    mixed_requests(&agent);
    sample.half.push(status_kib(pid, "VmRSS:") as f64);
    mixed_requests(&agent);
    sample.rss[1].push(status_kib(pid, "VmRSS:") as f64);
    sample.hwm[1].push(status_kib(pid, "VmHWM:") as f64);
    std::thread::sleep(Duration::from_millis(1500));
    sample.idle.push(status_kib(pid, "VmRSS:") as f64);
    sample.garbage_ok = garbage_flood(&agent);
    sample.rss[2].push(status_kib(pid, "VmRSS:") as f64);
    sample.hwm[2].push(status_kib(pid, "VmHWM:") as f64);
    sample.disk = mapped_bytes(pid) as f64;
}

/// The benches run one at a time: two at once on a small machine measure each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the bench lock; fails the bench unless the reference is Debian's qemu-ga 7.2.
fn require_reference() -> (std::sync::MutexGuard<'static, ()>, String) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    (guard, reference_version())
}

fn header() {
    println!(
        "| {:<44} | {:>10} | {:>10} | {:<4} | {:>6} | {:<12} |",
        "figure", "qga-bc", "qemu-ga", "unit", "ratio", "target"
    );
    println!(
        "|{:-<46}|{:->12}|{:->12}|{:-<6}|{:->8}|{:-<14}|",
        "", "", "", "", "", ""
    );
}

fn row(name: &str, unit: &str, a: f64, b: Option<f64>, target: &str) {
    let (b, ratio) = match b {
        Some(b) if b != 0.0 => (format!("{b:.2}"), format!("{:.2}", a / b)),
        Some(b) => (format!("{b:.2}"), "-".to_string()),
        None => ("-".to_string(), "-".to_string()),
    };
    println!("| {name:<44} | {a:>10.2} | {b:>10} | {unit:<4} | {ratio:>6} | {target:<12} |");
}

#[test]
#[ignore = "benchmark: run with `make bench`"]
fn bench_against_reference_qemu_ga() {
    let (_serial, version) = require_reference();
    // The agent under test ($QGA_BIN: `make bench` sets the static musl build), without
    // the 2.6.32 filter: this measures the binary, not seccomp.
    let bin = agent_bin();
    let bin = bin.to_str().unwrap();
    let echo = echo_server(false);
    let echo_poll = echo_server(true);
    let (mut ours, mut theirs) = (Sample::default(), Sample::default());
    let mut echo_p50 = Vec::new();
    let mut echo_poll_p50 = Vec::new();
    let mut floor = Vec::new();
    let mut procs = 0;
    for _ in 0..rounds() {
        // Interleaved, so drift on the machine hits both alike.
        echo_p50.push(lockstep_p50(&echo.sock, &request("guest-ping"), LOCKSTEP));
        echo_poll_p50.push(lockstep_p50(
            &echo_poll.sock,
            &request("guest-ping"),
            LOCKSTEP,
        ));
        measure(bin, &mut ours);
        measure(REFERENCE, &mut theirs);
        let (ns, n) = stat_read_floor();
        floor.push(ns);
        procs = n;
    }
    let echo_p50 = median(echo_p50) * 1e6;
    let echo_poll_p50 = median(echo_poll_p50) * 1e6;
    let floor = median(floor) / 1e3;
    println!();
    println!(
        "qga-bc ({bin}) vs {version} ({REFERENCE}), median of {} interleaved rounds",
        rounds()
    );
    println!(
        "ratio = qga-bc / qemu-ga; lock-step rows: qga-bc / echo server ({echo_p50:.1} us p50)"
    );
    println!();
    header();
    let m = |v: &Vec<f64>| median(v.clone());
    row(
        "start to first reply",
        "ms",
        m(&ours.startup) * 1e3,
        Some(m(&theirs.startup) * 1e3),
        "<= 0.5x",
    );
    for (i, &(name, _, target)) in COMMANDS.iter().enumerate() {
        let a = m(&ours.cpu[i]) / 1e3;
        let b = theirs.has[i].then(|| m(&theirs.cpu[i]) / 1e3);
        match name {
            "guest-get-monitoring-items" => row(&format!("CPU/req {name}"), "us", a, b, target),
            "guest-get-app-status" => {
                row(&format!("CPU/req {name}"), "us", a, b, "ours only");
                row(
                    &format!("  vs reading {procs} /proc/*/stat once"),
                    "us",
                    a,
                    Some(floor),
                    "<= 2x",
                );
            }
            _ => row(
                &format!("CPU/req {name}"),
                "us",
                a,
                b,
                if b.is_some() { target } else { "ours only" },
            ),
        }
    }
    row("lock-step p50, echo server", "us", echo_p50, None, "floor");
    row(
        "lock-step p50, echo server through poll(2)",
        "us",
        echo_poll_p50,
        Some(echo_p50),
        "a loop's floor",
    );
    for (i, &(name, _, _)) in COMMANDS.iter().enumerate() {
        let a = m(&ours.p50[i]) * 1e6;
        let b = theirs.has[i].then(|| m(&theirs.p50[i]) * 1e6);
        let b = b.map(|b| format!("{b:.1}")).unwrap_or_else(|| "-".into());
        println!(
            "| {:<44} | {a:>10.2} | {b:>10} | {:<4} | {:>6.2} | {:<12} |",
            format!("p50 {name}"),
            "us",
            a / echo_p50,
            "<= 1.2x echo"
        );
    }
    let stages = [
        "after start",
        "after 100,000 mixed requests",
        "after 4 MiB garbage",
    ];
    for (k, stage) in stages.iter().enumerate() {
        let target = if k < 2 { "<= 0.25x" } else { "" };
        row(
            &format!("RSS {stage}"),
            "KiB",
            m(&ours.rss[k]),
            Some(m(&theirs.rss[k])),
            target,
        );
        row(
            &format!("VmHWM {stage}"),
            "KiB",
            m(&ours.hwm[k]),
            Some(m(&theirs.hwm[k])),
            "",
        );
    }
    row(
        "RSS after the requests and 1.5 s idle",
        "KiB",
        m(&ours.idle),
        Some(m(&theirs.idle)),
        "<= 0.25x",
    );
    row(
        "RSS growth, start to 100,000 requests",
        "KiB",
        m(&ours.rss[1]) - m(&ours.rss[0]),
        Some(m(&theirs.rss[1]) - m(&theirs.rss[0])),
        "",
    );
    row(
        "RSS growth, 50,000 to 100,000 requests",
        "KiB",
        m(&ours.rss[1]) - m(&ours.half),
        Some(m(&theirs.rss[1]) - m(&theirs.half)),
        "<= 64 KiB",
    );
    row(
        "size on disk, executable + mapped libraries",
        "KiB",
        ours.disk / 1024.0,
        Some(theirs.disk / 1024.0),
        "<= 0.3x",
    );
    println!();
    println!(
        "garbage flood answered through to the sync: qga-bc {}, qemu-ga {}",
        ours.garbage_ok, theirs.garbage_ok
    );
    for (i, &(name, _, _)) in COMMANDS.iter().enumerate() {
        if !theirs.has[i] {
            println!("{name}: not in qemu-ga 7.2, ours only");
        }
    }
}

/// Reads the file behind a fresh handle to its end in `count`-byte guest-file-reads on
/// one connection; returns MB/s (10^6 bytes of file per second, base64 on the wire).
fn file_read_rate(sock: &Path, file: &Path, count: usize) -> f64 {
    let mut s = UnixStream::connect(sock).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut reply = |s: &mut UnixStream, req: &str| -> Vec<u8> {
        s.write_all(req.as_bytes()).unwrap();
        let mut line = Vec::new();
        loop {
            let k = match s.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => other.unwrap(),
            };
            assert!(k > 0);
            line.extend_from_slice(&buf[..k]);
            if buf[..k].contains(&b'\n') {
                return line;
            }
        }
    };
    let open = format!(
        r#"{{"execute":"guest-file-open","arguments":{{"path":"{}"}}}}"#,
        file.display()
    );
    let opened = String::from_utf8(reply(&mut s, &open)).unwrap();
    let handle: i64 = opened
        .trim()
        .trim_start_matches(r#"{"return": "#)
        .trim_end_matches('}')
        .parse()
        .unwrap_or_else(|_| panic!("open failed: {opened}"));
    let read = format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{handle},"count":{count}}}}}"#
    );
    let size = std::fs::metadata(file).unwrap().len();
    let t0 = Instant::now();
    let mut wire = 0u64;
    loop {
        let line = reply(&mut s, &read);
        wire += line.len() as u64;
        // str's substring search, not a byte-window scan: at 87 KiB a reply, the naive
        // scan took as long as the agents' own work and narrowed their ratio.
        if std::str::from_utf8(&line).is_ok_and(|l| l.contains("\"eof\": true")) {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    assert!(wire > size, "read less than the file: {wire} < {size}");
    let close = format!(r#"{{"execute":"guest-file-close","arguments":{{"handle":{handle}}}}}"#);
    reply(&mut s, &close);
    size as f64 / 1e6 / secs
}

#[test]
#[ignore = "benchmark: run with `make bench`"]
fn bench_file_read_against_reference_qemu_ga() {
    let (_serial, _) = require_reference();
    let bin = agent_bin();
    let bin = bin.to_str().unwrap();
    let dir = TempDir::new("bench-file");
    let file = dir.join("50MiB.bin");
    // Incompressible-looking bytes; what they are does not matter to either agent.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let data: Vec<u8> = (0..50 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&file, &data).unwrap();
    println!();
    println!(
        "guest-file-read of a 50 MiB file, MB/s, median of {} interleaved rounds",
        rounds()
    );
    header();
    for count in [64 << 10, 4 << 20] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds() {
            let (agent, _) = start(bin);
            ours.push(file_read_rate(&agent.sock, &file, count));
            drop(agent);
            let (agent, _) = start(REFERENCE);
            theirs.push(file_read_rate(&agent.sock, &file, count));
        }
        let (a, b) = (median(ours), median(theirs));
        let name = format!("guest-file-read, count {} KiB", count >> 10);
        row(&name, "MB/s", a, Some(b), ">= 1.5x");
    }
}
