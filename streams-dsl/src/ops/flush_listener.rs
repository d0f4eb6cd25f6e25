//! The forwarding side of the record cache: an operator whose store is cached registers as the store cache's
//! flush listener, and forwards each change the cache writes to the store below (at a commit, or when the
//! task's cache budget is exceeded), with the value the store below held before as the old value and the
//! timestamp, headers and origin of the key's latest write: Kafka Streams' `TimestampedCacheFlushListener` /
//! `CacheFlushListener` over `CachingKeyValueStore`, `CachingWindowStore` and `CachingSessionStore`.
//!
//! The cache itself is the store's (`state_store::CachingKeyValueStore`, on the task's one budget); the
//! listener only decodes and forwards. A write made outside [`CacheListener::set_context`] /
//! [`CacheListener::finish`] (a windowed store dropping expired windows) is written below but not forwarded.

use std::sync::{Arc, MutexGuard};

use state_store::{FlushedEntry, KeyValueStore, SharedKeyValueStore, SharedSerde, StoreError};
use streams_core::{Data, Headers, ProcessorContext, Record, RecordPosition, StreamsError};

/// The record context attached to a cached write.
struct WriteCtx {
    timestamp: i64,
    headers: Headers,
    position: Option<RecordPosition>,
}

/// The flush listener of one cached store (see the module documentation); without a cache (caching disabled
/// for the store, a budget of 0, or an operator Kafka does not cache) [`CacheListener::caching`] is false and
/// the operator forwards each update itself.
pub(crate) struct CacheListener<K, VS> {
    store: SharedKeyValueStore,
    name: Arc<str>,
    caching: bool,
    send_old: bool,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<VS>,
    flushed: Vec<FlushedEntry>,
}

impl<K: Data, VS: Data> CacheListener<K, VS> {
    /// Registers on `store` (whose entries `key_serde` and `value_serde` decode) when `allowed`; forwards old
    /// values when `send_old`.
    pub(crate) fn register(
        store: &SharedKeyValueStore,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<VS>,
        send_old: bool,
        allowed: bool,
    ) -> Result<Self, StreamsError> {
        let mut listener = CacheListener {
            store: store.clone(),
            name: Arc::from(""),
            caching: false,
            send_old,
            key_serde,
            value_serde,
            flushed: Vec::new(),
        };
        let mut guard = listener.lock()?;
        let name: Arc<str> = Arc::from(guard.name());
        let caching = allowed && guard.listen_for_flushes(send_old);
        drop(guard);
        listener.name = name;
        listener.caching = caching;
        Ok(listener)
    }

    /// Whether the store is cached: updates are forwarded by [`CacheListener::finish`] and
    /// [`CacheListener::flush`], not by the operator.
    pub(crate) fn caching(&self) -> bool {
        self.caching
    }

    fn lock(&self) -> Result<MutexGuard<'_, Box<dyn KeyValueStore>>, StoreError> {
        self.store.lock().map_err(|_| StoreError::Poisoned {
            store: self.name.to_string(),
        })
    }

    /// Attaches the timestamp and headers the next writes forward with (and the position of the record being
    /// processed), until [`CacheListener::finish`] or the next call.
    pub(crate) fn set_context<KO: Data, VO: Data>(
        &self,
        ctx: &ProcessorContext<KO, VO>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<(), StreamsError> {
        if self.caching {
            let context = WriteCtx {
                timestamp,
                headers,
                position: ctx.record_position(),
            };
            self.lock()?.set_write_context(Some(Arc::new(context)));
        }
        Ok(())
    }

    /// Ends the writes of one record: detaches the context and forwards what the cache evicted meanwhile.
    pub(crate) fn finish<KO: Data, VO: Data>(
        &mut self,
        ctx: &mut ProcessorContext<KO, VO>,
        out: &impl Fn(K, Option<VS>, Option<VS>) -> (KO, VO),
    ) -> Result<(), StreamsError> {
        if !self.caching {
            return Ok(());
        }
        let mut flushed = std::mem::take(&mut self.flushed);
        {
            let mut guard = self.lock()?;
            guard.set_write_context(None);
            guard.take_flushed(&mut flushed);
        }
        self.flushed = flushed;
        self.forward(ctx, out)
    }

    /// Writes the cache's dirty entries below and forwards them, least recently written first (a commit).
    pub(crate) fn flush<KO: Data, VO: Data>(
        &mut self,
        ctx: &mut ProcessorContext<KO, VO>,
        out: &impl Fn(K, Option<VS>, Option<VS>) -> (KO, VO),
    ) -> Result<(), StreamsError> {
        if !self.caching {
            return Ok(());
        }
        let mut flushed = std::mem::take(&mut self.flushed);
        {
            let mut guard = self.lock()?;
            guard.flush_cache()?;
            guard.take_flushed(&mut flushed);
        }
        self.flushed = flushed;
        self.forward(ctx, out)
    }

    fn decode_value(&self, bytes: Option<&[u8]>) -> Result<Option<VS>, StreamsError> {
        bytes
            .map(|b| {
                self.value_serde.deserialize(b).map_err(|e| {
                    StreamsError::from(StoreError::Serde {
                        store: self.name.to_string(),
                        source: e,
                    })
                })
            })
            .transpose()
    }

    /// Forwards the collected entries: nothing for a key that had no value below and has none now (created and
    /// deleted between two flushes, as Kafka's `putAndMaybeForward`), nor for writes made without a context.
    fn forward<KO: Data, VO: Data>(
        &mut self,
        ctx: &mut ProcessorContext<KO, VO>,
        out: &impl Fn(K, Option<VS>, Option<VS>) -> (KO, VO),
    ) -> Result<(), StreamsError> {
        let mut entries = std::mem::take(&mut self.flushed);
        let mut result = Ok(());
        for e in entries.drain(..) {
            let Some(context) = e
                .context
                .as_ref()
                .and_then(|c| c.downcast_ref::<WriteCtx>())
            else {
                continue;
            };
            if e.new.is_none() && e.old.is_none() {
                continue;
            }
            let forwarded = (|| {
                let key = self.key_serde.deserialize(&e.key).map_err(|err| {
                    StreamsError::from(StoreError::Serde {
                        store: self.name.to_string(),
                        source: err,
                    })
                })?;
                let new = self.decode_value(e.new.as_deref())?;
                let old = if self.send_old {
                    self.decode_value(e.old.as_deref())?
                } else {
                    None
                };
                let (k, v) = out(key, new, old);
                let record = Record {
                    key: k,
                    value: v,
                    timestamp: context.timestamp,
                    headers: context.headers.clone(),
                };
                ctx.with_record_position(context.position, |ctx| ctx.forward(record))
            })();
            if let Err(err) = forwarded {
                result = Err(err);
                break;
            }
        }
        // Keep the buffer's allocation for the next time.
        entries.clear();
        self.flushed = entries;
        result
    }
}

#[cfg(test)]
mod tests {
    //! The flush-listener scenarios of Kafka's `CachingInMemoryKeyValueStoreTest`, through a processor that
    //! writes a cached store and forwards through a [`CacheListener`]. An input value `""` deletes the key.

    use std::sync::Mutex;

    use state_store::{Serdes, TimestampedSerde, TypedKeyValueStore, ValueAndTimestamp};
    use streams_core::{
        Headers, KeyValueStoreBuilder, Processor, ProcessorContext, Record, SourceOptions,
        StoreKind, StreamsError, TestRecord, Topology, TopologyTestDriver,
    };

    use crate::change::Change;

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>, i64, Headers)>>>;

    /// Writes each record into its cached store "s" (an input value `""` deletes the key) and forwards through
    /// the store's flush listener.
    struct Harness {
        send_old: bool,
        store: Option<TypedKeyValueStore<String, ValueAndTimestamp<String>>>,
        emit: Option<CacheListener<String, ValueAndTimestamp<String>>>,
    }

    fn change_of(
        k: String,
        new: Option<ValueAndTimestamp<String>>,
        old: Option<ValueAndTimestamp<String>>,
    ) -> (String, Change<String>) {
        (
            k,
            Change::new(
                new.map(ValueAndTimestamp::into_value),
                old.map(ValueAndTimestamp::into_value),
            ),
        )
    }

    impl Processor<String, String> for Harness {
        type KOut = String;
        type VOut = Change<String>;
        fn init(
            &mut self,
            ctx: &mut ProcessorContext<String, Change<String>>,
        ) -> Result<(), StreamsError> {
            let store: TypedKeyValueStore<String, ValueAndTimestamp<String>> =
                ctx.key_value_store("s")?;
            self.emit = Some(CacheListener::register(
                store.bytes(),
                store.key_serde().clone(),
                store.value_serde().clone(),
                self.send_old,
                true,
            )?);
            self.store = Some(store);
            Ok(())
        }
        fn process(
            &mut self,
            r: Record<String, String>,
            ctx: &mut ProcessorContext<String, Change<String>>,
        ) -> Result<(), StreamsError> {
            let (store, emit) = (self.store.as_mut().unwrap(), self.emit.as_mut().unwrap());
            if !emit.caching() {
                let old = store.get(&r.key)?.map(ValueAndTimestamp::into_value);
                let new = if r.value.is_empty() {
                    store.delete(&r.key)?;
                    None
                } else {
                    store.put(
                        &r.key,
                        &ValueAndTimestamp::new(r.value.clone(), r.timestamp),
                    )?;
                    Some(r.value)
                };
                return ctx.forward(Record {
                    key: r.key,
                    value: Change::new(new, old.filter(|_| self.send_old)),
                    timestamp: r.timestamp,
                    headers: r.headers,
                });
            }
            emit.set_context(ctx, r.timestamp, r.headers)?;
            if r.value.is_empty() {
                store.delete(&r.key)?;
            } else {
                store.put(&r.key, &ValueAndTimestamp::new(r.value, r.timestamp))?;
            }
            emit.finish(ctx, &change_of)
        }
        fn flush(
            &mut self,
            ctx: &mut ProcessorContext<String, Change<String>>,
        ) -> Result<(), StreamsError> {
            self.emit.as_mut().unwrap().flush(ctx, &change_of)
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

    /// A driver committing only when told, over a harness whose store has a cache of `budget` bytes.
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
                send_old,
                store: None,
                emit: None,
            },
            &["src"],
        )
        .unwrap();
        t.add_state_store(
            KeyValueStoreBuilder::new(
                "s",
                StoreKind::InMemory,
                Serdes::string(),
                TimestampedSerde::new(Arc::new(Serdes::string())),
            )
            .with_logging_disabled(),
            &["cache"],
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
            .cache_max_bytes(budget)
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
