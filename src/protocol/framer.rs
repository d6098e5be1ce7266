//! Incremental framing of the request byte stream into complete JSON texts.
//!
//! The framer only finds boundaries (brace/bracket depth, strings, escapes); serde_json
//! parses each complete text. It enforces qemu-ga's limits and its resynchronisation
//! rules: a control byte or 0xFE/0xFF anywhere drops what is pending and yields exactly
//! one error, and an oversized or over-deep request yields one error and is skipped to
//! its end without being stored.

/// qemu-ga's per-request limit (json-streamer MAX_TOKEN_SIZE).
pub const MAX_REQUEST_BYTES: usize = 64 << 20;
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
    /// Skipping the rest of a request that broke a limit; nothing is stored.
    Discard,
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
    max_bytes: usize,
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
            max_bytes,
            max_depth,
        }
    }

    /// Drops any partial request (a new client, a host reconnect).
    pub fn reset(&mut self) {
        self.buf = Vec::new();
        self.mode = Mode::Idle;
        self.depth = 0;
        self.quote = None;
        self.escape = false;
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
            match self.mode {
                Mode::Resync if b != b'{' => {}
                Mode::Idle | Mode::Resync => {
                    if let Some(frame) = self.start(b) {
                        return (i + 1, Some(frame));
                    }
                }
                Mode::Scalar => {
                    if is_space(b) || is_structural(b) {
                        // The token ends before `b`; `b` is framed on the next call.
                        return (i, Some(self.finish()));
                    }
                    if let Some(frame) = self.store(b) {
                        return (i + 1, Some(frame));
                    }
                }
                Mode::Value | Mode::Discard => {
                    if let Some(frame) = self.step(b) {
                        return (i + 1, Some(frame));
                    }
                }
            }
        }
        (input.len(), None)
    }

    fn start(&mut self, b: u8) -> Option<Frame> {
        match b {
            _ if is_space(b) => None,
            b'{' | b'[' => {
                self.mode = Mode::Value;
                self.depth = 1;
                self.buf.push(b);
                None
            }
            // qemu-ga parses a stray closer at once and fails on it.
            b'}' | b']' => Some(Frame::Error("JSON parse error, expecting value".into())),
            b'"' | b'\'' => {
                self.mode = Mode::Value;
                self.quote = Some(b);
                self.buf.push(b);
                None
            }
            _ => {
                self.mode = Mode::Scalar;
                self.buf.push(b);
                None
            }
        }
    }

    /// One byte inside a value (stored) or inside a skipped request (not stored).
    fn step(&mut self, b: u8) -> Option<Frame> {
        if self.mode == Mode::Value {
            if let Some(frame) = self.store(b) {
                return Some(frame);
            }
        }
        if let Some(q) = self.quote {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == q {
                self.quote = None;
                if self.depth == 0 {
                    return Some(self.finish());
                }
            }
            return None;
        }
        match b {
            b'"' | b'\'' => self.quote = Some(b),
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > self.max_depth && self.mode == Mode::Value {
                    self.buf = Vec::new();
                    self.mode = Mode::Discard;
                    return Some(Frame::Error(
                        "JSON nesting depth limit exceeded".to_string(),
                    ));
                }
            }
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    if self.mode == Mode::Discard {
                        self.reset();
                        return None;
                    }
                    return Some(self.finish());
                }
            }
            _ => {}
        }
        None
    }

    fn store(&mut self, b: u8) -> Option<Frame> {
        if self.buf.len() >= self.max_bytes {
            self.buf = Vec::new();
            if self.mode == Mode::Scalar {
                // A bare token has no end marker worth waiting for.
                self.reset();
            } else {
                self.mode = Mode::Discard;
            }
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

    #[test]
    fn oversize_request_gives_one_error_then_resyncs() {
        let mut f = Framer::with_limits(16, 8);
        let got = frames(&mut f, br#"{"a":"0123456789abcdefgh","b":{}}{"ok":1}"#);
        assert_eq!(
            got,
            vec![
                Frame::Error("JSON token size limit exceeded".into()),
                text(r#"{"ok":1}"#)
            ]
        );
    }

    #[test]
    fn over_deep_request_gives_one_error_then_resyncs() {
        let mut f = Framer::with_limits(1 << 20, 4);
        let got = frames(&mut f, b"[[[[[[[]]]]]]]{}");
        assert_eq!(
            got,
            vec![
                Frame::Error("JSON nesting depth limit exceeded".into()),
                text("{}")
            ]
        );
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
