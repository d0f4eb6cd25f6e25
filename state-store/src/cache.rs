//! A write-back cache in front of any store, bounded in bytes.

use std::collections::HashMap;

use crate::error::StoreError;
use crate::kv::{BatchEntry, KeyRange, KeyValueStore, KvEntry, KvIter};

const NIL: usize = usize::MAX;
/// Bytes charged per entry beyond its key and value (slot, map entry and list links), so that millions of tiny
/// entries still count against the bound.
const ENTRY_OVERHEAD: usize = 64;

struct Slot {
    /// Whether the slot holds an entry (freed slots wait in the free list).
    live: bool,
    key: Vec<u8>,
    /// `None` is a pending delete.
    value: Option<Vec<u8>>,
    dirty: bool,
    prev: usize,
    next: usize,
}

impl Slot {
    fn size(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
    }
}

/// Hit and miss counts of a [`CachingKeyValueStore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that went to the store below.
    pub misses: u64,
    /// Entries written below because the cache was full.
    pub evictions: u64,
    /// Bytes the cache holds now.
    pub bytes: usize,
}

impl CacheStats {
    /// Hits over all reads, or 0 before any read.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Write-back cache: writes stay in memory and reach the store below (and through it the changelog) only when
/// the cache is flushed or evicts them, so repeated updates of a hot key cost one downstream write per flush.
///
/// The bound counts key and value bytes plus a fixed per-entry overhead; when it is exceeded the least recently
/// written entries are written below and dropped. Reads look in the cache first; a miss reads the store below
/// without filling the cache. Scans merge the cache with the store below, the cache winning.
///
/// ```
/// use state_store::{CachingKeyValueStore, InMemoryKeyValueStore, KeyValueStore};
///
/// let mut store = CachingKeyValueStore::new(InMemoryKeyValueStore::new("s"), 1 << 20);
/// store.put(b"k", b"1").unwrap();
/// store.put(b"k", b"2").unwrap();
/// assert_eq!(store.inner().get(b"k").unwrap(), None); // not written below yet
/// store.flush().unwrap();
/// assert_eq!(store.inner().get(b"k").unwrap(), Some(b"2".to_vec()));
/// ```
pub struct CachingKeyValueStore<S> {
    inner: S,
    /// Keyed with a per-process random seed (foldhash), so crafted keys cannot force collisions.
    index: HashMap<Vec<u8>, usize, foldhash::fast::RandomState>,
    /// The slot the last read found: an aggregation reads a key and then writes it, and the write can skip
    /// the hash lookup when the key matches.
    last_read: std::cell::Cell<usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Least recently written.
    head: usize,
    /// Most recently written.
    tail: usize,
    bytes: usize,
    max_bytes: usize,
    stats: std::cell::Cell<(u64, u64)>,
    evictions: u64,
}

impl<S: KeyValueStore> CachingKeyValueStore<S> {
    /// Wraps `inner` with a cache of at most `max_bytes`.
    pub fn new(inner: S, max_bytes: usize) -> Self {
        CachingKeyValueStore {
            inner,
            index: HashMap::default(),
            last_read: std::cell::Cell::new(NIL),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            max_bytes,
            stats: std::cell::Cell::new((0, 0)),
            evictions: 0,
        }
    }

    /// The store below.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The store below, mutably. Writing to it directly bypasses the cache: flush first.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Hit, miss and eviction counts and current size.
    pub fn stats(&self) -> CacheStats {
        let (hits, misses) = self.stats.get();
        CacheStats {
            hits,
            misses,
            evictions: self.evictions,
            bytes: self.bytes,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slots[i].prev, self.slots[i].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next].prev = prev;
        }
    }

    fn push_back(&mut self, i: usize) {
        self.slots[i].prev = self.tail;
        self.slots[i].next = NIL;
        if self.tail == NIL {
            self.head = i;
        } else {
            self.slots[self.tail].next = i;
        }
        self.tail = i;
    }

    fn lookup(&self, key: &[u8]) -> Option<usize> {
        let last = self.last_read.get();
        if last != NIL && self.slots[last].live && self.slots[last].key == key {
            return Some(last);
        }
        self.index.get(key).copied()
    }

    fn write(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        if let Some(i) = self.lookup(key) {
            self.bytes -= self.slots[i].size();
            let slot = &mut self.slots[i];
            match (value, &mut slot.value) {
                (Some(v), Some(old)) => {
                    old.clear();
                    old.extend_from_slice(v);
                }
                (v, old) => *old = v.map(<[u8]>::to_vec),
            }
            slot.dirty = true;
            self.bytes += self.slots[i].size();
            if self.tail != i {
                self.unlink(i);
                self.push_back(i);
            }
        } else {
            let slot = Slot {
                live: true,
                key: key.to_vec(),
                value: value.map(<[u8]>::to_vec),
                dirty: true,
                prev: NIL,
                next: NIL,
            };
            self.bytes += slot.size();
            let i = match self.free.pop() {
                Some(i) => {
                    self.slots[i] = slot;
                    i
                }
                None => {
                    self.slots.push(slot);
                    self.slots.len() - 1
                }
            };
            self.index.insert(key.to_vec(), i);
            self.push_back(i);
        }
        self.evict_while_full()
    }

    fn evict_while_full(&mut self) -> Result<(), StoreError> {
        while self.bytes > self.max_bytes && self.head != NIL {
            let i = self.head;
            if self.slots[i].dirty {
                let slot = &self.slots[i];
                match &slot.value {
                    Some(v) => self.inner.put(&slot.key, v)?,
                    None => {
                        self.inner.delete(&slot.key)?;
                    }
                }
            }
            self.unlink(i);
            self.bytes -= self.slots[i].size();
            let key = std::mem::take(&mut self.slots[i].key);
            self.slots[i].value = None;
            self.slots[i].live = false;
            self.index.remove(&key);
            self.free.push(i);
            self.evictions += 1;
        }
        Ok(())
    }

    fn cached(&self, key: &[u8]) -> Option<&Slot> {
        let i = self.lookup(key)?;
        self.last_read.set(i);
        Some(&self.slots[i])
    }
}

impl<S: KeyValueStore> KeyValueStore for CachingKeyValueStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (hits, misses) = self.stats.get();
        if let Some(slot) = self.cached(key) {
            self.stats.set((hits + 1, misses));
            return Ok(slot.value.clone());
        }
        self.stats.set((hits, misses + 1));
        self.inner.get(key)
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StoreError> {
        let (hits, misses) = self.stats.get();
        if let Some(slot) = self.cached(key) {
            self.stats.set((hits + 1, misses));
            out.clear();
            return Ok(match &slot.value {
                Some(v) => {
                    out.extend_from_slice(v);
                    true
                }
                None => false,
            });
        }
        self.stats.set((hits, misses + 1));
        self.inner.get_into(key, out)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(key, Some(value))
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.get(key)?;
        if old.is_some() {
            self.write(key, None)?;
        }
        Ok(old)
    }

    fn scan(&self, range: &KeyRange, reverse: bool) -> Result<KvIter<'_>, StoreError> {
        let mut cached: Vec<(&[u8], Option<&[u8]>)> = self
            .index
            .iter()
            .filter(|(k, _)| range.contains(k))
            .map(|(k, &i)| (k.as_slice(), self.slots[i].value.as_deref()))
            .collect();
        cached.sort_unstable_by(|a, b| if reverse { b.0.cmp(a.0) } else { a.0.cmp(b.0) });
        let below = self.inner.scan(range, reverse)?;
        Ok(Box::new(MergeIter {
            cache: cached.into_iter().peekable(),
            below: below.peekable(),
            reverse,
        }))
    }

    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        let new_keys = self
            .index
            .keys()
            .filter(|k| matches!(self.inner.get(k), Ok(None)))
            .count() as u64;
        Ok(self.inner.approximate_num_entries()? + new_keys)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let mut dirty = Vec::new();
        let mut i = self.head;
        while i != NIL {
            if self.slots[i].dirty {
                dirty.push(i);
            }
            i = self.slots[i].next;
        }
        if dirty.is_empty() {
            return self.inner.flush();
        }
        let batch: Vec<BatchEntry<'_>> = dirty
            .iter()
            .map(|&i| (self.slots[i].key.as_slice(), self.slots[i].value.as_deref()))
            .collect();
        self.inner.write_batch(&batch)?;
        drop(batch);
        let mut deleted = Vec::new();
        for i in dirty {
            self.slots[i].dirty = false;
            if self.slots[i].value.is_none() {
                deleted.push(i);
            }
        }
        // Pending deletes have reached the store below; drop them from the cache.
        for i in deleted {
            self.unlink(i);
            self.bytes -= self.slots[i].size();
            let key = std::mem::take(&mut self.slots[i].key);
            self.slots[i].live = false;
            self.index.remove(&key);
            self.free.push(i);
        }
        self.inner.flush()
    }

    fn persistent(&self) -> bool {
        self.inner.persistent()
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        self.inner.close()
    }

    fn close_dirty(&mut self) -> Result<(), StoreError> {
        self.index.clear();
        self.slots.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.bytes = 0;
        self.last_read.set(NIL);
        self.inner.close_dirty()
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        Some(self.stats())
    }

    fn expired_segment_keys(&self, before: i64) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.inner.expired_segment_keys(before)
    }

    fn drop_expired_segments(&mut self, before: i64) -> Result<usize, StoreError> {
        self.inner.drop_expired_segments(before)
    }
}

type CachedEntry<'a> = (&'a [u8], Option<&'a [u8]>);

struct MergeIter<'a> {
    cache: std::iter::Peekable<std::vec::IntoIter<CachedEntry<'a>>>,
    below: std::iter::Peekable<KvIter<'a>>,
    reverse: bool,
}

impl Iterator for MergeIter<'_> {
    type Item = Result<KvEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_cache = match (self.cache.peek(), self.below.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(_), Some(Err(_))) => false,
                (Some((ck, _)), Some(Ok((bk, _)))) => {
                    let ord = ck.cmp(&bk.as_slice());
                    if ord == std::cmp::Ordering::Equal {
                        // The cache holds the newer value: skip the store's.
                        self.below.next();
                        true
                    } else {
                        (ord == std::cmp::Ordering::Less) != self.reverse
                    }
                }
            };
            if take_cache {
                let (k, v) = self.cache.next()?;
                if let Some(v) = v {
                    return Some(Ok((k.to_vec(), v.to_vec())));
                }
                // A pending delete hides the key.
            } else {
                return self.below.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemoryKeyValueStore;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A dirty close drops what the cache holds: nothing reaches the store below (nor, through it, a changelog).
    #[test]
    fn close_dirty_writes_nothing_below() {
        let mut store = CachingKeyValueStore::new(InMemoryKeyValueStore::new("s"), 1 << 20);
        store.put(b"k", b"1").unwrap();
        store.inner_mut().put(b"old", b"0").unwrap();
        store.close_dirty().unwrap();
        assert_eq!(store.inner().get(b"k").unwrap(), None);
        assert_eq!(store.get(b"k").unwrap(), None);
        assert_eq!(store.get(b"old").unwrap(), Some(b"0".to_vec()));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..32, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            2 => (0u8..32).prop_map(Op::Delete),
            1 => Just(Op::Flush),
        ]
    }

    proptest! {
        /// Whatever the bound, the cached store reads like a plain map, and after a flush the store below agrees.
        #[test]
        fn cache_behaves_like_a_map(ops in proptest::collection::vec(op(), 1..200), max in 0usize..400) {
            let mut store = CachingKeyValueStore::new(InMemoryKeyValueStore::new("t"), max);
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => { store.put(&[k], &[v]).unwrap(); model.insert(vec![k], vec![v]); }
                    Op::Delete(k) => {
                        let old = store.delete(&[k]).unwrap();
                        prop_assert_eq!(old, model.remove(&vec![k]));
                    }
                    Op::Flush => store.flush().unwrap(),
                }
                prop_assert!(store.stats().bytes <= max.max(ENTRY_OVERHEAD + 2));
            }
            let all: Vec<_> = store.all().unwrap().map(Result::unwrap).collect();
            let expected: Vec<_> = model.clone().into_iter().collect();
            prop_assert_eq!(&all, &expected);
            let rev: Vec<_> = store.reverse_range(Some(&[5]), Some(&[20])).unwrap().map(Result::unwrap).collect();
            let exp_rev: Vec<_> = model.range(vec![5]..=vec![20]).rev().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(rev, exp_rev);
            for k in 0u8..32 {
                prop_assert_eq!(store.get(&[k]).unwrap(), model.get(&vec![k]).cloned());
            }
            store.flush().unwrap();
            let below: Vec<_> = store.inner().all().unwrap().map(Result::unwrap).collect();
            prop_assert_eq!(below, expected);
        }
    }

    #[test]
    fn hot_key_is_written_below_once_per_flush() {
        let mut store = CachingKeyValueStore::new(InMemoryKeyValueStore::new("t"), 1 << 20);
        for i in 0..100u8 {
            store.put(b"hot", &[i]).unwrap();
        }
        assert_eq!(store.inner().get(b"hot").unwrap(), None);
        assert_eq!(store.get(b"hot").unwrap(), Some(vec![99]));
        store.flush().unwrap();
        assert_eq!(store.inner().get(b"hot").unwrap(), Some(vec![99]));
        let stats = store.stats();
        assert_eq!((stats.hits, stats.misses), (1, 0));
    }
}
