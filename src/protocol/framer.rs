//! Incremental framing of the request byte stream into complete JSON texts.
//!
//! The framer only finds boundaries (brace/bracket depth, strings, escapes); serde_json
//! parses each complete text. It enforces qemu-ga's three limits the way its
//! json-streamer counts them: token bytes (whitespace between tokens does not count),
//! tokens (each of `{}[],:`, each string, each bare number or keyword) and `{`+`[`
//! depth. A request that breaks a limit yields one error; the token that broke it is
//! dropped and the rest of the request is framed again from the top level, as qemu-ga
//! does (so `…]}}` after the limit becomes one "expecting value" error per closer).
//! One difference: of a single string longer than the limit, qemu-ga's lexer lexes the
//! rest as keywords and strays, and loses the request after it; here the rest of the
//! string is skipped. A control byte or 0xFE/0xFF anywhere drops what is pending and
//! yields exactly one error. Whitespace between tokens is not stored, so memory follows
//! the token bytes.

/// qemu-ga's per-request limit (json-streamer MAX_TOKEN_SIZE): the token bytes of a
/// request must stay below it.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;
/// qemu-ga's token limit (json-streamer MAX_TOKEN_COUNT).
pub const MAX_TOKENS: usize = 2 << 20;
/// qemu-ga's nesting limit (json-streamer MAX_NESTING), `{` and `[` together.
pub const MAX_DEPTH: usize = 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete JSON text (an object, or a stray scalar/array to be rejected).
    Text(Vec<u8>),
    /// A framing error, already phrased as the reply's `desc`.
    Error(String),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    #[default]
    Idle,
    /// Inside a container (depth > 0) or a top-level string.
    Value,
    /// A top-level bare token (number, literal): ends at whitespace or a structural byte.
    Scalar,
    /// Skipping the rest of the token that broke a limit; nothing is stored.
    Skip,
    /// After a reset byte: skipping the rest of whatever was cut, up to the next `{`.
    Resync,
}

#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    mode: Mode,
    depth: usize,
    quote: Option<u8>,
    escape: bool,
    /// Inside a bare token (number, keyword) within a container.
    bare: bool,
    tokens: usize,
    token_bytes: usize,
    max_bytes: usize,
    max_tokens: usize,
    max_depth: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::with_limits(MAX_REQUEST_BYTES, MAX_DEPTH)
    }
}

/// Bytes that reset the stream: ASCII controls other than tab/CR/LF, and 0xFE/0xFF
/// (the documented "flush the parser" byte clients send before guest-sync-delimited).
fn is_reset_byte(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b >= 0xFE
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_structural(b: u8) -> bool {
    matches!(b, b'{' | b'}' | b'[' | b']' | b',' | b':' | b'"' | b'\'')
}

impl Framer {
    pub fn with_limits(max_bytes: usize, max_depth: usize) -> Self {
        Framer {
            buf: Vec::new(),
            mode: Mode::Idle,
            depth: 0,
            quote: None,
            escape: false,
            bare: false,
            tokens: 0,
            token_bytes: 0,
            max_bytes,
            max_tokens: MAX_TOKENS,
            max_depth,
        }
    }

    /// The same framer with another token limit (tests use small ones).
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Drops any partial request (a new client, a host reconnect).
    pub fn reset(&mut self) {
        self.buf = Vec::new();
        self.mode = Mode::Idle;
        self.depth = 0;
        self.quote = None;
        self.escape = false;
        self.bare = false;
        self.tokens = 0;
        self.token_bytes = 0;
    }

    /// True when no partial request is pending.
    pub fn is_idle(&self) -> bool {
        matches!(self.mode, Mode::Idle | Mode::Resync)
    }

    /// Consumes bytes from `input` until one frame is complete. Returns how many bytes
    /// were consumed and the frame, if any; call again with the rest.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Frame>) {
        for (i, &b) in input.iter().enumerate() {
            if is_reset_byte(b) {
                self.reset();
                self.mode = Mode::Resync;
                return (i + 1, Some(Frame::Error(stray(b))));
            }
            let frame = match self.mode {
                Mode::Resync if b != b'{' => None,
                Mode::Idle | Mode::Resync => self.start(b),
                Mode::Scalar => {
                    if is_space(b) || is_structural(b) {
                        // The token ends before `b`; `b` is framed on the next call.
                        return (i, Some(self.finish()));
                    }
                    self.store_scalar(b)
                }
                Mode::Value => self.step(b),
                Mode::Skip => {
                    if self.skip(b) {
                        self.start(b)
                    } else {
                        None
                    }
                }
            };
            if frame.is_some() {
                return (i + 1, frame);
            }
        }
        (input.len(), None)
    }

    fn start(&mut self, b: u8) -> Option<Frame> {
        self.mode = Mode::Idle;
        match b {
            _ if is_space(b) => None,
            b'{' | b'[' => {
                self.mode = Mode::Value;
                self.depth = 1;
                self.open_token(b);
                None
            }
            // qemu-ga parses a stray closer or separator at once and fails on it.
            b'}' | b']' | b',' | b':' => {
                Some(Frame::Error("JSON parse error, expecting value".into()))
            }
            b'"' | b'\'' => {
                self.mode = Mode::Value;
                self.quote = Some(b);
                self.open_token(b);
                None
            }
            _ => {
                self.mode = Mode::Scalar;
                self.buf.push(b);
                None
            }
        }
    }

    /// The first token of a request.
    fn open_token(&mut self, b: u8) {
        self.tokens = 1;
        self.token_bytes = 1;
        self.buf.push(b);
    }

    /// One byte inside a request: strings, tokens and depth, with the limits checked
    /// in qemu-ga's order (size, count, nesting).
    fn step(&mut self, b: u8) -> Option<Frame> {
        if let Some(q) = self.quote {
            let closes = !self.escape && b == q;
            self.escape = !self.escape && b == b'\\';
            if closes {
                self.quote = None;
            }
            if let Some(frame) = self.store_token_byte(b) {
                return Some(frame);
            }
            if closes && self.depth == 0 {
                return Some(self.finish());
            }
            return None;
        }
        if is_space(b) {
            // Kept only where it separates a bare token from what follows.
            if std::mem::take(&mut self.bare) {
                self.buf.push(b);
            }
            return None;
        }
        let new_token = is_structural(b) || !self.bare;
        self.bare = !is_structural(b);
        if matches!(b, b'"' | b'\'') {
            self.quote = Some(b);
        }
        if let Some(frame) = self.store_token_byte(b) {
            return Some(frame);
        }
        if new_token {
            self.tokens += 1;
            if self.tokens > self.max_tokens {
                return Some(self.limit("JSON token count limit exceeded"));
            }
        }
        match b {
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > self.max_depth {
                    return Some(self.limit("JSON nesting depth limit exceeded"));
                }
            }
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    return Some(self.finish());
                }
            }
            _ => {}
        }
        None
    }

    /// Stores a byte that belongs to a token; fails once the token bytes reach the limit.
    fn store_token_byte(&mut self, b: u8) -> Option<Frame> {
        self.token_bytes += 1;
        if self.token_bytes >= self.max_bytes {
            return Some(self.limit("JSON token size limit exceeded"));
        }
        self.buf.push(b);
        None
    }

    /// Drops the request that broke a limit. The token being read is skipped to its
    /// end; what follows it is framed from the top level again.
    fn limit(&mut self, desc: &str) -> Frame {
        let (quote, bare) = (self.quote, self.bare);
        self.reset();
        self.quote = quote;
        self.bare = bare;
        if quote.is_some() || bare {
            self.mode = Mode::Skip;
        }
        Frame::Error(desc.to_string())
    }

    /// One byte of a skipped token; true when the token ended before `b`, which then
    /// starts the next frame.
    fn skip(&mut self, b: u8) -> bool {
        let Some(q) = self.quote else {
            return is_space(b) || is_structural(b);
        };
        if self.escape {
            self.escape = false;
        } else if b == b'\\' {
            self.escape = true;
        } else if b == q {
            self.quote = None;
            self.mode = Mode::Idle;
        }
        false
    }

    /// A top-level bare token has no end marker worth waiting for beyond the limit.
    fn store_scalar(&mut self, b: u8) -> Option<Frame> {
        if self.buf.len() >= self.max_bytes {
            self.reset();
            return Some(Frame::Error("JSON token size limit exceeded".to_string()));
        }
        self.buf.push(b);
        None
    }

    fn finish(&mut self) -> Frame {
        let text = std::mem::take(&mut self.buf);
        self.reset();
        Frame::Text(text)
    }
}

/// qemu-ga's lexer error text; the byte is shown as the writer would escape it.
fn stray(b: u8) -> String {
    let shown = if b >= 0x80 {
        "\u{FFFD}".to_string()
    } else {
        (b as char).to_string()
    };
    format!("JSON parse error, stray '{shown}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut Framer, mut input: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (n, frame) = framer.feed(input);
            input = &input[n..];
            out.extend(frame);
        }
        out
    }

    fn text(s: &str) -> Frame {
        Frame::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn joined_objects_split_apart() {
        let mut f = Framer::default();
        let got = frames(&mut f, br#" {"a":1}{"b":[2,{"c":"}"}]} "#);
        assert_eq!(
            got,
            vec![text(r#"{"a":1}"#), text(r#"{"b":[2,{"c":"}"}]}"#)]
        );
        assert!(f.is_idle());
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut f = Framer::default();
        let input = br#"{"execute":"guest-sync","arguments":{"id":"a\"}b\\"}}"#;
        let mut got = Vec::new();
        for b in input.iter() {
            got.extend(frames(&mut f, std::slice::from_ref(b)));
        }
        assert_eq!(got, vec![Frame::Text(input.to_vec())]);
    }

    #[test]
    fn reset_byte_drops_partial_request() {
        let mut f = Framer::default();
        let got = frames(&mut f, b"{\"execute\":\"gue\xff{\"x\":1}");
        assert_eq!(
            got,
            vec![
                Frame::Error("JSON parse error, stray '\u{FFFD}'".into()),
                text(r#"{"x":1}"#)
            ]
        );
    }

    #[test]
    fn rest_of_a_cut_request_is_skipped_silently() {
        let mut f = Framer::default();
        let got = frames(&mut f, b"{\"execute\":\"gue\xffst-ping\"}]{\"x\":1}");
        assert_eq!(
            got,
            vec![
                Frame::Error("JSON parse error, stray '\u{FFFD}'".into()),
                text(r#"{"x":1}"#)
            ]
        );
    }

    #[test]
    fn each_reset_byte_is_one_error() {
        let mut f = Framer::default();
        assert_eq!(frames(&mut f, b"\xff\xff{}").len(), 3);
    }

    #[test]
    fn control_byte_is_reported_as_itself() {
        let mut f = Framer::default();
        assert_eq!(
            frames(&mut f, b"\x01"),
            vec![Frame::Error("JSON parse error, stray '\u{1}'".into())]
        );
    }

    #[test]
    fn stray_closer_is_an_error() {
        let mut f = Framer::default();
        assert_eq!(
            frames(&mut f, b"}{}"),
            vec![
                Frame::Error("JSON parse error, expecting value".into()),
                text("{}")
            ]
        );
    }

    #[test]
    fn top_level_scalars_end_at_whitespace() {
        let mut f = Framer::default();
        assert_eq!(
            frames(&mut f, b"42 \"s\" [1]{}"),
            vec![text("42"), text("\"s\""), text("[1]"), text("{}")]
        );
    }

    #[test]
    fn unterminated_scalar_waits() {
        let mut f = Framer::default();
        assert!(frames(&mut f, b"42").is_empty());
        assert!(!f.is_idle());
    }

    fn error(desc: &str) -> Frame {
        Frame::Error(desc.to_string())
    }

    const EXPECTING: &str = "JSON parse error, expecting value";

    #[test]
    fn stray_separators_are_errors_of_their_own() {
        let mut f = Framer::default();
        assert_eq!(
            frames(&mut f, b"0,: {}"),
            vec![text("0"), error(EXPECTING), error(EXPECTING), text("{}")]
        );
    }

    #[test]
    fn token_bytes_must_stay_below_the_size_limit() {
        // 15 token bytes pass a limit of 16; whitespace between tokens does not count.
        let mut f = Framer::with_limits(16, 8);
        let got = frames(&mut f, b"{ \"a\" : \"0123456\" }");
        assert_eq!(got, vec![text(r#"{"a":"0123456"}"#)]);
        let got = frames(&mut f, br#"{"a":"01234567"}"#);
        assert_eq!(got, vec![error("JSON token size limit exceeded")]);
        assert!(f.is_idle());
    }

    #[test]
    fn oversize_string_is_skipped_and_the_rest_framed_again() {
        // qemu-ga drops the token that crossed the limit and parses what follows it.
        let mut f = Framer::with_limits(16, 8);
        let got = frames(&mut f, br#"{"a":"0123456789abcdefgh","b":{}}{"ok":1}"#);
        assert_eq!(
            got,
            vec![
                error("JSON token size limit exceeded"),
                error(EXPECTING),
                text(r#""b""#),
                error(EXPECTING),
                text("{}"),
                error(EXPECTING),
                text(r#"{"ok":1}"#)
            ]
        );
    }

    #[test]
    fn oversize_top_level_string_is_one_error() {
        let mut f = Framer::with_limits(8, 8);
        assert_eq!(
            frames(&mut f, br#""0123456789"{}"#),
            vec![error("JSON token size limit exceeded"), text("{}")]
        );
    }

    #[test]
    fn token_count_limit_is_inclusive() {
        let mut f = Framer::default().with_max_tokens(7);
        assert_eq!(frames(&mut f, b"[1, 22,true]"), vec![text("[1,22,true]")]);
        assert_eq!(
            frames(&mut f, b"[1, 22, true]"),
            vec![text("[1,22,true]")],
            "whitespace is not a token"
        );
        assert_eq!(
            frames(&mut f, br#"[1,2,"x",3]"#),
            vec![error("JSON token count limit exceeded"), error(EXPECTING)]
        );
    }

    #[test]
    fn token_over_the_count_is_skipped_whole() {
        let mut f = Framer::default().with_max_tokens(5);
        assert_eq!(
            frames(&mut f, br#"[1,2,"a]\"b",3]"#),
            vec![
                error("JSON token count limit exceeded"),
                error(EXPECTING),
                text("3"),
                error(EXPECTING)
            ]
        );
        assert_eq!(
            frames(&mut f, b"[1,2,345]"),
            vec![error("JSON token count limit exceeded"), error(EXPECTING)]
        );
    }

    #[test]
    fn over_deep_request_is_framed_again_after_the_opener() {
        let mut f = Framer::with_limits(1 << 20, 4);
        let got = frames(&mut f, b"[[[[[[[]]]]]]]{}");
        let mut want = vec![error("JSON nesting depth limit exceeded"), text("[[]]")];
        want.extend((0..5).map(|_| error(EXPECTING)));
        want.push(text("{}"));
        assert_eq!(got, want);
        assert_eq!(frames(&mut f, b"[[[[]]]]"), vec![text("[[[[]]]]")]);
    }

    #[test]
    fn bare_tokens_keep_one_separating_space() {
        let mut f = Framer::default();
        assert_eq!(frames(&mut f, b"[1   2,\n 3 ]"), vec![text("[1 2,3 ]")]);
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let mut f = Framer::with_limits(1 << 20, 2);
        assert_eq!(frames(&mut f, br#"{"a":"[[[{{{"}"#).len(), 1);
        assert!(f.is_idle());
    }

    #[test]
    fn single_quoted_strings_are_framed() {
        let mut f = Framer::default();
        assert_eq!(frames(&mut f, b"{'a':'}'}"), vec![text("{'a':'}'}")]);
    }
}
