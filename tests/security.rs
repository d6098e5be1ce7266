//! What a guest user can and cannot do to the root agent (issue 13, issue 8 §3), each
//! case through the real binary. Attacker steps run as uid 1000 where the kernel would
//! stop root-made fixtures from proving anything; those tests need root.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use common::{Agent, TempDir};
use serde_json::json;

/// A root with /etc/passwd naming alice with this process's ids.
fn own_home() -> TempDir {
    let root = TempDir::new("sec");
    let meta = std::fs::metadata(root.path()).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("home/alice")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/bash\nalice:x:{}:{}::/home/alice:/bin/sh\n",
            meta.uid(),
            meta.gid()
        ),
    )
    .unwrap();
    root
}

fn many_keys(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{tag}{i:08} k{i}@host"))
        .collect()
}

/// 20,000 keys added to 20,000 and removed again through the binary.
#[test]
fn twenty_thousand_keys_are_added_and_removed() {
    let root = own_home();
    let agent = Agent::with_sysroot(root.path(), &[]);
    let first = many_keys(20_000, "a");
    let second = many_keys(20_000, "b");
    let started = Instant::now();
    let add = |keys: &[String]| {
        agent.call(
            "guest-ssh-add-authorized-keys",
            json!({"username": "alice", "keys": keys}),
        )
    };
    add(&first);
    add(&second);
    let added = started.elapsed();
    let got = agent.call(
        "guest-ssh-get-authorized-keys",
        json!({"username": "alice"}),
    );
    assert_eq!(got["keys"].as_array().unwrap().len(), 40_000);
    agent.call(
        "guest-ssh-remove-authorized-keys",
        json!({"username": "alice", "keys": first}),
    );
    let got = agent.call(
        "guest-ssh-get-authorized-keys",
        json!({"username": "alice"}),
    );
    assert_eq!(got["keys"], json!(second));
    eprintln!(
        "20,000 + 20,000 keys added in {added:?}, all done in {:?}",
        started.elapsed()
    );
}
