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

    fn decode_value(&self, bytes: Option<Vec<u8>>) -> Result<Option<VS>, StreamsError> {
        bytes
            .map(|b| {
                self.value_serde.deserialize(&b).map_err(|e| {
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
                let new = self.decode_value(e.new.clone())?;
                let old = if self.send_old {
                    self.decode_value(e.old.clone())?
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
