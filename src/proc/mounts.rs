//! /proc/self/mounts (same format as /proc/mounts and /etc/mtab) and
//! /proc/self/mountinfo (2.6.26+, with each mount's device number): the mount table.

/// One mount, fields decoded from the kernel's octal escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub options: Vec<String>,
}

impl Mount {
    /// Whether the mount options say read-only. A filesystem the kernel remounted
    /// read-only after errors shows "ro" here too; statvfs's ST_RDONLY is the other check.
    pub fn is_readonly(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// FUSE (fuse, fuseblk, fuse.SUBTYPE): a user-space daemon answers for it, and
    /// fusermount (set-uid) lets any user run one, with a source ("fsname") of her choice.
    pub fn is_fuse(&self) -> bool {
        is_fuse_type(&self.fstype)
    }

    /// The value of an option like "subvol=/x" or "vers=4.0".
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(name)?.strip_prefix('='))
    }
}

/// Whether `fstype` is a FUSE type (see [`Mount::is_fuse`]).
pub fn is_fuse_type(fstype: &str) -> bool {
    fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse.")
}

/// Parses the mount table; malformed lines (fewer than four fields) are skipped.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let device = unescape(f.next()?);
            let mountpoint = unescape(f.next()?);
            let fstype = unescape(f.next()?);
            let options = unescape(f.next()?).split(',').map(str::to_string).collect();
            Some(Mount {
                device,
                mountpoint,
                fstype,
                options,
            })
        })
        .collect()
}

/// One line of /proc/self/mountinfo (Documentation/filesystems/proc.rst, 3.5): the
/// fields qemu-ga uses, escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub major: u32,
    pub minor: u32,
    pub mountpoint: String,
    pub fstype: String,
    /// The mount source ("/dev/vda1", "srv:/export").
    pub device: String,
}

/// Parses /proc/self/mountinfo; lines without the " - " separator or a device number
/// are skipped, as qemu-ga skips them.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let mut h = head.split_whitespace();
            let (_id, _parent) = (h.next()?, h.next()?);
            let (major, minor) = h.next()?.split_once(':')?;
            let _root = h.next()?;
            let mountpoint = unescape(h.next()?);
            let mut t = tail.split_whitespace();
            let fstype = unescape(t.next()?);
            let device = t.next().map(unescape).unwrap_or_default();
            Some(MountInfo {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                mountpoint,
                fstype,
                device,
            })
        })
        .collect()
}

/// What stat(2) says of a mount's source: a block device and its number, a directory
/// (a bind mount in an old mtab), or anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Block(u32, u32),
    Dir,
    Other,
}

/// The filesystems qemu-ga freezes, trims and reports in guest-get-fsinfo
/// (`build_fs_mount_list`), in table order: mounts with a device number (major 0 is
/// anonymous, so virtual and network filesystems drop out; btrfs, whose mounts show
/// major 0, gets its source's number), each device once (bind mounts and btrfs
/// subvolumes dropped, as qemu-ga does since 8.1). `stat` looks at a source path.
pub fn fs_mounts_from_mountinfo(
    mounts: Vec<MountInfo>,
    stat: impl Fn(&str) -> Source,
) -> Vec<MountInfo> {
    let mut out: Vec<MountInfo> = Vec::new();
    for mut m in mounts {
        if m.major == 0 {
            // Only btrfs's source is looked at: any other (proc, tmpfs, a FUSE mount's
            // made-up name, a path inside a user's FUSE mount) is not a disk, and a
            // stat of it would cost a syscall per mount or wait on a FUSE daemon.
            if m.fstype != "btrfs" {
                continue;
            }
            match stat(&m.device) {
                Source::Block(major, minor) => (m.major, m.minor) = (major, minor),
                _ => continue,
            }
        }
        if !out.iter().any(|o| (o.major, o.minor) == (m.major, m.minor)) {
            out.push(m);
        }
    }
    out
}

/// The same from /proc/self/mounts, for kernels before 2.6.26: sources that are paths,
/// not smbfs or cifs (as coreutils), directories (bind mounts) skipped, each device
/// number once; a source that is no block device counts as 0:0, as in qemu-ga.
pub fn fs_mounts_from_mtab(mounts: Vec<Mount>, stat: impl Fn(&str) -> Source) -> Vec<MountInfo> {
    let mut out: Vec<MountInfo> = Vec::new();
    for m in mounts {
        if !m.device.starts_with('/') || m.fstype == "smbfs" || m.fstype == "cifs" {
            continue;
        }
        // A user's FUSE mount names any source she likes, even a path inside her own
        // FUSE mount, whose daemon need never answer a stat (fuseblk needs root).
        let source = if m.is_fuse() && m.fstype != "fuseblk" {
            Source::Other
        } else {
            stat(&m.device)
        };
        let (major, minor) = match source {
            Source::Dir => continue,
            Source::Block(major, minor) => (major, minor),
            Source::Other => (0, 0),
        };
        if !out.iter().any(|o| (o.major, o.minor) == (major, minor)) {
            out.push(MountInfo {
                major,
                minor,
                mountpoint: m.mountpoint,
                fstype: m.fstype,
                device: m.device,
            });
        }
    }
    out
}

/// Decodes the kernel's `\ooo` escapes (space, tab, newline, backslash: mangle() in
/// fs/proc_namespace.c, fs/namespace.c on 2.6.32).
pub(crate) fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |c: &u8| (b'0'..=b'7').contains(c);
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(octal) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if v <= 0xff {
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_decode_octal_escapes() {
        let m = parse_mounts(
            "/dev/vda1 / ext4 rw,relatime,errors=remount-ro 0 0\n\
             /dev/vdb1 /mnt/my\\040disk\\011x ext4 ro,relatime 0 0\n\
             bad line\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].mountpoint, "/mnt/my disk\tx");
        assert!(m[1].is_readonly());
        assert!(!m[0].is_readonly());
        assert_eq!(m[0].option("errors"), Some("remount-ro"));
    }

    #[test]
    fn mountinfo_fields_and_escapes() {
        let m = parse_mountinfo(
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
             90 27 252:17 / /mnt/my\\040disk rw shared:1 master:2 - xfs /dev/vdb1 rw\n\
             22 27 0:21 / /proc rw,relatime - proc proc rw\n\
             91 27 0:50 / /nfs rw - nfs4 srv:/export rw,vers=4.2\n\
             bad line\n",
        );
        assert_eq!(m.len(), 4);
        assert_eq!((m[0].major, m[0].minor), (254, 0));
        assert_eq!(m[1].mountpoint, "/mnt/my disk");
        assert_eq!(
            (m[1].fstype.as_str(), m[1].device.as_str()),
            ("xfs", "/dev/vdb1")
        );
        assert_eq!((m[3].major, m[3].device.as_str()), (0, "srv:/export"));
    }

    #[test]
    fn fs_mounts_drop_anonymous_and_repeated_devices() {
        let m = parse_mountinfo(
            "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
             22 27 0:21 / /proc rw - proc proc rw\n\
             91 27 0:50 / /nfs rw - nfs4 srv:/export rw\n\
             92 27 0:51 / /srv rw - btrfs /dev/vdb rw\n\
             93 27 0:52 / /srv/snap rw - btrfs /dev/vdb rw\n\
             94 27 254:0 /home /home rw - ext4 /dev/vda rw\n",
        );
        let stat = |dev: &str| match dev {
            "/dev/vdb" => Source::Block(254, 16),
            _ => Source::Other,
        };
        let got: Vec<String> = fs_mounts_from_mountinfo(m, stat)
            .into_iter()
            .map(|m| m.mountpoint)
            .collect();
        assert_eq!(got, ["/", "/srv"]);
    }

    #[test]
    fn fs_mounts_from_an_old_mtab() {
        let m = parse_mounts(
            "/dev/vda1 / ext4 rw 0 0\n\
             proc /proc proc rw 0 0\n\
             //srv/share /mnt/smb cifs rw 0 0\n\
             /srv/data /mnt/bind none rw,bind 0 0\n\
             /dev/vdb1 /data xfs rw 0 0\n\
             /home/eve/fuse/x /home/eve/m fuse.sshfs rw,user_id=1000 0 0\n",
        );
        let stat = |dev: &str| match dev {
            "/dev/vda1" => Source::Block(252, 1),
            "/dev/vdb1" => Source::Block(252, 17),
            "/srv/data" => Source::Dir,
            "/home/eve/fuse/x" => panic!("stat of a FUSE mount's source"),
            _ => Source::Other,
        };
        let got: Vec<(u32, u32, String)> = fs_mounts_from_mtab(m, stat)
            .into_iter()
            .map(|m| (m.major, m.minor, m.mountpoint))
            .collect();
        let want = [
            (252, 1, "/".into()),
            (252, 17, "/data".into()),
            (0, 0, "/home/eve/m".into()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn mounts_keep_a_lone_backslash() {
        assert_eq!(unescape("a\\b\\1"), "a\\b\\1");
        assert_eq!(unescape("a\\134b"), "a\\b");
    }
}
