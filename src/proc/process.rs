//! The process table from /proc/<pid>/{stat,status,cmdline,statm}, and the sampler that
//! turns cumulative CPU ticks into %CPU over an interval (what top shows).

use std::ffi::CStr;

use super::stat::CpuTimes;
use crate::ctx::Ctx;
use crate::sys::dirfd::Dir;
use crate::whole_file::{self, Reads};

/// One process, as top and ps describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// Effective uid (top's USER column).
    pub uid: u32,
    /// R, S, D, Z, T, t, X, I (I: idle kernel thread, 4.14+).
    pub state: char,
    /// The executable name, at most 15 bytes (TASK_COMM_LEN).
    pub comm: String,
    /// Arguments joined by spaces; empty for kernel threads and zombies.
    pub cmdline: String,
    pub ppid: u32,
    /// The kernel's priority field (20 + nice for normal tasks, negative for RT).
    pub priority: i64,
    pub nice: i64,
    /// CPU time in user mode, clock ticks.
    pub utime: u64,
    /// CPU time in kernel mode, clock ticks.
    pub stime: u64,
    /// Start time, clock ticks after boot.
    pub starttime: u64,
    pub threads: u32,
    pub vsize_kib: u64,
    pub rss_kib: u64,
    /// Resident shared pages from status or statm; `None` for a process without memory (a
    /// kernel thread, a zombie: statm reads all zeros) and one that exited before statm
    /// was read.
    pub shared_kib: Option<u64>,
}

impl Process {
    /// utime + stime.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime + self.stime
    }

    /// The figures the CPU sampler and top-N ranking read.
    pub fn usage(&self) -> Usage {
        Usage {
            pid: self.pid,
            starttime: self.starttime,
            ticks: self.cpu_ticks(),
            rss_kib: self.rss_kib,
        }
    }

    /// The command as top shows it with `c`: the command line, or `[comm]` for kernel
    /// threads (no command line).
    pub fn command_line(&self) -> String {
        if self.cmdline.is_empty() {
            format!("[{}]", self.comm)
        } else {
            self.cmdline.clone()
        }
    }
}

/// Builds a process from its files' contents; `None` if /proc/<pid>/stat is malformed.
/// `page_kib` is the page size in KiB (the unit of the rss field and of statm).
pub fn parse_process(
    pid: u32,
    stat: &str,
    status: &str,
    cmdline: &[u8],
    statm: Option<&str>,
    page_kib: u64,
) -> Option<Process> {
    let (comm, f) = split_stat(stat)?;
    let status = parse_status(status.as_bytes());
    from_parts(pid, comm, &f, &status, cmdline, statm, page_kib)
}

/// [`parse_process`] with stat split and status parsed.
fn from_parts(
    pid: u32,
    comm: &str,
    f: &StatFields,
    status: &StatusFields,
    cmdline: &[u8],
    statm: Option<&str>,
    page_kib: u64,
) -> Option<Process> {
    let uid = status.uid?;
    let shared_kib = match statm {
        Some(s) => s
            .split_whitespace()
            .nth(2)
            .and_then(|p| p.parse::<u64>().ok())
            .map(|pages| pages * page_kib),
        None => status.shared_kib,
    };
    let mut joined = String::with_capacity(cmdline.len());
    for arg in String::from_utf8_lossy(cmdline)
        .split('\0')
        .filter(|a| !a.is_empty())
    {
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(arg);
    }
    Some(Process {
        pid,
        uid,
        state: f.as_slice().first()?.chars().next()?,
        comm: comm.to_string(),
        cmdline: joined,
        ppid: f.num(4)? as u32,
        priority: f.signed(18)?,
        nice: f.signed(19)?,
        utime: f.num(14)?,
        stime: f.num(15)?,
        starttime: f.num(22)?,
        threads: f.num(20)? as u32,
        vsize_kib: f.num(23)? / 1024,
        rss_kib: f.rss_kib(page_kib)?,
        shared_kib,
    })
}

/// Fields 3 (state) to 24 (rss) of proc(5), the last one read, at most.
struct StatFields<'a>([&'a str; 22], usize);

impl<'a> StatFields<'a> {
    fn as_slice(&self) -> &[&'a str] {
        &self.0[..self.1]
    }

    /// Field `n` as numbered in proc(5) (pid is 1, comm 2, state 3).
    fn num(&self, n: usize) -> Option<u64> {
        self.as_slice().get(n - 3)?.parse().ok()
    }

    fn signed(&self, n: usize) -> Option<i64> {
        self.as_slice().get(n - 3)?.parse().ok()
    }

    /// rss (field 24) in KiB. It is signed in the kernel's output format; a negative
    /// value never occurs for a live task, but it is read leniently.
    fn rss_kib(&self, page_kib: u64) -> Option<u64> {
        Some(self.signed(24)?.max(0) as u64 * page_kib)
    }
}

/// The comm of a stat line and the fields after it; in an array, not a Vec, as this runs
/// for every process.
fn split_stat(stat: &str) -> Option<(&str, StatFields<'_>)> {
    // comm is in parentheses and may itself contain ") " and spaces: split at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let mut f = StatFields([""; 22], 0);
    // Only ASCII digits, letters and spaces follow comm.
    let words = stat.get(close + 1..)?.split_ascii_whitespace();
    for (slot, word) in f.0.iter_mut().zip(words) {
        *slot = word;
        f.1 += 1;
    }
    Some((comm, f))
}

/// What top-N ranks processes by, from /proc/<pid>/stat alone: a tenth of the kernel's
/// work of reading stat, status and cmdline, so only the chosen few need those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub pid: u32,
    /// Clock ticks after boot: with the pid, tells a reused pid from the old process.
    pub starttime: u64,
    /// utime + stime.
    pub ticks: u64,
    pub rss_kib: u64,
}

impl Usage {
    fn parse(pid: u32, stat: &str, page_kib: u64) -> Option<Usage> {
        let (_, f) = split_stat(stat)?;
        Some(Usage {
            pid,
            starttime: f.num(22)?,
            ticks: f.num(14)? + f.num(15)?,
            rss_kib: f.rss_kib(page_kib)?,
        })
    }
}

/// What the agent takes from /proc/<pid>/status.
struct StatusFields {
    /// The effective uid, the second number of "Uid:".
    uid: Option<u32>,
    /// statm's shared pages, in KiB: RssFile + RssShmem (both 4.5+), the two counters
    /// statm adds up. `None` on older kernels, where statm is read instead.
    shared_kib: Option<u64>,
}

/// A kernel thread's bit in stat's flags (field 9): 0x00200000 from 2.6.27 to now.
const PF_KTHREAD: u64 = 0x0020_0000;

/// What a kernel thread's status says, so it is not read: a kernel thread has the
/// credentials of kthreadd (root) for its life. Only commit_creds() changes the
/// credentials status shows (the task's own), and the one caller in a kernel thread is
/// the usermode helper, with root's, before its exec; threads that act for a user (nfsd,
/// cachefiles, io_uring's) override_creds(), which status does not show. Three in four
/// of a small guest's processes are kernel threads, and status costs the kernel twice
/// what stat does.
const KTHREAD_STATUS: StatusFields = StatusFields {
    uid: Some(0),
    shared_kib: None,
};

/// One pass over status, ending at RssShmem, or at Threads (which follows the memory
/// lines on every kernel, and which a kernel thread's status reaches without them).
fn parse_status(status: &[u8]) -> StatusFields {
    let kib = |v: &str| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok();
    let (mut uid, mut file, mut shmem) = (None, None, None);
    // As text for `lines`, which finds each newline a word at a time (a split of the
    // bytes goes a byte at a time); valid UTF-8 but for a rare Name, so not copied.
    for l in whole_file::lossy_str(status).lines() {
        if let Some(ids) = l.strip_prefix("Uid:") {
            uid = ids.split_whitespace().nth(1).and_then(|u| u.parse().ok());
        } else if let Some(v) = l.strip_prefix("RssFile:") {
            file = kib(v);
        } else if let Some(v) = l.strip_prefix("RssShmem:") {
            shmem = kib(v);
            if uid.is_some() {
                break;
            }
        } else if l.starts_with("Threads:") && uid.is_some() {
            break;
        }
    }
    StatusFields {
        uid,
        shared_kib: file.zip(shmem).map(|(f, s)| f + s),
    }
}

/// Reads each process's files into buffers kept from one process to the next, by paths
/// relative to the open /proc.
pub struct ProcReader {
    /// "<root>/proc", open.
    dir: Dir,
    /// "<pid>/<name>", NUL-terminated.
    path: Vec<u8>,
    stat: Vec<u8>,
    status: Vec<u8>,
    cmdline: Vec<u8>,
    statm: Vec<u8>,
    page_kib: u64,
}

impl ProcReader {
    /// Opens the context's /proc.
    pub fn open(ctx: &Ctx) -> std::io::Result<ProcReader> {
        Ok(ProcReader {
            dir: Dir::open(&ctx.path("proc"))?,
            path: Vec::new(),
            stat: Vec::new(),
            status: Vec::new(),
            cmdline: Vec::new(),
            statm: Vec::new(),
            page_kib: (crate::sys::sysconf::page_size() / 1024).max(1),
        })
    }

    /// `read` applied to every pid in /proc, ascending; processes that exit while being
    /// read are skipped. Once per reader: the listing goes on from where it ended.
    pub fn each<T>(&mut self, read: fn(&mut ProcReader, u32) -> Option<T>) -> Vec<T> {
        let mut pids = Vec::new();
        // 2,000 processes list in 48 KiB; a larger /proc takes a few calls more.
        let mut buf = vec![0u8; 64 * 1024];
        // An error part way leaves the pids listed before it, as std's ReadDir would.
        let _ = self.dir.for_each_name(&mut buf, |name| {
            if let Some(pid) = std::str::from_utf8(name).ok().and_then(|n| n.parse().ok()) {
                pids.push(pid);
            }
        });
        drop(buf);
        pids.sort_unstable();
        pids.into_iter().filter_map(|pid| read(self, pid)).collect()
    }

    /// One process; `None` if it vanished between the directory listing and the read.
    /// statm is opened only on kernels whose status lacks RssFile/RssShmem (before 4.5),
    /// cmdline and statm only for a process with memory.
    pub fn read(&mut self, pid: u32) -> Option<Process> {
        let ProcReader {
            dir,
            path,
            stat,
            status,
            cmdline,
            statm,
            page_kib,
        } = self;
        let mut load = |name: &str, buf: &mut Vec<u8>, reads: Reads| {
            let r = load_file(dir, path, pid, name, buf, reads);
            if r.is_err() {
                buf.clear();
            }
            r.ok()
        };
        load("stat", stat, Reads::One)?;
        let stat = whole_file::lossy_str(stat);
        let (comm, f) = split_stat(&stat)?;
        // vsize is 0 only without a memory map (kernel threads, zombies; 2.6.32 as now),
        // and then the kernel's cmdline is empty and its statm all zeros (each asks
        // get_task_mm too): two opens saved for each of the many kernel threads.
        let has_mm = f.num(23)? != 0;
        let status = if has_mm || f.num(9).unwrap_or(0) & PF_KTHREAD == 0 {
            load("status", status, Reads::One)?;
            parse_status(status)
        } else {
            KTHREAD_STATUS
        };
        cmdline.clear();
        if has_mm {
            // Not a seq_file: 2.6.x hands cmdline out at most 3 KiB (PROC_BLOCK_SIZE) a
            // read.
            load("cmdline", cmdline, Reads::UntilEmpty);
        }
        let statm = match status.shared_kib {
            None if has_mm => {
                load("statm", statm, Reads::One);
                Some(whole_file::lossy_str(statm)).filter(|s| !s.is_empty())
            }
            _ => None,
        };
        from_parts(pid, comm, &f, &status, cmdline, statm.as_deref(), *page_kib)
    }

    /// One process's stat only; `None` if it vanished.
    pub fn usage(&mut self, pid: u32) -> Option<Usage> {
        load_file(
            &self.dir,
            &mut self.path,
            pid,
            "stat",
            &mut self.stat,
            Reads::One,
        )
        .ok()?;
        Usage::parse(pid, &whole_file::lossy_str(&self.stat), self.page_kib)
    }
}

/// Reads "<pid>/<name>" below `dir` into `buf`, the path built in `path`.
fn load_file(
    dir: &Dir,
    path: &mut Vec<u8>,
    pid: u32,
    name: &str,
    buf: &mut Vec<u8>,
    reads: Reads,
) -> std::io::Result<()> {
    path.clear();
    // The digits by hand: write! costs more than the rest of the path.
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = pid;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    path.extend_from_slice(&digits[i..]);
    path.push(b'/');
    path.extend_from_slice(name.as_bytes());
    path.push(0);
    let path = CStr::from_bytes_with_nul(path).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    buf.clear();
    whole_file::read_from(dir.open_read(path)?, buf, reads)
}

/// Every process in /proc, by pid.
pub fn read_processes(ctx: &Ctx) -> Vec<Process> {
    ProcReader::open(ctx).map_or_else(|_| Vec::new(), |mut r| r.each(ProcReader::read))
}

/// Remembers the previous sample so %CPU covers the interval since then, as top does
/// between refreshes. Lives in `Ctx` so it survives between requests; every caller
/// shares it, so the interval is "since the previous sample by any command".
#[derive(Debug, Default)]
pub struct CpuSampler {
    prev: Option<Sample>,
    prev_cpu: Option<CpuTimes>,
}

#[derive(Debug)]
struct Sample {
    uptime: f64,
    /// (pid, starttime, utime + stime), ascending: a reused pid has another start time.
    /// Sorted, not hashed: two maps of every process, SipHash-keyed, were a tenth of
    /// top-N's own (user) time.
    ticks: Vec<(u32, u64, u64)>,
}

impl CpuSampler {
    /// %CPU of each of `procs`, in their order (percent of one CPU, so up to 100 × CPUs,
    /// like top) over the interval since the previous call; on the first call, and for
    /// processes started since, over the process's lifetime (like ps). `uptime` is
    /// /proc/uptime's first number, `hz` the clock tick rate.
    pub fn sample(&mut self, procs: &[Usage], uptime: f64, hz: u64) -> Vec<f64> {
        let hz = hz.max(1) as f64;
        let prev = self.prev.take().filter(|p| p.uptime < uptime);
        let out = procs
            .iter()
            .map(|p| {
                let before = prev.as_ref().and_then(|s| {
                    let i = s
                        .ticks
                        .binary_search_by_key(&(p.pid, p.starttime), |&(pid, start, _)| {
                            (pid, start)
                        })
                        .ok()?;
                    Some((s.uptime, s.ticks[i].2))
                });
                let (used, elapsed) = match before {
                    Some((then, old)) => (p.ticks.saturating_sub(old) as f64, (uptime - then) * hz),
                    None => (p.ticks as f64, uptime * hz - p.starttime as f64),
                };
                let pct = if elapsed > 0.0 {
                    used * 100.0 / elapsed
                } else {
                    0.0
                };
                if pct.is_finite() {
                    pct
                } else {
                    0.0
                }
            })
            .collect();
        let mut ticks: Vec<_> = procs
            .iter()
            .map(|p| (p.pid, p.starttime, p.ticks))
            .collect();
        // Already in order when the procs came from ProcReader::each.
        ticks.sort_unstable();
        self.prev = Some(Sample { uptime, ticks });
        out
    }

    /// The CPU time spent since the previous call (since boot on the first), for the
    /// "Cpu(s):" summary line.
    pub fn cpu_delta(&mut self, now: CpuTimes) -> CpuTimes {
        let delta = match self.prev_cpu {
            Some(prev) if now.total() >= prev.total() => sub(now, prev),
            _ => now,
        };
        self.prev_cpu = Some(now);
        delta
    }
}

fn sub(a: CpuTimes, b: CpuTimes) -> CpuTimes {
    let opt = |x: Option<u64>, y: Option<u64>| x.map(|x| x.saturating_sub(y.unwrap_or(0)));
    CpuTimes {
        user: a.user.saturating_sub(b.user),
        nice: a.nice.saturating_sub(b.nice),
        system: a.system.saturating_sub(b.system),
        idle: a.idle.saturating_sub(b.idle),
        iowait: opt(a.iowait, b.iowait),
        irq: opt(a.irq, b.irq),
        softirq: opt(a.softirq, b.softirq),
        steal: opt(a.steal, b.steal),
        guest: opt(a.guest, b.guest),
        guest_nice: opt(a.guest_nice, b.guest_nice),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4202752 500 0 0 0 \
                        150 50 0 0 20 0 3 0 1000 104857600 2560 18446744073709551615 \
                        1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
    const STATUS: &str = "Name:\tmy (odd) prog\nState:\tS (sleeping)\nUid:\t0\t48\t48\t48\n";

    fn usage_with(pid: u32, ticks: u64, starttime: u64) -> Usage {
        Usage {
            pid,
            starttime,
            ticks,
            rss_kib: 0,
        }
    }

    #[test]
    fn process_comm_with_parentheses_and_spaces() {
        let p = parse_process(
            1234,
            STAT,
            STATUS,
            b"/usr/bin/prog\0-x\0\0",
            Some("25600 2560 300 1 0 100 0\n"),
            4,
        )
        .unwrap();
        assert_eq!(p.comm, "my (odd) prog");
        assert_eq!(p.state, 'S');
        assert_eq!(p.uid, 48);
        assert_eq!((p.ppid, p.priority, p.nice, p.threads), (1, 20, 0, 3));
        assert_eq!((p.utime, p.stime, p.starttime), (150, 50, 1000));
        assert_eq!(p.vsize_kib, 102400);
        assert_eq!(p.rss_kib, 10240);
        assert_eq!(p.shared_kib, Some(1200));
        assert_eq!(p.cmdline, "/usr/bin/prog -x");
    }

    #[test]
    fn kernel_thread_shows_comm_in_brackets() {
        let p = parse_process(2, STAT, STATUS, b"", None, 4).unwrap();
        assert_eq!(p.command_line(), "[my (odd) prog]");
    }

    #[test]
    fn truncated_stat_is_none() {
        assert!(parse_process(1, "1 (x) S 0 1", STATUS, b"", None, 4).is_none());
        assert!(parse_process(1, STAT, "Name:\tx\n", b"", None, 4).is_none());
    }

    #[test]
    fn first_sample_is_since_process_start() {
        let mut s = CpuSampler::default();
        // Started 10 s after boot, now 20 s after boot at 100 Hz: 1000 ticks elapsed.
        let pct = s.sample(&[usage_with(7, 500, 1000)], 20.0, 100);
        assert_eq!(pct, [50.0]);
    }

    #[test]
    fn second_sample_is_over_the_interval() {
        let mut s = CpuSampler::default();
        s.sample(&[usage_with(7, 500, 1000)], 20.0, 100);
        let pct = s.sample(&[usage_with(7, 700, 1000)], 22.0, 100);
        assert_eq!(pct, [100.0]);
    }

    #[test]
    fn reused_pid_starts_over() {
        let mut s = CpuSampler::default();
        s.sample(&[usage_with(7, 5000, 0)], 100.0, 100);
        let pct = s.sample(&[usage_with(7, 100, 10_000)], 102.0, 100);
        // New process: 100 ticks over its 200-tick life, not (100 - 5000) over the interval.
        assert_eq!(pct, [50.0]);
    }

    #[test]
    fn cpu_delta_since_previous_call() {
        let mut s = CpuSampler::default();
        let t = |user, idle| CpuTimes {
            user,
            idle,
            ..CpuTimes::default()
        };
        assert_eq!(s.cpu_delta(t(10, 90)), t(10, 90));
        assert_eq!(s.cpu_delta(t(30, 170)), t(20, 80));
    }
}
