//! External programs that are the interface of a command (shutdown, hwclock, systemctl,
//! pm-utils): where to find them and how to run them. Never through a shell; the argv is
//! built from fixed words and validated parts only.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Where system tools live even when the agent was started with a user's PATH.
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// `name` on PATH only (as g_spawn's SEARCH_PATH in qemu-ga).
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// `name` on PATH, then in /usr/sbin and /sbin.
pub fn find(name: &str) -> Option<PathBuf> {
    find_on_path(name).or_else(|| {
        SBIN_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|p| is_executable(p))
    })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `program` with `args` in its own process group (a signal to the agent's group
/// leaves it alone), stdin and output on /dev/null, and waits for it.
pub fn run(program: &Path, args: &[&str]) -> io::Result<ExitStatus> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .status()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_path_entries_are_ignored_and_sh_is_found() {
        // The test process PATH always has /bin or /usr/bin with sh.
        assert!(find("sh").is_some());
        assert!(find("no-such-program-qga").is_none());
    }

    #[test]
    fn run_reports_the_exit_status() {
        let sh = find("sh").unwrap();
        assert_eq!(run(&sh, &["-c", "exit 3"]).unwrap().code(), Some(3));
        assert!(run(&sh, &["-c", "true"]).unwrap().success());
    }
}
