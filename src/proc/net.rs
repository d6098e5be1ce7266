//! /proc/net parsers: per-interface counters (/proc/net/dev) and the routing tables
//! (/proc/net/route, /proc/net/ipv6_route). Pure text in, structs out; the formats are
//! unchanged from 2.6.32 to 6.x.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// The counters qemu-ga reports for an interface (since 2.11).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct InterfaceStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_dropped: u64,
}

/// /proc/net/dev by interface name. The name ends at the first ':' (2.6.32 prints
/// "eth0:123" without a space once the byte counter is wide); lines without the 16
/// counters are skipped.
pub fn parse_net_dev(text: &str) -> HashMap<String, InterfaceStats> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let nums: Vec<u64> = rest
            .split_whitespace()
            .map_while(|w| w.parse().ok())
            .collect();
        if nums.len() < 16 {
            continue;
        }
        out.insert(
            name.trim().to_string(),
            InterfaceStats {
                rx_bytes: nums[0],
                rx_packets: nums[1],
                rx_errs: nums[2],
                rx_dropped: nums[3],
                tx_bytes: nums[8],
                tx_packets: nums[9],
                tx_errs: nums[10],
                tx_dropped: nums[11],
            },
        );
    }
    out
}

/// One line of /proc/net/route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Route {
    pub iface: String,
    pub destination: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub flags: u32,
    pub refcnt: i32,
    pub use_count: i32,
    pub metric: i32,
    pub mask: Ipv4Addr,
    pub mtu: i32,
    pub window: i32,
    pub irtt: i32,
}

/// /proc/net/route after its header line. Addresses are the kernel's __be32 printed as
/// a native integer, so the native byte order of the parsed value is network order.
pub fn parse_route(text: &str) -> Vec<Ipv4Route> {
    text.lines().skip(1).filter_map(parse_route_line).collect()
}

fn parse_route_line(line: &str) -> Option<Ipv4Route> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 11 {
        return None;
    }
    let addr = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
    };
    Some(Ipv4Route {
        iface: f[0].to_string(),
        destination: addr(f[1])?,
        gateway: addr(f[2])?,
        flags: u32::from_str_radix(f[3], 16).ok()?,
        refcnt: f[4].parse().ok()?,
        use_count: f[5].parse().ok()?,
        metric: f[6].parse().ok()?,
        mask: addr(f[7])?,
        mtu: f[8].parse().ok()?,
        window: f[9].parse().ok()?,
        irtt: f[10].parse().ok()?,
    })
}

/// One line of /proc/net/ipv6_route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Route {
    pub destination: Ipv6Addr,
    pub dest_prefix_len: u32,
    pub source: Ipv6Addr,
    pub source_prefix_len: u32,
    pub next_hop: Ipv6Addr,
    /// Printed in hex; qemu-ga reads it into a C int, so 0xffffffff is -1.
    pub metric: i32,
    pub refcnt: i32,
    pub use_count: i32,
    pub flags: u32,
    pub iface: String,
}

/// /proc/net/ipv6_route (no header): every number in hex.
pub fn parse_ipv6_route(text: &str) -> Vec<Ipv6Route> {
    text.lines().filter_map(parse_ipv6_route_line).collect()
}

fn parse_ipv6_route_line(line: &str) -> Option<Ipv6Route> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    let hex32 = |s: &str| u32::from_str_radix(s, 16).ok();
    Some(Ipv6Route {
        destination: ipv6_hex(f[0])?,
        dest_prefix_len: hex32(f[1])?,
        source: ipv6_hex(f[2])?,
        source_prefix_len: hex32(f[3])?,
        next_hop: ipv6_hex(f[4])?,
        metric: hex32(f[5])? as i32,
        refcnt: hex32(f[6])? as i32,
        use_count: hex32(f[7])? as i32,
        flags: hex32(f[8])?,
        iface: f[9].to_string(),
    })
}

/// 32 hex digits, most significant first.
fn ipv6_hex(s: &str) -> Option<Ipv6Addr> {
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_with_glued_counter_and_headers() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:  123 4 0 0 0 0 0 0 123 4 0 0 0 0 0 0\n  \
eth0:4294967296123 5 1 2 0 0 0 0 77 8 3 4 0 0 0 0\n";
        let m = parse_net_dev(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m["lo"].rx_bytes, 123);
        let e = &m["eth0"];
        assert_eq!(
            (e.rx_bytes, e.rx_packets, e.rx_errs, e.rx_dropped),
            (4_294_967_296_123, 5, 1, 2)
        );
        assert_eq!(
            (e.tx_bytes, e.tx_packets, e.tx_errs, e.tx_dropped),
            (77, 8, 3, 4)
        );
    }

    #[test]
    fn route_hex_is_network_order_in_memory() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
garbage line\n";
        let r = parse_route(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].gateway, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(r[0].flags, 3);
        assert_eq!(r[0].metric, 100);
        assert_eq!(r[1].destination, Ipv4Addr::new(192, 168, 1, 0));
        assert_eq!(r[1].mask, Ipv4Addr::new(255, 255, 255, 0));
    }

    #[test]
    fn ipv6_route_metric_wraps_like_a_c_int() {
        let text = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        let r = parse_ipv6_route(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].destination, "fe80::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(r[0].dest_prefix_len, 64);
        assert_eq!(r[0].metric, 256);
        assert_eq!(r[0].iface, "eth0");
        assert_eq!(r[1].metric, -1);
        assert_eq!(r[1].flags, 0x0020_0200);
    }
}
