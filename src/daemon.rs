//! Becoming a daemon and owning the pidfile. The parent of `-d` waits until the child
//! is serving (or has failed) and exits with its status, so init scripts see start-up
//! errors. The pidfile is locked for the agent's life, so a second instance with the
//! same pidfile refuses to start.

use std::fs::{File, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::sys::process::{self, Fork};
use crate::untrusted;

/// Held by the daemon child until it is serving.
pub struct Readiness(std::io::PipeWriter);

/// Forks. The parent waits for the child's readiness and exits; the child returns.
pub fn daemonize() -> io::Result<Readiness> {
    let (mut reader, writer) = std::io::pipe()?;
    match process::fork()? {
        Fork::Parent => {
            drop(writer);
            let mut status = [1u8];
            let ok = matches!(reader.read(&mut status), Ok(1)) && status[0] == 0;
            std::process::exit(if ok { 0 } else { 1 });
        }
        Fork::Child => {
            drop(reader);
            process::setsid()?;
            std::env::set_current_dir("/")?;
            process::set_umask(0o077);
            Ok(Readiness(writer))
        }
    }
}

impl Readiness {
    /// Tells the waiting parent that start-up succeeded and detaches from the terminal.
    pub fn done(mut self) -> io::Result<()> {
        process::stdio_to_null()?;
        self.0.write_all(&[0])
    }
}

/// A locked pidfile holding our pid; removed when dropped.
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    /// Opens it as src/untrusted.rs says: a symlink, FIFO, device, hard link or a file
    /// of another user there is refused, never truncated or written through.
    pub fn create(path: &Path) -> Result<PidFile, String> {
        let mut file = untrusted::open_pidfile(path)
            .map_err(|e| format!("cannot open pidfile '{}': {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut other = String::new();
                let _ = file.read_to_string(&mut other);
                return Err(format!(
                    "pidfile '{}' is locked: another qemu-ga (pid {}) is running",
                    path.display(),
                    other.trim()
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(format!("cannot lock pidfile '{}': {e}", path.display()))
            }
        }
        file.set_len(0)
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| format!("cannot write pidfile '{}': {e}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
