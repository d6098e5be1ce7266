//! Running a program the agent must run (chpasswd, a user check's shell) under a
//! deadline: its own process group, stdin from a buffer or /dev/null, stdout and stderr
//! merged and capped, the whole group SIGKILLed at the deadline, and the child always
//! reaped so no zombie is left behind.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::sys::child as sys;
use crate::sys::poll::{self, POLLERR, POLLHUP, POLLIN};

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

/// How long to wait for a SIGKILLed group leader before leaving it to a reaper thread.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// Input is written in one go before output is read, so it must fit in a pipe buffer
/// (64 KiB since 2.6.11).
const MAX_INPUT: usize = 60 * 1024;
/// How often the output wait checks whether the leader has exited.
const EXIT_CHECK: Duration = Duration::from_millis(100);

/// Runs `cmd` with `input` on its stdin (/dev/null when empty), collecting at most `cap`
/// bytes of merged output, for at most `timeout`. The agent is blocked for at most
/// `timeout` plus a short grace period for the kill.
pub fn run(mut cmd: Command, input: &[u8], timeout: Duration, cap: usize) -> io::Result<Finished> {
    if input.len() > MAX_INPUT {
        // A larger input could block the write on a child that does not read.
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let deadline = Instant::now() + timeout;
    let (mut reader, writer) = io::pipe()?;
    cmd.stdin(if input.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    })
    .stdout(writer.try_clone()?)
    .stderr(writer)
    .process_group(0);
    let mut child = cmd.spawn()?;
    // The Command holds the pipe's write ends; drop them so EOF can arrive.
    drop(cmd);
    if let Some(mut stdin) = child.stdin.take() {
        // Small inputs (a password line) fit in the pipe buffer; EPIPE means the child
        // exited without reading, which its exit status will tell.
        match stdin.write_all(input) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                kill_and_reap(child);
                return Err(e);
            }
            _ => {}
        }
    }

    let mut output = Vec::new();
    let mut truncated = false;
    let mut status = None;
    let mut eof = false;
    while !eof {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        // Wake up now and then to notice a leader that exited while something it
        // started in the background still holds the output pipe open.
        match readable(&reader, left.min(EXIT_CHECK)) {
            Ok(true) => match read_capped(&mut reader, &mut output, cap, &mut truncated) {
                Ok(n) => eof = n == 0,
                Err(e) => {
                    kill_and_reap(child);
                    return Err(e);
                }
            },
            Ok(false) => {
                if let Some(s) = child.try_wait()? {
                    status = Some(s);
                    // Take what is already buffered, without waiting for an EOF that
                    // the background process may never send.
                    while readable(&reader, Duration::ZERO).unwrap_or(false) {
                        match read_capped(&mut reader, &mut output, cap, &mut truncated) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    break;
                }
            }
            Err(e) => {
                kill_and_reap(child);
                return Err(e);
            }
        }
    }
    if status.is_none() {
        // Output closed (or the deadline passed): wait for the exit, still bounded.
        status = wait_until(&mut child, deadline)?;
    }
    if status.is_none() {
        kill_and_reap(child);
    } else {
        // The leader is gone; anything it left running in its group goes too, so a
        // check cannot leave background processes behind.
        let _ = sys::kill_group(child.id(), libc::SIGKILL);
    }
    Ok(Finished {
        status,
        output,
        truncated,
    })
}

/// Whether `reader` has data or EOF within `timeout`; EINTR counts as "not yet".
fn readable(reader: &io::PipeReader, timeout: Duration) -> io::Result<bool> {
    let mut fds = [poll::pollfd(reader.as_raw_fd(), POLLIN)];
    match poll::wait(&mut fds, Some(timeout)) {
        Ok(0) => Ok(false),
        Ok(_) => Ok(fds[0].revents & (POLLIN | POLLHUP | POLLERR) != 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// One read; keeps what fits under `cap` and drops the rest (still reading, so the
/// child never blocks on a full pipe). Returns the bytes read, 0 at EOF.
fn read_capped(
    reader: &mut io::PipeReader,
    output: &mut Vec<u8>,
    cap: usize,
    truncated: &mut bool,
) -> io::Result<usize> {
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk) {
            Ok(n) => {
                let keep = n.min(cap.saturating_sub(output.len()));
                output.extend_from_slice(&chunk[..keep]);
                *truncated |= keep < n;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Polls for the child's exit until the deadline, with a short back-off (there is no
/// pidfd on 2.6.32 to wait on).
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Ok(None);
        };
        sleep(nap.min(left));
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}

fn sleep(d: Duration) {
    // ppoll with no fds: returns early on a signal, which is fine here.
    let _ = poll::wait(&mut [], Some(d));
}

/// SIGKILLs the child's whole group and reaps the leader; if it does not die within the
/// grace period (stuck in uninterruptible sleep), a thread waits for it instead of
/// the agent.
fn kill_and_reap(mut child: Child) {
    let _ = sys::kill_group(child.id(), libc::SIGKILL);
    let _ = child.kill();
    match wait_until(&mut child, Instant::now() + KILL_GRACE) {
        Ok(Some(_)) => {}
        _ => {
            let _ = std::thread::Builder::new()
                .name("reaper".into())
                .spawn(move || child.wait());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn captures_stdout_and_stderr_in_order() {
        let f = run(
            sh("echo out; echo err >&2; exit 3"),
            b"",
            Duration::from_secs(10),
            1024,
        )
        .unwrap();
        assert_eq!(f.output, b"out\nerr\n");
        assert_eq!(f.exit_code(), 3);
        assert!(!f.timed_out() && !f.truncated);
    }

    #[test]
    fn input_goes_to_stdin() {
        let f = run(sh("cat"), b"secret\n", Duration::from_secs(10), 1024).unwrap();
        assert_eq!(f.output, b"secret\n");
    }

    #[test]
    fn output_is_capped_but_drained() {
        let f = run(
            sh("head -c 100000 /dev/zero"),
            b"",
            Duration::from_secs(10),
            1000,
        )
        .unwrap();
        assert_eq!(f.output.len(), 1000);
        assert!(f.truncated);
        assert_eq!(f.exit_code(), 0);
    }

    #[test]
    fn deadline_kills_the_group() {
        let f = run(
            sh("sleep 30 & sleep 30; echo never"),
            b"",
            Duration::from_millis(200),
            1024,
        )
        .unwrap();
        assert!(f.timed_out());
        assert_eq!(f.exit_code(), -1);
        assert!(f.output.is_empty());
    }

    #[test]
    fn background_child_holding_the_pipe_does_not_delay_the_result() {
        let f = run(
            sh("sleep 30 & echo done"),
            b"",
            Duration::from_secs(20),
            1024,
        )
        .unwrap();
        assert!(!f.timed_out());
        assert_eq!(f.output, b"done\n");
    }

    #[test]
    fn killed_by_signal_reports_128_plus_signal() {
        let f = run(sh("kill -9 $$"), b"", Duration::from_secs(10), 1024).unwrap();
        assert_eq!(f.exit_code(), 137);
    }
}
