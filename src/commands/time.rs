//! Time: guest-get-time, guest-get-timezone (src/localtime.rs) and guest-set-time. Sets the system clock (settimeofday) and the
//! hardware clock through /dev/rtc0 (RTC_SET_TIME / RTC_RD_TIME), falling back to
//! `hwclock` when the device cannot be used or the RTC keeps local time (/etc/adjtime).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Empty, NoArgs};
use crate::accounts::find_program;
use crate::child::Run;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::job::Step;
use crate::localtime::{self, civil_from_days, days_from_civil};
use crate::sys::clock::{self, RtcTime};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Nanoseconds since the epoch (UTC).
pub fn get_time(_: &Ctx, _: NoArgs) -> Result<i64, Error> {
    Ok(now_nanos())
}

fn now_nanos() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timezone {
    /// The abbreviation in effect ("CST", "CEST"); absent when the zone has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Seconds east of UTC.
    pub offset: i64,
}

/// The local zone now: $TZ, else /etc/localtime, else UTC (as GLib's local zone).
pub fn get_timezone(ctx: &Ctx, _: NoArgs) -> Result<Timezone, Error> {
    let tz = std::env::var("TZ").ok();
    let now = now_nanos().div_euclid(NANOS_PER_SEC);
    Ok(timezone_at(&localtime::zone(ctx, tz.as_deref()), now))
}

pub fn timezone_at(zone: &localtime::Zone, unix_secs: i64) -> Timezone {
    let (offset, abbr) = zone.offset_at(unix_secs);
    Timezone {
        zone: (!abbr.is_empty()).then_some(abbr),
        offset,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTimeArgs {
    /// Nanoseconds since the epoch; absent: set the system time from the RTC.
    pub time: Option<i64>,
}

/// With `time`: validate it, set the system clock, then the hardware clock. Without:
/// set the system clock from the hardware clock.
pub fn set_time(ctx: &Ctx, args: SetTimeArgs) -> Result<Step<Empty>, Error> {
    // qemu-ga refuses before touching the clock when it cannot reach the RTC.
    let rtc = HardwareClock::locate(ctx)?;
    match args.time {
        Some(ns) => {
            let (secs, micros) = validate_time(ns)?;
            clock::set_system_time(secs, micros).map_err(|e| {
                if e.raw_os_error() == Some(libc::EOVERFLOW) {
                    // 32-bit time_t: qemu-ga's wording for the same check.
                    Error::Failed(format!("Time {ns} is too large"))
                } else {
                    Error::io("Failed to set time to guest", e)
                }
            })?;
            rtc.set_from_system()
        }
        None => rtc.set_system_from_rtc(),
    }
}

/// Splits `ns` as qemu-ga's C division does (truncating, so -1 ns is 0 s and 0 µs)
/// and accepts years 1970-2069 only.
pub fn validate_time(ns: i64) -> Result<(i64, i64), Error> {
    let secs = ns / NANOS_PER_SEC;
    let micros = (ns % NANOS_PER_SEC) / 1000;
    let (year, _, _) = civil_from_days(secs.div_euclid(86_400));
    if !(1970..2070).contains(&year) {
        return Err(Error::Failed("Invalid time".into()));
    }
    Ok((secs, micros))
}

/// How the hardware clock is reached.
enum HardwareClock {
    /// An rtc device that answered RTC_RD_TIME, kept open for reading and writing.
    Device(File),
    /// `hwclock`, which also knows RTCs in local time and other platforms' clocks.
    Hwclock(PathBuf),
}

/// Device nodes tried in order; /dev/rtc is a symlink to rtc0 on udev systems and the
/// only node on some older ones.
const RTC_DEVICES: [&str; 2] = ["dev/rtc0", "dev/rtc"];

impl HardwareClock {
    fn locate(ctx: &Ctx) -> Result<HardwareClock, Error> {
        if !rtc_is_local_time(ctx) {
            for dev in RTC_DEVICES {
                let Ok(file) = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(ctx.path(dev))
                else {
                    continue;
                };
                if clock::rtc_read(&file).is_ok() {
                    return Ok(HardwareClock::Device(file));
                }
            }
        }
        match find_program("hwclock") {
            Some(path) => Ok(HardwareClock::Hwclock(path)),
            None => Err(Error::Failed(
                "this feature or command is not currently supported".into(),
            )),
        }
    }

    fn set_from_system(&self) -> Result<Step<Empty>, Error> {
        match self {
            HardwareClock::Device(file) => {
                let secs = now_nanos().div_euclid(NANOS_PER_SEC);
                clock::rtc_set(file, rtc_from_unix(secs))
                    .map_err(|e| Error::io("failed to set hardware clock", e))?;
                Ok(Step::Done(Empty {}))
            }
            HardwareClock::Hwclock(path) => run_hwclock(
                path,
                "-w",
                "hwclock failed to set hardware clock to system time",
            ),
        }
    }

    fn set_system_from_rtc(&self) -> Result<Step<Empty>, Error> {
        match self {
            HardwareClock::Device(file) => {
                let rtc = clock::rtc_read(file)
                    .map_err(|e| Error::io("failed to read hardware clock", e))?;
                let secs = unix_from_rtc(rtc).ok_or_else(|| {
                    Error::Failed(format!("hardware clock holds an invalid time: {rtc:?}"))
                })?;
                clock::set_system_time(secs, 0)
                    .map_err(|e| Error::io("Failed to set time to guest", e))?;
                Ok(Step::Done(Empty {}))
            }
            HardwareClock::Hwclock(path) => run_hwclock(
                path,
                "-s",
                "hwclock failed to set system time from hardware clock",
            ),
        }
    }
}

/// hwclock waits for the RTC's next second; anything much longer is a hung device.
const HWCLOCK_TIMEOUT: Duration = Duration::from_secs(30);

fn run_hwclock(path: &Path, flag: &str, failure: &'static str) -> Result<Step<Empty>, Error> {
    let mut cmd = Command::new(path);
    cmd.arg(flag);
    let run = Run::program(cmd, Vec::new(), HWCLOCK_TIMEOUT, 0);
    Ok(Step::wait(run, move |_, _, result| {
        let done = result.map_err(|e| Error::io("failed to create child process", e))?;
        match done.status.and_then(|s| s.code()) {
            None => Err(Error::Failed(
                "child process has terminated abnormally".into(),
            )),
            Some(0) => Ok(Step::Done(Empty {})),
            Some(_) => Err(Error::Failed(failure.into())),
        }
    }))
}

/// The third line of /etc/adjtime says whether the RTC keeps UTC (the default) or local
/// time; only `hwclock` converts the latter correctly.
fn rtc_is_local_time(ctx: &Ctx) -> bool {
    ctx.read("etc/adjtime")
        .map(|text| parse_adjtime_is_local(&text))
        .unwrap_or(false)
}

fn parse_adjtime_is_local(text: &str) -> bool {
    text.lines().nth(2).map(str::trim) == Some("LOCAL")
}

fn rtc_from_unix(secs: i64) -> RtcTime {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    RtcTime {
        sec: (rem % 60) as i32,
        min: (rem / 60 % 60) as i32,
        hour: (rem / 3600) as i32,
        mday: d as i32,
        mon: m as i32 - 1,
        year: (y - 1900) as i32,
    }
}

/// Seconds since the epoch of an RTC reading (UTC), or None if a field is out of range.
fn unix_from_rtc(t: RtcTime) -> Option<i64> {
    let valid = (0..60).contains(&t.sec)
        && (0..60).contains(&t.min)
        && (0..24).contains(&t.hour)
        && (1..=31).contains(&t.mday)
        && (0..12).contains(&t.mon)
        && t.year >= 70;
    if !valid {
        return None;
    }
    let days = days_from_civil(
        i64::from(t.year) + 1900,
        i64::from(t.mon) + 1,
        i64::from(t.mday),
    );
    Some(days * 86_400 + i64::from(t.hour) * 3600 + i64::from(t.min) * 60 + i64::from(t.sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_range_is_1970_to_2069() {
        assert_eq!(validate_time(0).unwrap(), (0, 0));
        // 2069-12-31T23:59:59Z
        assert!(validate_time(3_155_759_999 * NANOS_PER_SEC).is_ok());
        // 2070-01-01T00:00:00Z
        let e = validate_time(3_155_760_000 * NANOS_PER_SEC).unwrap_err();
        assert_eq!(e.to_string(), "Invalid time");
        assert!(validate_time(-NANOS_PER_SEC).is_err());
        assert!(validate_time(i64::MAX).is_err());
        assert!(validate_time(i64::MIN).is_err());
    }

    #[test]
    fn time_splits_like_c_division() {
        assert_eq!(validate_time(-1).unwrap(), (0, 0));
        assert_eq!(validate_time(-1500).unwrap(), (0, -1));
        assert_eq!(
            validate_time(1_700_000_000_123_456_789).unwrap(),
            (1_700_000_000, 123_456)
        );
    }

    #[test]
    fn rtc_conversions_round_trip() {
        let secs = 1_700_000_000; // 2023-11-14T22:13:20Z
        let rtc = rtc_from_unix(secs);
        assert_eq!(
            rtc,
            RtcTime {
                sec: 20,
                min: 13,
                hour: 22,
                mday: 14,
                mon: 10,
                year: 123
            }
        );
        assert_eq!(unix_from_rtc(rtc), Some(secs));
    }

    #[test]
    fn garbage_rtc_reading_is_refused() {
        let bad = RtcTime {
            mon: 12,
            ..rtc_from_unix(0)
        };
        assert_eq!(unix_from_rtc(bad), None);
    }

    #[test]
    fn adjtime_third_line_decides_local() {
        assert!(parse_adjtime_is_local("0.0 0 0.0\n0\nLOCAL\n"));
        assert!(!parse_adjtime_is_local("0.0 0 0.0\n0\nUTC\n"));
        assert!(!parse_adjtime_is_local(""));
    }

    #[test]
    fn get_time_is_now() {
        let t = get_time(&Ctx::with_root("/"), NoArgs {}).unwrap();
        assert!(t > 1_600_000_000 * NANOS_PER_SEC);
    }
}
