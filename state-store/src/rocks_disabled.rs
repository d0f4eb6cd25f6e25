//! Stand-ins used when the crate is built without its `rocksdb` feature: opening a RocksDB store is an error.

use std::path::Path;

use crate::error::StoreError;
use crate::kv::{KeyRange, KeyValueStore, KvIter};

/// RocksDB memory budget (inert without the `rocksdb` feature).
#[derive(Debug, Clone, Default)]
pub struct RocksDbResources {
    _private: (),
}

impl RocksDbResources {
    /// Accepted for API compatibility; there is no RocksDB to budget.
    pub fn new(_block_cache_bytes: usize, _write_buffer_bytes: usize) -> Self {
        RocksDbResources::default()
    }
    /// Always 0.
    pub fn budget_bytes(&self) -> usize {
        0
    }
    /// Always 0.
    pub fn usage_bytes(&self) -> usize {
        0
    }
}

/// A RocksDB store that cannot be opened: this build has no RocksDB.
#[derive(Debug)]
pub struct RocksDbKeyValueStore {
    name: String,
}

impl RocksDbKeyValueStore {
    /// Fails: the crate was built without the `rocksdb` feature.
    pub fn open(
        name: impl Into<String>,
        dir: &Path,
        _resources: &RocksDbResources,
    ) -> Result<Self, StoreError> {
        Err(StoreError::RocksDb {
            store: name.into(),
            message: format!(
                "cannot open {}: state-store was built without its `rocksdb` feature",
                dir.display()
            ),
        })
    }

    /// Fails: the crate was built without the `rocksdb` feature.
    pub fn open_with_key_suffix(
        name: impl Into<String>,
        dir: &Path,
        resources: &RocksDbResources,
        _key_suffix_len: usize,
    ) -> Result<Self, StoreError> {
        Self::open(name, dir, resources)
    }
}

impl KeyValueStore for RocksDbKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        unreachable_store(&self.name)
    }
    fn put(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), StoreError> {
        unreachable_store(&self.name)
    }
    fn delete(&mut self, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        unreachable_store(&self.name)
    }
    fn scan(&self, _range: &KeyRange, _reverse: bool) -> Result<KvIter<'_>, StoreError> {
        unreachable_store(&self.name)
    }
    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        unreachable_store(&self.name)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        unreachable_store(&self.name)
    }
    fn persistent(&self) -> bool {
        true
    }
    // Such a store never opens, so it never holds writes back.
    fn commit_transaction(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn abort_transaction(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn pending_transaction_bytes(&self) -> usize {
        0
    }
}

fn unreachable_store<T>(name: &str) -> Result<T, StoreError> {
    Err(StoreError::Closed {
        store: name.to_string(),
    })
}
