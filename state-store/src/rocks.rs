//! A key-value store on RocksDB, with memory bounded for the whole process.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, Options, ReadOptions, WriteBatch, WriteBufferManager, WriteOptions,
    DB,
};

use crate::error::StoreError;
use crate::kv::{BatchEntry, KeyRange, KeyValueStore, KvIter};

/// RocksDB memory shared by every store of an application instance: one block cache and one write-buffer
/// manager charged to it, so the total stays bounded whatever the number of tasks and stores.
///
/// Clone it freely; clones share the same memory budget.
#[derive(Clone)]
pub struct RocksDbResources {
    cache: Cache,
    write_buffers: WriteBufferManager,
    block_cache_bytes: usize,
    write_buffer_bytes: usize,
}

impl std::fmt::Debug for RocksDbResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbResources")
            .field("block_cache_bytes", &self.block_cache_bytes)
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .finish()
    }
}

impl RocksDbResources {
    /// A budget of `block_cache_bytes` for the block cache, of which at most `write_buffer_bytes` may be taken
    /// by memtables.
    pub fn new(block_cache_bytes: usize, write_buffer_bytes: usize) -> Self {
        let cache = Cache::new_lru_cache(block_cache_bytes);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            write_buffer_bytes,
            false,
            cache.clone(),
        );
        RocksDbResources {
            cache,
            write_buffers,
            block_cache_bytes,
            write_buffer_bytes,
        }
    }

    /// The total memory budget in bytes.
    pub fn budget_bytes(&self) -> usize {
        self.block_cache_bytes
    }

    /// The bytes of the budget in use now: cached blocks plus the memtables charged to the cache, over every
    /// store opened with these resources (or a clone of them).
    pub fn usage_bytes(&self) -> usize {
        self.cache.get_usage()
    }
}

impl Default for RocksDbResources {
    /// 64 MiB in all, of which up to 32 MiB for memtables.
    fn default() -> Self {
        RocksDbResources::new(64 << 20, 32 << 20)
    }
}

/// A key-value store in its own RocksDB database under a directory.
///
/// Writes skip RocksDB's write-ahead log: durability comes from the store's changelog topic, and
/// [`KeyValueStore::flush`] flushes memtables to disk before the runtime writes its checkpoint.
pub struct RocksDbKeyValueStore {
    name: String,
    path: PathBuf,
    db: Option<DB>,
    write_opts: WriteOptions,
    /// The key suffix its prefix extractor strips (0: no extractor; see [`StoreContext::key_suffix_len`]).
    ///
    /// [`StoreContext::key_suffix_len`]: crate::StoreContext::key_suffix_len
    key_suffix: usize,
    /// The options it was opened with, when they collect statistics (tests read the bloom filter tickers).
    #[cfg(test)]
    statistics: Option<Options>,
}

/// A key without its last `N` bytes: the record key of a window (8, 12) or session (16) store key.
fn strip_suffix<const N: usize>(key: &[u8]) -> &[u8] {
    &key[..key.len() - N]
}

/// Whether a key is long enough to carry an `N`-byte suffix.
fn holds_suffix<const N: usize>(key: &[u8]) -> bool {
    key.len() >= N
}

/// The prefix extractor of a store whose keys end in `suffix` bytes after the record key, when that length is
/// one the stores use.
fn record_key_extractor(suffix: usize) -> Option<rocksdb::SliceTransform> {
    use rocksdb::SliceTransform;
    Some(match suffix {
        8 => SliceTransform::create(
            "streams-rs.record-key-before-8",
            strip_suffix::<8>,
            Some(holds_suffix::<8>),
        ),
        12 => SliceTransform::create(
            "streams-rs.record-key-before-12",
            strip_suffix::<12>,
            Some(holds_suffix::<12>),
        ),
        16 => SliceTransform::create(
            "streams-rs.record-key-before-16",
            strip_suffix::<16>,
            Some(holds_suffix::<16>),
        ),
        _ => return None,
    })
}

impl std::fmt::Debug for RocksDbKeyValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbKeyValueStore")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish()
    }
}

/// Classifies an error opening a database: held by someone else, damaged, or anything else (a full disk, missing
/// permissions), which neither wiping nor waiting repairs.
fn open_error(store: &str, dir: &Path, e: rocksdb::Error) -> StoreError {
    let message = e.to_string();
    match e.kind() {
        rocksdb::ErrorKind::Corruption => StoreError::Corrupt {
            store: store.to_string(),
            path: dir.display().to_string(),
            message,
        },
        rocksdb::ErrorKind::IOError if message.contains("lock") || message.contains("LOCK") => {
            StoreError::Locked {
                store: store.to_string(),
                path: dir.display().to_string(),
            }
        }
        _ => StoreError::RocksDb {
            store: store.to_string(),
            message,
        },
    }
}

impl RocksDbKeyValueStore {
    /// Opens (creating if needed) the store `name` in directory `dir`, drawing memory from `resources`.
    ///
    /// A directory another process or thread has open gives [`StoreError::Locked`]; damaged files give
    /// [`StoreError::Corrupt`].
    pub fn open(
        name: impl Into<String>,
        dir: &Path,
        resources: &RocksDbResources,
    ) -> Result<Self, StoreError> {
        Self::open_with_key_suffix(name, dir, resources, 0)
    }

    /// [`RocksDbKeyValueStore::open`] for a store whose keys end in `key_suffix_len` bytes after the record key
    /// (see [`StoreContext::key_suffix_len`](crate::StoreContext::key_suffix_len)): with 8, 12 or 16 its bloom
    /// filters also hold the record keys, and scans marked [`KeyRange::of_one_key`] use them; other lengths
    /// open a plain store.
    pub fn open_with_key_suffix(
        name: impl Into<String>,
        dir: &Path,
        resources: &RocksDbResources,
        key_suffix_len: usize,
    ) -> Result<Self, StoreError> {
        Self::open_inner(name.into(), dir, resources, key_suffix_len, false)
    }

    fn open_inner(
        name: String,
        dir: &Path,
        resources: &RocksDbResources,
        key_suffix_len: usize,
        statistics: bool,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            store: name.clone(),
            path: dir.display().to_string(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_manager(&resources.write_buffers);
        opts.set_max_write_buffer_number(3);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&resources.cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_bloom_filter(10.0, false);
        // Point reads keep their whole-key filter; with an extractor the filter also holds each key's record
        // key, which a scan over one key's windows checks before it reads a file.
        table.set_whole_key_filtering(true);
        // Filters and indexes of the newest files stay in the cache: the window stores' reads check every L0
        // file of a segment, and re-reading (and checksumming) those blocks after an eviction cost more than
        // the reads themselves.
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let extractor = record_key_extractor(key_suffix_len);
        let key_suffix = if extractor.is_some() {
            key_suffix_len
        } else {
            0
        };
        if let Some(extractor) = extractor {
            opts.set_prefix_extractor(extractor);
        }
        opts.set_block_based_table_factory(&table);
        if statistics {
            opts.enable_statistics();
        }
        let db = DB::open(&opts, dir).map_err(|e| open_error(&name, dir, e))?;
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(true);
        Ok(RocksDbKeyValueStore {
            name,
            path: dir.to_path_buf(),
            db: Some(db),
            write_opts,
            key_suffix,
            #[cfg(test)]
            statistics: statistics.then_some(opts),
        })
    }

    /// The directory holding the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> Result<&DB, StoreError> {
        self.db.as_ref().ok_or_else(|| StoreError::Closed {
            store: self.name.clone(),
        })
    }

    fn err(&self, e: rocksdb::Error) -> StoreError {
        StoreError::RocksDb {
            store: self.name.clone(),
            message: e.to_string(),
        }
    }
}

struct RocksIter<'a> {
    inner: rocksdb::DBRawIterator<'a>,
    reverse: bool,
    store: &'a str,
    done: bool,
}

impl Iterator for RocksIter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some((k, v)) = self.inner.item() {
            let entry = (k.to_vec(), v.to_vec());
            if self.reverse {
                self.inner.prev();
            } else {
                self.inner.next();
            }
            return Some(Ok(entry));
        }
        self.done = true;
        match self.inner.status() {
            Ok(()) => None,
            Err(e) => Some(Err(StoreError::RocksDb {
                store: self.store.to_string(),
                message: e.to_string(),
            })),
        }
    }
}

impl KeyValueStore for RocksDbKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db()?;
        db.get_pinned(key)
            .map(|v| v.map(|s| s.to_vec()))
            .map_err(|e| self.err(e))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let db = self.db()?;
        db.put_opt(key, value, &self.write_opts)
            .map_err(|e| self.err(e))
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.get(key)?;
        if old.is_some() {
            let db = self.db()?;
            db.delete_opt(key, &self.write_opts)
                .map_err(|e| self.err(e))?;
        }
        Ok(old)
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StoreError> {
        out.clear();
        let db = self.db()?;
        match db.get_pinned(key).map_err(|e| self.err(e))? {
            Some(v) => {
                out.extend_from_slice(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn write_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<(), StoreError> {
        let db = self.db()?;
        let mut wb = WriteBatch::default();
        for (k, v) in batch {
            match v {
                Some(v) => wb.put(k, v),
                None => wb.delete(k),
            }
        }
        db.write_opt(wb, &self.write_opts).map_err(|e| self.err(e))
    }

    fn scan(&self, range: &KeyRange, reverse: bool) -> Result<KvIter<'_>, StoreError> {
        let db = self.db()?;
        if range.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        let mut ro = ReadOptions::default();
        if self.key_suffix > 0 {
            // With a prefix extractor, RocksDB reads in prefix mode unless told otherwise. Only a forward scan
            // whose two bounds hold the same record key may (the seek key's record key is the one checked
            // against the filters, and RocksDB wants the upper bound under the same prefix); every other scan
            // reads in total order.
            let n = self.key_suffix;
            fn record_key(k: &[u8], n: usize) -> Option<&[u8]> {
                k.len().checked_sub(n).map(|end| &k[..end])
            }
            let one_key = range.one_key_prefix
                && !reverse
                && matches!(
                    (
                        range.lower.as_deref().and_then(|k| record_key(k, n)),
                        range.upper.as_deref().and_then(|k| record_key(k, n)),
                    ),
                    (Some(l), Some(u)) if l == u
                );
            ro.set_total_order_seek(!one_key);
        }
        if let Some(l) = &range.lower {
            ro.set_iterate_lower_bound(l.clone());
        }
        if let Some(u) = &range.upper {
            ro.set_iterate_upper_bound(u.clone());
        }
        let mut inner = db.raw_iterator_opt(ro);
        if reverse {
            inner.seek_to_last();
        } else {
            inner.seek_to_first();
        }
        Ok(Box::new(RocksIter {
            inner,
            reverse,
            store: &self.name,
            done: false,
        }))
    }

    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        let db = self.db()?;
        Ok(db
            .property_int_value("rocksdb.estimate-num-keys")
            .map_err(|e| self.err(e))?
            .unwrap_or(0))
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let db = self.db()?;
        db.flush().map_err(|e| self.err(e))
    }

    fn persistent(&self) -> bool {
        true
    }

    fn close(&mut self) -> Result<(), StoreError> {
        if self.db.is_some() {
            self.flush()?;
            self.db = None;
        }
        Ok(())
    }

    /// Releases the database (and its directory lock) without flushing it first.
    fn close_dirty(&mut self) -> Result<(), StoreError> {
        self.db = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvEntry;

    /// A store held open elsewhere was taken for a corrupt one, and wiped under its holder.
    #[test]
    fn a_store_held_open_elsewhere_is_locked_not_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let resources = RocksDbResources::new(8 << 20, 8 << 20);
        let mut first = RocksDbKeyValueStore::open("s", dir.path(), &resources).unwrap();
        first.put(b"k", b"v").unwrap();
        match RocksDbKeyValueStore::open("s", dir.path(), &resources) {
            Err(StoreError::Locked { store, path }) => {
                assert_eq!(store, "s");
                assert_eq!(path, dir.path().display().to_string());
            }
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("a second open of a held store succeeded"),
        }
        assert_eq!(first.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        first.close().unwrap();
        drop(first);
        let again = RocksDbKeyValueStore::open("s", dir.path(), &resources).unwrap();
        assert_eq!(again.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    /// Window-store key: the record key, then the 8-byte big-endian window start.
    fn window_key(key: &[u8], start: i64) -> Vec<u8> {
        [key, &start.to_be_bytes()[..]].concat()
    }

    /// The range a window store reads for `key`'s windows starting in `[from, to]`.
    fn one_key_range(key: &[u8], from: i64, to: i64) -> KeyRange {
        KeyRange::from_bounds(
            std::ops::Bound::Included(&window_key(key, from)),
            std::ops::Bound::Excluded(&window_key(key, to + 1)),
        )
        .of_one_key()
    }

    fn entries(store: &dyn KeyValueStore, range: &KeyRange, reverse: bool) -> Vec<KvEntry> {
        store
            .scan(range, reverse)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// With the record-key prefix extractor of a window store, scans of one key's windows return exactly that
    /// key's windows, and every other scan (all keys, reverse, unmarked ranges) returns what an in-memory store
    /// holding the same entries returns: also for record keys that extend one another with bytes that look like
    /// the start of a time (b"a" and b"a\0"), whose entries interleave in key order.
    #[test]
    fn a_window_store_prefix_extractor_changes_no_scan_result() {
        let dir = tempfile::tempdir().unwrap();
        let resources = RocksDbResources::new(8 << 20, 8 << 20);
        let mut rocks =
            RocksDbKeyValueStore::open_with_key_suffix("w", dir.path(), &resources, 8).unwrap();
        let mut reference = crate::InMemoryKeyValueStore::new("w");
        let keys: [&[u8]; 7] = [b"", b"\0", b"a", b"a\0", b"a\0\0\0", b"ab", b"b"];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..4 {
            for _ in 0..400 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = keys[(x % keys.len() as u64) as usize];
                let start = ((x >> 8) % 64) as i64
                    * if (x >> 40).is_multiple_of(5) {
                        1 << 40
                    } else {
                        1
                    };
                let k = window_key(key, start);
                if (x >> 20).is_multiple_of(7) {
                    rocks.delete(&k).unwrap();
                    reference.delete(&k).unwrap();
                } else {
                    let v = round.to_string().into_bytes();
                    rocks.put(&k, &v).unwrap();
                    reference.put(&k, &v).unwrap();
                }
            }
            // The first three rounds end up in files of their own; the last stays in the memtable.
            if round < 3 {
                rocks.flush().unwrap();
            }
        }
        for key in keys {
            for (from, to) in [
                (0, 63),
                (5, 20),
                (0, 0),
                (63, 63),
                (1 << 40, 63 << 40),
                (0, i64::MAX - 1),
            ] {
                let range = one_key_range(key, from, to);
                let own = |e: &KvEntry| e.0.len() == key.len() + 8 && e.0.starts_with(key);
                let got: Vec<_> = entries(&rocks, &range, false)
                    .into_iter()
                    .filter(own)
                    .collect();
                let want: Vec<_> = entries(&reference, &range, false)
                    .into_iter()
                    .filter(own)
                    .collect();
                assert_eq!(got, want, "windows of {key:?} in [{from}, {to}]");
                // Reverse scans of the same range read in total order: every entry of the range.
                assert_eq!(
                    entries(&rocks, &range, true),
                    entries(&reference, &range, true)
                );
            }
        }
        for range in [
            KeyRange::all(),
            KeyRange::prefix(b"a"),
            KeyRange::inclusive(Some(&window_key(b"\0", 7)), Some(&window_key(b"ab", 9))),
        ] {
            for reverse in [false, true] {
                assert_eq!(
                    entries(&rocks, &range, reverse),
                    entries(&reference, &range, reverse),
                    "{range:?} reverse={reverse}"
                );
            }
        }
    }

    /// A scan of one key's windows skips, by the bloom filters on record keys, the files that do not hold that
    /// key; without the extractor (a plain key-value store) no file is skipped.
    #[test]
    fn one_key_window_scans_skip_files_without_the_key() {
        let filtered = |key_suffix: usize| {
            let dir = tempfile::tempdir().unwrap();
            let resources = RocksDbResources::new(8 << 20, 8 << 20);
            let mut s = RocksDbKeyValueStore::open_inner(
                "w".into(),
                dir.path(),
                &resources,
                key_suffix,
                true,
            )
            .unwrap();
            // Three files, each holding its own 100 record keys; their key ranges overlap.
            for file in 0..3 {
                for k in 0..100 {
                    let key = format!("key{k:03}-file{file}");
                    s.put(&window_key(key.as_bytes(), 1_000), b"v").unwrap();
                }
                s.flush().unwrap();
            }
            let range = one_key_range(b"key007-file1", 0, 2_000);
            let found = entries(&s, &range, false);
            assert_eq!(
                found,
                vec![(window_key(b"key007-file1", 1_000), b"v".to_vec())]
            );
            use rocksdb::statistics::Ticker;
            let stats = s.statistics.as_ref().unwrap();
            stats.get_ticker_count(Ticker::NonLastLevelSeekFiltered)
                + stats.get_ticker_count(Ticker::LastLevelSeekFiltered)
        };
        assert_eq!(filtered(8), 2, "files skipped by their bloom filters");
        assert_eq!(filtered(0), 0);
    }

    #[test]
    fn damaged_files_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let resources = RocksDbResources::new(8 << 20, 8 << 20);
        let mut s = RocksDbKeyValueStore::open("s", dir.path(), &resources).unwrap();
        s.put(b"k", b"v").unwrap();
        s.close().unwrap();
        drop(s);
        std::fs::write(dir.path().join("CURRENT"), b"garbage\n").unwrap();
        match RocksDbKeyValueStore::open("s", dir.path(), &resources) {
            Err(StoreError::Corrupt { store, .. }) => assert_eq!(store, "s"),
            Err(other) => panic!("expected Corrupt, got {other:?}"),
            Ok(_) => panic!("a store with a damaged CURRENT file opened"),
        }
    }
}
