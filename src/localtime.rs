//! Local time without libc's tz code (musl's differs and a static binary must not
//! depend on it): /etc/localtime parsed as TZif v1/v2/v3 (RFC 8536), the POSIX TZ rule
//! in its footer for times after the last transition, and the TZ environment variable
//! honoured as glibc does (":file", a zoneinfo name, or a POSIX rule string).

use crate::ctx::Ctx;

/// Seconds east of UTC and the abbreviation ("CST") in effect at `unix_secs`, by the
/// TZ environment variable or else /etc/localtime; UTC when neither is usable.
pub fn local_offset(ctx: &Ctx, unix_secs: i64) -> (i64, String) {
    let tz = std::env::var("TZ").ok();
    zone(ctx, tz.as_deref()).offset_at(unix_secs)
}

/// "YYYY-MM-DD HH:MM:SS" in local time.
pub fn format_local(ctx: &Ctx, unix_secs: i64) -> String {
    let (offset, _) = local_offset(ctx, unix_secs);
    format_utc(unix_secs + offset)
}

/// "YYYY-MM-DD HH:MM:SS" for seconds since the epoch, without any offset applied.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The zone named by `tz` (the value of $TZ, if set), read below the context's root.
pub fn zone(ctx: &Ctx, tz: Option<&str>) -> Zone {
    let from_file = |rel: &str| -> Option<Zone> {
        let bytes = crate::whole_file::read(&ctx.path(rel)).ok()?;
        parse_tzif(&bytes)
    };
    let Some(tz) = tz else {
        return from_file("etc/localtime").unwrap_or_else(Zone::utc);
    };
    let (explicit_file, name) = match tz.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, tz),
    };
    if name.is_empty() {
        return Zone::utc();
    }
    let file = if name.starts_with('/') {
        from_file(name)
    } else if name.split('/').any(|c| c == "..") {
        None
    } else {
        from_file(&format!("usr/share/zoneinfo/{name}"))
    };
    if let Some(z) = file {
        return z;
    }
    if !explicit_file {
        if let Some(rule) = parse_posix_tz(name) {
            return Zone::from_rule(rule);
        }
    }
    Zone::utc()
}

/// One local time type of a TZif file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalType {
    offset: i64,
    abbr: String,
}

/// A time zone: transitions from a TZif file and the rule for later times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    transitions: Vec<(i64, usize)>,
    types: Vec<LocalType>,
    rule: Option<PosixTz>,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone::from_rule(PosixTz {
            std_abbr: "UTC".into(),
            std_offset: 0,
            dst: None,
        })
    }

    fn from_rule(rule: PosixTz) -> Zone {
        Zone {
            transitions: Vec::new(),
            types: Vec::new(),
            rule: Some(rule),
        }
    }

    /// Seconds east of UTC and the abbreviation at `t`.
    pub fn offset_at(&self, t: i64) -> (i64, String) {
        let after_last = self.transitions.last().is_none_or(|&(last, _)| t >= last);
        if after_last {
            if let Some(rule) = &self.rule {
                return rule.offset_at(t);
            }
        }
        let ty = match self.transitions.partition_point(|&(at, _)| at <= t) {
            // Before the first transition RFC 8536 says type 0 applies.
            0 => self.types.first(),
            i => self.types.get(self.transitions[i - 1].1),
        };
        match ty {
            Some(lt) => (lt.offset, lt.abbr.clone()),
            None => (0, "UTC".into()),
        }
    }
}

/// Parses a TZif file (v1, or the 64-bit v2/v3 body and its footer rule).
pub fn parse_tzif(b: &[u8]) -> Option<Zone> {
    let header = Header::parse(b)?;
    if header.version == 0 {
        return parse_body(b.get(44..)?, &header, 4).map(|(z, _)| z);
    }
    let second = 44 + header.body_len(4);
    let header2 = Header::parse(b.get(second..)?)?;
    let (mut zone, used) = parse_body(b.get(second + 44..)?, &header2, 8)?;
    let footer = b.get(second + 44 + used..)?;
    if footer.first() == Some(&b'\n') {
        let end = footer[1..].iter().position(|&c| c == b'\n')?;
        let text = std::str::from_utf8(&footer[1..1 + end]).ok()?;
        zone.rule = parse_posix_tz(text);
    }
    Some(zone)
}

struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

impl Header {
    fn parse(b: &[u8]) -> Option<Header> {
        if b.get(..4)? != b"TZif" {
            return None;
        }
        let count = |i: usize| -> Option<usize> {
            let o = 20 + 4 * i;
            Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?) as usize)
        };
        let version = match *b.get(4)? {
            0 => 0,
            v @ b'2'..=b'9' => v - b'0',
            _ => return None,
        };
        Some(Header {
            version,
            isutcnt: count(0)?,
            isstdcnt: count(1)?,
            leapcnt: count(2)?,
            timecnt: count(3)?,
            typecnt: count(4)?,
            charcnt: count(5)?,
        })
    }

    fn body_len(&self, time_size: usize) -> usize {
        self.timecnt * time_size
            + self.timecnt
            + self.typecnt * 6
            + self.charcnt
            + self.leapcnt * (time_size + 4)
            + self.isstdcnt
            + self.isutcnt
    }
}

fn parse_body(b: &[u8], h: &Header, time_size: usize) -> Option<(Zone, usize)> {
    let len = h.body_len(time_size);
    let b = b.get(..len)?;
    let times = &b[..h.timecnt * time_size];
    let idx = &b[h.timecnt * time_size..h.timecnt * (time_size + 1)];
    let types_at = h.timecnt * (time_size + 1);
    let chars_at = types_at + h.typecnt * 6;
    let chars = &b[chars_at..chars_at + h.charcnt];
    let mut types = Vec::with_capacity(h.typecnt);
    for t in b[types_at..chars_at].chunks_exact(6) {
        let offset = i64::from(i32::from_be_bytes([t[0], t[1], t[2], t[3]]));
        let start = usize::from(t[5]);
        let abbr = chars.get(start..).unwrap_or_default();
        let end = abbr.iter().position(|&c| c == 0).unwrap_or(abbr.len());
        types.push(LocalType {
            offset,
            abbr: String::from_utf8_lossy(&abbr[..end]).into_owned(),
        });
    }
    let mut transitions = Vec::with_capacity(h.timecnt);
    for (i, t) in times.chunks_exact(time_size).enumerate() {
        let at = if time_size == 4 {
            i64::from(i32::from_be_bytes(t.try_into().ok()?))
        } else {
            i64::from_be_bytes(t.try_into().ok()?)
        };
        let ty = usize::from(idx[i]);
        if ty >= types.len() {
            return None;
        }
        transitions.push((at, ty));
    }
    Some((
        Zone {
            transitions,
            types,
            rule: None,
        },
        len,
    ))
}

/// A POSIX TZ rule ("CST-8", "CET-1CEST,M3.5.0,M10.5.0/3"); offsets in seconds east.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixTz {
    std_abbr: String,
    std_offset: i64,
    dst: Option<Dst>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Dst {
    abbr: String,
    offset: i64,
    start: (DateRule, i64),
    end: (DateRule, i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateRule {
    /// Jn: day 1..=365, February 29 never counted.
    Julian1(i64),
    /// n: day 0..=365, February 29 counted.
    Julian0(i64),
    /// Mm.w.d: weekday d (0 = Sunday) of week w (5 = last) of month m.
    Month(i64, i64, i64),
}

impl PosixTz {
    fn offset_at(&self, t: i64) -> (i64, String) {
        let Some(dst) = &self.dst else {
            return (self.std_offset, self.std_abbr.clone());
        };
        let (year, _, _) = civil_from_days((t + self.std_offset).div_euclid(86_400));
        // Transition times are local: the start in standard time, the end in DST.
        let start = rule_day(dst.start.0, year) * 86_400 + dst.start.1 - self.std_offset;
        let end = rule_day(dst.end.0, year) * 86_400 + dst.end.1 - dst.offset;
        let in_dst = if start < end {
            start <= t && t < end
        } else {
            // Southern hemisphere: DST spans the new year.
            !(end <= t && t < start)
        };
        if in_dst {
            (dst.offset, dst.abbr.clone())
        } else {
            (self.std_offset, self.std_abbr.clone())
        }
    }
}

/// Parses a POSIX TZ string (the TZif footer or a TZ value).
pub fn parse_posix_tz(s: &str) -> Option<PosixTz> {
    let mut p = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let std_abbr = p.abbr()?;
    // POSIX offsets are west of UTC ("CST6" is UTC-6); we keep seconds east.
    let std_offset = -p.time()?;
    if p.done() {
        return Some(PosixTz {
            std_abbr,
            std_offset,
            dst: None,
        });
    }
    let dst_abbr = p.abbr()?;
    let dst_offset = if p.peek() == Some(b',') || p.done() {
        std_offset + 3600
    } else {
        -p.time()?
    };
    let (start, end) = if p.done() {
        // No rule given: the US rules glibc assumes.
        (
            (DateRule::Month(3, 2, 0), 7200),
            (DateRule::Month(11, 1, 0), 7200),
        )
    } else {
        p.eat(b',')?;
        let start = p.date_rule()?;
        p.eat(b',')?;
        let end = p.date_rule()?;
        (start, end)
    };
    if !p.done() {
        return None;
    }
    Some(PosixTz {
        std_abbr,
        std_offset,
        dst: Some(Dst {
            abbr: dst_abbr,
            offset: dst_offset,
            start,
            end,
        }),
    })
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// "CST" or the quoted form "<+08>".
    fn abbr(&mut self) -> Option<String> {
        let start = self.i;
        if self.peek() == Some(b'<') {
            let end = start + self.s[start..].iter().position(|&c| c == b'>')?;
            self.i = end + 1;
            return Some(String::from_utf8_lossy(&self.s[start + 1..end]).into_owned());
        }
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        (self.i - start >= 3).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn number(&mut self) -> Option<i64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }

    /// [+-]hh[:mm[:ss]] in seconds.
    fn time(&mut self) -> Option<i64> {
        let sign = match self.peek() {
            Some(b'-') => {
                self.i += 1;
                -1
            }
            Some(b'+') => {
                self.i += 1;
                1
            }
            _ => 1,
        };
        let mut secs = self.number()? * 3600;
        if self.eat(b':').is_some() {
            secs += self.number()? * 60;
            if self.eat(b':').is_some() {
                secs += self.number()?;
            }
        }
        Some(sign * secs)
    }

    fn date_rule(&mut self) -> Option<(DateRule, i64)> {
        let rule = match self.peek()? {
            b'J' => {
                self.i += 1;
                DateRule::Julian1(self.number().filter(|n| (1..=365).contains(n))?)
            }
            b'M' => {
                self.i += 1;
                let m = self.number().filter(|n| (1..=12).contains(n))?;
                self.eat(b'.')?;
                let w = self.number().filter(|n| (1..=5).contains(n))?;
                self.eat(b'.')?;
                let d = self.number().filter(|n| (0..=6).contains(n))?;
                DateRule::Month(m, w, d)
            }
            _ => DateRule::Julian0(self.number().filter(|n| (0..=365).contains(n))?),
        };
        let time = if self.eat(b'/').is_some() {
            self.time()?
        } else {
            7200
        };
        Some((rule, time))
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since the epoch of the day a rule names in `year`.
fn rule_day(rule: DateRule, year: i64) -> i64 {
    let jan1 = days_from_civil(year, 1, 1);
    match rule {
        DateRule::Julian1(n) => jan1 + n - 1 + i64::from(is_leap(year) && n >= 60),
        DateRule::Julian0(n) => jan1 + n,
        DateRule::Month(m, w, d) => {
            let first = days_from_civil(year, m, 1);
            // 1970-01-01 was a Thursday (4).
            let wd_first = (first + 4).rem_euclid(7);
            let mut day = 1 + (d - wd_first).rem_euclid(7) + (w - 1) * 7;
            while day > days_in_month(year, m) {
                day -= 7;
            }
            first + day - 1
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn posix_rule_without_dst() {
        let z = parse_posix_tz("CST-8").unwrap();
        assert_eq!(z.offset_at(0), (8 * 3600, "CST".into()));
        let z = parse_posix_tz("<+0530>-5:30").unwrap();
        assert_eq!(z.offset_at(0), (5 * 3600 + 1800, "+0530".into()));
    }

    #[test]
    fn posix_rule_with_european_dst() {
        let z = parse_posix_tz("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2024-03-31 01:00 UTC is the switch to CEST.
        let switch = days_from_civil(2024, 3, 31) * 86_400 + 3600;
        assert_eq!(z.offset_at(switch - 1).1, "CET");
        assert_eq!(z.offset_at(switch), (7200, "CEST".into()));
        // 2024-10-27 01:00 UTC back to CET.
        let back = days_from_civil(2024, 10, 27) * 86_400 + 3600;
        assert_eq!(z.offset_at(back - 1).1, "CEST");
        assert_eq!(z.offset_at(back).1, "CET");
    }

    #[test]
    fn posix_rule_southern_hemisphere() {
        let z = parse_posix_tz("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        let jan = days_from_civil(2024, 1, 15) * 86_400;
        let jul = days_from_civil(2024, 7, 15) * 86_400;
        assert_eq!(z.offset_at(jan), (11 * 3600, "AEDT".into()));
        assert_eq!(z.offset_at(jul), (10 * 3600, "AEST".into()));
    }

    #[test]
    fn posix_rule_us_default_and_julian() {
        let z = parse_posix_tz("EST5EDT").unwrap();
        let jul = days_from_civil(2024, 7, 1) * 86_400;
        assert_eq!(z.offset_at(jul), (-4 * 3600, "EDT".into()));
        let z = parse_posix_tz("XXX3YYY,J60/0,J300").unwrap();
        let mar1 = days_from_civil(2024, 3, 1) * 86_400 + 3 * 3600;
        assert_eq!(z.offset_at(mar1).1, "YYY");
        assert!(parse_posix_tz("X1").is_none());
        assert!(parse_posix_tz("CET-1CEST,M13.5.0,M10.5.0").is_none());
    }

    fn tzif_v1(transitions: &[(i32, u8)], types: &[(i32, &str)]) -> Vec<u8> {
        let mut chars = Vec::new();
        let mut ttinfo = Vec::new();
        for (off, abbr) in types {
            ttinfo.extend_from_slice(&off.to_be_bytes());
            ttinfo.push(0);
            ttinfo.push(chars.len() as u8);
            chars.extend_from_slice(abbr.as_bytes());
            chars.push(0);
        }
        let mut b = b"TZif\0".to_vec();
        b.extend_from_slice(&[0; 15]);
        for n in [0, 0, 0, transitions.len(), types.len(), chars.len()] {
            b.extend_from_slice(&(n as u32).to_be_bytes());
        }
        for (t, _) in transitions {
            b.extend_from_slice(&t.to_be_bytes());
        }
        b.extend(transitions.iter().map(|(_, i)| *i));
        b.extend_from_slice(&ttinfo);
        b.extend_from_slice(&chars);
        b
    }

    #[test]
    fn tzif_v1_transitions() {
        let z = parse_tzif(&tzif_v1(
            &[(1000, 1), (2000, 0)],
            &[(0, "AAA"), (3600, "BBB")],
        ))
        .unwrap();
        assert_eq!(z.offset_at(500), (0, "AAA".into()));
        assert_eq!(z.offset_at(1000), (3600, "BBB".into()));
        assert_eq!(z.offset_at(5000), (0, "AAA".into()));
        assert!(parse_tzif(b"TZif2").is_none());
        assert!(parse_tzif(b"nope").is_none());
    }
}
