//! guest-get-fsinfo, guest-get-disks, guest-get-diskstats and guest-fstrim through the
//! real binary on the sysfs fixture trees of each bus (tests/fixtures/<bus>/, see the
//! README in each), with the exact replies libvirt would parse; the bounded statvfs of
//! FUSE and network mounts; FITRIM on a loop-mounted ext4 (root).

mod common;

use std::fs;
use std::path::Path;

use common::{fixture, Agent, LoopMount, TempDir};
use qga::commands::{fs as fscmd, NoArgs};
use qga::ctx::Ctx;
use qga::job::Step;
use serde_json::{json, Value};

/// One disk address: bus type, PCI controller (domain, bus, slot, function), bus,
/// target, unit, serial, device node.
type Addr = (
    &'static str,
    [i64; 4],
    [i64; 3],
    Option<&'static str>,
    &'static str,
);

fn addr((bus_type, pci, btu, serial, dev): Addr) -> Value {
    let mut a = json!({
        "bus-type": bus_type,
        "pci-controller": {"domain": pci[0], "bus": pci[1], "slot": pci[2], "function": pci[3]},
        "bus": btu[0], "target": btu[1], "unit": btu[2],
        "dev": dev,
    });
    if let Some(s) = serial {
        a["serial"] = json!(s);
    }
    a
}

/// The reply with the sizes of "/" (the fixture's root is a real directory, measured
/// on this machine) checked for type and removed; other mount points do not exist in
/// the fixtures, so statvfs fails and they have no sizes.
fn fsinfo(root: &Path) -> Vec<Value> {
    let agent = Agent::with_sysroot(root, &[]);
    let got = agent.call("guest-get-fsinfo", json!({}));
    got.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let o = e.as_object_mut().unwrap();
            let sizes = ["used-bytes", "total-bytes", "total-bytes-privileged"];
            if o["mountpoint"] == "/" {
                for k in sizes {
                    assert!(o.remove(k).is_some_and(|v| v.is_u64()), "{k} in {got}");
                }
            } else {
                assert!(sizes.iter().all(|k| !o.contains_key(*k)), "{got}");
            }
            e
        })
        .collect()
}

fn fs_entry(mountpoint: &str, name: &str, fstype: &str, disks: &[Addr]) -> Value {
    json!({
        "mountpoint": mountpoint, "name": name, "type": fstype,
        "disk": disks.iter().copied().map(addr).collect::<Vec<_>>(),
    })
}

fn disk(name: &str, deps: Option<&[&str]>, address: Option<Addr>, alias: Option<&str>) -> Value {
    let mut d = json!({"name": name, "partition": false});
    if let Some(deps) = deps {
        d["dependencies"] = json!(deps);
    }
    if let Some(a) = address {
        d["address"] = addr(a);
    }
    if let Some(a) = alias {
        d["alias"] = json!(a);
    }
    d
}

fn partition(name: &str, disk: &str) -> Value {
    json!({"name": name, "partition": true, "dependencies": [disk]})
}

fn disks(root: &Path) -> Value {
    Agent::with_sysroot(root, &[]).call("guest-get-disks", json!({}))
}

const VDA: [i64; 4] = [0, 0, 2, 0];
const NONE: [i64; 3] = [0, 0, 0];

#[test]
fn virtio_blk_partitions_and_a_disk_behind_a_pcie_bridge() {
    let root = fixture("virtio-blk");
    let vdb = (
        "virtio",
        [0, 1, 0, 0],
        NONE,
        Some("data-disk-1"),
        "/dev/vdb",
    );
    let vda = |dev| ("virtio", VDA, NONE, Some("overlayblk"), dev);
    // Reverse mount order; the bind mount of vdb (/srv/www) is not repeated.
    assert_eq!(
        fsinfo(&root),
        [
            fs_entry("/mnt/data", "vdb", "ext4", &[vdb]),
            fs_entry("/boot/efi", "vda15", "vfat", &[vda("/dev/vda15")]),
            fs_entry("/", "vda1", "ext4", &[vda("/dev/vda1")]),
        ]
    );
    assert_eq!(
        disks(&root),
        json!([
            disk("/dev/vdb", Some(&[]), Some(vdb), None),
            partition("/dev/vda15", "/dev/vda"),
            partition("/dev/vda1", "/dev/vda"),
            disk("/dev/vda", Some(&[]), Some(vda("/dev/vda")), None),
        ])
    );
}

#[test]
fn virtio_scsi_luns_are_units() {
    let root = fixture("virtio-scsi");
    let sd = |unit, dev| ("scsi", [0, 0, 4, 0], [0, 0, unit], None, dev);
    assert_eq!(
        fsinfo(&root),
        [
            fs_entry("/var/lib/data", "sdb", "ext4", &[sd(1, "/dev/sdb")]),
            fs_entry("/", "sda1", "xfs", &[sd(0, "/dev/sda1")]),
        ]
    );
    assert_eq!(
        disks(&root),
        json!([
            disk("/dev/sdb", Some(&[]), Some(sd(1, "/dev/sdb")), None),
            partition("/dev/sda1", "/dev/sda"),
            disk("/dev/sda", Some(&[]), Some(sd(0, "/dev/sda")), None),
        ])
    );
}

#[test]
fn sata_port_is_the_unit_and_ide_channel_the_bus() {
    let root = fixture("sata");
    let ide = ("ide", [0, 0, 1, 1], [1, 0, 1], None, "/dev/sdb");
    let sata = |dev| ("sata", [0, 0, 0x1f, 2], [0, 0, 2], None, dev);
    assert_eq!(
        fsinfo(&root),
        [
            fs_entry("/mnt/ide", "sdb", "ext2", &[ide]),
            fs_entry("/boot", "sda1", "ext4", &[sata("/dev/sda1")]),
            fs_entry("/", "sda2", "ext4", &[sata("/dev/sda2")]),
        ]
    );
    // sr0 has no medium (size 0): not a disk.
    assert_eq!(
        disks(&root),
        json!([
            disk("/dev/sdb", Some(&[]), Some(ide), None),
            partition("/dev/sda2", "/dev/sda"),
            partition("/dev/sda1", "/dev/sda"),
            disk("/dev/sda", Some(&[]), Some(sata("/dev/sda")), None),
        ])
    );
}

#[test]
fn nvme_namespace_with_model_and_serial() {
    let root = fixture("nvme");
    let nvme = |dev| {
        let serial = Some("QEMU NVMe Ctrl_deadbeef");
        ("nvme", [0, 0, 6, 0], NONE, serial, dev)
    };
    // Under native multipath the namespace head lives in /devices/virtual/nvme-subsystem:
    // neither a PCI path nor a virtual block device, so qemu-ga reports its node with an
    // unknown bus and a PCI address of -1s.
    let head = ("unknown", [-1; 4], NONE, None, "/dev/nvme1n1");
    assert_eq!(
        fsinfo(&root),
        [
            fs_entry("/srv", "nvme1n1", "ext4", &[head]),
            fs_entry("/", "nvme0n1p1", "ext4", &[nvme("/dev/nvme0n1p1")]),
        ]
    );
    // No device node below the fixture's root: no SMART log.
    assert_eq!(
        disks(&root),
        json!([
            disk("/dev/nvme1n1", Some(&[]), Some(head), None),
            partition("/dev/nvme0n1p1", "/dev/nvme0n1"),
            disk("/dev/nvme0n1", Some(&[]), Some(nvme("/dev/nvme0n1")), None),
        ])
    );
}

#[test]
fn usb_stick_on_xhci() {
    let root = fixture("usb");
    let usb = |dev| ("usb", [0, 0, 5, 0], NONE, None, dev);
    // The overlay root has an anonymous device (major 0): not listed.
    assert_eq!(
        fsinfo(&root),
        [fs_entry("/media/usb", "sda1", "vfat", &[usb("/dev/sda1")])]
    );
    assert_eq!(
        disks(&root),
        json!([
            partition("/dev/sda1", "/dev/sda"),
            disk("/dev/sda", Some(&[]), Some(usb("/dev/sda")), None),
        ])
    );
}

#[test]
fn lvm_volume_reports_the_disks_under_it() {
    let root = fixture("lvm");
    let vda = |dev| ("virtio", VDA, NONE, Some("os-disk"), dev);
    let vdb = ("virtio", [0, 0, 5, 0], NONE, None, "/dev/vdb");
    assert_eq!(
        fsinfo(&root),
        [
            fs_entry("/boot", "vda1", "xfs", &[vda("/dev/vda1")]),
            // dm-0's slaves vda2 and vdb, prepended as qemu-ga does.
            fs_entry("/", "dm-0", "xfs", &[vdb, vda("/dev/vda2")]),
        ]
    );
    assert_eq!(
        disks(&root),
        json!([
            disk("/dev/vdb", Some(&[]), Some(vdb), None),
            partition("/dev/vda2", "/dev/vda"),
            partition("/dev/vda1", "/dev/vda"),
            disk("/dev/vda", Some(&[]), Some(vda("/dev/vda")), None),
            disk("/dev/dm-1", Some(&["/dev/vda2"]), None, Some("vg0-swap")),
            disk(
                "/dev/dm-0",
                Some(&["/dev/vdb", "/dev/vda2"]),
                None,
                Some("vg0-root")
            ),
        ])
    );
}

/// A root with only a mount table (and nothing else below it).
fn mounts_root(tag: &str, mountinfo: &str) -> TempDir {
    let dir = TempDir::new(tag);
    fs::create_dir_all(dir.join("proc/self")).unwrap();
    fs::write(dir.join("proc/self/mountinfo"), mountinfo).unwrap();
    dir
}

#[test]
fn fuse_mounts_are_measured_in_a_bounded_child() {
    // fuseblk (ntfs-3g) has a real device number, so qemu-ga lists it, and its statvfs
    // goes to the FUSE daemon: it must go through the child with a deadline. nfs has an
    // anonymous device and is not listed at all.
    let root = mounts_root(
        "fsinfo-fuse",
        "40 1 8:17 / /mnt/win rw - fuseblk /dev/sdb1 rw,user_id=0\n\
         41 1 0:50 / /mnt/nfs rw - nfs4 srv:/export rw,vers=4.2\n",
    );
    let c = Ctx::with_root(root.path());
    let step = fscmd::get_fsinfo(&c, NoArgs {}).unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    // The child answers ENOENT (no such mount point below the root): no sizes, and no
    // sysfs link either, so the name is the device number as qemu-ga makes it.
    let got = step.finish(&c).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].name.as_str(), got[0].used_bytes), ("8:17", None));
    assert!(got[0].disk.is_empty());

    let agent = Agent::with_sysroot(root.path(), &[]);
    assert_eq!(
        agent.call("guest-get-fsinfo", json!({})),
        json!([{"name": "8:17", "mountpoint": "/mnt/win", "type": "fuseblk", "disk": []}])
    );
}

#[test]
fn local_mounts_are_measured_in_the_agent() {
    let root = mounts_root("fsinfo-local", "27 1 254:1 / / rw - ext4 /dev/vda1 rw\n");
    let c = Ctx::with_root(root.path());
    let step = fscmd::get_fsinfo(&c, NoArgs {}).unwrap();
    let Step::Done(got) = step else {
        panic!("ext4 measured in a child")
    };
    assert!(got[0].total_bytes.is_some_and(|t| t > 0), "{got:?}");
}

#[test]
fn mounts_fallback_without_mountinfo() {
    // Before 2.6.26 there is no mountinfo: /proc/self/mounts, sources that are paths.
    let dir = TempDir::new("fsinfo-mtab");
    fs::create_dir_all(dir.join("proc/self")).unwrap();
    fs::write(
        dir.join("proc/self/mounts"),
        "rootfs / rootfs rw 0 0\n/dev/missing /data ext4 rw 0 0\nproc /proc proc rw 0 0\n",
    )
    .unwrap();
    let agent = Agent::with_sysroot(dir.path(), &[]);
    assert_eq!(
        agent.call("guest-get-fsinfo", json!({})),
        json!([{"name": "0:0", "mountpoint": "/data", "type": "ext4", "disk": []}])
    );
    fs::remove_file(dir.join("proc/self/mounts")).unwrap();
    let reply = agent.request(r#"{"execute":"guest-get-fsinfo"}"#);
    assert_eq!(
        reply["error"]["desc"],
        "failed to open mtab file: '/proc/self/mounts'"
    );
}

#[test]
fn fstrim_reports_each_path() {
    // Neither mount point exists below the root; the FUSE one is not even opened.
    let root = mounts_root(
        "fstrim-paths",
        "30 1 254:16 / /mnt/data rw - ext4 /dev/vdb rw\n\
         40 1 8:17 / /mnt/win rw - fuseblk /dev/sdb1 rw\n",
    );
    let agent = Agent::with_sysroot(root.path(), &[]);
    assert_eq!(
        agent.call("guest-fstrim", json!({"minimum": 4096})),
        json!({"paths": [
            {"path": "/mnt/win", "error": "trim not supported"},
            {"path": "/mnt/data", "error": "failed to open: No such file or directory"},
        ]})
    );
    let reply = agent.request(r#"{"execute":"guest-fstrim","arguments":{"minimum":"x"}}"#);
    assert_eq!(
        reply["error"]["desc"],
        "Invalid parameter type for 'minimum', expected: integer"
    );
}

#[test]
fn diskstats_in_each_form() {
    let dir = TempDir::new("diskstats");
    fs::create_dir_all(dir.join("proc")).unwrap();
    fs::write(
        dir.join("proc/diskstats"),
        // 14 fields (2.6.25..4.17), 18 (4.18+: discard), 20 (5.5+: flush), garbage.
        "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n\
         \x20 253       0 dm-0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n\
         \x20 259       0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n\
         \x20 8 1 sda1 x\n",
    )
    .unwrap();
    let agent = Agent::with_sysroot(dir.path(), &[]);
    let base = json!({
        "read-ios": 1, "read-merges": 2, "read-sectors": 3, "read-ticks": 4,
        "write-ios": 5, "write-merges": 6, "write-sectors": 7, "write-ticks": 8,
        "ios-pgr": 9, "total-ticks": 10, "weight-ticks": 11,
    });
    let with = |extras: &[&Value]| {
        let mut s = base.clone();
        for e in extras {
            s.as_object_mut()
                .unwrap()
                .extend(e.as_object().unwrap().clone());
        }
        s
    };
    let discard = json!({"discard-ios": 12, "discard-merges": 13, "discard-sectors": 14, "discard-ticks": 15});
    let flush = json!({"flush-ios": 16, "flush-ticks": 17});
    assert_eq!(
        agent.call("guest-get-diskstats", json!({})),
        json!([
            {"name": "sda", "major": 8, "minor": 0, "stats": base},
            {"name": "dm-0", "major": 253, "minor": 0, "stats": with(&[&discard])},
            {"name": "nvme0n1", "major": 259, "minor": 0, "stats": with(&[&discard, &flush])},
        ])
    );
    fs::remove_file(dir.join("proc/diskstats")).unwrap();
    let reply = agent.request(r#"{"execute":"guest-get-diskstats"}"#);
    assert_eq!(
        reply["error"]["desc"],
        "Could not open '/proc/diskstats': No such file or directory"
    );
}

#[test]
#[ignore = "needs root"]
fn fstrim_trims_a_loop_mounted_ext4() {
    let dir = TempDir::new("fstrim-loop");
    let mnt = dir.join("root/mnt/loop");
    let _guard = LoopMount::ext4(&dir, 64, &mnt, "loop");
    // The agent's root lists only the loop mount, so nothing else is ever trimmed.
    let dev = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == mnt.to_str())
        .map(|l| l.split(' ').nth(2).unwrap().to_string())
        .expect("the loop mount in mountinfo");
    let root = dir.join("root");
    fs::create_dir_all(root.join("proc/self")).unwrap();
    fs::write(
        root.join("proc/self/mountinfo"),
        format!("90 1 {dev} / /mnt/loop rw,relatime - ext4 /dev/loop rw\n"),
    )
    .unwrap();
    let agent = Agent::with_sysroot(&root, &[]);
    let got = agent.call("guest-fstrim", json!({"minimum": 0}));
    let paths = got["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 1, "{got}");
    assert_eq!(paths[0]["path"], "/mnt/loop", "{got}");
    assert_eq!(paths[0]["minimum"], 0, "{got}");
    // A fresh filesystem has most of its 64 MiB free.
    let trimmed = paths[0]["trimmed"].as_u64().expect("trimmed");
    assert!(trimmed > 32 << 20, "{got}");
    // A minimum larger than the filesystem: EINVAL from ext4, as qemu-ga reports it.
    assert_eq!(
        agent.call("guest-fstrim", json!({"minimum": -1})),
        json!({"paths": [{"path": "/mnt/loop", "error": "failed to trim: Invalid argument"}]})
    );
    // fsinfo of the same mount: a loop device is virtual, with no disk under it.
    let info = agent.call("guest-get-fsinfo", json!({}));
    let loopname = info[0]["name"].as_str().unwrap();
    assert!(
        loopname.starts_with("loop") || loopname.contains(':'),
        "{info}"
    );
}
