//! qemu-ga's three request limits (64 MiB of tokens, 2,097,152 tokens, depth 1024) on
//! the real binary, and the memory an accepted request may cost: peak RSS (VmHWM) at
//! most 3x the request plus 8 MiB. The figures are printed (`--nocapture`).

mod common;

use common::Agent;

const MIB: usize = 1 << 20;
const AFTER: &[u8] = br#"{"execute":"guest-ping","id":"after"}"#;
const SERVED: &str = r#"{"return": {}, "id": "after"}"#;

fn error(desc: &str) -> String {
    format!(r#"{{"error": {{"class": "GenericError", "desc": "{desc}"}}}}"#)
}

/// Peak RSS of the agent so far, in bytes, checked against the bound for `request`.
fn assert_peak_within_bound(agent: &Agent, case: &str, request: usize) {
    let hwm = common::status_kib(agent.pid() as u32, "VmHWM:") as usize * 1024;
    let bound = 3 * request + 8 * MIB;
    println!(
        "{case}: request {:.1} MiB, agent VmHWM {:.1} MiB (bound {:.1} MiB)",
        request as f64 / MIB as f64,
        hwm as f64 / MIB as f64,
        bound as f64 / MIB as f64
    );
    assert!(hwm <= bound, "{case}: VmHWM {hwm} > {bound}");
}

/// `{"execute":"guest-ping","arguments":{"pad":"…","x":[0,…,0]}}` of `tokens` tokens
/// and about `size` bytes.
fn ping_with_tokens(tokens: usize, size: usize) -> Vec<u8> {
    // 15 tokens up to `[`, the zeros and commas, then `]}}`.
    let zeros = (tokens - 17) / 2;
    assert_eq!(17 + 2 * zeros, tokens);
    let array = 2 * zeros + 3;
    let pad = size.saturating_sub(array + 60);
    let mut r = br#"{"execute":"guest-ping","arguments":{"pad":""#.to_vec();
    r.resize(r.len() + pad, b'p');
    r.extend_from_slice(br#"","x":["#);
    for _ in 1..zeros {
        r.extend_from_slice(b"0,");
    }
    r.extend_from_slice(b"0]}}");
    r
}

/// The 2,097,153rd token is the closing brace: qemu-ga 7.2 drops it and has nothing
/// left to parse, so there is exactly one error.
#[test]
fn token_heavy_16mib_request_is_refused_once() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let request = ping_with_tokens(2_097_153, 16 * MIB);
    c.send(&request);
    c.send(AFTER);
    assert_eq!(c.text(), error("JSON token count limit exceeded"));
    assert_eq!(c.text(), SERVED);
    assert_peak_within_bound(&agent, "16 MiB, one token too many", request.len());
}

/// Tokens after the one that broke the limit are requests of their own, as in qemu-ga.
#[test]
fn tokens_after_the_count_limit_are_framed_again() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let mut request = ping_with_tokens(2_097_153, 0);
    // The 2,097,153rd token is now the second comma: `0]}}` is left.
    request.splice(request.len() - 3..request.len() - 3, *b",0,0");
    c.send(&request);
    c.send(AFTER);
    assert_eq!(c.text(), error("JSON token count limit exceeded"));
    for want in [
        error("QMP input must be a JSON object"),
        error("JSON parse error, expecting value"),
        error("JSON parse error, expecting value"),
        error("JSON parse error, expecting value"),
        SERVED.to_string(),
    ] {
        assert_eq!(c.text(), want);
    }
}

/// Two 32 MiB strings: the second one's bytes reach the 64 MiB limit; it is dropped and
/// the two closing braces that follow are one error each (qemu-ga 7.2 alike).
#[test]
fn request_over_64mib_of_tokens_is_refused_and_memory_stays_bounded() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let mut request = br#"{"execute":"guest-ping","arguments":{"a":""#.to_vec();
    request.resize(request.len() + 32 * MIB, b'a');
    request.extend_from_slice(br#"","b":""#);
    request.resize(request.len() + 32 * MIB, b'b');
    request.extend_from_slice(br#""}}"#);
    c.send(&request);
    c.send(AFTER);
    assert_eq!(c.text(), error("JSON token size limit exceeded"));
    assert_eq!(c.text(), error("JSON parse error, expecting value"));
    assert_eq!(c.text(), error("JSON parse error, expecting value"));
    assert_eq!(c.text(), SERVED);
    assert_peak_within_bound(&agent, "64 MiB, over the size limit", request.len());
}

/// What qemu-ga says of a request that reaches guest-ping with argument `member`.
fn unexpected(id: u32, member: &str) -> String {
    format!(
        r#"{{"id": {id}, "error": {{"class": "GenericError", "desc": "Parameter '{member}' is unexpected"}}}}"#
    )
}

/// Sends `request`, which the framer must accept, then a ping; checks both replies and
/// the agent's peak memory.
fn assert_accepted(case: &str, request: &[u8], reply: &str) {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.send(request);
    c.send(AFTER);
    assert_eq!(c.text(), reply);
    assert_eq!(c.text(), SERVED);
    assert_peak_within_bound(&agent, case, request.len());
}

/// Just under the limit: 64 MiB less one byte of tokens, with whitespace that does not
/// count, reaches the command.
#[test]
fn request_just_under_64mib_of_tokens_is_accepted() {
    let mut request = br#"{"execute":"guest-ping","id":1, "arguments":{"a":""#.to_vec();
    // 53 token bytes besides the string's contents.
    request.resize(request.len() + 64 * MIB - 53 - 1, b'a');
    request.extend_from_slice(br#""}}"#);
    let case = "64 MiB less a byte, accepted";
    assert_accepted(case, &request, &unexpected(1, "a"));
}

#[test]
fn four_mib_id_is_echoed_within_the_bound() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let id = "i".repeat(4 * MIB);
    let request = format!(r#"{{"execute":"guest-sync","arguments":{{"id":7}},"id":"{id}"}}"#);
    c.send(request.as_bytes());
    assert_eq!(c.text(), format!(r#"{{"return": 7, "id": "{id}"}}"#));
    assert_peak_within_bound(&agent, "4 MiB id, echoed", request.len());
}

/// Exactly 2,097,152 tokens, about 4 MiB: the framer accepts it and the arguments are
/// refused by name without a tree of two million values.
#[test]
fn token_limit_request_is_accepted_within_the_bound() {
    let mut request = br#"{"execute":"guest-ping","id":2,"arguments":{"x":[[]"#.to_vec();
    // 19 tokens besides the numbers and their commas.
    for _ in 0..(2_097_152 - 19) / 2 {
        request.extend_from_slice(b",100");
    }
    request.extend_from_slice(b"]}}");
    let case = "2,097,152 tokens, accepted";
    assert_accepted(case, &request, &unexpected(2, "x"));
}

/// 1024 levels are allowed, and qemu-ga names the unexpected member however deep its
/// value is (serde_json alone stops at 128).
#[test]
fn depth_1024_is_accepted_and_the_member_named() {
    let deep = format!(
        r#"{{"execute":"guest-ping","id":3,"arguments":{{"x":{}{}}}}}"#,
        "[".repeat(1022),
        "]".repeat(1022)
    );
    assert_accepted("depth 1024", deep.as_bytes(), &unexpected(3, "x"));
}

/// A million `""` keys: 3 MiB of request, 24 MiB as the handler's `Vec<String>`. The
/// arguments are refused once they cost twice their text (plus 4 MiB).
#[test]
fn arguments_costing_far_more_than_their_text_are_refused() {
    let mut request =
        br#"{"execute":"guest-ssh-add-authorized-keys","id":4,"arguments":{"username":"nobody","keys":["#
            .to_vec();
    for _ in 0..1_000_000 {
        request.extend_from_slice(b"\"\",");
    }
    request.extend_from_slice(b"\"\"]}}");
    let reply =
        r#"{"id": 4, "error": {"class": "GenericError", "desc": "Parameter 'keys' is too large"}}"#;
    assert_accepted("1M empty ssh keys", &request, reply);
}
