//! The key-value store trait over bytes, and key ranges.

use std::ops::Bound;

use crate::error::StoreError;

/// One entry: key and value bytes.
pub type KvEntry = (Vec<u8>, Vec<u8>);

/// One write of a batch: a key and its new value, `None` to delete it.
pub type BatchEntry<'a> = (&'a [u8], Option<&'a [u8]>);

/// An iterator over entries in key order (or reverse key order), borrowing the store.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<KvEntry, StoreError>> + 'a>;

/// A range of byte keys, normalised to an inclusive lower bound and an exclusive upper bound.
///
/// Every store implementation sees ranges in this one form, so bound handling lives in one place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyRange {
    /// Smallest key included; `None` is unbounded.
    pub lower: Option<Vec<u8>>,
    /// Smallest key excluded; `None` is unbounded.
    pub upper: Option<Vec<u8>>,
    /// The caller wants only the keys that share their record-key part with `lower` (a window or session store
    /// reading one key's windows, see [`StoreContext::key_suffix_len`](crate::StoreContext::key_suffix_len)): a
    /// store with a prefix bloom filter on that part may leave out the range's other keys, and skips the files
    /// that hold none of this one. Stores without such a filter return every key of the range. Only honoured on
    /// forward scans with a lower bound.
    pub one_key_prefix: bool,
}

fn successor(key: &[u8]) -> Vec<u8> {
    // The smallest key greater than `key` in lexicographic byte order.
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    k
}

/// The smallest key greater than every key that starts with `prefix`, or `None` when there is none.
pub fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange::default()
    }

    /// From general bounds.
    pub fn from_bounds(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Self {
        KeyRange {
            lower: match lower {
                Bound::Included(k) => Some(k.to_vec()),
                Bound::Excluded(k) => Some(successor(k)),
                Bound::Unbounded => None,
            },
            upper: match upper {
                Bound::Included(k) => Some(successor(k)),
                Bound::Excluded(k) => Some(k.to_vec()),
                Bound::Unbounded => None,
            },
            one_key_prefix: false,
        }
    }

    /// The same range, marked as read for the keys of one record key only (see [`KeyRange::one_key_prefix`]).
    pub fn of_one_key(mut self) -> Self {
        self.one_key_prefix = true;
        self
    }

    /// `from..=to`, Kafka Streams' `range(from, to)`; either end may be open.
    pub fn inclusive(from: Option<&[u8]>, to: Option<&[u8]>) -> Self {
        Self::from_bounds(
            from.map_or(Bound::Unbounded, Bound::Included),
            to.map_or(Bound::Unbounded, Bound::Included),
        )
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange {
            lower: Some(prefix.to_vec()),
            upper: prefix_upper_bound(prefix),
            one_key_prefix: false,
        }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.lower.as_deref().is_none_or(|l| key >= l)
            && self.upper.as_deref().is_none_or(|u| key < u)
    }

    /// Whether the range can hold no key at all.
    pub fn is_empty(&self) -> bool {
        matches!((&self.lower, &self.upper), (Some(l), Some(u)) if l >= u)
    }

    /// The range as `std` bounds over byte slices.
    pub fn as_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (
            self.lower
                .as_deref()
                .map_or(Bound::Unbounded, Bound::Included),
            self.upper
                .as_deref()
                .map_or(Bound::Unbounded, Bound::Excluded),
        )
    }
}

/// A key-value store over bytes, ordered by key (lexicographic on bytes).
///
/// Reads take `&self`, writes `&mut self`. Iterators borrow the store. Implementations: [`InMemoryKeyValueStore`],
/// [`RocksDbKeyValueStore`], [`SegmentedKeyValueStore`], and the layers [`CachingKeyValueStore`],
/// [`ChangeLoggingKeyValueStore`] and [`TransactionalKeyValueStore`] that wrap any other store.
///
/// [`InMemoryKeyValueStore`]: crate::InMemoryKeyValueStore
/// [`RocksDbKeyValueStore`]: crate::RocksDbKeyValueStore
/// [`CachingKeyValueStore`]: crate::CachingKeyValueStore
/// [`ChangeLoggingKeyValueStore`]: crate::ChangeLoggingKeyValueStore
/// [`SegmentedKeyValueStore`]: crate::SegmentedKeyValueStore
/// [`TransactionalKeyValueStore`]: crate::TransactionalKeyValueStore
pub trait KeyValueStore: Send {
    /// The store's name.
    fn name(&self) -> &str;

    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `value` under `key`, replacing any previous value.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`; returns the value it had.
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Iterates the entries whose keys lie in `range`, ascending, or descending when `reverse`.
    fn scan(&self, range: &KeyRange, reverse: bool) -> Result<KvIter<'_>, StoreError>;

    /// An estimate of the number of entries (exact for in-memory stores).
    fn approximate_num_entries(&self) -> Result<u64, StoreError>;

    /// Makes every write so far durable in the store's own medium.
    fn flush(&mut self) -> Result<(), StoreError>;

    /// Whether the store keeps its data on disk.
    fn persistent(&self) -> bool;

    /// Stores `value` under `key` only when the key has no value; returns the existing value otherwise.
    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.get(key)? {
            Some(existing) => Ok(Some(existing)),
            None => {
                self.put(key, value)?;
                Ok(None)
            }
        }
    }

    /// Copies the value under `key` into `out` (cleared first) and returns whether there was one; saves an
    /// allocation per read on hot paths.
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StoreError> {
        out.clear();
        match self.get(key)? {
            Some(v) => {
                out.extend_from_slice(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Applies a batch of writes (`None` deletes). Stores with a native batch (RocksDB) apply it atomically.
    fn write_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<(), StoreError> {
        for (k, v) in batch {
            match v {
                Some(v) => self.put(k, v)?,
                None => {
                    self.delete(k)?;
                }
            }
        }
        Ok(())
    }

    /// Entries with `from <= key <= to` ascending (`None` leaves that end open). An inverted range is empty.
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KvIter<'_>, StoreError> {
        self.scan(&KeyRange::inclusive(from, to), false)
    }

    /// Entries with `from <= key <= to` descending.
    fn reverse_range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Result<KvIter<'_>, StoreError> {
        self.scan(&KeyRange::inclusive(from, to), true)
    }

    /// Entries whose key starts with `prefix`, ascending.
    fn prefix_scan(&self, prefix: &[u8]) -> Result<KvIter<'_>, StoreError> {
        self.scan(&KeyRange::prefix(prefix), false)
    }

    /// Every entry, ascending.
    fn all(&self) -> Result<KvIter<'_>, StoreError> {
        self.scan(&KeyRange::all(), false)
    }

    /// Every entry, descending.
    fn reverse_all(&self) -> Result<KvIter<'_>, StoreError> {
        self.scan(&KeyRange::all(), true)
    }

    /// Releases resources; the store must not be used afterwards.
    fn close(&mut self) -> Result<(), StoreError> {
        self.flush()
    }

    /// Releases resources without writing anything still buffered: a write-back cache drops its dirty entries
    /// (they never reach the store below or its changelog). For a task whose partitions were lost to another
    /// member, whose pending writes must not be published. The store must not be used afterwards; the default
    /// releases nothing early (dropping the store does).
    fn close_dirty(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Hit and miss counts of the write-back cache in this store's stack, if it has one.
    fn cache_stats(&self) -> Option<crate::CacheStats> {
        None
    }

    /// For a store kept in time segments ([`SegmentedKeyValueStore`]): the keys held by the segments whose every
    /// time is before `before`, which [`KeyValueStore::drop_expired_segments`] would drop. `None` (the default)
    /// for a store that is not segmented. Layers pass it to the store below.
    ///
    /// [`SegmentedKeyValueStore`]: crate::SegmentedKeyValueStore
    fn expired_segment_keys(&self, before: i64) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let _ = before;
        Ok(None)
    }

    /// For a store kept in time segments: drops, whole, the segments whose every time is before `before`, and
    /// returns how many. Nothing is logged; delete the keys of [`KeyValueStore::expired_segment_keys`] through
    /// the stack first for the changelog and cache to forget them. The default drops nothing.
    fn drop_expired_segments(&mut self, before: i64) -> Result<usize, StoreError> {
        let _ = before;
        Ok(0)
    }

    /// For a store kept in time segments: whether the segment `key` belongs to lies wholly before `before`, so
    /// that [`KeyValueStore::drop_expired_segments`]`(before)` drops it (or would, were the segment there), or an
    /// error naming the store when it could not hold `key` at all (a key without a time, or with a negative one).
    /// `Ok(None)` (the default) for a store that is not segmented. Layers pass it to the store below; a layer that
    /// holds writes back ([`TransactionalKeyValueStore`]) checks its keys with it and applies segment expiry to
    /// the writes it holds.
    ///
    /// [`TransactionalKeyValueStore`]: crate::TransactionalKeyValueStore
    fn segment_expired(&self, key: &[u8], before: i64) -> Result<Option<bool>, StoreError> {
        let _ = (key, before);
        Ok(None)
    }

    /// Applies to the store below the writes this store holds back for the running transaction, then forgets
    /// them: a [`TransactionalKeyValueStore`] writes them in one batch (with any segment expiry deferred until
    /// then). Call it once the transaction the writes belong to has committed (for Kafka, once the producer's
    /// transaction, which carries the changelog records of these writes, has committed), after flushing any
    /// cache above so every write of the transaction has reached this layer. The writes are applied, not made
    /// durable: [`KeyValueStore::flush`] afterwards, before recording a checkpoint. Layers pass it on to the
    /// store below. The default, for a store that holds nothing back, does nothing.
    ///
    /// ```
    /// use state_store::{InMemoryKeyValueStore, KeyValueStore, TransactionalKeyValueStore};
    ///
    /// let mut store = TransactionalKeyValueStore::new(InMemoryKeyValueStore::new("s"));
    /// store.put(b"k", b"v").unwrap();
    /// assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec())); // reads see held writes
    /// assert_eq!(store.inner().get(b"k").unwrap(), None); // the store below does not, yet
    /// store.commit_transaction().unwrap();
    /// assert_eq!(store.inner().get(b"k").unwrap(), Some(b"v".to_vec()));
    /// ```
    ///
    /// [`TransactionalKeyValueStore`]: crate::TransactionalKeyValueStore
    fn commit_transaction(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Discards the writes this store holds back for the running transaction (it aborted, or will never
    /// commit), so the store below keeps only committed data. A write-back cache above drops every entry, clean
    /// or dirty, since any of them may reflect a discarded write. Layers pass it on to the store below. The
    /// default, for a store that holds nothing back, does nothing.
    ///
    /// ```
    /// use state_store::{CachingKeyValueStore, InMemoryKeyValueStore, KeyValueStore, TransactionalKeyValueStore};
    ///
    /// let held = TransactionalKeyValueStore::new(InMemoryKeyValueStore::new("s"));
    /// let mut store = CachingKeyValueStore::new(held, 1 << 20);
    /// store.put(b"k", b"v").unwrap();
    /// store.flush().unwrap(); // through the cache, into the held writes
    /// store.abort_transaction().unwrap();
    /// assert_eq!(store.get(b"k").unwrap(), None);
    /// ```
    fn abort_transaction(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Bytes (keys plus values) of the writes held back for the running transaction, in this store's stack; 0
    /// (the default) for a store that holds nothing back. For metrics.
    fn pending_transaction_bytes(&self) -> usize {
        0
    }

    /// Asks the write-back cache in this store's stack to report every dirty entry it writes to the store below
    /// (at a flush or an eviction) as a [`FlushedEntry`](crate::FlushedEntry), to be collected with
    /// [`take_flushed`](KeyValueStore::take_flushed): Kafka Streams' cache flush listener. With `read_old`, each
    /// entry carries the value the store below held before the write (read for deletions in any case, so a key
    /// created and deleted between two flushes can be recognised). Returns whether the store has a cache; without
    /// one nothing is reported and writes reach the store below at once.
    fn listen_for_flushes(&mut self, _read_old: bool) -> bool {
        false
    }

    /// Sets the context (timestamp, headers, origin of the record being processed) attached to the writes that
    /// follow, until replaced; a listened-to cache hands it back with each [`FlushedEntry`](crate::FlushedEntry). Ignored without a
    /// cache.
    fn set_write_context(&mut self, _context: Option<crate::WriteContext>) {}

    /// Moves the entries the cache wrote below since the last call into `out`, in the order they were written.
    fn take_flushed(&mut self, _out: &mut Vec<crate::FlushedEntry>) {}

    /// Writes the cache's dirty entries to the store below (reporting them when listened to), without flushing
    /// the store below itself. Does nothing without a cache.
    fn flush_cache(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl<S: KeyValueStore + ?Sized> KeyValueStore for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        (**self).put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).delete(key)
    }
    fn scan(&self, range: &KeyRange, reverse: bool) -> Result<KvIter<'_>, StoreError> {
        (**self).scan(range, reverse)
    }
    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        (**self).approximate_num_entries()
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn persistent(&self) -> bool {
        (**self).persistent()
    }
    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).put_if_absent(key, value)
    }
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StoreError> {
        (**self).get_into(key, out)
    }
    fn write_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<(), StoreError> {
        (**self).write_batch(batch)
    }
    fn close(&mut self) -> Result<(), StoreError> {
        (**self).close()
    }
    fn close_dirty(&mut self) -> Result<(), StoreError> {
        (**self).close_dirty()
    }
    fn cache_stats(&self) -> Option<crate::CacheStats> {
        (**self).cache_stats()
    }
    fn expired_segment_keys(&self, before: i64) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        (**self).expired_segment_keys(before)
    }
    fn drop_expired_segments(&mut self, before: i64) -> Result<usize, StoreError> {
        (**self).drop_expired_segments(before)
    }
    fn segment_expired(&self, key: &[u8], before: i64) -> Result<Option<bool>, StoreError> {
        (**self).segment_expired(key, before)
    }
    fn commit_transaction(&mut self) -> Result<(), StoreError> {
        (**self).commit_transaction()
    }
    fn abort_transaction(&mut self) -> Result<(), StoreError> {
        (**self).abort_transaction()
    }
    fn pending_transaction_bytes(&self) -> usize {
        (**self).pending_transaction_bytes()
    }
    fn listen_for_flushes(&mut self, read_old: bool) -> bool {
        (**self).listen_for_flushes(read_old)
    }
    fn set_write_context(&mut self, context: Option<crate::WriteContext>) {
        (**self).set_write_context(context)
    }
    fn take_flushed(&mut self, out: &mut Vec<crate::FlushedEntry>) {
        (**self).take_flushed(out)
    }
    fn flush_cache(&mut self) -> Result<(), StoreError> {
        (**self).flush_cache()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_upper_bound(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_upper_bound(&[0xff, 0xff]), None);
        let r = KeyRange::prefix(b"ab");
        assert!(r.contains(b"ab") && r.contains(b"abz") && !r.contains(b"ac") && !r.contains(b"a"));
    }

    #[test]
    fn inclusive_range() {
        let r = KeyRange::inclusive(Some(b"b"), Some(b"d"));
        assert!(r.contains(b"b") && r.contains(b"d") && !r.contains(b"d\0") && !r.contains(b"a"));
        assert!(KeyRange::inclusive(Some(b"d"), Some(b"b")).is_empty());
    }
}
