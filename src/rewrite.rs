//! Atomic replacement of a system file (/etc/hostname, /etc/hosts, …): a temporary file
//! in the same directory with the old file's owner, mode and SELinux label, fsync, then
//! rename(2) over the original, so a crash leaves the old or the new file, never half.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::log;

/// Mode of a file that did not exist before.
const NEW_FILE_MODE: u32 = 0o644;

/// Replaces `path` with `content`. A symbolic link is followed, so the link stays and
/// its target is replaced.
pub fn replace(path: &Path, content: &[u8]) -> io::Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let old = match fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let dir = target.parent().unwrap_or(Path::new("/"));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.qga-{}", std::process::id()));
    let result = write_new(&tmp, &target, old.as_ref(), content);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_new(
    tmp: &PathBuf,
    target: &Path,
    old: Option<&fs::Metadata>,
    content: &[u8],
) -> io::Result<()> {
    let mode = old.map_or(NEW_FILE_MODE, |m| m.mode() & 0o7777);
    let _ = fs::remove_file(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    f.write_all(content)?;
    // The umask may have narrowed the mode given to open.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    if let Some(m) = old {
        let meta = f.metadata()?;
        if meta.uid() != m.uid() || meta.gid() != m.gid() {
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
        }
        match crate::sys::hostname::copy_selinux_label(target, tmp) {
            Ok(_) => {}
            Err(e) => log::warn(&format!(
                "cannot copy the SELinux label of '{}': {e}",
                target.display()
            )),
        }
    }
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, target)?;
    // Make the rename itself durable.
    if let Some(dir) = target.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qga-rewrite-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn keeps_mode_and_replaces_content() {
        let d = tmpdir("mode");
        let p = d.join("hosts");
        fs::write(&p, "old\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        replace(&p, b"new\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            1,
            "no temporary file left"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn follows_a_symlink_and_creates_missing_files() {
        let d = tmpdir("link");
        fs::write(d.join("real"), "a").unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        replace(&d.join("link"), b"b").unwrap();
        assert!(fs::symlink_metadata(d.join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(d.join("real")).unwrap(), "b");
        replace(&d.join("fresh"), b"c").unwrap();
        assert_eq!(fs::metadata(d.join("fresh")).unwrap().mode() & 0o777, 0o644);
        fs::remove_dir_all(&d).unwrap();
    }
}
