//! The BC-Linux TCP monitoring commands VMAnalyzer polls: bc-guest-get-tcp-snmp,
//! guest-get-tcp-conn-state, guest-get-tcp-conn. Reads /proc/net/{snmp,tcp,tcp6}.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

use serde::Serialize;

use super::NoArgs;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::proc::tcp::{parse_snmp_tcp, parse_sockets, TcpSocket, TcpState};

/// At most this many rows in a guest-get-tcp-conn reply (~170 bytes each), so a busy
/// server's reply stays far below libvirt's 10 MiB limit.
pub const MAX_CONNECTIONS: usize = 4096;

/// bc-guest-get-tcp-snmp: `{"retranssegs": 12, "outsegs": 3133, ...}`. VMAnalyzer
/// `int()`s retranssegs and outsegs, so the counters are JSON integers.
pub fn get_tcp_snmp(ctx: &Ctx, _: NoArgs) -> Result<BTreeMap<String, i64>, Error> {
    Ok(parse_snmp_tcp(&ctx.read("proc/net/snmp")?)?
        .into_iter()
        .collect())
}

/// Sockets per state over IPv4 and IPv6.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct TcpConnState {
    pub established: u64,
    pub syn_sent: u64,
    pub syn_recv: u64,
    pub fin_wait1: u64,
    pub fin_wait2: u64,
    pub time_wait: u64,
    pub close: u64,
    pub close_wait: u64,
    pub last_ack: u64,
    pub listen: u64,
    pub closing: u64,
    pub total: u64,
}

impl TcpConnState {
    fn count(&mut self, state: TcpState) {
        use TcpState::*;
        let n = match state {
            Established => &mut self.established,
            SynSent => &mut self.syn_sent,
            SynRecv => &mut self.syn_recv,
            FinWait1 => &mut self.fin_wait1,
            FinWait2 => &mut self.fin_wait2,
            TimeWait => &mut self.time_wait,
            Close => &mut self.close,
            CloseWait => &mut self.close_wait,
            LastAck => &mut self.last_ack,
            Listen => &mut self.listen,
            Closing => &mut self.closing,
        };
        *n += 1;
        self.total += 1;
    }
}

pub fn get_tcp_conn_state(ctx: &Ctx, _: NoArgs) -> Result<TcpConnState, Error> {
    let mut counts = TcpConnState::default();
    for socket in read_sockets(ctx)? {
        counts.count(socket.state);
    }
    Ok(counts)
}

/// guest-get-tcp-conn: the first `MAX_CONNECTIONS` sockets, IPv4 first.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct TcpConnections {
    pub connections: Vec<TcpConnection>,
    /// Sockets in the tables, listed or not.
    pub total: usize,
    pub truncated: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct TcpConnection {
    /// "ipv4" or "ipv6"; a v4-mapped socket of tcp6 is "ipv6".
    pub family: &'static str,
    pub local_address: String,
    pub local_port: u16,
    pub remote_address: String,
    pub remote_port: u16,
    pub state: &'static str,
    pub uid: u32,
    pub inode: u64,
}

impl From<&TcpSocket> for TcpConnection {
    fn from(s: &TcpSocket) -> TcpConnection {
        TcpConnection {
            family: match s.local.0 {
                IpAddr::V4(_) => "ipv4",
                IpAddr::V6(_) => "ipv6",
            },
            local_address: s.local.0.to_string(),
            local_port: s.local.1,
            remote_address: s.remote.0.to_string(),
            remote_port: s.remote.1,
            state: s.state.name(),
            uid: s.uid,
            inode: s.inode,
        }
    }
}

pub fn get_tcp_conn(ctx: &Ctx, _: NoArgs) -> Result<TcpConnections, Error> {
    Ok(list_connections(&read_sockets(ctx)?, MAX_CONNECTIONS))
}

fn list_connections(sockets: &[TcpSocket], cap: usize) -> TcpConnections {
    TcpConnections {
        connections: sockets.iter().take(cap).map(TcpConnection::from).collect(),
        total: sockets.len(),
        truncated: sockets.len() > cap,
    }
}

/// Both tables. tcp6 is absent when IPv6 is disabled or not built (CentOS 6 with
/// `ipv6.disable=1` or the module blacklisted), which just means no IPv6 sockets.
fn read_sockets(ctx: &Ctx) -> Result<Vec<TcpSocket>, Error> {
    let mut sockets = parse_sockets(&ctx.read("proc/net/tcp")?);
    match ctx.read("proc/net/tcp6") {
        Ok(text) => sockets.extend(parse_sockets(&text)),
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn socket(port: u16) -> TcpSocket {
        let a = IpAddr::V4(Ipv4Addr::LOCALHOST);
        TcpSocket {
            local: (a, port),
            remote: (a, 0),
            state: TcpState::Listen,
            uid: 0,
            inode: 1,
        }
    }

    #[test]
    fn list_is_capped_and_flagged() {
        let sockets: Vec<_> = (1..=5).map(socket).collect();
        let l = list_connections(&sockets, 3);
        assert_eq!(l.connections.len(), 3);
        assert_eq!(l.total, 5);
        assert!(l.truncated);
        assert_eq!(l.connections[2].local_port, 3);
        let l = list_connections(&sockets, 5);
        assert!(!l.truncated);
    }

    #[test]
    fn counts_every_state_and_the_total() {
        let mut c = TcpConnState::default();
        c.count(TcpState::TimeWait);
        c.count(TcpState::TimeWait);
        c.count(TcpState::FinWait1);
        assert_eq!((c.time_wait, c.fin_wait1, c.total), (2, 1, 3));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["fin-wait1"], 1);
        assert_eq!(v["time-wait"], 2);
    }
}
