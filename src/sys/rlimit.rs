//! The descriptor limit (getrlimit/setrlimit RLIMIT_NOFILE), so guest-file-open's handle
//! limit is met before the fd table is exhausted.

use std::io;

use super::check;

/// RLIMIT_NOFILE: (soft, hard).
// rlim_t is u64 here but not on every libc target.
#[allow(clippy::unnecessary_cast)]
pub fn nofile() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// Raises the soft RLIMIT_NOFILE towards `want`, never past the hard limit and never
/// lowering it; returns the soft limit in force afterwards.
#[allow(clippy::unnecessary_cast)]
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    let (soft, hard) = nofile()?;
    let target = want.min(hard);
    if target <= soft {
        return Ok(soft);
    }
    let lim = libc::rlimit {
        rlim_cur: target as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid rlimit, only read by the call.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    #[test]
    fn raising_to_the_current_soft_limit_changes_nothing() {
        let (soft, hard) = super::nofile().unwrap();
        assert!(soft <= hard);
        assert_eq!(super::raise_nofile(soft).unwrap(), soft);
    }
}
