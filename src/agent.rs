//! The agent: one blocking, single-threaded ppoll(2) loop. Each turn waits on a set
//! built from the current state: the channel (or its listening socket), the output
//! pipes of running children, the nearest deadline and the signals (SIGTERM, SIGIO
//! from the port, SIGCHLD), which are unblocked only inside ppoll. Input is framed and
//! dispatched only while the output buffer is small and no request waits for a child,
//! so a host that sends but never reads cannot grow the agent's memory and replies
//! stay in request order; output waits for POLLOUT.

use std::io;
use std::time::{Duration, Instant};

use crate::channel::{Channel, ReadResult, Wait};
use crate::child::ChildId;
use crate::commands::fsfreeze;
use crate::config::Method;
use crate::ctx::{Ctx, Session};
use crate::log;
use crate::protocol::dispatch::{self, Outcome, Waiting};
use crate::protocol::framer::Framer;
use crate::sys::poll::{self, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};
use crate::sys::{alloc, signal};

/// Bytes read from the channel at once.
const READ_CHUNK: usize = 64 * 1024;
/// Above this much pending output no further request is processed until it is written.
/// Small: a host that writes many requests ahead gets its replies a few kilobytes at a
/// time (still hundreds of small replies a write), and the queue never grows through
/// the larger sizes, whose blocks the allocator would then keep (sys::alloc).
const OUTPUT_HIGH_WATER: usize = 16 * 1024;
/// How often a detached virtio-serial port is re-checked when no SIGIO arrives:
/// at most one wake-up per second (qemu-ga sleeps 100 ms, ten per second).
const HOST_ABSENT_RECHECK: Duration = Duration::from_secs(1);
/// How often `--retry-path` tries to reopen a channel that went away.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How long a stopping agent waits for its SIGKILLed children to be reaped.
const KILL_GRACE: Duration = Duration::from_millis(500);
/// Idle this long after work, the agent gives the memory it kept for reuse back
/// (sys::alloc): one wake-up after a burst, none while nothing happens.
const TRIM_AFTER: Duration = Duration::from_secs(1);
/// While it works, the agent gives back what it kept of the sizes no request took for
/// this long (sys::alloc::age): a stream of small requests after a large reply.
const AGE_EVERY: Duration = Duration::from_millis(250);

pub struct Agent {
    pub ctx: Ctx,
    session: Session,
    /// The request whose reply waits for a child; the requests after it wait in the
    /// input buffer, so replies stay in request order.
    waiting: Option<(ChildId, Waiting)>,
    channel: Option<Channel>,
    method: Method,
    path: String,
    /// When to try to reopen a channel that is gone (`--retry-path`).
    retry_at: Instant,
    /// The channel is gone and that was logged: the retries every few seconds are not,
    /// until it is back.
    outage: bool,
    /// When the kept memory was last aged (sys::alloc::age).
    aged_at: Instant,
    framer: Framer,
    /// Read buffer, allocated once; `input[consumed..filled]` is not yet framed.
    input: Box<[u8]>,
    filled: usize,
    consumed: usize,
    output: Outbox,
}

impl Agent {
    /// Opens the channel. With `retry-path`, a channel that cannot be opened yet is
    /// retried from the loop instead of failing start-up.
    pub fn new(ctx: Ctx, method: Method, path: String) -> io::Result<Agent> {
        let mut session = Session::default();
        fsfreeze::restore(&ctx, &mut session);
        let mut agent = Agent {
            ctx,
            session,
            waiting: None,
            channel: None,
            method,
            path,
            retry_at: Instant::now(),
            outage: false,
            aged_at: Instant::now(),
            framer: Framer::default(),
            input: vec![0; READ_CHUNK].into_boxed_slice(),
            filled: 0,
            consumed: 0,
            output: Outbox::default(),
        };
        if let Err(e) = agent.reopen() {
            if !agent.ctx.config.retry_path {
                return Err(e);
            }
            log::warn(&format!(
                "channel not available, retrying every {}s: {e}",
                RETRY_INTERVAL.as_secs()
            ));
            agent.outage = true;
            agent.retry_at = Instant::now() + RETRY_INTERVAL;
        }
        Ok(agent)
    }

    /// The channel's device or socket path as opened (the configured one until then).
    pub fn channel_path(&self) -> &str {
        self.channel.as_ref().map_or(&self.path, |c| c.opened())
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.channel = None;
        self.reset_session();
        let channel = Channel::open(self.method, &self.path, &self.ctx.root)?;
        self.channel = Some(channel.allow_vsock_peers(&self.ctx.config.vsock_allow_cids));
        if std::mem::take(&mut self.outage) {
            log::warn(&format!("channel '{}' is back", self.channel_path()));
        }
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
    /// Frozen filesystems are thawed first; children still running then are killed
    /// with their process groups.
    pub fn run(&mut self) -> io::Result<()> {
        let result = loop {
            if signal::terminate_requested() {
                break Ok(());
            }
            if let Err(e) = self.turn() {
                if !self.ctx.config.retry_path {
                    break Err(e);
                }
                if !self.outage {
                    log::warn(&format!(
                        "channel error, retrying every {}s: {e}",
                        RETRY_INTERVAL.as_secs()
                    ));
                    self.outage = true;
                }
                self.channel = None;
                self.reset_session();
                self.retry_at = Instant::now() + RETRY_INTERVAL;
            }
        };
        fsfreeze::thaw_at_exit(&self.ctx, &mut self.session);
        self.session.children.kill_all(KILL_GRACE);
        result
    }

    /// One wait on everything the current state needs (the channel, the children's
    /// pipes, the nearest deadline) and the work it allows.
    fn turn(&mut self) -> io::Result<()> {
        loop {
            self.process_input();
            self.flush()?;
            // A flush that made room lets buffered requests run before any wait.
            let can_process = self.waiting.is_none()
                && self.consumed < self.filled
                && self.output.len() < OUTPUT_HIGH_WATER;
            if !can_process {
                break;
            }
        }
        let now = Instant::now();
        if now.saturating_duration_since(self.aged_at) >= AGE_EVERY {
            alloc::age();
            self.aged_at = now;
        }
        let mut fds = Vec::with_capacity(1 + 4);
        let mut timeout = None;
        // Poll events asked of the channel (fds[0] when non-zero).
        let mut channel_events = 0;
        let mut channel_fd = -1;
        let mut host_absent = false;
        match self.channel.as_ref().map(Channel::wait) {
            None => timeout = Some(self.retry_at.saturating_duration_since(now)),
            Some(Wait::HostAbsent) => {
                host_absent = true;
                timeout = Some(HOST_ABSENT_RECHECK);
            }
            // A new client would inherit the waiting reply: it waits for it first.
            Some(Wait::Accept(fd)) if self.waiting.is_none() => {
                channel_events = POLLIN;
                channel_fd = fd;
            }
            Some(Wait::Accept(_)) => {}
            Some(Wait::Peer(fd)) => {
                channel_fd = fd;
                if self.waiting.is_none()
                    && self.consumed == self.filled
                    && self.output.len() < OUTPUT_HIGH_WATER
                {
                    channel_events |= POLLIN;
                }
                if !self.output.is_empty() {
                    channel_events |= POLLOUT;
                }
            }
        }
        if channel_events != 0 {
            fds.push(poll::pollfd(channel_fd, channel_events));
        }
        fds.extend(
            self.session
                .children
                .fds()
                .map(|(fd, events)| poll::pollfd(fd, events)),
        );
        let deadlines = [
            self.session.children.next_deadline(),
            self.session.freeze_deadline,
        ];
        for deadline in deadlines.into_iter().flatten() {
            let left = deadline.saturating_duration_since(now);
            timeout = Some(timeout.map_or(left, |t: Duration| t.min(left)));
        }
        let trim = alloc::worth_trimming();
        if trim {
            timeout = Some(timeout.map_or(TRIM_AFTER, |t: Duration| t.min(TRIM_AFTER)));
        }
        match poll::wait(&mut fds, timeout) {
            Ok(0) if trim => alloc::trim(),
            Ok(_) => {}
            // A signal: SIGTERM, SIGIO from the port, SIGCHLD from a child.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if channel_events != 0 {
            self.channel_ready(channel_events, fds[0].revents)?;
        }
        if host_absent {
            // Woken by SIGIO (a host attached or sent data) or by the re-check timer.
            signal::take_io_event();
            self.read_input()?;
        }
        self.service_children();
        fsfreeze::on_timer(&self.ctx, &mut self.session);
        // Not while frozen: opening the log could write to a frozen filesystem.
        if !self.session.frozen && signal::take_hangup() {
            match log::reopen() {
                Ok(true) => log::info("log file reopened (SIGHUP)"),
                Ok(false) => {}
                Err(e) => log::warn(&format!("cannot reopen the log file (SIGHUP): {e}")),
            }
        }
        if self.channel.is_none()
            && Instant::now() >= self.retry_at
            && !signal::terminate_requested()
        {
            self.retry_at = Instant::now() + RETRY_INTERVAL;
            self.reopen()?;
        }
        Ok(())
    }

    fn channel_ready(&mut self, events: i16, rev: i16) -> io::Result<()> {
        if rev == 0 {
            return Ok(());
        }
        if rev & POLLNVAL != 0 {
            return Err(io::Error::other("channel descriptor became invalid"));
        }
        let Some(channel) = self.channel.as_mut() else {
            return Ok(());
        };
        if matches!(channel.wait(), Wait::Accept(_)) {
            self.reset_session();
            if let Some(ch) = self.channel.as_mut() {
                if ch.accept()? {
                    log::debug("client connected");
                }
            }
            return Ok(());
        }
        if rev & POLLOUT != 0 {
            self.flush()?;
        }
        if rev & (POLLIN | POLLHUP | POLLERR) != 0 && events & POLLIN != 0 {
            self.read_input()?;
        } else if rev & (POLLHUP | POLLERR) != 0 {
            // Hung up while only output was wanted.
            self.peer_gone();
        }
        Ok(())
    }

    /// The peer went away. A socket client takes its session with it; a virtio-serial
    /// host that seems gone may only not have been announced yet (its data can arrive
    /// before the port-open event), so unsent replies wait for the next attach.
    fn peer_gone(&mut self) {
        let Some(channel) = self.channel.as_mut() else {
            return;
        };
        let was_connected = channel.has_peer();
        channel.hang_up();
        if channel.session_ends_with_peer() {
            if was_connected {
                log::debug("peer disconnected");
            }
            self.reset_session();
        }
    }

    /// Reads more input once the previous read is consumed.
    fn read_input(&mut self) -> io::Result<()> {
        if self.consumed < self.filled {
            return Ok(());
        }
        let Some(channel) = self.channel.as_mut() else {
            return Ok(());
        };
        let n = match channel.read(&mut self.input) {
            Ok(ReadResult::Data(n)) => n,
            Ok(ReadResult::Idle) => 0,
            Ok(ReadResult::Closed) => {
                self.peer_gone();
                0
            }
            Err(e) => {
                self.filled = 0;
                self.consumed = 0;
                return Err(e);
            }
        };
        self.filled = n;
        self.consumed = 0;
        self.process_input();
        self.flush()
    }

    /// Frames and dispatches buffered input while output stays below the high-water
    /// mark and no request waits for a child.
    fn process_input(&mut self) {
        while self.waiting.is_none()
            && self.consumed < self.filled
            && self.output.len() < OUTPUT_HIGH_WATER
        {
            let (n, frame) = self.framer.feed(&self.input[self.consumed..self.filled]);
            self.consumed += n;
            if let Some(frame) = frame {
                let outcome = dispatch::handle(&self.ctx, &mut self.session, frame);
                self.conclude(outcome);
            }
        }
    }

    /// Queues a reply, or starts the program a command waits for.
    fn conclude(&mut self, mut outcome: Outcome) {
        loop {
            match outcome {
                Outcome::Silent => return,
                Outcome::Reply(bytes) => {
                    self.output.push(bytes);
                    return;
                }
                Outcome::Wait(run, waiting) => match self.session.children.start(run) {
                    Ok((id, _)) => {
                        self.waiting = Some((id, waiting));
                        return;
                    }
                    Err(e) => {
                        outcome = dispatch::resume(&self.ctx, &mut self.session, waiting, Err(e))
                    }
                },
            }
        }
    }

    /// Collects children's output, reaps them after SIGCHLD, enforces their deadlines,
    /// and finishes the request that waited for one.
    fn service_children(&mut self) {
        if self.session.children.is_empty() {
            return;
        }
        let reap = signal::take_child_event();
        for (id, finished) in self.session.children.service(reap) {
            match self.waiting.take() {
                Some((waited, waiting)) if waited == id => {
                    let outcome =
                        dispatch::resume(&self.ctx, &mut self.session, waiting, Ok(finished));
                    self.conclude(outcome);
                }
                other => {
                    self.waiting = other;
                    // Not waited for by a request: a guest-exec child, kept for its status.
                    self.session.execs.exited(id, finished);
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
                if channel.session_ends_with_peer() {
                    // Nobody to read it; a new client starts with guest-sync anyway.
                    self.output.clear();
                }
                return Ok(());
            }
            let n = channel.write(self.output.pending())?;
            if n == 0 {
                if !channel.has_peer() {
                    self.peer_gone();
                }
                return Ok(());
            }
            self.output.consume(n);
        }
        Ok(())
    }
}

/// What an Outbox keeps allocated once it is empty: a large reply's buffer is given
/// back rather than held for the agent's lifetime.
const OUTBOX_KEEP: usize = 64 * 1024;

/// Replies not yet written: appended at the end and written from `sent`, so a large
/// reply goes out in pieces without moving the rest of it after every write, and the
/// first reply queued is taken as it is, not copied.
#[derive(Default)]
struct Outbox {
    buf: Vec<u8>,
    sent: usize,
}

impl Outbox {
    fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, bytes: Vec<u8>) {
        if self.is_empty() {
            self.buf = bytes;
            self.sent = 0;
            return;
        }
        if self.sent >= self.buf.len() / 2 {
            // Written bytes are half the buffer or more: worth moving the rest down.
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        self.buf.extend_from_slice(&bytes);
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    fn consume(&mut self, n: usize) {
        self.sent += n;
        if self.sent >= self.buf.len() {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.sent = 0;
        self.buf.shrink_to(OUTBOX_KEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_writes_in_order_and_gives_back_large_buffers() {
        let mut o = Outbox::default();
        o.push(b"abc".to_vec());
        o.push(b"def".to_vec());
        o.consume(2);
        assert_eq!(o.pending(), b"cdef");
        o.push(b"g".to_vec());
        assert_eq!(o.pending(), b"cdefg");
        o.consume(5);
        assert!(o.is_empty());
        o.push(vec![0; 1 << 20]);
        o.consume(1 << 20);
        assert!(o.buf.capacity() <= OUTBOX_KEEP);
    }
}
