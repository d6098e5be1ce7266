//! guest-get-oom-status: whether the kernel OOM killer has killed anything since boot.
//! Sources: the kernel log (klogctl READ_ALL; /dev/kmsg tells whether it changed since the
//! last read, see [`KernelLogCache`]), /proc/vmstat `oom_kill` (4.13+), and a
//! record in the statedir keyed by /proc/sys/kernel/random/boot_id, because the ring
//! buffer wraps and a kill seen once must stay reported until the next boot. The
//! statedir may be writable by others: the record is read and written as src/untrusted.rs
//! says (no symlink followed, no FIFO waited on, a temporary made with O_EXCL).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::NoArgs;
use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::log;
use crate::sys::dirfd::Dir;
use crate::sys::klog::KmsgWatch;
use crate::untrusted::{self, STATE_FILE_CAP};

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct OomStatus {
    pub oom_happened: bool,
    /// Kills seen since boot.
    pub oom_count: u64,
    /// The last kill line of the kernel log (priority prefix removed), "" if none.
    pub last_oom: String,
}

/// The statedir file remembering what earlier calls saw during this boot.
const STATE_FILE: &str = "qga-bc-oom.json";

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Memory {
    boot_id: String,
    count: u64,
    last: String,
}

pub fn get_oom_status(ctx: &Ctx, session: &mut Session, _: NoArgs) -> Result<OomStatus, Error> {
    oom_status(ctx, session)
}

pub fn oom_status(ctx: &Ctx, session: &mut Session) -> Result<OomStatus, Error> {
    let log = kernel_log_scan(ctx, &mut session.kernel_log);
    let vmstat = ctx
        .read("proc/vmstat")
        .ok()
        .and_then(|t| vmstat_oom_kill(&t));
    let boot_id = ctx
        .read("proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let statedir = ctx.statedir();
    let before = load(statedir).filter(|m| !boot_id.is_empty() && m.boot_id == boot_id);
    let now = merge(before.as_ref(), &log.kills, vmstat, &boot_id);
    if before.as_ref() != Some(&now) && !boot_id.is_empty() && now.count > 0 {
        if let Err(e) = save(statedir, &now) {
            log::debug(&format!(
                "cannot record OOM state in '{}': {e}",
                statedir.join(STATE_FILE).display()
            ));
        }
    }
    Ok(OomStatus {
        oom_happened: now.count > 0 || log.any,
        oom_count: now.count,
        last_oom: now.last,
    })
}

/// What the kernel log says about the OOM killer.
#[derive(Debug, Clone, Default)]
struct LogScan {
    /// [`kill_lines`].
    kills: Vec<String>,
    /// Whether any line is an OOM line.
    any: bool,
}

/// The scan of the kernel log an earlier call made, kept while the log stays the same
/// (session state: a monitoring system polls every few seconds, and reading the log
/// costs the kernel most of a millisecond).
#[derive(Default)]
pub struct KernelLogCache {
    watch: Watch,
    scanned: Option<Scanned>,
}

#[derive(Default)]
enum Watch {
    #[default]
    Unopened,
    Open(KmsgWatch),
    /// Before 3.5, or /dev/kmsg not readable: every call reads the log.
    Unavailable,
}

struct Scanned {
    scan: LogScan,
    /// The first record READ_ALL started from ([`KmsgWatch::first_seq`]).
    first_seq: Option<u64>,
}

impl KernelLogCache {
    fn watch(&mut self) -> Option<&mut KmsgWatch> {
        if let Watch::Unopened = self.watch {
            self.watch = match KmsgWatch::open() {
                Ok(w) => Watch::Open(w),
                Err(e) => {
                    log::debug(&format!(
                        "/dev/kmsg not usable, the kernel log is read on every OOM query: {e}"
                    ));
                    Watch::Unavailable
                }
            };
        }
        match &mut self.watch {
            Watch::Open(w) => Some(w),
            _ => None,
        }
    }

    /// The earlier scan, if the log is still what it scanned. Nothing logged since
    /// leaves READ_ALL's text the same but for a clear, which only removes lines: that
    /// matters only to a scan that found OOM lines, so only then is the start compared.
    fn unchanged(&mut self) -> Option<&LogScan> {
        let Watch::Open(w) = &mut self.watch else {
            return None;
        };
        let s = self.scanned.as_ref()?;
        let same = w
            .logged_since_mark()
            .and_then(|logged| Ok(!logged && (!s.scan.any || w.first_seq()? == s.first_seq)));
        match same {
            Ok(same) => same.then_some(&self.scanned.as_ref()?.scan),
            Err(e) => {
                log::debug(&format!("/dev/kmsg: {e}"));
                self.watch = Watch::Unavailable;
                None
            }
        }
    }
}

/// The OOM facts of the kernel log: from the earlier scan while the log is unchanged,
/// else from a new read. A read that fails (EPERM under dmesg_restrict without
/// CAP_SYSLOG) leaves the other sources to answer.
fn kernel_log_scan(ctx: &Ctx, cache: &mut KernelLogCache) -> LogScan {
    if !ctx.is_live() {
        return scan(&ctx.read("proc/kmsg").unwrap_or_default());
    }
    if let Some(s) = cache.unchanged() {
        return s.clone();
    }
    cache.scanned = None;
    // Marked before the read: a record logged during it makes the next call read again.
    let first_seq = cache.watch().map(|w| {
        w.mark_end()?;
        w.first_seq()
    });
    let text = match crate::sys::klog::read_all() {
        Ok(bytes) => bytes,
        Err(e) => {
            log::debug(&format!("kernel log not readable: klogctl: {e}"));
            return LogScan::default();
        }
    };
    let log = scan(&crate::whole_file::lossy_text(text));
    match first_seq {
        Some(Ok(first_seq)) => {
            cache.scanned = Some(Scanned {
                scan: log.clone(),
                first_seq,
            })
        }
        Some(Err(e)) => {
            log::debug(&format!("/dev/kmsg: {e}"));
            cache.watch = Watch::Unavailable;
        }
        None => {}
    }
    log
}

/// Combines what was remembered with the current log: kills after the remembered last
/// line are new; if that line has wrapped out of the buffer, every kill still in it
/// came after it. vmstat's counter, where present, is authoritative when higher.
fn merge(before: Option<&Memory>, kills: &[String], vmstat: Option<u64>, boot_id: &str) -> Memory {
    let (mut count, last) = match before {
        Some(m) => {
            let new = match kills.iter().rposition(|k| *k == m.last) {
                Some(i) => &kills[i + 1..],
                None => kills,
            };
            (
                m.count + new.len() as u64,
                new.last().unwrap_or(&m.last).clone(),
            )
        }
        None => (
            kills.len() as u64,
            kills.last().cloned().unwrap_or_default(),
        ),
    };
    if let Some(v) = vmstat {
        count = count.max(v);
    }
    Memory {
        boot_id: boot_id.to_string(),
        count,
        last,
    }
}

/// The record, if there is a readable one of ours; a symlink, FIFO, hard link or a
/// file someone else owns is refused (and logged).
fn load(statedir: &Path) -> Option<Memory> {
    let dir = Dir::open(statedir).ok()?;
    let opened = untrusted::open_own_file(&dir, STATE_FILE, STATE_FILE_CAP).and_then(|f| {
        f.map(|mut f| untrusted::read_capped(&mut f, STATE_FILE_CAP))
            .transpose()
    });
    match opened {
        Ok(bytes) => serde_json::from_slice(&bytes?).ok(),
        Err(e) => {
            log::warn(&format!(
                "OOM record '{}' not read: {e}",
                statedir.join(STATE_FILE).display()
            ));
            None
        }
    }
}

fn save(statedir: &Path, m: &Memory) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(m).map_err(std::io::Error::other)?;
    untrusted::replace(&Dir::open(statedir)?, STATE_FILE, 0o600, &bytes)
}

/// `oom_kill` from /proc/vmstat (4.13+).
pub fn vmstat_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// What an OOM-killer line of the kernel log says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomLine {
    /// "X invoked oom-killer: …" (every version).
    Invoked,
    /// The victim choice: "Out of memory: Kill process N (c) score S or sacrifice child"
    /// (2.6.36..~5.0 and the RHEL 6 backport), "[Out of memory: ]Kill process N (c) score
    /// S or a child" / "… and children." (2.6.32 and older), or the 4.19+ summary
    /// "oom-kill:constraint=…,pid=N,uid=U".
    Selected(u32),
    /// The kill itself: "Killed process N (c) …", "Killed process N, UID U, (c) …"
    /// (RHEL 6), "Out of memory: Killed process N (c) …" / "Memory cgroup out of memory:
    /// Killed process N …" (5.x/6.x), "Out of memory (oom_kill_allocating_task): Killed
    /// process N".
    Killed(u32),
    /// "oom_reaper: reaped process N (c), now anon-rss:…" (4.6+), after a kill.
    Reaped(u32),
}

/// Recognises an OOM line, with or without the "<pri>" and "[ time]" prefixes.
pub fn classify(line: &str) -> Option<OomLine> {
    let text = strip_prefixes(line);
    if text.contains(" invoked oom-killer:") {
        return Some(OomLine::Invoked);
    }
    if let Some(rest) = text.strip_prefix("oom-kill:") {
        let pid = rest.split(',').find_map(|kv| kv.strip_prefix("pid="))?;
        return Some(OomLine::Selected(pid.parse().ok()?));
    }
    if let Some(rest) = text.strip_prefix("oom_reaper: reaped process ") {
        return Some(OomLine::Reaped(leading_pid(rest)?));
    }
    if let Some(i) = text.find("Killed process ") {
        return Some(OomLine::Killed(leading_pid(
            &text[i + "Killed process ".len()..],
        )?));
    }
    // Selection lines: "Kill process N" or "kill process N", optionally after a
    // "…out of memory…:" reason; require the word "score" so unrelated messages that
    // happen to say "kill process" are not counted.
    // Case-insensitive without a lowercase copy: this runs on every line of the log.
    if let Some(i) = find_ignore_case(text, "kill process ") {
        let rest = &text[i + "kill process ".len()..];
        if find_ignore_case(text, "score").is_some()
            || find_ignore_case(text, "out of memory").is_some()
        {
            return Some(OomLine::Selected(leading_pid(rest)?));
        }
    }
    None
}

/// The byte offset of `needle` (lowercase ASCII) in `hay`, ignoring ASCII case.
fn find_ignore_case(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let first = n[0];
    let last_start = h.len().checked_sub(n.len())?;
    (0..=last_start)
        .filter(|&i| h[i].to_ascii_lowercase() == first)
        .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// The kill events of a kernel log, one line each (priority prefix removed), oldest
/// first. A victim chosen but with no "Killed" line (cut off by a wrapped buffer, or a
/// kernel that prints only the choice) counts as a kill too.
pub fn kill_lines(log: &str) -> Vec<String> {
    scan(log).kills
}

/// [`kill_lines`], and whether any line of the log is an OOM line, in one pass.
fn scan(log: &str) -> LogScan {
    let mut out: Vec<String> = Vec::new();
    let mut pending: Option<(u32, String)> = None;
    let mut any = false;
    for line in candidate_lines(log) {
        let class = classify(line);
        any |= class.is_some();
        match class {
            Some(OomLine::Killed(_)) => {
                pending = None;
                out.push(without_priority(line).to_string());
            }
            Some(OomLine::Selected(pid)) => {
                if let Some((_, l)) = pending.take() {
                    out.push(l);
                }
                pending = Some((pid, without_priority(line).to_string()));
            }
            Some(OomLine::Reaped(pid)) => {
                // Reaping follows a kill whose line may be missing (wrapped away).
                if let Some((p, l)) = pending.take() {
                    if p == pid {
                        out.push(l);
                    } else {
                        pending = Some((p, l));
                    }
                }
            }
            Some(OomLine::Invoked) | None => {}
        }
    }
    if let Some((_, l)) = pending {
        out.push(l);
    }
    LogScan { kills: out, any }
}

/// The lines of `log` that [`classify`] may recognise, in order: every wording it knows
/// contains "kill" in some case, or "reap". A kernel log is mostly other lines, and this
/// byte test over the whole buffer is many times cheaper than classifying each line.
fn candidate_lines(log: &str) -> impl Iterator<Item = &str> {
    let bytes = log.as_bytes();
    let mut from = 0;
    std::iter::from_fn(move || {
        let rest = bytes.get(from..)?;
        let hit = from + rest.windows(4).position(|w| w == b"reap" || is_kill(w))?;
        let start = bytes[..hit]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let end = bytes[hit..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| hit + i + 1);
        from = end;
        // Through `lines` so the line is cut exactly as a line-by-line reading cuts it.
        log[start..end].lines().next()
    })
}

/// "kill" in any ASCII case: `| 0x20` lowercases a letter and maps no other byte onto one.
fn is_kill(w: &[u8]) -> bool {
    w.len() == 4
        && w[0] | 0x20 == b'k'
        && w[1] | 0x20 == b'i'
        && w[2] | 0x20 == b'l'
        && w[3] | 0x20 == b'l'
}

fn without_priority(line: &str) -> &str {
    let l = line.trim_end();
    match l.strip_prefix('<') {
        Some(rest) => match rest.find('>') {
            Some(i) if rest[..i].bytes().all(|b| b.is_ascii_digit()) => &rest[i + 1..],
            _ => l,
        },
        None => l,
    }
}

fn strip_prefixes(line: &str) -> &str {
    let l = without_priority(line).trim_start();
    match l.strip_prefix('[') {
        Some(rest) => match rest.find(']') {
            Some(i) => rest[i + 1..].trim_start(),
            None => l,
        },
        None => l,
    }
}

fn leading_pid(s: &str) -> Option<u32> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_oom_wording_is_recognised() {
        let table = [
            // 2.6.32 upstream
            ("<4>java invoked oom-killer: gfp_mask=0x201da, order=0, oom_adj=0", Some(OomLine::Invoked)),
            ("<3>Out of memory: kill process 3055 (java) score 912 or a child", Some(OomLine::Selected(3055))),
            ("<3>Killed process 3055 (java)", Some(OomLine::Killed(3055))),
            // older 2.6
            ("Out of Memory: Kill process 77 (x) score 5 and children.", Some(OomLine::Selected(77))),
            ("Out of memory: Killed process 77 (x).", Some(OomLine::Killed(77))),
            // RHEL 6 / 2.6.36 .. 4.x
            ("<3>Out of memory: Kill process 1102 (mysqld) score 512 or sacrifice child", Some(OomLine::Selected(1102))),
            ("<3>Killed process 3055, UID 500, (java) total-vm:3145728kB, anon-rss:1kB, file-rss:5kB", Some(OomLine::Killed(3055))),
            ("<3>[ 7.1] Killed process 2290 (python3) total-vm:500096kB, anon-rss:160000kB, file-rss:12kB", Some(OomLine::Killed(2290))),
            ("Memory cgroup out of memory: Kill process 2290 (python3) score 990 or sacrifice child", Some(OomLine::Selected(2290))),
            // 4.19+ / 5.x / 6.x
            ("<6>[1.0] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task=x,pid=42,uid=0", Some(OomLine::Selected(42))),
            ("<3>[1.0] Out of memory: Killed process 42 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:0", Some(OomLine::Killed(42))),
            ("Memory cgroup out of memory: Killed process 43 (y) total-vm:1kB", Some(OomLine::Killed(43))),
            ("Out of memory (oom_kill_allocating_task): Killed process 44 (z) total-vm:1kB", Some(OomLine::Killed(44))),
            ("<6>[1.1] oom_reaper: reaped process 42 (x), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB", Some(OomLine::Reaped(42))),
            // not OOM
            ("<6>eth0: no IPv6 routers present", None),
            ("audit: kill process requested by user", None),
        ];
        for (line, want) in table {
            assert_eq!(classify(line), want, "{line}");
        }
    }

    #[test]
    fn one_kill_per_event_whatever_the_era() {
        let log = "<4>a invoked oom-killer: x\n<3>Out of memory: Kill process 1 (a) score 9 or sacrifice child\n\
                   <3>Killed process 1 (a) total-vm:1kB\n\
                   <6>[2.0] oom-kill:constraint=CONSTRAINT_NONE,task=b,pid=2,uid=0\n\
                   <3>[2.0] Out of memory: Killed process 2 (b) total-vm:1kB\n\
                   <6>[2.1] oom_reaper: reaped process 2 (b), now anon-rss:0kB\n";
        let k = kill_lines(log);
        assert_eq!(k.len(), 2);
        assert_eq!(
            k[1],
            "[2.0] Out of memory: Killed process 2 (b) total-vm:1kB"
        );
    }

    #[test]
    fn only_lines_that_cannot_be_oom_lines_are_passed_over() {
        let log = "<6>eth0: up\r\n<3>KILL PROCESS 5 (x) score 1\r\nnot an oom-killer line\n\
                   oom_reaper: reaped process 5 (x)\r";
        let all: Vec<&str> = log.lines().filter(|l| classify(l).is_some()).collect();
        let candidates: Vec<&str> = candidate_lines(log)
            .filter(|l| classify(l).is_some())
            .collect();
        assert_eq!(candidates, all);
        assert_eq!(all.len(), 2);
        assert_eq!(
            candidate_lines("x\nkill\nkill").collect::<Vec<_>>(),
            ["kill", "kill"]
        );
    }

    #[test]
    fn choice_without_kill_line_still_counts() {
        assert_eq!(
            kill_lines("Out of memory: Kill process 9 (x) score 1 or sacrifice child\n").len(),
            1
        );
    }

    #[test]
    fn vmstat_counter() {
        assert_eq!(vmstat_oom_kill("pgfault 1\noom_kill 3\n"), Some(3));
        assert_eq!(vmstat_oom_kill("pgfault 1\n"), None);
    }

    #[test]
    fn wrapped_buffer_keeps_the_remembered_count() {
        let before = Memory {
            boot_id: "b".into(),
            count: 3,
            last: "Killed process 5 (x)".into(),
        };
        // The remembered line is still there: one new kill after it.
        let kills = vec![
            "Killed process 5 (x)".to_string(),
            "Killed process 6 (y)".to_string(),
        ];
        let m = merge(Some(&before), &kills, None, "b");
        assert_eq!((m.count, m.last.as_str()), (4, "Killed process 6 (y)"));
        // The buffer wrapped and holds nothing: the memory stays.
        let m = merge(Some(&before), &[], None, "b");
        assert_eq!((m.count, m.last.as_str()), (3, "Killed process 5 (x)"));
        // vmstat knows better.
        assert_eq!(merge(Some(&before), &[], Some(10), "b").count, 10);
    }
}
