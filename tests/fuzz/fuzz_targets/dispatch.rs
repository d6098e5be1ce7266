//! Fuzz target: bytes through `Framer::feed` and `dispatch::handle`, as the channel
//! delivers them. The first input byte picks the framer's limits (the real ones, or
//! small ones so the limit paths are reached) and seeds the read boundaries; the rest
//! is the stream. Only the shipped read-only preset is allowed, against the centos7
//! fixture tree, so no input can reach a command that writes, runs a program or
//! changes the machine; none of them waits for a program or stays silent (asserted):
//! every frame gets exactly one reply line of JSON.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qga::config::keys::read_only_rpcs;
use qga::config::Config;
use qga::ctx::{Ctx, Session};
use qga::protocol::dispatch::{self, Outcome};
use qga::protocol::framer::Framer;
use serde_json::value::RawValue;

/// The read-only preset's commands that measure mounts in a child (a statvfs that may
/// hang): left out, so that no input starts a process.
const STARTS_A_CHILD: &[&str] = &[
    "guest-get-disk-status",
    "guest-get-monitoring-items",
    "guest-get-fsinfo",
];

fn ctx() -> &'static Ctx {
    static CTX: OnceLock<Ctx> = OnceLock::new();
    CTX.get_or_init(|| {
        let config = Config {
            allow_rpcs: read_only_rpcs()
                .iter()
                .filter(|name| !STARTS_A_CHILD.contains(name))
                .map(|name| name.to_string())
                .collect(),
            ..Config::default()
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/centos7");
        Ctx::new(root, config)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    let mut framer = if knob & 1 == 0 {
        Framer::default()
    } else {
        Framer::with_limits(256, 8)
    };
    let mut session = Session::default();
    let mut step = usize::from(knob >> 1) + 1;
    let mut rest = stream;
    while !rest.is_empty() {
        let take = step.min(rest.len());
        let mut chunk = &rest[..take];
        rest = &rest[take..];
        step = step * 5 % 127 + 1;
        while !chunk.is_empty() {
            let (n, frame) = framer.feed(chunk);
            // 0 only when a bare scalar ends at a byte left for the next call.
            assert!(
                n <= chunk.len() && (n > 0 || frame.is_some()),
                "feed stalled"
            );
            chunk = &chunk[n..];
            let Some(frame) = frame else { continue };
            match dispatch::handle(ctx(), &mut session, frame) {
                Outcome::Reply(reply) => {
                    assert_eq!(reply.last(), Some(&b'\n'), "a reply ends its line");
                    assert_eq!(
                        reply.iter().filter(|&&b| b == b'\n').count(),
                        1,
                        "one reply, one line"
                    );
                    let text = reply.strip_prefix(&[dispatch::DELIMITER]).unwrap_or(&reply);
                    // Checked without building a tree: a Value parse and drop was a
                    // quarter of each exec, spent on the target rather than the agent.
                    assert!(
                        serde_json::from_slice::<&RawValue>(text).is_ok(),
                        "reply is not JSON: {}",
                        String::from_utf8_lossy(text)
                    );
                }
                Outcome::Silent => panic!("every frame is answered by these commands"),
                Outcome::Wait(..) => panic!("a read-only command waited for a program"),
            }
        }
    }
});
