//! The changelog hook: every write that reaches a store is also handed to a sink.

use crate::error::StoreError;
use crate::kv::{BatchEntry, KeyRange, KeyValueStore, KvIter};

/// Receives every write applied to a changelogged store, in order: `Some(value)` for a put, `None` for a delete.
///
/// The runtime implements it by sending the write to the store's compacted changelog topic, on the partition of
/// the task that owns the store; tests can record writes in memory. This crate knows nothing of Kafka.
pub trait ChangelogSink: Send {
    /// Records one write.
    fn log(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError>;

    /// Records one write stamped with `timestamp` rather than the current record's time: a timestamped store's
    /// value, whose timestamp travels as the changelog record's. By default the timestamp is not kept.
    fn log_at(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> Result<(), StoreError> {
        let _ = timestamp;
        self.log(key, value)
    }
}

impl<F> ChangelogSink for F
where
    F: FnMut(&[u8], Option<&[u8]>) -> Result<(), StoreError> + Send,
{
    fn log(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self(key, value)
    }
}

/// Passes every write to a [`ChangelogSink`] after applying it to the store below.
///
/// Placed under the cache, it sees only the writes that leave the cache, so the changelog gets one record per key
/// per flush rather than one per update.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use state_store::{ChangeLoggingKeyValueStore, InMemoryKeyValueStore, KeyValueStore, StoreError};
///
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let sink_log = log.clone();
/// let sink = move |k: &[u8], v: Option<&[u8]>| -> Result<(), StoreError> {
///     sink_log.lock().unwrap().push((k.to_vec(), v.map(<[u8]>::to_vec)));
///     Ok(())
/// };
/// let mut store = ChangeLoggingKeyValueStore::new(InMemoryKeyValueStore::new("s"), sink);
/// store.put(b"a", b"1").unwrap();
/// store.delete(b"a").unwrap();
/// assert_eq!(*log.lock().unwrap(), vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"a".to_vec(), None)]);
/// ```
pub struct ChangeLoggingKeyValueStore<S, L> {
    inner: S,
    sink: L,
}

impl<S: KeyValueStore, L: ChangelogSink> ChangeLoggingKeyValueStore<S, L> {
    /// Wraps `inner`, logging to `sink`.
    pub fn new(inner: S, sink: L) -> Self {
        ChangeLoggingKeyValueStore { inner, sink }
    }

    /// The store below.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: KeyValueStore, L: ChangelogSink> KeyValueStore for ChangeLoggingKeyValueStore<S, L> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, value)?;
        self.sink.log(key, Some(value))
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.inner.delete(key)?;
        // A delete is logged even for an absent key: the changelog may still hold an older value.
        self.sink.log(key, None)?;
        Ok(old)
    }
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StoreError> {
        self.inner.get_into(key, out)
    }
    fn write_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<(), StoreError> {
        self.inner.write_batch(batch)?;
        for (k, v) in batch {
            self.sink.log(k, *v)?;
        }
        Ok(())
    }
    fn scan(&self, range: &KeyRange, reverse: bool) -> Result<KvIter<'_>, StoreError> {
        self.inner.scan(range, reverse)
    }
    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        self.inner.approximate_num_entries()
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    fn close(&mut self) -> Result<(), StoreError> {
        self.inner.close()
    }
    fn close_dirty(&mut self) -> Result<(), StoreError> {
        self.inner.close_dirty()
    }
    fn cache_stats(&self) -> Option<crate::CacheStats> {
        self.inner.cache_stats()
    }
    fn expired_segment_keys(&self, before: i64) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.inner.expired_segment_keys(before)
    }
    fn drop_expired_segments(&mut self, before: i64) -> Result<usize, StoreError> {
        self.inner.drop_expired_segments(before)
    }
    fn segment_expired(&self, key: &[u8], before: i64) -> Result<Option<bool>, StoreError> {
        self.inner.segment_expired(key, before)
    }
    fn commit_transaction(&mut self) -> Result<(), StoreError> {
        self.inner.commit_transaction()
    }
    fn abort_transaction(&mut self) -> Result<(), StoreError> {
        self.inner.abort_transaction()
    }
    fn pending_transaction_bytes(&self) -> usize {
        self.inner.pending_transaction_bytes()
    }
}
