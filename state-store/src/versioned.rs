//! Versioned key-value stores (Kafka Streams' `VersionedKeyValueStore`, KIP-889): every version of a key's value
//! is kept for a history retention period, so the store can answer "what was the value of this key at time t".
//!
//! A put carries a timestamp: the version it writes is valid from that timestamp until the timestamp of the next
//! version of the key (or for ever, for the latest one). Deletes are tombstone versions. Puts may come out of
//! order: an older put is inserted into the history. The store tracks its own observed stream time (the highest
//! timestamp put so far); a put older than observed stream time minus the history retention is not applied
//! ([`VersionedPut::NotPut`], Kafka's `PUT_RETURN_CODE_NOT_PUT`), and queries as of such a time find nothing,
//! except that the latest version answers every query at or after its own timestamp.
//!
//! The store is a view over an ordinary byte [`KeyValueStore`] stack (RocksDB or memory underneath, a changelog
//! layer between), laid out as:
//!
//! | entry | stored key | stored value |
//! |---|---|---|
//! | a version | `0x01 ++ len(key) (u32, big-endian) ++ key ++ timestamp (order-preserving 8 bytes)` | `0x00` for a tombstone, `0x01 ++ value` otherwise |
//! | an expiry index entry, one per version | `0x02 ++ timestamp ++ len(key) ++ key` | empty |
//! | the observed stream time | `0x00 ++ "observed-stream-time"` | big-endian i64 |
//!
//! All versions of one key are one contiguous range in time order, so a lookup as of a time is one short seek.
//! Expiry walks the index in time order from its start up to the cutoff and deletes what it finds, so each version
//! is visited once when it expires, never by a scan of the whole store.
//!
//! Only version entries reach the changelog, as Kafka's versioned store writes it: the record key is the plain
//! key, the value the plain value (`None` for a tombstone) and the record timestamp the version's timestamp
//! ([`decode_changelog_entry`]). Restoring applies each record as a put ([`restore_version`]), which rebuilds the
//! history, the index and the observed stream time.
//!
//! ```
//! use state_store::{share, InMemoryKeyValueStore, Serdes, VersionedKeyValueStore, VersionedPut};
//!
//! let mut prices = VersionedKeyValueStore::new(
//!     share(Box::new(InMemoryKeyValueStore::new("prices"))),
//!     Serdes::string(),
//!     Serdes::i64(),
//!     60_000, // keep one minute of history
//! );
//! let pen = "pen".to_string();
//! assert_eq!(prices.put(&pen, Some(&3), 1_000).unwrap(), VersionedPut::Latest);
//! assert_eq!(prices.put(&pen, Some(&4), 5_000).unwrap(), VersionedPut::Latest);
//! // Out of order: inserted into the history, valid until the next version.
//! assert_eq!(prices.put(&pen, Some(&2), 500).unwrap(), VersionedPut::ValidTo(1_000));
//! let at = prices.get_as_of(&pen, 2_000).unwrap().unwrap();
//! assert_eq!((at.value, at.timestamp, at.valid_to), (3, 1_000, Some(5_000)));
//! assert_eq!(prices.get(&pen).unwrap().unwrap().value, 4);
//! ```

use std::sync::{Arc, MutexGuard};

use crate::error::StoreError;
use crate::kv::{prefix_upper_bound, KeyRange, KeyValueStore};
use crate::serde::{Serde, SharedSerde};
use crate::typed::SharedKeyValueStore;

/// Kafka's `VersionedKeyValueStore.PUT_RETURN_CODE_VALID_TO_UNDEFINED`: the put version is the latest.
pub const PUT_RETURN_CODE_VALID_TO_UNDEFINED: i64 = -1;
/// Kafka's `VersionedKeyValueStore.PUT_RETURN_CODE_NOT_PUT`: the put was older than the history retention.
pub const PUT_RETURN_CODE_NOT_PUT: i64 = i64::MIN;

/// The observed stream time of an empty store (Kafka's `ConsumerRecord.NO_TIMESTAMP`).
const NO_STREAM_TIME: i64 = -1;

const TAG_META: u8 = 0x00;
const TAG_VERSION: u8 = 0x01;
const TAG_INDEX: u8 = 0x02;
const META_STREAM_TIME: &[u8] = b"\x00observed-stream-time";

const TOMBSTONE: u8 = 0x00;
const VALUE: u8 = 0x01;

/// What a put did, as Kafka's `VersionedKeyValueStore.put` return code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionedPut {
    /// The put version is the key's latest (Kafka: `PUT_RETURN_CODE_VALID_TO_UNDEFINED`, -1).
    Latest,
    /// The put version went into the history and is valid until this timestamp (the next version's).
    ValidTo(i64),
    /// The put was older than observed stream time minus the history retention and was not applied (Kafka:
    /// `PUT_RETURN_CODE_NOT_PUT`, `Long.MIN_VALUE`).
    NotPut,
}

impl VersionedPut {
    /// The outcome as Kafka's `long` return code: -1, the valid-to timestamp, or `i64::MIN`.
    pub fn kafka_code(self) -> i64 {
        match self {
            VersionedPut::Latest => PUT_RETURN_CODE_VALID_TO_UNDEFINED,
            VersionedPut::ValidTo(t) => t,
            VersionedPut::NotPut => PUT_RETURN_CODE_NOT_PUT,
        }
    }
}

/// One version of a value (Kafka's `VersionedRecord`): the value, the timestamp it is valid from, and the
/// timestamp it is valid until (exclusive; `None` for the latest version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionedRecord<V> {
    /// The value.
    pub value: V,
    /// The version's timestamp: it is valid from here.
    pub timestamp: i64,
    /// The next version's timestamp, where this one stops being valid; `None` for the latest.
    pub valid_to: Option<i64>,
}

fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn ts_from(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[bytes.len() - 8..]);
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

fn key_len(key: &[u8]) -> Result<[u8; 4], StoreError> {
    u32::try_from(key.len())
        .map(u32::to_be_bytes)
        .map_err(|_| StoreError::Serde {
            store: String::new(),
            source: crate::SerdeError::new(
                "versioned key",
                crate::SerdeErrorKind::Other,
                "a versioned store's key must be shorter than 4 GiB",
            ),
        })
}

fn version_prefix(key: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut p = Vec::with_capacity(key.len() + 13);
    p.push(TAG_VERSION);
    p.extend_from_slice(&key_len(key)?);
    p.extend_from_slice(key);
    Ok(p)
}

fn with_ts(prefix: &[u8], ts: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&ts_bytes(ts));
    k
}

fn index_key(ts: i64, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut k = Vec::with_capacity(key.len() + 13);
    k.push(TAG_INDEX);
    k.extend_from_slice(&ts_bytes(ts));
    k.extend_from_slice(&key_len(key)?);
    k.extend_from_slice(key);
    Ok(k)
}

fn corrupt(store: &dyn KeyValueStore, what: &str) -> StoreError {
    StoreError::Serde {
        store: store.name().to_string(),
        source: crate::SerdeError::new(
            "versioned store entry",
            crate::SerdeErrorKind::Other,
            what.to_string(),
        ),
    }
}

/// A stored version: its timestamp and value (`None` for a tombstone).
struct Version {
    ts: i64,
    value: Option<Vec<u8>>,
}

fn decode_version(
    store: &dyn KeyValueStore,
    stored_key: &[u8],
    stored: &[u8],
) -> Result<Version, StoreError> {
    let ts = ts_from(stored_key);
    match stored.split_first() {
        Some((&TOMBSTONE, _)) => Ok(Version { ts, value: None }),
        Some((&VALUE, v)) => Ok(Version {
            ts,
            value: Some(v.to_vec()),
        }),
        _ => Err(corrupt(store, "a version entry must start with 0 or 1")),
    }
}

/// The first version of the key in `range` (from the end when `reverse`).
fn first_in(
    store: &dyn KeyValueStore,
    range: &KeyRange,
    reverse: bool,
) -> Result<Option<Version>, StoreError> {
    match store.scan(range, reverse)?.next() {
        Some(entry) => {
            let (k, v) = entry?;
            decode_version(store, &k, &v).map(Some)
        }
        None => Ok(None),
    }
}

/// The latest version at or before `ts`.
fn at_or_before(
    store: &dyn KeyValueStore,
    prefix: &[u8],
    ts: i64,
) -> Result<Option<Version>, StoreError> {
    let range = KeyRange {
        lower: Some(prefix.to_vec()),
        upper: Some(with_ts(prefix, ts).into_iter().chain([0]).collect()),
        one_key_prefix: false,
    };
    first_in(store, &range, true)
}

/// The earliest version after `ts`.
fn after(store: &dyn KeyValueStore, prefix: &[u8], ts: i64) -> Result<Option<Version>, StoreError> {
    let mut lower = with_ts(prefix, ts);
    lower.push(0);
    let range = KeyRange {
        lower: Some(lower),
        upper: prefix_upper_bound(prefix),
        one_key_prefix: false,
    };
    first_in(store, &range, false)
}

fn latest(store: &dyn KeyValueStore, prefix: &[u8]) -> Result<Option<Version>, StoreError> {
    first_in(store, &KeyRange::prefix(prefix), true)
}

/// The store's observed stream time: the highest timestamp put so far, -1 before the first put.
pub fn observed_stream_time(store: &dyn KeyValueStore) -> Result<i64, StoreError> {
    match store.get(META_STREAM_TIME)? {
        Some(b) => b
            .as_slice()
            .try_into()
            .map(i64::from_be_bytes)
            .map_err(|_| corrupt(store, "the observed stream time must be 8 bytes")),
        None => Ok(NO_STREAM_TIME),
    }
}

fn cutoff(stream_time: i64, retention_ms: i64) -> i64 {
    stream_time.saturating_sub(retention_ms)
}

/// Puts one version of `key` into the byte store `store` laid out as a versioned store keeping
/// `history_retention_ms` of history: the whole put algorithm (reject if too old, insert into the history,
/// expire what fell out of the retention). `value` `None` is a tombstone.
pub fn put_version(
    store: &mut dyn KeyValueStore,
    history_retention_ms: i64,
    key: &[u8],
    value: Option<&[u8]>,
    ts: i64,
) -> Result<VersionedPut, StoreError> {
    let stream_time = observed_stream_time(store)?;
    if ts < cutoff(stream_time, history_retention_ms) {
        return Ok(VersionedPut::NotPut);
    }
    let prefix = version_prefix(key)?;
    let next = after(store, &prefix, ts)?;
    let mut stored = Vec::with_capacity(1 + value.map_or(0, <[u8]>::len));
    match value {
        Some(v) => {
            stored.push(VALUE);
            stored.extend_from_slice(v);
        }
        None => stored.push(TOMBSTONE),
    }
    store.put(&with_ts(&prefix, ts), &stored)?;
    store.put(&index_key(ts, key)?, &[])?;
    if ts > stream_time {
        store.put(META_STREAM_TIME, &ts.to_be_bytes())?;
    }
    // Something can expire only when the cutoff moved or the new version is at or before it.
    let new_cutoff = cutoff(stream_time.max(ts), history_retention_ms);
    if ts > stream_time || ts <= new_cutoff {
        // Every index entry at or before the previous cutoff was handled by the put that moved the cutoff
        // there, so the walk starts at the previous cutoff: it never crosses the deleted entries below it (which
        // RocksDB would otherwise step over as tombstones on every put until a compaction).
        expire(store, cutoff(stream_time, history_retention_ms), new_cutoff)?;
    }
    Ok(match next {
        Some(n) => VersionedPut::ValidTo(n.ts),
        None => VersionedPut::Latest,
    })
}

/// Applies one changelog record of a versioned store during restoration: the same as [`put_version`] (a record
/// older than the retention at the time it is replayed is skipped, as Kafka's restore does).
pub fn restore_version(
    store: &mut dyn KeyValueStore,
    history_retention_ms: i64,
    key: &[u8],
    value: Option<&[u8]>,
    ts: i64,
) -> Result<(), StoreError> {
    put_version(store, history_retention_ms, key, value, ts).map(|_| ())
}

/// Deletes every version that no query can reach any more: for each index entry at a time `from <= e <= cutoff`
/// (none is left below `from`, the cutoff when this last ran), the
/// versions of its key older than `e` (a version exists at `e`, so they are all valid only until `e` or before;
/// by then only the one right before `e` is left), and the version at `e` itself when it is the key's latest and
/// a tombstone.
fn expire(store: &mut dyn KeyValueStore, from: i64, cutoff: i64) -> Result<usize, StoreError> {
    let mut lower = vec![TAG_INDEX];
    lower.extend_from_slice(&ts_bytes(from.min(cutoff)));
    let mut upper = vec![TAG_INDEX];
    upper.extend_from_slice(&ts_bytes(cutoff));
    let upper = prefix_upper_bound(&upper);
    let range = KeyRange {
        lower: Some(lower),
        upper,
        one_key_prefix: false,
    };
    let entries: Vec<Vec<u8>> = store
        .scan(&range, false)?
        .map(|e| e.map(|(k, _)| k))
        .collect::<Result<_, _>>()?;
    let mut deleted = 0;
    for index in entries {
        if index.len() < 13 {
            return Err(corrupt(store, "an expiry index entry is too short"));
        }
        let e = ts_from(&index[..9]);
        let mut prefix = vec![TAG_VERSION];
        prefix.extend_from_slice(&index[9..]);
        let older = KeyRange {
            lower: Some(prefix.clone()),
            upper: Some(with_ts(&prefix, e)),
            one_key_prefix: false,
        };
        // Index entries are handled in time order, so every older version of the key but the one right before
        // `e` went when the entry of that one was handled: one step back finds all there is to delete, without
        // walking over what was deleted before.
        let doomed: Vec<Vec<u8>> = store
            .scan(&older, true)?
            .take(1)
            .map(|e| e.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        if let Some(at) = at_or_before(store, &prefix, e)? {
            if at.ts == e && at.value.is_none() && after(store, &prefix, e)?.is_none() {
                store.delete(&with_ts(&prefix, e))?;
                deleted += 1;
            }
        }
        for k in doomed {
            store.delete(&k)?;
            deleted += 1;
        }
        store.delete(&index)?;
    }
    Ok(deleted)
}

/// A changelog record of a versioned store: plain key, plain value (`None`: a tombstone), version timestamp.
pub type ChangelogEntry<'a> = (&'a [u8], Option<&'a [u8]>, i64);

/// Reads a version entry of a versioned store's byte layout as the changelog record it stands for: the plain key,
/// the plain value (`None` for a tombstone) and the version's timestamp. `None` for the store's other entries
/// (the expiry index, the observed stream time), which are never logged: restoring rebuilds them.
pub fn decode_changelog_entry<'a>(
    stored_key: &'a [u8],
    stored_value: &'a [u8],
) -> Option<ChangelogEntry<'a>> {
    let (&tag, rest) = stored_key.split_first()?;
    if tag != TAG_VERSION || rest.len() < 12 {
        return None;
    }
    let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    if rest.len() != 4 + len + 8 {
        return None;
    }
    let key = &rest[4..4 + len];
    let ts = ts_from(rest);
    match stored_value.split_first()? {
        (&TOMBSTONE, _) => Some((key, None, ts)),
        (&VALUE, v) => Some((key, Some(v), ts)),
        _ => None,
    }
}

/// Whether a stored key of a versioned store's byte layout is the store's bookkeeping (the observed stream time or
/// the expiry index) rather than a version.
pub fn is_bookkeeping_entry(stored_key: &[u8]) -> bool {
    matches!(stored_key.first(), Some(&TAG_META) | Some(&TAG_INDEX))
}

/// A versioned key-value store of `K` to `V` over a shared byte store (Kafka's `VersionedKeyValueStore`); see the
/// [module documentation](self) for the semantics and the layout.
///
/// Cheap to clone; clones share the store.
pub struct VersionedKeyValueStore<K, V> {
    store: SharedKeyValueStore,
    name: Arc<str>,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    history_retention_ms: i64,
}

impl<K, V> Clone for VersionedKeyValueStore<K, V> {
    fn clone(&self) -> Self {
        VersionedKeyValueStore {
            store: self.store.clone(),
            name: self.name.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            history_retention_ms: self.history_retention_ms,
        }
    }
}

impl<K: 'static, V: 'static> VersionedKeyValueStore<K, V> {
    /// A versioned view of `store` keeping `history_retention_ms` of history (negative counts as 0).
    pub fn new(
        store: SharedKeyValueStore,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        history_retention_ms: i64,
    ) -> Self {
        Self::with_shared_serdes(
            store,
            Arc::new(key_serde),
            Arc::new(value_serde),
            history_retention_ms,
        )
    }

    /// Same, with already shared serdes.
    pub fn with_shared_serdes(
        store: SharedKeyValueStore,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
        history_retention_ms: i64,
    ) -> Self {
        let name: Arc<str> = match store.lock() {
            Ok(s) => Arc::from(s.name()),
            Err(p) => Arc::from(p.get_ref().name()),
        };
        VersionedKeyValueStore {
            store,
            name,
            key_serde,
            value_serde,
            history_retention_ms: history_retention_ms.max(0),
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long versions are kept after they stop being the latest, in ms of stream time.
    pub fn history_retention_ms(&self) -> i64 {
        self.history_retention_ms
    }

    /// The serde of the keys.
    pub fn key_serde(&self) -> &SharedSerde<K> {
        &self.key_serde
    }

    /// The serde of the values.
    pub fn value_serde(&self) -> &SharedSerde<V> {
        &self.value_serde
    }

    fn lock(&self) -> Result<MutexGuard<'_, Box<dyn KeyValueStore>>, StoreError> {
        self.store.lock().map_err(|_| StoreError::Poisoned {
            store: self.name.to_string(),
        })
    }

    fn serde_err(&self, source: crate::SerdeError) -> StoreError {
        StoreError::Serde {
            store: self.name.to_string(),
            source,
        }
    }

    fn encode_key(&self, key: &K) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.key_serde
            .serialize(key, &mut out)
            .map_err(|e| self.serde_err(e))?;
        Ok(out)
    }

    fn record(
        &self,
        version: Version,
        valid_to: Option<i64>,
    ) -> Result<Option<VersionedRecord<V>>, StoreError> {
        match version.value {
            Some(bytes) => Ok(Some(VersionedRecord {
                value: self
                    .value_serde
                    .deserialize(&bytes)
                    .map_err(|e| self.serde_err(e))?,
                timestamp: version.ts,
                valid_to,
            })),
            None => Ok(None),
        }
    }

    /// Puts a version of `key`: `value` (`None`: a tombstone) valid from `timestamp`. Returns
    /// [`VersionedPut::Latest`], [`VersionedPut::ValidTo`] when it went into the history, or
    /// [`VersionedPut::NotPut`] when `timestamp` is older than observed stream time minus the history retention.
    pub fn put(
        &mut self,
        key: &K,
        value: Option<&V>,
        timestamp: i64,
    ) -> Result<VersionedPut, StoreError> {
        let k = self.encode_key(key)?;
        let v = match value {
            Some(v) => {
                let mut out = Vec::new();
                self.value_serde
                    .serialize(v, &mut out)
                    .map_err(|e| self.serde_err(e))?;
                Some(out)
            }
            None => None,
        };
        let retention = self.history_retention_ms;
        let mut guard = self.lock()?;
        put_version(&mut **guard, retention, &k, v.as_deref(), timestamp)
    }

    /// Deletes `key` as of `timestamp` (puts a tombstone version) and returns the record that was valid at
    /// `timestamp` before. Nothing happens, and `None` is returned, when `timestamp` is older than the history
    /// retention allows (Kafka's `delete`).
    pub fn delete(
        &mut self,
        key: &K,
        timestamp: i64,
    ) -> Result<Option<VersionedRecord<V>>, StoreError> {
        let k = self.encode_key(key)?;
        let retention = self.history_retention_ms;
        let mut guard = self.lock()?;
        if timestamp < cutoff(observed_stream_time(&**guard)?, retention) {
            return Ok(None);
        }
        let prior = self.as_of(&**guard, &k, timestamp)?;
        put_version(&mut **guard, retention, &k, None, timestamp)?;
        Ok(prior)
    }

    /// The latest version of `key`; `None` when it has none or the latest is a tombstone.
    pub fn get(&self, key: &K) -> Result<Option<VersionedRecord<V>>, StoreError> {
        let k = self.encode_key(key)?;
        let guard = self.lock()?;
        match latest(&**guard, &version_prefix(&k)?)? {
            Some(v) => self.record(v, None),
            None => Ok(None),
        }
    }

    /// The version of `key` valid at `timestamp`: the one with the greatest timestamp `<= timestamp`. `None` when
    /// there is none, when it is a tombstone, or when `timestamp` is older than observed stream time minus the
    /// history retention (unless the latest version is valid at `timestamp`: it answers at any age).
    pub fn get_as_of(
        &self,
        key: &K,
        timestamp: i64,
    ) -> Result<Option<VersionedRecord<V>>, StoreError> {
        let k = self.encode_key(key)?;
        let guard = self.lock()?;
        self.as_of(&**guard, &k, timestamp)
    }

    fn as_of(
        &self,
        store: &dyn KeyValueStore,
        key: &[u8],
        timestamp: i64,
    ) -> Result<Option<VersionedRecord<V>>, StoreError> {
        let prefix = version_prefix(key)?;
        match latest(store, &prefix)? {
            None => return Ok(None),
            Some(l) if l.ts <= timestamp => return self.record(l, None),
            Some(_) => {}
        }
        if timestamp < cutoff(observed_stream_time(store)?, self.history_retention_ms) {
            return Ok(None);
        }
        let Some(v) = at_or_before(store, &prefix, timestamp)? else {
            return Ok(None);
        };
        let valid_to = after(store, &prefix, v.ts)?.map(|n| n.ts);
        self.record(v, valid_to)
    }

    /// The store's observed stream time: the highest timestamp put so far (-1 before the first put).
    pub fn observed_stream_time(&self) -> Result<i64, StoreError> {
        let guard = self.lock()?;
        observed_stream_time(&**guard)
    }

    /// The number of versions held (tombstones included): the history's size, for tests and metrics. Scans the
    /// versions.
    pub fn num_versions(&self) -> Result<usize, StoreError> {
        let guard = self.lock()?;
        let range = KeyRange::prefix(&[TAG_VERSION]);
        let mut n = 0;
        for e in guard.scan(&range, false)? {
            e?;
            n += 1;
        }
        Ok(n)
    }

    /// Flushes the store below.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.lock()?.flush()
    }

    /// The shared byte store underneath.
    pub fn bytes(&self) -> &SharedKeyValueStore {
        &self.store
    }

    #[cfg(test)]
    fn bytes_for_tests(&self) -> MutexGuard<'_, Box<dyn KeyValueStore>> {
        self.lock().unwrap()
    }
}

#[cfg(test)]
mod tests {
    //! Scenarios transcribed from Kafka's `RocksDBVersionedStoreTest` (history retention 300 000 ms, the grace
    //! period equal to it, segment interval 100 000 ms, base timestamp 10), each named after its Kafka method.
    use super::*;
    use crate::memory::InMemoryKeyValueStore;
    use crate::serde::Serdes;
    use crate::typed::share;

    const HISTORY_RETENTION: i64 = 300_000;
    const GRACE_PERIOD: i64 = HISTORY_RETENTION;
    const SEGMENT_INTERVAL: i64 = HISTORY_RETENTION / 3;
    const BASE: i64 = 10;
    const UNDEFINED: i64 = PUT_RETURN_CODE_VALID_TO_UNDEFINED;
    const NOT_PUT: i64 = PUT_RETURN_CODE_NOT_PUT;

    struct T {
        store: VersionedKeyValueStore<String, String>,
    }

    fn store_with(retention: i64) -> T {
        T {
            store: VersionedKeyValueStore::new(
                share(Box::new(InMemoryKeyValueStore::new("myversionedrocks"))),
                Serdes::string(),
                Serdes::string(),
                retention,
            ),
        }
    }

    fn store() -> T {
        store_with(HISTORY_RETENTION)
    }

    impl T {
        fn put(&mut self, k: &str, v: Option<&str>, ts: i64, expected_valid_to: i64) {
            let got = self
                .store
                .put(&k.to_string(), v.map(str::to_string).as_ref(), ts)
                .unwrap();
            assert_eq!(got.kafka_code(), expected_valid_to, "put {k}={v:?}@{ts}");
        }
        fn delete(&mut self, k: &str, ts: i64) -> Option<(String, i64)> {
            self.store
                .delete(&k.to_string(), ts)
                .unwrap()
                .map(|r| (r.value, r.timestamp))
        }
        fn get(&self, k: &str, value: &str, ts: i64) {
            let r = self
                .store
                .get(&k.to_string())
                .unwrap()
                .expect("a latest value");
            assert_eq!(
                (r.value.as_str(), r.timestamp, r.valid_to),
                (value, ts, None)
            );
        }
        fn get_null(&self, k: &str) {
            assert_eq!(self.store.get(&k.to_string()).unwrap(), None);
        }
        fn as_of(&self, k: &str, at: i64, value: &str, ts: i64, valid_to: i64) {
            let r = self
                .store
                .get_as_of(&k.to_string(), at)
                .unwrap()
                .unwrap_or_else(|| panic!("a version of {k} at {at}"));
            let valid_to = (valid_to != UNDEFINED).then_some(valid_to);
            assert_eq!(
                (r.value.as_str(), r.timestamp, r.valid_to),
                (value, ts, valid_to),
                "{k} as of {at}"
            );
        }
        fn as_of_null(&self, k: &str, at: i64) {
            assert_eq!(
                self.store.get_as_of(&k.to_string(), at).unwrap(),
                None,
                "{k} as of {at}"
            );
        }
    }

    #[test]
    fn should_put_latest() {
        let mut s = store();
        s.put("k", Some("v"), BASE, UNDEFINED);
        s.put("k", Some("v2"), BASE + 1, UNDEFINED);
        s.get("k", "v2", BASE + 1);
        s.as_of("k", BASE, "v", BASE, BASE + 1);
        s.as_of("k", BASE + 1, "v2", BASE + 1, UNDEFINED);
        s.as_of("k", BASE + 2, "v2", BASE + 1, UNDEFINED);
    }

    #[test]
    fn should_put_null_as_latest() {
        let mut s = store();
        s.put("k", None, BASE, UNDEFINED);
        s.put("k", None, BASE + 1, UNDEFINED);
        s.get_null("k");
        s.as_of_null("k", BASE);
        s.as_of_null("k", BASE + 1);
        s.as_of_null("k", BASE + 2);
    }

    #[test]
    fn should_put_older_with_non_null_latest() {
        let mut s = store();
        s.put("k", Some("v"), BASE, UNDEFINED);
        s.put("k", Some("v2"), BASE - 2, BASE);
        s.put("k", Some("v1"), BASE - 1, BASE);
        s.put("k", Some("v4"), BASE - 4, BASE - 2);
        s.get("k", "v", BASE);
        s.as_of("k", BASE, "v", BASE, UNDEFINED);
        s.as_of("k", BASE - 1, "v1", BASE - 1, BASE);
        s.as_of("k", BASE - 2, "v2", BASE - 2, BASE - 1);
        s.as_of("k", BASE - 3, "v4", BASE - 4, BASE - 2);
    }

    #[test]
    fn should_put_older_null_with_non_null_latest() {
        let mut s = store();
        s.put("k", Some("v"), BASE, UNDEFINED);
        s.put("k", None, BASE - 2, BASE);
        s.put("k", None, BASE - 1, BASE);
        s.put("k", None, BASE - 4, BASE - 2);
        s.put("k", Some("v5"), BASE - 5, BASE - 4);
        s.put("k", Some("v3"), BASE - 3, BASE - 2);
        s.put("k", None, BASE - 6, BASE - 5);
        s.get("k", "v", BASE);
        s.as_of("k", BASE, "v", BASE, UNDEFINED);
        s.as_of_null("k", BASE - 1);
        s.as_of_null("k", BASE - 2);
        s.as_of("k", BASE - 3, "v3", BASE - 3, BASE - 2);
        s.as_of_null("k", BASE - 4);
        s.as_of("k", BASE - 5, "v5", BASE - 5, BASE - 4);
        s.as_of_null("k", BASE - 6);
    }

    #[test]
    fn should_put_repeat_timestamp_as_latest() {
        let mut s = store();
        s.put("k", Some("to_be_replaced"), BASE, UNDEFINED);
        s.put("k", Some("b"), BASE, UNDEFINED);
        s.get("k", "b", BASE);
        s.as_of("k", BASE, "b", BASE, UNDEFINED);
        s.as_of_null("k", BASE - 1);
        s.put("k", None, BASE, UNDEFINED);
        s.get_null("k");
        s.as_of_null("k", BASE);
        s.as_of_null("k", BASE - 1);
        s.put("k", None, BASE, UNDEFINED);
        s.get_null("k");
        s.put("k", Some("b"), BASE, UNDEFINED);
        s.get("k", "b", BASE);
        s.as_of("k", BASE, "b", BASE, UNDEFINED);
        s.as_of_null("k", BASE - 1);
    }

    #[test]
    fn should_put_repeat_timestamps() {
        let si = SEGMENT_INTERVAL;
        let mut s = store();
        s.put("k", Some("to_be_replaced"), si + 20, UNDEFINED);
        s.put("k", None, si - 10, si + 20);
        s.put("k", Some("to_be_replaced"), si - 10, si + 20);
        s.put("k", None, si - 10, si + 20);
        s.put("k", Some("to_be_replaced"), si - 1, si + 20);
        s.put("k", Some("to_be_replaced"), si + 1, si + 20);
        s.put("k", None, si - 1, si + 1);
        s.put("k", None, si + 1, si + 20);
        s.put("k", None, si + 10, si + 20);
        s.put("k", None, si + 5, si + 10);
        s.put("k", Some("vp5"), si + 5, si + 10);
        s.put("k", Some("to_be_replaced"), si - 5, si - 1);
        s.put("k", Some("vn5"), si - 5, si - 1);
        s.put("k", None, si + 20, UNDEFINED);
        s.put("k", None, si + 20, UNDEFINED);
        s.put("k", Some("vn6"), si - 6, si - 5);
        s.get_null("k");
        s.as_of_null("k", si + 30);
        s.as_of_null("k", si + 15);
        s.as_of("k", si + 6, "vp5", si + 5, si + 10);
        s.as_of_null("k", si + 2);
        s.as_of_null("k", si);
        s.as_of_null("k", si - 1);
        s.as_of("k", si - 5, "vn5", si - 5, si - 1);
        s.as_of("k", si - 6, "vn6", si - 6, si - 5);
        s.as_of_null("k", si - 8);
    }

    #[test]
    fn should_delete() {
        let si = SEGMENT_INTERVAL;
        let mut s = store();
        s.put("k", Some("vp20"), si + 20, UNDEFINED);
        s.put("k", Some("vp10"), si + 10, si + 20);
        s.put("k", Some("vn10"), si - 10, si + 10);
        s.put("k", Some("vn2"), si - 2, si + 10);
        assert_eq!(s.delete("k", si - 5), Some(("vn10".into(), si - 10)));
        assert_eq!(s.delete("k", si + 10), Some(("vp10".into(), si + 10)));
        assert_eq!(s.delete("k", si + 10), None);
        assert_eq!(s.delete("k", si + 25), Some(("vp20".into(), si + 20)));
    }

    #[test]
    fn should_not_put_expired() {
        let mut s = store();
        s.put("k", Some("v"), HISTORY_RETENTION + 10, UNDEFINED);
        s.put(
            "k1",
            Some("v1"),
            HISTORY_RETENTION + 10 - GRACE_PERIOD,
            UNDEFINED,
        );
        s.get("k1", "v1", HISTORY_RETENTION + 10 - GRACE_PERIOD);
        s.put(
            "k2",
            Some("v2"),
            HISTORY_RETENTION + 9 - GRACE_PERIOD,
            NOT_PUT,
        );
        s.get_null("k2");
    }

    #[test]
    fn should_not_delete_expired() {
        let mut s = store();
        s.put("k1", Some("v1"), 1, UNDEFINED);
        s.put("k2", Some("v2"), 1, UNDEFINED);
        s.put("kother", Some("vother"), HISTORY_RETENTION + 10, UNDEFINED);
        assert_eq!(
            s.delete("k1", HISTORY_RETENTION + 10 - GRACE_PERIOD),
            Some(("v1".into(), 1))
        );
        s.get_null("k1");
        assert_eq!(s.delete("k2", HISTORY_RETENTION + 9 - GRACE_PERIOD), None);
        s.get("k2", "v2", 1);
    }

    #[test]
    fn should_not_get_expired() {
        let si = SEGMENT_INTERVAL;
        let mut s = store();
        s.put("k", Some("v_old"), 0, UNDEFINED);
        s.put("k", Some("v"), si - 10, UNDEFINED);
        s.as_of("k", si - 11, "v_old", 0, si - 10);
        s.put("ko", Some("vo"), HISTORY_RETENTION + si - 11, UNDEFINED);
        s.as_of("k", si - 11, "v_old", 0, si - 10);
        s.put("ko", Some("vo2"), HISTORY_RETENTION + si - 10, UNDEFINED);
        s.as_of_null("k", si - 11);
        // Beyond Kafka's assertions: the expired version is gone from the store, not only hidden.
        assert_eq!(s.store.num_versions().unwrap(), 3);
    }

    #[test]
    fn should_get_expired_if_latest_value() {
        let mut s = store();
        s.put("k", Some("v"), 1, UNDEFINED);
        s.put("ko", Some("vo_old"), 1, UNDEFINED);
        s.put("ko", Some("vo_new"), HISTORY_RETENTION + 12, UNDEFINED);
        s.as_of("k", 10, "v", 1, UNDEFINED);
        s.as_of_null("ko", 10);
    }

    #[test]
    fn should_distinguish_empty_and_null() {
        let si = SEGMENT_INTERVAL;
        let mut s = store();
        s.put("k", None, si + 20, UNDEFINED);
        s.put("k", None, si - 10, si + 20);
        s.put("k", None, si - 1, si + 20);
        s.put("k", None, si + 1, si + 20);
        s.put("k", None, si + 10, si + 20);
        s.put("k", Some(""), si + 5, si + 10);
        s.put("k", Some(""), si - 5, si - 1);
        s.put("k", Some(""), si - 6, si - 5);
        s.get_null("k");
        s.as_of_null("k", si + 30);
        s.as_of_null("k", si + 15);
        s.as_of("k", si + 6, "", si + 5, si + 10);
        s.as_of_null("k", si + 2);
        s.as_of_null("k", si);
        s.as_of_null("k", si - 1);
        s.as_of("k", si - 5, "", si - 5, si - 1);
        s.as_of("k", si - 6, "", si - 6, si - 5);
        s.as_of_null("k", si - 8);
    }

    #[test]
    fn should_allow_zero_history_retention() {
        let mut s = store_with(0);
        s.put("k", Some("v"), BASE, UNDEFINED);
        s.get("k", "v", BASE);
        s.as_of("k", BASE, "v", BASE, UNDEFINED);
        s.as_of("k", BASE + 1, "v", BASE, UNDEFINED);
        s.put("k", Some("updated"), BASE, UNDEFINED);
        s.get("k", "updated", BASE);
        s.put("k", Some("v2"), BASE + 2, UNDEFINED);
        s.get("k", "v2", BASE + 2);
        s.as_of("k", BASE + 2, "v2", BASE + 2, UNDEFINED);
        s.as_of_null("k", BASE + 1);
        s.delete("k", BASE + 3);
        s.get_null("k");
        s.put("k2", Some("v"), BASE + 2, NOT_PUT);
        s.get_null("k2");
    }

    /// Replays `records` as changelog records into a fresh store (Kafka's `restoreBatch`).
    fn restored(records: &[(&str, Option<&str>, i64)]) -> T {
        let s = store();
        {
            let mut guard = s.store.bytes_for_tests();
            for (k, v, ts) in records {
                restore_version(
                    &mut **guard,
                    HISTORY_RETENTION,
                    k.as_bytes(),
                    v.map(str::as_bytes),
                    *ts,
                )
                .unwrap();
            }
        }
        s
    }

    #[test]
    fn should_restore() {
        let si = SEGMENT_INTERVAL;
        let s = restored(&[
            ("k", Some("vp20"), si + 20),
            ("k", Some("vp10"), si + 10),
            ("k", Some("vn10"), si - 10),
            ("k", Some("vn2"), si - 2),
            ("k", Some("vn1"), si - 1),
            ("k", Some("vp1"), si + 1),
        ]);
        s.get("k", "vp20", si + 20);
        s.as_of("k", si + 30, "vp20", si + 20, UNDEFINED);
        s.as_of("k", si + 15, "vp10", si + 10, si + 20);
        s.as_of("k", si + 5, "vp1", si + 1, si + 10);
        s.as_of("k", si, "vn1", si - 1, si + 1);
        s.as_of("k", si - 1, "vn1", si - 1, si + 1);
        s.as_of("k", si - 2, "vn2", si - 2, si - 1);
        s.as_of("k", si - 5, "vn10", si - 10, si - 2);
    }

    #[test]
    fn should_restore_with_nulls() {
        let si = SEGMENT_INTERVAL;
        let s = restored(&[
            ("k", None, si + 20),
            ("k", None, si - 1),
            ("k", None, si + 1),
            ("k", None, si - 10),
            ("k", None, si + 10),
            ("k", Some("vp5"), si + 5),
            ("k", Some("vn5"), si - 5),
            ("k", Some("vn6"), si - 6),
        ]);
        s.get_null("k");
        s.as_of_null("k", si + 30);
        s.as_of_null("k", si + 15);
        s.as_of("k", si + 6, "vp5", si + 5, si + 10);
        s.as_of_null("k", si + 2);
        s.as_of_null("k", si);
        s.as_of_null("k", si - 1);
        s.as_of("k", si - 5, "vn5", si - 5, si - 1);
        s.as_of("k", si - 6, "vn6", si - 6, si - 5);
        s.as_of_null("k", si - 8);
    }

    #[test]
    fn should_not_restore_expired() {
        let s = restored(&[
            ("k", Some("v"), HISTORY_RETENTION + 10),
            ("k1", Some("v1"), HISTORY_RETENTION + 10 - GRACE_PERIOD),
            ("k2", Some("v2"), HISTORY_RETENTION + 9 - GRACE_PERIOD),
        ]);
        s.get("k", "v", HISTORY_RETENTION + 10);
        s.get("k1", "v1", HISTORY_RETENTION + 10 - GRACE_PERIOD);
        s.get_null("k2");
    }

    #[test]
    fn should_restore_even_if_record_would_be_expired_by_end_of_batch() {
        let s = restored(&[
            ("k2", Some("v2"), HISTORY_RETENTION - GRACE_PERIOD),
            ("k", Some("v"), HISTORY_RETENTION + 10),
        ]);
        s.get("k2", "v2", HISTORY_RETENTION - GRACE_PERIOD);
        s.get("k", "v", HISTORY_RETENTION + 10);
    }

    #[test]
    fn changelog_entries_carry_plain_key_value_and_version_time() {
        let mut s = store();
        s.put("k", Some("v"), 42, UNDEFINED);
        s.put("k", None, 50, UNDEFINED);
        let guard = s.store.bytes_for_tests();
        let mut logged = Vec::new();
        let mut bookkeeping = 0;
        for e in guard.all().unwrap() {
            let (k, v) = e.unwrap();
            match decode_changelog_entry(&k, &v) {
                Some((key, value, ts)) => {
                    logged.push((key.to_vec(), value.map(<[u8]>::to_vec), ts))
                }
                None => {
                    assert!(is_bookkeeping_entry(&k));
                    bookkeeping += 1;
                }
            }
        }
        assert_eq!(
            logged,
            vec![
                (b"k".to_vec(), Some(b"v".to_vec()), 42),
                (b"k".to_vec(), None, 50)
            ]
        );
        // Two index entries and the observed stream time.
        assert_eq!(bookkeeping, 3);
    }

    #[test]
    fn keys_that_prefix_each_other_do_not_mix() {
        let mut s = store();
        s.put("a", Some("1"), 10, UNDEFINED);
        s.put("ab", Some("2"), 20, UNDEFINED);
        s.put("a\u{0}", Some("3"), 30, UNDEFINED);
        s.get("a", "1", 10);
        s.get("ab", "2", 20);
        s.as_of_null("ab", 15);
        s.as_of("a", 35, "1", 10, UNDEFINED);
    }

    #[test]
    fn negative_timestamps_order_before_positive_ones() {
        let mut s = store();
        s.put("k", Some("neg"), -5, UNDEFINED);
        s.put("k", Some("pos"), 5, UNDEFINED);
        s.as_of("k", 0, "neg", -5, 5);
        s.as_of("k", 5, "pos", 5, UNDEFINED);
    }

    /// Out-of-order versions and a latest tombstone expire too: once the cutoff passes them, a key keeps only its
    /// latest value, and a key whose latest version is an expired tombstone keeps nothing.
    #[test]
    fn out_of_order_versions_and_latest_tombstones_expire() {
        let mut s = store_with(100);
        s.put("k", Some("v1"), 1_000, UNDEFINED);
        s.put("k", Some("v2"), 1_050, UNDEFINED);
        s.put("k", Some("v3"), 1_020, 1_050);
        s.put("k2", Some("w"), 1_010, UNDEFINED);
        s.put("k2", None, 1_060, UNDEFINED);
        assert_eq!(s.store.num_versions().unwrap(), 5);
        s.put("other", Some("x"), 1_200, UNDEFINED);
        // k: v2 only; k2: nothing; other: x.
        assert_eq!(s.store.num_versions().unwrap(), 2);
        s.get("k", "v2", 1_050);
        s.as_of("k", 1_100, "v2", 1_050, UNDEFINED);
        s.as_of_null("k", 1_030);
        s.get_null("k2");
        s.as_of_null("k2", 1_150);
    }

    /// Expiry visits only what expires: a store of many keys whose old versions expire keeps exactly the latest
    /// version per key, and the index holds one entry per version left.
    #[test]
    fn expiry_deletes_old_versions_and_their_index_entries() {
        let mut s = store_with(100);
        for round in 0..10 {
            for k in 0..50 {
                s.put(
                    &format!("k{k}"),
                    Some(&format!("v{round}")),
                    round * 1_000,
                    UNDEFINED,
                );
            }
        }
        // Stream time 9000, cutoff 8900: round 8 is still valid at 8900..9000, every older round is gone.
        assert_eq!(s.store.num_versions().unwrap(), 100);
        s.as_of("k7", 8_950, "v8", 8_000, 9_000);
        s.as_of_null("k7", 8_899);
        let guard = s.store.bytes_for_tests();
        let index = guard
            .scan(&KeyRange::prefix(&[TAG_INDEX]), false)
            .unwrap()
            .count();
        // The round-9 entries were written at 9000 > cutoff: still indexed.
        assert_eq!(index, 50);
    }
}
