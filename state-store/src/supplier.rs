//! Choosing and opening stores.

use std::path::Path;

use crate::error::StoreError;
use crate::kv::KeyValueStore;
use crate::memory::InMemoryKeyValueStore;
use crate::rocks::{RocksDbKeyValueStore, RocksDbResources};

/// Which implementation backs a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum StoreKind {
    /// RocksDB on local disk (the default, as in Kafka Streams).
    #[default]
    RocksDb,
    /// An ordered map in memory.
    InMemory,
}

/// Where and with what a store is opened: the task's directory for this store and the instance's shared RocksDB
/// memory budget.
#[derive(Debug, Clone)]
pub struct StoreContext<'a> {
    /// Directory reserved for this store (created on demand).
    pub dir: &'a Path,
    /// Memory shared by every RocksDB store of the instance.
    pub rocksdb: &'a RocksDbResources,
    /// Bytes at the end of every key that follow its record key (a window store's start time, a session's end
    /// and start; 0 for plain key-value stores). A RocksDB store given a length of 8, 12 or 16 keeps a bloom
    /// filter on the record-key part too, so that reading one key's windows
    /// ([`KeyRange::of_one_key`](crate::KeyRange::of_one_key)) skips the files that do not hold that key.
    pub key_suffix_len: usize,
}

/// Opens instances of one key-value store (one per task); implement it to plug in a store of your own.
pub trait KeyValueStoreSupplier: Send + Sync {
    /// Opens the store called `name`.
    fn open(
        &self,
        name: &str,
        ctx: &StoreContext<'_>,
    ) -> Result<Box<dyn KeyValueStore>, StoreError>;

    /// Whether the stores it opens keep data on disk.
    fn persistent(&self) -> bool;

    /// A short description for topology descriptions and logs.
    fn describe(&self) -> &'static str;
}

impl KeyValueStoreSupplier for StoreKind {
    fn open(
        &self,
        name: &str,
        ctx: &StoreContext<'_>,
    ) -> Result<Box<dyn KeyValueStore>, StoreError> {
        Ok(match self {
            StoreKind::RocksDb => Box::new(RocksDbKeyValueStore::open_with_key_suffix(
                name,
                ctx.dir,
                ctx.rocksdb,
                ctx.key_suffix_len,
            )?),
            StoreKind::InMemory => Box::new(InMemoryKeyValueStore::new(name)),
        })
    }

    fn persistent(&self) -> bool {
        matches!(self, StoreKind::RocksDb)
    }

    fn describe(&self) -> &'static str {
        match self {
            StoreKind::RocksDb => "rocksdb",
            StoreKind::InMemory => "in-memory",
        }
    }
}
