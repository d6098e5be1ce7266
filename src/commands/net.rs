//! Network: guest-network-get-interfaces (getifaddrs, SIOCGIFHWADDR, counters from
//! /proc/net/dev) and guest-network-get-route (/proc/net/route, /proc/net/ipv6_route).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::IpAddr;

use serde::Serialize;

use super::NoArgs;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::proc::net::{self as procnet, InterfaceStats, Ipv4Route, Ipv6Route};
use crate::sys::ifaddrs::{self, IfAddr};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NetworkInterface {
    pub name: String,
    /// Lower-case colon hex; absent when SIOCGIFHWADDR fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_addresses: Option<Vec<IpAddress>>,
    /// Only for interfaces with an address, as in qemu-ga (since 2.11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<InterfaceStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpAddressType {
    Ipv4,
    Ipv6,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct IpAddress {
    pub ip_address: String,
    pub ip_address_type: IpAddressType,
    pub prefix: i64,
}

pub fn get_interfaces(ctx: &Ctx, _: NoArgs) -> Result<Vec<NetworkInterface>, Error> {
    let addrs = ifaddrs::getifaddrs().map_err(|e| Error::io("getifaddrs failed", e))?;
    // qemu-ga leaves statistics out when /proc/net/dev cannot be read.
    let stats = ctx
        .read("proc/net/dev")
        .map(|text| procnet::parse_net_dev(&text))
        .unwrap_or_default();
    let hw = ifaddrs::HardwareAddresses::new().ok();
    Ok(build_interfaces(
        &addrs,
        |name| hw.as_ref()?.of(name).ok(),
        &stats,
    ))
}

/// Groups getifaddrs entries by name, in first-seen order (links first, so kernel
/// order). An IPv4 alias label ("eth0:1") is its own entry, as in qemu-ga; libvirt
/// merges those itself.
pub fn build_interfaces(
    addrs: &[IfAddr],
    mut hardware_address: impl FnMut(&str) -> Option<[u8; 6]>,
    stats: &HashMap<String, InterfaceStats>,
) -> Vec<NetworkInterface> {
    let mut out: Vec<NetworkInterface> = Vec::new();
    let mut asked: HashSet<String> = HashSet::new();
    for a in addrs {
        let i = match out.iter().position(|n| n.name == a.name) {
            Some(i) => i,
            None => {
                out.push(NetworkInterface {
                    name: a.name.clone(),
                    hardware_address: None,
                    ip_addresses: None,
                    statistics: None,
                });
                out.len() - 1
            }
        };
        let iface = &mut out[i];
        if asked.insert(a.name.clone()) {
            iface.hardware_address = hardware_address(&a.name).map(format_mac);
        }
        let Some(ip) = a.addr else { continue };
        let (ip_address_type, prefix) = match ip {
            IpAddr::V4(_) => (IpAddressType::Ipv4, prefix_len(a.netmask)),
            IpAddr::V6(_) => (IpAddressType::Ipv6, prefix_len(a.netmask)),
        };
        iface
            .ip_addresses
            .get_or_insert_with(Vec::new)
            .push(IpAddress {
                ip_address: ip.to_string(),
                ip_address_type,
                prefix,
            });
        if iface.statistics.is_none() {
            iface.statistics = stats.get(&a.name).cloned();
        }
    }
    out
}

/// Set bits of the netmask (a netmask has no holes); 0 without one.
fn prefix_len(netmask: Option<IpAddr>) -> i64 {
    let ones = match netmask {
        Some(IpAddr::V4(m)) => u32::from(m).count_ones(),
        Some(IpAddr::V6(m)) => u128::from(m).count_ones(),
        None => 0,
    };
    i64::from(ones)
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One route; IPv4 routes fill gateway, mask, irtt, window and mtu, IPv6 routes the
/// prefix lengths, source and nexthop (qemu-ga 9.1 shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NetworkRoute {
    pub iface: String,
    pub destination: String,
    pub metric: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irtt: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refcnt: Option<i64>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desprefixlen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srcprefixlen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nexthop: Option<String>,
    pub version: i64,
}

impl From<Ipv4Route> for NetworkRoute {
    fn from(r: Ipv4Route) -> Self {
        NetworkRoute {
            iface: r.iface,
            destination: r.destination.to_string(),
            metric: r.metric.into(),
            gateway: Some(r.gateway.to_string()),
            mask: Some(r.mask.to_string()),
            irtt: Some(r.irtt.into()),
            flags: Some(r.flags.into()),
            refcnt: Some(r.refcnt.into()),
            use_count: Some(r.use_count.into()),
            window: Some(r.window.into()),
            mtu: Some(r.mtu.into()),
            desprefixlen: None,
            source: None,
            srcprefixlen: None,
            nexthop: None,
            version: 4,
        }
    }
}

impl From<Ipv6Route> for NetworkRoute {
    fn from(r: Ipv6Route) -> Self {
        NetworkRoute {
            iface: r.iface,
            destination: r.destination.to_string(),
            metric: r.metric.into(),
            gateway: None,
            mask: None,
            irtt: None,
            flags: Some(r.flags.into()),
            refcnt: Some(r.refcnt.into()),
            use_count: Some(r.use_count.into()),
            window: None,
            mtu: None,
            desprefixlen: Some(r.dest_prefix_len.to_string()),
            source: Some(r.source.to_string()),
            srcprefixlen: Some(r.source_prefix_len.to_string()),
            nexthop: Some(r.next_hop.to_string()),
            version: 6,
        }
    }
}

/// IPv4 routes, then IPv6 routes. A kernel without IPv6 has no ipv6_route; unlike
/// qemu-ga (which then fails the whole command) the IPv4 routes are still returned.
pub fn get_route(ctx: &Ctx, _: NoArgs) -> Result<Vec<NetworkRoute>, Error> {
    let v4 = read_proc(ctx, "proc/net/route")?.unwrap_or_default();
    let v6 = read_proc(ctx, "proc/net/ipv6_route")?;
    let mut routes: Vec<NetworkRoute> = procnet::parse_route(&v4)
        .into_iter()
        .map(NetworkRoute::from)
        .collect();
    if let Some(v6) = v6 {
        routes.extend(
            procnet::parse_ipv6_route(&v6)
                .into_iter()
                .map(NetworkRoute::from),
        );
    }
    Ok(routes)
}

/// A /proc file's text; None for the IPv6 file when the kernel has no IPv6.
fn read_proc(ctx: &Ctx, rel: &str) -> Result<Option<String>, Error> {
    match crate::whole_file::read(&ctx.path(rel)) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound && rel.ends_with("ipv6_route") => Ok(None),
        Err(e) => Err(Error::io(format!("open(\"/{rel}\")"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn entry(name: &str, addr: Option<IpAddr>, mask: Option<IpAddr>) -> IfAddr {
        IfAddr {
            name: name.into(),
            addr,
            netmask: mask,
        }
    }

    fn v4(s: &str) -> Option<IpAddr> {
        Some(IpAddr::V4(s.parse::<Ipv4Addr>().unwrap()))
    }

    fn v6(s: &str) -> Option<IpAddr> {
        Some(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()))
    }

    #[test]
    fn interfaces_group_by_name_with_alias_labels_separate() {
        let addrs = [
            entry("lo", None, None),
            entry("eth0", None, None),
            entry("dummy0", None, None),
            entry("lo", v4("127.0.0.1"), v4("255.0.0.0")),
            entry("eth0", v4("192.168.1.10"), v4("255.255.255.0")),
            entry("eth0:1", v4("10.0.0.5"), v4("255.255.0.0")),
            entry(
                "lo",
                v6("::1"),
                v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ),
            entry(
                "eth0",
                v6("fe80::5054:ff:fe12:3456"),
                v6("ffff:ffff:ffff:ffff::"),
            ),
        ];
        let mut stats = HashMap::new();
        let s = InterfaceStats {
            rx_bytes: 1,
            ..InterfaceStats::default()
        };
        stats.insert("eth0".to_string(), s.clone());
        let mut asked = Vec::new();
        let ifs = build_interfaces(
            &addrs,
            |n| {
                asked.push(n.to_string());
                match n {
                    "lo" => Some([0; 6]),
                    "eth0" | "eth0:1" => Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
                    _ => None,
                }
            },
            &stats,
        );
        assert_eq!(asked, ["lo", "eth0", "dummy0", "eth0:1"]);
        let names: Vec<_> = ifs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0", "dummy0", "eth0:1"]);
        assert_eq!(
            ifs[0].hardware_address.as_deref(),
            Some("00:00:00:00:00:00")
        );
        assert_eq!(
            ifs[1].hardware_address.as_deref(),
            Some("52:54:00:12:34:56")
        );
        assert_eq!(ifs[2].hardware_address, None);
        assert_eq!(ifs[2].ip_addresses, None);
        assert_eq!(ifs[2].statistics, None);
        let eth0 = ifs[1].ip_addresses.as_ref().unwrap();
        assert_eq!(
            eth0,
            &vec![
                IpAddress {
                    ip_address: "192.168.1.10".into(),
                    ip_address_type: IpAddressType::Ipv4,
                    prefix: 24
                },
                IpAddress {
                    ip_address: "fe80::5054:ff:fe12:3456".into(),
                    ip_address_type: IpAddressType::Ipv6,
                    prefix: 64
                },
            ]
        );
        assert_eq!(ifs[1].statistics, Some(s));
        // Aliases have no line in /proc/net/dev, so no statistics (as upstream).
        assert_eq!(ifs[3].statistics, None);
        assert_eq!(ifs[3].ip_addresses.as_ref().unwrap()[0].prefix, 16);
        assert_eq!(ifs[0].ip_addresses.as_ref().unwrap()[1].prefix, 128);
    }

    #[test]
    fn interface_serializes_with_wire_names() {
        let i = NetworkInterface {
            name: "eth0".into(),
            hardware_address: Some("52:54:00:12:34:56".into()),
            ip_addresses: Some(vec![IpAddress {
                ip_address: "10.0.0.1".into(),
                ip_address_type: IpAddressType::Ipv4,
                prefix: 8,
            }]),
            statistics: None,
        };
        assert_eq!(
            serde_json::to_string(&i).unwrap(),
            r#"{"name":"eth0","hardware-address":"52:54:00:12:34:56","ip-addresses":[{"ip-address":"10.0.0.1","ip-address-type":"ipv4","prefix":8}]}"#
        );
    }
}
