//! The change records a table forwards: the new value and (when a downstream operator needs it) the old one.

use state_store::{Serde, SerdeError, SerdeErrorKind, SharedSerde};

/// An update of a table row. `new == None` is a deletion; `old` is filled only when downstream operators asked
/// for old values (grouping and aggregating a table does). `is_latest` is false for an out-of-order update of a
/// versioned table (older than the key's latest version): it is forwarded, and `to_stream` emits it, but table
/// joins and re-grouping ignore it, as Kafka Streams' `Change.isLatest` (KIP-914).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change<V> {
    pub new: Option<V>,
    pub old: Option<V>,
    pub is_latest: bool,
}

impl<V> Change<V> {
    pub(crate) fn new(new: Option<V>, old: Option<V>) -> Self {
        Change {
            new,
            old,
            is_latest: true,
        }
    }

    /// This change, marked as the latest version of its row or not.
    pub(crate) fn latest(mut self, is_latest: bool) -> Self {
        self.is_latest = is_latest;
        self
    }
}

/// Writes a [`Change`] on repartition topics: a flags byte (1 = new present, 2 = old present, 4 = not the latest version), then the new
/// value's length as a big-endian u32 and its bytes, then the old value's bytes.
pub(crate) struct ChangeSerde<V> {
    inner: SharedSerde<V>,
}

impl<V> ChangeSerde<V> {
    pub(crate) fn new(inner: SharedSerde<V>) -> Self {
        ChangeSerde { inner }
    }
}

fn malformed(message: &str) -> SerdeError {
    SerdeError::new("Change", SerdeErrorKind::Other, message)
}

impl<V: 'static> Serde<Change<V>> for ChangeSerde<V> {
    fn serialize(&self, value: &Change<V>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        let flags = u8::from(value.new.is_some())
            | (u8::from(value.old.is_some()) << 1)
            | (u8::from(!value.is_latest) << 2);
        out.push(flags);
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        if let Some(n) = &value.new {
            self.inner.serialize(n, out)?;
        }
        let len = u32::try_from(out.len() - len_at - 4)
            .map_err(|_| malformed("value longer than 4 GiB"))?;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        if let Some(o) = &value.old {
            self.inner.serialize(o, out)?;
        }
        Ok(())
    }

    fn deserialize(&self, data: &[u8]) -> Result<Change<V>, SerdeError> {
        if data.len() < 5 {
            return Err(malformed("change record shorter than its 5-byte header"));
        }
        let flags = data[0];
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let rest = &data[5..];
        if len > rest.len() {
            return Err(malformed("change record's new value is truncated"));
        }
        let new = if flags & 1 != 0 {
            Some(self.inner.deserialize(&rest[..len])?)
        } else {
            None
        };
        let old = if flags & 2 != 0 {
            Some(self.inner.deserialize(&rest[len..])?)
        } else {
            None
        };
        Ok(Change {
            new,
            old,
            is_latest: flags & 4 == 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_store::Serdes;
    use std::sync::Arc;

    #[test]
    fn roundtrip_every_shape() {
        let s = ChangeSerde::new(Arc::new(Serdes::string()));
        for c in [
            Change::new(Some("n".to_string()), Some("old".to_string())),
            Change::new(None, Some(String::new())),
            Change::new(Some(String::new()), None),
            Change::new(None, None),
            Change::new(Some("late".to_string()), Some("latest".to_string())).latest(false),
            Change::new(None, None).latest(false),
        ] {
            let mut buf = Vec::new();
            s.serialize(&c, &mut buf).unwrap();
            assert_eq!(s.deserialize(&buf).unwrap(), c);
        }
        assert!(s.deserialize(&[1, 0, 0, 0, 9, b'x']).is_err());
    }
}
