//! The processors behind the DSL's operators, one per file.

pub(crate) mod branch;
pub(crate) mod emit_final;
pub(crate) mod filter;
pub(crate) mod fk_left;
pub(crate) mod fk_resolve;
pub(crate) mod fk_right;
pub(crate) mod fk_wire;
pub(crate) mod flat_map;
pub(crate) mod flush_listener;
pub(crate) mod global_join;
pub(crate) mod map;
pub(crate) mod passthrough;
pub(crate) mod peek;
pub(crate) mod session_aggregate;
pub(crate) mod sliding_aggregate;
pub(crate) mod stream_aggregate;
pub(crate) mod stream_join;
pub(crate) mod stream_table_join;
pub(crate) mod suppress;
pub(crate) mod table_aggregate;
pub(crate) mod table_filter;
pub(crate) mod table_group_by;
pub(crate) mod table_map_values;
pub(crate) mod table_materialize;
pub(crate) mod table_source;
pub(crate) mod table_table_join;
pub(crate) mod table_to_stream;
pub(crate) mod table_transform_values;
pub(crate) mod to_table;
pub(crate) mod versioned_table_source;
pub(crate) mod window_aggregate;

use state_store::{TypedKeyValueStore, ValueAndTimestamp, NO_TIMESTAMP};
use streams_core::{Data, Headers, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::flush_listener::CacheListener;
use crate::ops::stream_aggregate::change;

/// The store of a materialized table operator (`filter`, `map_values`, `transform_values`, a table-table join's
/// result) with the flush listener of its cache: Kafka's `TimestampedTupleForwarder`, which forwards each change
/// at once when the store is not cached and leaves it to the cache's flush otherwise.
pub(crate) struct TableStore<K, V> {
    pub store: TypedKeyValueStore<K, ValueAndTimestamp<V>>,
    emit: CacheListener<K, ValueAndTimestamp<V>>,
}

impl<K: Data, V: Data> TableStore<K, V> {
    /// Opens store `name` for a processor, forwarding old values when `send_old`.
    pub(crate) fn open<VO: Data>(
        ctx: &mut ProcessorContext<K, Change<VO>>,
        name: &str,
        send_old: bool,
    ) -> Result<Self, StreamsError> {
        let store: TypedKeyValueStore<K, ValueAndTimestamp<V>> = ctx.key_value_store(name)?;
        let emit = CacheListener::register(
            store.bytes(),
            store.key_serde().clone(),
            store.value_serde().clone(),
            send_old,
            true,
        )?;
        Ok(TableStore { store, emit })
    }

    /// Writes `new` for `key` at `timestamp` (deletes it when `None`) and forwards the change from `old`: at
    /// once without a cache, when the cache flushes or evicts it with one (its old value then being the row the
    /// store below held).
    pub(crate) fn write_and_forward(
        &mut self,
        ctx: &mut ProcessorContext<K, Change<V>>,
        key: K,
        new: Option<V>,
        old: Option<V>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<(), StreamsError> {
        if self.emit.caching() {
            self.emit.set_context(ctx, timestamp, headers)?;
            put_timestamped(&mut self.store, &key, new, timestamp)?;
            return self.emit.finish(ctx, &change);
        }
        let new = put_timestamped(&mut self.store, &key, new, timestamp)?;
        ctx.forward(Record {
            key,
            value: Change::new(new, old),
            timestamp,
            headers,
        })
    }

    /// Forwards what the cache holds (a commit).
    pub(crate) fn flush(
        &mut self,
        ctx: &mut ProcessorContext<K, Change<V>>,
    ) -> Result<(), StreamsError> {
        self.emit.flush(ctx, &change)
    }
}

/// Reads the rows of another operator's table store with their timestamps. DSL tables keep timestamped stores;
/// a store of plain values (a windowed table's, or one a user registered) reads as rows of unknown time.
pub(crate) enum RowReader<K, V> {
    Timestamped(TypedKeyValueStore<K, ValueAndTimestamp<V>>),
    Plain(TypedKeyValueStore<K, V>),
}

impl<K: 'static, V: 'static> RowReader<K, V> {
    /// Opens store `name` for a processor.
    pub(crate) fn open<KO: streams_core::Data, VO: streams_core::Data>(
        ctx: &mut ProcessorContext<KO, VO>,
        name: &str,
    ) -> Result<Self, StreamsError> {
        match ctx.key_value_store::<K, ValueAndTimestamp<V>>(name) {
            Ok(s) => Ok(RowReader::Timestamped(s)),
            Err(timestamped) => ctx
                .key_value_store::<K, V>(name)
                .map(RowReader::Plain)
                .map_err(|_| timestamped),
        }
    }

    /// The row of `key` and its timestamp ([`NO_TIMESTAMP`] when the store keeps none).
    pub(crate) fn get(&mut self, key: &K) -> Result<Option<ValueAndTimestamp<V>>, StreamsError> {
        Ok(match self {
            RowReader::Timestamped(s) => s.get(key)?,
            RowReader::Plain(s) => s.get(key)?.map(|v| ValueAndTimestamp::new(v, NO_TIMESTAMP)),
        })
    }
}

/// Puts `value` at `timestamp` into a timestamped store, or deletes the key when `value` is `None`; hands the
/// value back.
pub(crate) fn put_timestamped<K: 'static, V: 'static>(
    store: &mut TypedKeyValueStore<K, ValueAndTimestamp<V>>,
    key: &K,
    value: Option<V>,
    timestamp: i64,
) -> Result<Option<V>, StreamsError> {
    match value {
        Some(v) => {
            let row = ValueAndTimestamp::new(v, timestamp);
            store.put(key, &row)?;
            Ok(Some(row.value))
        }
        None => {
            store.delete(key)?;
            Ok(None)
        }
    }
}

/// Reading the fixed-width parts of operators' internal store layouts. Store contents come back from changelogs
/// that anything could have written to, so a short entry is a typed error naming the store, never a panic.
pub(crate) mod layout {
    use state_store::{SerdeError, SerdeErrorKind, StoreError};
    use streams_core::StreamsError;

    /// The big-endian i64 at `at` of `bytes`, an entry of `store`.
    pub(crate) fn i64_at(store: &str, bytes: &[u8], at: usize) -> Result<i64, StreamsError> {
        bytes
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_be_bytes)
            .ok_or_else(|| short(store, bytes.len(), at + 8))
    }

    /// The byte at `at` of `bytes`, an entry of `store`.
    pub(crate) fn u8_at(store: &str, bytes: &[u8], at: usize) -> Result<u8, StreamsError> {
        bytes
            .get(at)
            .copied()
            .ok_or_else(|| short(store, bytes.len(), at + 1))
    }

    /// What follows the first `header` bytes of `bytes`, an entry of `store`.
    pub(crate) fn after<'a>(
        store: &str,
        bytes: &'a [u8],
        header: usize,
    ) -> Result<&'a [u8], StreamsError> {
        bytes
            .get(header..)
            .ok_or_else(|| short(store, bytes.len(), header))
    }

    fn short(store: &str, actual: usize, expected: usize) -> StreamsError {
        StreamsError::from(StoreError::Serde {
            store: store.to_string(),
            source: SerdeError::new(
                "internal store entry",
                SerdeErrorKind::InvalidLength { expected, actual },
                format!(
                    "an entry of {actual} bytes where the layout needs at least {expected}; the store (or its \
                     changelog) holds data this operator did not write"
                ),
            ),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn short_entries_are_errors_naming_the_store() {
            let bytes = 7i64.to_be_bytes();
            assert_eq!(i64_at("s", &bytes, 0).unwrap(), 7);
            assert_eq!(u8_at("s", &bytes, 7).unwrap(), 7);
            assert_eq!(after("s", &bytes, 8).unwrap(), &[] as &[u8]);
            for e in [
                i64_at("buffer", &bytes[..5], 0).unwrap_err(),
                i64_at("buffer", &bytes, 1).unwrap_err(),
                u8_at("buffer", &bytes, 8).unwrap_err(),
                after("buffer", &bytes, 9).unwrap_err(),
            ] {
                let text = e.to_string();
                assert!(text.contains("buffer") && text.contains("bytes"), "{text}");
            }
        }
    }
}
