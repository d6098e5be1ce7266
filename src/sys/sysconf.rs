//! System constants from sysconf(3): the clock tick rate of /proc times and the page size.

/// USER_HZ, the unit of the tick counts in /proc/stat and /proc/<pid>/stat.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes a constant and touches no memory.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // -1 means "indeterminate"; every Linux architecture we build for uses 100.
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// The page size in bytes, the unit of /proc/<pid>/statm and the rss field of stat.
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes a constant and touches no memory.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn constants_are_sane() {
        assert!(super::clock_ticks() >= 100);
        assert!(super::page_size() >= 4096);
    }
}
