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
    /// of merged output kept, for at most `timeout`.
    Program {
        cmd: Box<Command>,
        input: Vec<u8>,
        timeout: Duration,
        cap: usize,
    },
    /// statvfs(2) of `path` in a forked child; the output is its encoded answer
    /// ([`crate::sys::statvfs::decode_answer`]).
    Statvfs { path: PathBuf, timeout: Duration },
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
            input.iter_mut().for_each(|b| *b = 0);
        }
    }
}

/// What a finished (or killed) child left.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Merged stdout and stderr, at most the cap.
    pub output: Vec<u8>,
    /// More output was produced than the cap kept.
    pub truncated: bool,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildId(u64);

/// Input is written in one go at start, so it must fit in a pipe buffer (64 KiB since
/// 2.6.11) or the write would block on a child that does not read.
const MAX_INPUT: usize = 60 * 1024;
/// Reads per pipe per turn: a child that writes without pause cannot hold the loop.
const READS_PER_TURN: usize = 16;
/// Encoded statvfs answers are a few dozen bytes.
const STATVFS_CAP: usize = 64;

struct Running {
    id: ChildId,
    pid: u32,
    /// None once EOF was read.
    out: Option<File>,
    output: Vec<u8>,
    cap: usize,
    truncated: bool,
    deadline: Instant,
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
    /// Starts `run`; its result comes back from [`Children::service`].
    pub fn start(&mut self, mut run: Run) -> io::Result<ChildId> {
        let (pid, out, cap, timeout) = match &mut run {
            Run::Program {
                cmd,
                input,
                timeout,
                cap,
            } => {
                let (pid, out) = spawn(cmd, input)?;
                (pid, out, *cap, *timeout)
            }
            Run::Statvfs { path, timeout } => {
                let (pid, out) = statvfs::start_in_child(path)?;
                (pid, File::from(out), STATVFS_CAP, *timeout)
            }
        };
        if let Err(e) = set_nonblocking(out.as_fd()) {
            let _ = sys::kill_group(pid, libc::SIGKILL);
            self.killed.push(pid);
            return Err(e);
        }
        let id = ChildId(self.next_id);
        self.next_id += 1;
        self.running.push(Running {
            id,
            pid,
            out: Some(out),
            output: Vec::new(),
            cap,
            truncated: false,
            deadline: Instant::now() + timeout,
            status: None,
        });
        Ok(id)
    }

    /// True while no child is running or waiting to be reaped.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.killed.is_empty()
    }

    /// The output pipes to poll for POLLIN.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.running
            .iter()
            .filter_map(|r| r.out.as_ref().map(|f| f.as_raw_fd()))
    }

    /// The nearest deadline of a running child.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.running.iter().map(|r| r.deadline).min()
    }

    /// Reads what the pipes hold, reaps exited children when `reap` (SIGCHLD was seen),
    /// kills those past their deadline, and returns the children that are done.
    pub fn service(&mut self, reap: bool) -> Vec<(ChildId, Finished)> {
        if reap {
            self.killed
                .retain(|&pid| !matches!(sys::try_wait(pid), Ok(Some(_)) | Err(_)));
        }
        let now = Instant::now();
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            r.read_available();
            if reap && r.status.is_none() {
                r.status = match sys::try_wait(r.pid) {
                    Ok(s) => s.map(ExitStatus::from_raw),
                    // ECHILD: already gone; report it as killed rather than hang.
                    Err(_) => Some(ExitStatus::from_raw(libc::SIGKILL)),
                };
            }
            let finished = if r.status.is_some() {
                // The leader has exited: what it wrote is in the pipe already. Anything
                // it left running in its group goes too, so a check cannot leave
                // background processes behind, nor hold the reply open with the pipe.
                r.read_available();
                let _ = sys::kill_group(r.pid, libc::SIGKILL);
                true
            } else if now >= r.deadline {
                let _ = sys::kill_group(r.pid, libc::SIGKILL);
                let _ = sys::kill(r.pid, libc::SIGKILL);
                self.killed.push(r.pid);
                true
            } else {
                false
            };
            if finished {
                let r = self.running.swap_remove(i);
                done.push((
                    r.id,
                    Finished {
                        status: r.status,
                        output: r.output,
                        truncated: r.truncated,
                    },
                ));
            } else {
                i += 1;
            }
        }
        done
    }

    /// SIGKILLs every child's group (the agent is stopping) and reaps what dies within
    /// `grace`; whatever is left is inherited and reaped by init.
    pub fn kill_all(&mut self, grace: Duration) {
        for r in self.running.drain(..) {
            let _ = sys::kill_group(r.pid, libc::SIGKILL);
            let _ = sys::kill(r.pid, libc::SIGKILL);
            self.killed.push(r.pid);
        }
        let until = Instant::now() + grace;
        let mut nap = Duration::from_millis(1);
        while !self.killed.is_empty() && Instant::now() < until {
            self.killed
                .retain(|&pid| !matches!(sys::try_wait(pid), Ok(Some(_)) | Err(_)));
            if self.killed.is_empty() {
                break;
            }
            let _ = crate::sys::poll::wait(&mut [], Some(nap));
            nap = (nap * 2).min(Duration::from_millis(50));
        }
    }
}

impl Running {
    /// Reads without blocking, keeping what fits under the cap and dropping the rest
    /// (still reading, so the child never blocks on a full pipe).
    fn read_available(&mut self) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 8192];
        for _ in 0..READS_PER_TURN {
            match out.read(&mut chunk) {
                Ok(0) => {
                    self.out = None;
                    return;
                }
                Ok(n) => {
                    let keep = n.min(self.cap.saturating_sub(self.output.len()));
                    self.output.extend_from_slice(&chunk[..keep]);
                    self.truncated |= keep < n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.out = None;
                    return;
                }
            }
        }
    }
}

/// Spawns `cmd` in its own process group with `input` on its stdin and stdout and
/// stderr on one pipe; returns its pid and the pipe's read end.
fn spawn(cmd: &mut Command, input: &[u8]) -> io::Result<(u32, File)> {
    if input.len() > MAX_INPUT {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let (reader, writer) = io::pipe()?;
    cmd.stdin(if input.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    })
    .stdout(writer.try_clone()?)
    .stderr(writer)
    .process_group(0);
    let mut child = cmd.spawn()?;
    // The Command holds the pipe's write ends until its stdio is replaced; without that
    // EOF could never arrive.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        // The input fits in the pipe buffer, so this does not block. EPIPE means the
        // child exited without reading, which its exit status will tell.
        match stdin.write_all(input) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                let _ = sys::kill_group(pid, libc::SIGKILL);
                return Err(e);
            }
            _ => {}
        }
    }
    // `child` is dropped without waiting: the manager reaps it by pid.
    Ok((pid, File::from(OwnedFd::from(reader))))
}

/// Runs `run` to its end without the agent loop, for code that has no loop to hand it
/// to (unit tests of handlers).
pub fn run_blocking(run: Run) -> io::Result<Finished> {
    let mut children = Children::default();
    let id = children.start(run)?;
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
                .map(|fd| crate::sys::poll::pollfd(fd, libc::POLLIN)),
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
    fn too_much_input_is_refused_before_spawning() {
        let c = Command::new("/bin/true");
        let run = Run::program(c, vec![b'x'; MAX_INPUT + 1], Duration::from_secs(1), 0);
        assert!(run_blocking(run).is_err());
    }

    #[test]
    fn statvfs_in_a_child_matches_direct() {
        let direct = statvfs::statvfs(std::path::Path::new("/")).unwrap();
        let f = run_blocking(Run::Statvfs {
            path: "/".into(),
            timeout: Duration::from_secs(10),
        })
        .unwrap();
        assert_eq!(statvfs::decode_answer(&f.output).unwrap(), direct);
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
        let id = children
            .start(Run::program(c, Vec::new(), Duration::from_millis(100), 0))
            .unwrap();
        assert!(children.service(true).is_empty());
        let _ = crate::sys::poll::wait(&mut [], Some(Duration::from_millis(150)));
        let done = children.service(true);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, id);
        assert!(done[0].1.timed_out());
        children.kill_all(Duration::from_secs(5));
        assert!(children.is_empty(), "the killed child was reaped");
    }
}
