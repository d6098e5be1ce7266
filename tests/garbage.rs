//! Random JSON-ish garbage through the framer and the dispatcher, in process: nothing
//! panics, every frame gets at most one reply, and a 0xFF plus a good request after the
//! garbage is answered correctly. Only the session commands are allowed, so no random
//! request can reach a command that changes the machine.

use qga::config::Config;
use qga::ctx::{Ctx, Session};
use qga::protocol::dispatch::{self, Outcome};
use qga::protocol::framer::{Frame, Framer};

/// xorshift64*: deterministic, so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

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
