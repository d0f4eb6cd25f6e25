//! `KGroupedStream::aggregate`, `reduce` and `count`: fold each key's records into a value kept in a store.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::{TypedKeyValueStore, ValueAndTimestamp};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::emit_cache::EmitCache;

pub(crate) fn missing_store(op: &str) -> StreamsError {
    StreamsError::processor(format!("{op} used before init: its store is not open"))
}

/// `fold(key, value, previous aggregate or None) -> new aggregate`.
pub(crate) struct StreamAggregate<K, VA, F> {
    pub store_name: Arc<str>,
    pub fold: Arc<F>,
    pub send_old: bool,
    pub store: Option<TypedKeyValueStore<K, ValueAndTimestamp<VA>>>,
    /// Updates on their way downstream, held back while the store is cached.
    pub emit: Option<EmitCache<K, VA>>,
    /// Whether updates may wait in the record cache (off where several processors write one store: cogroup).
    pub cached: bool,
    pub _p: PhantomData<fn() -> VA>,
}

impl<K: Data, V: Data, VA: Data, F> Processor<K, V> for StreamAggregate<K, VA, F>
where
    F: Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = Change<VA>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<VA>>) -> Result<(), StreamsError> {
        let store: TypedKeyValueStore<K, ValueAndTimestamp<VA>> =
            ctx.key_value_store(&self.store_name)?;
        self.emit = Some(EmitCache::new(
            if self.cached {
                ctx.store_cache_bytes(&self.store_name)
            } else {
                0
            },
            self.send_old,
            store.key_serde().clone(),
            store.value_serde().clone(),
        ));
        self.store = Some(store);
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<K, Change<VA>>) -> Result<(), StreamsError> {
        match self.emit.as_mut() {
            Some(emit) => emit.flush(ctx, &|k, c| (k, c)),
            None => Ok(()),
        }
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("aggregate"))?;
        let emit = self
            .emit
            .as_mut()
            .ok_or_else(|| missing_store("aggregate"))?;
        let prev = store.get(&r.key)?;
        // The aggregate is as recent as the latest record folded into it (Kafka's KStreamAggregate).
        let timestamp = prev
            .as_ref()
            .map_or(r.timestamp, |p| p.timestamp.max(r.timestamp));
        let prev = prev.map(ValueAndTimestamp::into_value);
        // The old value is kept when it is forwarded, or when a cache must know what downstream saw last.
        let (base, old) = match prev {
            Some(p) if self.send_old || emit.caching() => (Some(p.clone()), Some(p)),
            p => (p, None),
        };
        let new = (self.fold)(&r.key, r.value, base);
        let row = ValueAndTimestamp::new(new, timestamp);
        store.put(&r.key, &row)?;
        emit.update(ctx, r.key, Some(row), old, timestamp, r.headers, &|k, c| {
            (k, c)
        })
    }
}
