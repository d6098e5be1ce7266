//! The transports: virtio-serial and isa-serial ports, unix-listen and vsock-listen
//! sockets. A channel opens its endpoint, says which fd to poll, accepts, reads and
//! writes; the loop in `agent` decides when.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::config::{Method, VIRTIO_PORT_NAME, VSOCK_HOST_CID};
use crate::log;
use crate::sys;

enum Listener {
    Unix { socket: UnixListener, path: PathBuf },
    Vsock(OwnedFd),
}

/// What the loop should wait for.
pub enum Wait {
    /// A listener with no client: wait for a connection.
    Accept(RawFd),
    /// A connected peer.
    Peer(RawFd),
    /// virtio-serial with no host process attached: the port reports POLLHUP and
    /// read() returns 0 until the host connects, so it must not be polled.
    HostAbsent,
}

pub enum ReadResult {
    Data(usize),
    /// Nothing to read now.
    Idle,
    /// The peer went away (client closed, host detached).
    Closed,
}

pub struct Channel {
    method: Method,
    listener: Option<Listener>,
    conn: Option<File>,
    host_absent: bool,
    /// vsock-listen: the peer CIDs accepted (config `vsock-allow-cids`).
    vsock_peers: Vec<u32>,
    /// What was opened: for virtio-serial the port found through /sys when the by-name
    /// link is missing.
    opened: String,
}

impl Channel {
    /// Opens the endpoint. `sys_root` is where /sys is looked up when the virtio-serial
    /// symlink is missing.
    pub fn open(method: Method, path: &str, sys_root: &Path) -> io::Result<Channel> {
        let mut ch = Channel {
            method,
            listener: None,
            conn: None,
            host_absent: false,
            vsock_peers: vec![VSOCK_HOST_CID],
            opened: path.to_string(),
        };
        match method {
            Method::VirtioSerial => {
                let dev = resolve_virtio_path(path, sys_root);
                let port = open_port(&dev)?;
                ch.opened = dev.display().to_string();
                sys::fd::set_async_owner(port.as_fd())?;
                ch.conn = Some(port);
            }
            Method::IsaSerial => {
                let port = open_port(Path::new(path))?;
                sys::tty::make_raw(port.as_fd())?;
                ch.conn = Some(port);
            }
            Method::UnixListen => {
                // A socket file left by a previous run would make bind fail.
                if std::fs::symlink_metadata(path).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                }) {
                    std::fs::remove_file(path)?;
                }
                let socket = UnixListener::bind(path)?;
                socket.set_nonblocking(true)?;
                ch.listener = Some(Listener::Unix {
                    socket,
                    path: PathBuf::from(path),
                });
            }
            Method::VsockListen => {
                let (cid, port) = parse_vsock_addr(path)?;
                ch.listener = Some(Listener::Vsock(sys::vsock::listen(cid, port)?));
            }
        }
        Ok(ch)
    }

    /// Sets the peer CIDs vsock-listen accepts (the host, CID 2, unless configured).
    pub fn allow_vsock_peers(mut self, cids: &[u32]) -> Channel {
        self.vsock_peers = cids.to_vec();
        self
    }

    /// The device or socket path in use.
    pub fn opened(&self) -> &str {
        &self.opened
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn wait(&self) -> Wait {
        if self.host_absent {
            return Wait::HostAbsent;
        }
        match (&self.conn, &self.listener) {
            (Some(conn), _) => Wait::Peer(conn.as_raw_fd()),
            (None, Some(Listener::Unix { socket, .. })) => Wait::Accept(socket.as_raw_fd()),
            (None, Some(Listener::Vsock(fd))) => Wait::Accept(fd.as_raw_fd()),
            (None, None) => Wait::HostAbsent,
        }
    }

    /// Accepts a waiting client, if any.
    pub fn accept(&mut self) -> io::Result<bool> {
        let conn = match &self.listener {
            Some(Listener::Unix { socket, .. }) => match socket.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(true)?;
                    File::from(OwnedFd::from(stream))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            },
            Some(Listener::Vsock(fd)) => match sys::vsock::accept(fd) {
                Ok((conn, cid)) if vsock_peer_allowed(cid, &self.vsock_peers) => File::from(conn),
                Ok((_, cid)) => {
                    // Dropping the connection closes it. A local user reaches the agent
                    // through CID 1 (vsock_loopback) or the guest's own CID.
                    log::warn(&format!("refused vsock connection from CID {cid}"));
                    return Ok(false);
                }
                // ECONNABORTED: the peer left between poll and accept.
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ECONNABORTED) =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(e),
            },
            None => return Ok(false),
        };
        self.conn = Some(conn);
        Ok(true)
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<ReadResult> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(ReadResult::Idle);
        };
        match conn.read(buf) {
            Ok(0) => {
                self.peer_gone();
                Ok(ReadResult::Closed)
            }
            Ok(n) => {
                self.host_absent = false;
                Ok(ReadResult::Data(n))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                // A port that would block has a host attached again.
                self.host_absent = false;
                Ok(ReadResult::Idle)
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) && self.listener.is_some() => {
                self.peer_gone();
                Ok(ReadResult::Closed)
            }
            // A serial line whose other end hung up (a pty master closed, a modem
            // hang-up) answers EIO; like a detached virtio host, it may come back.
            Err(e) if e.raw_os_error() == Some(libc::EIO) && self.listener.is_none() => {
                self.peer_gone();
                Ok(ReadResult::Closed)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes what the peer takes now; `Ok(0)` when it would block.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(0);
        };
        match conn.write(data) {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(e)
                if self.listener.is_some()
                    && matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)) =>
            {
                self.peer_gone();
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// True while a peer can be talked to (a client, or an attached host).
    pub fn has_peer(&self) -> bool {
        self.conn.is_some() && !self.host_absent
    }

    /// True for sockets, where a client that leaves takes its session (partial input,
    /// unsent replies) with it; false for ports, whose host may come back at any time
    /// and is announced late (virtio-serial data can arrive before the port-open event).
    pub fn session_ends_with_peer(&self) -> bool {
        self.listener.is_some()
    }

    /// The peer hung up (POLLHUP seen without reading).
    pub fn hang_up(&mut self) {
        self.peer_gone();
    }

    fn peer_gone(&mut self) {
        if self.listener.is_some() {
            self.conn = None;
        } else {
            self.host_absent = true;
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if let Some(Listener::Unix { path, .. }) = &self.listener {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn open_port(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open '{}': {e}", path.display())))
}

/// The virtio port device: the given path if it exists, else the port whose sysfs name
/// is org.qemu.guest_agent.0 (CentOS 6's udev may not create the by-name symlink).
pub fn resolve_virtio_path(path: &str, sys_root: &Path) -> PathBuf {
    let given = PathBuf::from(path);
    if given.exists() || !path.ends_with(VIRTIO_PORT_NAME) {
        return given;
    }
    find_virtio_port(sys_root).unwrap_or(given)
}

/// Scans `<sys_root>/sys/class/virtio-ports/*/name` for the agent's port.
pub fn find_virtio_port(sys_root: &Path) -> Option<PathBuf> {
    let dir = sys_root.join("sys/class/virtio-ports");
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    entries.into_iter().find_map(|e| {
        let name = crate::whole_file::read_to_string(&e.path().join("name")).ok()?;
        (name.trim_end() == VIRTIO_PORT_NAME).then(|| Path::new("/dev").join(e.file_name()))
    })
}

/// Whether a vsock peer may talk to the agent: only the configured CIDs (by default the
/// host); any other, such as a local user through vsock_loopback's CID 1, is refused.
pub fn vsock_peer_allowed(cid: u32, allowed: &[u32]) -> bool {
    allowed.contains(&cid)
}

/// "CID:PORT" as qemu-ga writes vsock addresses.
pub fn parse_vsock_addr(addr: &str) -> io::Result<(u32, u32)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid vsock address '{addr}' (expected CID:PORT)"),
        )
    };
    let (cid, port) = addr.split_once(':').ok_or_else(bad)?;
    Ok((
        cid.parse().map_err(|_| bad())?,
        port.parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsock_peers_other_than_the_host_are_refused() {
        let default = crate::config::Config::default().vsock_allow_cids;
        assert!(vsock_peer_allowed(2, &default));
        for cid in [0, 1, 3, u32::MAX] {
            assert!(!vsock_peer_allowed(cid, &default), "CID {cid}");
        }
        assert!(vsock_peer_allowed(3, &[2, 3]));
    }

    #[test]
    fn vsock_addresses() {
        assert_eq!(parse_vsock_addr("3:1234").unwrap(), (3, 1234));
        assert!(parse_vsock_addr("3").is_err());
        assert!(parse_vsock_addr("x:1").is_err());
    }

    #[test]
    fn virtio_port_found_by_sysfs_name() {
        let root = std::env::temp_dir().join(format!("qga-vport-{}", std::process::id()));
        for (port, name) in [
            ("vport0p1", "com.redhat.spice.0"),
            ("vport0p2", VIRTIO_PORT_NAME),
        ] {
            let d = root.join("sys/class/virtio-ports").join(port);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(
            find_virtio_port(&root),
            Some(PathBuf::from("/dev/vport0p2"))
        );
        let missing = "/nonexistent/virtio-ports/org.qemu.guest_agent.0";
        assert_eq!(
            resolve_virtio_path(missing, &root),
            PathBuf::from("/dev/vport0p2")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
