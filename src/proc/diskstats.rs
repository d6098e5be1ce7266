//! /proc/diskstats: the I/O counters of every block device. Pure parser; the handlers do
//! the reading.

/// One line of /proc/diskstats (Documentation/admin-guide/iostats.rst). Counters are
/// unsigned longs in the kernel and wrap on 32-bit guests; times are milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskStat {
    pub major: u32,
    pub minor: u32,
    pub name: String,
    pub read_ios: u64,
    pub read_merges: u64,
    pub read_sectors: u64,
    pub read_ticks: u64,
    pub write_ios: u64,
    pub write_merges: u64,
    pub write_sectors: u64,
    pub write_ticks: u64,
    pub ios_in_progress: u64,
    pub io_ticks: u64,
    pub weighted_io_ticks: u64,
    /// Discard counters, 4.18+ (18-field lines).
    pub discard: Option<Discard>,
    /// Flush counters, 5.5+ (20-field lines).
    pub flush: Option<Flush>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Discard {
    pub ios: u64,
    pub merges: u64,
    pub sectors: u64,
    pub ticks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flush {
    pub ios: u64,
    pub ticks: u64,
}

/// Every device line, in the kernel's order. 14-field lines (2.6.25 up to 4.17) are the
/// oldest form we meet: the 7-field partition lines ended in 2.6.25, before any kernel
/// we run on, and are skipped like any other line that does not parse.
pub fn parse_diskstats(text: &str) -> Vec<DiskStat> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<DiskStat> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 14 {
        return None;
    }
    let n: Vec<u64> = f[3..]
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .ok()?;
    Some(DiskStat {
        major: f[0].parse().ok()?,
        minor: f[1].parse().ok()?,
        name: f[2].to_string(),
        read_ios: n[0],
        read_merges: n[1],
        read_sectors: n[2],
        read_ticks: n[3],
        write_ios: n[4],
        write_merges: n[5],
        write_sectors: n[6],
        write_ticks: n[7],
        ios_in_progress: n[8],
        io_ticks: n[9],
        weighted_io_ticks: n[10],
        discard: (n.len() >= 15).then(|| Discard {
            ios: n[11],
            merges: n[12],
            sectors: n[13],
            ticks: n[14],
        }),
        flush: (n.len() >= 17).then(|| Flush {
            ios: n[15],
            ticks: n[16],
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourteen_fields_have_no_discard_or_flush() {
        let d = parse_diskstats(
            " 252       1 vda1 8241 1093 512106 9911 20117 31337 412536 88210 0 30211 98102\n",
        );
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].major, d[0].minor, d[0].name.as_str()),
            (252, 1, "vda1")
        );
        assert_eq!(d[0].read_sectors, 512106);
        assert_eq!(d[0].write_ios, 20117);
        assert_eq!(d[0].io_ticks, 30211);
        assert_eq!(d[0].weighted_io_ticks, 98102);
        assert_eq!((d[0].discard, d[0].flush), (None, None));
    }

    #[test]
    fn twenty_fields_have_discard_and_flush() {
        let d = parse_diskstats(
            " 259       0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n\
             \x20 8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n",
        );
        assert_eq!(
            d[0].discard,
            Some(Discard {
                ios: 12,
                merges: 13,
                sectors: 14,
                ticks: 15
            })
        );
        assert_eq!(d[0].flush, Some(Flush { ios: 16, ticks: 17 }));
        assert!(d[1].discard.is_some());
        assert_eq!(d[1].flush, None);
    }

    #[test]
    fn old_partition_lines_and_garbage_are_skipped() {
        let d = parse_diskstats(
            "   3    1 hda1 35486 38030 38030 38030\n8 0 sda x 2 3 4 5 6 7 8 9 10 11\n",
        );
        assert!(d.is_empty());
    }
}
