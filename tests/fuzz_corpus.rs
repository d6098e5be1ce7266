//! The fuzzer's corpus in CI (issue #12): every input of tests/fuzz/corpus/dispatch (the
//! seeds, what `make fuzz` found worth keeping, and the regression inputs) goes through
//! the real binary over its socket, split at the read boundaries the fuzz target uses.
//! The agent allows the read-only preset against the centos7 fixture, as the target
//! does. The target's invariants hold: every frame (counted by the library's framer over
//! the same bytes) gets exactly one reply line of JSON, and after 0xFF a guest-sync is
//! answered last, so the agent kept serving.
//!
//! The binary has only the real framer limits, so an input whose first byte asks the
//! target for its small ones is framed here with the real ones.

mod common;

use std::io::Write;
use std::path::PathBuf;

use common::{fixture, Agent};
use qga::config::keys::read_only_rpcs;
use qga::protocol::framer::Framer;

const SYNC: &[u8] = b"\xff{\"execute\":\"guest-sync\",\"arguments\":{\"id\":4242}}";

fn inputs() -> Vec<PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/dispatch");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn frames_in(stream: &[u8]) -> usize {
    let mut framer = Framer::default();
    let mut rest = stream;
    let mut frames = 0;
    while !rest.is_empty() {
        let (n, frame) = framer.feed(rest);
        rest = &rest[n..];
        frames += usize::from(frame.is_some());
    }
    frames
}

/// The fuzz target's read sizes: the first byte seeds them, then they wander up to 127.
fn chunks(knob: u8, stream: &[u8]) -> Vec<&[u8]> {
    let mut step = usize::from(knob >> 1) + 1;
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(step.min(rest.len()));
        out.push(chunk);
        rest = tail;
        step = step * 5 % 127 + 1;
    }
    out
}

#[test]
fn every_corpus_input_gets_one_reply_per_frame_from_the_binary() {
    let allow = read_only_rpcs().join(",");
    let agent = Agent::with_sysroot(&fixture("centos7"), &["-a", &allow]);
    let files = inputs();
    assert!(files.len() > 50, "the seeds are there: {files:?}");
    let (count, mut replies) = (files.len(), 0);
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let Some((&knob, stream)) = data.split_first() else {
            continue;
        };
        let stream = [stream, SYNC].concat();
        let frames = frames_in(&stream);
        let mut c = agent.connect();
        let mut writer = c.stream.try_clone().unwrap();
        // Written from a thread: the replies to a long input fill the socket before the
        // input is all sent.
        let feeder = std::thread::spawn(move || {
            for chunk in chunks(knob, &stream) {
                writer.write_all(chunk).unwrap();
            }
        });
        for i in 1..frames {
            let line = c.line();
            let text = line.strip_prefix(b"\xff").unwrap_or(&line);
            assert!(
                serde_json::from_slice::<serde_json::Value>(text).is_ok(),
                "{name}: reply {i} of {frames} is not JSON: {}",
                String::from_utf8_lossy(text)
            );
        }
        let last = c.line();
        assert_eq!(
            last,
            b"{\"return\": 4242}",
            "{name}: the last of {frames} replies is the sync's: {}",
            String::from_utf8_lossy(&last)
        );
        feeder.join().unwrap();
        replies += frames;
    }
    println!("{count} inputs, {replies} replies");
    assert_eq!(
        agent.call("guest-ping", serde_json::json!({})),
        serde_json::json!({})
    );
}
