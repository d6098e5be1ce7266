//! `make bench`: our agent and the reference qemu-ga (Debian's /usr/sbin/qemu-ga) side
//! by side in one run, on the same machine and the same requests, reported as ratios.
//! Not a test of speed: it asserts nothing about time and is ignored by `make test`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent_bin, status_kib, TempDir};

use common::REFERENCE;
const ROUNDS: usize = 5;
const REQUESTS: usize = 2000;

struct Running {
    child: Child,
    _dir: TempDir,
    sock: std::path::PathBuf,
}

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
    while UnixStream::connect(&sock).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{bin} did not start"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    let up = t0.elapsed();
    (
        Running {
            child,
            _dir: dir,
            sock,
        },
        up,
    )
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Sequential round trips on one connection; returns seconds per request.
fn round_trips(sock: &Path, request: &str, n: usize) -> f64 {
    let mut s = UnixStream::connect(sock).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let t0 = Instant::now();
    for _ in 0..n {
        s.write_all(request.as_bytes()).unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            let k = match s.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => other.unwrap(),
            };
            assert!(k > 0);
            got.extend_from_slice(&buf[..k]);
        }
    }
    t0.elapsed().as_secs_f64() / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[derive(Default)]
struct Sample {
    startup: Vec<f64>,
    per_request: Vec<Vec<f64>>,
    cpu_ticks: Vec<f64>,
    rss: Vec<f64>,
    hwm: Vec<f64>,
}

const REQUESTS_BENCHED: [(&str, &str); 3] = [
    ("guest-ping", r#"{"execute":"guest-ping"}"#),
    (
        "guest-sync",
        r#"{"execute":"guest-sync","arguments":{"id":1234567}}"#,
    ),
    ("guest-info", r#"{"execute":"guest-info"}"#),
];

fn measure(bin: &str, sample: &mut Sample) {
    let (agent, up) = start(bin);
    sample.startup.push(up.as_secs_f64());
    let pid = agent.child.id();
    let cpu0 = cpu_ticks(pid);
    sample
        .per_request
        .resize(REQUESTS_BENCHED.len(), Vec::new());
    for (i, (_, req)) in REQUESTS_BENCHED.iter().enumerate() {
        sample.per_request[i].push(round_trips(&agent.sock, req, REQUESTS));
    }
    sample.cpu_ticks.push((cpu_ticks(pid) - cpu0) as f64);
    sample.rss.push(status_kib(pid, "VmRSS:") as f64);
    sample.hwm.push(status_kib(pid, "VmHWM:") as f64);
}

/// The benches run one at a time: two at once on a small machine measure each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the bench lock; fails the bench when the reference agent is missing.
fn require_reference() -> std::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} missing: run `make deps` (Debian's qemu-guest-agent)"
    );
    if let Err(why) = common::reference_is_debians_72() {
        panic!("no reference to bench against: {why}");
    }
    guard
}

#[test]
#[ignore = "benchmark: run with `make bench`"]
fn bench_against_reference_qemu_ga() {
    let _serial = require_reference();
    // The agent under test ($QGA_BIN: a musl build, say), without the 2.6.32 filter:
    // this measures the binary, not seccomp.
    let bin = agent_bin();
    let bin = bin.to_str().unwrap();
    let (mut ours, mut theirs) = (Sample::default(), Sample::default());
    for _ in 0..ROUNDS {
        // Interleaved, so drift on the machine hits both alike.
        measure(bin, &mut ours);
        measure(REFERENCE, &mut theirs);
    }
    let row = |name: &str, unit: &str, a: f64, b: f64| {
        println!("{name:<34} {a:>12.2} {b:>12.2} {unit:<4} {:>8.2}", a / b);
    };
    println!();
    println!("qga-bc vs reference qemu-ga ({REFERENCE}), median of {ROUNDS} interleaved rounds");
    println!(
        "{:<34} {:>12} {:>12} {:<4} {:>8}",
        "metric", "qga-bc", "qemu-ga", "", "ratio"
    );
    row(
        "startup to listening",
        "ms",
        median(ours.startup.clone()) * 1e3,
        median(theirs.startup.clone()) * 1e3,
    );
    for (i, (name, _)) in REQUESTS_BENCHED.iter().enumerate() {
        row(
            &format!("{name} round trip"),
            "us",
            median(ours.per_request[i].clone()) * 1e6,
            median(theirs.per_request[i].clone()) * 1e6,
        );
    }
    let total = (REQUESTS * REQUESTS_BENCHED.len()) as f64 / 1000.0;
    row(
        "agent CPU per 1000 requests",
        "tick",
        median(ours.cpu_ticks.clone()) / total,
        median(theirs.cpu_ticks.clone()) / total,
    );
    row(
        "RSS after the run",
        "KiB",
        median(ours.rss.clone()),
        median(theirs.rss.clone()),
    );
    row(
        "peak RSS",
        "KiB",
        median(ours.hwm.clone()),
        median(theirs.hwm.clone()),
    );
    let size = |p: &str| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1024.0)
            .unwrap_or(0.0)
    };
    row(
        "binary size (ours: the one under test)",
        "KiB",
        size(bin),
        size(REFERENCE),
    );
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
        if line.windows(11).any(|w| w == b"\"eof\": true") {
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
    let _serial = require_reference();
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
    println!("guest-file-read of a 50 MiB file, MB/s, median of {ROUNDS} interleaved rounds");
    println!(
        "{:<34} {:>12} {:>12} {:>8}",
        "count", "qga-bc", "qemu-ga", "ratio"
    );
    for count in [64 << 10, 4 << 20] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let (agent, _) = start(bin);
            ours.push(file_read_rate(&agent.sock, &file, count));
            drop(agent);
            let (agent, _) = start(REFERENCE);
            theirs.push(file_read_rate(&agent.sock, &file, count));
        }
        let (a, b) = (median(ours), median(theirs));
        println!(
            "{:<34} {a:>12.1} {b:>12.1} {:>8.2}",
            format!("count {} KiB", count >> 10),
            a / b
        );
    }
}
