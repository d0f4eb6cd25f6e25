//! State stores for stream processing: key-value stores over bytes, their in-memory and RocksDB
//! implementations, and the layers every store is wrapped in.
//!
//! A task's store is a stack, outermost first:
//!
//! 1. [`TypedKeyValueStore`]: keys and values through [`serde::Serde`]s;
//! 2. [`CachingKeyValueStore`]: a write-back cache bounded in bytes, which collapses repeated updates of a key;
//! 3. [`ChangeLoggingKeyValueStore`]: hands every write that leaves the cache to a [`ChangelogSink`] (the runtime
//!    sends it to the store's compacted changelog topic);
//! 4. the store itself: [`InMemoryKeyValueStore`] or [`RocksDbKeyValueStore`], or your own [`KeyValueStore`];
//!    for window and session stores, a [`SegmentedKeyValueStore`] made of one such store per segment of time.
//!
//! Under exactly-once processing a [`TransactionalKeyValueStore`] sits between 3 and 4: it holds the writes of
//! the running transaction in memory and applies them to the store below only once the transaction commits.
//!
//! This crate knows nothing of Kafka and builds without it.
//!
//! ```
//! use state_store::{CachingKeyValueStore, InMemoryKeyValueStore, KeyValueStore};
//!
//! let mut store = CachingKeyValueStore::new(InMemoryKeyValueStore::new("words"), 1024 * 1024);
//! store.put(b"kafka", b"1").unwrap();
//! store.put(b"streams", b"2").unwrap();
//! let keys: Vec<Vec<u8>> = store.prefix_scan(b"ka").unwrap().map(|e| e.unwrap().0).collect();
//! assert_eq!(keys, vec![b"kafka".to_vec()]);
//! ```
#![warn(missing_docs)]

mod cache;
mod error;
mod kv;
pub mod lazy;
mod logging;
mod memory;
#[cfg(feature = "rocksdb")]
mod rocks;
#[cfg(not(feature = "rocksdb"))]
#[path = "rocks_disabled.rs"]
mod rocks;
mod segments;
pub mod serde;
mod supplier;
mod timestamped;
mod transaction;
mod typed;
pub mod versioned;
mod window;

pub use cache::{CacheBudget, CacheStats, CachingKeyValueStore, FlushedEntry, WriteContext};
pub use error::{SerdeError, SerdeErrorKind, StoreError};
pub use kv::{prefix_upper_bound, BatchEntry, KeyRange, KeyValueStore, KvEntry, KvIter};
pub use logging::{ChangeLoggingKeyValueStore, ChangelogSink};
pub use memory::InMemoryKeyValueStore;
pub use rocks::{RocksDbKeyValueStore, RocksDbResources};
pub use segments::{
    segment_interval, SegmentKeySchema, SegmentedKeyValueStore, SegmentedStoreSupplier,
};
pub use serde::{Serde, Serdes, SharedSerde};
pub use supplier::{KeyValueStoreSupplier, StoreContext, StoreKind};
pub use timestamped::{TimestampedSerde, ValueAndTimestamp, ValueOfTimestampedSerde, NO_TIMESTAMP};
pub use transaction::TransactionalKeyValueStore;
pub use typed::{share, SharedKeyValueStore, TypedKeyValueStore};
pub use versioned::{VersionedKeyValueStore, VersionedPut, VersionedRecord};
pub use window::{
    SessionStore, SessionWindowedSerde, TimeWindowedSerde, Window, WindowStore, Windowed,
};
