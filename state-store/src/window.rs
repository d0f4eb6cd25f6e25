//! Window and session stores: key-value stores whose keys carry a time window.
//!
//! Both are views over an ordinary byte [`KeyValueStore`] stack (so the cache, the changelog and RocksDB or
//! memory underneath work unchanged), with keys laid out key-first so that every window of one key is one
//! contiguous range:
//!
//! | store | stored key | matches Kafka's |
//! |---|---|---|
//! | window | `key ++ start (i64, big-endian)` | `TimeWindowedSerializer` |
//! | window with duplicates | `key ++ start ++ sequence (u32, big-endian)` | window store `retainDuplicates` |
//! | session | `key ++ end ++ start` | `SessionWindowedSerializer` |
//!
//! The same layouts are the wire format of windowed keys written to topics, so a Java consumer using Kafka's
//! windowed deserializers reads them.
//!
//! Window starts and ends are times >= 0 (big-endian bytes of negative numbers would sort after positive ones);
//! writing a negative one is an error.
//!
//! Retention: [`WindowStore::expire`] and [`SessionStore::expire`] delete what has fallen out of the retention
//! period (deletions go through the whole stack, so the changelog gets tombstones), and reads never return
//! expired entries even before they are deleted. Over a [`SegmentedKeyValueStore`](crate::SegmentedKeyValueStore)
//! (how the DSL and the Processor API's builders open them) expiry works on whole time segments and costs what
//! expires; over any other store it scans the store.
//!
//! ```
//! use state_store::{share, InMemoryKeyValueStore, Serdes, WindowStore};
//! use std::sync::Arc;
//!
//! let bytes = share(Box::new(InMemoryKeyValueStore::new("clicks-per-minute")));
//! let mut store = WindowStore::new(bytes, Arc::new(Serdes::string()), Arc::new(Serdes::i64()), 60_000, 120_000);
//! store.put(&"/home".to_string(), 0, Some(&3)).unwrap();
//! store.put(&"/home".to_string(), 60_000, Some(&5)).unwrap();
//! let windows = store.fetch_range(&"/home".to_string(), 0, 60_000).unwrap();
//! assert_eq!(windows, vec![(0, 3), (60_000, 5)]);
//! ```

use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::error::{SerdeError, SerdeErrorKind, StoreError};
use crate::kv::{KeyRange, KeyValueStore};
use crate::serde::{Serde, SharedSerde};
use crate::typed::SharedKeyValueStore;

/// A time interval: `[start, end)` for time windows, `[start, end]` (both the first and the last record's
/// timestamp) for sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// The window's start, in ms since the epoch.
    pub start: i64,
    /// The window's end, in ms since the epoch.
    pub end: i64,
}

impl Window {
    /// The window `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        Window { start, end }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// A key together with the window its value belongs to (Kafka Streams' `Windowed<K>`): the key type of windowed
/// tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}

impl<K> Windowed<K> {
    /// `key` in `window`.
    pub fn new(key: K, window: Window) -> Self {
        Windowed { key, window }
    }
}

impl<K: fmt::Display> fmt::Display for Windowed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.key, self.window)
    }
}

fn layout_error(what: &'static str, message: &str) -> SerdeError {
    SerdeError::new(what, SerdeErrorKind::Other, message)
}

fn be_i64(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(b)
}

/// Serde of time-windowed keys: the key's bytes, then the window start as a big-endian i64 (and, for stores that
/// keep duplicates, a big-endian u32 sequence number, written as 0 and skipped on read). The end is the start
/// plus the window size, which is why the serde knows the size.
pub struct TimeWindowedSerde<K> {
    inner: SharedSerde<K>,
    size_ms: i64,
    suffix: usize,
}

impl<K> Clone for TimeWindowedSerde<K> {
    fn clone(&self) -> Self {
        TimeWindowedSerde {
            inner: self.inner.clone(),
            size_ms: self.size_ms,
            suffix: self.suffix,
        }
    }
}

impl<K> TimeWindowedSerde<K> {
    /// Windowed keys of windows `size_ms` long, with `inner` for the key.
    pub fn new(inner: SharedSerde<K>, size_ms: i64) -> Self {
        TimeWindowedSerde {
            inner,
            size_ms,
            suffix: 8,
        }
    }

    /// The layout of stores that keep duplicates (a sequence number after the start).
    pub fn with_sequence_numbers(mut self) -> Self {
        self.suffix = 12;
        self
    }
}

impl<K: 'static> Serde<Windowed<K>> for TimeWindowedSerde<K> {
    fn serialize(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.inner.serialize(&value.key, out)?;
        out.extend_from_slice(&value.window.start.to_be_bytes());
        if self.suffix == 12 {
            out.extend_from_slice(&0u32.to_be_bytes());
        }
        Ok(())
    }

    fn deserialize(&self, data: &[u8]) -> Result<Windowed<K>, SerdeError> {
        if data.len() < self.suffix {
            return Err(layout_error(
                "Windowed",
                "windowed key shorter than its window start",
            ));
        }
        let split = data.len() - self.suffix;
        let key = self.inner.deserialize(&data[..split])?;
        let start = be_i64(&data[split..]);
        Ok(Windowed::new(
            key,
            Window::new(start, start.saturating_add(self.size_ms)),
        ))
    }

    fn serialize_partition_key(
        &self,
        value: &Windowed<K>,
        out: &mut Vec<u8>,
    ) -> Result<bool, SerdeError> {
        self.inner.serialize(&value.key, out)?;
        Ok(true)
    }
}

/// Serde of session-windowed keys: the key's bytes, then the session's end and start as big-endian i64s.
pub struct SessionWindowedSerde<K> {
    inner: SharedSerde<K>,
}

impl<K> Clone for SessionWindowedSerde<K> {
    fn clone(&self) -> Self {
        SessionWindowedSerde {
            inner: self.inner.clone(),
        }
    }
}

impl<K> SessionWindowedSerde<K> {
    /// Session keys with `inner` for the key.
    pub fn new(inner: SharedSerde<K>) -> Self {
        SessionWindowedSerde { inner }
    }
}

impl<K: 'static> Serde<Windowed<K>> for SessionWindowedSerde<K> {
    fn serialize_partition_key(
        &self,
        value: &Windowed<K>,
        out: &mut Vec<u8>,
    ) -> Result<bool, SerdeError> {
        self.inner.serialize(&value.key, out)?;
        Ok(true)
    }

    fn serialize(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.inner.serialize(&value.key, out)?;
        out.extend_from_slice(&value.window.end.to_be_bytes());
        out.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, data: &[u8]) -> Result<Windowed<K>, SerdeError> {
        if data.len() < 16 {
            return Err(layout_error(
                "Windowed",
                "session key shorter than its end and start",
            ));
        }
        let split = data.len() - 16;
        let key = self.inner.deserialize(&data[..split])?;
        let end = be_i64(&data[split..]);
        let start = be_i64(&data[split + 8..]);
        Ok(Windowed::new(key, Window::new(start, end)))
    }
}

/// The byte-level machinery both stores share: a named, shared byte store plus encode buffers.
struct Base<K, V> {
    store: SharedKeyValueStore,
    name: Arc<str>,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl<K: 'static, V: 'static> Base<K, V> {
    fn new(
        store: SharedKeyValueStore,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> Self {
        let name: Arc<str> = match store.lock() {
            Ok(s) => Arc::from(s.name()),
            Err(p) => Arc::from(p.get_ref().name()),
        };
        Base {
            store,
            name,
            key_serde,
            value_serde,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Box<dyn KeyValueStore>>, StoreError> {
        self.store.lock().map_err(|_| StoreError::Poisoned {
            store: self.name.to_string(),
        })
    }

    fn serde_err(&self, source: SerdeError) -> StoreError {
        StoreError::Serde {
            store: self.name.to_string(),
            source,
        }
    }

    /// Encodes `key` into `key_buf` (cleared first); returns the key's length.
    fn encode_key(&mut self, key: &K) -> Result<usize, StoreError> {
        self.key_buf.clear();
        let r = self.key_serde.serialize(key, &mut self.key_buf);
        r.map_err(|e| self.serde_err(e))?;
        Ok(self.key_buf.len())
    }

    fn encode_value(&mut self, value: &V) -> Result<(), StoreError> {
        self.value_buf.clear();
        let r = self.value_serde.serialize(value, &mut self.value_buf);
        r.map_err(|e| self.serde_err(e))
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<K, StoreError> {
        self.key_serde
            .deserialize(bytes)
            .map_err(|e| self.serde_err(e))
    }

    fn decode_value(&self, bytes: &[u8]) -> Result<V, StoreError> {
        self.value_serde
            .deserialize(bytes)
            .map_err(|e| self.serde_err(e))
    }

    /// Deletes entries whose time (the 8 bytes `suffix` bytes from the key's end) is before `earliest`, through
    /// the whole stack (a cache forgets them, the changelog gets tombstones); returns how many.
    ///
    /// Over a [`SegmentedKeyValueStore`](crate::SegmentedKeyValueStore) only the segments lying wholly before
    /// `earliest` are read and then dropped, so the cost is that of what expires; entries of a segment that still
    /// holds live times stay until the whole segment expires (reads skip them). Over any other store the whole
    /// store is scanned.
    fn expire_before(&self, earliest: i64, suffix: usize) -> Result<usize, StoreError> {
        let mut guard = self.lock()?;
        let Some(mut doomed) = guard.expired_segment_keys(earliest)? else {
            let mut doomed = Vec::new();
            for entry in guard.scan(&KeyRange::all(), false)? {
                let (k, _) = entry?;
                if k.len() >= suffix && be_i64(&k[k.len() - suffix..]) < earliest {
                    doomed.push(k);
                }
            }
            for k in &doomed {
                guard.delete(k)?;
            }
            return Ok(doomed.len());
        };
        // A cache above the segments may write older entries into them while it makes room for the deletes;
        // those must be deleted (logged) too before the segments go, so list again until nothing is new.
        let mut seen = std::collections::HashSet::new();
        let mut count = 0;
        while !doomed.is_empty() {
            for k in &doomed {
                guard.delete(k)?;
            }
            count += doomed.len();
            let again = guard.expired_segment_keys(earliest)?.unwrap_or_default();
            if again.is_empty() {
                break;
            }
            seen.extend(std::mem::take(&mut doomed));
            doomed = again.into_iter().filter(|k| !seen.contains(k)).collect();
        }
        guard.drop_expired_segments(earliest)?;
        Ok(count)
    }

    /// Entries of `range` whose key is exactly `key_len` bytes of key plus `suffix` bytes of window, passing
    /// `keep(suffix bytes)`; decoded with `decode(key bytes, suffix bytes, value bytes)`.
    fn collect<T>(
        &self,
        range: &KeyRange,
        key_len: Option<usize>,
        suffix: usize,
        mut keep: impl FnMut(&[u8]) -> bool,
        mut decode: impl FnMut(&Self, &[u8], &[u8], &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let guard = self.lock()?;
        let mut out = Vec::new();
        for entry in guard.scan(range, false)? {
            let (k, v) = entry?;
            if k.len() < suffix || key_len.is_some_and(|n| n + suffix != k.len()) {
                continue;
            }
            let split = k.len() - suffix;
            if !keep(&k[split..]) {
                continue;
            }
            out.push(decode(self, &k[..split], &k[split..], &v)?);
        }
        Ok(out)
    }
}

/// Fixed windows per key (Kafka Streams' `WindowStore`): values under (key, window start), kept for a retention
/// period of stream time. With duplicates retained (stream-stream joins), several values can share a key and a
/// start.
pub struct WindowStore<K, V> {
    base: Base<K, V>,
    size_ms: i64,
    retention_ms: i64,
    duplicates: bool,
    next_seq: u32,
    observed_time: i64,
    /// When the store tracks time from its puts: the segment (of the segment interval) the retention bound was
    /// in at the last expiry; `None` when it does not track time.
    self_expiry: Option<i64>,
}

impl<K: 'static, V: 'static> WindowStore<K, V> {
    /// A window store over `store` for windows `size_ms` long, keeping windows whose start is within
    /// `retention_ms` of the newest time it has seen.
    pub fn new(
        store: SharedKeyValueStore,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
        size_ms: i64,
        retention_ms: i64,
    ) -> Self {
        WindowStore {
            base: Base::new(store, key_serde, value_serde),
            size_ms,
            retention_ms,
            duplicates: false,
            next_seq: 0,
            observed_time: i64::MIN,
            self_expiry: None,
        }
    }

    /// Keeps every value put under the same key and start instead of replacing it (a sequence number is added
    /// to each stored key); `put(.., None)` is then not a deletion and is ignored.
    pub fn retaining_duplicates(mut self) -> Self {
        self.duplicates = true;
        self
    }

    /// Makes the store keep its own stream time, as Kafka Streams' window stores do: the newest window start
    /// put, from which retention is counted; it then also expires what fell out of retention by itself, each
    /// time the retention bound enters a new segment interval (half the retention, at least a minute), which is
    /// when a whole segment can go. For stores a processor uses directly; the DSL's operators tell the store the
    /// task's stream time instead.
    pub fn tracking_time_from_puts(mut self) -> Self {
        self.self_expiry = Some(i64::MIN);
        self
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.base.name
    }

    /// With [`WindowStore::tracking_time_from_puts`]: advances the store's time to `time` and expires when due.
    fn track_put(&mut self, time: i64) -> Result<(), StoreError> {
        if let Some(last) = self.self_expiry {
            self.observe_stream_time(time);
            let bucket = self
                .earliest_live()
                .div_euclid(crate::segment_interval(self.retention_ms));
            if bucket > last {
                self.self_expiry = Some(bucket);
                self.expire(self.observed_time)?;
            }
        }
        Ok(())
    }

    fn suffix(&self) -> usize {
        if self.duplicates {
            12
        } else {
            8
        }
    }

    /// The oldest window start still retained.
    fn earliest_live(&self) -> i64 {
        if self.observed_time == i64::MIN {
            i64::MIN
        } else {
            self.observed_time
                .saturating_sub(self.retention_ms)
                .saturating_add(1)
        }
    }

    /// Lets the store know the task's stream time, so reads skip expired windows.
    pub fn observe_stream_time(&mut self, stream_time: i64) {
        self.observed_time = self.observed_time.max(stream_time);
    }

    /// Whether a window starting at `start` is still retained (a [`put`](WindowStore::put) of it is kept).
    pub fn retains(&self, start: i64) -> bool {
        start >= self.earliest_live()
    }

    /// Stores `value` for `key` in the window starting at `start`; `None` deletes it (without duplicates).
    /// Windows already beyond retention are not written.
    pub fn put(&mut self, key: &K, start: i64, value: Option<&V>) -> Result<(), StoreError> {
        if start < 0 {
            return Err(StoreError::NegativeWindowTime {
                store: self.base.name.to_string(),
                time: start,
            });
        }
        self.track_put(start)?;
        if start < self.earliest_live() {
            return Ok(());
        }
        self.base.encode_key(key)?;
        self.base.key_buf.extend_from_slice(&start.to_be_bytes());
        match (value, self.duplicates) {
            (Some(v), false) => {
                self.base.encode_value(v)?;
                let base = &self.base;
                base.lock()?.put(&base.key_buf, &base.value_buf)
            }
            (None, false) => {
                let base = &self.base;
                base.lock()?.delete(&base.key_buf).map(|_| ())
            }
            (Some(v), true) => {
                self.base.encode_value(v)?;
                let at = self.base.key_buf.len();
                let base = &self.base;
                let mut guard = base.lock()?;
                let mut key = base.key_buf.clone();
                // Sequence numbers restart with the task; probe past any left by an earlier run.
                loop {
                    key.truncate(at);
                    key.extend_from_slice(&self.next_seq.to_be_bytes());
                    self.next_seq = self.next_seq.wrapping_add(1);
                    if guard.put_if_absent(&key, &base.value_buf)?.is_none() {
                        return Ok(());
                    }
                }
            }
            (None, true) => Ok(()),
        }
    }

    /// The value of `key` in the window starting at `start` (without duplicates).
    pub fn fetch(&mut self, key: &K, start: i64) -> Result<Option<V>, StoreError> {
        if start < self.earliest_live() {
            return Ok(None);
        }
        self.base.encode_key(key)?;
        self.base.key_buf.extend_from_slice(&start.to_be_bytes());
        if self.duplicates {
            return Ok(self
                .fetch_range(key, start, start)?
                .into_iter()
                .next()
                .map(|(_, v)| v));
        }
        let base = &mut self.base;
        let guard = base.store.lock().map_err(|_| StoreError::Poisoned {
            store: base.name.to_string(),
        })?;
        let found = guard.get_into(&base.key_buf, &mut base.value_buf)?;
        drop(guard);
        if found {
            base.decode_value(&base.value_buf).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The windows of `key` starting in `[from, to]`, by start (values in insertion order within a start when
    /// duplicates are kept).
    pub fn fetch_range(
        &mut self,
        key: &K,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, V)>, StoreError> {
        let from = from.max(self.earliest_live());
        self.fetch_range_held(key, from, to)
    }

    /// [`WindowStore::fetch_range`], including windows past retention still physically held (not yet deleted
    /// by [`WindowStore::expire`]).
    pub fn fetch_range_held(
        &mut self,
        key: &K,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, V)>, StoreError> {
        let from = from.max(0);
        if from > to {
            return Ok(Vec::new());
        }
        let key_len = self.base.encode_key(key)?;
        // Both bounds are as long as a stored key of this record key, so a RocksDB store can check its bloom
        // filters for the record key (KeyRange::of_one_key).
        let mut lower = self.base.key_buf.clone();
        lower.extend_from_slice(&from.to_be_bytes());
        let mut upper = self.base.key_buf.clone();
        let range = if to < i64::MAX {
            upper.extend_from_slice(&(to + 1).to_be_bytes());
            if self.duplicates {
                lower.extend_from_slice(&0u32.to_be_bytes());
                upper.extend_from_slice(&0u32.to_be_bytes());
            }
            KeyRange::from_bounds(Bound::Included(&lower), Bound::Excluded(&upper)).of_one_key()
        } else {
            upper.extend_from_slice(&to.to_be_bytes());
            if self.duplicates {
                upper.extend_from_slice(&u32::MAX.to_be_bytes());
            }
            KeyRange::inclusive(Some(&lower), Some(&upper))
        };
        let prefix = &self.base.key_buf[..key_len];
        self.base.collect(
            &range,
            Some(key_len),
            self.suffix(),
            |_| true,
            |b, k, w, v| {
                debug_assert_eq!(k, prefix);
                Ok((be_i64(w), b.decode_value(v)?))
            },
        )
    }

    /// Every window starting in `[from, to]`, all keys, ordered by key bytes then start.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(Windowed<K>, V)>, StoreError> {
        let from = from.max(self.earliest_live());
        let size = self.size_ms;
        self.base.collect(
            &KeyRange::all(),
            None,
            self.suffix(),
            |w| {
                let s = be_i64(w);
                s >= from && s <= to
            },
            |b, k, w, v| {
                let start = be_i64(w);
                Ok((
                    Windowed::new(
                        b.decode_key(k)?,
                        Window::new(start, start.saturating_add(size)),
                    ),
                    b.decode_value(v)?,
                ))
            },
        )
    }

    /// Every window starting in `[from, to]` still physically held, even past retention (not yet deleted by
    /// [`WindowStore::expire`]), all keys, ordered by key bytes then start. Emitting a window's final result when
    /// it closes reads it here: with the default retention (size plus grace) a window falls out of retention the
    /// moment it closes.
    pub fn fetch_all_held(&self, from: i64, to: i64) -> Result<Vec<(Windowed<K>, V)>, StoreError> {
        let size = self.size_ms;
        self.base.collect(
            &KeyRange::all(),
            None,
            self.suffix(),
            |w| {
                let s = be_i64(w);
                s >= from && s <= to
            },
            |b, k, w, v| {
                let start = be_i64(w);
                Ok((
                    Windowed::new(
                        b.decode_key(k)?,
                        Window::new(start, start.saturating_add(size)),
                    ),
                    b.decode_value(v)?,
                ))
            },
        )
    }

    /// Every retained window.
    pub fn all(&self) -> Result<Vec<(Windowed<K>, V)>, StoreError> {
        self.fetch_all(i64::MIN, i64::MAX)
    }

    /// Deletes the windows that fell out of retention at `stream_time`; returns how many. Over a
    /// [`SegmentedKeyValueStore`](crate::SegmentedKeyValueStore) this reads and drops only the segments lying
    /// wholly out of retention (windows of a segment that is partly live stay until it expires whole; reads skip
    /// them); over any other store it scans the whole store. Deletions go through the whole stack: a cache
    /// forgets them and the changelog gets a tombstone for each.
    pub fn expire(&mut self, stream_time: i64) -> Result<usize, StoreError> {
        self.observe_stream_time(stream_time);
        self.base.expire_before(self.earliest_live(), self.suffix())
    }
}

/// Sessions per key (Kafka Streams' `SessionStore`): an aggregate per (key, session window), where a session is
/// the span from its first to its last record.
pub struct SessionStore<K, V> {
    base: Base<K, V>,
    retention_ms: i64,
    observed_time: i64,
    /// When the store tracks time from its puts: the segment (of the segment interval) the retention bound was
    /// in at the last expiry; `None` when it does not track time.
    self_expiry: Option<i64>,
}

impl<K: 'static, V: 'static> SessionStore<K, V> {
    /// A session store over `store`, keeping sessions that ended within `retention_ms` of the newest time seen.
    pub fn new(
        store: SharedKeyValueStore,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
        retention_ms: i64,
    ) -> Self {
        SessionStore {
            base: Base::new(store, key_serde, value_serde),
            retention_ms,
            observed_time: i64::MIN,
            self_expiry: None,
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.base.name
    }

    /// Makes the store keep its own stream time, as Kafka Streams' session stores do: the newest session end
    /// put, from which retention is counted; it then also expires what fell out of retention by itself, each
    /// time the retention bound enters a new segment interval (half the retention, at least a minute). For
    /// stores a processor uses directly; the DSL's operators tell the store the task's stream time instead.
    pub fn tracking_time_from_puts(mut self) -> Self {
        self.self_expiry = Some(i64::MIN);
        self
    }

    /// Sessions ending at or after this are live: with a retention of gap + grace, a session that ended exactly
    /// that long ago can still be merged with by a record `gap` after it arriving `grace` late.
    fn earliest_live_end(&self) -> i64 {
        if self.observed_time == i64::MIN {
            i64::MIN
        } else {
            self.observed_time.saturating_sub(self.retention_ms)
        }
    }

    /// Lets the store know the task's stream time, so reads skip expired sessions.
    pub fn observe_stream_time(&mut self, stream_time: i64) {
        self.observed_time = self.observed_time.max(stream_time);
    }

    fn encode_session(&mut self, key: &K, window: Window) -> Result<(), StoreError> {
        self.base.encode_key(key)?;
        self.base
            .key_buf
            .extend_from_slice(&window.end.to_be_bytes());
        self.base
            .key_buf
            .extend_from_slice(&window.start.to_be_bytes());
        Ok(())
    }

    /// Whether session `window` is still retained (a [`put`](SessionStore::put) of it is kept).
    pub fn retains(&self, window: Window) -> bool {
        window.end >= self.earliest_live_end()
    }

    /// Stores the aggregate of `key`'s session `window`.
    pub fn put(&mut self, key: &K, window: Window, value: &V) -> Result<(), StoreError> {
        if window.start < 0 {
            return Err(StoreError::NegativeWindowTime {
                store: self.base.name.to_string(),
                time: window.start,
            });
        }
        if let Some(last) = self.self_expiry {
            self.observe_stream_time(window.end);
            let bucket = self
                .earliest_live_end()
                .div_euclid(crate::segment_interval(self.retention_ms));
            if bucket > last {
                self.self_expiry = Some(bucket);
                self.expire(self.observed_time)?;
            }
        }
        if window.end < self.earliest_live_end() {
            return Ok(());
        }
        self.encode_session(key, window)?;
        self.base.encode_value(value)?;
        let base = &self.base;
        base.lock()?.put(&base.key_buf, &base.value_buf)
    }

    /// Removes `key`'s session `window`.
    pub fn remove(&mut self, key: &K, window: Window) -> Result<(), StoreError> {
        self.encode_session(key, window)?;
        let base = &self.base;
        base.lock()?.delete(&base.key_buf).map(|_| ())
    }

    /// The aggregate of `key`'s session `window`, if stored.
    pub fn fetch_session(&mut self, key: &K, window: Window) -> Result<Option<V>, StoreError> {
        if window.end < self.earliest_live_end() {
            return Ok(None);
        }
        self.encode_session(key, window)?;
        let base = &mut self.base;
        let guard = base.store.lock().map_err(|_| StoreError::Poisoned {
            store: base.name.to_string(),
        })?;
        let found = guard.get_into(&base.key_buf, &mut base.value_buf)?;
        drop(guard);
        if found {
            base.decode_value(&base.value_buf).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `key`'s sessions that end at or after `earliest_end` and start at or before `latest_start`: the sessions a
    /// record at `t` with inactivity gap `g` may merge with are those of `find_sessions(key, t - g, t + g)`.
    pub fn find_sessions(
        &mut self,
        key: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<(Window, V)>, StoreError> {
        let earliest_end = earliest_end.max(self.earliest_live_end()).max(0);
        let key_len = self.base.encode_key(key)?;
        // Both bounds are as long as a stored key of this record key (see fetch_range_held); no stored time is
        // negative, so no stored key reaches 16 bytes of 0xff.
        let mut lower = self.base.key_buf.clone();
        lower.extend_from_slice(&earliest_end.to_be_bytes());
        lower.extend_from_slice(&[0; 8]);
        let mut upper = self.base.key_buf.clone();
        upper.extend_from_slice(&[0xff; 16]);
        let range =
            KeyRange::from_bounds(Bound::Included(&lower), Bound::Excluded(&upper)).of_one_key();
        self.base.collect(
            &range,
            Some(key_len),
            16,
            |w| be_i64(&w[8..]) <= latest_start && be_i64(w) >= earliest_end,
            |b, _, w, v| Ok((Window::new(be_i64(&w[8..]), be_i64(w)), b.decode_value(v)?)),
        )
    }

    /// Every retained session of every key, ordered by key bytes then end.
    pub fn all(&self) -> Result<Vec<(Windowed<K>, V)>, StoreError> {
        let earliest = self.earliest_live_end();
        self.base.collect(
            &KeyRange::all(),
            None,
            16,
            |w| be_i64(w) >= earliest,
            |b, k, w, v| {
                Ok((
                    Windowed::new(b.decode_key(k)?, Window::new(be_i64(&w[8..]), be_i64(w))),
                    b.decode_value(v)?,
                ))
            },
        )
    }

    /// Deletes the sessions that fell out of retention at `stream_time`; returns how many. As
    /// [`WindowStore::expire`]: over a segmented store, only whole expired segments are read and dropped.
    pub fn expire(&mut self, stream_time: i64) -> Result<usize, StoreError> {
        self.observe_stream_time(stream_time);
        self.base.expire_before(self.earliest_live_end(), 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::InMemoryKeyValueStore;
    use crate::serde::Serdes;
    use crate::typed::share;
    use std::collections::BTreeMap;

    fn window_store(dups: bool) -> WindowStore<String, i64> {
        let s = WindowStore::new(
            share(Box::new(InMemoryKeyValueStore::new("w"))),
            Arc::new(Serdes::string()),
            Arc::new(Serdes::i64()),
            10,
            100,
        );
        if dups {
            s.retaining_duplicates()
        } else {
            s
        }
    }

    #[test]
    fn keys_that_prefix_each_other_stay_apart() {
        let mut s = window_store(false);
        s.put(&"a".into(), 0, Some(&1)).unwrap();
        s.put(&"ab".into(), 0, Some(&2)).unwrap();
        s.put(&"a\0".into(), 0, Some(&3)).unwrap();
        assert_eq!(s.fetch_range(&"a".into(), 0, 50).unwrap(), vec![(0, 1)]);
        assert_eq!(s.fetch(&"ab".into(), 0).unwrap(), Some(2));
        assert_eq!(s.fetch_all(0, 0).unwrap().len(), 3);
    }

    #[test]
    fn duplicates_are_kept_in_order() {
        let mut s = window_store(true);
        for v in [5, 6, 7] {
            s.put(&"k".into(), 20, Some(&v)).unwrap();
        }
        s.put(&"k".into(), 30, Some(&8)).unwrap();
        let got = s.fetch_range(&"k".into(), 0, 25).unwrap();
        assert_eq!(got, vec![(20, 5), (20, 6), (20, 7)]);
        // A new store over the same bytes (a restarted task) does not overwrite earlier entries.
        let bytes = s.base.store.clone();
        let mut again = WindowStore::new(
            bytes,
            Arc::new(Serdes::string()),
            Arc::new(Serdes::i64()),
            10,
            100,
        )
        .retaining_duplicates();
        again.put(&"k".into(), 20, Some(&9)).unwrap();
        assert_eq!(again.fetch_range(&"k".into(), 20, 20).unwrap().len(), 4);
    }

    #[test]
    fn retention_hides_then_deletes_old_windows() {
        let mut s = window_store(false);
        for start in [0, 50, 100, 150] {
            s.put(&"k".into(), start, Some(&start)).unwrap();
        }
        s.observe_stream_time(160);
        // earliest live start = 160 - 100 + 1 = 61
        assert_eq!(
            s.fetch_range(&"k".into(), 0, 200).unwrap(),
            vec![(100, 100), (150, 150)]
        );
        assert_eq!(s.fetch(&"k".into(), 50).unwrap(), None);
        assert_eq!(s.expire(160).unwrap(), 2);
        assert_eq!(s.all().unwrap().len(), 2);
        // Writes into expired windows are ignored.
        s.put(&"k".into(), 10, Some(&1)).unwrap();
        assert_eq!(s.all().unwrap().len(), 2);
    }

    #[test]
    fn window_store_matches_a_map() {
        let mut s = window_store(false);
        let mut reference = BTreeMap::new();
        let mut x: u64 = 7;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("k{}", (x >> 33) % 7);
            let start = ((x >> 20) % 50) as i64 * 10;
            if (x >> 50).is_multiple_of(5) {
                s.put(&key, start, None).unwrap();
                reference.remove(&(key, start));
            } else {
                let v = (x >> 40) as i64 % 1000;
                s.put(&key, start, Some(&v)).unwrap();
                reference.insert((key, start), v);
            }
        }
        for k in 0..7 {
            let key = format!("k{k}");
            let expected: Vec<(i64, i64)> = reference
                .iter()
                .filter(|((rk, s), _)| *rk == key && (100..=300).contains(s))
                .map(|((_, s), v)| (*s, *v))
                .collect();
            assert_eq!(s.fetch_range(&key, 100, 300).unwrap(), expected);
        }
        assert_eq!(s.all().unwrap().len(), reference.len());
    }

    #[test]
    fn sessions_are_found_by_overlap() {
        let mut s = SessionStore::new(
            share(Box::new(InMemoryKeyValueStore::new("s"))),
            Arc::new(Serdes::string()),
            Arc::new(Serdes::i64()),
            1000,
        );
        let k = "user".to_string();
        s.put(&k, Window::new(0, 10), &2).unwrap();
        s.put(&k, Window::new(30, 40), &3).unwrap();
        s.put(&k, Window::new(100, 100), &1).unwrap();
        s.put(&"user2".into(), Window::new(0, 50), &9).unwrap();
        // A record at 20 with gap 10 touches sessions ending >= 10 and starting <= 30.
        let found = s.find_sessions(&k, 10, 30).unwrap();
        assert_eq!(
            found,
            vec![(Window::new(0, 10), 2), (Window::new(30, 40), 3)]
        );
        s.remove(&k, Window::new(0, 10)).unwrap();
        assert_eq!(s.find_sessions(&k, 0, 1000).unwrap().len(), 2);
        assert_eq!(s.all().unwrap().len(), 3);
        assert_eq!(s.fetch_session(&k, Window::new(30, 40)).unwrap(), Some(3));
        // Retention 1000 at 1045: sessions ending before 45 go, i.e. (30, 40).
        assert_eq!(s.expire(1045).unwrap(), 1);
        assert_eq!(s.all().unwrap().len(), 2);
    }

    #[test]
    fn windowed_serdes_round_trip() {
        let t = TimeWindowedSerde::new(Arc::new(Serdes::string()), 60);
        let w = Windowed::new("k".to_string(), Window::new(120, 180));
        let mut buf = Vec::new();
        t.serialize(&w, &mut buf).unwrap();
        assert_eq!(buf.len(), 1 + 8);
        assert_eq!(t.deserialize(&buf).unwrap(), w);
        assert!(t.deserialize(&[1, 2]).is_err());
        let s = SessionWindowedSerde::new(Arc::new(Serdes::string()));
        let w = Windowed::new("k".to_string(), Window::new(5, 9));
        buf.clear();
        s.serialize(&w, &mut buf).unwrap();
        assert_eq!(&buf[1..9], &9i64.to_be_bytes());
        assert_eq!(s.deserialize(&buf).unwrap(), w);
    }
}
