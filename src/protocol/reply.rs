//! Replies on the wire: `{"return": V, "id": I}` or `{"id": I, "error": {...}}`, one line
//! each, written the way qemu-ga's JSON writer does (`", "` and `": "` separators, every
//! code point outside printable ASCII as an upper-case `\uXXXX` escape).

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use serde_json::Value;
use std::io::{self, Write};

use crate::error::Error;

/// One reply to the host.
#[derive(Debug)]
pub enum Reply {
    Return {
        value: Value,
        id: Option<Value>,
    },
    Error {
        class: &'static str,
        desc: String,
        id: Option<Value>,
    },
}

impl Reply {
    pub fn error(err: &Error, id: Option<Value>) -> Reply {
        Reply::Error {
            class: err.class(),
            desc: err.to_string(),
            id,
        }
    }

    /// Serialized bytes, newline-terminated.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        write_qmp(&mut out, self).expect("writing JSON to a Vec cannot fail");
        out.push(b'\n');
        out
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    class: &'a str,
    desc: &'a str,
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Member order as qemu-ga 7.2 emits it: "return" before "id", "id" before "error".
        let mut map = s.serialize_map(None)?;
        match self {
            Reply::Return { value, id } => {
                map.serialize_entry("return", value)?;
                if let Some(id) = id {
                    map.serialize_entry("id", id)?;
                }
            }
            Reply::Error { class, desc, id } => {
                if let Some(id) = id {
                    map.serialize_entry("id", id)?;
                }
                map.serialize_entry("error", &ErrorBody { class, desc })?;
            }
        }
        map.end()
    }
}

/// Serializes `value` in qemu-ga's compact style.
pub fn write_qmp<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(out, QmpFormatter);
    value.serialize(&mut ser).map_err(io::Error::other)
}

/// serde_json formatter matching qobject/json-writer.c output.
pub struct QmpFormatter;

impl Formatter for QmpFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (c as u32) < 0x7F {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{:04X}", unit)?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(b) => return write!(w, "\\u{:04X}", b),
        };
        w.write_all(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(r: &Reply) -> String {
        String::from_utf8(r.to_bytes()).unwrap()
    }

    #[test]
    fn return_then_id() {
        let r = Reply::Return {
            value: json!({}),
            id: Some(json!({"a": [1, 2]})),
        };
        assert_eq!(wire(&r), "{\"return\": {}, \"id\": {\"a\": [1, 2]}}\n");
    }

    #[test]
    fn id_then_error() {
        let r = Reply::error(&Error::NotFound("nope".into()), Some(json!(5)));
        assert_eq!(
            wire(&r),
            "{\"id\": 5, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}}\n"
        );
    }

    #[test]
    fn non_ascii_escaped_like_qemu() {
        let r = Reply::Return {
            value: json!("\u{e9}\u{1F600}\u{7f}\u{1}\n"),
            id: None,
        };
        assert_eq!(
            wire(&r),
            "{\"return\": \"\\u00E9\\uD83D\\uDE00\\u007F\\u0001\\n\"}\n"
        );
    }
}
