//! A sysroot with very many processes and mounts (issue #12: "a guest with 100,000
//! processes or 10,000 mounts"): the centos7 fixture plus generated /proc/<pid>
//! directories and /proc/self/mounts lines.
//!
//! Built once in cargo's target/tmp and reused by every pass of `make test` and every
//! later run: writing and removing 100,000 process directories in each of the five passes
//! took minutes. The directory's name carries a hash of this file, of the sizes and of the
//! centos7 fixture, so a change to the generator or the fixture builds a new tree (and
//! removes the old ones of the same sizes, about 800 MB each on ext4). A tree is built under a temporary name and renamed into place,
//! which is atomic: a test never sees half a tree, and of two builders racing, the loser
//! removes its copy and uses the winner's. The trees are read-only to the tests.
//!
//! Each process has the three files the process table reads: stat (its own: pid, CPU
//! ticks and RSS vary), status with RssFile/RssShmem (so statm is not read) and cmdline.
//! status and cmdline come in a few variants, hard links to one file each: a link is one
//! syscall where a file is three, and no variant reaches ext4's 65,000 links.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use super::{copy_tree, fixture};

/// (user, command line) of the variants.
const VARIANTS: &[(u32, &[u8])] = &[
    (0, b"/usr/sbin/worker\0--id\0"),
    (1000, b"python3\0/home/user/job.py\0"),
    (0, b"/usr/bin/java\0-Xmx1g\0-jar\0app.jar\0"),
    (1000, b"bash\0"),
];

/// The sysroot with `processes` processes (pids from 10,000) and `mounts` extra mounts.
pub fn sysroot(processes: u32, mounts: u32) -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let prefix = format!("many-procs-{processes}-{mounts}-");
    let root = base.join(format!("{prefix}{:016x}", version(processes, mounts)));
    if root.is_dir() {
        return root;
    }
    std::fs::create_dir_all(base).unwrap();
    let building = base.join(format!("building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    build(&building, processes, mounts);
    if std::fs::rename(&building, &root).is_err() {
        // Another test process renamed its tree into place first.
        std::fs::remove_dir_all(&building).unwrap();
        assert!(root.is_dir(), "{} neither built nor there", root.display());
        return root;
    }
    for entry in std::fs::read_dir(base).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        // Older versions, and the half-built trees of test runs that were killed.
        let dead_builder = name
            .strip_prefix("building-")
            .is_some_and(|pid| !Path::new("/proc").join(pid).exists());
        if (name.starts_with(&prefix) && path != root) || dead_builder {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    root
}

fn version(processes: u32, mounts: u32) -> u64 {
    let mut h = DefaultHasher::new();
    include_str!("many_procs.rs").hash(&mut h);
    (processes, mounts).hash(&mut h);
    hash_tree(&fixture("centos7"), &mut h);
    h.finish()
}

fn hash_tree(dir: &Path, h: &mut DefaultHasher) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        path.file_name().hash(h);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            hash_tree(&path, h);
        } else if meta.is_symlink() {
            std::fs::read_link(&path).unwrap().hash(h);
        } else {
            std::fs::read(&path).unwrap().hash(h);
        }
    }
}

fn build(root: &Path, processes: u32, mounts: u32) {
    copy_tree(&fixture("centos7"), root);
    let proc = root.join("proc");
    let shared = root.join("variants");
    std::fs::create_dir(&shared).unwrap();
    for (i, (uid, cmdline)) in VARIANTS.iter().enumerate() {
        let status = format!(
            "Name:\tworker\nState:\tS (sleeping)\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n\
             Gid:\t{uid}\t{uid}\t{uid}\t{uid}\nVmRSS:\t     568 kB\nRssAnon:\t     128 kB\n\
             RssFile:\t     440 kB\nRssShmem:\t       0 kB\nThreads:\t1\n"
        );
        std::fs::write(shared.join(format!("status{i}")), status).unwrap();
        std::fs::write(shared.join(format!("cmdline{i}")), cmdline).unwrap();
    }
    for pid in 10_000..10_000 + processes {
        let d = proc.join(pid.to_string());
        std::fs::create_dir(&d).unwrap();
        let (ticks, rss) = (pid % 997, 142 + pid % 1009);
        std::fs::write(
            d.join("stat"),
            format!(
                "{pid} (worker) S 1 {pid} {pid} 0 -1 4202752 0 0 0 0 {ticks} 0 0 0 20 0 1 0 \
                 1500 7271219 {rss} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 \
                 0 0 0 0 0 0 0 0 0 0\n"
            ),
        )
        .unwrap();
        let v = pid as usize % VARIANTS.len();
        std::fs::hard_link(shared.join(format!("status{v}")), d.join("status")).unwrap();
        std::fs::hard_link(shared.join(format!("cmdline{v}")), d.join("cmdline")).unwrap();
    }
    let mounts_path = proc.join("self/mounts");
    let mut text = std::fs::read_to_string(&mounts_path).unwrap_or_default();
    for i in 0..mounts {
        text.push_str(&format!("/dev/vdx{i} /srv/m{i} ext4 rw,relatime 0 0\n"));
    }
    std::fs::create_dir_all(proc.join("self")).unwrap();
    std::fs::write(mounts_path, text).unwrap();
}
