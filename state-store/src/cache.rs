//! A write-back cache in front of any store, bounded in bytes, with a byte budget that several caches can share
//! (Kafka Streams' `ThreadCache` with one `NamedCache` per store) and a flush listener.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::StoreError;
use crate::kv::{BatchEntry, KeyRange, KeyValueStore, KvEntry, KvIter};

const NIL: usize = usize::MAX;
/// Bytes charged per entry beyond its key and value (slot, map entry and list links), so that millions of tiny
/// entries still count against the bound.
const ENTRY_OVERHEAD: usize = 64;

/// What a writer attaches to its writes for a flush listener: the timestamp, headers and origin of the record
/// that caused them (Kafka Streams' cached record context). Opaque to the store.
pub type WriteContext = Arc<dyn Any + Send + Sync>;

/// A dirty entry a listened-to cache wrote to the store below (see [`KeyValueStore::listen_for_flushes`]).
#[derive(Clone)]
pub struct FlushedEntry {
    /// The key.
    pub key: Vec<u8>,
    /// The value written (`None`: deleted).
    pub new: Option<Vec<u8>>,
    /// The value the store below held before the write, when asked for (always read for deletions).
    pub old: Option<Vec<u8>>,
    /// The context of the entry's latest write.
    pub context: Option<WriteContext>,
}

impl std::fmt::Debug for FlushedEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushedEntry")
            .field("key", &self.key)
            .field("new", &self.new)
            .field("old", &self.old)
            .field("context", &self.context.is_some())
            .finish()
    }
}

/// One byte budget shared by several caches (Kafka Streams' per-thread `statestore.cache.max.bytes`): each
/// [`CachingKeyValueStore`] built on it charges its entries here, and a cache written while the budget is
/// exceeded evicts its own least recently written entries until the total is back within the budget (or it is
/// empty), so the caches together never hold more than the budget after a write.
///
/// ```
/// use state_store::{CacheBudget, CachingKeyValueStore, InMemoryKeyValueStore, KeyValueStore};
///
/// let budget = CacheBudget::new(300);
/// let mut a = CachingKeyValueStore::with_budget(InMemoryKeyValueStore::new("a"), budget.clone());
/// let mut b = CachingKeyValueStore::with_budget(InMemoryKeyValueStore::new("b"), budget.clone());
/// for i in 0..10u8 {
///     a.put(&[i], b"value").unwrap();
///     b.put(&[i], b"value").unwrap();
///     assert!(budget.used() <= 300);
/// }
/// assert_eq!(budget.used(), a.stats().bytes + b.stats().bytes);
/// ```
#[derive(Clone, Debug)]
pub struct CacheBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    max: usize,
    used: AtomicUsize,
}

impl CacheBudget {
    /// A budget of `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        CacheBudget {
            inner: Arc::new(BudgetInner {
                max: max_bytes,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// The budget in bytes.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Bytes held now by every cache on this budget.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.inner.used.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.inner.used.fetch_sub(n, Ordering::Relaxed);
    }

    fn exceeded(&self) -> bool {
        self.used() > self.inner.max
    }
}

struct Slot {
    /// Whether the slot holds an entry (freed slots wait in the free list).
    live: bool,
    key: Vec<u8>,
    /// `None` is a pending delete.
    value: Option<Vec<u8>>,
    dirty: bool,
    /// The context of the latest write, kept for a flush listener.
    context: Option<WriteContext>,
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
/// The bound is a [`CacheBudget`], its own or one shared with other caches; it counts key and value bytes plus a
/// fixed per-entry overhead. When it is exceeded after a write, this cache writes its least recently written
/// entries below and drops them. Reads look in the cache first; a miss reads the store below without filling
/// the cache. Scans merge the cache with the store below, the cache winning.
///
/// A cache listened to ([`KeyValueStore::listen_for_flushes`]) also reports each dirty entry it writes below,
/// with the value the store below held before and the context of its latest write, so the processor owning the
/// store can forward the change downstream (Kafka Streams' flush listener).
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
    /// Bytes this cache holds (also charged to the budget).
    bytes: usize,
    budget: CacheBudget,
    stats: std::cell::Cell<(u64, u64)>,
    evictions: u64,
    /// Whether dirty entries written below are reported (a flush listener is registered).
    listening: bool,
    /// Whether reported entries carry the value the store below held before.
    read_old: bool,
    /// The context attached to the next writes.
    context: Option<WriteContext>,
    /// Entries written below and not yet collected.
    flushed: Vec<FlushedEntry>,
}

impl<S: KeyValueStore> CachingKeyValueStore<S> {
    /// Wraps `inner` with a cache of at most `max_bytes` (a budget of its own).
    pub fn new(inner: S, max_bytes: usize) -> Self {
        Self::with_budget(inner, CacheBudget::new(max_bytes))
    }

    /// Wraps `inner` with a cache charging `budget`, which other caches may share.
    pub fn with_budget(inner: S, budget: CacheBudget) -> Self {
        CachingKeyValueStore {
            inner,
            index: HashMap::default(),
            last_read: std::cell::Cell::new(NIL),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            budget,
            stats: std::cell::Cell::new((0, 0)),
            evictions: 0,
            listening: false,
            read_old: false,
            context: None,
            flushed: Vec::new(),
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

    /// The budget this cache charges.
    pub fn budget(&self) -> &CacheBudget {
        &self.budget
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

    fn grow(&mut self, n: usize) {
        self.bytes += n;
        self.budget.add(n);
    }

    fn shrink(&mut self, n: usize) {
        self.bytes -= n;
        self.budget.sub(n);
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
        let context = if self.listening {
            self.context.clone()
        } else {
            None
        };
        if let Some(i) = self.lookup(key) {
            if self.listening && context.is_none() && self.slots[i].context.is_some() {
                // A write from outside the listener's processing (a windowed store dropping what left its
                // retention) must not swallow the update the listener is waiting to forward: that goes first.
                self.write_one_below(i)?;
            }
            let before = self.slots[i].size();
            let slot = &mut self.slots[i];
            match (value, &mut slot.value) {
                (Some(v), Some(old)) => {
                    old.clear();
                    old.extend_from_slice(v);
                }
                (v, old) => *old = v.map(<[u8]>::to_vec),
            }
            slot.dirty = true;
            slot.context = context;
            let after = slot.size();
            if after >= before {
                self.grow(after - before);
            } else {
                self.shrink(before - after);
            }
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
                context,
                prev: NIL,
                next: NIL,
            };
            let size = slot.size();
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
            self.grow(size);
            self.index.insert(key.to_vec(), i);
            self.push_back(i);
        }
        self.evict_while_full()
    }

    /// Writes the dirty entry in slot `i` below and reports it, keeping it in the cache, clean.
    fn write_one_below(&mut self, i: usize) -> Result<(), StoreError> {
        if !self.slots[i].dirty {
            return Ok(());
        }
        let old = if self.wants_old(&self.slots[i].value) {
            self.inner.get(&self.slots[i].key)?
        } else {
            None
        };
        let slot = &self.slots[i];
        match &slot.value {
            Some(v) => self.inner.put(&slot.key, v)?,
            None => {
                self.inner.delete(&slot.key)?;
            }
        }
        let slot = &mut self.slots[i];
        slot.dirty = false;
        self.flushed.push(FlushedEntry {
            key: slot.key.clone(),
            new: slot.value.clone(),
            old,
            context: slot.context.take(),
        });
        Ok(())
    }

    /// Whether a reported entry needs the value below before the write.
    fn wants_old(&self, new: &Option<Vec<u8>>) -> bool {
        self.read_old || new.is_none()
    }

    /// Evicts this cache's least recently written entries while the shared budget is exceeded (Kafka's
    /// `ThreadCache.maybeEvict`: only the cache being written evicts, down to empty at most).
    fn evict_while_full(&mut self) -> Result<(), StoreError> {
        while self.budget.exceeded() && self.head != NIL {
            let i = self.head;
            self.unlink(i);
            let size = self.slots[i].size();
            self.shrink(size);
            let key = std::mem::take(&mut self.slots[i].key);
            let value = self.slots[i].value.take();
            let context = self.slots[i].context.take();
            let dirty = self.slots[i].dirty;
            self.slots[i].live = false;
            self.index.remove(&key);
            self.free.push(i);
            self.evictions += 1;
            if dirty {
                let old = if self.listening && self.wants_old(&value) {
                    self.inner.get(&key)?
                } else {
                    None
                };
                match &value {
                    Some(v) => self.inner.put(&key, v)?,
                    None => {
                        self.inner.delete(&key)?;
                    }
                }
                if self.listening {
                    self.flushed.push(FlushedEntry {
                        key,
                        new: value,
                        old,
                        context,
                    });
                }
            }
        }
        Ok(())
    }

    fn cached(&self, key: &[u8]) -> Option<&Slot> {
        let i = self.lookup(key)?;
        self.last_read.set(i);
        Some(&self.slots[i])
    }

    /// Writes the dirty entries below in write order, least recent first, reporting them when listened to, and
    /// drops pending deletes from the cache.
    fn write_dirty(&mut self) -> Result<(), StoreError> {
        let mut dirty = Vec::new();
        let mut i = self.head;
        while i != NIL {
            if self.slots[i].dirty {
                dirty.push(i);
            }
            i = self.slots[i].next;
        }
        if dirty.is_empty() {
            return Ok(());
        }
        if self.listening {
            // The values below before the batch: each key appears once in it.
            for &i in &dirty {
                let slot = &self.slots[i];
                let old = if self.wants_old(&slot.value) {
                    self.inner.get(&slot.key)?
                } else {
                    None
                };
                self.flushed.push(FlushedEntry {
                    key: slot.key.clone(),
                    new: slot.value.clone(),
                    old,
                    context: None,
                });
            }
        }
        let batch: Vec<BatchEntry<'_>> = dirty
            .iter()
            .map(|&i| (self.slots[i].key.as_slice(), self.slots[i].value.as_deref()))
            .collect();
        let written = self.inner.write_batch(&batch);
        drop(batch);
        if let Err(e) = written {
            if self.listening {
                let keep = self.flushed.len() - dirty.len();
                self.flushed.truncate(keep);
            }
            return Err(e);
        }
        let first = self.flushed.len() - if self.listening { dirty.len() } else { 0 };
        let mut deleted = Vec::new();
        for (n, i) in dirty.into_iter().enumerate() {
            self.slots[i].dirty = false;
            let context = self.slots[i].context.take();
            if self.listening {
                self.flushed[first + n].context = context;
            }
            if self.slots[i].value.is_none() {
                deleted.push(i);
            }
        }
        // Pending deletes have reached the store below; drop them from the cache.
        for i in deleted {
            self.unlink(i);
            let size = self.slots[i].size();
            self.shrink(size);
            let key = std::mem::take(&mut self.slots[i].key);
            self.slots[i].live = false;
            self.index.remove(&key);
            self.free.push(i);
        }
        Ok(())
    }

    /// Drops every entry without writing it.
    fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        let bytes = self.bytes;
        self.shrink(bytes);
        self.last_read.set(NIL);
        self.flushed.clear();
        self.context = None;
    }
}

impl<S> Drop for CachingKeyValueStore<S> {
    fn drop(&mut self) {
        // Give the bytes back to a shared budget.
        self.budget.sub(self.bytes);
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

    /// The count below plus the dirty puts of keys it lacks: one read below per dirty entry, none for clean
    /// ones (a clean entry is in the store below). It runs at every commit (the store-size gauge), right after
    /// the caches were flushed, so it reads nothing there; reading below for every cached key (as it once did)
    /// cost a RocksDB read per cached key per commit, most of the thread on a large state.
    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        let mut new_keys = 0u64;
        let mut i = self.head;
        while i != NIL {
            let slot = &self.slots[i];
            if slot.dirty && slot.value.is_some() && self.inner.get(&slot.key)?.is_none() {
                new_keys += 1;
            }
            i = slot.next;
        }
        Ok(self.inner.approximate_num_entries()? + new_keys)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.write_dirty()?;
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
        self.clear();
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

    fn segment_expired(&self, key: &[u8], before: i64) -> Result<Option<bool>, StoreError> {
        self.inner.segment_expired(key, before)
    }

    /// Passes the commit on to the store below. Dirty entries are not written first: flush the cache before the
    /// transaction commits, so that its writes reach the changelog inside the transaction.
    fn commit_transaction(&mut self) -> Result<(), StoreError> {
        self.inner.commit_transaction()
    }

    /// Drops every entry, dirty or clean (a clean entry may hold a write of the aborted transaction, already
    /// written below and discarded there), and every flushed entry not yet collected, then passes the abort on.
    fn abort_transaction(&mut self) -> Result<(), StoreError> {
        self.clear();
        self.inner.abort_transaction()
    }

    fn pending_transaction_bytes(&self) -> usize {
        self.inner.pending_transaction_bytes()
    }

    fn listen_for_flushes(&mut self, read_old: bool) -> bool {
        self.listening = true;
        self.read_old |= read_old;
        true
    }

    fn set_write_context(&mut self, context: Option<WriteContext>) {
        if self.listening {
            self.context = context;
        }
    }

    fn take_flushed(&mut self, out: &mut Vec<FlushedEntry>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.flushed);
        } else {
            out.append(&mut self.flushed);
        }
    }

    fn flush_cache(&mut self) -> Result<(), StoreError> {
        self.write_dirty()
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

    type Forwarded = Vec<(String, Option<String>, Option<String>)>;

    /// What a flush listener forwards from what the cache reported: as Kafka's `CachingKeyValueStore`, nothing
    /// for a key with neither a new nor an old value, and old values only when they are sent.
    fn forwarded(
        store: &mut CachingKeyValueStore<InMemoryKeyValueStore>,
        send_old: bool,
    ) -> Forwarded {
        let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8(b).unwrap());
        let mut out = Vec::new();
        store.take_flushed(&mut out);
        out.into_iter()
            .filter(|e| e.new.is_some() || e.old.is_some())
            .map(|e| {
                let old = if send_old { e.old } else { None };
                (text(Some(e.key)).unwrap(), text(e.new), text(old))
            })
            .collect()
    }

    fn f(
        k: &str,
        new: Option<&str>,
        old: Option<&str>,
    ) -> (String, Option<String>, Option<String>) {
        (k.into(), new.map(Into::into), old.map(Into::into))
    }

    fn listened(max: usize, send_old: bool) -> CachingKeyValueStore<InMemoryKeyValueStore> {
        let mut store = CachingKeyValueStore::new(InMemoryKeyValueStore::new("s"), max);
        assert!(store.listen_for_flushes(send_old));
        store
    }

    /// CachingInMemoryKeyValueStoreTest.shouldForwardOldValuesWhenEnabled.
    #[test]
    fn forwards_old_values_when_enabled() {
        let mut store = listened(1 << 20, true);
        store.put(b"1", b"a").unwrap();
        store.flush().unwrap();
        assert_eq!(forwarded(&mut store, true), vec![f("1", Some("a"), None)]);
        store.put(b"1", b"b").unwrap();
        store.put(b"1", b"c").unwrap();
        store.flush().unwrap();
        assert_eq!(
            forwarded(&mut store, true),
            vec![f("1", Some("c"), Some("a"))]
        );
        store.delete(b"1").unwrap();
        store.flush().unwrap();
        assert_eq!(forwarded(&mut store, true), vec![f("1", None, Some("c"))]);
        store.put(b"1", b"a").unwrap();
        store.put(b"1", b"b").unwrap();
        store.delete(b"1").unwrap();
        store.flush().unwrap();
        assert_eq!(forwarded(&mut store, true), vec![]);
    }

    /// CachingInMemoryKeyValueStoreTest.shouldNotForwardOldValuesWhenDisabled.
    #[test]
    fn does_not_forward_old_values_when_disabled() {
        let mut store = listened(1 << 20, false);
        store.put(b"1", b"a").unwrap();
        store.flush().unwrap();
        assert_eq!(forwarded(&mut store, false), vec![f("1", Some("a"), None)]);
        store.put(b"1", b"b").unwrap();
        store.flush().unwrap();
        assert_eq!(forwarded(&mut store, false), vec![f("1", Some("b"), None)]);
        store.delete(b"1").unwrap();
        store.flush().unwrap();
        assert_eq!(forwarded(&mut store, false), vec![f("1", None, None)]);
        store.put(b"1", b"a").unwrap();
        store.put(b"1", b"b").unwrap();
        store.delete(b"1").unwrap();
        store.flush().unwrap();
        assert_eq!(forwarded(&mut store, false), vec![]);
    }

    /// Puts distinct keys until the cache has evicted some (Kafka's `addItemsToCache`); returns how many.
    fn add_items_to_cache(store: &mut CachingKeyValueStore<InMemoryKeyValueStore>) -> usize {
        let mut added = 0;
        while store.stats().evictions == 0 {
            store
                .put(added.to_string().as_bytes(), added.to_string().as_bytes())
                .unwrap();
            added += 1;
        }
        added
    }

    /// CachingInMemoryKeyValueStoreTest.shouldForwardDirtyItemToListenerWhenEvicted and
    /// shouldFlushEvictedItemsIntoUnderlyingStore: what an eviction writes below is reported, eldest first.
    #[test]
    fn forwards_dirty_items_when_evicted() {
        let mut store = listened(1000, false);
        let added = add_items_to_cache(&mut store);
        let seen = forwarded(&mut store, false);
        assert_eq!(seen.len() as u64, store.stats().evictions);
        assert_eq!(seen[0], f("0", Some("0"), None));
        assert_eq!(store.inner().get(b"0").unwrap(), Some(b"0".to_vec()));
        assert_eq!(store.approximate_num_entries().unwrap(), added as u64);
        store.flush().unwrap();
        assert_eq!(seen.len() + forwarded(&mut store, false).len(), added);
        assert_eq!(
            store.inner().approximate_num_entries().unwrap(),
            added as u64
        );
    }

    /// CachingInMemoryKeyValueStoreTest.shouldAvoidFlushingDeletionsWithoutDirtyKeys.
    #[test]
    fn avoids_flushing_deletions_without_dirty_keys() {
        let mut store = listened(1000, false);
        let added = add_items_to_cache(&mut store);
        store.flush().unwrap();
        assert_eq!(forwarded(&mut store, false).len(), added);
        store.put(b"key", b"value").unwrap();
        store.delete(b"key").unwrap();
        store.flush().unwrap();
        assert_eq!(
            store.inner().approximate_num_entries().unwrap(),
            added as u64
        );
        assert_eq!(forwarded(&mut store, false), vec![]);
    }

    /// The context of an entry's latest write comes back with it (Kafka's cached record context).
    #[test]
    fn reports_the_context_of_the_latest_write() {
        let mut store = listened(1 << 20, false);
        for (v, ctx) in [(b"1", 10i64), (b"2", 20)] {
            store.set_write_context(Some(Arc::new(ctx)));
            store.put(b"k", v).unwrap();
        }
        store.flush_cache().unwrap();
        let mut out = Vec::new();
        store.take_flushed(&mut out);
        assert_eq!(out.len(), 1);
        let ctx = out[0].context.as_ref().unwrap().downcast_ref::<i64>();
        assert_eq!(ctx, Some(&20));
        // Flushing the cache leaves the store below unflushed but holding the entry.
        assert_eq!(store.inner().get(b"k").unwrap(), Some(b"2".to_vec()));
    }

    /// A delete made without a write context (a windowed store dropping expired windows) reaches the store below
    /// but first reports the update that was waiting for the listener, so it is not lost downstream (Kafka's
    /// segment drops happen below the cache, which still forwards what it holds).
    #[test]
    fn a_write_without_context_reports_the_pending_update_first() {
        let mut store = listened(1 << 20, false);
        store.set_write_context(Some(Arc::new(1i64)));
        store.put(b"w", b"v").unwrap();
        store.set_write_context(None);
        store.delete(b"w").unwrap();
        let mut out = Vec::new();
        store.take_flushed(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].new.as_deref(), Some(&b"v"[..]));
        assert!(out[0].context.is_some());
        store.flush().unwrap();
        store.take_flushed(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out[1].new.is_none() && out[1].context.is_none());
        assert_eq!(store.inner().get(b"w").unwrap(), None);
    }

    /// ThreadCacheTest.evict: with room for one entry, each put evicts the previous one, the first evicted
    /// being K1; four evictions for five puts.
    #[test]
    fn evicts_the_eldest_entry_when_full() {
        let one = 2 + 2 + ENTRY_OVERHEAD;
        let mut store = listened(one, false);
        for i in 1..=5 {
            store
                .put(format!("K{i}").as_bytes(), format!("V{i}").as_bytes())
                .unwrap();
        }
        let seen = forwarded(&mut store, false);
        assert_eq!(seen[0], f("K1", Some("V1"), None));
        assert_eq!(store.stats().evictions, 4);
    }

    /// Two caches on one budget (Kafka's ThreadCache): after every write the bytes they hold together stay within
    /// the budget, and the budget counts exactly what they hold; a write evicts only from the cache written
    /// (ThreadCacheTest.shouldNotLoopForEverWhenEvictingAndCurrentCacheIsEmpty: an empty cache written with an
    /// entry larger than the room left evicts that entry and stops).
    #[test]
    fn caches_share_one_budget() {
        let budget = CacheBudget::new(2000);
        let mut a =
            CachingKeyValueStore::with_budget(InMemoryKeyValueStore::new("a"), budget.clone());
        let mut b =
            CachingKeyValueStore::with_budget(InMemoryKeyValueStore::new("b"), budget.clone());
        a.listen_for_flushes(false);
        b.listen_for_flushes(false);
        let mut max_seen = 0;
        for i in 0..500u32 {
            let k = (i % 97).to_be_bytes();
            a.put(&k, &[1; 10]).unwrap();
            max_seen = max_seen.max(budget.used());
            b.put(&(i % 89).to_be_bytes(), &[2; 30]).unwrap();
            max_seen = max_seen.max(budget.used());
            assert_eq!(budget.used(), a.stats().bytes + b.stats().bytes);
        }
        assert!(
            max_seen <= 2000,
            "held {max_seen} bytes over a 2000-byte budget"
        );
        // Both caches hold entries: the budget is shared, not split.
        assert!(a.stats().bytes > 0 && b.stats().bytes > 0);
        // B is full enough; a large write into A evicts from A only, down to empty.
        let b_before = b.stats().bytes;
        a.put(b"big", &[0; 3000]).unwrap();
        assert_eq!(a.stats().bytes, 0);
        assert_eq!(b.stats().bytes, b_before);
        assert_eq!(a.inner().get(b"big").unwrap().map(|v| v.len()), Some(3000));
        drop(b);
        assert_eq!(budget.used(), a.stats().bytes);
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

#[cfg(test)]
mod size_tests {
    use std::cell::Cell;

    use super::*;
    use crate::InMemoryKeyValueStore;

    /// An in-memory store counting the reads made of it.
    struct CountingReads {
        inner: InMemoryKeyValueStore,
        gets: Cell<u64>,
    }

    impl KeyValueStore for CountingReads {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.gets.set(self.gets.get() + 1);
            self.inner.get(key)
        }
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.delete(key)
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
            false
        }
    }

    /// Defect: the store-size gauge, refreshed at every commit, read the store below once per cached key, which
    /// on a large RocksDB state took most of the stream thread (a 1M-key exactly-once count committing every
    /// 100 ms ran at a few thousand records/s). Only dirty entries may need a read.
    #[test]
    fn the_size_of_a_caching_store_reads_below_only_for_dirty_entries() {
        let inner = CountingReads {
            inner: InMemoryKeyValueStore::new("s"),
            gets: Cell::new(0),
        };
        let mut store = CachingKeyValueStore::new(inner, 10 << 20);
        for i in 0..1000u32 {
            store.put(&i.to_be_bytes(), b"v").unwrap();
        }
        store.flush().unwrap();
        store.inner().gets.set(0);
        assert_eq!(store.approximate_num_entries().unwrap(), 1000);
        assert_eq!(
            store.inner().gets.get(),
            0,
            "clean entries are below already"
        );
        // 10 new keys and 5 updates, not flushed: counted once each, by a read of the dirty entries only.
        for i in 1000..1010u32 {
            store.put(&i.to_be_bytes(), b"v").unwrap();
        }
        for i in 0..5u32 {
            store.put(&i.to_be_bytes(), b"w").unwrap();
        }
        assert_eq!(store.approximate_num_entries().unwrap(), 1010);
        assert_eq!(store.inner().gets.get(), 15);
    }
}
