//! Timestamped values: a store value together with the event time it stands for.
//!
//! A table's row, an aggregate or a window's aggregate carries a timestamp: the time of the record that wrote it,
//! or for an aggregate the latest time among the records folded into it. Operators read it back to stamp what
//! they forward (a table-table join result gets the later of its two rows' timestamps), so a downstream result
//! never goes back in time because of which side happened to trigger it.
//!
//! A timestamped store holds each value as eight bytes of big-endian timestamp followed by the value's own
//! encoding ([`TimestampedSerde`]). [`ValueOfTimestampedSerde`] reads the plain value of such an entry, so a
//! timestamped store can be queried as a store of plain values.
//!
//! ```
//! use state_store::serde::{Serde, Serdes};
//! use state_store::{TimestampedSerde, ValueAndTimestamp, ValueOfTimestampedSerde};
//! use std::sync::Arc;
//!
//! let serde = TimestampedSerde::new(Arc::new(Serdes::string()));
//! let mut buf = Vec::new();
//! serde.serialize(&ValueAndTimestamp::new("blue".to_string(), 42), &mut buf).unwrap();
//! assert_eq!(&buf[..8], &42i64.to_be_bytes());
//! assert_eq!(serde.deserialize(&buf).unwrap().timestamp, 42);
//!
//! let plain = ValueOfTimestampedSerde::new(Arc::new(Serdes::string()));
//! assert_eq!(plain.deserialize(&buf).unwrap(), "blue");
//! ```

use crate::error::{SerdeError, SerdeErrorKind};
use crate::serde::{Serde, SharedSerde};

/// The timestamp a value written without one carries (Kafka's `RecordQueue.UNKNOWN`).
pub const NO_TIMESTAMP: i64 = -1;

/// A value and the event time (milliseconds since the epoch) it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueAndTimestamp<V> {
    /// The value.
    pub value: V,
    /// Its timestamp.
    pub timestamp: i64,
}

impl<V> ValueAndTimestamp<V> {
    /// `value` at `timestamp`.
    pub fn new(value: V, timestamp: i64) -> Self {
        ValueAndTimestamp { value, timestamp }
    }

    /// The value, without its timestamp.
    pub fn into_value(self) -> V {
        self.value
    }
}

fn split<T>(data: &[u8]) -> Result<(i64, &[u8]), SerdeError> {
    let Some((ts, rest)) = data.split_first_chunk::<8>() else {
        return Err(SerdeError::new(
            std::any::type_name::<T>(),
            SerdeErrorKind::InvalidLength {
                expected: 8,
                actual: data.len(),
            },
            "a timestamped value starts with an 8-byte timestamp; this entry is shorter (was it written by a \
             store without timestamps?)",
        ));
    };
    Ok((i64::from_be_bytes(*ts), rest))
}

/// Writes a [`ValueAndTimestamp`] as its big-endian timestamp followed by the value through `inner`.
pub struct TimestampedSerde<V> {
    inner: SharedSerde<V>,
}

impl<V> Clone for TimestampedSerde<V> {
    fn clone(&self) -> Self {
        TimestampedSerde {
            inner: self.inner.clone(),
        }
    }
}

impl<V: 'static> TimestampedSerde<V> {
    /// Values through `inner`.
    pub fn new(inner: SharedSerde<V>) -> Self {
        TimestampedSerde { inner }
    }
}

impl<V: 'static> Serde<ValueAndTimestamp<V>> for TimestampedSerde<V> {
    fn serialize(&self, value: &ValueAndTimestamp<V>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(&value.timestamp.to_be_bytes());
        self.inner.serialize(&value.value, out)
    }

    fn deserialize(&self, data: &[u8]) -> Result<ValueAndTimestamp<V>, SerdeError> {
        let (timestamp, rest) = split::<ValueAndTimestamp<V>>(data)?;
        Ok(ValueAndTimestamp {
            value: self.inner.deserialize(rest)?,
            timestamp,
        })
    }
}

/// Reads the plain value of a [`TimestampedSerde`] entry; writes a value with [`NO_TIMESTAMP`]. The view a
/// timestamped store gives to readers that ask for plain values (interactive queries, the test driver).
pub struct ValueOfTimestampedSerde<V> {
    inner: SharedSerde<V>,
}

impl<V> Clone for ValueOfTimestampedSerde<V> {
    fn clone(&self) -> Self {
        ValueOfTimestampedSerde {
            inner: self.inner.clone(),
        }
    }
}

impl<V: 'static> ValueOfTimestampedSerde<V> {
    /// Values through `inner`.
    pub fn new(inner: SharedSerde<V>) -> Self {
        ValueOfTimestampedSerde { inner }
    }
}

impl<V: 'static> Serde<V> for ValueOfTimestampedSerde<V> {
    fn serialize(&self, value: &V, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(&NO_TIMESTAMP.to_be_bytes());
        self.inner.serialize(value, out)
    }

    fn deserialize(&self, data: &[u8]) -> Result<V, SerdeError> {
        let (_, rest) = split::<V>(data)?;
        self.inner.deserialize(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde::Serdes;
    use std::sync::Arc;

    #[test]
    fn roundtrip_and_plain_view() {
        let t = TimestampedSerde::new(Arc::new(Serdes::i64()));
        let plain = ValueOfTimestampedSerde::new(Arc::new(Serdes::i64()));
        for (v, ts) in [(0, 0), (-5, i64::MAX), (7, NO_TIMESTAMP), (i64::MIN, 12)] {
            let mut buf = Vec::new();
            t.serialize(&ValueAndTimestamp::new(v, ts), &mut buf)
                .unwrap();
            assert_eq!(buf.len(), 16);
            assert_eq!(t.deserialize(&buf).unwrap(), ValueAndTimestamp::new(v, ts));
            assert_eq!(plain.deserialize(&buf).unwrap(), v);
        }
        let mut buf = Vec::new();
        plain.serialize(&3, &mut buf).unwrap();
        assert_eq!(
            t.deserialize(&buf).unwrap(),
            ValueAndTimestamp::new(3, NO_TIMESTAMP)
        );
    }

    #[test]
    fn a_short_entry_is_a_typed_error() {
        let t = TimestampedSerde::new(Arc::new(Serdes::string()));
        let e = t.deserialize(&[0, 1, 2]).unwrap_err();
        assert!(matches!(
            e.kind,
            SerdeErrorKind::InvalidLength {
                expected: 8,
                actual: 3
            }
        ));
        let plain = ValueOfTimestampedSerde::new(Arc::new(Serdes::string()));
        assert!(plain.deserialize(&[]).is_err());
    }
}
