//! Signal handling: SIGTERM/SIGINT request a clean exit, SIGIO reports a virtio-serial
//! host (dis)connect, SIGCHLD says a child the agent started has exited, SIGHUP asks
//! for the log file to be reopened (logrotate). Catching SIGHUP rather than ignoring it
//! also lets the programs the agent runs start with it at its default (an ignored
//! signal stays ignored across exec). The
//! signals stay blocked except inside [`super::poll::wait`], so they only ever
//! interrupt the loop's wait.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use super::check;

static TERMINATE: AtomicBool = AtomicBool::new(false);
static IO_EVENT: AtomicBool = AtomicBool::new(false);
static CHILD_EVENT: AtomicBool = AtomicBool::new(false);
static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: set a flag.
    match sig {
        libc::SIGTERM | libc::SIGINT => TERMINATE.store(true, Ordering::SeqCst),
        libc::SIGIO => IO_EVENT.store(true, Ordering::SeqCst),
        libc::SIGCHLD => CHILD_EVENT.store(true, Ordering::SeqCst),
        libc::SIGHUP => HANGUP.store(true, Ordering::SeqCst),
        _ => {}
    }
}

const HANDLED: [libc::c_int; 5] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGIO,
    libc::SIGCHLD,
    libc::SIGHUP,
];

/// Installs the handlers and blocks the handled signals outside the poll wait.
pub fn install() -> io::Result<()> {
    // SAFETY: zeroed sigaction/sigset_t are valid before being filled in; the handler
    // is an `extern "C" fn(c_int)` that only touches atomics.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in HANDLED {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            // SIGCHLD only for exits, not for children stopped by SIGSTOP.
            sa.sa_flags = if sig == libc::SIGCHLD {
                libc::SA_NOCLDSTOP
            } else {
                0
            };
            libc::sigemptyset(&mut sa.sa_mask);
            check(libc::sigaction(sig, &sa, std::ptr::null_mut()))?;
            libc::sigaddset(&mut set, sig);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

pub fn terminate_requested() -> bool {
    TERMINATE.load(Ordering::SeqCst)
}

/// True once after each SIGIO.
pub fn take_io_event() -> bool {
    IO_EVENT.swap(false, Ordering::SeqCst)
}

/// True once after each SIGCHLD: some child exited, so reaping by pid is worth trying.
pub fn take_child_event() -> bool {
    CHILD_EVENT.swap(false, Ordering::SeqCst)
}

/// True once after each SIGHUP.
pub fn take_hangup() -> bool {
    HANGUP.swap(false, Ordering::SeqCst)
}
