//! guest-get-cputopn-status and guest-get-memtopn-status (BC-Linux, VMAnalyzer): the
//! processes using the most CPU or memory. Reads /proc/<pid>/stat of every process,
//! /proc/<pid>/{status,cmdline,fd} of the chosen, /proc/uptime, /proc/meminfo and
//! /etc/passwd.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::accounts::user_names;
use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::proc::{clock_ticks, parse_meminfo, read_uptime, ProcReader, Usage};

/// How many processes when the host names no number (VMAnalyzer's `--top-n` default).
pub const DEFAULT_COUNT: usize = 5;
/// Command lines are cut here: a Java command line runs to kilobytes.
pub const MAX_CMD_NAME: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CpuTopnArgs {
    pub cputopn_num: Option<TopCount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MemTopnArgs {
    pub memtopn_num: Option<TopCount>,
}

/// VMAnalyzer sends the count as a string ("5"); a JSON integer is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopCount(pub u64);

impl<'de> Deserialize<'de> for TopCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TopCount, D::Error> {
        struct CountVisitor;
        impl Visitor<'_> for CountVisitor {
            type Value = TopCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a count of processes as a string or integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TopCount, E> {
                Ok(TopCount(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TopCount, E> {
                u64::try_from(v)
                    .map(TopCount)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TopCount, E> {
                v.trim()
                    .parse()
                    .map(TopCount)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(CountVisitor)
    }
}

/// One entry; every value is a string because VMAnalyzer `.strip()`s each of them.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct TopProcess {
    pub process_id: String,
    pub process_info: ProcessInfo,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ProcessInfo {
    /// The owner's name, or the uid when /etc/passwd has none.
    pub user: String,
    /// Percent of one CPU ("150.00" is one and a half CPUs), as top shows it.
    pub cpu_util: String,
    /// Resident memory as a percent of MemTotal.
    pub mem_util: String,
    /// Entries in /proc/<pid>/fd; "N/A" when the agent may not list them.
    pub open_files: String,
    /// The command line (`[comm]` for kernel threads), cut at `MAX_CMD_NAME` bytes.
    pub cmd_name: String,
}

#[derive(Debug, Clone, Copy)]
enum Rank {
    Cpu,
    Memory,
}

/// The N processes with the highest %CPU over the interval since the previous sample
/// (any command's: the sampler is shared), since process start on the first call.
pub fn get_cputopn_status(
    ctx: &Ctx,
    session: &mut Session,
    args: CpuTopnArgs,
) -> Result<Vec<TopProcess>, Error> {
    top(
        ctx,
        session,
        count(args.cputopn_num, "cputopn-num")?,
        Rank::Cpu,
    )
}

/// The N processes with the largest resident set.
pub fn get_memtopn_status(
    ctx: &Ctx,
    session: &mut Session,
    args: MemTopnArgs,
) -> Result<Vec<TopProcess>, Error> {
    top(
        ctx,
        session,
        count(args.memtopn_num, "memtopn-num")?,
        Rank::Memory,
    )
}

fn count(arg: Option<TopCount>, name: &str) -> Result<usize, Error> {
    match arg {
        None => Ok(DEFAULT_COUNT),
        // An empty list reads as a failed collection to VMAnalyzer; refuse to make one.
        Some(TopCount(0)) => Err(Error::Args(format!(
            "Parameter '{name}' expects a number greater than 0"
        ))),
        Some(TopCount(n)) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

fn top(ctx: &Ctx, session: &mut Session, n: usize, rank: Rank) -> Result<Vec<TopProcess>, Error> {
    // Ranked on stat alone; status and cmdline are read for the chosen only.
    let no_process = || Error::Failed("no process found in /proc".into());
    let mut reader = ProcReader::open(ctx).map_err(|_| no_process())?;
    let usage = reader.each(ProcReader::usage);
    if usage.is_empty() {
        return Err(no_process());
    }
    let mem_total_kib = parse_meminfo(&ctx.read("proc/meminfo")?)?.total;
    let uptime = read_uptime(ctx)?;
    let cpu = session.cpu_sampler.sample(&usage, uptime, clock_ticks());
    let mut ranked: Vec<(&Usage, f64)> = usage.iter().zip(cpu).collect();
    ranked.sort_by(|(a, a_cpu), (b, b_cpu)| {
        let by_cpu = b_cpu.total_cmp(a_cpu);
        let by_mem = b.rss_kib.cmp(&a.rss_kib);
        match rank {
            Rank::Cpu => by_cpu.then(by_mem),
            Rank::Memory => by_mem.then(by_cpu),
        }
        .then(a.pid.cmp(&b.pid))
    });
    let users = user_names(ctx);
    // A process that exits (or whose status is unreadable) before its turn is passed
    // over for the next, as if it had not been listed.
    Ok(ranked
        .into_iter()
        .filter_map(|(u, cpu)| Some((u, cpu, reader.read(u.pid)?)))
        .take(n)
        .map(|(u, cpu, p)| TopProcess {
            process_id: p.pid.to_string(),
            process_info: ProcessInfo {
                user: users
                    .get(&p.uid)
                    .cloned()
                    .unwrap_or_else(|| p.uid.to_string()),
                cpu_util: format!("{cpu:.2}"),
                mem_util: format!("{:.2}", percent(u.rss_kib, mem_total_kib)),
                open_files: open_files(ctx, p.pid).map_or("N/A".into(), |n| n.to_string()),
                cmd_name: cut(p.command_line(), MAX_CMD_NAME),
            },
        })
        .collect())
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Open descriptors: the entries of /proc/<pid>/fd (root may list anyone's).
fn open_files(ctx: &Ctx, pid: u32) -> Option<usize> {
    let dir = std::fs::read_dir(ctx.path(&format!("proc/{pid}/fd"))).ok()?;
    Some(dir.count())
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::args::parse_args;
    use serde_json::json;

    #[test]
    fn count_is_a_string_or_an_integer() {
        let n = |v| parse_args::<CpuTopnArgs>(v).map(|a| a.cputopn_num);
        assert_eq!(n(json!({"cputopn-num": "7"})).unwrap(), Some(TopCount(7)));
        assert_eq!(n(json!({"cputopn-num": " 3 "})).unwrap(), Some(TopCount(3)));
        assert_eq!(n(json!({"cputopn-num": 12})).unwrap(), Some(TopCount(12)));
        assert_eq!(n(json!({})).unwrap(), None);
        for bad in [json!("five"), json!(-1), json!(1.5), json!(true)] {
            let e = n(json!({ "cputopn-num": bad })).unwrap_err().to_string();
            assert!(e.contains("'cputopn-num'"), "{bad}: {e}");
        }
    }

    #[test]
    fn zero_is_refused() {
        assert_eq!(count(None, "x").unwrap(), DEFAULT_COUNT);
        assert!(count(Some(TopCount(0)), "memtopn-num")
            .unwrap_err()
            .to_string()
            .contains("'memtopn-num'"));
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("java -jar x".into(), 4), "java");
        assert_eq!(cut("日本".into(), 4), "日");
        assert_eq!(cut("ab".into(), 4), "ab");
    }
}
