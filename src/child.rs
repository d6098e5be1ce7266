//! The child manager: every program the agent runs (a user check's shell, chpasswd,
//! hwclock, the power helpers, getent) and every forked helper (statvfs of a network
//! filesystem). Each runs in its own process group with stdout and stderr merged into a
//! non-blocking pipe that the loop polls; output is read as it arrives and capped;
//! children are reaped by pid when SIGCHLD says one exited (never `waitpid(-1)`, which
//! would steal another caller's child); deadlines are enforced from the loop, which
//! never blocks on a child. A child killed at its deadline but not yet gone (stuck in
//! uninterruptible sleep) stays on a list and is reaped whenever it finally exits.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::sys::child as sys;
use crate::sys::fd::set_nonblocking;
use crate::sys::statvfs;

/// What a handler asks the loop to run.
pub enum Run {
    /// A program, with `input` on its stdin (/dev/null when empty), at most `cap` bytes
    /// of merged output kept, for at most `timeout`; whatever it leaves running in its
    /// process group is killed when it exits.
    Program {
        cmd: Box<Command>,
        input: Vec<u8>,
        timeout: Duration,
        cap: usize,
    },
    /// statvfs(2) of `path` in a forked child; the output is its encoded answer
    /// ([`crate::sys::statvfs::decode_answer`]).
    Statvfs { path: PathBuf, timeout: Duration },
    /// A program the host runs (guest-exec) in a session of its own: no deadline, its
    /// input fed from the loop however large, its streams captured as asked (each at
    /// most `cap`), and what it leaves running in the background left alone.
    Exec {
        cmd: Box<Command>,
        input: Vec<u8>,
        capture: Capture,
        cap: usize,
    },
}

/// Which output streams of an exec'd program are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    None,
    Stdout,
    Stderr,
    /// Both, apart.
    Separated,
    /// Both, in one stream (`output`).
    Merged,
}

impl Run {
    pub fn program(cmd: Command, input: Vec<u8>, timeout: Duration, cap: usize) -> Run {
        Run::Program {
            cmd: Box::new(cmd),
            input,
            timeout,
            cap,
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // The input may be a password line: do not leave it in freed memory.
        if let Run::Program { input, .. } = self {
            crate::sys::secret::wipe(input);
        }
    }
}

/// What a finished (or killed) child left.
#[derive(Debug, Default)]
pub struct Finished {
    /// `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Merged stdout and stderr (stdout alone for a separated exec), at most the cap.
    pub output: Vec<u8>,
    /// More output was produced than the cap kept.
    pub truncated: bool,
    /// Stderr of an exec that captures it apart (or alone).
    pub errors: Vec<u8>,
    pub errors_truncated: bool,
}

impl Finished {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// The exit code; 128 + signal number when a signal ended it (as shells report it);
    /// -1 when it timed out.
    pub fn exit_code(&self) -> i32 {
        match self.status {
            None => -1,
            Some(s) => s
                .code()
                .or_else(|| s.signal().map(|sig| 128 + sig))
                .unwrap_or(-1),
        }
    }
}

/// Identifies a started child to the code that waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChildId(u64);

impl ChildId {
    #[cfg(test)]
    pub(crate) fn for_tests(n: u32) -> ChildId {
        ChildId(n.into())
    }
}

/// Reads per pipe per turn: a child that writes without pause cannot hold the loop.
const READS_PER_TURN: usize = 16;
/// How long a child killed at its deadline may take to die before its result is given
/// without waiting for the reap.
const REAP_GRACE: Duration = Duration::from_secs(1);
/// Encoded statvfs answers are a few dozen bytes.
const STATVFS_CAP: usize = 64;

/// One output pipe and what was kept of it.
struct Stream {
    /// None once EOF was read.
    pipe: Option<File>,
    data: Vec<u8>,
    cap: usize,
    truncated: bool,
}

/// Input still to be written to a child's stdin.
struct Feed {
    pipe: File,
    data: Vec<u8>,
    written: usize,
}

impl Drop for Feed {
    fn drop(&mut self) {
        // The input may be a password line: do not leave it in freed memory.
        crate::sys::secret::wipe(&mut self.data);
    }
}

struct Running {
    id: ChildId,
    pid: u32,
    out: Option<Stream>,
    err: Option<Stream>,
    feed: Option<Feed>,
    deadline: Option<Instant>,
    /// Set when the deadline killed it: until then its result waits for the reap, so
    /// the reply never leaves a zombie behind.
    reap_by: Option<Instant>,
    /// Kill the process group once the leader exits (the agent's own helpers), and
    /// when the agent stops.
    owns_group: bool,
    status: Option<ExitStatus>,
}

/// Every child the agent is running, owned by the loop.
#[derive(Default)]
pub struct Children {
    running: Vec<Running>,
    /// Killed at their deadline, not yet reaped.
    killed: Vec<u32>,
    next_id: u64,
}

impl Children {
    /// Starts `run`; returns its id and pid. Its result comes back from
    /// [`Children::service`].
    pub fn start(&mut self, mut run: Run) -> io::Result<(ChildId, u32)> {
        let now = Instant::now();
        let mut running = match &mut run {
            Run::Program {
                cmd,
                input,
                timeout,
                cap,
            } => {
                let (pid, pipes) = spawn(cmd, Some(std::mem::take(input)), Capture::Merged, true)?;
                Running::new(pid, pipes, *cap, Some(now + *timeout), true)
            }
            Run::Statvfs { path, timeout } => {
                let (pid, out) = statvfs::start_in_child(path)?;
                let pipes = Pipes {
                    out: Some(File::from(out)),
                    ..Pipes::default()
                };
                Running::new(pid, pipes, STATVFS_CAP, Some(now + *timeout), true)
            }
            Run::Exec {
                cmd,
                input,
                capture,
                cap,
            } => {
                let (pid, pipes) = spawn(cmd, Some(std::mem::take(input)), *capture, false)?;
                Running::new(pid, pipes, *cap, None, false)
            }
        };
        running.id = ChildId(self.next_id);
        self.next_id += 1;
        let started = (running.id, running.pid);
        running.feed_input();
        self.running.push(running);
        Ok(started)
    }

    /// True while no child is running or waiting to be reaped.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.killed.is_empty()
    }

    /// How many children are running.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// The pipes to poll, with the events wanted (POLLIN for output, POLLOUT for input).
    pub fn fds(&self) -> impl Iterator<Item = (RawFd, i16)> + '_ {
        self.running.iter().flat_map(|r| {
            let reads = [&r.out, &r.err]
                .into_iter()
                .flatten()
                .filter_map(|s| s.pipe.as_ref())
                .map(|p| (p.as_raw_fd(), libc::POLLIN));
            let write = r.feed.as_ref().map(|f| (f.pipe.as_raw_fd(), libc::POLLOUT));
            reads.chain(write)
        })
    }

    /// The nearest deadline of a running child (or of the reap of a killed one).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.running
            .iter()
            .filter_map(|r| r.reap_by.or(r.deadline))
            .min()
    }

    /// Moves input and output, reaps exited children when `reap` (SIGCHLD was seen),
    /// kills those past their deadline, and returns the children that are done.
    pub fn service(&mut self, reap: bool) -> Vec<(ChildId, Finished)> {
        if reap {
            self.reap_killed();
        }
        let now = Instant::now();
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            r.feed_input();
            r.read_available();
            if reap && r.status.is_none() {
                r.status = match sys::try_wait(r.pid) {
                    Ok(s) => s.map(ExitStatus::from_raw),
                    // ECHILD: already gone; report it as killed rather than hang.
                    Err(_) => Some(ExitStatus::from_raw(libc::SIGKILL)),
                };
            }
            let finished = if r.status.is_some() {
                // The leader has exited: what it wrote is in the pipes already, so a
                // background process still holding them cannot hold the result.
                r.read_available();
                if r.owns_group {
                    // Nor can a helper leave processes behind.
                    let _ = sys::kill_group(r.pid, libc::SIGKILL);
                }
                if r.reap_by.is_some() {
                    // Killed at the deadline: timed out, whatever the status says.
                    r.status = None;
                }
                true
            } else if let Some(reap_by) = r.reap_by {
                // Not dead a while after SIGKILL (uninterruptible sleep): answer now
                // and reap it whenever it goes.
                if now >= reap_by {
                    self.killed.push(r.pid);
                }
                now >= reap_by
            } else if r.deadline.is_some_and(|d| now >= d) {
                let _ = sys::kill_group(r.pid, libc::SIGKILL);
                let _ = sys::kill(r.pid, libc::SIGKILL);
                r.reap_by = Some(now + REAP_GRACE);
                false
            } else {
                false
            };
            if finished {
                let r = self.running.swap_remove(i);
                done.push((r.id, r.finish()));
            } else {
                i += 1;
            }
        }
        done
    }

    /// Reaps the children killed earlier that have died since (ECHILD: already gone).
    fn reap_killed(&mut self) {
        self.killed
            .retain(|&pid| !matches!(sys::try_wait(pid), Ok(Some(_)) | Err(_)));
    }

    /// The agent is stopping: SIGKILLs the process group of each of its own helpers
    /// and reaps what dies within `grace` (what is left is inherited and reaped by
    /// init). Programs the host started with guest-exec are left running, as qemu-ga
    /// leaves them.
    pub fn kill_all(&mut self, grace: Duration) {
        for r in self.running.drain(..) {
            if r.owns_group {
                let _ = sys::kill_group(r.pid, libc::SIGKILL);
                let _ = sys::kill(r.pid, libc::SIGKILL);
                self.killed.push(r.pid);
            }
        }
        let until = Instant::now() + grace;
        let mut nap = Duration::from_millis(1);
        while !self.killed.is_empty() && Instant::now() < until {
            self.reap_killed();
            if self.killed.is_empty() {
                break;
            }
            let _ = crate::sys::poll::wait(&mut [], Some(nap));
            nap = (nap * 2).min(Duration::from_millis(50));
        }
    }
}

/// The agent's ends of a new child's pipes.
#[derive(Default)]
struct Pipes {
    stdin: Option<(File, Vec<u8>)>,
    out: Option<File>,
    err: Option<File>,
}

impl Running {
    fn new(
        pid: u32,
        pipes: Pipes,
        cap: usize,
        deadline: Option<Instant>,
        owns_group: bool,
    ) -> Running {
        let stream = |pipe: Option<File>| {
            pipe.map(|p| Stream {
                pipe: Some(p),
                data: Vec::new(),
                cap,
                truncated: false,
            })
        };
        Running {
            id: ChildId(0),
            pid,
            out: stream(pipes.out),
            err: stream(pipes.err),
            feed: pipes.stdin.map(|(pipe, data)| Feed {
                pipe,
                data,
                written: 0,
            }),
            deadline,
            reap_by: None,
            owns_group,
            status: None,
        }
    }

    /// Writes what the stdin pipe takes now; closes it once everything is written, or
    /// when the child stopped reading (EPIPE: its exit status will tell).
    fn feed_input(&mut self) {
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        while feed.written < feed.data.len() {
            match feed.pipe.write(&feed.data[feed.written..]) {
                Ok(n) => feed.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        // Dropping the pipe closes the child's stdin: it sees EOF.
        self.feed = None;
    }

    fn read_available(&mut self) {
        for stream in [&mut self.out, &mut self.err].into_iter().flatten() {
            stream.read_available();
        }
    }

    fn finish(self) -> Finished {
        let (output, truncated) = self
            .out
            .map_or((Vec::new(), false), |s| (s.data, s.truncated));
        let (errors, errors_truncated) = self
            .err
            .map_or((Vec::new(), false), |s| (s.data, s.truncated));
        Finished {
            status: self.status,
            output,
            truncated,
            errors,
            errors_truncated,
        }
    }
}

impl Stream {
    /// Reads without blocking, keeping what fits under the cap and dropping the rest
    /// (still reading, so the child never blocks on a full pipe).
    fn read_available(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 8192];
        for _ in 0..READS_PER_TURN {
            match pipe.read(&mut chunk) {
                Ok(0) => {
                    self.pipe = None;
                    return;
                }
                Ok(n) => {
                    let keep = n.min(self.cap.saturating_sub(self.data.len()));
                    self.data.extend_from_slice(&chunk[..keep]);
                    self.truncated |= keep < n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.pipe = None;
                    return;
                }
            }
        }
    }
}

/// Spawns `cmd` with `input` on a stdin pipe (/dev/null when empty) and the output
/// `capture` asks for on pipes (the rest to /dev/null); in its own process group, or
/// with `own_group` false in a session of its own (guest-exec, as qemu-ga). Returns its
/// pid and the agent's non-blocking ends of the pipes.
fn spawn(
    cmd: &mut Command,
    input: Option<Vec<u8>>,
    capture: Capture,
    own_group: bool,
) -> io::Result<(u32, Pipes)> {
    let input = input.filter(|i| !i.is_empty());
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut out = None;
    let mut err = None;
    match capture {
        Capture::None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        Capture::Merged => {
            let (reader, writer) = io::pipe()?;
            cmd.stdout(writer.try_clone()?).stderr(writer);
            out = Some(reader);
        }
        Capture::Stdout | Capture::Stderr | Capture::Separated => {
            let keep_out = capture != Capture::Stderr;
            let keep_err = capture != Capture::Stdout;
            if keep_out {
                let (reader, writer) = io::pipe()?;
                cmd.stdout(writer);
                out = Some(reader);
            } else {
                cmd.stdout(Stdio::null());
            }
            if keep_err {
                let (reader, writer) = io::pipe()?;
                cmd.stderr(writer);
                err = Some(reader);
            } else {
                cmd.stderr(Stdio::null());
            }
        }
    }
    if own_group {
        cmd.process_group(0);
    }
    sys::clean_start(cmd, !own_group);
    let spawned = cmd.spawn();
    // The Command holds the pipes' write ends until its stdio is replaced; without that
    // EOF could never arrive.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = spawned?;
    let pid = child.id();
    let to_file = |r: io::PipeReader| -> io::Result<File> {
        let f = File::from(OwnedFd::from(r));
        set_nonblocking(f.as_fd())?;
        Ok(f)
    };
    let pipes = (|| -> io::Result<Pipes> {
        let stdin = match (child.stdin.take(), input) {
            (Some(w), Some(data)) => {
                let f = File::from(OwnedFd::from(w));
                set_nonblocking(f.as_fd())?;
                Some((f, data))
            }
            _ => None,
        };
        Ok(Pipes {
            stdin,
            out: out.map(to_file).transpose()?,
            err: err.map(to_file).transpose()?,
        })
    })();
    match pipes {
        // `child` is dropped without waiting: the manager reaps it by pid.
        Ok(pipes) => Ok((pid, pipes)),
        Err(e) => {
            let _ = sys::kill_group(pid, libc::SIGKILL);
            Err(e)
        }
    }
}

/// Runs `run` to its end without the agent loop, for code that has no loop to hand it
/// to (unit tests of handlers).
pub fn run_blocking(run: Run) -> io::Result<Finished> {
    let mut children = Children::default();
    let (id, _) = children.start(run)?;
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        for (done_id, finished) in children.service(true) {
            if done_id == id {
                children.kill_all(Duration::from_millis(100));
                return Ok(finished);
            }
        }
        fds.clear();
        fds.extend(
            children
                .fds()
                .map(|(fd, ev)| crate::sys::poll::pollfd(fd, ev)),
        );
        let left = children
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        // Without SIGCHLD handling here, look at the child at least every 10 ms.
        let wait = left.map_or(Duration::from_millis(10), |l| {
            l.min(Duration::from_millis(10))
        });
        let _ = crate::sys::poll::wait(&mut fds, Some(wait));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, input: &[u8], timeout: Duration, cap: usize) -> Finished {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        run_blocking(Run::program(c, input.to_vec(), timeout, cap)).unwrap()
    }

    #[test]
    fn captures_stdout_and_stderr_in_order() {
        let f = sh(
            "echo out; echo err >&2; exit 3",
            b"",
            Duration::from_secs(10),
            1024,
        );
        assert_eq!(f.output, b"out\nerr\n");
        assert_eq!(f.exit_code(), 3);
        assert!(!f.timed_out() && !f.truncated);
    }

    #[test]
    fn input_goes_to_stdin() {
        let f = sh("cat", b"secret\n", Duration::from_secs(10), 1024);
        assert_eq!(f.output, b"secret\n");
    }

    #[test]
    fn output_is_capped_but_drained() {
        let f = sh(
            "head -c 100000 /dev/zero",
            b"",
            Duration::from_secs(10),
            1000,
        );
        assert_eq!(f.output.len(), 1000);
        assert!(f.truncated);
        assert_eq!(f.exit_code(), 0);
    }

    #[test]
    fn deadline_kills_the_group() {
        let f = sh(
            "sleep 30 & sleep 30; echo never",
            b"",
            Duration::from_millis(200),
            1024,
        );
        assert!(f.timed_out());
        assert_eq!(f.exit_code(), -1);
        assert!(f.output.is_empty());
    }

    #[test]
    fn background_child_holding_the_pipe_does_not_delay_the_result() {
        let f = sh("sleep 30 & echo done", b"", Duration::from_secs(20), 1024);
        assert!(!f.timed_out());
        assert_eq!(f.output, b"done\n");
    }

    #[test]
    fn killed_by_signal_reports_128_plus_signal() {
        let f = sh("kill -9 $$", b"", Duration::from_secs(10), 1024);
        assert_eq!(f.exit_code(), 137);
    }

    #[test]
    fn statvfs_in_a_child_matches_direct() {
        let direct = statvfs::statvfs(std::path::Path::new("/")).unwrap();
        let f = run_blocking(Run::Statvfs {
            path: "/".into(),
            timeout: Duration::from_secs(10),
        })
        .unwrap();
        // Free counts move while other processes write; the geometry does not.
        let answer = statvfs::decode_answer(&f.output).unwrap();
        assert_eq!(
            (answer.frsize, answer.blocks),
            (direct.frsize, direct.blocks)
        );
        let f = run_blocking(Run::Statvfs {
            path: "/nonexistent/qga".into(),
            timeout: Duration::from_secs(10),
        })
        .unwrap();
        let e = statvfs::decode_answer(&f.output).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn the_loop_never_waits_for_a_child_past_its_deadline() {
        // Stands in for statvfs on a dead NFS server: the child never answers, and
        // service() returns at once every time; the deadline ends it.
        let mut children = Children::default();
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg("sleep 300");
        let (id, _) = children
            .start(Run::program(c, Vec::new(), Duration::from_millis(100), 0))
            .unwrap();
        assert!(children.service(true).is_empty());
        let _ = crate::sys::poll::wait(&mut [], Some(Duration::from_millis(150)));
        // The deadline kills it; the result follows its reap, without blocking.
        let mut done = children.service(true);
        let until = Instant::now() + Duration::from_secs(5);
        while done.is_empty() && Instant::now() < until {
            let _ = crate::sys::poll::wait(&mut [], Some(Duration::from_millis(5)));
            done = children.service(true);
        }
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, id);
        assert!(done[0].1.timed_out());
        children.kill_all(Duration::from_secs(5));
        assert!(children.is_empty(), "the killed child was reaped");
    }
}
