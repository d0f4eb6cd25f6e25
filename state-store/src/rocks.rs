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
        let name = name.into();
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
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, dir).map_err(|e| open_error(&name, dir, e))?;
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(true);
        Ok(RocksDbKeyValueStore {
            name,
            path: dir.to_path_buf(),
            db: Some(db),
            write_opts,
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
