//! The code layout of the binary we ship (src/build.rs): the functions a running agent
//! executes, listed in src/hot_code.txt, linked together in `.text.hot`, so that the
//! kernel's fault-around maps them and not the whole executable.
//!
//! `make hot-code` records the list ([`record_hot_code`], ignored otherwise): it runs an
//! unstripped musl agent under valgrind's callgrind through the requests hosts send and
//! writes every function that ran. The other test checks the binary under test.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{agent_bin, connect_when_listening, Client, TempDir};

/// One section of an ELF file: name, address, size.
struct Section {
    name: String,
    addr: u64,
    size: u64,
}

/// The sections of a little-endian ELF file (32- or 64-bit), from its section headers.
fn sections(file: &Path) -> Vec<Section> {
    let elf = std::fs::read(file).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "{} is no ELF file", file.display());
    assert_eq!(elf[5], 1, "big-endian ELF");
    let wide = elf[4] == 2;
    let num = |at: usize, len: usize| -> u64 {
        let mut v = 0u64;
        for (i, b) in elf[at..at + len].iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        v
    };
    let word = if wide { 8 } else { 4 };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (num(0x28, 8), num(0x3a, 2), num(0x3c, 2), num(0x3e, 2))
    } else {
        (num(0x20, 4), num(0x2e, 2), num(0x30, 2), num(0x32, 2))
    };
    // In a section header: name (4 bytes), type (4), flags (word), then address (word),
    // file offset (word) and size (word).
    let header = |i: u64| (shoff + i * shentsize) as usize;
    let field = |i: u64, n: usize| num(header(i) + 8 + n * word, word);
    let names = field(shstrndx, 2) as usize;
    (0..shnum)
        .map(|i| {
            let at = names + num(header(i), 4) as usize;
            let end = at + elf[at..].iter().position(|&b| b == 0).unwrap();
            Section {
                name: String::from_utf8_lossy(&elf[at..end]).into_owned(),
                addr: field(i, 1),
                size: field(i, 3),
            }
        })
        .collect()
}

/// The hot share of the code below which the list has gone stale: recorded, it holds
/// about a third of it (what a host's requests run); without it, `.text.hot` would be
/// the C library alone (~4 %).
const HOT_SHARE_FLOOR: f64 = 0.2;

#[test]
fn the_shipped_agent_keeps_its_hot_code_in_front() {
    let bin = agent_bin();
    let all = sections(&bin);
    let find = |name: &str| all.iter().find(|s| s.name == name);
    let text = find(".text").expect("no .text");
    // src/build.rs lays out the musl build only; the host build is left as linked.
    if !bin.to_string_lossy().contains("-linux-musl/") {
        assert!(find(".text.hot").is_none(), "{}: laid out", bin.display());
        return;
    }
    let hot = find(".text.hot").unwrap_or_else(|| {
        panic!(
            "{}: no .text.hot (src/build.rs not applied?)",
            bin.display()
        )
    });
    assert!(hot.addr < text.addr, "hot code after the rest");
    let share = hot.size as f64 / (hot.size + text.size) as f64;
    println!(
        "{}: .text.hot {} KiB, .text {} KiB, hot share {share:.2}",
        bin.display(),
        hot.size >> 10,
        text.size >> 10
    );
    assert!(
        share >= HOT_SHARE_FLOOR,
        "src/hot_code.txt matches only {:.0} % of the code: run `make hot-code`",
        share * 100.0
    );
}

/// The requests of the recording: what libvirt, nova and VMAnalyzer send, each a few times
/// (a second call takes the paths of what the first one cached), errors included.
const WORKLOAD: &[&str] = &[
    r#"{"execute":"guest-sync-delimited","arguments":{"id":1234567}}"#,
    r#"{"execute":"guest-sync","arguments":{"id":77}}"#,
    r#"{"execute":"guest-ping"}"#,
    r#"{"execute":"guest-info"}"#,
    r#"{"execute":"guest-get-time"}"#,
    r#"{"execute":"guest-get-timezone"}"#,
    r#"{"execute":"guest-get-host-name"}"#,
    r#"{"execute":"guest-get-osinfo"}"#,
    r#"{"execute":"guest-get-fsinfo"}"#,
    r#"{"execute":"guest-get-users"}"#,
    r#"{"execute":"guest-get-vcpus"}"#,
    r#"{"execute":"guest-get-disks"}"#,
    r#"{"execute":"guest-get-diskstats"}"#,
    r#"{"execute":"guest-get-cpustats"}"#,
    r#"{"execute":"guest-get-load"}"#,
    r#"{"execute":"guest-network-get-interfaces"}"#,
    r#"{"execute":"guest-network-get-route"}"#,
    r#"{"execute":"guest-get-memory-blocks"}"#,
    r#"{"execute":"guest-get-memory-block-info"}"#,
    r#"{"execute":"guest-fsfreeze-status"}"#,
    r#"{"execute":"guest-get-memory-status"}"#,
    r#"{"execute":"guest-get-system-info"}"#,
    r#"{"execute":"guest-get-oom-status"}"#,
    r#"{"execute":"guest-get-app-status"}"#,
    r#"{"execute":"guest-get-disk-status"}"#,
    r#"{"execute":"guest-get-monitoring-items"}"#,
    r#"{"execute":"guest-get-lastboot-time"}"#,
    r#"{"execute":"guest-get-load-average"}"#,
    r#"{"execute":"guest-get-cpu-utilization"}"#,
    r#"{"execute":"guest-get-cpustinfo"}"#,
    r#"{"execute":"guest-get-tcp-conn"}"#,
    r#"{"execute":"guest-get-tcp-conn-state"}"#,
    r#"{"execute":"guest-get-cputopn-status","arguments":{"cputopn-num":5}}"#,
    r#"{"execute":"guest-get-memtopn-status","arguments":{"memtopn-num":5}}"#,
    r#"{"execute":"guest-file-open","arguments":{"path":"/etc/os-release"}}"#,
    r#"{"execute":"guest-no-such-command"}"#,
    r#"{"execute":"guest-file-read","arguments":{}}"#,
    r#"{"execute":"guest-get-time","arguments":{"x":1}}"#,
    r#"{"execute":}"#,
    "[1, 2]",
];

/// What the recording writes at the top of src/hot_code.txt.
const HEADER: &str = "\
# Functions the agent runs, for src/build.rs to link together (tests/hot_code.rs).
# Written by `make hot-code`; do not edit. One pattern of a function's section name
# (.text.<pattern>) a line: the name as linked, with what changes from one build,
# target or toolchain to the next (symbol hashes, crate disambiguators) as `*`.
";

#[test]
#[ignore = "records src/hot_code.txt: `make hot-code` (valgrind, an unstripped agent); `make test` skips it"]
fn record_hot_code() {
    let bin = agent_bin();
    assert!(
        sections(&bin).iter().any(|s| s.name == ".symtab"),
        "{}: stripped; `make hot-code` builds an agent with its symbols",
        bin.display()
    );
    let dir = TempDir::new("hot-code");
    let socket = dir.join("qga.sock");
    let out = dir.join("callgrind.out");
    let agent = Command::new("valgrind")
        .args(["--tool=callgrind", "--demangle=no", "-q"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&bin)
        .args(["-m", "unix-listen", "-p"])
        .arg(&socket)
        .arg("-t")
        .arg(dir.path())
        .env("QGA_CONF", dir.join("no-such.conf"))
        .stdin(Stdio::null())
        .spawn()
        .expect("valgrind (apt-get install valgrind)");
    let mut agent = KillOnDrop(agent);
    // Valgrind takes its time to start.
    connect_when_listening(&socket, Duration::from_secs(120), Duration::from_millis(50));
    for round in 0..3 {
        let mut c = Client::connect(&socket);
        for request in WORKLOAD {
            c.send(request.as_bytes());
            let reply = String::from_utf8_lossy(&c.line()).into_owned();
            if request.contains("guest-file-open") {
                let handle = reply
                    .trim_start_matches("{\"return\": ")
                    .trim_end_matches('}');
                for next in ["guest-file-read", "guest-file-close"] {
                    let r = format!(r#"{{"execute":"{next}","arguments":{{"handle":{handle}}}}}"#);
                    c.send(r.as_bytes());
                    c.line();
                }
            }
        }
        c.send(b"\xff");
        c.send(br#"{"execute":"guest-sync-delimited","arguments":{"id":9}}"#);
        c.line();
        // Pipelined, as a host that writes ahead: many requests in one read, and the
        // input buffer compacted between them.
        let burst: String = (0..2000).map(|i| WORKLOAD[i % 4]).collect();
        c.send(burst.as_bytes());
        for _ in 0..2000 {
            c.line();
        }
        drop(c);
        if round == 1 {
            // Long enough for the idle agent to give its kept memory back.
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
    // SIGTERM: the agent exits as it does when stopped, and callgrind writes its file.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    assert!(
        agent.0.wait().unwrap().success(),
        "agent under valgrind failed"
    );
    let profile = std::fs::read_to_string(&out).unwrap();
    let mut list: Vec<String> = executed(&profile).filter_map(pattern).collect();
    list.sort();
    list.dedup();
    assert!(list.len() > 200, "only {} functions ran", list.len());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/hot_code.txt");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(HEADER.as_bytes()).unwrap();
    for p in &list {
        writeln!(f, "{p}").unwrap();
    }
    println!("{}: {} functions", path.display(), list.len());
}

/// A child that a failing recording does not leave running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The functions a callgrind profile has costs for, each under a `fn=(id)` line. A name
/// is given with its id once, on the first `fn=` or `cfn=` (callee) line with that id.
fn executed(profile: &str) -> impl Iterator<Item = &str> {
    let mut names = std::collections::HashMap::new();
    let mut seen = Vec::new();
    for line in profile.lines() {
        let (own, rest) = match (line.strip_prefix("fn=("), line.strip_prefix("cfn=(")) {
            (Some(rest), _) => (true, rest),
            (_, Some(rest)) => (false, rest),
            _ => continue,
        };
        let Some((id, name)) = rest.split_once(')') else {
            continue;
        };
        let name = name.trim();
        if !name.is_empty() {
            names.insert(id, name);
        }
        if own {
            seen.push(id);
        }
    }
    seen.sort();
    seen.dedup();
    seen.into_iter()
        .filter_map(move |id| names.get(id).copied())
}

/// A function's name as a pattern that matches it in any build: legacy-mangled names end
/// in a hash (`17h` and 16 hex digits), v0-mangled ones name crates with a disambiguator
/// (`Cs<base-62>_`) and refer back by offset (`B<base-62>_`), which moves with it.
/// Callgrind's own names (addresses, `(below main)`) are no function's.
fn pattern(name: &str) -> Option<String> {
    // callgrind marks a recursive call's cycle with 'N.
    let name = name.split('\'').next().unwrap();
    if name.starts_with("0x") || name.starts_with('(') || name.is_empty() {
        return None;
    }
    if let Some(i) = name.rfind("17h") {
        let hash = &name[i + 3..];
        if name.starts_with("_ZN")
            && hash.len() == 17
            && hash.ends_with('E')
            && hash[..16].bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Some(format!("{}17h*E", &name[..i]));
        }
    }
    if name.starts_with("_R") {
        return Some(v0_pattern(name));
    }
    Some(name.to_string())
}

/// A v0 name with every crate disambiguator, back-reference and LLVM suffix as `*`,
/// read with the grammar of Rust's v0 mangling (only what names a function: paths,
/// types, generic arguments and constants); a name it cannot read stays as it is.
fn v0_pattern(name: &str) -> String {
    let Some(body) = name.strip_prefix("_R") else {
        return name.to_string();
    };
    let (body, suffix) = match body.find('.') {
        Some(dot) => (&body[..dot], ".*"),
        None => (body, ""),
    };
    let mut v = V0 {
        s: body.as_bytes(),
        i: 0,
        out: String::from("_R"),
    };
    let read = v.path().and_then(|()| match v.peek() {
        // The crate that instantiated a generic function: whichever crate of the build
        // used it first, so another build may name another. It is the same code.
        Some(_) => {
            let own = v.out.len();
            v.path()?;
            v.out.truncate(own);
            v.out.push('*');
            Some(())
        }
        None => Some(()),
    });
    match read {
        Some(()) if v.i == v.s.len() => v.out + suffix,
        _ => name.to_string(),
    }
}

struct V0<'a> {
    s: &'a [u8],
    i: usize,
    out: String,
}

impl V0<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.out.push(c as char);
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> bool {
        self.peek() == Some(c) && self.bump().is_some()
    }

    /// A base-62 number (digits and letters up to '_'), copied or as `*_`.
    fn base62(&mut self, star: bool) -> Option<()> {
        let end = self.i + self.s[self.i..].iter().position(|&c| c == b'_')?;
        if !self.s[self.i..end].iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        if star {
            self.out.push('*');
            self.i = end;
        } else {
            while self.i < end {
                self.bump();
            }
        }
        self.bump().map(drop)
    }

    /// `s<base-62>_`: a crate's (which changes with every build) as `s*_`.
    fn disambiguator(&mut self, star: bool) -> Option<()> {
        if self.eat(b's') {
            self.base62(star)?;
        }
        Some(())
    }

    fn ident(&mut self) -> Option<()> {
        self.eat(b'u');
        let start = self.i;
        // A decimal number: "0", or digits that do not start with 0.
        if !self.eat(b'0') {
            while self.peek()?.is_ascii_digit() {
                self.bump();
            }
        }
        let len: usize = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()?;
        self.eat(b'_');
        for _ in 0..len {
            self.bump()?;
        }
        Some(())
    }

    fn path(&mut self) -> Option<()> {
        match self.peek()? {
            b'C' => {
                self.bump();
                self.disambiguator(true)?;
                self.ident()
            }
            b'M' => {
                self.bump();
                self.disambiguator(false)?;
                self.path()?;
                self.ty()
            }
            b'X' => {
                self.bump();
                self.disambiguator(false)?;
                self.path()?;
                self.ty()?;
                self.path()
            }
            b'Y' => {
                self.bump();
                self.ty()?;
                self.path()
            }
            b'N' => {
                self.bump();
                self.bump()?; // the namespace
                self.path()?;
                self.disambiguator(false)?;
                self.ident()
            }
            b'I' => {
                self.bump();
                self.path()?;
                while !self.eat(b'E') {
                    self.generic_arg()?;
                }
                Some(())
            }
            b'B' => self.backref(),
            _ => None,
        }
    }

    /// `B<base-62>_`, an offset into the name, which moves with every disambiguator.
    fn backref(&mut self) -> Option<()> {
        self.bump();
        self.base62(true)
    }

    fn generic_arg(&mut self) -> Option<()> {
        match self.peek()? {
            b'L' => {
                self.bump();
                self.base62(false)
            }
            b'K' => {
                self.bump();
                self.constant()
            }
            _ => self.ty(),
        }
    }

    fn constant(&mut self) -> Option<()> {
        match self.peek()? {
            b'B' => self.backref(),
            b'p' => self.bump().map(drop),
            c if c.is_ascii_lowercase() => {
                self.bump();
                self.eat(b'n');
                self.base62(false)
            }
            _ => None,
        }
    }

    fn binder(&mut self) -> Option<()> {
        if self.eat(b'G') {
            self.base62(false)?;
        }
        Some(())
    }

    fn ty(&mut self) -> Option<()> {
        match self.peek()? {
            c if c.is_ascii_lowercase() => self.bump().map(drop),
            b'A' => {
                self.bump();
                self.ty()?;
                self.constant()
            }
            b'S' | b'P' | b'O' => {
                self.bump();
                self.ty()
            }
            b'R' | b'Q' => {
                self.bump();
                if self.eat(b'L') {
                    self.base62(false)?;
                }
                self.ty()
            }
            b'T' => {
                self.bump();
                while !self.eat(b'E') {
                    self.ty()?;
                }
                Some(())
            }
            b'F' => {
                self.bump();
                self.binder()?;
                self.eat(b'U');
                if self.eat(b'K') && !self.eat(b'C') {
                    self.ident()?;
                }
                while !self.eat(b'E') {
                    self.ty()?;
                }
                self.ty()
            }
            b'D' => {
                self.bump();
                self.binder()?;
                while !self.eat(b'E') {
                    self.path()?;
                    while self.eat(b'p') {
                        self.ident()?;
                        self.ty()?;
                    }
                }
                if !self.eat(b'L') {
                    return None;
                }
                self.base62(false)
            }
            b'B' => self.backref(),
            _ => self.path(),
        }
    }
}

#[test]
fn names_become_patterns_of_any_build() {
    assert_eq!(
        pattern("_ZN3qga5agent5Agent3run17h0123456789abcdefE").as_deref(),
        Some("_ZN3qga5agent5Agent3run17h*E")
    );
    assert_eq!(
        pattern("_RNvMs0_NtNtNtNtCsaz6eC2DG7lh_3std3sys4sync4once5futexNtB5_4Once4call'2")
            .as_deref(),
        Some("_RNvMs0_NtNtNtNtCs*_3std3sys4sync4once5futexNtB*_4Once4call")
    );
    // Identifiers are copied whole, even when they hold a 'B' or "Cs"; other
    // disambiguators (of impls, closures) and constants stay.
    assert_eq!(
        v0_pattern("_RNvXs5_NtCslLqVwG4QCI9_10serde_json4readNtB5_7StrReadNtB5_4Read3Csz"),
        "_RNvXs5_NtCs*_10serde_json4readNtB*_7StrReadNtB*_4Read3Csz"
    );
    // The instantiating crate (here qga) may be another in another build.
    assert_eq!(
        v0_pattern(
            "_RINvNtCs7Bl_4core3ptr13drop_in_placeANtNtCs2N_5alloc6string6Stringj3_ECs7p_3qga"
        ),
        "_RINvNtCs*_4core3ptr13drop_in_placeANtNtCs*_5alloc6string6Stringj3_E*"
    );
    // A closure's name is empty: "0" is a whole number, not the start of one.
    assert_eq!(v0_pattern("_RNCNCNvCs1_3qga1f00"), "_RNCNCNvCs*_3qga1f00");
    assert_eq!(
        v0_pattern("_RNvXsZ_NtNtCs7B_4core3fmt3numjNtB7_5Debug3fmt.118"),
        "_RNvXsZ_NtNtCs*_4core3fmt3numjNtB*_5Debug3fmt.*"
    );
    // What it cannot read it leaves alone.
    assert_eq!(v0_pattern("_RZZ"), "_RZZ");
    assert_eq!(pattern("memcpy").as_deref(), Some("memcpy"));
    assert_eq!(pattern("0x0000000000401000"), None);
    assert_eq!(pattern("(below main)"), None);
}
