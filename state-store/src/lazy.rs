//! Values decoded only when an operator reads them.
//!
//! A stream whose operators route records by key, or pass them on untouched, pays for decoding and encoding every
//! value it never looks at: with JSON values that is most of the cost of a record. A [`Lazy<T>`] value keeps the
//! bytes it was read from and decodes them on the first [`Lazy::get`]; written out unread or only read, it is
//! written as those same bytes, without an encode. [`LazySerde`] wraps the serde of `T`:
//!
//! ```
//! use state_store::lazy::{Lazy, LazySerde};
//! use state_store::serde::{Serde, Serdes};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
//! struct Order { id: u64, total: i64 }
//!
//! let serde = LazySerde::new(Serdes::json::<Order>());
//! let order: Lazy<Order> = serde.deserialize(br#"{"id":7, "total":120}"#).unwrap();
//! assert!(!order.is_decoded());
//!
//! // Written unread: the bytes it came from, spacing included (no decode, no encode).
//! let mut out = Vec::new();
//! serde.serialize(&order, &mut out).unwrap();
//! assert_eq!(out, br#"{"id":7, "total":120}"#);
//!
//! // Read: decoded once, on first use.
//! assert_eq!(order.get().unwrap().total, 120);
//! assert!(order.is_decoded());
//!
//! // Changed: from then on the value is written through the inner serde.
//! let mut order = order;
//! order.get_mut().unwrap().total = 99;
//! out.clear();
//! serde.serialize(&order, &mut out).unwrap();
//! assert_eq!(out, br#"{"id":7,"total":99}"#);
//! ```
//!
//! Bytes that do not decode are reported by [`Lazy::get`] as a [`SerdeError`] to the operator that reads them, not
//! to the deserialization exception handler of the source (which never decodes them): a stream that never reads
//! a value passes it on whatever it holds. Use it for values; a key serde must write equal keys as equal bytes,
//! and a lazy key keeps whatever encoding it was read with.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::serde::{Serde, SerdeError, SharedSerde};

/// A value of type `T` that is decoded from its bytes on first read (see the [module docs](self)).
pub struct Lazy<T> {
    /// The bytes the value was read from, with the serde that reads them; `None` once the value was changed or
    /// when it was built from a value.
    encoded: Option<(Arc<[u8]>, SharedSerde<T>)>,
    /// The decoded value (always set when `encoded` is `None`).
    value: OnceLock<T>,
}

impl<T: 'static> Lazy<T> {
    /// A value built in code: there are no bytes to pass on, it is written through the serde.
    pub fn new(value: T) -> Self {
        Lazy {
            encoded: None,
            value: OnceLock::from(value),
        }
    }

    /// A value to be read from `bytes` by `serde` when first needed.
    pub fn from_bytes(bytes: &[u8], serde: SharedSerde<T>) -> Self {
        Lazy {
            encoded: Some((Arc::from(bytes), serde)),
            value: OnceLock::new(),
        }
    }

    /// The value, decoded on the first call; an error when its bytes do not decode (every call reports it again).
    pub fn get(&self) -> Result<&T, SerdeError> {
        if let Some(v) = self.value.get() {
            return Ok(v);
        }
        let (bytes, serde) = self
            .encoded
            .as_ref()
            .expect("a Lazy holds either bytes or a value");
        let decoded = serde.deserialize(bytes)?;
        Ok(self.value.get_or_init(|| decoded))
    }

    /// The value, to change: decoded first if needed; from then on it is written through the serde rather than as
    /// the bytes it was read from.
    pub fn get_mut(&mut self) -> Result<&mut T, SerdeError> {
        self.get()?;
        self.encoded = None;
        Ok(self.value.get_mut().expect("decoded just above"))
    }

    /// The value, decoded if needed.
    pub fn into_inner(self) -> Result<T, SerdeError> {
        self.get()?;
        Ok(self.value.into_inner().expect("decoded just above"))
    }

    /// Whether the value has been decoded (or was built from a value).
    pub fn is_decoded(&self) -> bool {
        self.value.get().is_some()
    }

    /// The bytes this value was read from and will be written as, unless it was changed or built from a value.
    pub fn encoded(&self) -> Option<&[u8]> {
        self.encoded.as_ref().map(|(b, _)| &**b)
    }
}

impl<T: 'static> From<T> for Lazy<T> {
    fn from(value: T) -> Self {
        Lazy::new(value)
    }
}

impl<T: Clone> Clone for Lazy<T> {
    fn clone(&self) -> Self {
        let value = match self.value.get() {
            Some(v) => OnceLock::from(v.clone()),
            None => OnceLock::new(),
        };
        Lazy {
            encoded: self.encoded.clone(),
            value,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.value.get(), &self.encoded) {
            (Some(v), _) => f.debug_tuple("Lazy").field(v).finish(),
            (None, Some((b, _))) => write!(f, "Lazy(<{} bytes, not decoded>)", b.len()),
            (None, None) => f.write_str("Lazy(<empty>)"),
        }
    }
}

/// Equal when both decode to equal values; a value whose bytes do not decode equals nothing.
impl<T: PartialEq + 'static> PartialEq for Lazy<T> {
    fn eq(&self, other: &Self) -> bool {
        match (self.get(), other.get()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

/// The serde of [`Lazy<T>`] over a serde of `T`: reading keeps the bytes, writing passes on the bytes of a value
/// that was not changed and encodes the others through the inner serde.
pub struct LazySerde<T> {
    inner: SharedSerde<T>,
}

impl<T> Clone for LazySerde<T> {
    fn clone(&self) -> Self {
        LazySerde {
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static> LazySerde<T> {
    /// Wraps the serde that decodes and encodes `T`.
    pub fn new(inner: impl Serde<T>) -> Self {
        LazySerde {
            inner: Arc::new(inner),
        }
    }

    /// Wraps an already shared serde.
    pub fn from_shared(inner: SharedSerde<T>) -> Self {
        LazySerde { inner }
    }
}

impl<T: 'static> Serde<Lazy<T>> for LazySerde<T> {
    fn serialize(&self, value: &Lazy<T>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match (&value.encoded, value.value.get()) {
            (Some((bytes, _)), _) => {
                out.extend_from_slice(bytes);
                Ok(())
            }
            (None, Some(v)) => self.inner.serialize(v, out),
            (None, None) => unreachable!("a Lazy holds either bytes or a value"),
        }
    }

    fn deserialize(&self, data: &[u8]) -> Result<Lazy<T>, SerdeError> {
        Ok(Lazy::from_bytes(data, self.inner.clone()))
    }

    fn is_null(&self, value: &Lazy<T>) -> bool {
        match (&value.encoded, value.value.get()) {
            // Read from bytes: a null value never reaches `deserialize`.
            (Some(_), _) => false,
            (None, Some(v)) => self.inner.is_null(v),
            (None, None) => false,
        }
    }

    fn deserialize_null(&self) -> Result<Lazy<T>, SerdeError> {
        // A null has no bytes to keep: it is read (or refused) by the inner serde at once.
        self.inner.deserialize_null().map(Lazy::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde::{JsonSerde, Serdes};

    #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    struct Order {
        id: u64,
        total: i64,
    }

    fn json() -> LazySerde<Order> {
        LazySerde::new(JsonSerde::<Order>::default())
    }

    #[test]
    fn a_value_never_read_is_written_as_the_bytes_it_was_read_from() {
        let serde = json();
        // Not the inner serde's own encoding (spaces, field order): passing it on must not re-encode it.
        let input = br#"{ "total": 5,  "id": 1 }"#;
        let v = serde.deserialize(input).unwrap();
        let mut out = Vec::new();
        serde.serialize(&v, &mut out).unwrap();
        assert_eq!(out, input);
        assert!(!v.is_decoded());
        // Cloned unread, the clone passes the same bytes on.
        let mut out2 = Vec::new();
        serde.serialize(&v.clone(), &mut out2).unwrap();
        assert_eq!(out2, input);
    }

    #[test]
    fn a_read_decodes_with_the_inner_serde_and_a_change_re_encodes() {
        let serde = json();
        let input = br#"{ "total": 5,  "id": 1 }"#;
        let eager: Order = JsonSerde::<Order>::default().deserialize(input).unwrap();
        let mut v = serde.deserialize(input).unwrap();
        assert_eq!(v.get().unwrap(), &eager);
        // Read only: still written as read.
        let mut out = Vec::new();
        serde.serialize(&v, &mut out).unwrap();
        assert_eq!(out, input);
        v.get_mut().unwrap().total = 6;
        out.clear();
        serde.serialize(&v, &mut out).unwrap();
        let mut expected = Vec::new();
        JsonSerde::<Order>::default()
            .serialize(&Order { id: 1, total: 6 }, &mut expected)
            .unwrap();
        assert_eq!(out, expected);
        assert_eq!(v.encoded(), None);
    }

    #[test]
    fn bytes_that_do_not_decode_are_reported_to_the_reader_with_the_inner_error() {
        let serde = json();
        let v = serde.deserialize(b"{not json").unwrap();
        let inner = JsonSerde::<Order>::default()
            .deserialize(b"{not json")
            .unwrap_err();
        assert_eq!(v.get().unwrap_err(), inner);
        // Every read reports it, and the bytes still pass on unchanged.
        assert_eq!(v.clone().into_inner().unwrap_err(), inner);
        let mut out = Vec::new();
        serde.serialize(&v, &mut out).unwrap();
        assert_eq!(out, b"{not json");
    }

    #[test]
    fn null_goes_through_the_inner_serde() {
        let strict = LazySerde::new(Serdes::string());
        assert!(strict.deserialize_null().is_err());
        let nullable = LazySerde::new(Serdes::option(Serdes::string()));
        let v = nullable.deserialize_null().unwrap();
        assert_eq!(v.get().unwrap(), &None);
        assert!(nullable.is_null(&v));
        assert!(!nullable.is_null(&nullable.deserialize(b"x").unwrap()));
        assert!(!nullable.is_null(&Lazy::new(Some("x".to_string()))));
    }

    #[test]
    fn a_value_built_in_code_is_encoded_by_the_inner_serde() {
        let serde = LazySerde::new(Serdes::i64());
        let mut out = Vec::new();
        serde.serialize(&Lazy::new(42), &mut out).unwrap();
        assert_eq!(out, 42i64.to_be_bytes());
        assert_eq!(serde.deserialize(&out).unwrap(), Lazy::new(42));
    }
}
