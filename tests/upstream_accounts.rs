//! Upstream parity I (issue #4), accounts end to end through the binary:
//! guest-set-user-password with a fake `chpasswd` alone on PATH, and the
//! guest-ssh-*-authorized-keys commands on a home directory in a temporary root.
//! Nothing here touches the test machine's accounts.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{Agent, FakeBin, TempDir};
use serde_json::{json, Value};

fn error_of(agent: &Agent, command: &str, args: Value) -> String {
    let req = json!({"execute": command, "arguments": args});
    let reply = agent.request(&req.to_string());
    reply["error"]["desc"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {reply}"))
        .to_string()
}

fn b64(s: &str) -> String {
    qga::base64::encode(s.as_bytes())
}

/// A root whose /etc/passwd has root and alice; alice's ids are this process's, so
/// chown works whether or not the tests run as root.
fn accounts_root() -> (TempDir, u32, u32) {
    let root = TempDir::new("accounts");
    let meta = std::fs::metadata(root.path()).unwrap();
    let (uid, gid) = (meta.uid(), meta.gid());
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("home/alice")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/bash\nalice:x:{uid}:{gid}:Alice:/home/alice:/bin/bash\n"
        ),
    )
    .unwrap();
    (root, uid, gid)
}

/// The agent on `root` with only the fake programs on PATH, logging verbosely to `log`.
fn agent(root: &Path, bin: &FakeBin, log: &Path) -> Agent {
    // Guard: without the fake, accounts::find_program would find the real chpasswd.
    assert!(bin.dir.join("chpasswd").exists());
    Agent::start_with_env(
        &[
            "--sysroot",
            root.to_str().unwrap(),
            "-v",
            "-l",
            log.to_str().unwrap(),
        ],
        &[("PATH", bin.path())],
    )
}

#[test]
fn password_goes_to_chpasswd_stdin_only() {
    let (root, _, _) = accounts_root();
    let bin = FakeBin::new();
    bin.program("chpasswd", 0);
    let log = root.join("agent.log");
    let agent = agent(root.path(), &bin, &log);
    let password = "S3cret pw:$(id)`x`;|&";
    let args = json!({"username": "alice", "password": b64(password), "crypted": false});
    assert_eq!(agent.call("guest-set-user-password", args), json!({}));
    assert_eq!(bin.stdin_of("chpasswd"), format!("alice:{password}\n"));
    let hash = "$6$salt$abcdefghijklmnopqrstuv";
    let args = json!({"username": "root", "password": b64(hash), "crypted": true});
    assert_eq!(agent.call("guest-set-user-password", args), json!({}));
    assert_eq!(bin.stdin_of("chpasswd"), format!("root:{hash}\n"));
    assert_eq!(bin.calls(), ["chpasswd", "chpasswd -e"]);
    drop(agent);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("guest-set-user-password"), "{logged}");
    assert!(!logged.contains("S3cret") && !logged.contains("$6$salt"));
}

#[test]
fn password_errors_run_nothing() {
    let (root, _, _) = accounts_root();
    let bin = FakeBin::new();
    bin.program("chpasswd", 1);
    let log = root.join("agent.log");
    let agent = agent(root.path(), &bin, &log);
    let set = |user: &str, password: &str| {
        error_of(
            &agent,
            "guest-set-user-password",
            json!({"username": user, "password": password, "crypted": false}),
        )
    };
    assert_eq!(set("nobody2", &b64("pw")), "user 'nobody2' does not exist");
    assert_eq!(
        set("alice", "!!"),
        "Base64 data contains invalid characters"
    );
    assert_eq!(
        set("alice", &b64("a\nb")),
        "forbidden characters in raw password"
    );
    assert_eq!(
        set("al:ice", &b64("pw")),
        "forbidden characters in username"
    );
    assert!(bin.calls().is_empty());
    let failed = set("alice", &b64("pw"));
    assert!(
        failed.starts_with("child process has failed to set user password"),
        "{failed}"
    );
    assert!(!failed.contains("pw\n"));
}

#[test]
fn ssh_keys_add_get_remove_reset() {
    let (root, uid, gid) = accounts_root();
    let agent = Agent::with_sysroot(root.path(), &[]);
    let k1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@host";
    let k2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob@host";
    let get = || {
        agent.call(
            "guest-ssh-get-authorized-keys",
            json!({"username": "alice"}),
        )
    };
    assert_eq!(get(), json!({"keys": []}));
    let add = json!({"username": "alice", "keys": [k1, k2]});
    assert_eq!(
        agent.call("guest-ssh-add-authorized-keys", add.clone()),
        json!({})
    );
    assert_eq!(agent.call("guest-ssh-add-authorized-keys", add), json!({}));
    assert_eq!(get(), json!({"keys": [k1, k2]}));

    let ssh = root.join("home/alice/.ssh");
    let file = ssh.join("authorized_keys");
    let (d, f) = (
        std::fs::metadata(&ssh).unwrap(),
        std::fs::metadata(&file).unwrap(),
    );
    assert_eq!((d.mode() & 0o777, f.mode() & 0o777), (0o700, 0o600));
    assert_eq!((d.uid(), d.gid(), f.uid(), f.gid()), (uid, gid, uid, gid));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("{k1}\n{k2}\n")
    );

    let remove = json!({"username": "alice", "keys": [k1, "ssh-rsa NOTTHERE"]});
    assert_eq!(
        agent.call("guest-ssh-remove-authorized-keys", remove),
        json!({})
    );
    assert_eq!(get(), json!({"keys": [k2]}));
    let reset = json!({"username": "alice", "keys": [k1], "reset": true});
    assert_eq!(
        agent.call("guest-ssh-add-authorized-keys", reset),
        json!({})
    );
    assert_eq!(get(), json!({"keys": [k1]}));
}

#[test]
fn ssh_key_errors() {
    let (root, _, _) = accounts_root();
    let agent = Agent::with_sysroot(root.path(), &[]);
    // Keys are checked before the user, as in qemu-ga.
    assert_eq!(
        error_of(
            &agent,
            "guest-ssh-add-authorized-keys",
            json!({"username": "nobody2", "keys": ["# comment"]})
        ),
        "invalid OpenSSH public key: '# comment'"
    );
    assert_eq!(
        error_of(
            &agent,
            "guest-ssh-get-authorized-keys",
            json!({"username": "nobody2"})
        ),
        "failed to lookup user 'nobody2': no such user in /etc/passwd"
    );
    // Removing from a user without any file is fine.
    let remove = json!({"username": "alice", "keys": ["ssh-rsa AAAA"]});
    assert_eq!(
        agent.call("guest-ssh-remove-authorized-keys", remove),
        json!({})
    );
    assert!(!root.join("home/alice/.ssh").exists());
    // .ssh as a symlink out of the home directory is refused.
    std::os::unix::fs::symlink(root.join("etc"), root.join("home/alice/.ssh")).unwrap();
    let desc = error_of(
        &agent,
        "guest-ssh-add-authorized-keys",
        json!({"username": "alice", "keys": ["ssh-rsa AAAA"]}),
    );
    assert!(desc.contains("symbolic links are refused"), "{desc}");
    assert!(!root.join("etc/authorized_keys").exists());
}

/// musl has no NSS: a user only LDAP/SSSD knows is found through `getent passwd`, for
/// the password and the ssh-key commands alike; a name getent does not know is still
/// refused.
#[test]
fn users_beyond_etc_passwd_are_found_with_getent() {
    let (root, uid, gid) = accounts_root();
    std::fs::create_dir_all(root.join("home/carol/.ssh")).unwrap();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnly carol@ldap";
    std::fs::write(
        root.join("home/carol/.ssh/authorized_keys"),
        format!("{key}\n"),
    )
    .unwrap();
    std::os::unix::fs::chown(
        root.join("home/carol/.ssh/authorized_keys"),
        Some(uid),
        Some(gid),
    )
    .unwrap();
    let bin = FakeBin::new();
    bin.program("chpasswd", 0);
    bin.script(
        "getent",
        &format!(
            "[ \"$1 $2\" = 'passwd carol' ] || exit 2\necho 'carol:*:{uid}:{gid}:Carol:/home/carol:/bin/sh'"
        ),
    );
    let log = root.join("agent.log");
    let agent = agent(root.path(), &bin, &log);
    let got = agent.call(
        "guest-ssh-get-authorized-keys",
        json!({"username": "carol"}),
    );
    assert_eq!(got, json!({"keys": [key]}));
    let args = json!({"username": "carol", "password": b64("pw"), "crypted": false});
    assert_eq!(agent.call("guest-set-user-password", args), json!({}));
    assert_eq!(bin.stdin_of("chpasswd"), "carol:pw\n");
    let args = json!({"username": "dave", "password": b64("pw"), "crypted": false});
    assert_eq!(
        error_of(&agent, "guest-set-user-password", args),
        "user 'dave' does not exist"
    );
    // alice is in /etc/passwd: getent is not asked for her.
    agent.call(
        "guest-ssh-get-authorized-keys",
        json!({"username": "alice"}),
    );
    assert_eq!(
        bin.calls(),
        [
            "getent passwd carol",
            "getent passwd carol",
            "chpasswd",
            "getent passwd dave"
        ]
    );
}
