//! The BC-Linux system load commands VMAnalyzer polls: guest-get-load-average,
//! guest-get-lastboot-time, guest-get-cpu-utilization. Reads /proc/loadavg, /proc/stat
//! and /etc/localtime.

use serde::Serialize;

use super::NoArgs;
use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::localtime::format_local;
use crate::proc::{parse_loadavg, parse_stat, CpuTimes};

/// The averages as /proc/loadavg prints them: VMAnalyzer `.strip()`s each, so they are
/// strings (upstream's guest-get-load has the numbers).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct LoadAverage {
    pub load1_average: String,
    pub load5_average: String,
    pub load15_average: String,
}

pub fn get_load_average(ctx: &Ctx, _: NoArgs) -> Result<LoadAverage, Error> {
    let [load1_average, load5_average, load15_average] =
        parse_loadavg(&ctx.read("proc/loadavg")?)?.text;
    Ok(LoadAverage {
        load1_average,
        load5_average,
        load15_average,
    })
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct LastBoot {
    /// Local time of boot, "YYYY-MM-DD HH:MM:SS".
    pub lastboot: String,
}

pub fn get_lastboot_time(ctx: &Ctx, _: NoArgs) -> Result<LastBoot, Error> {
    let btime = parse_stat(&ctx.read("proc/stat")?)?.btime;
    Ok(LastBoot {
        lastboot: format_local(ctx, btime as i64),
    })
}

/// Shares of all CPUs' time, in percent with two decimals ("12.50"). `cpu-util` is
/// everything but idle and iowait; the others add up to 100.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct CpuUtilization {
    pub cpu_util: String,
    /// Includes nice and guest time, as top's "us" + "ni".
    pub user: String,
    pub system: String,
    pub iowait: String,
    pub irq: String,
    pub softirq: String,
    pub steal: String,
    pub idle: String,
}

/// Over the interval since the previous call of this command; since boot on the first
/// call, or when less than a clock tick has passed.
pub fn get_cpu_utilization(
    ctx: &Ctx,
    session: &mut Session,
    _: NoArgs,
) -> Result<CpuUtilization, Error> {
    let now = parse_stat(&ctx.read("proc/stat")?)?.total;
    let delta = session.cpu_utilization_sampler.cpu_delta(now);
    Ok(utilization(if delta.total() == 0 { now } else { delta }))
}

fn utilization(t: CpuTimes) -> CpuUtilization {
    let total = t.total().max(1) as f64;
    let pct = |ticks: u64| format!("{:.2}", ticks as f64 * 100.0 / total);
    CpuUtilization {
        cpu_util: pct(t.busy()),
        user: pct(t.user + t.nice),
        system: pct(t.system),
        iowait: pct(t.iowait.unwrap_or(0)),
        irq: pct(t.irq.unwrap_or(0)),
        softirq: pct(t.softirq.unwrap_or(0)),
        steal: pct(t.steal.unwrap_or(0)),
        idle: pct(t.idle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_the_interval() {
        let t = CpuTimes {
            user: 300,
            nice: 100,
            system: 200,
            idle: 350,
            iowait: Some(25),
            irq: Some(0),
            softirq: Some(15),
            steal: Some(10),
            guest: Some(0),
            guest_nice: None,
        };
        let u = utilization(t);
        assert_eq!(
            [
                &u.cpu_util,
                &u.user,
                &u.system,
                &u.iowait,
                &u.softirq,
                &u.steal,
                &u.idle
            ],
            ["62.50", "40.00", "20.00", "2.50", "1.50", "1.00", "35.00"]
        );
    }

    #[test]
    fn missing_columns_count_as_zero() {
        let t = CpuTimes {
            user: 1,
            idle: 3,
            ..CpuTimes::default()
        };
        let u = utilization(t);
        assert_eq!((u.cpu_util.as_str(), u.iowait.as_str()), ("25.00", "0.00"));
    }
}
