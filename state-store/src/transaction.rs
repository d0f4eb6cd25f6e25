//! Writes held in memory until the transaction they belong to commits, so the store below only ever holds
//! committed data (exactly-once processing).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::StoreError;
use crate::kv::{BatchEntry, KeyRange, KeyValueStore, KvEntry, KvIter};

/// Holds every write in memory, in front of the store below, until [`KeyValueStore::commit_transaction`]
/// applies them all in one [`KeyValueStore::write_batch`]; [`KeyValueStore::abort_transaction`], a dirty close
/// or a crash drops them. Under exactly-once processing the store below (a RocksDB database on disk, say) thus
/// never holds a write of a transaction that did not commit, and a restart after an unclean shutdown can resume
/// from it and the changelog after its checkpoint instead of wiping it and restoring everything.
///
/// Reads see the held writes over the store below: [`get`](KeyValueStore::get) answers from them first, and
/// [`scan`](KeyValueStore::scan) merges them with the scan below in either direction, a held write winning and a
/// held delete hiding the key below. [`flush`](KeyValueStore::flush) flushes the store below only and applies
/// nothing. [`close`](KeyValueStore::close) drops the held writes rather than applying them (commit first, as the
/// runtime does before a clean close); so does [`close_dirty`](KeyValueStore::close_dirty).
///
/// Segment expiry over a [`SegmentedKeyValueStore`] is deferred too, since segments dropped before the
/// transaction commits could not come back after an abort:
/// [`drop_expired_segments`](KeyValueStore::drop_expired_segments) drops at once the held writes to the segments
/// it expires, remembers the latest time, hides the keys of those segments below from reads, and returns 0;
/// [`commit_transaction`](KeyValueStore::commit_transaction) drops the segments below first and then writes the
/// batch. So the store below ends exactly as if every write and expiry had reached it in order, and reads before
/// the commit already show that state: a write to an expired segment made after the expiry is kept (the segmented
/// store would recreate the segment for it), one made before is dropped with the segment.
/// [`expired_segment_keys`](KeyValueStore::expired_segment_keys) lists the keys of expired segments as seen
/// through the held writes, including held writes to segments that exist only in this transaction.
///
/// Every key written is checked with [`KeyValueStore::segment_expired`] as it is written, so a key the store
/// below could not hold (a segmented store's key without a time) fails the write, not the commit.
///
/// ```
/// use state_store::{InMemoryKeyValueStore, KeyValueStore, TransactionalKeyValueStore};
///
/// let mut store = TransactionalKeyValueStore::new(InMemoryKeyValueStore::new("counts"));
/// store.put(b"a", b"1").unwrap();
/// store.commit_transaction().unwrap();
/// store.put(b"b", b"2").unwrap();
/// store.delete(b"a").unwrap();
/// let keys: Vec<_> = store.all().unwrap().map(|e| e.unwrap().0).collect();
/// assert_eq!(keys, vec![b"b".to_vec()]);
/// assert!(store.pending_transaction_bytes() > 0);
/// store.abort_transaction().unwrap();
/// let keys: Vec<_> = store.all().unwrap().map(|e| e.unwrap().0).collect();
/// assert_eq!(keys, vec![b"a".to_vec()]);
/// assert_eq!(store.pending_transaction_bytes(), 0);
/// ```
///
/// [`SegmentedKeyValueStore`]: crate::SegmentedKeyValueStore
pub struct TransactionalKeyValueStore<S> {
    inner: S,
    /// Held writes: `None` deletes.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Key and value bytes of `pending`.
    pending_bytes: usize,
    /// The latest time segment expiry was asked for since the last commit or abort.
    expire_before: Option<i64>,
}

impl<S: KeyValueStore> TransactionalKeyValueStore<S> {
    /// Holds the writes to `inner` until they commit.
    pub fn new(inner: S) -> Self {
        TransactionalKeyValueStore {
            inner,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            expire_before: None,
        }
    }

    /// The store below (committed data only).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The store below, mutably. Writing to it directly bypasses the held writes, which still win on reads and
    /// are applied over it at the next commit.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// How many keys have a held write (a put or a delete).
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// Forgets every held write and any deferred expiry.
    fn discard(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
        self.expire_before = None;
    }

    /// Whether the store below holds `key` in a segment whose drop is deferred to the commit.
    fn dropped_below(&self, key: &[u8]) -> Result<bool, StoreError> {
        match self.expire_before {
            None => Ok(false),
            Some(before) => Ok(self.inner.segment_expired(key, before)? == Some(true)),
        }
    }

    /// Fails when the store below could not hold `key`.
    fn check_key(&self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.segment_expired(key, i64::MIN).map(|_| ())
    }

    fn hold(&mut self, key: &[u8], value: Option<&[u8]>) {
        let new_len = value.map_or(0, <[u8]>::len);
        match self.pending.get_mut(key) {
            Some(slot) => {
                let old_len = slot.as_ref().map_or(0, Vec::len);
                match (value, slot) {
                    (Some(v), Some(old)) => {
                        old.clear();
                        old.extend_from_slice(v);
                    }
                    (v, slot) => *slot = v.map(<[u8]>::to_vec),
                }
                self.pending_bytes = self.pending_bytes - old_len + new_len;
            }
            None => {
                self.pending.insert(key.to_vec(), value.map(<[u8]>::to_vec));
                self.pending_bytes += key.len() + new_len;
            }
        }
    }

    fn forget(&mut self, key: &[u8]) {
        if let Some(v) = self.pending.remove(key) {
            self.pending_bytes -= key.len() + v.map_or(0, |v| v.len());
        }
    }
}

impl<S: KeyValueStore> KeyValueStore for TransactionalKeyValueStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending.get(key) {
            Some(held) => Ok(held.clone()),
            None if self.dropped_below(key)? => Ok(None),
            None => self.inner.get(key),
        }
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StoreError> {
        match self.pending.get(key) {
            Some(held) => {
                out.clear();
                Ok(match held {
                    Some(v) => {
                        out.extend_from_slice(v);
                        true
                    }
                    None => false,
                })
            }
            None if self.dropped_below(key)? => {
                out.clear();
                Ok(false)
            }
            None => self.inner.get_into(key, out),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.check_key(key)?;
        self.hold(key, Some(value));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.get(key)?;
        if old.is_some() {
            self.hold(key, None);
        }
        Ok(old)
    }

    /// Holds the whole batch, or nothing when a key of it could not be stored below.
    fn write_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<(), StoreError> {
        for (k, _) in batch {
            self.check_key(k)?;
        }
        for &(k, v) in batch {
            if v.is_none() && !self.pending.contains_key(k) && self.dropped_below(k)? {
                // Nothing below survives the deferred drop: nothing to delete.
                continue;
            }
            self.hold(k, v);
        }
        Ok(())
    }

    fn scan(&self, range: &KeyRange, reverse: bool) -> Result<KvIter<'_>, StoreError> {
        if range.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        let held = self
            .pending
            .range::<[u8], _>(range.as_bounds())
            .map(|(k, v)| (k.as_slice(), v.as_deref()));
        let held: HeldIter<'_> = if reverse {
            Box::new(held.rev())
        } else {
            Box::new(held)
        };
        let below = self.inner.scan(range, reverse)?;
        Ok(Box::new(OverlayIter {
            held: held.peekable(),
            below: below.peekable(),
            reverse,
            dropped: self
                .expire_before
                .map(|before| (&self.inner as &dyn KeyValueStore, before)),
        }))
    }

    /// The count below, plus held puts of keys it lacks, minus held deletes of keys it has (a read below per held
    /// write).
    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        let mut n = self.inner.approximate_num_entries()?;
        let mut buf = Vec::new();
        for (k, v) in &self.pending {
            let below = !self.dropped_below(k)? && self.inner.get_into(k, &mut buf)?;
            match (v, below) {
                (Some(_), false) => n = n.saturating_add(1),
                (None, true) => n = n.saturating_sub(1),
                _ => {}
            }
        }
        Ok(n)
    }

    /// Flushes the store below; the held writes stay held.
    fn flush(&mut self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    fn persistent(&self) -> bool {
        self.inner.persistent()
    }

    /// Drops the held writes (they never committed: commit before a clean close), then closes the store below.
    fn close(&mut self) -> Result<(), StoreError> {
        self.discard();
        self.inner.close()
    }

    /// Drops the held writes, then closes the store below dirty.
    fn close_dirty(&mut self) -> Result<(), StoreError> {
        self.discard();
        self.inner.close_dirty()
    }

    fn cache_stats(&self) -> Option<crate::CacheStats> {
        self.inner.cache_stats()
    }

    /// The keys of the segments before `before` as seen through the held writes: those below not deleted or
    /// overwritten by a held write (nor in a segment already dropped in this transaction), and the held puts to
    /// such segments, in key order. `None` when the store below is not segmented.
    fn expired_segment_keys(&self, before: i64) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let Some(below) = self.inner.expired_segment_keys(before)? else {
            return Ok(None);
        };
        let mut keys = BTreeSet::new();
        for k in below {
            if !self.pending.contains_key(&k) && !self.dropped_below(&k)? {
                keys.insert(k);
            }
        }
        for (k, v) in &self.pending {
            if v.is_some() && self.inner.segment_expired(k, before)? == Some(true) {
                keys.insert(k.clone());
            }
        }
        Ok(Some(keys.into_iter().collect()))
    }

    /// Drops the held writes to the segments before `before` and defers dropping those segments below to the
    /// commit (reads no longer see them); returns 0, as no segment is dropped yet.
    fn drop_expired_segments(&mut self, before: i64) -> Result<usize, StoreError> {
        let mut doomed = Vec::new();
        for k in self.pending.keys() {
            if self.inner.segment_expired(k, before)? == Some(true) {
                doomed.push(k.clone());
            }
        }
        for k in doomed {
            self.forget(&k);
        }
        self.expire_before = Some(self.expire_before.map_or(before, |b| b.max(before)));
        Ok(0)
    }

    fn segment_expired(&self, key: &[u8], before: i64) -> Result<Option<bool>, StoreError> {
        self.inner.segment_expired(key, before)
    }

    /// Drops the segments whose drop was deferred, applies the held writes in one batch, forgets them, and
    /// passes the commit on. On an error everything stays held, and a retry redoes the same (idempotent) work.
    fn commit_transaction(&mut self) -> Result<(), StoreError> {
        if let Some(before) = self.expire_before {
            self.inner.drop_expired_segments(before)?;
        }
        if !self.pending.is_empty() {
            let batch: Vec<BatchEntry<'_>> = self
                .pending
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_deref()))
                .collect();
            self.inner.write_batch(&batch)?;
        }
        self.discard();
        self.inner.commit_transaction()
    }

    /// Drops the held writes and any deferred expiry, and passes the abort on.
    fn abort_transaction(&mut self) -> Result<(), StoreError> {
        self.discard();
        self.inner.abort_transaction()
    }

    fn pending_transaction_bytes(&self) -> usize {
        self.pending_bytes + self.inner.pending_transaction_bytes()
    }

    fn listen_for_flushes(&mut self, read_old: bool) -> bool {
        self.inner.listen_for_flushes(read_old)
    }

    fn set_write_context(&mut self, context: Option<crate::WriteContext>) {
        self.inner.set_write_context(context)
    }

    fn take_flushed(&mut self, out: &mut Vec<crate::FlushedEntry>) {
        self.inner.take_flushed(out)
    }

    fn flush_cache(&mut self) -> Result<(), StoreError> {
        self.inner.flush_cache()
    }
}

type HeldIter<'a> = Box<dyn Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a>;

/// Merges the held writes of a range with the scan below, the held writes winning.
struct OverlayIter<'a> {
    held: std::iter::Peekable<HeldIter<'a>>,
    below: std::iter::Peekable<KvIter<'a>>,
    reverse: bool,
    /// The store below and the time before which its segments are dropped at the commit, if any.
    dropped: Option<(&'a dyn KeyValueStore, i64)>,
}

enum Next {
    Held,
    /// The held write shadows the entry below with the same key.
    HeldOverBelow,
    Below,
    Done,
}

impl Iterator for OverlayIter<'_> {
    type Item = Result<KvEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let next = match (self.held.peek(), self.below.peek()) {
                (_, Some(Err(_))) => return self.below.next(),
                (None, None) => Next::Done,
                (Some(_), None) => Next::Held,
                (None, Some(_)) => Next::Below,
                (Some((h, _)), Some(Ok((b, _)))) => {
                    let order = (*h).cmp(b.as_slice());
                    let order = if self.reverse { order.reverse() } else { order };
                    match order {
                        std::cmp::Ordering::Less => Next::Held,
                        std::cmp::Ordering::Equal => Next::HeldOverBelow,
                        std::cmp::Ordering::Greater => Next::Below,
                    }
                }
            };
            match next {
                Next::Done => return None,
                Next::Held | Next::HeldOverBelow => {
                    if matches!(next, Next::HeldOverBelow) {
                        self.below.next();
                    }
                    let (k, v) = self.held.next()?;
                    if let Some(v) = v {
                        return Some(Ok((k.to_vec(), v.to_vec())));
                    }
                }
                Next::Below => {
                    let entry = self.below.next()?;
                    let Ok((k, _)) = &entry else {
                        return Some(entry);
                    };
                    if let Some((store, before)) = self.dropped {
                        match store.segment_expired(k, before) {
                            Ok(Some(true)) => continue,
                            Ok(_) => {}
                            Err(e) => return Some(Err(e)),
                        }
                    }
                    return Some(entry);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InMemoryKeyValueStore, SegmentKeySchema, SegmentedKeyValueStore};

    fn key(k: &[u8], t: i64) -> Vec<u8> {
        [k, &t.to_be_bytes()[..]].concat()
    }

    fn all(store: &dyn KeyValueStore) -> Vec<KvEntry> {
        store.all().unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn pending_bytes_follow_the_held_writes() {
        let mut s = TransactionalKeyValueStore::new(InMemoryKeyValueStore::new("s"));
        s.put(b"ab", b"123").unwrap();
        assert_eq!(s.pending_transaction_bytes(), 5);
        s.put(b"ab", b"1").unwrap();
        assert_eq!(s.pending_transaction_bytes(), 3);
        s.delete(b"ab").unwrap();
        assert_eq!(s.pending_transaction_bytes(), 2);
        s.write_batch(&[(b"c", Some(b"xyz")), (b"ab", Some(b""))])
            .unwrap();
        assert_eq!(s.pending_transaction_bytes(), 2 + 4);
        assert_eq!(s.pending_writes(), 2);
        s.commit_transaction().unwrap();
        assert_eq!(s.pending_transaction_bytes(), 0);
        assert_eq!(s.pending_writes(), 0);
    }

    #[test]
    fn a_delete_of_a_missing_key_holds_nothing() {
        let mut s = TransactionalKeyValueStore::new(InMemoryKeyValueStore::new("s"));
        assert_eq!(s.delete(b"nothing").unwrap(), None);
        assert_eq!(s.pending_writes(), 0);
    }

    #[test]
    fn keys_the_segments_cannot_hold_fail_the_write_not_the_commit() {
        let seg = SegmentedKeyValueStore::in_memory("w", SegmentKeySchema::Window, 100);
        let mut s = TransactionalKeyValueStore::new(seg);
        let err = s.put(b"short", b"v").unwrap_err();
        assert!(matches!(err, StoreError::Serde { .. }), "{err}");
        let err = s.put(&key(b"k", -5), b"v").unwrap_err();
        assert!(
            matches!(err, StoreError::NegativeWindowTime { time: -5, .. }),
            "{err}"
        );
        // A batch with one bad key holds none of it.
        let good = key(b"k", 5);
        assert!(s
            .write_batch(&[(&good, Some(b"v")), (b"bad", Some(b"v"))])
            .is_err());
        assert_eq!(s.pending_writes(), 0);
        s.commit_transaction().unwrap();
    }

    /// The store below after a commit equals the same writes and expiries applied to it directly, in order; and
    /// reads before the commit already show that state.
    #[test]
    fn deferred_segment_expiry_matches_expiry_applied_in_order() {
        let ops: Vec<(&str, Vec<u8>, i64)> = vec![
            ("put", key(b"a", 10), 0),
            ("put", key(b"b", 150), 0),
            ("put", key(b"c", 260), 0),
            ("commit", vec![], 0),
            ("put", key(b"d", 20), 0), // held, in segment 0, dropped by the expiry below
            ("put", key(b"e", 380), 0), // held, live
            ("delete", key(b"b", 150), 0),
            ("expire", vec![], 200),   // segments 0 and 1 go
            ("put", key(b"f", 30), 0), // after the expiry: segment 0 comes back for it
            ("expire", vec![], 150),   // drops f's segment again; the deferred time stays 200
            ("commit", vec![], 0),
            ("put", key(b"g", 270), 0),
            ("expire", vec![], 300),    // segment 2 (c, g) goes
            ("put", key(b"h", 120), 0), // recreates segment 1
        ];
        let mut direct = SegmentedKeyValueStore::in_memory("d", SegmentKeySchema::Window, 100);
        let mut tx = TransactionalKeyValueStore::new(SegmentedKeyValueStore::in_memory(
            "t",
            SegmentKeySchema::Window,
            100,
        ));
        let mut committed = all(&direct);
        for (op, k, t) in &ops {
            match *op {
                "put" => {
                    direct.put(k, b"v").unwrap();
                    tx.put(k, b"v").unwrap();
                }
                "delete" => assert_eq!(direct.delete(k).unwrap(), tx.delete(k).unwrap()),
                "expire" => {
                    let mut a = direct.expired_segment_keys(*t).unwrap().unwrap();
                    a.sort();
                    assert_eq!(a, tx.expired_segment_keys(*t).unwrap().unwrap());
                    direct.drop_expired_segments(*t).unwrap();
                    tx.drop_expired_segments(*t).unwrap();
                }
                _ => {
                    tx.commit_transaction().unwrap();
                    committed = all(&direct);
                }
            }
            assert_eq!(all(&tx), all(&direct), "after {op} {t}");
            assert_eq!(all(tx.inner()), committed, "below, after {op} {t}");
            for probe in [key(b"a", 10), key(b"d", 20), key(b"f", 30), key(b"c", 260)] {
                assert_eq!(tx.get(&probe).unwrap(), direct.get(&probe).unwrap());
            }
        }
        tx.commit_transaction().unwrap();
        assert_eq!(all(tx.inner()), all(&direct));
        assert_eq!(
            tx.inner().segment_count(),
            direct.segment_count(),
            "the same segments are left"
        );
    }

    #[test]
    fn an_aborted_expiry_keeps_the_segments() {
        let mut tx = TransactionalKeyValueStore::new(SegmentedKeyValueStore::in_memory(
            "t",
            SegmentKeySchema::Window,
            100,
        ));
        tx.put(&key(b"a", 10), b"1").unwrap();
        tx.commit_transaction().unwrap();
        for k in tx.expired_segment_keys(500).unwrap().unwrap() {
            tx.delete(&k).unwrap();
        }
        tx.drop_expired_segments(500).unwrap();
        assert!(all(&tx).is_empty());
        assert_eq!(tx.inner().segment_count(), 1);
        tx.abort_transaction().unwrap();
        assert_eq!(all(&tx), vec![(key(b"a", 10), b"1".to_vec())]);
        tx.commit_transaction().unwrap();
        assert_eq!(tx.inner().segment_count(), 1);
    }
}
