//! `suppress`: a time-ordered buffer holding the latest update of each key, emitted once stream time passes the
//! key's buffer time plus a wait (Kafka Streams' `KTableSuppressProcessor` over an
//! `InMemoryTimeOrderedKeyValueChangeBuffer`).
//!
//! The buffer time of a key is fixed when the key is first buffered: the record's timestamp
//! (`until_time_limit`) or its window's end (`until_window_closes`); later updates of the key replace the
//! buffered update (new value, old value, timestamp, headers) but keep the buffer time and the value the key had
//! before it was first buffered. Stream time here is the highest timestamp of the records this node has seen.
//! When the buffer outgrows its bounds it either emits its oldest entries early or fails the task.
//!
//! The buffer is a changelogged key-value store (so updates held at a crash are not lost), keyed by the buffer
//! time (big-endian, sign bit flipped, so keys sort by time) followed by the key's bytes: the store's key order is
//! the eviction order. The in-memory index (key bytes to buffer time and size) is rebuilt from the store on
//! `init`, after restoration.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use state_store::{KeyRange, SharedKeyValueStore, SharedSerde, StoreError};
use streams_core::{Data, Headers, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::stream_aggregate::missing_store;

/// Where the buffer time of a key comes from.
pub(crate) enum TimeDefinition<K> {
    /// The timestamp of the record that first buffered the key (`until_time_limit`).
    Record,
    /// A time computed from the key: a window's end (`until_window_closes`).
    Key(fn(&K) -> i64),
}

/// One decoded buffer entry.
struct Entry {
    timestamp: i64,
    topic_len: u32,
    new: Option<Vec<u8>>,
    old: Option<Vec<u8>>,
    /// `None`: the prior value is the old value of the same (first) update.
    prior: Option<Option<Vec<u8>>>,
    headers: Headers,
}

impl Entry {
    /// Kafka's `BufferValue.residentMemorySizeEstimate` plus the buffer time and key, as
    /// `InMemoryTimeOrderedKeyValueChangeBuffer.computeRecordSize` counts them.
    fn size(&self, key_len: usize) -> u64 {
        let len = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, Vec::len) as u64;
        let prior = match &self.prior {
            None => 0, // counted once, as the old value
            Some(p) => len(p),
        };
        let headers: u64 = self
            .headers
            .iter()
            .map(|h| (h.key.chars().count() + h.value.as_ref().map_or(0, Vec::len)) as u64)
            .sum();
        8 + key_len as u64
            + prior
            + len(&self.old)
            + len(&self.new)
            + 8
            + 8
            + 4
            + u64::from(self.topic_len)
            + headers
    }

    fn encode(&self, out: &mut Vec<u8>) {
        fn opt(out: &mut Vec<u8>, v: &Option<Vec<u8>>) {
            match v {
                None => out.push(0),
                Some(b) => {
                    out.push(1);
                    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.topic_len.to_be_bytes());
        opt(out, &self.new);
        opt(out, &self.old);
        match &self.prior {
            None => out.push(2),
            Some(p) => opt(out, p),
        }
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for h in &self.headers {
            out.extend_from_slice(&(h.key.len() as u32).to_be_bytes());
            out.extend_from_slice(h.key.as_bytes());
            opt(out, &h.value);
        }
    }

    fn decode(store: &str, bytes: &[u8]) -> Result<Entry, StreamsError> {
        let mut r = Reader {
            store,
            bytes,
            at: 0,
        };
        let timestamp = i64::from_be_bytes(r.take_array()?);
        let topic_len = u32::from_be_bytes(r.take_array()?);
        let new = r.opt()?;
        let old = r.opt()?;
        let prior = match r.peek()? {
            2 => {
                r.at += 1;
                None
            }
            _ => Some(r.opt()?),
        };
        let count = u32::from_be_bytes(r.take_array()?);
        let mut headers = Headers::new();
        for _ in 0..count {
            let klen = u32::from_be_bytes(r.take_array()?) as usize;
            let key = String::from_utf8_lossy(r.take(klen)?).into_owned();
            let value = r.opt()?;
            headers.add(key, value);
        }
        Ok(Entry {
            timestamp,
            topic_len,
            new,
            old,
            prior,
            headers,
        })
    }
}

struct Reader<'a> {
    store: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StreamsError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(corrupt(self.store, self.bytes.len(), self.at + n));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], StreamsError> {
        let s = self.take(N)?;
        let mut a = [0; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn peek(&self) -> Result<u8, StreamsError> {
        self.bytes
            .get(self.at)
            .copied()
            .ok_or_else(|| corrupt(self.store, self.bytes.len(), self.at + 1))
    }
    fn opt(&mut self) -> Result<Option<Vec<u8>>, StreamsError> {
        match self.take(1)?[0] {
            0 => Ok(None),
            _ => {
                let len = u32::from_be_bytes(self.take_array()?) as usize;
                Ok(Some(self.take(len)?.to_vec()))
            }
        }
    }
}

fn corrupt(store: &str, actual: usize, expected: usize) -> StreamsError {
    StreamsError::from(StoreError::Serde {
        store: store.to_string(),
        source: state_store::SerdeError::new(
            "suppression buffer entry",
            state_store::SerdeErrorKind::InvalidLength { expected, actual },
            format!(
                "an entry of {actual} bytes where the layout needs at least {expected}; the buffer store (or its \
                 changelog) holds data this operator did not write"
            ),
        ),
    })
}

/// The store key of a buffered key: the buffer time, sign bit flipped (so negative times sort first), big-endian,
/// then the key's bytes.
fn store_key(time: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&((time ^ i64::MIN) as u64).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn split_store_key(store: &str, k: &[u8]) -> Result<(i64, Vec<u8>), StreamsError> {
    let t = k
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .ok_or_else(|| corrupt(store, k.len(), 8))?;
    Ok(((u64::from_be_bytes(t) as i64) ^ i64::MIN, k[8..].to_vec()))
}

pub(crate) struct SuppressProcessor<K, V> {
    pub store_name: Arc<str>,
    pub key_serde: SharedSerde<K>,
    pub value_serde: SharedSerde<V>,
    /// How long after its buffer time a key is emitted (the time limit, or the window's grace).
    pub wait_ms: i64,
    pub time: TimeDefinition<K>,
    pub max_records: Option<u64>,
    pub max_bytes: Option<u64>,
    pub shut_down_when_full: bool,
    /// Only final results of windows may drop deletions (Kafka's `safeToDropTombstones`).
    pub drop_tombstones: bool,
    pub store: Option<SharedKeyValueStore>,
    pub observed: i64,
    /// Key bytes -> (buffer time, size estimate).
    pub index: HashMap<Vec<u8>, (i64, u64)>,
    /// (buffer time, key bytes): the eviction order.
    pub order: BTreeSet<(i64, Vec<u8>)>,
    pub bytes: u64,
}

impl<K, V> SuppressProcessor<K, V> {
    pub(crate) fn new(
        store_name: Arc<str>,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
        wait_ms: i64,
        time: TimeDefinition<K>,
        bounds: (Option<u64>, Option<u64>, bool),
        drop_tombstones: bool,
    ) -> Self {
        SuppressProcessor {
            store_name,
            key_serde,
            value_serde,
            wait_ms,
            time,
            max_records: bounds.0,
            max_bytes: bounds.1,
            shut_down_when_full: bounds.2,
            drop_tombstones,
            store: None,
            observed: i64::MIN,
            index: HashMap::new(),
            order: BTreeSet::new(),
            bytes: 0,
        }
    }
}

fn poisoned(store: &str) -> StreamsError {
    StreamsError::from(StoreError::Poisoned {
        store: store.to_string(),
    })
}

impl<K: Data, V: Data> SuppressProcessor<K, V> {
    fn serde_error(&self, e: state_store::SerdeError) -> StreamsError {
        StreamsError::from(StoreError::Serde {
            store: self.store_name.to_string(),
            source: e,
        })
    }

    fn shared_store(&self) -> Result<SharedKeyValueStore, StreamsError> {
        self.store.clone().ok_or_else(|| missing_store("suppress"))
    }

    fn over_capacity(&self) -> bool {
        self.max_records
            .is_some_and(|m| self.index.len() as u64 > m)
            || self.max_bytes.is_some_and(|m| self.bytes > m)
    }

    /// Removes the oldest entry and forwards it (unless it is a deletion of a final result).
    fn evict_oldest(
        &mut self,
        ctx: &mut ProcessorContext<K, Change<V>>,
    ) -> Result<(), StreamsError> {
        let Some((time, kb)) = self.order.pop_first() else {
            return Ok(());
        };
        let store = self.shared_store()?;
        let sk = store_key(time, &kb);
        let raw = store
            .lock()
            .map_err(|_| poisoned(&self.store_name))?
            .delete(&sk)
            .map_err(StreamsError::from)?;
        if let Some((_, size)) = self.index.remove(&kb) {
            self.bytes = self.bytes.saturating_sub(size);
        }
        let Some(raw) = raw else {
            return Ok(());
        };
        let entry = Entry::decode(&self.store_name, &raw)?;
        if entry.new.is_none() && self.drop_tombstones {
            return Ok(());
        }
        let key = self
            .key_serde
            .deserialize(&kb)
            .map_err(|e| self.serde_error(e))?;
        let de = |b: &Option<Vec<u8>>| -> Result<Option<V>, StreamsError> {
            b.as_deref()
                .map(|b| self.value_serde.deserialize(b))
                .transpose()
                .map_err(|e| self.serde_error(e))
        };
        let (new, old) = (de(&entry.new)?, de(&entry.old)?);
        // Forwarded with the buffered record's timestamp and headers (Kafka's `KTableSuppressProcessor.emit`).
        ctx.forward(Record {
            key,
            value: Change::new(new, old),
            timestamp: entry.timestamp,
            headers: entry.headers,
        })
    }

    fn enforce_constraints(
        &mut self,
        ctx: &mut ProcessorContext<K, Change<V>>,
    ) -> Result<(), StreamsError> {
        let expiry = self.observed.saturating_sub(self.wait_ms);
        while self.order.first().is_some_and(|(t, _)| *t <= expiry) {
            self.evict_oldest(ctx)?;
        }
        if self.over_capacity() {
            if self.shut_down_when_full {
                let bound =
                    |m: Option<u64>| m.map_or_else(|| "unbounded".to_string(), |m| m.to_string());
                return Err(StreamsError::Processor {
                    node: ctx.name().to_string(),
                    message: format!(
                        "suppression '{}' buffer exceeded its max capacity (BufferConfig::shut_down_when_full): \
                         currently [{}/{}] records and [{}/{}] bytes",
                        ctx.name(),
                        self.index.len(),
                        bound(self.max_records),
                        self.bytes,
                        bound(self.max_bytes),
                    ),
                });
            }
            while self.over_capacity() && !self.order.is_empty() {
                self.evict_oldest(ctx)?;
            }
        }
        Ok(())
    }
}

impl<K: Data, V: Data> Processor<K, Change<V>> for SuppressProcessor<K, V> {
    type KOut = K;
    type VOut = Change<V>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        let typed = ctx.key_value_store::<Vec<u8>, Vec<u8>>(&self.store_name)?;
        let store = typed.bytes().clone();
        // A restored buffer: rebuild the index, the eviction order and the size from the store.
        self.index.clear();
        self.order.clear();
        self.bytes = 0;
        {
            let guard = store.lock().map_err(|_| poisoned(&self.store_name))?;
            for e in guard
                .scan(&KeyRange::all(), false)
                .map_err(StreamsError::from)?
            {
                let (k, v) = e.map_err(StreamsError::from)?;
                let (time, kb) = split_store_key(&self.store_name, &k)?;
                let size = Entry::decode(&self.store_name, &v)?.size(kb.len());
                self.bytes += size;
                self.index.insert(kb.clone(), (time, size));
                self.order.insert((time, kb));
            }
        }
        self.store = Some(store);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K, Change<V>>,
    ) -> Result<(), StreamsError> {
        let store = self.shared_store()?;
        self.observed = self.observed.max(r.timestamp);
        let mut kb = Vec::new();
        self.key_serde
            .serialize(&r.key, &mut kb)
            .map_err(|e| self.serde_error(e))?;
        let ser = |v: &Option<V>| -> Result<Option<Vec<u8>>, StreamsError> {
            v.as_ref()
                .map(|v| {
                    let mut out = Vec::new();
                    self.value_serde.serialize(v, &mut out).map(|()| out)
                })
                .transpose()
                .map_err(|e| self.serde_error(e))
        };
        let (new, old) = (ser(&r.value.new)?, ser(&r.value.old)?);
        let topic_len = ctx
            .record_metadata()
            .map_or(0, |m| m.topic.chars().count() as u32);
        let mut guard = store.lock().map_err(|_| poisoned(&self.store_name))?;
        // A key already buffered keeps its place (buffer time) and the value it had before it was buffered.
        let (time, prior, prev_size) = match self.index.get(&kb) {
            Some(&(time, size)) => {
                let raw = guard
                    .get(&store_key(time, &kb))
                    .map_err(StreamsError::from)?
                    .ok_or_else(|| corrupt(&self.store_name, 0, 1))?;
                let prev = Entry::decode(&self.store_name, &raw)?;
                let prior = match prev.prior {
                    None => prev.old,
                    Some(p) => p,
                };
                (time, Some(prior), size)
            }
            None => {
                let time = match &self.time {
                    TimeDefinition::Record => r.timestamp,
                    TimeDefinition::Key(f) => f(&r.key),
                };
                (time, None, 0)
            }
        };
        let entry = Entry {
            timestamp: r.timestamp,
            topic_len,
            new,
            old,
            prior,
            headers: r.headers,
        };
        let size = entry.size(kb.len());
        let mut value = Vec::new();
        entry.encode(&mut value);
        guard
            .put(&store_key(time, &kb), &value)
            .map_err(StreamsError::from)?;
        drop(guard);
        self.bytes = self.bytes - prev_size + size;
        self.order.insert((time, kb.clone()));
        self.index.insert(kb, (time, size));
        self.enforce_constraints(ctx)
    }
}
