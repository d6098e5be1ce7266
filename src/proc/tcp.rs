//! TCP state from procfs: the socket tables /proc/net/tcp and /proc/net/tcp6, and the
//! `Tcp:` counters of /proc/net/snmp. Pure parsers; the handlers do the reading.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::Error;

/// A TCP state as the kernel numbers it (include/net/tcp_states.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
}

impl TcpState {
    /// The `st` column. NEW_SYN_RECV (12, 4.4+) never reaches the file: request socks
    /// are printed as SYN_RECV.
    fn from_code(code: u8) -> Option<TcpState> {
        use TcpState::*;
        Some(match code {
            0x01 => Established,
            0x02 => SynSent,
            0x03 => SynRecv,
            0x04 => FinWait1,
            0x05 => FinWait2,
            0x06 => TimeWait,
            0x07 => Close,
            0x08 => CloseWait,
            0x09 => LastAck,
            0x0A => Listen,
            0x0B => Closing,
            _ => return None,
        })
    }

    /// The wire name: the kernel's name, lower-case and kebab-case ("time-wait").
    pub fn name(self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "established",
            SynSent => "syn-sent",
            SynRecv => "syn-recv",
            FinWait1 => "fin-wait1",
            FinWait2 => "fin-wait2",
            TimeWait => "time-wait",
            Close => "close",
            CloseWait => "close-wait",
            LastAck => "last-ack",
            Listen => "listen",
            Closing => "closing",
        }
    }
}

/// One row of /proc/net/tcp or tcp6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub state: TcpState,
    pub uid: u32,
    /// 0 for sockets no process holds (TIME_WAIT, request socks).
    pub inode: u64,
}

/// The sockets of one table, in the kernel's order. The header and rows that do not
/// parse (a state newer than this code) are skipped.
pub fn parse_sockets(text: &str) -> Vec<TcpSocket> {
    text.lines().filter_map(parse_socket_line).collect()
}

/// One row: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
pub fn parse_socket_line(line: &str) -> Option<TcpSocket> {
    let mut f = line.split_whitespace();
    let slot = f.next()?;
    if !slot.ends_with(':') {
        return None;
    }
    let local = parse_endpoint(f.next()?)?;
    let remote = parse_endpoint(f.next()?)?;
    let state = TcpState::from_code(u8::from_str_radix(f.next()?, 16).ok()?)?;
    let mut f = f.skip(3); // tx_queue:rx_queue, tr:tm->when, retrnsmt
    let uid = f.next()?.parse().ok()?;
    let inode = f.nth(1)?.parse().ok()?;
    Some(TcpSocket {
        local,
        remote,
        state,
        uid,
        inode,
    })
}

/// `0100007F:0CEA` or a 32-digit IPv6 address; the port is big-endian hex already.
fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let addr = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(hex_word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&hex_word(&addr[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((addr, port))
}

/// The kernel prints each 32-bit word of a network-order address with `%08X`, i.e. as
/// the CPU reads those four bytes; reading the hex back the same way restores them. The
/// agent always parses its own kernel's file, so native order is the right one.
fn hex_word(hex: &str) -> Option<[u8; 4]> {
    if !hex.is_ascii() {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
}

/// Every counter of the `Tcp:` name/value line pair of /proc/net/snmp, names lower-cased,
/// in the kernel's order. The set differs by kernel (InCsumErrors since 3.10), so it
/// is passed through rather than fixed.
pub fn parse_snmp_tcp(text: &str) -> Result<Vec<(String, i64)>, Error> {
    let mut lines = text.lines().filter_map(|l| l.strip_prefix("Tcp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Err(Error::Failed("no Tcp lines in /proc/net/snmp".into()));
    };
    let names: Vec<&str> = names.split_whitespace().collect();
    let values: Vec<&str> = values.split_whitespace().collect();
    if names.len() != values.len() {
        return Err(Error::Failed(format!(
            "/proc/net/snmp: {} Tcp names but {} values",
            names.len(),
            values.len()
        )));
    }
    names
        .iter()
        .zip(&values)
        .map(|(name, value)| {
            // MaxConn is -1 ("dynamic"); the others are unsigned but fit in i64.
            let v = value.parse::<i64>().map_err(|_| {
                Error::Failed(format!("/proc/net/snmp: Tcp {name} is not a number"))
            })?;
            Ok((name.to_ascii_lowercase(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn ipv4_row() {
        let line = "   0: 0100007F:0CEA 0A01A8C0:D431 01 00000000:00000000 02:000A7B2C 00000000  1000        0 16823 1 ffff88003d3af0c0 20 4 30 10 -1";
        let s = parse_socket_line(line).unwrap();
        assert_eq!(s.local, ("127.0.0.1".parse().unwrap(), 3306));
        assert_eq!(s.remote, ("192.168.1.10".parse().unwrap(), 54321));
        assert_eq!(s.state, TcpState::Established);
        assert_eq!((s.uid, s.inode), (1000, 16823));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn ipv6_words_are_native_order() {
        // fe80::5054:ff:fe12:3456 and ::ffff:10.0.0.5 as an x86 kernel prints them.
        let line = "   1: 000080FE00000000FF005450563412FE:0016 0000000000000000FFFF00000500000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 2211 1 0000000000000000 20 4 0 10 -1";
        let s = parse_socket_line(line).unwrap();
        assert_eq!(
            s.local.0,
            "fe80::5054:ff:fe12:3456".parse::<IpAddr>().unwrap()
        );
        assert_eq!(s.local.1, 22);
        assert_eq!(s.remote.0.to_string(), "::ffff:10.0.0.5");
        assert_eq!(s.remote.1, 50000);
    }

    #[test]
    fn header_and_unknown_state_are_skipped() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                    \x20  0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9 1 0 100 0 0 10 0\n\
                    \x20  1: 00000000:0017 00000000:0000 0D 00000000:00000000 00:00000000 00000000     0        0 10 1 0 100 0 0 10 0\n";
        let v = parse_sockets(text);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].state, TcpState::Listen);
        assert_eq!(v[0].local.1, 22);
    }

    #[test]
    fn truncated_row_is_skipped() {
        assert!(parse_socket_line("   0: 00000000:0016 00000000:0000 0A").is_none());
        assert!(parse_socket_line("   0: 0000:0016 00000000:0000 0A 0:0 0:0 0 0 0 1").is_none());
    }

    #[test]
    fn snmp_tcp_counters_lowercased_with_signed_maxconn() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens OutSegs RetransSegs\n\
                    Tcp: 1 200 120000 -1 17 3133 7\n\
                    Udp: InDatagrams\nUdp: 5\n";
        let v = parse_snmp_tcp(text).unwrap();
        assert_eq!(v[3], ("maxconn".to_string(), -1));
        assert_eq!(v[5], ("outsegs".to_string(), 3133));
        assert_eq!(v[6], ("retranssegs".to_string(), 7));
    }

    #[test]
    fn snmp_without_tcp_or_with_ragged_lines_fails() {
        assert!(parse_snmp_tcp("Ip: a\nIp: 1\n").is_err());
        assert!(parse_snmp_tcp("Tcp: A B\nTcp: 1\n").is_err());
        assert!(parse_snmp_tcp("Tcp: A\nTcp: x\n").is_err());
    }
}
