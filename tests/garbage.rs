//! Random JSON-ish garbage through the framer and the dispatcher, in process: nothing
//! panics, every frame gets at most one reply, and a 0xFF plus a good request after the
//! garbage is answered correctly. Only the session commands are allowed, so no random
//! request can reach a command that changes the machine.

mod common;

use common::Rng;
use qga::config::Config;
use qga::ctx::{Ctx, Session};
use qga::protocol::dispatch::{self, Outcome};
use qga::protocol::framer::{Frame, Framer};

const PIECES: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\"",
    b"\\",
    b"'",
    b" ",
    b"\n",
    b"\xff",
    b"\x01",
    b"\xc3",
    b"\"execute\"",
    b"\"arguments\"",
    b"\"id\"",
    b"\"guest-sync\"",
    b"\"guest-sync-delimited\"",
    b"\"guest-ping\"",
    b"\"guest-info\"",
    b"\"exec-oob\"",
    b"1",
    b"-7",
    b"1.5e3",
    b"true",
    b"null",
    b"\"x\"",
    b"\\u00e9",
    b"\\ud800",
];

fn session_only_ctx() -> Ctx {
    let config = Config {
        allow_rpcs: [
            "guest-sync",
            "guest-sync-delimited",
            "guest-ping",
            "guest-info",
        ]
        .map(String::from)
        .to_vec(),
        ..Config::default()
    };
    Ctx::new("/nonexistent-root", config)
}

#[test]
fn random_garbage_never_panics_and_the_stream_recovers() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut input = Vec::new();
        for _ in 0..20_000 {
            input.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        input.extend_from_slice(
            b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":4242}}",
        );

        let ctx = session_only_ctx();
        let mut session = Session::default();
        let mut framer = Framer::default();
        let mut last = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            // Arbitrary read boundaries, as a byte stream delivers them.
            let take = (1 + rng.below(64)).min(rest.len());
            let mut chunk = &rest[..take];
            rest = &rest[take..];
            while !chunk.is_empty() {
                let (n, frame) = framer.feed(chunk);
                chunk = &chunk[n..];
                if let Some(frame) = frame {
                    let is_text = matches!(frame, Frame::Text(_));
                    if let Outcome::Reply(reply) = dispatch::handle(&ctx, &mut session, frame) {
                        assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1);
                        last = reply;
                    } else {
                        assert!(is_text, "framing errors always get a reply");
                    }
                }
            }
        }
        assert_eq!(last, b"\xff{\"return\": 4242}\n", "seed {seed}");
    }
}

/// The same garbage, millions of bytes of it, through the real binary over its socket
/// (issue #12): written in random pieces while the replies are read, then 0xFF and a
/// guest-sync-delimited. The agent answers every line as JSON, ends with the sync's
/// reply, keeps serving, and its peak memory stays small.
#[test]
fn millions_of_garbage_bytes_through_the_binary() {
    use std::io::Write;
    let agent = common::Agent::start(&[
        "-a",
        "guest-sync,guest-sync-delimited,guest-ping,guest-info",
    ]);
    let mut c = agent.connect();
    let mut writer = c.stream.try_clone().unwrap();
    let mut rng = Rng(0x0bad_5eed_0bad_5eed);
    let input = rng.garbage(PIECES, 4 << 20);
    let total = input.len();
    let feeder = std::thread::spawn(move || {
        let mut rest = &input[..];
        while !rest.is_empty() {
            let take = (1 + rng.below(8192)).min(rest.len());
            writer.write_all(&rest[..take]).unwrap();
            rest = &rest[take..];
        }
    });
    let t0 = std::time::Instant::now();
    let mut replies = 0u64;
    loop {
        let line = c.line();
        replies += 1;
        if line == b"\xff{\"return\": 4242}" {
            break;
        }
        let text = line.strip_prefix(b"\xff").unwrap_or(&line);
        assert!(
            serde_json::from_slice::<serde_json::Value>(text).is_ok(),
            "not JSON: {}",
            String::from_utf8_lossy(text)
        );
    }
    feeder.join().unwrap();
    let hwm = common::status_kib(agent.pid() as u32, "VmHWM:");
    println!(
        "{total} bytes of garbage: {replies} replies in {:.1} s, VmHWM {hwm} kB",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        hwm < 32 * 1024,
        "peak RSS {hwm} kB for a stream of small frames"
    );
    // The same client goes on: the stream recovered.
    c.send(br#"{"execute":"guest-ping"}"#);
    assert_eq!(c.line(), b"{\"return\": {}}");
}
