//! /proc/self/mounts (same format as /proc/mounts and /etc/mtab): the mount table.

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

/// Decodes the kernel's `\ooo` escapes (space, tab, newline, backslash: mangle() in
/// fs/proc_namespace.c, fs/namespace.c on 2.6.32).
pub(crate) fn unescape(field: &str) -> String {
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
    fn mounts_keep_a_lone_backslash() {
        assert_eq!(unescape("a\\b\\1"), "a\\b\\1");
        assert_eq!(unescape("a\\134b"), "a\\b");
    }
}
