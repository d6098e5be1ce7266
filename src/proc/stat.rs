//! /proc/stat: CPU time counters (all CPUs and each one), boot time, task counts.

use crate::error::Error;

/// One "cpu" line, in clock ticks (USER_HZ). Columns the kernel added later are `None`
/// when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    /// Since 2.5.41.
    pub iowait: Option<u64>,
    /// Since 2.6.0-test4.
    pub irq: Option<u64>,
    /// Since 2.6.0-test4.
    pub softirq: Option<u64>,
    /// Since 2.6.11.
    pub steal: Option<u64>,
    /// Since 2.6.24; already included in `user`.
    pub guest: Option<u64>,
    /// Since 2.6.33 (absent on CentOS 6); already included in `nice`.
    pub guest_nice: Option<u64>,
}

impl CpuTimes {
    /// All ticks, counting guest time once (the kernel adds it to user/nice too).
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait.unwrap_or(0)
            + self.irq.unwrap_or(0)
            + self.softirq.unwrap_or(0)
            + self.steal.unwrap_or(0)
    }

    /// Ticks neither idle nor waiting for I/O.
    pub fn busy(&self) -> u64 {
        self.total() - self.idle - self.iowait.unwrap_or(0)
    }

    fn parse(fields: &[&str]) -> Option<CpuTimes> {
        let n = |i: usize| -> Option<Option<u64>> {
            match fields.get(i) {
                None => Some(None),
                Some(s) => s.parse().ok().map(Some),
            }
        };
        Some(CpuTimes {
            user: n(0)??,
            nice: n(1)??,
            system: n(2)??,
            idle: n(3)??,
            iowait: n(4)?,
            irq: n(5)?,
            softirq: n(6)?,
            steal: n(7)?,
            guest: n(8)?,
            guest_nice: n(9)?,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stat {
    /// The aggregate "cpu" line.
    pub total: CpuTimes,
    /// "cpuN" lines: (N, times). Offline CPUs have no line.
    pub cpus: Vec<(u32, CpuTimes)>,
    /// Boot time, seconds since the epoch.
    pub btime: u64,
    /// Context switches since boot.
    pub ctxt: Option<u64>,
    /// Forks since boot.
    pub processes: Option<u64>,
    /// Since 2.5.45.
    pub procs_running: Option<u64>,
    /// Since 2.5.45.
    pub procs_blocked: Option<u64>,
}

/// Parses /proc/stat. The "cpu" and "btime" lines are required.
pub fn parse_stat(text: &str) -> Result<Stat, Error> {
    let bad = |what: &str| Error::Failed(format!("malformed /proc/stat: {what}"));
    let mut stat = Stat::default();
    let (mut have_cpu, mut have_btime) = (false, false);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(key) = f.next() else { continue };
        // Only the cpu lines are split into a list: "intr" has a field per interrupt
        // (thousands on a large guest), and is not read at all.
        let mut first = || f.next().and_then(|s| s.parse::<u64>().ok());
        match key {
            "btime" => {
                stat.btime = first().ok_or_else(|| bad("btime"))?;
                have_btime = true;
            }
            "ctxt" => stat.ctxt = first(),
            "processes" => stat.processes = first(),
            "procs_running" => stat.procs_running = first(),
            "procs_blocked" => stat.procs_blocked = first(),
            _ => {
                let Some(n) = key.strip_prefix("cpu") else {
                    continue;
                };
                let rest: Vec<&str> = f.collect();
                let what = if n.is_empty() { "cpu line" } else { key };
                let times = CpuTimes::parse(&rest).ok_or_else(|| bad(what));
                if n.is_empty() {
                    stat.total = times?;
                    have_cpu = true;
                } else if let Ok(n) = n.parse() {
                    stat.cpus.push((n, times?));
                }
            }
        }
    }
    if !have_cpu {
        return Err(bad("no cpu line"));
    }
    if !have_btime {
        return Err(bad("no btime"));
    }
    Ok(stat)
}

/// USER_HZ, the unit of every tick count in /proc.
pub fn clock_ticks() -> u64 {
    crate::sys::sysconf::clock_ticks()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_eight_cpu_columns_as_on_2_6_32() {
        let s = parse_stat(
            "cpu  100 2 30 1000 5 1 2 0 0\ncpu0 100 2 30 1000 5 1 2 0 0\nintr 1 2\nctxt 99\n\
             btime 1700000000\nprocesses 42\nprocs_running 1\nprocs_blocked 0\n",
        )
        .unwrap();
        assert_eq!(s.total.guest, Some(0));
        assert_eq!(s.total.guest_nice, None);
        assert_eq!(s.total.total(), 100 + 2 + 30 + 1000 + 5 + 1 + 2);
        assert_eq!(s.total.busy(), 100 + 2 + 30 + 1 + 2);
        assert_eq!(s.cpus.len(), 1);
        assert_eq!(s.btime, 1700000000);
        assert_eq!(s.procs_running, Some(1));
    }

    #[test]
    fn stat_with_four_columns() {
        let s = parse_stat("cpu 1 2 3 4\nbtime 5\n").unwrap();
        assert_eq!(s.total.iowait, None);
        assert_eq!(s.total.total(), 10);
        assert_eq!(s.procs_running, None);
    }

    #[test]
    fn stat_malformed() {
        assert!(parse_stat("btime 5\n").is_err());
        assert!(parse_stat("cpu 1 2 3\nbtime 5\n").is_err());
        assert!(parse_stat("cpu 1 2 3 4\n").is_err());
    }
}
