//! A deserializer wrapper that remembers where it is ("vcpus[0].online"), so argument
//! errors can name the member the way qemu-ga's input visitor does. serde's own
//! messages carry no location. It wraps the streaming serde_json deserializer: the
//! arguments go from their text straight into the handler's typed struct, with no
//! `Value` tree in between (serde_path_to_error's idea, our own code).

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

enum Segment {
    Key(String),
    Index(usize),
}

/// What the typed arguments may cost: the bytes of every element and member value read
/// so far, plus the text of every string. A `Vec<String>` of a million `""` costs 24
/// bytes an element for 3 bytes of request; the budget keeps such a request from
/// costing more than a small multiple of its size.
const TOO_LARGE: &str = "typed arguments over budget";

/// The path from the arguments object to the value being read, and what the values
/// read so far cost.
pub struct Path {
    segments: RefCell<Vec<Segment>>,
    spent: Cell<usize>,
    budget: usize,
}

impl Default for Path {
    fn default() -> Self {
        Path::with_budget(usize::MAX)
    }
}

impl Path {
    /// A path whose values may cost `budget` bytes in all.
    pub fn with_budget(budget: usize) -> Self {
        Path {
            segments: RefCell::default(),
            spent: Cell::new(0),
            budget,
        }
    }

    /// True when reading stopped because the values cost more than the budget.
    pub fn over_budget(&self) -> bool {
        self.spent.get() > self.budget
    }

    fn spend(&self, bytes: usize) {
        self.spent.set(self.spent.get().saturating_add(bytes));
    }

    /// Charges a value of type `T` just read; fails once the budget is spent.
    fn charge<T, E: de::Error>(&self) -> Result<(), E> {
        self.spend(std::mem::size_of::<T>());
        if self.over_budget() {
            return Err(E::custom(TOO_LARGE));
        }
        Ok(())
    }

    fn push(&self, s: Segment) {
        self.segments.borrow_mut().push(s);
    }

    fn pop(&self) {
        self.segments.borrow_mut().pop();
    }

    fn len(&self) -> usize {
        self.segments.borrow().len()
    }

    /// The path as qemu-ga prints it, with `last` appended as a member name if given.
    pub fn render(&self, last: Option<&str>) -> String {
        let mut out = String::new();
        let segments = self.segments.borrow();
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
    de: D,
    path: &'p Path,
    /// Reading a member name: it goes into the path as soon as it is read, so that
    /// "unknown field" names it.
    key: bool,
}

impl<'p, D> Tracked<'p, D> {
    pub fn new(de: D, path: &'p Path) -> Self {
        Tracked {
            de,
            path,
            key: false,
        }
    }
}

/// The same visitor, with sequences and maps it is given tracked.
struct Wrap<'p, V> {
    v: V,
    path: &'p Path,
    key: bool,
}

/// Each `deserialize_*` passed to the inner deserializer with the visitor wrapped.
macro_rules! forward_deserialize {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name<V: Visitor<'de>>(self, $($arg: $ty,)* v: V) -> Result<V::Value, D::Error> {
            let (path, key) = (self.path, self.key);
            self.de.$name($($arg,)* Wrap { v, path, key })
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tracked<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
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

impl<V> Wrap<'_, V> {
    /// A string read: a member name goes into the path, a value's text is charged (a
    /// `String` holds it on the heap, with malloc's overhead).
    fn name(&self, s: &str) {
        if self.key {
            self.path.push(Segment::Key(s.to_string()));
        } else {
            self.path.spend(s.len() + 16);
        }
    }
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
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<V::Value, E> {
        self.name(s);
        self.v.visit_str(s)
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<V::Value, E> {
        self.name(s);
        self.v.visit_borrowed_str(s)
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<V::Value, E> {
        self.name(&s);
        self.v.visit_string(s)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.v.visit_some(Tracked::new(de, self.path))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.v.visit_newtype_struct(Tracked::new(de, self.path))
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

/// A seed whose value (or member name, with `key`) is read through [`Tracked`].
struct Seed<'p, S> {
    seed: S,
    path: &'p Path,
    key: bool,
}

impl<'p, S> Seed<'p, S> {
    fn value(seed: S, path: &'p Path) -> Self {
        Seed {
            seed,
            path,
            key: false,
        }
    }

    fn key(seed: S, path: &'p Path) -> Self {
        Seed {
            seed,
            path,
            key: true,
        }
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        let (path, key) = (self.path, self.key);
        self.seed.deserialize(Tracked { de, path, key })
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
        // On error the segment stays: the caller reads the path of the failure.
        let out = self.seq.next_element_seed(Seed::value(seed, self.path))?;
        self.path.pop();
        if out.is_some() {
            self.path.charge::<T::Value, A::Error>()?;
        }
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
        let key = self.map.next_key_seed(Seed::key(seed, self.path))?;
        if key.is_some() && self.path.len() == depth {
            // A key read as something other than a string; name it by nothing.
            self.path.push(Segment::Key(String::new()));
        }
        Ok(key)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        let out = self.map.next_value_seed(Seed::value(seed, self.path))?;
        self.path.pop();
        self.path.charge::<V::Value, A::Error>()?;
        Ok(out)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}
