//! The typed facade: keys and values through serdes, over a shared byte store.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::StoreError;
use crate::kv::{KeyRange, KeyValueStore};
use crate::serde::SharedSerde;

/// A byte store shared between the task that writes it and readers elsewhere (interactive queries).
pub type SharedKeyValueStore = Arc<Mutex<Box<dyn KeyValueStore>>>;

/// Wraps a store so it can be shared.
pub fn share(store: Box<dyn KeyValueStore>) -> SharedKeyValueStore {
    Arc::new(Mutex::new(store))
}

/// A key-value store of `K` to `V`, encoding through the store's serdes.
///
/// Cheap to clone; clones share the store. Each clone keeps its own encode buffers, which is why even reads take
/// `&mut self`.
///
/// ```
/// use state_store::{share, InMemoryKeyValueStore, TypedKeyValueStore, Serdes};
///
/// let mut counts = TypedKeyValueStore::new(
///     share(Box::new(InMemoryKeyValueStore::new("counts"))),
///     Serdes::string(),
///     Serdes::i64(),
/// );
/// counts.put(&"apples".to_string(), &3).unwrap();
/// assert_eq!(counts.get(&"apples".to_string()).unwrap(), Some(3));
/// assert_eq!(counts.all().unwrap(), vec![("apples".to_string(), 3)]);
/// ```
pub struct TypedKeyValueStore<K, V> {
    store: SharedKeyValueStore,
    name: Arc<str>,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl<K, V> Clone for TypedKeyValueStore<K, V> {
    fn clone(&self) -> Self {
        TypedKeyValueStore {
            store: self.store.clone(),
            name: self.name.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }
}

impl<K: 'static, V: 'static> TypedKeyValueStore<K, V> {
    /// A typed view of `store`.
    pub fn new(
        store: SharedKeyValueStore,
        key_serde: impl crate::serde::Serde<K>,
        value_serde: impl crate::serde::Serde<V>,
    ) -> Self {
        Self::with_shared_serdes(store, Arc::new(key_serde), Arc::new(value_serde))
    }

    /// A typed view of `store` with already shared serdes.
    pub fn with_shared_serdes(
        store: SharedKeyValueStore,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> Self {
        let name: Arc<str> = match store.lock() {
            Ok(s) => Arc::from(s.name()),
            Err(p) => Arc::from(p.get_ref().name()),
        };
        TypedKeyValueStore {
            store,
            name,
            key_serde,
            value_serde,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The serde of the keys.
    pub fn key_serde(&self) -> &SharedSerde<K> {
        &self.key_serde
    }

    /// The serde of the values.
    pub fn value_serde(&self) -> &SharedSerde<V> {
        &self.value_serde
    }

    /// The shared byte store underneath.
    pub fn bytes(&self) -> &SharedKeyValueStore {
        &self.store
    }

    fn lock(&self) -> Result<MutexGuard<'_, Box<dyn KeyValueStore>>, StoreError> {
        self.store.lock().map_err(|_| StoreError::Poisoned {
            store: self.name.to_string(),
        })
    }

    fn serde_err(&self, source: crate::error::SerdeError) -> StoreError {
        StoreError::Serde {
            store: self.name.to_string(),
            source,
        }
    }

    fn encode_key(&mut self, key: &K) -> Result<(), StoreError> {
        self.key_buf.clear();
        let r = self.key_serde.serialize(key, &mut self.key_buf);
        r.map_err(|e| self.serde_err(e))
    }

    fn decode_value(&self, bytes: &[u8]) -> Result<V, StoreError> {
        self.value_serde
            .deserialize(bytes)
            .map_err(|e| self.serde_err(e))
    }

    fn decode_entry(&self, (k, v): (Vec<u8>, Vec<u8>)) -> Result<(K, V), StoreError> {
        let key = self
            .key_serde
            .deserialize(&k)
            .map_err(|e| self.serde_err(e))?;
        Ok((key, self.decode_value(&v)?))
    }

    /// The value under `key`.
    pub fn get(&mut self, key: &K) -> Result<Option<V>, StoreError> {
        self.encode_key(key)?;
        let guard = self.store.lock().map_err(|_| StoreError::Poisoned {
            store: self.name.to_string(),
        })?;
        let found = guard.get_into(&self.key_buf, &mut self.value_buf)?;
        drop(guard);
        if found {
            self.decode_value(&self.value_buf).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Stores `value` under `key`.
    pub fn put(&mut self, key: &K, value: &V) -> Result<(), StoreError> {
        self.encode_key(key)?;
        self.value_buf.clear();
        let r = self.value_serde.serialize(value, &mut self.value_buf);
        r.map_err(|e| self.serde_err(e))?;
        let mut guard = self.lock()?;
        guard.put(&self.key_buf, &self.value_buf)
    }

    /// Stores `value` only when `key` has none; returns the existing value otherwise.
    pub fn put_if_absent(&mut self, key: &K, value: &V) -> Result<Option<V>, StoreError> {
        self.encode_key(key)?;
        self.value_buf.clear();
        let r = self.value_serde.serialize(value, &mut self.value_buf);
        r.map_err(|e| self.serde_err(e))?;
        let existing = self.lock()?.put_if_absent(&self.key_buf, &self.value_buf)?;
        existing.map(|b| self.decode_value(&b)).transpose()
    }

    /// Removes `key`; returns its value.
    pub fn delete(&mut self, key: &K) -> Result<Option<V>, StoreError> {
        self.encode_key(key)?;
        let old = self.lock()?.delete(&self.key_buf)?;
        old.map(|b| self.decode_value(&b)).transpose()
    }

    fn collect(
        &self,
        range: &KeyRange,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(K, V)>, StoreError> {
        let guard = self.lock()?;
        let mut out = Vec::new();
        for entry in guard.scan(range, reverse)?.take(limit) {
            out.push(self.decode_entry(entry?)?);
        }
        Ok(out)
    }

    /// Entries with `from <= key <= to`, ascending by key bytes.
    pub fn range(&mut self, from: &K, to: &K) -> Result<Vec<(K, V)>, StoreError> {
        let range = self.key_range(from, to)?;
        self.collect(&range, false, usize::MAX)
    }

    /// Entries with `from <= key <= to`, descending.
    pub fn reverse_range(&mut self, from: &K, to: &K) -> Result<Vec<(K, V)>, StoreError> {
        let range = self.key_range(from, to)?;
        self.collect(&range, true, usize::MAX)
    }

    fn key_range(&mut self, from: &K, to: &K) -> Result<KeyRange, StoreError> {
        self.encode_key(from)?;
        let lower = self.key_buf.clone();
        self.encode_key(to)?;
        Ok(KeyRange::inclusive(Some(&lower), Some(&self.key_buf)))
    }

    /// Entries whose encoded key starts with the encoding of `prefix` (for string keys: a string prefix).
    pub fn prefix_scan(&mut self, prefix: &K) -> Result<Vec<(K, V)>, StoreError> {
        self.encode_key(prefix)?;
        let range = KeyRange::prefix(&self.key_buf);
        self.collect(&range, false, usize::MAX)
    }

    /// At most `limit` entries of `range` in the given direction: the paging primitive behind bounded queries.
    pub fn scan(
        &self,
        range: &KeyRange,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(K, V)>, StoreError> {
        self.collect(range, reverse, limit)
    }

    /// Every entry, ascending.
    pub fn all(&self) -> Result<Vec<(K, V)>, StoreError> {
        self.collect(&KeyRange::all(), false, usize::MAX)
    }

    /// An estimate of the number of entries.
    pub fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        self.lock()?.approximate_num_entries()
    }

    /// Flushes the store (and its cache, if any).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.lock()?.flush()
    }
}
