//! Time-segmented byte stores: the bottom of a window or session store's stack, so that expiring old windows
//! costs what expires rather than a scan of the whole store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{SerdeError, SerdeErrorKind, StoreError};
use crate::kv::{BatchEntry, KeyRange, KeyValueStore, KvEntry, KvIter};
use crate::rocks::RocksDbResources;
use crate::supplier::{KeyValueStoreSupplier, StoreContext, StoreKind};

/// Where a segmented store finds the time of a key: its last bytes, as window and session stores lay keys out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentKeySchema {
    /// `key ++ start` (8 bytes): a window store; segmented by window start.
    Window,
    /// `key ++ start ++ sequence` (8 + 4 bytes): a window store keeping duplicates; segmented by window start.
    WindowWithSequence,
    /// `key ++ end ++ start` (8 + 8 bytes): a session store; segmented by session end, as in Kafka.
    Session,
}

impl SegmentKeySchema {
    /// Bytes after the record key: the time sits at the start of them.
    pub fn suffix_len(self) -> usize {
        match self {
            SegmentKeySchema::Window => 8,
            SegmentKeySchema::WindowWithSequence => 12,
            SegmentKeySchema::Session => 16,
        }
    }

    /// The time a stored key is segmented by, or `None` when the key is too short to hold one.
    pub fn time_of(self, key: &[u8]) -> Option<i64> {
        let n = self.suffix_len();
        let at = key.len().checked_sub(n)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&key[at..at + 8]);
        Some(i64::from_be_bytes(b))
    }
}

/// Kafka Streams' segment interval for a store retaining `retention_ms`: half of it, but at least a minute.
pub fn segment_interval(retention_ms: i64) -> i64 {
    (retention_ms / 2).max(60_000)
}

/// One [`KeyValueStore`] made of several: one per *segment*, a fixed span of time (Kafka Streams' `KeyValueSegments`). Each key carries its time at a fixed distance from its end (the
/// layouts of [`WindowStore`](crate::WindowStore) and [`SessionStore`](crate::SessionStore), described by a
/// [`SegmentKeySchema`]), and a write goes to the segment of that time. Reads of a single key go to its segment;
/// scans merge the segments in key order, so to the layers above (cache, changelog, the window views) the store
/// looks like one ordered key-value store, and its changelog is one topic in the usual format: restoring it
/// routes every record to its segment by the time in its key.
///
/// Expiry works on whole segments: [`KeyValueStore::expired_segment_keys`] lists the keys of the segments that
/// lie entirely before a time, the window store deletes them through its stack (so a cache forgets them and the
/// changelog gets a tombstone for each), and [`KeyValueStore::drop_expired_segments`] then drops those segments
/// at once (a RocksDB segment is closed and its directory removed). Nothing else is read, so an expiry that
/// removes nothing costs one look at the segment map. Entries of the oldest live segment that are already past
/// retention stay until their whole segment expires; the window views never return them.
///
/// The segment interval is Kafka's: half the retention, at least a minute ([`segment_interval`]).
///
/// ```
/// use state_store::{KeyValueStore, SegmentKeySchema, SegmentedKeyValueStore};
///
/// // Keys: a key's bytes then an 8-byte big-endian window start, as window stores lay them out.
/// let key = |k: &[u8], start: i64| [k, &start.to_be_bytes()[..]].concat();
/// let mut store = SegmentedKeyValueStore::in_memory("clicks", SegmentKeySchema::Window, 60_000);
/// store.put(&key(b"a", 1_000), b"1").unwrap();
/// store.put(&key(b"a", 70_000), b"2").unwrap();
/// store.put(&key(b"b", 130_000), b"3").unwrap();
/// assert_eq!(store.segment_count(), 3);
/// assert_eq!(store.all().unwrap().count(), 3);
/// // Everything before 125 000 expires: the two segments that end by then go, whole.
/// let doomed = store.expired_segment_keys(125_000).unwrap().unwrap();
/// assert_eq!(doomed, vec![key(b"a", 1_000), key(b"a", 70_000)]);
/// assert_eq!(store.drop_expired_segments(125_000).unwrap(), 2);
/// assert_eq!(store.get(&key(b"b", 130_000)).unwrap(), Some(b"3".to_vec()));
/// ```
pub struct SegmentedKeyValueStore {
    name: String,
    schema: SegmentKeySchema,
    interval: i64,
    supplier: Arc<dyn KeyValueStoreSupplier>,
    dir: PathBuf,
    rocksdb: RocksDbResources,
    /// Segment id (time / interval) -> its store.
    segments: BTreeMap<i64, Box<dyn KeyValueStore>>,
}

impl SegmentedKeyValueStore {
    /// Opens the store `name` whose segments `supplier` opens, in subdirectories of `ctx.dir` named after each
    /// segment's first time (for a persistent supplier, the segments found there are opened again).
    pub fn open(
        name: impl Into<String>,
        schema: SegmentKeySchema,
        interval_ms: i64,
        supplier: Arc<dyn KeyValueStoreSupplier>,
        ctx: &StoreContext<'_>,
    ) -> Result<Self, StoreError> {
        let mut store = SegmentedKeyValueStore {
            name: name.into(),
            schema,
            interval: interval_ms.max(1),
            supplier,
            dir: ctx.dir.to_path_buf(),
            rocksdb: ctx.rocksdb.clone(),
            segments: BTreeMap::new(),
        };
        if store.supplier.persistent() {
            for id in store.existing_segments()? {
                let segment = store.open_segment(id)?;
                store.segments.insert(id, segment);
            }
        }
        Ok(store)
    }

    /// An in-memory store (its segments are [`InMemoryKeyValueStore`](crate::InMemoryKeyValueStore)s).
    pub fn in_memory(name: impl Into<String>, schema: SegmentKeySchema, interval_ms: i64) -> Self {
        SegmentedKeyValueStore {
            name: name.into(),
            schema,
            interval: interval_ms.max(1),
            supplier: Arc::new(StoreKind::InMemory),
            dir: PathBuf::new(),
            rocksdb: RocksDbResources::new(0, 0),
            segments: BTreeMap::new(),
        }
    }

    /// How many segments the store holds now.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The span of time of one segment.
    pub fn interval_ms(&self) -> i64 {
        self.interval
    }

    fn segment_dir(&self, id: i64) -> PathBuf {
        self.dir.join(id.saturating_mul(self.interval).to_string())
    }

    /// Segment ids of the subdirectories of the store's directory (other entries are ignored).
    fn existing_segments(&self) -> Result<Vec<i64>, StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(self.io_error(&self.dir, source)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| self.io_error(&self.dir, source))?;
            let Some(start) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if entry.path().is_dir() && start >= 0 && start % self.interval == 0 {
                ids.push(start / self.interval);
            }
        }
        Ok(ids)
    }

    fn io_error(&self, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            store: self.name.clone(),
            path: path.display().to_string(),
            source,
        }
    }

    fn open_segment(&self, id: i64) -> Result<Box<dyn KeyValueStore>, StoreError> {
        let dir = self.segment_dir(id);
        let name = format!("{}.{}", self.name, id.saturating_mul(self.interval));
        self.supplier.open(
            &name,
            &StoreContext {
                dir: &dir,
                rocksdb: &self.rocksdb,
                key_suffix_len: self.schema.suffix_len(),
            },
        )
    }

    /// For a range of one record key's entries ([`KeyRange::one_key_prefix`] with both bounds holding the same
    /// record key), the span of time its entries can have: from the lower bound's time to the upper bound's
    /// (unbounded when that one reads as negative, as 0xff bytes do).
    fn one_key_times(&self, range: &KeyRange) -> Option<(i64, i64)> {
        if !range.one_key_prefix {
            return None;
        }
        let (lower, upper) = (range.lower.as_deref()?, range.upper.as_deref()?);
        let n = self.schema.suffix_len();
        let (lk, uk) = (lower.len().checked_sub(n)?, upper.len().checked_sub(n)?);
        if lower[..lk] != upper[..uk] {
            return None;
        }
        let from = self.schema.time_of(lower)?.max(0);
        let to = self.schema.time_of(upper)?;
        Some((from, if to < 0 { i64::MAX } else { to.max(from) }))
    }

    /// The segment id of `key`, or an error naming the store when the key holds no time.
    fn segment_of(&self, key: &[u8]) -> Result<i64, StoreError> {
        match self.schema.time_of(key) {
            Some(t) if t >= 0 => Ok(t / self.interval),
            Some(t) => Err(StoreError::NegativeWindowTime {
                store: self.name.clone(),
                time: t,
            }),
            None => Err(StoreError::Serde {
                store: self.name.clone(),
                source: SerdeError::new(
                    "segmented key",
                    SerdeErrorKind::InvalidLength {
                        expected: self.schema.suffix_len(),
                        actual: key.len(),
                    },
                    "a key of a segmented store must end with its time",
                ),
            }),
        }
    }

    fn segment_mut(&mut self, id: i64) -> Result<&mut Box<dyn KeyValueStore>, StoreError> {
        if !self.segments.contains_key(&id) {
            let segment = self.open_segment(id)?;
            self.segments.insert(id, segment);
        }
        Ok(self.segments.get_mut(&id).expect("segment just inserted"))
    }

    /// Ids of the segments whose every time is before `before`.
    fn expired_ids(&self, before: i64) -> Vec<i64> {
        // Segment `id` spans [id * interval, (id + 1) * interval).
        let bound = before.div_euclid(self.interval);
        self.segments.range(..bound).map(|(id, _)| *id).collect()
    }
}

impl KeyValueStore for SegmentedKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.segments.get(&self.segment_of(key)?) {
            Some(s) => s.get(key),
            None => Ok(None),
        }
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StoreError> {
        match self.segments.get(&self.segment_of(key)?) {
            Some(s) => s.get_into(key, out),
            None => {
                out.clear();
                Ok(false)
            }
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let id = self.segment_of(key)?;
        self.segment_mut(id)?.put(key, value)
    }

    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let id = self.segment_of(key)?;
        self.segment_mut(id)?.put_if_absent(key, value)
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        // A delete never creates a segment: a key of a segment that is not there has no value.
        match self.segments.get_mut(&self.segment_of(key)?) {
            Some(s) => s.delete(key),
            None => Ok(None),
        }
    }

    fn write_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<(), StoreError> {
        // One batch per segment (a restore writes in batches), in the order given within each.
        let mut by_segment: BTreeMap<i64, Vec<BatchEntry<'_>>> = BTreeMap::new();
        for &(k, v) in batch {
            by_segment
                .entry(self.segment_of(k)?)
                .or_default()
                .push((k, v));
        }
        for (id, entries) in by_segment {
            if !self.segments.contains_key(&id) && entries.iter().all(|(_, v)| v.is_none()) {
                continue;
            }
            self.segment_mut(id)?.write_batch(&entries)?;
        }
        Ok(())
    }

    fn scan(&self, range: &KeyRange, reverse: bool) -> Result<KvIter<'_>, StoreError> {
        if range.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        let mut heads = Vec::with_capacity(self.segments.len());
        let ids = match self.one_key_times(range) {
            // One record key's entries: only the segments of its times can hold them (Kafka Streams' segment
            // search for a time range), so the others are not opened.
            Some((from, to)) => self
                .segments
                .range(from.div_euclid(self.interval)..=to.div_euclid(self.interval)),
            None => self.segments.range(..),
        };
        for segment in ids.map(|(_, s)| s) {
            let mut scan = segment.scan(range, reverse)?;
            heads.push((scan.next(), scan));
        }
        Ok(Box::new(MergeSegments { heads, reverse }))
    }

    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for s in self.segments.values() {
            n = n.saturating_add(s.approximate_num_entries()?);
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        for s in self.segments.values_mut() {
            s.flush()?;
        }
        Ok(())
    }

    fn persistent(&self) -> bool {
        self.supplier.persistent()
    }

    fn close(&mut self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for s in self.segments.values_mut() {
            let r = s.close();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn close_dirty(&mut self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for s in self.segments.values_mut() {
            let r = s.close_dirty();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn expired_segment_keys(&self, before: i64) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let mut keys = Vec::new();
        for id in self.expired_ids(before) {
            for entry in self.segments[&id].scan(&KeyRange::all(), false)? {
                keys.push(entry?.0);
            }
        }
        Ok(Some(keys))
    }

    fn drop_expired_segments(&mut self, before: i64) -> Result<usize, StoreError> {
        let ids = self.expired_ids(before);
        for &id in &ids {
            if let Some(mut segment) = self.segments.remove(&id) {
                let persistent = segment.persistent();
                segment.close_dirty()?;
                drop(segment);
                if persistent {
                    let dir = self.segment_dir(id);
                    match std::fs::remove_dir_all(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => return Err(self.io_error(&dir, source)),
                    }
                }
            }
        }
        Ok(ids.len())
    }

    fn segment_expired(&self, key: &[u8], before: i64) -> Result<Option<bool>, StoreError> {
        Ok(Some(
            self.segment_of(key)? < before.div_euclid(self.interval),
        ))
    }

    fn commit_transaction(&mut self) -> Result<(), StoreError> {
        for s in self.segments.values_mut() {
            s.commit_transaction()?;
        }
        Ok(())
    }

    fn abort_transaction(&mut self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for s in self.segments.values_mut() {
            let r = s.abort_transaction();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn pending_transaction_bytes(&self) -> usize {
        self.segments
            .values()
            .map(|s| s.pending_transaction_bytes())
            .sum()
    }
}

/// Merges the ordered scans of several segments into one (no key is in two segments).
struct MergeSegments<'a> {
    /// Each segment's next entry (`None` once it is exhausted) and the rest of its scan.
    heads: Vec<(Option<Result<KvEntry, StoreError>>, KvIter<'a>)>,
    reverse: bool,
}

impl Iterator for MergeSegments<'_> {
    type Item = Result<KvEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<(usize, &[u8])> = None;
        for (i, (head, _)) in self.heads.iter().enumerate() {
            match head {
                None => continue,
                Some(Err(_)) => {
                    // An error comes out first.
                    let (head, rest) = &mut self.heads[i];
                    let out = head.take();
                    *head = rest.next();
                    return out;
                }
                Some(Ok((k, _))) => {
                    let better = match best {
                        None => true,
                        Some((_, bk)) if self.reverse => k.as_slice() > bk,
                        Some((_, bk)) => k.as_slice() < bk,
                    };
                    if better {
                        best = Some((i, k.as_slice()));
                    }
                }
            }
        }
        let i = best?.0;
        let (head, rest) = &mut self.heads[i];
        let out = head.take();
        *head = rest.next();
        out
    }
}

/// Opens [`SegmentedKeyValueStore`]s whose segments `inner` opens: the supplier of window and session stores.
///
/// ```
/// use std::sync::Arc;
/// use state_store::{KeyValueStoreSupplier, SegmentKeySchema, SegmentedStoreSupplier, StoreKind};
///
/// let supplier = SegmentedStoreSupplier::new(Arc::new(StoreKind::RocksDb), SegmentKeySchema::Window, 3_600_000);
/// assert_eq!(supplier.interval_ms(), 1_800_000);
/// assert!(supplier.persistent());
/// ```
#[derive(Clone)]
pub struct SegmentedStoreSupplier {
    inner: Arc<dyn KeyValueStoreSupplier>,
    schema: SegmentKeySchema,
    interval: i64,
}

impl SegmentedStoreSupplier {
    /// Segments opened by `inner`, laid out by `schema`, for a store retaining `retention_ms` (segments of
    /// [`segment_interval`]`(retention_ms)`).
    pub fn new(
        inner: Arc<dyn KeyValueStoreSupplier>,
        schema: SegmentKeySchema,
        retention_ms: i64,
    ) -> Self {
        SegmentedStoreSupplier {
            inner,
            schema,
            interval: segment_interval(retention_ms),
        }
    }

    /// Segments of `interval_ms` instead of the default.
    pub fn with_interval(mut self, interval_ms: i64) -> Self {
        self.interval = interval_ms.max(1);
        self
    }

    /// The span of time of one segment.
    pub fn interval_ms(&self) -> i64 {
        self.interval
    }
}

impl KeyValueStoreSupplier for SegmentedStoreSupplier {
    fn open(
        &self,
        name: &str,
        ctx: &StoreContext<'_>,
    ) -> Result<Box<dyn KeyValueStore>, StoreError> {
        Ok(Box::new(SegmentedKeyValueStore::open(
            name,
            self.schema,
            self.interval,
            self.inner.clone(),
            ctx,
        )?))
    }

    fn persistent(&self) -> bool {
        self.inner.persistent()
    }

    fn describe(&self) -> &'static str {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemoryKeyValueStore;

    fn key(k: &[u8], t: i64) -> Vec<u8> {
        [k, &t.to_be_bytes()[..]].concat()
    }

    /// Random operations against a plain ordered store as the model: every read and scan agrees.
    #[test]
    fn segmented_store_matches_a_plain_store() {
        let mut seg = SegmentedKeyValueStore::in_memory("s", SegmentKeySchema::Window, 100);
        let mut model = InMemoryKeyValueStore::new("m");
        let mut x: u64 = 11;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = key(&[b'a' + ((x >> 33) % 5) as u8], ((x >> 20) % 1000) as i64);
            if (x >> 50).is_multiple_of(4) {
                assert_eq!(seg.delete(&k).unwrap(), model.delete(&k).unwrap());
            } else {
                let v = (x >> 40).to_be_bytes();
                seg.put(&k, &v).unwrap();
                model.put(&k, &v).unwrap();
            }
        }
        assert!(seg.segment_count() > 5);
        for reverse in [false, true] {
            for range in [
                KeyRange::all(),
                KeyRange::prefix(b"c"),
                KeyRange::inclusive(Some(&key(b"b", 250)), Some(&key(b"d", 30))),
            ] {
                let a: Vec<_> = seg
                    .scan(&range, reverse)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let b: Vec<_> = model
                    .scan(&range, reverse)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(a, b);
            }
        }
        assert_eq!(
            seg.approximate_num_entries().unwrap(),
            model.approximate_num_entries().unwrap()
        );
    }

    #[test]
    fn batches_are_split_by_segment() {
        let mut seg = SegmentedKeyValueStore::in_memory("s", SegmentKeySchema::Window, 100);
        let (a, b, c) = (key(b"a", 5), key(b"a", 150), key(b"b", 420));
        seg.write_batch(&[(&a, Some(b"1")), (&b, Some(b"2")), (&a, None), (&c, None)])
            .unwrap();
        assert_eq!(seg.get(&a).unwrap(), None);
        assert_eq!(seg.get(&b).unwrap(), Some(b"2".to_vec()));
        // A batch of only deletes creates no segment.
        assert_eq!(seg.segment_count(), 2);
    }

    /// A range of one record key's windows, which opens only the segments of its times, finds every window of
    /// that key a scan of all segments finds; sessions (whose upper bound is 0xff bytes) too.
    #[test]
    fn one_key_ranges_find_every_window_of_their_key() {
        for schema in [SegmentKeySchema::Window, SegmentKeySchema::Session] {
            let mut store = SegmentedKeyValueStore::in_memory("w", schema, 100);
            let n = schema.suffix_len();
            let stored = |k: &[u8], t: i64| {
                let mut key = k.to_vec();
                key.extend_from_slice(&t.to_be_bytes());
                key.resize(k.len() + n, 0);
                key
            };
            for t in (0..1_000).step_by(7) {
                for k in [&b"a"[..], b"a\0", b"b"] {
                    store.put(&stored(k, t), b"v").unwrap();
                }
            }
            for (from, to) in [(0, 999), (150, 420), (301, 301), (990, 5_000)] {
                let lower = stored(b"a", from);
                let upper = if schema == SegmentKeySchema::Session {
                    [&b"a"[..], &[0xff; 16]].concat()
                } else {
                    stored(b"a", to + 1)
                };
                let range = KeyRange::from_bounds(
                    std::ops::Bound::Included(&lower),
                    std::ops::Bound::Excluded(&upper),
                );
                let own = |e: &KvEntry| e.0.len() == 1 + n && e.0[0] == b'a';
                let all: Vec<KvEntry> = store
                    .scan(&range, false)
                    .unwrap()
                    .map(Result::unwrap)
                    .filter(own)
                    .collect();
                let one: Vec<KvEntry> = store
                    .scan(&range.clone().of_one_key(), false)
                    .unwrap()
                    .map(Result::unwrap)
                    .filter(own)
                    .collect();
                assert!(!all.is_empty() || from >= 1_000);
                assert_eq!(one, all, "{schema:?} [{from}, {to}]");
            }
        }
    }

    #[test]
    fn short_keys_are_a_typed_error() {
        let mut seg = SegmentedKeyValueStore::in_memory("s", SegmentKeySchema::Session, 100);
        let err = seg.put(b"short", b"v").unwrap_err();
        assert!(err.to_string().contains("'s'"), "{err}");
        assert!(seg.get(b"").is_err());
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn rocksdb_segments_are_reopened_and_dropped_with_their_directories() {
        let dir = std::env::temp_dir().join(format!("segments-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let res = RocksDbResources::new(1 << 20, 1 << 20);
        let ctx = StoreContext {
            dir: &dir,
            rocksdb: &res,
            key_suffix_len: 0,
        };
        let supplier =
            SegmentedStoreSupplier::new(Arc::new(StoreKind::RocksDb), SegmentKeySchema::Window, 0)
                .with_interval(10);
        {
            let mut s = supplier.open("w", &ctx).unwrap();
            for t in [1, 15, 27] {
                s.put(&key(b"k", t), b"v").unwrap();
            }
            s.close().unwrap();
        }
        let mut s = supplier.open("w", &ctx).unwrap();
        assert_eq!(s.all().unwrap().count(), 3);
        assert_eq!(
            s.expired_segment_keys(20).unwrap().unwrap(),
            vec![key(b"k", 1), key(b"k", 15)]
        );
        assert_eq!(s.drop_expired_segments(20).unwrap(), 2);
        assert!(!dir.join("0").exists() && !dir.join("10").exists());
        assert!(dir.join("20").exists());
        assert_eq!(s.all().unwrap().count(), 1);
        s.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
