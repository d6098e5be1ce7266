//! A deserializer over a JSON value that remembers where it is ("vcpus[0].online"), so
//! argument errors can name the member the way qemu-ga's input visitor does. serde's own
//! messages carry no location.

use std::cell::RefCell;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::Value;

enum Segment {
    Key(String),
    Index(usize),
}

/// The path from the arguments object to the value being read.
#[derive(Default)]
pub struct Path(RefCell<Vec<Segment>>);

impl Path {
    fn push(&self, s: Segment) {
        self.0.borrow_mut().push(s);
    }

    fn pop(&self) {
        self.0.borrow_mut().pop();
    }

    /// The path as qemu-ga prints it, with `last` appended as a member name if given.
    pub fn render(&self, last: Option<&str>) -> String {
        let mut out = String::new();
        let segments = self.0.borrow();
        let tail = last.map(|k| Segment::Key(k.to_string()));
        for s in segments.iter().chain(tail.as_ref()) {
            match s {
                Segment::Key(k) if out.is_empty() => out.push_str(k),
                Segment::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

/// Deserializes `value`, recording in `path` where a failure happened.
pub struct Tracked<'a> {
    pub value: &'a Value,
    pub path: &'a Path,
}

type E = serde_json::Error;

impl<'de> de::Deserializer<'de> for Tracked<'de> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        match self.value {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    v.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    v.visit_i64(i)
                } else {
                    v.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => v.visit_borrowed_str(s),
            Value::Array(items) => v.visit_seq(Items {
                items: items.iter(),
                index: 0,
                path: self.path,
            }),
            Value::Object(map) => v.visit_map(Members {
                members: map.iter(),
                pending: None,
                path: self.path,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        match self.value {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, E> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, E> {
        // QAPI enums are plain strings.
        match self.value {
            Value::String(s) => v.visit_enum(s.as_str().into_deserializer()),
            other => Err(de::Error::invalid_type(unexpected(other), &"a string")),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct Items<'a> {
    items: std::slice::Iter<'a, Value>,
    index: usize,
    path: &'a Path,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = E;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, E> {
        let Some(value) = self.items.next() else {
            return Ok(None);
        };
        self.path.push(Segment::Index(self.index));
        // On error the segment stays: the caller reads the path of the failure.
        let out = seed.deserialize(Tracked {
            value,
            path: self.path,
        })?;
        self.path.pop();
        self.index += 1;
        Ok(Some(out))
    }
}

struct Members<'a> {
    members: serde_json::map::Iter<'a>,
    pending: Option<&'a Value>,
    path: &'a Path,
}

impl<'de> MapAccess<'de> for Members<'de> {
    type Error = E;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, E> {
        let Some((key, value)) = self.members.next() else {
            return Ok(None);
        };
        self.path.push(Segment::Key(key.clone()));
        let k = seed.deserialize(key.as_str().into_deserializer())?;
        self.pending = Some(value);
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, E> {
        let value = self.pending.take().unwrap_or(&Value::Null);
        let out = seed.deserialize(Tracked {
            value,
            path: self.path,
        })?;
        self.path.pop();
        Ok(out)
    }
}
