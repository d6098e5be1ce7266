//! Distribution identification (issue 14 items 2, 5 and 6) on real release-file trees
//! (tests/fixtures/releases, origins in its README): python-distro's order, the
//! release-file names mapped to os-release ids, the full release next to VERSION_ID,
//! and `$QGA_OS_RELEASE` through the real binary.

mod common;

use common::{fixture, Agent, TempDir};
use qga::commands::bc_monitor;
use qga::ctx::Ctx;
use qga::distro::{self, Distro};
use serde_json::json;

fn identify(tree: &str) -> Distro {
    distro::identify_with(&Ctx::with_root(fixture(&format!("releases/{tree}"))), None)
}

#[test]
fn release_trees_name_id_and_versions() {
    // (tree, id, name, version-id, full release)
    let table = [
        // Release files only (issue 14 item 5: these had no id, SLES 11 nothing).
        (
            "scientific6",
            "scientific",
            "Scientific Linux",
            "6.4",
            "6.4",
        ),
        (
            "cloudlinux5",
            "cloudlinux",
            "CloudLinux Server",
            "5.11",
            "5.11",
        ),
        (
            "cloudlinux6",
            "cloudlinux",
            "CloudLinux Server",
            "6.8",
            "6.8",
        ),
        (
            "amazon2014",
            "amzn",
            "Amazon Linux AMI",
            "2014.03",
            "2014.03",
        ),
        ("centos5", "centos", "CentOS", "5.11", "5.11"),
        (
            "rhel5",
            "rhel",
            "Red Hat Enterprise Linux Server",
            "5.11",
            "5.11",
        ),
        (
            "rhel6",
            "rhel",
            "Red Hat Enterprise Linux Server",
            "6.5",
            "6.5",
        ),
        (
            "sles11",
            "sles",
            "SUSE Linux Enterprise Server",
            "11.3",
            "11.3",
        ),
        // lsb-release before the release files, as python-distro: its id and name.
        (
            "mandriva2011",
            "mandrivalinux",
            "MandrivaLinux",
            "2011.0",
            "2011.0",
        ),
        // os-release answers; the release file still gives the full release.
        ("centos7", "centos", "CentOS Linux", "7", "7.1.1503"),
        ("oracle7", "ol", "Oracle Linux Server", "7.5", "7.5"),
        // SL 7.2's own os-release says ID="rhel" (later 7.x say "scientific"): it answers.
        ("scientific7", "rhel", "Scientific Linux", "7.2", "7.2"),
        ("sles12", "sles", "SLES", "12.1", "12.1"),
        ("opensuse42", "opensuse", "openSUSE Leap", "42.1", "42.1"),
        // issue 14 item 5: an empty os-release must not hide centos-release.
        (
            "centos6-empty-os-release",
            "centos",
            "CentOS",
            "6.10",
            "6.10",
        ),
    ];
    for (tree, id, name, version_id, full) in table {
        let d = identify(tree);
        assert_eq!(
            (
                d.id.as_deref(),
                d.name.as_deref(),
                d.version_id.as_deref(),
                d.full_version.as_deref()
            ),
            (Some(id), Some(name), Some(version_id), Some(full)),
            "{tree}"
        );
    }
}

#[test]
fn sles11_pretty_name_and_version_as_sles12_os_release_spells_them() {
    let d = identify("sles11");
    assert_eq!(
        d.pretty_name.as_deref(),
        Some("SUSE Linux Enterprise Server 11 SP3")
    );
    assert_eq!(d.version.as_deref(), Some("11-SP3"));
}

#[test]
fn system_info_on_release_trees() {
    // issue 14 item 5: SLES 11 gave `"os-name": "Linux", "system-version": ""`.
    let table = [
        ("sles11", "SUSE Linux Enterprise Server", "11.3", "11.3"),
        ("centos7", "CentOS Linux", "7.1.1503", "7"),
        ("scientific6", "Scientific Linux", "6.4", "6.4"),
    ];
    for (tree, os, system_version, version_id) in table {
        let ctx = Ctx::with_root(fixture(&format!("releases/{tree}")));
        let s = bc_monitor::system_info(&ctx);
        assert_eq!(
            (
                s.os_name.as_str(),
                s.system_version.as_str(),
                s.version_id.as_str()
            ),
            (os, system_version, version_id),
            "{tree}"
        );
    }
}

#[test]
fn qga_os_release_names_the_only_file_read() {
    let dir = TempDir::new("os-release-env");
    let file = dir.join("os-release");
    std::fs::write(&file, "ID=testos\nNAME=\"Test OS\"\nVERSION_ID=1.2\n").unwrap();
    let ctx = Ctx::with_root(fixture("releases/centos7"));
    let d = distro::identify_with(&ctx, Some(file.as_os_str()));
    assert_eq!(d.id.as_deref(), Some("testos"));
    assert_eq!(d.version_id.as_deref(), Some("1.2"));
    // Not a fallback to the root's files, as in qemu-ga: missing or empty, no distro.
    let missing = dir.join("absent");
    assert_eq!(
        distro::identify_with(&ctx, Some(missing.as_os_str())),
        Distro::default()
    );
    assert_eq!(
        distro::identify_with(&ctx, Some("".as_ref())),
        Distro::default()
    );
}

#[test]
fn qga_os_release_through_the_binary() {
    // issue 14 item 2: upstream's test-qga.c sets QGA_OS_RELEASE to its own file.
    let file = fixture("releases/qga-os-release/test-qga-os-release");
    let agent = Agent::start_with_env(
        &["--sysroot", fixture("centos6").to_str().unwrap()],
        &[("QGA_OS_RELEASE", file.to_str().unwrap())],
    );
    let mut got = agent.call("guest-get-osinfo", json!({}));
    let obj = got.as_object_mut().unwrap();
    for k in ["kernel-release", "kernel-version", "machine"] {
        assert!(obj.remove(k).is_some(), "{k}");
    }
    // test-qga.c's test_qga_guest_get_osinfo expects exactly these.
    assert_eq!(
        got,
        json!({"id": "qemu-ga-test", "name": "QEMU-GA", "pretty-name": "QEMU Guest Agent test",
               "version": "Test 1", "version-id": "1", "variant": "Unit test \"'$`\\ and \\\\ etc.",
               "variant-id": "unit-test"})
    );
}
