//! Serdes: how keys and values become bytes and back.
//!
//! A [`Serde<T>`] writes a `T` into a caller-supplied buffer (so hot paths reuse one allocation) and reads a `T`
//! from a byte slice. Kafka distinguishes an empty value from an absent one (`null`); a serde says whether a value
//! is written as `null` ([`Serde::is_null`]) and what a `null` reads as ([`Serde::deserialize_null`]). Only
//! [`UnitSerde`] and [`OptionSerde`] accept `null`; every other serde answers it with a typed error.
//!
//! The built-ins follow Kafka's own serdes byte for byte: integers and floats are big-endian, strings are UTF-8,
//! so topics can be shared with applications written against the Java client.
//!
//! ```
//! use state_store::serde::{Serde, Serdes};
//!
//! let serde = Serdes::i64();
//! let mut buf = Vec::new();
//! serde.serialize(&42, &mut buf).unwrap();
//! assert_eq!(buf, vec![0, 0, 0, 0, 0, 0, 0, 42]);
//! assert_eq!(serde.deserialize(&buf).unwrap(), 42);
//! ```

use std::any::type_name;
use std::marker::PhantomData;
use std::sync::Arc;

pub use crate::error::{SerdeError, SerdeErrorKind};

/// Converts values of type `T` to bytes and back.
///
/// Implementations must be deterministic: equal values serialize to equal bytes (stores and partitioning rely on it).
pub trait Serde<T>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError>;

    /// Decodes a value from `data`.
    fn deserialize(&self, data: &[u8]) -> Result<T, SerdeError>;

    /// Whether `value` is written as Kafka `null` (no bytes at all) rather than through [`Serde::serialize`].
    fn is_null(&self, _value: &T) -> bool {
        false
    }

    /// The value a Kafka `null` reads as; by default an [`SerdeErrorKind::UnexpectedNull`] error.
    fn deserialize_null(&self) -> Result<T, SerdeError> {
        Err(SerdeError::new(
            type_name::<T>(),
            SerdeErrorKind::UnexpectedNull,
            "got null, but this serde cannot represent null (use an Option serde for nullable data)",
        ))
    }

    /// Encodes `value` into `out` (cleared first); returns `false` when the value is `null`.
    fn serialize_nullable(&self, value: &T, out: &mut Vec<u8>) -> Result<bool, SerdeError> {
        out.clear();
        if self.is_null(value) {
            return Ok(false);
        }
        self.serialize(value, out)?;
        Ok(true)
    }

    /// Decodes possibly-null data.
    fn deserialize_nullable(&self, data: Option<&[u8]>) -> Result<T, SerdeError> {
        match data {
            Some(d) => self.deserialize(d),
            None => self.deserialize_null(),
        }
    }

    /// Appends the bytes a record keyed by `value` is partitioned by, when that is not the whole encoded key,
    /// and returns `true`; by default returns `false`: the whole key decides. Windowed keys answer their inner
    /// key, so every window of a key goes to the key's partition (Kafka's `WindowedStreamPartitioner`).
    fn serialize_partition_key(&self, value: &T, out: &mut Vec<u8>) -> Result<bool, SerdeError> {
        let _ = (value, out);
        Ok(false)
    }
}

impl<T, S: Serde<T> + ?Sized> Serde<T> for Arc<S> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        (**self).serialize(value, out)
    }
    fn deserialize(&self, data: &[u8]) -> Result<T, SerdeError> {
        (**self).deserialize(data)
    }
    fn is_null(&self, value: &T) -> bool {
        (**self).is_null(value)
    }
    fn deserialize_null(&self) -> Result<T, SerdeError> {
        (**self).deserialize_null()
    }
    fn serialize_partition_key(&self, value: &T, out: &mut Vec<u8>) -> Result<bool, SerdeError> {
        (**self).serialize_partition_key(value, out)
    }
}

/// A shared, type-erased serde for `T`.
pub type SharedSerde<T> = Arc<dyn Serde<T>>;

fn length_error<T>(expected: usize, actual: usize) -> SerdeError {
    SerdeError::new(
        type_name::<T>(),
        SerdeErrorKind::InvalidLength { expected, actual },
        format!("expected {expected} bytes, got {actual}"),
    )
}

/// UTF-8 strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }
    fn deserialize(&self, data: &[u8]) -> Result<String, SerdeError> {
        std::str::from_utf8(data).map(str::to_owned).map_err(|e| {
            SerdeError::new(
                type_name::<String>(),
                SerdeErrorKind::InvalidUtf8,
                e.to_string(),
            )
        })
    }
}

/// Raw bytes, unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value);
        Ok(())
    }
    fn deserialize(&self, data: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(data.to_vec())
    }
}

/// The unit type, always written as Kafka `null`; reads `null` and ignores any bytes.
///
/// Use it for keys of topics whose records carry no key.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSerde;

impl Serde<()> for UnitSerde {
    fn serialize(&self, _value: &(), _out: &mut Vec<u8>) -> Result<(), SerdeError> {
        Ok(())
    }
    fn deserialize(&self, _data: &[u8]) -> Result<(), SerdeError> {
        Ok(())
    }
    fn is_null(&self, _value: &()) -> bool {
        true
    }
    fn deserialize_null(&self) -> Result<(), SerdeError> {
        Ok(())
    }
}

/// Big-endian fixed-width numbers, as Kafka's `ShortSerde`, `IntegerSerde`, `LongSerde`, `FloatSerde`, `DoubleSerde`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BigEndianSerde<T>(PhantomData<fn() -> T>);

macro_rules! big_endian {
    ($($t:ty),*) => {$(
        impl Serde<$t> for BigEndianSerde<$t> {
            fn serialize(&self, value: &$t, out: &mut Vec<u8>) -> Result<(), SerdeError> {
                out.extend_from_slice(&value.to_be_bytes());
                Ok(())
            }
            fn deserialize(&self, data: &[u8]) -> Result<$t, SerdeError> {
                const N: usize = std::mem::size_of::<$t>();
                let bytes: [u8; N] = data.try_into().map_err(|_| length_error::<$t>(N, data.len()))?;
                Ok(<$t>::from_be_bytes(bytes))
            }
        }
    )*};
}
big_endian!(i16, i32, i64, u16, u32, u64, f32, f64);

/// `Option<T>` over a serde for `T`: `None` is Kafka `null`.
///
/// Tables use it for their change streams: a `null` value is a deletion (tombstone).
pub struct OptionSerde<T> {
    inner: SharedSerde<T>,
}

impl<T> Clone for OptionSerde<T> {
    fn clone(&self) -> Self {
        OptionSerde {
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static> OptionSerde<T> {
    /// Wraps `inner`.
    pub fn new(inner: impl Serde<T>) -> Self {
        OptionSerde {
            inner: Arc::new(inner),
        }
    }
    /// Wraps an already shared serde.
    pub fn from_shared(inner: SharedSerde<T>) -> Self {
        OptionSerde { inner }
    }
}

impl<T: 'static> Serde<Option<T>> for OptionSerde<T> {
    fn serialize(&self, value: &Option<T>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match value {
            Some(v) => self.inner.serialize(v, out),
            None => Ok(()),
        }
    }
    fn deserialize(&self, data: &[u8]) -> Result<Option<T>, SerdeError> {
        self.inner.deserialize(data).map(Some)
    }
    fn is_null(&self, value: &Option<T>) -> bool {
        value.is_none()
    }
    fn deserialize_null(&self) -> Result<Option<T>, SerdeError> {
        Ok(None)
    }
}

/// JSON through `serde_json`, for any `serde` type.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for JsonSerde<T> {}
impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        JsonSerde(PhantomData)
    }
}
impl<T> std::fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonSerde<{}>", type_name::<T>())
    }
}

impl<T> Serde<T> for JsonSerde<T>
where
    T: ::serde::Serialize + ::serde::de::DeserializeOwned + 'static,
{
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        serde_json::to_writer(out, value)
            .map_err(|e| SerdeError::new(type_name::<T>(), SerdeErrorKind::Json, e.to_string()))
    }
    fn deserialize(&self, data: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(data)
            .map_err(|e| SerdeError::new(type_name::<T>(), SerdeErrorKind::Json, e.to_string()))
    }
}

/// Constructors for the built-in serdes.
#[derive(Debug, Clone, Copy)]
pub struct Serdes;

impl Serdes {
    /// UTF-8 strings.
    pub fn string() -> StringSerde {
        StringSerde
    }
    /// Raw bytes.
    pub fn bytes() -> BytesSerde {
        BytesSerde
    }
    /// `()`, written as `null`.
    pub fn unit() -> UnitSerde {
        UnitSerde
    }
    /// Big-endian `i16` (Kafka's `Short`).
    pub fn i16() -> BigEndianSerde<i16> {
        BigEndianSerde(PhantomData)
    }
    /// Big-endian `i32` (Kafka's `Integer`).
    pub fn i32() -> BigEndianSerde<i32> {
        BigEndianSerde(PhantomData)
    }
    /// Big-endian `i64` (Kafka's `Long`).
    pub fn i64() -> BigEndianSerde<i64> {
        BigEndianSerde(PhantomData)
    }
    /// Big-endian `u16`.
    pub fn u16() -> BigEndianSerde<u16> {
        BigEndianSerde(PhantomData)
    }
    /// Big-endian `u32`.
    pub fn u32() -> BigEndianSerde<u32> {
        BigEndianSerde(PhantomData)
    }
    /// Big-endian `u64`.
    pub fn u64() -> BigEndianSerde<u64> {
        BigEndianSerde(PhantomData)
    }
    /// Big-endian IEEE 754 `f32` (Kafka's `Float`).
    pub fn f32() -> BigEndianSerde<f32> {
        BigEndianSerde(PhantomData)
    }
    /// Big-endian IEEE 754 `f64` (Kafka's `Double`).
    pub fn f64() -> BigEndianSerde<f64> {
        BigEndianSerde(PhantomData)
    }
    /// JSON for any `serde` type.
    pub fn json<T>() -> JsonSerde<T>
    where
        T: ::serde::Serialize + ::serde::de::DeserializeOwned + 'static,
    {
        JsonSerde::default()
    }
    /// `Option<T>`, with `None` as `null`.
    pub fn option<T: 'static>(inner: impl Serde<T>) -> OptionSerde<T> {
        OptionSerde::new(inner)
    }
}

/// The serde used when an application names none for a type, found by the type alone: `String`, `Vec<u8>`, `()`,
/// the integers and floats. Any other type needs an explicit serde.
pub fn default_serde<T: 'static>() -> Option<SharedSerde<T>> {
    use std::any::Any;
    fn cast<T: 'static, U: 'static>(s: SharedSerde<U>) -> Option<SharedSerde<T>> {
        let boxed: Box<dyn Any> = Box::new(s);
        boxed.downcast::<SharedSerde<T>>().ok().map(|b| *b)
    }
    macro_rules! try_type {
        ($t:ty, $s:expr) => {
            if std::any::TypeId::of::<T>() == std::any::TypeId::of::<$t>() {
                return cast::<T, $t>(Arc::new($s));
            }
        };
    }
    try_type!(String, StringSerde);
    try_type!(Vec<u8>, BytesSerde);
    try_type!((), UnitSerde);
    try_type!(i16, Serdes::i16());
    try_type!(i32, Serdes::i32());
    try_type!(i64, Serdes::i64());
    try_type!(u16, Serdes::u16());
    try_type!(u32, Serdes::u32());
    try_type!(u64, Serdes::u64());
    try_type!(f32, Serdes::f32());
    try_type!(f64, Serdes::f64());
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: PartialEq + std::fmt::Debug + 'static>(s: &dyn Serde<T>, v: T) -> Vec<u8> {
        let mut buf = Vec::new();
        s.serialize(&v, &mut buf).unwrap();
        assert_eq!(s.deserialize(&buf).unwrap(), v);
        buf
    }

    #[test]
    fn integers_are_big_endian_like_kafka() {
        assert_eq!(roundtrip(&Serdes::i32(), 1), vec![0, 0, 0, 1]);
        assert_eq!(roundtrip(&Serdes::i32(), -2), vec![0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(roundtrip(&Serdes::i64(), 258), vec![0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(roundtrip(&Serdes::i16(), 0x0102), vec![1, 2]);
        assert_eq!(
            roundtrip(&Serdes::f64(), 1.5),
            1.5f64.to_bits().to_be_bytes().to_vec()
        );
    }

    #[test]
    fn wrong_length_is_a_typed_error() {
        let err = Serdes::i64().deserialize(&[1, 2, 3]).unwrap_err();
        assert_eq!(
            err.kind,
            SerdeErrorKind::InvalidLength {
                expected: 8,
                actual: 3
            }
        );
        assert_eq!(err.type_name, "i64");
    }

    #[test]
    fn strings_reject_invalid_utf8() {
        assert_eq!(
            roundtrip(&Serdes::string(), "héllo".to_string()),
            "héllo".as_bytes()
        );
        let err = Serdes::string().deserialize(&[0xff, 0xfe]).unwrap_err();
        assert_eq!(err.kind, SerdeErrorKind::InvalidUtf8);
    }

    #[test]
    fn null_handling() {
        let err = Serdes::string().deserialize_nullable(None).unwrap_err();
        assert_eq!(err.kind, SerdeErrorKind::UnexpectedNull);
        let opt = Serdes::option(Serdes::string());
        assert_eq!(opt.deserialize_nullable(None).unwrap(), None);
        let mut buf = vec![9];
        assert!(!opt.serialize_nullable(&None, &mut buf).unwrap());
        assert!(buf.is_empty());
        assert!(opt.serialize_nullable(&Some("a".into()), &mut buf).unwrap());
        assert_eq!(buf, b"a");
        assert!(!Serdes::unit().serialize_nullable(&(), &mut buf).unwrap());
    }

    #[test]
    fn json_roundtrip_and_error() {
        #[derive(::serde::Serialize, ::serde::Deserialize, PartialEq, Debug)]
        struct P {
            id: u32,
            client: String,
        }
        let s = Serdes::json::<P>();
        roundtrip(
            &s,
            P {
                id: 1,
                client: "c".into(),
            },
        );
        let err = s.deserialize(b"{not json").unwrap_err();
        assert_eq!(err.kind, SerdeErrorKind::Json);
    }

    #[test]
    fn default_serdes_by_type() {
        let s = default_serde::<String>().unwrap();
        let mut b = Vec::new();
        s.serialize(&"x".to_string(), &mut b).unwrap();
        assert_eq!(b, b"x");
        let s = default_serde::<i64>().unwrap();
        b.clear();
        s.serialize(&7, &mut b).unwrap();
        assert_eq!(b.len(), 8);
        assert!(default_serde::<std::collections::HashSet<u8>>().is_none());
    }
}
