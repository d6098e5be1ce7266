//! The agent: one blocking, single-threaded ppoll(2) loop over the channel. Input is
//! framed and dispatched only while the output buffer is small, so a host that sends
//! but never reads cannot grow the agent's memory; output waits for POLLOUT.

use std::io;
use std::time::Duration;

use crate::channel::{Channel, ReadResult, Wait};
use crate::config::Method;
use crate::ctx::Ctx;
use crate::log;
use crate::protocol::dispatch;
use crate::protocol::framer::Framer;
use crate::sys::poll::{self, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};
use crate::sys::signal;

/// Bytes read from the channel at once.
const READ_CHUNK: usize = 64 * 1024;
/// Above this much pending output no further request is processed.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// How often a detached virtio-serial port is re-checked when no SIGIO arrives:
/// at most one wake-up per second (qemu-ga sleeps 100 ms, ten per second).
const HOST_ABSENT_RECHECK: Duration = Duration::from_secs(1);
/// How often `--retry-path` tries to reopen a channel that went away.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

pub struct Agent {
    pub ctx: Ctx,
    channel: Option<Channel>,
    method: Method,
    path: String,
    framer: Framer,
    /// Read buffer, allocated once; `input[consumed..filled]` is not yet framed.
    input: Box<[u8]>,
    filled: usize,
    consumed: usize,
    output: Vec<u8>,
}

impl Agent {
    /// Opens the channel. With `retry-path`, a channel that cannot be opened yet is
    /// retried from the loop instead of failing start-up.
    pub fn new(ctx: Ctx, method: Method, path: String) -> io::Result<Agent> {
        let mut agent = Agent {
            ctx,
            channel: None,
            method,
            path,
            framer: Framer::default(),
            input: vec![0; READ_CHUNK].into_boxed_slice(),
            filled: 0,
            consumed: 0,
            output: Vec::new(),
        };
        if let Err(e) = agent.reopen() {
            if !agent.ctx.config.retry_path {
                return Err(e);
            }
            log::warn(&format!("channel not available, will retry: {e}"));
        }
        Ok(agent)
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.channel = None;
        self.reset_session();
        let channel = Channel::open(self.method, &self.path, &self.ctx.root)?;
        self.channel = Some(channel.allow_vsock_peers(&self.ctx.config.vsock_allow_cids));
        Ok(())
    }

    /// Forgets a partial request and unsent replies (a new client or host session).
    fn reset_session(&mut self) {
        self.framer.reset();
        self.filled = 0;
        self.consumed = 0;
        self.output.clear();
    }

    /// Serves until SIGTERM/SIGINT; returns an error if the channel fails for good.
    pub fn run(&mut self) -> io::Result<()> {
        while !signal::terminate_requested() {
            if let Err(e) = self.turn() {
                if !self.ctx.config.retry_path {
                    return Err(e);
                }
                log::warn(&format!(
                    "channel error, reopening in {}s: {e}",
                    RETRY_INTERVAL.as_secs()
                ));
                self.channel = None;
                self.reset_session();
            }
        }
        Ok(())
    }

    /// One wait and the work it allows.
    fn turn(&mut self) -> io::Result<()> {
        self.process_input();
        self.flush()?;
        let Some(channel) = self.channel.as_ref() else {
            self.sleep(RETRY_INTERVAL)?;
            if !signal::terminate_requested() {
                self.reopen()?;
            }
            return Ok(());
        };
        match channel.wait() {
            Wait::HostAbsent => {
                self.sleep(HOST_ABSENT_RECHECK)?;
                signal::take_io_event();
                self.read_input()
            }
            Wait::Accept(fd) => {
                let mut fds = [poll::pollfd(fd, POLLIN)];
                if self.poll(&mut fds)? && fds[0].revents != 0 {
                    self.reset_session();
                    if let Some(ch) = self.channel.as_mut() {
                        if ch.accept()? {
                            log::debug("client connected");
                        }
                    }
                }
                Ok(())
            }
            Wait::Peer(fd) => {
                let mut events = 0;
                if self.consumed == self.filled && self.output.len() < OUTPUT_HIGH_WATER {
                    events |= POLLIN;
                }
                if !self.output.is_empty() {
                    events |= POLLOUT;
                }
                if events == 0 {
                    // Output drained while input is still pending: process it first.
                    return Ok(());
                }
                let mut fds = [poll::pollfd(fd, events)];
                if !self.poll(&mut fds)? {
                    return Ok(());
                }
                let rev = fds[0].revents;
                if rev & POLLNVAL != 0 {
                    return Err(io::Error::other("channel descriptor became invalid"));
                }
                if rev & POLLOUT != 0 {
                    self.flush()?;
                }
                if rev & (POLLIN | POLLHUP | POLLERR) != 0 && events & POLLIN != 0 {
                    self.read_input()?;
                } else if rev & (POLLHUP | POLLERR) != 0 {
                    // Hung up while only output was wanted: a reply nobody will read.
                    if let Some(ch) = self.channel.as_mut() {
                        ch.hang_up();
                    }
                    self.reset_session();
                }
                Ok(())
            }
        }
    }

    /// ppoll; false when a signal interrupted the wait.
    fn poll(&mut self, fds: &mut [poll::PollFd]) -> io::Result<bool> {
        match poll::wait(fds, None) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sleeps until `timeout` or a signal (SIGIO from a connecting host, SIGTERM).
    fn sleep(&mut self, timeout: Duration) -> io::Result<()> {
        match poll::wait(&mut [], Some(timeout)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn read_input(&mut self) -> io::Result<()> {
        let Some(channel) = self.channel.as_mut() else {
            return Ok(());
        };
        let result = channel.read(&mut self.input);
        let n = match result {
            Ok(ReadResult::Data(n)) => n,
            Ok(ReadResult::Idle) => 0,
            Ok(ReadResult::Closed) => {
                log::debug("peer disconnected");
                self.reset_session();
                0
            }
            Err(e) => {
                self.filled = 0;
                return Err(e);
            }
        };
        self.filled = n;
        self.consumed = 0;
        self.process_input();
        self.flush()
    }

    /// Frames and dispatches buffered input while output stays below the high-water mark.
    fn process_input(&mut self) {
        while self.consumed < self.filled && self.output.len() < OUTPUT_HIGH_WATER {
            let (n, frame) = self.framer.feed(&self.input[self.consumed..self.filled]);
            self.consumed += n;
            if let Some(frame) = frame {
                if let Some(bytes) = dispatch::handle(&mut self.ctx, frame) {
                    self.output.extend_from_slice(&bytes);
                }
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while !self.output.is_empty() {
            let Some(channel) = self.channel.as_mut() else {
                self.output.clear();
                return Ok(());
            };
            if !channel.has_peer() {
                // Nobody to read it; a reconnecting host starts with guest-sync anyway.
                self.output.clear();
                return Ok(());
            }
            let n = channel.write(&self.output)?;
            if n == 0 {
                if !channel.has_peer() {
                    log::debug("peer disconnected while a reply was pending");
                    self.reset_session();
                }
                return Ok(());
            }
            self.output.drain(..n);
        }
        Ok(())
    }
}
