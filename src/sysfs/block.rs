//! Block devices in sysfs: what qemu-ga learns from sysfs and libudev, read from the
//! files alone (no libudev): /sys/block, /sys/dev/block/M:m, a device's `uevent`
//! (DEVNAME), `dm/name`, `slaves/`, `serial`, and the PCI path and `driver` links of
//! the device directory. Paths are resolved below the root, so tests use fixture trees.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::Error;

/// A disk's bus, as qemu-ga's GuestDiskBusType names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BusType {
    Ide,
    Scsi,
    Virtio,
    Usb,
    Sata,
    Nvme,
    Unknown,
}

/// PCI address of the disk's controller; -1 in each field when it has none (qemu-ga).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PciAddress {
    pub domain: i64,
    pub bus: i64,
    pub slot: i64,
    pub function: i64,
}

impl PciAddress {
    const NONE: PciAddress = PciAddress {
        domain: -1,
        bus: -1,
        slot: -1,
        function: -1,
    };
}

/// GuestDiskAddress: libvirt requires `pci-controller`, `bus`, `target` and `unit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DiskAddress {
    pub pci_controller: PciAddress,
    pub bus_type: BusType,
    pub bus: i64,
    pub target: i64,
    pub unit: i64,
    /// udev's ID_SERIAL where sysfs has it (virtio-blk `serial`, NVMe model_serial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The device node ("/dev/vda1"), from the device's uevent DEVNAME.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
}

/// The context's root, canonical, as [`Device::resolve`] wants it.
pub fn canonical_root(ctx: &Ctx) -> Result<PathBuf, Error> {
    std::fs::canonicalize(&ctx.root)
        .map_err(|e| Error::io(format!("realpath(\"{}\")", ctx.root.display()), e))
}

/// PCI drivers whose disks qemu-ga can address.
const DRIVERS: &[&str] = &[
    "ata_piix",
    "sym53c8xx",
    "virtio-pci",
    "ahci",
    "nvme",
    "xhci_hcd",
    "ehci-pci",
];

/// A block device's sysfs directory, symlinks resolved.
#[derive(Debug, Clone)]
pub struct Device {
    /// The directory on this machine.
    pub dir: PathBuf,
    /// The same below the root: "/sys/devices/pci0000:00/0000:00:05.0/virtio2/block/vda".
    pub path: String,
}

impl Device {
    /// Resolves `link` (a path like "/sys/dev/block/252:1") below `root` as realpath
    /// does; `root` must be canonical.
    pub fn resolve(root: &Path, link: &Path) -> io::Result<Device> {
        let dir = std::fs::canonicalize(link)?;
        let rel = dir
            .strip_prefix(root)
            .map_err(|_| io::Error::from_raw_os_error(libc::EXDEV))?;
        Ok(Device {
            path: format!("/{}", rel.to_string_lossy()),
            dir,
        })
    }

    /// The kernel's name: the directory's basename ("vda1", "dm-0").
    pub fn name(&self) -> String {
        basename(&self.path).to_string()
    }

    /// dm, md, loop, zram: no hardware of their own (qemu-ga `is_disk_virtual`).
    pub fn is_virtual(&self) -> bool {
        self.path.contains("/devices/virtual/block/")
    }

    fn attr(&self, name: &str) -> Option<String> {
        let text = crate::whole_file::read_to_string(&self.dir.join(name)).ok()?;
        Some(text.trim().to_string())
    }

    /// The device node udev makes: "/dev/" and DEVNAME from `uevent`.
    pub fn devnode(&self) -> Option<String> {
        let uevent = crate::whole_file::read_to_string(&self.dir.join("uevent")).ok()?;
        uevent
            .lines()
            .find_map(|l| l.strip_prefix("DEVNAME="))
            .map(|n| format!("/dev/{n}"))
    }

    /// The device-mapper name udev reports as DM_NAME ("vg0-root").
    pub fn dm_name(&self) -> Option<String> {
        self.attr("dm/name").filter(|n| !n.is_empty())
    }

    /// The sorted names in `slaves/`, or None without that directory.
    pub fn slaves(&self) -> Option<Vec<String>> {
        let rd = std::fs::read_dir(self.dir.join("slaves")).ok()?;
        Some(sorted_names(rd, |t| t.is_symlink()))
    }

    /// Size in 512-byte sectors.
    pub fn size(&self) -> Option<u64> {
        self.attr("size")?.parse().ok()
    }

    /// The subdirectories that are partitions of this disk: "<disk><n>" or
    /// "<disk>p<n>" (qemu-ga `get_disk_partitions`), sorted.
    pub fn partitions(&self) -> Vec<Device> {
        let disk = self.name();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        sorted_names(rd, |t| t.is_dir())
            .into_iter()
            .filter(|n| {
                let rest = n.strip_prefix(disk.as_str()).unwrap_or("");
                let rest = rest.strip_prefix('p').unwrap_or(rest);
                n.len() > disk.len() && rest.starts_with(|c: char| c.is_ascii_digit())
            })
            .map(|n| Device {
                dir: self.dir.join(&n),
                path: format!("{}/{n}", self.path),
            })
            .collect()
    }

    /// udev's ID_SERIAL for the buses whose serial sysfs shows (a partition has its
    /// disk's): virtio-blk's `serial` attribute, NVMe's "<model>_<serial>". SCSI and
    /// ATA serials come from udev's scsi_id/ata_id over SG_IO and are not reported.
    pub fn serial(&self) -> Option<String> {
        let disk = if self.dir.join("partition").exists() {
            self.dir.parent()?.to_path_buf()
        } else {
            self.dir.clone()
        };
        let read = |rel: &str| {
            crate::whole_file::read_to_string(&disk.join(rel))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        if self.path.contains("/virtio") && !self.path.contains("/target") {
            return virtio_serial(&disk, || read("serial"));
        }
        if self.path.contains("/nvme/") {
            let model = read("device/model")?;
            let serial = read("device/serial")?;
            return Some(format!("{model}_{serial}"));
        }
        None
    }
}

/// A sysfs directory's identity: inode and change time, so that a disk plugged in where
/// another was (a new directory at the same path, maybe with a reused inode number on old
/// kernels) is not taken for it.
type DirId = (u64, u64, i64, i64);

/// Serials already read, by directory, for [`virtio_serial`].
static SERIALS: Mutex<Vec<(DirId, Option<String>)>> = Mutex::new(Vec::new());
/// Disks whose serials are kept: more are forgotten all at once.
const SERIALS_KEPT: usize = 256;

/// virtio-blk's `serial`, read once per disk: reading the attribute sends the device a
/// request (VIRTIO_BLK_T_GET_ID) and waits for it, a third of guest-get-fsinfo's CPU
/// per call, and a disk's serial is fixed when it is created.
fn virtio_serial(disk: &Path, read: impl FnOnce() -> Option<String>) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(disk) else {
        return read();
    };
    let id = (m.dev(), m.ino(), m.ctime(), m.ctime_nsec());
    let mut kept = SERIALS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, serial)) = kept.iter().find(|(k, _)| *k == id) {
        return serial.clone();
    }
    let serial = read();
    if kept.len() >= SERIALS_KEPT {
        kept.clear();
    }
    kept.push((id, serial.clone()));
    serial
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn sorted_names(rd: std::fs::ReadDir, keep: impl Fn(std::fs::FileType) -> bool) -> Vec<String> {
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(&keep))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The address of a real (not virtual) device, or None when qemu-ga would report
/// none: no recognised bus, no device node and no serial
/// (`build_guest_fsinfo_for_real_device`).
pub fn address(root: &Path, dev: &Device) -> Option<DiskAddress> {
    let mut disk = DiskAddress {
        pci_controller: PciAddress::NONE,
        bus_type: BusType::Unknown,
        bus: 0,
        target: 0,
        unit: 0,
        serial: dev.serial(),
        dev: dev.devnode(),
    };
    let known = if dev.path.contains("/devices/pci") {
        pci_address(root, &dev.path, &mut disk)
    } else if dev.path.contains("/virtio") {
        non_pci_virtio(&dev.path, &mut disk)
    } else {
        false
    };
    (known || disk.dev.is_some() || disk.serial.is_some()).then_some(disk)
}

/// "dddd:bb:ss.f" at the start of `s` (hex fields, as sscanf's "%x:%x:%x.%x"), and
/// its length.
fn pci_component(s: &str) -> Option<([u32; 4], usize)> {
    let end = s.find('/').unwrap_or(s.len());
    let c = &s[..end];
    let (dbs, f) = c.rsplit_once('.')?;
    let mut it = dbs.split(':');
    let hex = |x: &str| u32::from_str_radix(x, 16).ok();
    let v = [
        hex(it.next()?)?,
        hex(it.next()?)?,
        hex(it.next()?)?,
        hex(f)?,
    ];
    it.next().is_none().then_some((v, end))
}

/// The channel, target and lun of ".../targetH:C:T/H:C:T:L/..."
fn scsi_target(path: &str) -> Option<[u32; 3]> {
    let p = path.find("/target")?;
    let rest = &path[p + 7..];
    let (_, hctl) = rest.split_once('/')?;
    let hctl = hctl.split('/').next()?;
    let n: Vec<u32> = hctl
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    (n.len() == 4).then(|| [n[1], n[2], n[3]])
}

/// The number at the start of `s` (sscanf "%u").
fn leading_number(s: &str) -> Option<u32> {
    let digits: &str = &s[..s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len())];
    digits.parse().ok()
}

/// The sorted numbers of the "ataN" or "hostN" entries of `dir` (at most 8, as
/// qemu-ga's `build_hosts`).
fn hosts(dir: &Path, ata: bool) -> Vec<u32> {
    let prefix = if ata { "ata" } else { "host" };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut n: Vec<u32> = rd
        .flatten()
        .filter_map(|e| leading_number(e.file_name().to_str()?.strip_prefix(prefix)?))
        .take(8)
        .collect();
    n.sort();
    n
}

/// Disks on a PCI controller (`build_guest_fsinfo_for_pci_dev`): the controller is the
/// first device on the path, walking down bridges, whose driver qemu-ga knows.
fn pci_address(root: &Path, path: &str, disk: &mut DiskAddress) -> bool {
    let Some(p) = path.find("/devices/pci") else {
        return false;
    };
    // "/devices/pci0000:00/0000:00:05.0/...": skip the root bus name.
    let after_bus = p + 12;
    let Some(slash) = path[after_bus..].find('/') else {
        return false;
    };
    let mut at = after_bus + slash + 1;
    let Some((mut pci, len)) = pci_component(&path[at..]) else {
        return false;
    };
    at += len;
    let driver = loop {
        let link = root.join(path[1..at].to_string() + "/driver");
        let driver = std::fs::read_link(link)
            .ok()
            .and_then(|t| Some(t.file_name()?.to_string_lossy().into_owned()));
        if let Some(d) = driver.filter(|d| DRIVERS.contains(&d.as_str())) {
            break d;
        }
        match path[at..].strip_prefix('/').and_then(pci_component) {
            Some((next, len)) => {
                pci = next;
                at += 1 + len;
            }
            None => return false,
        }
    };
    let tgt = scsi_target(path);
    let (host_at, ata) = match path.find("/ata") {
        Some(i) => (Some(i), true),
        None => (path.find("/host"), false),
    };
    let host = host_at.and_then(|i| {
        let n = leading_number(&path[i + if ata { 4 } else { 5 }..])?;
        Some((n, hosts(&root.join(&path[1..i]), ata)))
    });
    disk.pci_controller = PciAddress {
        domain: pci[0].into(),
        bus: pci[1].into(),
        slot: pci[2].into(),
        function: pci[3].into(),
    };
    let index = |host: &Option<(u32, Vec<u32>)>| {
        let (n, all) = host.as_ref()?;
        all.iter().position(|h| h == n).map(|i| i as i64)
    };
    match driver.as_str() {
        // One host per IDE bus; target*:0:<unit>:0.
        "ata_piix" => match (index(&host), tgt) {
            (Some(bus), Some(t)) => {
                disk.bus_type = BusType::Ide;
                disk.bus = bus;
                disk.unit = t[1].into();
            }
            _ => return false,
        },
        // LSI Logic SCSI: target*:0:<unit>:0.
        "sym53c8xx" => match tgt {
            Some(t) => {
                disk.bus_type = BusType::Scsi;
                disk.unit = t[1].into();
            }
            None => return false,
        },
        "virtio-pci" => match tgt {
            // virtio-scsi: target*:0:0:<unit>.
            Some(t) => {
                disk.bus_type = BusType::Scsi;
                disk.unit = t[2].into();
            }
            // virtio-blk: one disk per device.
            None => disk.bus_type = BusType::Virtio,
        },
        // AHCI: one host per port, the port is the unit.
        "ahci" => match (index(&host), tgt) {
            (Some(unit), Some(_)) => {
                disk.bus_type = BusType::Sata;
                disk.unit = unit;
            }
            _ => return false,
        },
        "nvme" => disk.bus_type = BusType::Nvme,
        _ => disk.bus_type = BusType::Usb,
    }
    true
}

/// virtio without PCI (virtio-mmio on ARM): virtio-scsi's target numbers, or one disk
/// per virtio-blk device (`build_guest_fsinfo_for_nonpci_virtio`).
fn non_pci_virtio(path: &str, disk: &mut DiskAddress) -> bool {
    if !path.contains("/block") {
        return false;
    }
    match scsi_target(path) {
        Some(t) => {
            disk.bus_type = BusType::Scsi;
            disk.bus = t[0].into();
            disk.target = t[1].into();
            disk.unit = t[2].into();
        }
        None => disk.bus_type = BusType::Virtio,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_components_and_scsi_targets() {
        assert_eq!(
            pci_component("0000:00:1f.2/ata3"),
            Some(([0, 0, 0x1f, 2], 12))
        );
        assert_eq!(pci_component("virtio1/block"), None);
        assert_eq!(
            scsi_target(
                "/sys/devices/pci0000:00/0000:00:04.0/virtio1/host2/target2:0:3/2:0:3:7/block/sda"
            ),
            Some([0, 3, 7])
        );
        assert_eq!(
            scsi_target("/sys/devices/pci0000:00/0000:00:05.0/virtio2/block/vda"),
            None
        );
    }
}
