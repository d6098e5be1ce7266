//! /proc/loadavg: the 1, 5 and 15 minute load averages and the task counts.

use crate::error::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
    /// The averages exactly as the kernel printed them ("0.05"), for text output
    /// that must not gain float noise.
    pub text: [String; 3],
    /// Runnable scheduling entities (the number before the slash).
    pub running: u32,
    /// All scheduling entities, threads included (after the slash).
    pub total: u32,
    /// The most recently created pid.
    pub last_pid: u32,
}

/// Parses "0.05 0.10 0.08 1/123 4567".
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, Error> {
    let bad = || Error::Failed("malformed /proc/loadavg".into());
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() < 5 {
        return Err(bad());
    }
    let avg = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
    let (running, total) = f[3].split_once('/').ok_or_else(bad)?;
    Ok(LoadAvg {
        one: avg(f[0]).ok_or_else(bad)?,
        five: avg(f[1]).ok_or_else(bad)?,
        fifteen: avg(f[2]).ok_or_else(bad)?,
        text: [f[0].to_string(), f[1].to_string(), f[2].to_string()],
        running: running.parse().map_err(|_| bad())?,
        total: total.parse().map_err(|_| bad())?,
        last_pid: f[4].parse().map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_keeps_the_printed_text() {
        let l = parse_loadavg("0.05 0.10 0.08 1/123 4567\n").unwrap();
        assert_eq!(l.text, ["0.05", "0.10", "0.08"]);
        assert_eq!((l.one, l.fifteen), (0.05, 0.08));
        assert_eq!((l.running, l.total, l.last_pid), (1, 123, 4567));
    }

    #[test]
    fn loadavg_malformed() {
        assert!(parse_loadavg("0.05 0.10 0.08").is_err());
        assert!(parse_loadavg("a b c 1/2 3").is_err());
        assert!(parse_loadavg("1 2 3 12 3").is_err());
    }
}
