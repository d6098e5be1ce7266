//! Interface addresses: getifaddrs(3) (netlink in both glibc and musl, so it works from
//! 2.6.32 on) and the MAC address through the SIOCGIFHWADDR ioctl, as qemu-ga does.

use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::check;

/// One getifaddrs entry: the name (an alias label such as "eth0:1" for IPv4 addresses
/// that have one) and, for IPv4 and IPv6 entries, the address and netmask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub name: String,
    pub addr: Option<IpAddr>,
    pub netmask: Option<IpAddr>,
}

/// Every entry getifaddrs returns, in its order (links first, then addresses).
pub fn getifaddrs() -> io::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success it owns a list freed below.
    check(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned and not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_name.is_null() {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
            out.push(IfAddr {
                name: name.to_string_lossy().into_owned(),
                // SAFETY: the pointers are null or point to sockaddrs of the list.
                addr: unsafe { ip_of(ifa.ifa_addr) },
                // SAFETY: as above.
                netmask: unsafe { ip_of(ifa.ifa_netmask) },
            });
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The address in a sockaddr of family AF_INET or AF_INET6.
///
/// # Safety
/// `sa` is null or points to a sockaddr whose size fits its family.
unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: non-null `sa` points to at least a sockaddr header (caller's promise).
    match i32::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in; read unaligned to be safe.
            let sin = unsafe { std::ptr::read_unaligned(sa as *const libc::sockaddr_in) };
            Some(IpAddr::V4(Ipv4Addr::from(
                sin.sin_addr.s_addr.to_ne_bytes(),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6; read unaligned to be safe.
            let sin6 = unsafe { std::ptr::read_unaligned(sa as *const libc::sockaddr_in6) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// SIOCGIFHWADDR queries, all through one socket (a socket per interface was most of
/// guest-network-get-interfaces' kernel time).
pub struct HardwareAddresses {
    sock: OwnedFd,
}

impl HardwareAddresses {
    pub fn new() -> io::Result<HardwareAddresses> {
        // SAFETY: plain socket(2) call; the result is checked and owned at once.
        let fd = check(unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: `fd` was just returned by socket and is owned by nobody else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(HardwareAddresses { sock })
    }

    /// The hardware address of interface `name`. The kernel strips an alias label
    /// itself, so "eth0:1" gives eth0's address; loopback gives all zeros.
    pub fn of(&self, name: &str) -> io::Result<[u8; 6]> {
        let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let bytes = cname.as_bytes_with_nul();
        if bytes.len() > libc::IFNAMSIZ {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        // SAFETY: an all-zero ifreq is valid (name NUL-filled, union zeroed).
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        // SAFETY: SIOCGIFHWADDR fills `req.ifr_ifru.ifru_hwaddr`; `req` lives for the
        // call and the socket is open.
        check(unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut req) })?;
        // SAFETY: after a successful SIOCGIFHWADDR the union holds ifru_hwaddr.
        let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
        let mut mac = [0u8; 6];
        for (dst, &src) in mac.iter_mut().zip(data.iter()) {
            *dst = src as u8;
        }
        Ok(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_with_its_address() {
        let all = getifaddrs().unwrap();
        assert!(all
            .iter()
            .any(|a| a.name == "lo" && a.addr == Some(IpAddr::V4(Ipv4Addr::LOCALHOST))));
    }

    #[test]
    fn loopback_hardware_address_is_zero() {
        assert_eq!(HardwareAddresses::new().unwrap().of("lo").unwrap(), [0; 6]);
    }

    #[test]
    fn unknown_interface_is_enodev() {
        let e = HardwareAddresses::new()
            .unwrap()
            .of("nosuchif0")
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    }
}
