//! setfsuid(2)/setfsgid(2) (Linux 1.2, so 2.6.32 has them): the ids the kernel checks
//! file access against, switched for the calling thread only, so root can open a user's
//! files exactly as that user could, and no further.

use std::io;

/// The thread's previous filesystem ids, put back when dropped.
#[derive(Debug)]
pub struct FsIds {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

impl FsIds {
    /// Makes file access use `uid`/`gid` until the guard is dropped. The group goes
    /// first: while the fsuid is not 0 the kernel has dropped the file capabilities.
    pub fn switch_to(uid: u32, gid: u32) -> io::Result<FsIds> {
        let old_gid = set_fsgid(gid);
        if current_fsgid() != gid {
            set_fsgid(old_gid);
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        let old_uid = set_fsuid(uid);
        if current_fsuid() != uid {
            set_fsuid(old_uid);
            set_fsgid(old_gid);
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(FsIds {
            uid: old_uid,
            gid: old_gid,
        })
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        set_fsuid(self.uid);
        set_fsgid(self.gid);
    }
}

// setfsuid and setfsgid return the previous id whether or not the change was allowed;
// they never return -1. The only way to learn the outcome is to ask again with an id
// that is always refused (-1), which changes nothing and returns the current one.

fn set_fsuid(uid: u32) -> u32 {
    // SAFETY: setfsuid takes an integer and cannot fail in a way that needs checking.
    unsafe { libc::setfsuid(uid) as u32 }
}

fn set_fsgid(gid: u32) -> u32 {
    // SAFETY: as for setfsuid.
    unsafe { libc::setfsgid(gid) as u32 }
}

fn current_fsuid() -> u32 {
    set_fsuid(u32::MAX)
}

fn current_fsgid() -> u32 {
    set_fsgid(u32::MAX)
}

/// The effective uid: who owns the files the agent creates.
pub fn euid() -> u32 {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_to_ourselves_works_and_restores() {
        let (uid, gid) = (current_fsuid(), current_fsgid());
        {
            let _g = FsIds::switch_to(uid, gid).unwrap();
            assert_eq!((current_fsuid(), current_fsgid()), (uid, gid));
        }
        assert_eq!((current_fsuid(), current_fsgid()), (uid, gid));
    }

    #[test]
    fn switching_as_root_changes_only_this_thread() {
        if euid() != 0 {
            // Without CAP_SETUID the kernel refuses any other id.
            assert!(FsIds::switch_to(euid().wrapping_add(1), 0).is_err());
            assert_eq!(current_fsuid(), euid());
            return;
        }
        // A thread started earlier (a new thread copies its creator's ids).
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            asked.recv().unwrap();
            current_fsuid()
        });
        let g = FsIds::switch_to(1000, 1000).unwrap();
        assert_eq!((current_fsuid(), current_fsgid()), (1000, 1000));
        ask.send(()).unwrap();
        assert_eq!(other.join().unwrap(), 0);
        drop(g);
        assert_eq!((current_fsuid(), current_fsgid()), (0, 0));
    }
}
