//! The emission side of Kafka Streams' record cache: an operator whose store is cached forwards a key's latest
//! update only when the cache flushes (at a commit) or evicts it (when over its size), with the value forwarded
//! last as the old value.
//!
//! Kafka keeps the pending update in the store's cache (`CachingKeyValueStore`, `NamedCache`) and forwards it
//! through the cache's flush listener (`TimestampedCacheFlushListener`); here the operator keeps it next to its
//! store, in the same least-recently-written order, under the same byte budget.

use std::collections::{BTreeMap, HashMap};

use state_store::{SharedSerde, ValueAndTimestamp};
use streams_core::{Data, Headers, ProcessorContext, Record, RecordPosition, StreamsError};

use crate::change::Change;

/// Bytes charged per pending entry beyond its key and value, as Kafka charges each cache entry for its record
/// context and bookkeeping.
const ENTRY_OVERHEAD: usize = 64;

/// One key's pending update.
struct Pending<K, V> {
    key: K,
    /// The latest value and its timestamp (`None`: deleted).
    new: Option<ValueAndTimestamp<V>>,
    /// The value before the first update since the key was last forwarded: what downstream saw last.
    old: Option<V>,
    /// Timestamp and headers of the latest update (Kafka's cached record context).
    timestamp: i64,
    headers: Headers,
    /// Topic and offset of the latest update's record.
    position: Option<RecordPosition>,
    /// Position in the write order.
    seq: u64,
    size: usize,
}

/// Updates of a table-like operator on their way downstream: forwarded at once without a cache, held back per
/// key (latest value, value last forwarded, timestamp and headers of the latest write) with one.
pub(crate) struct EmitCache<K, V> {
    /// Cache budget in bytes; 0 forwards every update at once.
    budget: usize,
    send_old: bool,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<ValueAndTimestamp<V>>,
    entries: HashMap<Vec<u8>, Pending<K, V>, foldhash::fast::RandomState>,
    /// Write order: sequence number → key bytes; the first entry is the least recently written.
    order: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
    bytes: usize,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl<K: Data, V: Data> EmitCache<K, V> {
    /// A cache of `budget` bytes (0: none) that forwards old values when `send_old`; the serdes (the store's)
    /// measure entries against the budget.
    pub(crate) fn new(
        budget: usize,
        send_old: bool,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<ValueAndTimestamp<V>>,
    ) -> Self {
        EmitCache {
            budget,
            send_old,
            key_serde,
            value_serde,
            entries: HashMap::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Whether updates are held back (the store is cached).
    pub(crate) fn caching(&self) -> bool {
        self.budget > 0
    }

    /// Records an update of `key` from `old` (its value before this update, whatever `send_old`) to `new` (the
    /// row written to the store, `None` when deleted), with the timestamp and headers of the record that caused
    /// it. Without a cache it is forwarded at once; with
    /// one it replaces the key's pending update (keeping the value forwarded last as the old value) and the
    /// least recently written keys are forwarded while the pending updates exceed the budget.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update<KO: Data, VO: Data>(
        &mut self,
        ctx: &mut ProcessorContext<KO, VO>,
        key: K,
        new: Option<ValueAndTimestamp<V>>,
        old: Option<V>,
        timestamp: i64,
        headers: Headers,
        out: &impl Fn(K, Change<V>) -> (KO, VO),
    ) -> Result<(), StreamsError> {
        if !self.caching() {
            let old = old.filter(|_| self.send_old);
            let (k, v) = out(
                key,
                Change::new(new.map(ValueAndTimestamp::into_value), old),
            );
            return ctx.forward(Record {
                key: k,
                value: v,
                timestamp,
                headers,
            });
        }
        self.key_buf.clear();
        self.key_serde
            .serialize(&key, &mut self.key_buf)
            .map_err(|e| StreamsError::processor(format!("record cache: key: {e}")))?;
        self.value_buf.clear();
        if let Some(v) = &new {
            self.value_serde
                .serialize(v, &mut self.value_buf)
                .map_err(|e| StreamsError::processor(format!("record cache: value: {e}")))?;
        }
        let size = self.key_buf.len() + self.value_buf.len() + ENTRY_OVERHEAD;
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.entries.get_mut(self.key_buf.as_slice()) {
            Some(p) => {
                self.bytes = self.bytes - p.size + size;
                self.order.remove(&p.seq);
                p.new = new;
                p.timestamp = timestamp;
                p.headers = headers;
                p.position = ctx.record_position();
                p.seq = seq;
                p.size = size;
                self.order.insert(seq, self.key_buf.clone());
            }
            None => {
                self.bytes += size;
                self.order.insert(seq, self.key_buf.clone());
                self.entries.insert(
                    self.key_buf.clone(),
                    Pending {
                        key,
                        new,
                        old,
                        timestamp,
                        headers,
                        position: ctx.record_position(),
                        seq,
                        size,
                    },
                );
            }
        }
        while self.bytes > self.budget {
            let Some((_, eldest)) = self.order.pop_first() else {
                break;
            };
            self.emit(ctx, &eldest, out)?;
        }
        Ok(())
    }

    /// Forwards every pending update, least recently written first (Kafka's cache flush).
    pub(crate) fn flush<KO: Data, VO: Data>(
        &mut self,
        ctx: &mut ProcessorContext<KO, VO>,
        out: &impl Fn(K, Change<V>) -> (KO, VO),
    ) -> Result<(), StreamsError> {
        while let Some((_, key)) = self.order.pop_first() {
            self.emit(ctx, &key, out)?;
        }
        Ok(())
    }

    /// Forwards the pending update of `key` (already out of the write order) and drops it. A key created and
    /// deleted since it was last forwarded is not forwarded at all, as in Kafka's `putAndMaybeForward`.
    fn emit<KO: Data, VO: Data>(
        &mut self,
        ctx: &mut ProcessorContext<KO, VO>,
        key: &[u8],
        out: &impl Fn(K, Change<V>) -> (KO, VO),
    ) -> Result<(), StreamsError> {
        let Some(p) = self.entries.remove(key) else {
            return Ok(());
        };
        self.bytes -= p.size;
        if p.new.is_none() && p.old.is_none() {
            return Ok(());
        }
        let old = p.old.filter(|_| self.send_old);
        let (k, v) = out(
            p.key,
            Change::new(p.new.map(ValueAndTimestamp::into_value), old),
        );
        let record = Record {
            key: k,
            value: v,
            timestamp: p.timestamp,
            headers: p.headers,
        };
        ctx.with_record_position(p.position, |ctx| ctx.forward(record))
    }
}

#[cfg(test)]
mod tests {
    //! The flush-listener scenarios of Kafka's `CachingInMemoryKeyValueStoreTest`, on a processor that keeps a
    //! map as its store and an [`EmitCache`] in front of its children. An input value `""` deletes the key.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use state_store::{Serdes, TimestampedSerde};
    use streams_core::{
        Headers, Processor, ProcessorContext, Record, SourceOptions, StreamsError, TestRecord,
        Topology, TopologyTestDriver,
    };

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>, i64, Headers)>>>;

    struct Harness {
        emit: EmitCache<String, String>,
        model: HashMap<String, String>,
    }

    impl Processor<String, String> for Harness {
        type KOut = String;
        type VOut = Change<String>;
        fn process(
            &mut self,
            r: Record<String, String>,
            ctx: &mut ProcessorContext<String, Change<String>>,
        ) -> Result<(), StreamsError> {
            let (new, old) = if r.value.is_empty() {
                (None, self.model.remove(&r.key))
            } else {
                let old = self.model.insert(r.key.clone(), r.value.clone());
                (Some(ValueAndTimestamp::new(r.value, r.timestamp)), old)
            };
            self.emit
                .update(ctx, r.key, new, old, r.timestamp, r.headers, &|k, c| (k, c))
        }
        fn flush(
            &mut self,
            ctx: &mut ProcessorContext<String, Change<String>>,
        ) -> Result<(), StreamsError> {
            self.emit.flush(ctx, &|k, c| (k, c))
        }
    }

    struct Recorder(Seen);

    impl Processor<String, Change<String>> for Recorder {
        type KOut = String;
        type VOut = String;
        fn process(
            &mut self,
            r: Record<String, Change<String>>,
            _ctx: &mut ProcessorContext<String, String>,
        ) -> Result<(), StreamsError> {
            self.0
                .lock()
                .unwrap()
                .push((r.key, r.value.new, r.value.old, r.timestamp, r.headers));
            Ok(())
        }
    }

    /// A driver committing only when told, over a harness with a cache of `budget` bytes.
    fn harness(budget: usize, send_old: bool) -> (TopologyTestDriver, Seen) {
        let seen: Seen = Arc::default();
        let mut t = Topology::new();
        t.add_source(
            "src",
            &["in"],
            SourceOptions::new(Serdes::string(), Serdes::string()),
        )
        .unwrap();
        t.add_processor::<String, String, _, _>(
            "cache",
            move || Harness {
                emit: EmitCache::new(
                    budget,
                    send_old,
                    Arc::new(Serdes::string()),
                    Arc::new(TimestampedSerde::new(Arc::new(Serdes::string()))),
                ),
                model: HashMap::new(),
            },
            &["src"],
        )
        .unwrap();
        let s2 = seen.clone();
        t.add_processor::<String, Change<String>, _, _>(
            "recorder",
            move || Recorder(s2.clone()),
            &["cache"],
        )
        .unwrap();
        let d = TopologyTestDriver::builder(t)
            .commit_after_each_pipe(false)
            .build()
            .unwrap();
        (d, seen)
    }

    fn put(d: &TopologyTestDriver, k: &str, v: &str, ts: i64) {
        d.input_topic("in", Serdes::string(), Serdes::string())
            .pipe_input_at(k.to_string(), v.to_string(), ts)
            .unwrap();
    }

    /// (key, new, old) forwarded since the last call.
    fn take(seen: &Seen) -> Vec<(String, Option<String>, Option<String>)> {
        seen.lock()
            .unwrap()
            .drain(..)
            .map(|(k, n, o, _, _)| (k, n, o))
            .collect()
    }

    fn change(
        k: &str,
        new: Option<&str>,
        old: Option<&str>,
    ) -> (String, Option<String>, Option<String>) {
        (k.into(), new.map(Into::into), old.map(Into::into))
    }

    /// CachingInMemoryKeyValueStoreTest.shouldForwardOldValuesWhenEnabled: after a flush the key's latest value
    /// is forwarded with the value forwarded before as the old one; a key put and deleted between two flushes
    /// is not forwarded at all.
    #[test]
    fn forwards_old_values_when_enabled() {
        let (d, seen) = harness(1 << 20, true);
        put(&d, "1", "a", 1);
        assert_eq!(take(&seen), vec![]);
        d.commit().unwrap();
        assert_eq!(take(&seen), vec![change("1", Some("a"), None)]);
        put(&d, "1", "b", 2);
        put(&d, "1", "c", 3);
        d.commit().unwrap();
        assert_eq!(take(&seen), vec![change("1", Some("c"), Some("a"))]);
        put(&d, "1", "", 4);
        d.commit().unwrap();
        assert_eq!(take(&seen), vec![change("1", None, Some("c"))]);
        put(&d, "1", "a", 5);
        put(&d, "1", "b", 6);
        put(&d, "1", "", 7);
        d.commit().unwrap();
        assert_eq!(take(&seen), vec![]);
    }

    /// CachingInMemoryKeyValueStoreTest.shouldNotForwardOldValuesWhenDisabled.
    #[test]
    fn forwards_no_old_values_when_disabled() {
        let (d, seen) = harness(1 << 20, false);
        put(&d, "1", "a", 1);
        d.commit().unwrap();
        assert_eq!(take(&seen), vec![change("1", Some("a"), None)]);
        put(&d, "1", "b", 2);
        d.commit().unwrap();
        assert_eq!(take(&seen), vec![change("1", Some("b"), None)]);
        put(&d, "1", "", 3);
        d.commit().unwrap();
        assert_eq!(take(&seen), vec![change("1", None, None)]);
        put(&d, "1", "a", 5);
        put(&d, "1", "b", 6);
        put(&d, "1", "", 7);
        d.commit().unwrap();
        assert_eq!(take(&seen), vec![]);
    }

    /// CachingInMemoryKeyValueStoreTest.shouldAvoidFlushingDeletionsWithoutDirtyKeys: a key that never reached
    /// downstream, put then deleted, forwards nothing; keys forwarded before are not forwarded again.
    #[test]
    fn avoids_forwarding_deletions_of_keys_never_forwarded() {
        let (d, seen) = harness(1 << 20, true);
        put(&d, "x", "1", 1);
        d.commit().unwrap();
        assert_eq!(take(&seen).len(), 1);
        put(&d, "key", "value", 2);
        put(&d, "key", "", 3);
        d.commit().unwrap();
        assert_eq!(take(&seen), vec![]);
    }

    /// CachingInMemoryKeyValueStoreTest.shouldForwardDirtyItemToListenerWhenEvicted, with NamedCache's order:
    /// over its budget the cache forwards the least recently written key first, and a flush forwards the rest
    /// in write order. Each entry here costs 1 (key) + 8 (timestamp) + 1 (value) + 64 bytes: two fit in 150.
    #[test]
    fn evicts_least_recently_written_first() {
        let (d, seen) = harness(150, true);
        put(&d, "a", "1", 1);
        put(&d, "b", "1", 2);
        assert_eq!(take(&seen), vec![]);
        put(&d, "c", "1", 3);
        assert_eq!(take(&seen), vec![change("a", Some("1"), None)]);
        // Rewriting b makes c the eldest.
        put(&d, "b", "2", 4);
        put(&d, "d", "1", 5);
        assert_eq!(take(&seen), vec![change("c", Some("1"), None)]);
        d.commit().unwrap();
        assert_eq!(
            take(&seen),
            vec![change("b", Some("2"), None), change("d", Some("1"), None)]
        );
    }

    /// The record forwarded at a flush carries the timestamp and headers of the key's latest write (Kafka's
    /// cached record context), not those of the first write nor of the record being processed.
    #[test]
    fn forwards_timestamp_and_headers_of_the_latest_write() {
        let (d, seen) = harness(1 << 20, false);
        let input = d.input_topic("in", Serdes::string(), Serdes::string());
        for (v, ts) in [("1", 10), ("2", 20)] {
            let mut h = Headers::new();
            h.add("v", Some(v.as_bytes().to_vec()));
            input
                .pipe_record(TestRecord::new("k".to_string(), v.to_string(), ts).with_headers(h))
                .unwrap();
        }
        d.commit().unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (_, new, _, ts, headers) = &seen[0];
        assert_eq!((new.as_deref(), *ts), (Some("2"), 20));
        assert_eq!(
            headers.last("v").and_then(|h| h.value.clone()),
            Some(b"2".to_vec())
        );
    }

    /// Without a cache (budget 0) every update is forwarded at once, with its own old value.
    #[test]
    fn forwards_every_update_without_a_cache() {
        let (d, seen) = harness(0, true);
        put(&d, "1", "a", 1);
        put(&d, "1", "b", 2);
        assert_eq!(
            take(&seen),
            vec![
                change("1", Some("a"), None),
                change("1", Some("b"), Some("a"))
            ]
        );
        d.commit().unwrap();
        assert_eq!(take(&seen), vec![]);
    }
}
