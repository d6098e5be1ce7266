//! A deserializer wrapper that remembers where it is ("vcpus[0].online"), so argument
//! errors can name the member the way qemu-ga's input visitor does. serde's own
//! messages carry no location. It wraps the streaming serde_json deserializer: the
//! arguments go from their text straight into the handler's typed struct, with no
//! `Value` tree in between (serde_path_to_error's idea, our own code).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

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

    fn len(&self) -> usize {
        self.0.borrow().len()
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

/// Deserializes from `de`, recording in `path` where a failure happened: on error the
/// segments of the failing member stay in `path`.
pub struct Tracked<'p, D> {
    pub de: D,
    pub path: &'p Path,
}

/// The same visitor, with sequences and maps it is given tracked.
struct Wrap<'p, V> {
    v: V,
    path: &'p Path,
}

macro_rules! forward_deserialize {
    ($wrap:ident; $($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name<V: Visitor<'de>>(self, $($arg: $ty,)* v: V) -> Result<V::Value, D::Error> {
            let path = self.path;
            self.de.$name($($arg,)* $wrap { v, path })
        })*
    };
}

/// Every `deserialize_*` but `deserialize_enum`, passed to the inner deserializer with
/// the visitor wrapped in `$wrap`.
macro_rules! forward_all_but_enum {
    ($wrap:ident) => {
        forward_deserialize! {
            $wrap;
            deserialize_any();
            deserialize_bool();
            deserialize_i8();
            deserialize_i16();
            deserialize_i32();
            deserialize_i64();
            deserialize_i128();
            deserialize_u8();
            deserialize_u16();
            deserialize_u32();
            deserialize_u64();
            deserialize_u128();
            deserialize_f32();
            deserialize_f64();
            deserialize_char();
            deserialize_str();
            deserialize_string();
            deserialize_bytes();
            deserialize_byte_buf();
            deserialize_option();
            deserialize_unit();
            deserialize_unit_struct(name: &'static str);
            deserialize_newtype_struct(name: &'static str);
            deserialize_seq();
            deserialize_tuple(len: usize);
            deserialize_tuple_struct(name: &'static str, len: usize);
            deserialize_map();
            deserialize_struct(name: &'static str, fields: &'static [&'static str]);
            deserialize_identifier();
            deserialize_ignored_any();
        }
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tracked<'_, D> {
    type Error = D::Error;

    forward_all_but_enum!(Wrap);

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        // QAPI enums are plain strings; serde_json would also take `{"Variant": …}`.
        self.de.deserialize_any(EnumName(v))
    }
}

/// Accepts only a string, as the name of a unit variant.
struct EnumName<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for EnumName<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<V::Value, E> {
        self.0.visit_enum(de::value::StrDeserializer::<E>::new(s))
    }
}

macro_rules! forward_visit {
    ($($name:ident($ty:ty);)*) => {
        $(fn $name<E: de::Error>(self, x: $ty) -> Result<V::Value, E> {
            self.v.$name(x)
        })*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.v.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let path = self.path;
        self.v.visit_some(Tracked { de, path })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let path = self.path;
        self.v.visit_newtype_struct(Tracked { de, path })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.v.visit_seq(Items {
            seq,
            index: 0,
            path: self.path,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.v.visit_map(Members {
            map,
            path: self.path,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, e: A) -> Result<V::Value, A::Error> {
        self.v.visit_enum(e)
    }
}

/// A seed whose value is read through [`Tracked`].
struct Seed<'p, S> {
    seed: S,
    path: &'p Path,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        let path = self.path;
        self.seed.deserialize(Tracked { de, path })
    }
}

struct Items<'p, A> {
    seq: A,
    index: usize,
    path: &'p Path,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Items<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.path.push(Segment::Index(self.index));
        let path = self.path;
        // On error the segment stays: the caller reads the path of the failure.
        let out = self.seq.next_element_seed(Seed { seed, path })?;
        self.path.pop();
        self.index += 1;
        Ok(out)
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

struct Members<'p, A> {
    map: A,
    path: &'p Path,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Members<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let depth = self.path.len();
        let path = self.path;
        // The key is pushed as soon as it is read, so "unknown field" names it.
        let key = self.map.next_key_seed(KeySeed { seed, path })?;
        if key.is_some() && self.path.len() == depth {
            // A key read as something other than a string; name it by nothing.
            self.path.push(Segment::Key(String::new()));
        }
        Ok(key)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        let path = self.path;
        let out = self.map.next_value_seed(Seed { seed, path })?;
        self.path.pop();
        Ok(out)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// Reads a member name, recording it in the path before the struct's visitor sees it.
struct KeySeed<'p, S> {
    seed: S,
    path: &'p Path,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        let path = self.path;
        self.seed.deserialize(KeyName { de, path })
    }
}

struct KeyName<'p, D> {
    de: D,
    path: &'p Path,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KeyName<'_, D> {
    type Error = D::Error;

    forward_all_but_enum!(KeyVisit);

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        let path = self.path;
        self.de
            .deserialize_enum(name, variants, KeyVisit { v, path })
    }
}

struct KeyVisit<'p, V> {
    v: V,
    path: &'p Path,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for KeyVisit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.v.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i64(i64);
        visit_u64(u64);
        visit_f64(f64);
        visit_bytes(&[u8]);
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<V::Value, E> {
        self.path.push(Segment::Key(s.to_string()));
        self.v.visit_str(s)
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<V::Value, E> {
        self.path.push(Segment::Key(s.to_string()));
        self.v.visit_borrowed_str(s)
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<V::Value, E> {
        self.path.push(Segment::Key(s.clone()));
        self.v.visit_string(s)
    }
}
