//! guest-get-app-status: a `top -b -n 1`-style snapshot built from /proc (stat, uptime,
//! loadavg, meminfo, <pid>/*) and utmp, without running top. %CPU covers the interval
//! since the previous sample (the `CpuSampler` in `Ctx`).

use std::fmt::Write as _;

use serde::Serialize;

use super::NoArgs;
use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::proc::{self, CpuTimes, LoadAvg, MemInfo, Process};
use crate::{accounts, localtime, utmp};

/// The old fork returned at most 200 lines of top's output.
const MAX_LINES: usize = 200;
/// Summary lines, the blank line and the column header.
const HEADER_LINES: usize = 7;

#[derive(Debug, Serialize)]
pub struct AppStatus {
    #[serde(rename = "appStatus")]
    pub app_status: String,
    /// The rows of the text, for machines.
    pub processes: Vec<ProcessRow>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct ProcessRow {
    pub pid: u32,
    pub user: String,
    pub state: String,
    pub cpu_percent: f64,
    pub mem_percent: f64,
    pub rss_kib: u64,
    /// The executable name, as top's COMMAND column shows it.
    pub command: String,
    /// The full command line ("[name]" for kernel threads).
    pub cmdline: String,
}

pub fn get_app_status(ctx: &Ctx, session: &mut Session, _: NoArgs) -> Result<AppStatus, Error> {
    let hz = proc::clock_ticks();
    let stat = proc::parse_stat(&ctx.read("proc/stat")?)?;
    let uptime = proc::read_uptime(ctx)?;
    let load = proc::parse_loadavg(&ctx.read("proc/loadavg")?)?;
    let mem = proc::read_meminfo(ctx)?;
    let procs = proc::read_processes(ctx);
    let (pcts, cpu) = {
        let sampler = &mut session.cpu_sampler;
        (
            sampler.sample(
                &procs.iter().map(Process::usage).collect::<Vec<_>>(),
                uptime,
                hz,
            ),
            sampler.cpu_delta(stat.total),
        )
    };
    let names = accounts::user_names(ctx);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let header = Header {
        clock: localtime::format_local(ctx, now)
            .split_once(' ')
            .map(|(_, time)| time.to_string())
            .unwrap_or_default(),
        uptime,
        users: logged_in_users(ctx),
        load: &load,
        procs: &procs,
        cpu,
        mem: &mem,
    };
    let mut rows: Vec<ProcessRow> = procs
        .iter()
        .zip(pcts)
        .map(|(p, cpu)| {
            let user = names
                .get(&p.uid)
                .cloned()
                .unwrap_or_else(|| p.uid.to_string());
            row(p, &user, cpu, mem.total)
        })
        .collect();
    // top's default order: %CPU descending; the pid keeps ties stable.
    rows.sort_by(|a, b| {
        b.cpu_percent
            .total_cmp(&a.cpu_percent)
            .then(a.pid.cmp(&b.pid))
    });
    rows.truncate(MAX_LINES - HEADER_LINES);
    let by_pid: std::collections::HashMap<u32, &Process> =
        procs.iter().map(|p| (p.pid, p)).collect();
    let mut text = header.render();
    // A row is about 80 bytes; one allocation for the whole text.
    text.reserve(rows.len() * 96);
    for r in &rows {
        if let Some(p) = by_pid.get(&r.pid) {
            render_row(&mut text, p, r, hz);
        }
    }
    Ok(AppStatus {
        app_status: text,
        processes: rows,
    })
}

/// Sessions (USER_PROCESS entries) in utmp, as top counts "users".
fn logged_in_users(ctx: &Ctx) -> usize {
    utmp::read_current(ctx)
        .unwrap_or_default()
        .iter()
        .filter(|r| r.kind == utmp::USER_PROCESS && !r.user.is_empty())
        .count()
}

fn row(p: &Process, user: &str, cpu: f64, mem_total_kib: u64) -> ProcessRow {
    let mem = if mem_total_kib > 0 {
        p.rss_kib as f64 * 100.0 / mem_total_kib as f64
    } else {
        0.0
    };
    ProcessRow {
        pid: p.pid,
        user: user.to_string(),
        state: p.state.to_string(),
        cpu_percent: round1(cpu),
        mem_percent: round1(mem),
        rss_kib: p.rss_kib,
        command: p.comm.clone(),
        cmdline: p.command_line(),
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

struct Header<'a> {
    clock: String,
    uptime: f64,
    users: usize,
    load: &'a LoadAvg,
    procs: &'a [Process],
    cpu: CpuTimes,
    mem: &'a MemInfo,
}

impl Header<'_> {
    fn render(&self) -> String {
        let mut s = String::new();
        let count = |f: fn(char) -> bool| self.procs.iter().filter(|p| f(p.state)).count();
        let plural = if self.users == 1 { "" } else { "s" };
        let _ = writeln!(
            s,
            "top - {} up {} {:2} user{plural},  load average: {}, {}, {}",
            self.clock,
            uptime_text(self.uptime as u64),
            self.users,
            self.load.text[0],
            self.load.text[1],
            self.load.text[2]
        );
        let _ = writeln!(
            s,
            "Tasks: {:3} total, {:3} running, {:3} sleeping, {:3} stopped, {:3} zombie",
            self.procs.len(),
            count(|c| c == 'R'),
            count(|c| matches!(c, 'S' | 'D' | 'I')),
            count(|c| matches!(c, 'T' | 't')),
            count(|c| c == 'Z'),
        );
        let c = &self.cpu;
        let total = c.total().max(1) as f64;
        let pct = |v: u64| v as f64 * 100.0 / total;
        let _ = writeln!(
            s,
            "%Cpu(s):{:5.1} us,{:5.1} sy,{:5.1} ni,{:5.1} id,{:5.1} wa,{:5.1} hi,{:5.1} si,{:5.1} st",
            pct(c.user),
            pct(c.system),
            pct(c.nice),
            pct(c.idle),
            pct(c.iowait.unwrap_or(0)),
            pct(c.irq.unwrap_or(0)),
            pct(c.softirq.unwrap_or(0)),
            pct(c.steal.unwrap_or(0)),
        );
        let m = self.mem;
        // procps-ng 3.3.10+: buff/cache includes reclaimable slab.
        let buff_cache = m.buffers + m.cached + m.sreclaimable.unwrap_or(0);
        let used = m.total.saturating_sub(m.free + buff_cache);
        let _ = writeln!(
            s,
            "KiB Mem : {:8} total, {:8} free, {:8} used, {:8} buff/cache",
            m.total, m.free, used, buff_cache
        );
        let _ = writeln!(
            s,
            "KiB Swap: {:8} total, {:8} free, {:8} used. {:8} avail Mem",
            m.swap_total,
            m.swap_free,
            m.swap_total.saturating_sub(m.swap_free),
            m.available_or_estimate()
        );
        s.push('\n');
        s.push_str("  PID USER      PR  NI    VIRT    RES    SHR S  %CPU %MEM     TIME+ COMMAND\n");
        s
    }
}

/// procps' uptime text: "4 days,  1:05," / "35 min," / "1 day, 12 min,".
pub fn uptime_text(secs: u64) -> String {
    let days = secs / 86_400;
    let hours = secs / 3600 % 24;
    let mins = secs / 60 % 60;
    let mut s = String::new();
    if days > 0 {
        let _ = write!(s, "{days} day{}, ", if days == 1 { "" } else { "s" });
    }
    if hours > 0 {
        let _ = write!(s, "{hours:2}:{mins:02},");
    } else {
        let _ = write!(s, "{mins} min,");
    }
    s
}

fn render_row(out: &mut String, p: &Process, r: &ProcessRow, hz: u64) {
    let pr = if p.priority <= -100 {
        "rt".to_string()
    } else {
        p.priority.to_string()
    };
    let mut user = std::borrow::Cow::Borrowed(r.user.as_str());
    if user.chars().count() > 8 {
        // top marks a cut name with '+'.
        user = (user.chars().take(7).collect::<String>() + "+").into();
    }
    let _ = writeln!(
        out,
        "{:5} {:<8} {:>3} {:3} {:>7} {:>6} {:>6} {} {:5.1} {:4.1} {:>9} {}",
        p.pid,
        user,
        pr,
        p.nice,
        kib(p.vsize_kib, 7),
        kib(p.rss_kib, 6),
        kib(p.shared_kib.unwrap_or(0), 6),
        p.state,
        r.cpu_percent,
        r.mem_percent,
        cpu_time(p.cpu_ticks(), hz),
        printable(&p.comm)
    );
}

/// A process name as top prints it: control characters become `?`, so a process that
/// names itself "x\nFORGED" (prctl PR_SET_NAME) cannot add a line to the text.
pub fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        name.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        name.into()
    }
}

/// A KiB amount in `width` columns, scaled to m/g/t like top when it does not fit.
pub fn kib(v: u64, width: usize) -> String {
    let plain = v.to_string();
    if plain.len() <= width {
        return plain;
    }
    let mut x = v as f64;
    for unit in ["m", "g", "t", "p"] {
        x /= 1024.0;
        let s = format!("{x:.1}{unit}");
        if s.len() <= width {
            return s;
        }
        let s = format!("{}{unit}", x.round());
        if s.len() <= width {
            return s;
        }
    }
    format!("{x:.0}e")
}

/// TIME+: minutes:seconds.hundredths.
pub fn cpu_time(ticks: u64, hz: u64) -> String {
    let cs = ticks * 100 / hz.max(1);
    format!("{}:{:02}.{:02}", cs / 6000, cs / 100 % 60, cs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_like_procps() {
        assert_eq!(uptime_text(35 * 60 + 5), "35 min,");
        assert_eq!(uptime_text(3 * 86_400 + 3600 + 5 * 60), "3 days,  1:05,");
        assert_eq!(uptime_text(86_400 + 12 * 60), "1 day, 12 min,");
    }

    #[test]
    fn control_characters_in_names_print_as_question_marks() {
        assert_eq!(printable("x\nFORGED\t\u{1b}"), "x?FORGED??");
        assert_eq!(printable("kworker/0:1"), "kworker/0:1");
    }

    #[test]
    fn sizes_and_times_fit_their_columns() {
        assert_eq!(kib(193_892, 7), "193892");
        assert_eq!(kib(12_345_678, 7), "12056m");
        assert_eq!(kib(123_456_789_012, 7), "117738g");
        assert_eq!(kib(1_234_567, 6), "1206m");
        assert_eq!(cpu_time(1234, 100), "0:12.34");
        assert_eq!(cpu_time(100 * 3725, 100), "62:05.00");
    }
}
