//! Read-only views of a store across every task (partition) that holds a piece of it.

use std::sync::Arc;

use state_store::{KeyRange, SharedKeyValueStore, SharedSerde, StoreError};

use crate::error::StreamsError;
use crate::topology::Topology;

/// A read-only, typed view of one store over all its partitions: what the test driver's store access and
/// interactive queries return. Keys come back in key-byte order across partitions.
pub struct ReadOnlyKeyValueStore<K, V> {
    name: Arc<str>,
    parts: Vec<SharedKeyValueStore>,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
}

impl<K, V> Clone for ReadOnlyKeyValueStore<K, V> {
    fn clone(&self) -> Self {
        ReadOnlyKeyValueStore {
            name: self.name.clone(),
            parts: self.parts.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

impl<K: 'static, V: 'static> ReadOnlyKeyValueStore<K, V> {
    /// A view of store `name` of `topology` over the given partitions' byte stores.
    pub(crate) fn new(
        topology: &Topology,
        name: &str,
        parts: Vec<SharedKeyValueStore>,
    ) -> Result<Self, StreamsError> {
        let serdes = topology.store_serdes::<K, V>(name)?;
        Ok(ReadOnlyKeyValueStore {
            name: Arc::from(name),
            parts,
            key_serde: serdes.key.clone(),
            value_serde: serdes.value.clone(),
        })
    }

    /// A view of byte stores `parts` through the given serdes.
    pub(crate) fn from_parts(
        name: &str,
        parts: Vec<SharedKeyValueStore>,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> Self {
        ReadOnlyKeyValueStore {
            name: Arc::from(name),
            parts,
            key_serde,
            value_serde,
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn serde_err(&self, source: state_store::SerdeError) -> StreamsError {
        StoreError::Serde {
            store: self.name.to_string(),
            source,
        }
        .into()
    }

    fn lock<'a>(
        &self,
        part: &'a SharedKeyValueStore,
    ) -> Result<std::sync::MutexGuard<'a, Box<dyn state_store::KeyValueStore>>, StreamsError> {
        part.lock().map_err(|_| {
            StreamsError::Store(StoreError::Poisoned {
                store: self.name.to_string(),
            })
        })
    }

    /// The bytes `key` is stored under.
    pub fn encode_key(&self, key: &K) -> Result<Vec<u8>, StreamsError> {
        let mut buf = Vec::new();
        self.key_serde
            .serialize(key, &mut buf)
            .map_err(|e| self.serde_err(e))?;
        Ok(buf)
    }

    /// The value under `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>, StreamsError> {
        let mut buf = Vec::new();
        self.key_serde
            .serialize(key, &mut buf)
            .map_err(|e| self.serde_err(e))?;
        for part in &self.parts {
            if let Some(v) = self.lock(part)?.get(&buf)? {
                return self
                    .value_serde
                    .deserialize(&v)
                    .map(Some)
                    .map_err(|e| self.serde_err(e));
            }
        }
        Ok(None)
    }

    /// At most `limit` entries in `range` (ascending, or descending when `reverse`) across all partitions.
    pub fn scan(
        &self,
        range: &KeyRange,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(K, V)>, StreamsError> {
        let mut raw = Vec::new();
        for part in &self.parts {
            let guard = self.lock(part)?;
            for entry in guard.scan(range, reverse)?.take(limit) {
                raw.push(entry?);
            }
        }
        raw.sort_by(|a, b| {
            if reverse {
                b.0.cmp(&a.0)
            } else {
                a.0.cmp(&b.0)
            }
        });
        raw.truncate(limit);
        raw.into_iter()
            .map(|(k, v)| {
                let k = self
                    .key_serde
                    .deserialize(&k)
                    .map_err(|e| self.serde_err(e))?;
                let v = self
                    .value_serde
                    .deserialize(&v)
                    .map_err(|e| self.serde_err(e))?;
                Ok((k, v))
            })
            .collect()
    }

    /// Entries with `from <= key <= to` (by key bytes).
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>, StreamsError> {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        self.key_serde
            .serialize(from, &mut a)
            .map_err(|e| self.serde_err(e))?;
        self.key_serde
            .serialize(to, &mut b)
            .map_err(|e| self.serde_err(e))?;
        self.scan(&KeyRange::inclusive(Some(&a), Some(&b)), false, usize::MAX)
    }

    /// Entries whose key bytes start with those of `prefix`.
    pub fn prefix_scan(&self, prefix: &K) -> Result<Vec<(K, V)>, StreamsError> {
        let mut p = Vec::new();
        self.key_serde
            .serialize(prefix, &mut p)
            .map_err(|e| self.serde_err(e))?;
        self.scan(&KeyRange::prefix(&p), false, usize::MAX)
    }

    /// Every entry.
    pub fn all(&self) -> Result<Vec<(K, V)>, StreamsError> {
        self.scan(&KeyRange::all(), false, usize::MAX)
    }

    /// Sum of the partitions' estimates.
    pub fn approximate_num_entries(&self) -> Result<u64, StreamsError> {
        let mut n = 0;
        for part in &self.parts {
            n += self.lock(part)?.approximate_num_entries()?;
        }
        Ok(n)
    }
}
