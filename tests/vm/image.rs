//! What the test VM boots: Debian's cloud kernel unpacked by `make deps` into
//! target/vm/kernel, an initramfs written here as a newc cpio archive (busybox-static,
//! the virtio modules the kernel has as modules, the static agent, a minimal /etc and the
//! scripts beside this file), and an ext4 disk image made with mkfs.ext4.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The drivers the VM needs. Whatever the kernel has built in (modules.builtin) is
/// skipped; the rest comes with its `depends=` chain, dependencies first.
pub const WANTED_DRIVERS: &[&str] = &[
    "virtio_pci",
    "virtio_console",
    "virtio_blk",
    "virtio_net",
    "ext4",
];

/// Where `make deps` unpacks linux-image-cloud-amd64 (`dpkg-deb -x`).
pub fn kernel_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vm/kernel")
}

/// The agent under test: `QGA_BIN`, as for the other integration tests (the i686 build,
/// an older commit), else the static x86_64 agent `make build` writes.
pub fn agent_binary() -> PathBuf {
    match std::env::var_os("QGA_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/x86_64-unknown-linux-musl/release/qemu-ga"),
    }
}

/// An unpacked kernel package: its vmlinuz and its module tree.
pub struct Kernel {
    pub release: String,
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

impl Kernel {
    /// The newest kernel below `dir` (`boot/vmlinuz-REL` with `lib/modules/REL`).
    pub fn find(dir: &Path) -> Result<Kernel, String> {
        let boot = dir.join("boot");
        let mut releases: Vec<String> = fs::read_dir(&boot)
            .map_err(|e| format!("{}: {e}", boot.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("vmlinuz-").map(str::to_owned)
            })
            .filter(|rel| dir.join("lib/modules").join(rel).is_dir())
            .collect();
        releases.sort();
        let release = releases
            .pop()
            .ok_or_else(|| format!("no vmlinuz-* with its modules in {}", dir.display()))?;
        Ok(Kernel {
            vmlinuz: boot.join(format!("vmlinuz-{release}")),
            modules: dir.join("lib/modules").join(&release),
            release,
        })
    }

    /// The modules to load for `wanted`, in load order, and the names found built in.
    pub fn modules_for(&self, wanted: &[&str]) -> Result<(Vec<Module>, Vec<String>), String> {
        let builtin_list = fs::read_to_string(self.modules.join("modules.builtin"))
            .map_err(|e| format!("modules.builtin: {e}"))?;
        let builtin: Vec<String> = builtin_list.lines().map(module_name).collect();
        let mut files = Vec::new();
        collect_ko(&self.modules.join("kernel"), &mut files)
            .map_err(|e| format!("{}: {e}", self.modules.display()))?;
        let mut order = Vec::new();
        let mut built_in = Vec::new();
        for name in wanted {
            self.resolve(name, &builtin, &files, &mut order, &mut built_in, 0)?;
        }
        Ok((order, built_in))
    }

    fn resolve(
        &self,
        name: &str,
        builtin: &[String],
        files: &[PathBuf],
        order: &mut Vec<Module>,
        built_in: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > 16 {
            return Err(format!("module dependency loop at {name}"));
        }
        if order.iter().any(|m| m.name == name) || built_in.iter().any(|b| b == name) {
            return Ok(());
        }
        if builtin.iter().any(|b| b == name) {
            built_in.push(name.to_owned());
            return Ok(());
        }
        let path = files
            .iter()
            .find(|p| module_name(&p.to_string_lossy()) == name)
            .ok_or_else(|| format!("module {name}: neither built in nor a .ko"))?;
        let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for dep in modinfo_depends(&bytes) {
            self.resolve(&dep, builtin, files, order, built_in, depth + 1)?;
        }
        order.push(Module {
            name: name.to_owned(),
            bytes,
        });
        Ok(())
    }
}

/// One loadable module, read.
pub struct Module {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// `kernel/drivers/char/virtio_console.ko` -> `virtio_console` (modprobe treats - and _
/// alike).
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

fn collect_ko(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_ko(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "ko") {
            out.push(path);
        }
    }
    Ok(())
}

/// The `depends=` field of a module's .modinfo section: NUL-separated `key=value`
/// strings, so a byte search finds it without an ELF parser. Host kmod is not needed.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// True when the ELF file at `path` (32- or 64-bit) has no program interpreter: a
/// static binary, which is all the busybox guest can run.
pub fn is_static_elf(path: &Path) -> Result<bool, String> {
    let b = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = || format!("{}: not an ELF file", path.display());
    if b.len() < 52 || &b[..4] != b"\x7fELF" {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = match b[4] {
        1 => (u32_at(28), u16_at(42), u16_at(44)),
        2 if b.len() >= 64 => (
            u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize,
            u16_at(54),
            u16_at(56),
        ),
        _ => return Err(bad()),
    };
    const PT_INTERP: usize = 3;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > b.len() {
            return Err(format!("{}: truncated program headers", path.display()));
        }
        if u32_at(o) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A newc ("070701") cpio archive, the format the kernel unpacks as initramfs. Every
/// entry is owned by root; the archive is left uncompressed.
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    pub fn new() -> Cpio {
        Cpio {
            out: Vec::new(),
            ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.ino += 1;
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, b"");
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, data);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes());
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, b"");
        self.out
    }
}

/// The guest's files, besides busybox, the agent and the modules.
const INIT: &str = include_str!("init.sh");
const MONITOR: &str = include_str!("monitor.sh");
const SHUTDOWN: &str = include_str!("shutdown.sh");
const CHPASSWD: &str = include_str!("chpasswd.sh");

/// What goes into the guest, read from the host.
pub struct Parts<'a> {
    pub busybox: &'a Path,
    pub agent: &'a Path,
    pub modules: &'a [Module],
    pub hostname: &'a str,
    /// Appended to the agent's command line by the init script.
    pub agent_args: &'a str,
}

/// Builds the initramfs.
pub fn initramfs(p: &Parts) -> Result<Vec<u8>, String> {
    let read = |path: &Path| fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut c = Cpio::new();
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "var",
        "root",
        "mnt",
        "mnt/data",
        "etc",
        "etc/vm",
        "lib",
        "lib/modules",
    ] {
        c.dir(d);
    }
    c.file("bin/busybox", 0o755, &read(p.busybox)?);
    c.file("usr/sbin/qemu-ga", 0o755, &read(p.agent)?);
    c.file("init", 0o755, INIT.as_bytes());
    c.file("bin/vm-monitor", 0o755, MONITOR.as_bytes());
    c.file("sbin/shutdown", 0o755, SHUTDOWN.as_bytes());
    c.file("usr/sbin/chpasswd", 0o755, CHPASSWD.as_bytes());
    let mut load = String::new();
    for m in p.modules {
        c.file(&format!("lib/modules/{}.ko", m.name), 0o644, &m.bytes);
        load.push_str(&m.name);
        load.push('\n');
    }
    c.file("etc/vm/modules", 0o644, load.as_bytes());
    c.file("etc/vm/agent-args", 0o644, p.agent_args.as_bytes());
    c.file(
        "etc/hostname",
        0o644,
        format!("{}\n", p.hostname).as_bytes(),
    );
    c.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nvmuser:x:1000:1000:VM test user:/home/vmuser:/bin/sh\n",
    );
    c.file("etc/group", 0o644, b"root:x:0:\nvmuser:x:1000:\n");
    c.file(
        "etc/shadow",
        0o600,
        b"root:*:20000:0:99999:7:::\nvmuser:*:20000:0:99999:7:::\n",
    );
    c.file("etc/os-release", 0o644, OS_RELEASE.as_bytes());
    c.symlink("etc/mtab", "/proc/self/mounts");
    Ok(c.finish())
}

/// The guest's /etc/os-release; the osinfo check compares the agent's reply with it.
pub const OS_RELEASE: &str = "PRETTY_NAME=\"qga-bc test VM\"\nNAME=\"qga-bc test VM\"\nID=qgavm\nVERSION_ID=\"8\"\nVERSION=\"8 (issue 8)\"\n";

/// A sparse file of `mib` MiB formatted as ext4 with label `label`.
pub fn ext4_disk(path: &Path, mib: u64, label: &str) -> Result<(), String> {
    let f = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(mib << 20).map_err(|e| e.to_string())?;
    drop(f);
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label])
        .arg(path)
        .output()
        .map_err(|e| format!("mkfs.ext4: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_depends_reads_the_nul_separated_field() {
        let ko = b"\x7fELF\0license=GPL\0depends=virtio_ring,virtio\0intree=Y\0";
        assert_eq!(modinfo_depends(ko), ["virtio_ring", "virtio"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn module_names_from_paths() {
        assert_eq!(
            module_name("kernel/drivers/char/virtio_console.ko"),
            "virtio_console"
        );
        assert_eq!(
            module_name("kernel/crypto/crc32c-generic.ko.xz"),
            "crc32c_generic"
        );
    }

    #[test]
    fn cpio_entries_are_four_byte_aligned() {
        let mut c = Cpio::new();
        c.file("a", 0o644, b"xyz");
        let out = c.finish();
        assert_eq!(&out[..6], b"070701");
        assert_eq!(out.len() % 4, 0);
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
