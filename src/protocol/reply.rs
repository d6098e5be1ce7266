//! Replies on the wire: `{"return": V, "id": I}` or `{"id": I, "error": {...}}`, one line
//! each, written the way qemu-ga's JSON writer does (`", "` and `": "` separators, every
//! code point outside printable ASCII as an upper-case `\uXXXX` escape). Values are
//! written straight to bytes ([`Encoded`]), never through a `serde_json::Value` tree,
//! with object members in sorted order as such a tree would give them.

use std::cell::RefCell;
use std::io::{self, Write};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, SerializeMap, SerializeSeq};
use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

use crate::error::Error;

/// A value already written as qemu-ga JSON: object members sorted by name (what a
/// `serde_json::Value` tree emitted before, and what the byte-exact tests pin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(Vec<u8>);

impl Encoded {
    /// Serializes `value` directly to bytes.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Encoded> {
        let mut out = Vec::new();
        value.serialize(&mut serde_json::Serializer::with_formatter(
            io::sink(),
            Sorted::new(&mut out),
        ))?;
        Ok(Encoded(out))
    }

    /// Re-writes the JSON text `raw` (a request's `id`) in qemu-ga's style without
    /// building a tree; fails where a tree would have (serde_json's depth limit, a
    /// lone surrogate).
    pub fn transcode(raw: &str) -> serde_json::Result<Encoded> {
        let mut out = Vec::new();
        let mut de = serde_json::Deserializer::from_str(raw);
        Transcode::new(&mut de).serialize(&mut serde_json::Serializer::with_formatter(
            io::sink(),
            Sorted::new(&mut out),
        ))?;
        de.end()?;
        Ok(Encoded(out))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One reply to the host.
#[derive(Debug)]
pub enum Reply {
    Return {
        value: Encoded,
        id: Option<Encoded>,
    },
    Error {
        class: &'static str,
        desc: String,
        id: Option<Encoded>,
    },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    class: &'a str,
    desc: &'a str,
}

impl Reply {
    pub fn error(err: &Error, id: Option<Encoded>) -> Reply {
        Reply::Error {
            class: err.class(),
            desc: err.to_string(),
            id,
        }
    }

    /// Serialized bytes, newline-terminated, with room for a leading delimiter byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Member order as qemu-ga 7.2 emits it: "return" before "id", "id" before "error".
        let body;
        let members: Vec<(&str, &[u8])> = match self {
            Reply::Return { value, id } => {
                let mut m = vec![("return", value.as_bytes())];
                m.extend(id.as_ref().map(|id| ("id", id.as_bytes())));
                m
            }
            Reply::Error { class, desc, id } => {
                body = Encoded::of(&ErrorBody { class, desc })
                    .expect("an error body always serializes");
                let mut m: Vec<_> = id
                    .as_ref()
                    .map(|id| ("id", id.as_bytes()))
                    .into_iter()
                    .collect();
                m.push(("error", body.as_bytes()));
                m
            }
        };
        let size = members
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>();
        let mut out = Vec::with_capacity(size + 4);
        write_members(&mut out, &members).expect("writing JSON to a Vec cannot fail");
        out.push(b'\n');
        out
    }
}

/// `{"k": v, ...}` from already-written values, members in the order given.
fn write_members(out: &mut Vec<u8>, members: &[(&str, &[u8])]) -> io::Result<()> {
    let mut f = QmpFormatter;
    f.begin_object(out)?;
    for (i, (key, value)) in members.iter().enumerate() {
        f.begin_object_key(out, i == 0)?;
        write_qmp(out, key)?;
        f.end_object_key(out)?;
        f.begin_object_value(out)?;
        out.extend_from_slice(value);
        f.end_object_value(out)?;
    }
    f.end_object(out)
}

/// Serializes `value` in qemu-ga's compact style, members in declaration order.
pub fn write_qmp<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(out, QmpFormatter);
    value.serialize(&mut ser).map_err(io::Error::other)
}

/// A member being written: where it starts in the output, and how long its quoted key is.
struct Member {
    start: usize,
    key_len: usize,
}

/// [`QmpFormatter`] into a buffer it owns, sorting each object's members by key once the
/// object is complete. Every member is written with a trailing `", "`, so members can be
/// moved as whole byte ranges; the last one's is dropped at the end. Moves rotate the
/// buffer in place, so a large member is never copied (a 48 MiB file read stays 1x).
struct Sorted<'a> {
    out: &'a mut Vec<u8>,
    objects: Vec<Vec<Member>>,
}

impl<'a> Sorted<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Sorted {
            out,
            objects: Vec::new(),
        }
    }

    /// The key of a member without its quotes, as escaped on the wire.
    fn key(&self, m: &Member) -> &[u8] {
        &self.out[m.start + 1..m.start + m.key_len - 1]
    }

    /// Sorts the members of the object ending at the buffer's end; of a repeated key the
    /// last one stays, as in a `Value` map.
    fn sort(&mut self, mut members: Vec<Member>) {
        let end = self.out.len();
        if members.len() > 64 && !self.is_sorted(&members) {
            // Many unsorted members (a map): one copy instead of many rotations.
            return self.sort_by_copy(members);
        }
        for i in 1..members.len() {
            let at = {
                let key = self.key(&members[i]);
                members[..i].partition_point(|m| self.key(m) <= key)
            };
            if at == i {
                continue;
            }
            let member_end = members.get(i + 1).map_or(end, |m| m.start);
            let len = member_end - members[i].start;
            let from = members[at].start;
            self.out[from..member_end].rotate_right(len);
            let moved = members.remove(i);
            for m in &mut members[at..i] {
                m.start += len;
            }
            members.insert(
                at,
                Member {
                    start: from,
                    key_len: moved.key_len,
                },
            );
        }
        self.drop_repeated(&members);
    }

    fn is_sorted(&self, members: &[Member]) -> bool {
        members
            .windows(2)
            .all(|w| self.key(&w[0]) <= self.key(&w[1]))
    }

    fn sort_by_copy(&mut self, members: Vec<Member>) {
        let base = members[0].start;
        let region = self.out.split_off(base);
        let mut ranges: Vec<(usize, usize, usize)> = (0..members.len())
            .map(|i| {
                let end = members.get(i + 1).map_or(region.len() + base, |m| m.start);
                (members[i].start - base, end - base, members[i].key_len)
            })
            .collect();
        let key = |r: &(usize, usize, usize)| &region[r.0 + 1..r.0 + r.2 - 1];
        ranges.sort_by(|a, b| key(a).cmp(key(b)));
        let mut sorted = Vec::with_capacity(ranges.len());
        for r in &ranges {
            sorted.push(Member {
                start: self.out.len(),
                key_len: r.2,
            });
            self.out.extend_from_slice(&region[r.0..r.1]);
        }
        drop(region);
        self.drop_repeated(&sorted);
    }

    /// Removes all but the last of each run of equal keys in sorted `members`.
    fn drop_repeated(&mut self, members: &[Member]) {
        for i in (0..members.len().saturating_sub(1)).rev() {
            if self.key(&members[i]) == self.key(&members[i + 1]) {
                self.out.drain(members[i].start..members[i + 1].start);
            }
        }
    }
}

macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name<W: ?Sized + Write>(&mut self, _: &mut W, $($arg: $ty),*) -> io::Result<()> {
            QmpFormatter.$name(self.out, $($arg),*)
        })*
    };
}

impl Formatter for Sorted<'_> {
    forward! {
        write_null();
        write_bool(v: bool);
        write_i8(v: i8);
        write_i16(v: i16);
        write_i32(v: i32);
        write_i64(v: i64);
        write_i128(v: i128);
        write_u8(v: u8);
        write_u16(v: u16);
        write_u32(v: u32);
        write_u64(v: u64);
        write_u128(v: u128);
        write_f64(v: f64);
        write_number_str(v: &str);
        begin_string();
        end_string();
        write_string_fragment(v: &str);
        write_char_escape(v: CharEscape);
        write_byte_array(v: &[u8]);
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object_value();
        write_raw_fragment(v: &str);
    }

    /// A `Value` tree held an f32 as f64, and printed it so.
    fn write_f32<W: ?Sized + Write>(&mut self, _: &mut W, v: f32) -> io::Result<()> {
        QmpFormatter.write_f64(self.out, f64::from(v))
    }

    fn begin_object<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.objects.push(Vec::new());
        QmpFormatter.begin_object(self.out)
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, _: &mut W, _first: bool) -> io::Result<()> {
        let start = self.out.len();
        if let Some(members) = self.objects.last_mut() {
            members.push(Member { start, key_len: 0 });
        }
        Ok(())
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        let end = self.out.len();
        if let Some(m) = self.objects.last_mut().and_then(|ms| ms.last_mut()) {
            m.key_len = end - m.start;
        }
        Ok(())
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.out.write_all(b", ")
    }

    fn end_object<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        let members = self.objects.pop().unwrap_or_default();
        if !members.is_empty() {
            self.sort(members);
            self.out.truncate(self.out.len() - 2);
        }
        QmpFormatter.end_object(self.out)
    }
}

/// Whether every byte is below 0x7F, eight at a time (a 4 MiB file read is a 5.6 MB
/// string; the release build is optimized for size, so nothing vectorizes a byte loop):
/// a byte from 0x7F up has its top bit set, or gets it by adding one. A carry out of
/// 0xFF cannot hide anything: that byte's own top bit already counts.
fn is_below_del(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    let mut above = 0u64;
    for w in &mut words {
        let w = u64::from_ne_bytes(w.try_into().expect("8 bytes"));
        above |= w | w.wrapping_add(ONES);
    }
    let tail = words
        .remainder()
        .iter()
        .fold(0u8, |a, &b| a | b | b.wrapping_add(1));
    above & TOPS == 0 && tail & 0x80 == 0
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
        // Printable ASCII only (a base64 file read, most names): one write, no decoding.
        if is_below_del(fragment.as_bytes()) {
            return w.write_all(fragment.as_bytes());
        }
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

/// Serializes what a deserializer yields, value by value (serde-transcode's idea): a
/// request's `id` goes from its text to the reply without a tree in between.
struct Transcode<D>(RefCell<Option<D>>);

impl<D> Transcode<D> {
    fn new(de: D) -> Self {
        Transcode(RefCell::new(Some(de)))
    }
}

impl<'de, D: de::Deserializer<'de>> Serialize for Transcode<D> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let de = self.0.borrow_mut().take();
        let de = de.ok_or_else(|| ser::Error::custom("value transcoded twice"))?;
        de.deserialize_any(Visit(s)).map_err(ser::Error::custom)
    }
}

struct Visit<S>(S);

macro_rules! visit {
    ($($visit:ident($ty:ty) => $serialize:ident;)*) => {
        $(fn $visit<E: de::Error>(self, v: $ty) -> Result<S::Ok, E> {
            self.0.$serialize(v).map_err(E::custom)
        })*
    };
}

impl<'de, S: ser::Serializer> Visitor<'de> for Visit<S> {
    type Value = S::Ok;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    visit! {
        visit_bool(bool) => serialize_bool;
        visit_i64(i64) => serialize_i64;
        visit_u64(u64) => serialize_u64;
        visit_f64(f64) => serialize_f64;
        visit_str(&str) => serialize_str;
    }

    fn visit_unit<E: de::Error>(self) -> Result<S::Ok, E> {
        self.0.serialize_unit().map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<S::Ok, A::Error> {
        let mut out = self
            .0
            .serialize_seq(seq.size_hint())
            .map_err(de::Error::custom)?;
        while seq.next_element_seed(Element(&mut out))?.is_some() {}
        out.end().map_err(de::Error::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<S::Ok, A::Error> {
        let mut out = self
            .0
            .serialize_map(map.size_hint())
            .map_err(de::Error::custom)?;
        while map.next_key_seed(Key(&mut out))?.is_some() {
            map.next_value_seed(MapValue(&mut out))?;
        }
        out.end().map_err(de::Error::custom)
    }
}

/// Seeds that write the next element, key or value as it is read.
macro_rules! write_seed {
    ($($seed:ident: $sink:ident::$write:ident;)*) => {
        $(struct $seed<'a, S>(&'a mut S);

        impl<'de, S: ser::$sink> DeserializeSeed<'de> for $seed<'_, S> {
            type Value = ();

            fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                self.0.$write(&Transcode::new(d)).map_err(de::Error::custom)
            }
        })*
    };
}

write_seed! {
    Element: SerializeSeq::serialize_element;
    Key: SerializeMap::serialize_key;
    MapValue: SerializeMap::serialize_value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn del_and_above_are_found_at_every_position() {
        for len in 0..40 {
            let clean: Vec<u8> = (0..len).map(|i| 0x20 + (i % 0x5F) as u8).collect();
            assert!(is_below_del(&clean), "len {len}");
            for at in 0..len {
                for bad in [0x7F, 0x80, 0xC3, 0xFE, 0xFF] {
                    let mut b = clean.clone();
                    b[at] = bad;
                    assert!(!is_below_del(&b), "len {len} at {at} byte {bad:#x}");
                }
            }
        }
        assert!(is_below_del(&[0x7E; 100]));
    }
    use serde_json::{json, Value};

    fn enc(v: &Value) -> Encoded {
        Encoded::of(v).unwrap()
    }

    fn wire(r: &Reply) -> String {
        String::from_utf8(r.to_bytes()).unwrap()
    }

    fn text<T: Serialize>(v: &T) -> String {
        String::from_utf8(Encoded::of(v).unwrap().0).unwrap()
    }

    /// What the agent wrote before: the value through a `Value` tree.
    fn via_tree<T: Serialize>(v: &T) -> String {
        let mut out = Vec::new();
        write_qmp(&mut out, &serde_json::to_value(v).unwrap()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn return_then_id() {
        let r = Reply::Return {
            value: enc(&json!({})),
            id: Some(enc(&json!({"a": [1, 2]}))),
        };
        assert_eq!(wire(&r), "{\"return\": {}, \"id\": {\"a\": [1, 2]}}\n");
    }

    #[test]
    fn id_then_error() {
        let r = Reply::error(&Error::NotFound("nope".into()), Some(enc(&json!(5))));
        assert_eq!(
            wire(&r),
            "{\"id\": 5, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}}\n"
        );
    }

    #[test]
    fn non_ascii_escaped_like_qemu() {
        let r = Reply::Return {
            value: enc(&json!("\u{e9}\u{1F600}\u{7f}\u{1}\n")),
            id: None,
        };
        assert_eq!(
            wire(&r),
            "{\"return\": \"\\u00E9\\uD83D\\uDE00\\u007F\\u0001\\n\"}\n"
        );
    }

    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Inner {
        zeta: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        beta: Option<u32>,
        alpha_beta: Vec<u8>,
        alpha: f32,
    }

    #[derive(Serialize)]
    struct Outer {
        z: Vec<Inner>,
        m: std::collections::HashMap<String, i64>,
        a: Option<String>,
        e: (),
        big: String,
    }

    #[test]
    fn struct_members_come_out_sorted_as_through_a_tree() {
        let inner = |beta| Inner {
            zeta: 1,
            beta,
            alpha_beta: vec![1, 2],
            alpha: 0.1,
        };
        let v = Outer {
            z: vec![inner(Some(2)), inner(None)],
            m: (0..100)
                .map(|i| (format!("k{}", i * 7919 % 100), i))
                .collect(),
            a: None,
            e: (),
            big: "x\u{e9}".repeat(1000),
        };
        assert_eq!(text(&v), via_tree(&v));
        assert!(text(&inner(None))
            .starts_with("{\"alpha\": 0.10000000149011612, \"alpha-beta\": [1, 2]"));
    }

    #[test]
    fn repeated_keys_keep_the_last_as_a_tree_did() {
        let id = Encoded::transcode(r#"{"b":1,"a":{"y":[],"x":null},"b":[true,"s"]}"#).unwrap();
        assert_eq!(
            String::from_utf8(id.0).unwrap(),
            r#"{"a": {"x": null, "y": []}, "b": [true, "s"]}"#
        );
    }

    #[test]
    fn ids_are_transcoded_as_a_tree_would_write_them() {
        for raw in [
            "7",
            "-3",
            "18446744073709551615",
            "1e400",
            "1.5e3",
            "100000000000000000000000",
            r#""\u00e9\ud83d\ude00\/""#,
            r#"[1,[2,[3,{}]],{"k":"v"}]"#,
            "null",
            "false",
        ] {
            let got = Encoded::transcode(raw).map(|e| String::from_utf8(e.0).unwrap());
            match serde_json::from_str::<Value>(raw) {
                Ok(tree) => assert_eq!(got.unwrap(), via_tree(&tree), "{raw}"),
                Err(e) => assert_eq!(got.unwrap_err().to_string(), e.to_string(), "{raw}"),
            }
        }
    }

    #[test]
    fn ids_deeper_than_serde_json_allows_still_fail() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = Encoded::transcode(&deep).unwrap_err().to_string();
        assert!(e.starts_with("recursion limit exceeded"), "{e}");
        assert!(Encoded::transcode(r#""\ud800""#).is_err());
    }
}
