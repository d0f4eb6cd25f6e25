//! An ordered in-memory key-value store.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::kv::{KeyRange, KeyValueStore, KvIter};

/// A key-value store kept in a `BTreeMap`: ordered, exact counts, gone when the process ends (the changelog
/// brings it back).
///
/// ```
/// use state_store::{InMemoryKeyValueStore, KeyValueStore};
///
/// let mut store = InMemoryKeyValueStore::new("counts");
/// store.put(b"a", b"1").unwrap();
/// store.put(b"b", b"2").unwrap();
/// let keys: Vec<_> = store.all().unwrap().map(|e| e.unwrap().0).collect();
/// assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
/// ```
#[derive(Debug, Default)]
pub struct InMemoryKeyValueStore {
    name: String,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl InMemoryKeyValueStore {
    /// An empty store called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryKeyValueStore {
            name: name.into(),
            map: BTreeMap::new(),
        }
    }
}

impl KeyValueStore for InMemoryKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.get(key).cloned())
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StoreError> {
        out.clear();
        match self.map.get(key) {
            Some(v) => {
                out.extend_from_slice(v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        match self.map.get_mut(key) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.remove(key))
    }

    fn scan(&self, range: &KeyRange, reverse: bool) -> Result<KvIter<'_>, StoreError> {
        if range.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        let iter = self
            .map
            .range::<[u8], _>(range.as_bounds())
            .map(|(k, v)| Ok((k.clone(), v.clone())));
        if reverse {
            Ok(Box::new(iter.rev()))
        } else {
            Ok(Box::new(iter))
        }
    }

    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        Ok(self.map.len() as u64)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn persistent(&self) -> bool {
        false
    }
}
