//! Read-only views of a store across every task (partition) that holds a piece of it.

use std::sync::Arc;

use state_store::{KeyRange, SharedKeyValueStore, SharedSerde, StoreError, Window, Windowed};

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
        let mut closed: Option<StoreError> = None;
        for part in &self.parts {
            match self.lock(part)?.get(&buf) {
                Ok(Some(v)) => {
                    return self
                        .value_serde
                        .deserialize(&v)
                        .map(Some)
                        .map_err(|e| self.serde_err(e))
                }
                Ok(None) => {}
                // Closed since the view was taken (its task or standby copy moved): another part may hold the
                // key, as the copy handed over does.
                Err(e @ StoreError::Closed { .. }) => closed = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        closed.map_or(Ok(None), |e| Err(e.into()))
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
        self.decode_all(raw)
    }

    /// Decodes raw entries through the store's serdes.
    fn decode_all(&self, raw: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(K, V)>, StreamsError> {
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

    /// The entries in `range` whose key bytes pass `keep`, in key-byte order across partitions.
    fn scan_where(
        &self,
        range: &KeyRange,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<(K, V)>, StreamsError> {
        let mut raw = Vec::new();
        for part in &self.parts {
            let guard = self.lock(part)?;
            for entry in guard.scan(range, false)? {
                let (k, v) = entry?;
                if keep(&k) {
                    raw.push((k, v));
                }
            }
        }
        raw.sort_by(|a, b| a.0.cmp(&b.0));
        self.decode_all(raw)
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

/// The stored bytes of `key` in a windowed store whose keys end with `suffix` bytes of window times.
fn inner_key_bytes<K: 'static, V: 'static>(
    store: &ReadOnlyKeyValueStore<Windowed<K>, V>,
    key: K,
    suffix: usize,
) -> Result<Vec<u8>, StreamsError> {
    let mut bytes = store.encode_key(&Windowed::new(key, Window::new(0, 0)))?;
    let len = bytes.len().checked_sub(suffix).ok_or_else(|| {
        StreamsError::processor(format!(
            "store '{}' does not lay windowed keys out as key ++ window times",
            store.name()
        ))
    })?;
    bytes.truncate(len);
    Ok(bytes)
}

fn with_time(prefix: &[u8], times: &[i64]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for &t in times {
        k.extend_from_slice(&t.max(0).to_be_bytes());
    }
    k
}

/// A read-only view of a window store (the store of a time- or sliding-windowed aggregation) over all its
/// partitions: Kafka's `ReadOnlyWindowStore`. Values come without their timestamps, or with them when read as
/// `ValueAndTimestamp<V>` (Kafka's timestamped window store).
///
/// See `TimeWindowedKStream::count` in streams-dsl for an example.
pub struct ReadOnlyWindowStore<K, V> {
    inner: ReadOnlyKeyValueStore<Windowed<K>, V>,
}

impl<K: Clone + 'static, V: 'static> ReadOnlyWindowStore<K, V> {
    /// The window view of `inner`, a store of `Windowed<K>` keys laid out as `key ++ start`.
    pub fn new(inner: ReadOnlyKeyValueStore<Windowed<K>, V>) -> Self {
        ReadOnlyWindowStore { inner }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The value of `key`'s window starting at `start`.
    pub fn fetch(&self, key: &K, start: i64) -> Result<Option<V>, StreamsError> {
        Ok(self
            .fetch_range(key, start, start)?
            .into_iter()
            .next()
            .map(|(_, v)| v))
    }

    /// `key`'s windows starting from `from` to `to` (both included), as (start, value), oldest first.
    pub fn fetch_range(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>, StreamsError> {
        if to < from || to < 0 {
            return Ok(Vec::new());
        }
        let prefix = inner_key_bytes(&self.inner, key.clone(), 8)?;
        let (lo, hi) = (with_time(&prefix, &[from]), with_time(&prefix, &[to]));
        let len = prefix.len() + 8;
        // Everything between `lo` and `hi` starts with the key's bytes; the length leaves out longer keys.
        Ok(self
            .inner
            .scan_where(&KeyRange::inclusive(Some(&lo), Some(&hi)), |k| {
                k.len() == len
            })?
            .into_iter()
            .map(|(w, v)| (w.window.start, v))
            .collect())
    }

    /// Every key's windows starting from `from` to `to` (both included).
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(Windowed<K>, V)>, StreamsError> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|(w, _)| (from..=to).contains(&w.window.start))
            .collect())
    }

    /// Every window of every key.
    pub fn all(&self) -> Result<Vec<(Windowed<K>, V)>, StreamsError> {
        self.inner.all()
    }
}

/// A read-only view of a session store (the store of a session-windowed aggregation) over all its partitions:
/// Kafka's `ReadOnlySessionStore`.
///
/// See `SessionWindowedKStream::count` in streams-dsl for an example.
pub struct ReadOnlySessionStore<K, V> {
    inner: ReadOnlyKeyValueStore<Windowed<K>, V>,
}

impl<K: Clone + 'static, V: 'static> ReadOnlySessionStore<K, V> {
    /// The session view of `inner`, a store of `Windowed<K>` keys laid out as `key ++ end ++ start`.
    pub fn new(inner: ReadOnlyKeyValueStore<Windowed<K>, V>) -> Self {
        ReadOnlySessionStore { inner }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Every session of `key`, by end.
    pub fn fetch(&self, key: &K) -> Result<Vec<(Windowed<K>, V)>, StreamsError> {
        self.find_sessions(key, 0, i64::MAX)
    }

    /// `key`'s sessions that end at or after `earliest_end` and start at or before `latest_start`, by end.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<(Windowed<K>, V)>, StreamsError> {
        let prefix = inner_key_bytes(&self.inner, key.clone(), 16)?;
        let lo = with_time(&prefix, &[earliest_end, 0]);
        let hi = with_time(&prefix, &[i64::MAX, i64::MAX]);
        let len = prefix.len() + 16;
        Ok(self
            .inner
            .scan_where(&KeyRange::inclusive(Some(&lo), Some(&hi)), |k| {
                k.len() == len
            })?
            .into_iter()
            .filter(|(w, _)| w.window.start <= latest_start)
            .collect())
    }

    /// The session of `key` from `start` to `end`.
    pub fn fetch_session(&self, key: &K, start: i64, end: i64) -> Result<Option<V>, StreamsError> {
        self.inner
            .get(&Windowed::new(key.clone(), Window::new(start, end)))
    }
}

/// A read-only view of a versioned store over all its partitions (Kafka's `VersionedKeyValueStore` as a
/// processor or an interactive query reads it): the latest version of a key, or the version valid at a time.
pub struct ReadOnlyVersionedKeyValueStore<K, V> {
    parts: Vec<state_store::VersionedKeyValueStore<K, V>>,
}

impl<K: 'static, V: 'static> ReadOnlyVersionedKeyValueStore<K, V> {
    /// A view of versioned store `name` of `topology` over the given partitions' byte stores.
    pub(crate) fn new(
        topology: &Topology,
        name: &str,
        parts: Vec<SharedKeyValueStore>,
    ) -> Result<Self, StreamsError> {
        let retention = topology.versioned_store_retention(name).ok_or_else(|| {
            StreamsError::StoreTypeMismatch {
                store: name.to_string(),
                actual: "a store that is not versioned".into(),
                requested: "a versioned store".into(),
            }
        })?;
        let serdes = topology.versioned_store_serdes::<K, V>(name)?;
        Ok(ReadOnlyVersionedKeyValueStore {
            parts: parts
                .into_iter()
                .map(|p| {
                    state_store::VersionedKeyValueStore::with_shared_serdes(
                        p,
                        serdes.key.clone(),
                        serdes.value.clone(),
                        retention,
                    )
                })
                .collect(),
        })
    }

    /// The latest version of `key`, `None` when it has none or was deleted.
    pub fn get(&self, key: &K) -> Result<Option<state_store::VersionedRecord<V>>, StreamsError> {
        for p in &self.parts {
            if let Some(r) = p.get(key)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// The version of `key` valid at `timestamp` (see
    /// [`VersionedKeyValueStore::get_as_of`](state_store::VersionedKeyValueStore::get_as_of)).
    pub fn get_as_of(
        &self,
        key: &K,
        timestamp: i64,
    ) -> Result<Option<state_store::VersionedRecord<V>>, StreamsError> {
        for p in &self.parts {
            if let Some(r) = p.get_as_of(key, timestamp)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_store::{InMemoryKeyValueStore, KeyValueStore, KvIter, Serdes};
    use std::sync::Mutex;

    /// A part whose store was closed after the view was taken.
    struct ClosedPart;

    impl KeyValueStore for ClosedPart {
        fn name(&self) -> &str {
            "counts"
        }
        fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Err(StoreError::Closed {
                store: "counts".into(),
            })
        }
        fn put(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), StoreError> {
            unreachable!("read-only view")
        }
        fn delete(&mut self, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            unreachable!("read-only view")
        }
        fn scan(&self, _range: &KeyRange, _reverse: bool) -> Result<KvIter<'_>, StoreError> {
            Err(StoreError::Closed {
                store: "counts".into(),
            })
        }
        fn approximate_num_entries(&self) -> Result<u64, StoreError> {
            Ok(0)
        }
        fn flush(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn persistent(&self) -> bool {
            true
        }
    }

    /// Defect: a stale query failed for a key a standby copy held, whenever another part of the view had been
    /// closed meanwhile (a copy stopped elsewhere on the instance): 0.1% of the queries of the kill -9 failover
    /// test.
    #[test]
    fn finding_a_closed_part_does_not_fail_a_key_another_part_holds() {
        let mut live = InMemoryKeyValueStore::new("counts");
        live.put(b"k", &7i64.to_be_bytes()).unwrap();
        let closed: SharedKeyValueStore = Arc::new(Mutex::new(Box::new(ClosedPart)));
        let live: SharedKeyValueStore = Arc::new(Mutex::new(Box::new(live)));
        let view = ReadOnlyKeyValueStore::<String, i64>::from_parts(
            "counts",
            vec![closed.clone(), live],
            Arc::new(Serdes::string()),
            Arc::new(Serdes::i64()),
        );
        assert_eq!(view.get(&"k".to_string()).unwrap(), Some(7));
        // A key no part holds, with a part closed: the view cannot say it is absent.
        assert!(view.get(&"other".to_string()).is_err());
        let only_closed = ReadOnlyKeyValueStore::<String, i64>::from_parts(
            "counts",
            vec![closed],
            Arc::new(Serdes::string()),
            Arc::new(Serdes::i64()),
        );
        assert!(only_closed.get(&"k".to_string()).is_err());
    }
}
