//! Setting the system clock (settimeofday) and the hardware clock (the RTC_RD_TIME and
//! RTC_SET_TIME ioctls of the rtc class driver, both older than 2.6.32).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use super::check;

/// Sets the system (wall-clock) time. Needs CAP_SYS_TIME. EOVERFLOW when `secs` does
/// not fit the platform's time_t (32 bits on i686 with the libc crate's musl ABI).
pub fn set_system_time(secs: i64, micros: i64) -> io::Result<()> {
    // A no-op conversion where time_t is 64 bits; it narrows on i686.
    #[allow(clippy::useless_conversion)]
    let tv_sec = secs
        .try_into()
        .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    let tv = libc::timeval {
        tv_sec,
        tv_usec: micros as _,
    };
    // SAFETY: `tv` is a valid timeval for the call; a null timezone is allowed.
    check(unsafe { libc::settimeofday(&tv, std::ptr::null()) })?;
    Ok(())
}

/// Broken-down RTC time as `struct rtc_time` holds it: year since 1900, month 0-11.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtcTime {
    pub sec: i32,
    pub min: i32,
    pub hour: i32,
    pub mday: i32,
    pub mon: i32,
    pub year: i32,
}

/// `struct rtc_time` of <linux/rtc.h>: nine ints.
#[repr(C)]
#[derive(Default)]
struct RawRtcTime {
    tm_sec: libc::c_int,
    tm_min: libc::c_int,
    tm_hour: libc::c_int,
    tm_mday: libc::c_int,
    tm_mon: libc::c_int,
    tm_year: libc::c_int,
    tm_wday: libc::c_int,
    tm_yday: libc::c_int,
    tm_isdst: libc::c_int,
}

const RTC_SIZE: u64 = std::mem::size_of::<RawRtcTime>() as u64;
/// _IOR('p', 0x09, struct rtc_time)
const RTC_RD_TIME: u64 = (2 << 30) | (RTC_SIZE << 16) | ((b'p' as u64) << 8) | 0x09;
/// _IOW('p', 0x0a, struct rtc_time)
const RTC_SET_TIME: u64 = (1 << 30) | (RTC_SIZE << 16) | ((b'p' as u64) << 8) | 0x0a;

/// Reads the hardware clock through an open rtc device.
pub fn rtc_read(rtc: &File) -> io::Result<RtcTime> {
    let mut raw = RawRtcTime::default();
    // SAFETY: RTC_RD_TIME writes one struct rtc_time into `raw`, which lives for the
    // call; `rtc` is open.
    check(unsafe { libc::ioctl(rtc.as_raw_fd(), RTC_RD_TIME as _, &mut raw) })?;
    Ok(RtcTime {
        sec: raw.tm_sec,
        min: raw.tm_min,
        hour: raw.tm_hour,
        mday: raw.tm_mday,
        mon: raw.tm_mon,
        year: raw.tm_year,
    })
}

/// Sets the hardware clock through an rtc device opened for writing.
pub fn rtc_set(rtc: &File, t: RtcTime) -> io::Result<()> {
    let raw = RawRtcTime {
        tm_sec: t.sec,
        tm_min: t.min,
        tm_hour: t.hour,
        tm_mday: t.mday,
        tm_mon: t.mon,
        tm_year: t.year,
        tm_isdst: -1,
        ..RawRtcTime::default()
    };
    // SAFETY: RTC_SET_TIME reads one struct rtc_time from `raw`, which lives for the
    // call; `rtc` is open.
    check(unsafe { libc::ioctl(rtc.as_raw_fd(), RTC_SET_TIME as _, &raw) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_rtc_h() {
        assert_eq!(RTC_RD_TIME, 0x8024_7009);
        assert_eq!(RTC_SET_TIME, 0x4024_700a);
    }

    #[test]
    fn a_regular_file_is_not_an_rtc() {
        let f = File::open("/proc/self/stat").unwrap();
        let e = rtc_read(&f).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }

    /// Reads only; setting the real clocks is never tested (it would change the test
    /// machine). Machines without an RTC (many VMs, containers) skip.
    #[test]
    #[ignore = "needs root"]
    fn reads_the_real_rtc_when_there_is_one() {
        let Ok(f) = File::open("/dev/rtc0") else {
            eprintln!("no /dev/rtc0 here; skipped");
            return;
        };
        let t = rtc_read(&f).unwrap();
        assert!(t.year >= 100 && (0..12).contains(&t.mon), "{t:?}");
    }
}
