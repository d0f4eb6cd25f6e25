//! `KGroupedStream::aggregate`, `reduce` and `count`: fold each key's records into a value kept in a store.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::{TypedKeyValueStore, ValueAndTimestamp};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::flush_listener::CacheListener;

pub(crate) fn missing_store(op: &str) -> StreamsError {
    StreamsError::processor(format!("{op} used before init: its store is not open"))
}

/// `fold(key, value, previous aggregate or None) -> new aggregate`.
pub(crate) struct StreamAggregate<K, VA, F> {
    pub store_name: Arc<str>,
    pub fold: Arc<F>,
    pub send_old: bool,
    pub store: Option<TypedKeyValueStore<K, ValueAndTimestamp<VA>>>,
    /// The store cache's flush listener, which forwards the updates while the store is cached.
    pub emit: Option<CacheListener<K, ValueAndTimestamp<VA>>>,
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
        // Cogrouped inputs each register on their one store: whichever collects a flushed entry forwards it, to
        // the same merge node, in the store's one write order.
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

    fn flush(&mut self, ctx: &mut ProcessorContext<K, Change<VA>>) -> Result<(), StreamsError> {
        match self.emit.as_mut() {
            Some(emit) => emit.flush(ctx, &change),
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
        if emit.caching() {
            // The cache forwards the update when it flushes or evicts it.
            let new = (self.fold)(&r.key, r.value, prev);
            emit.set_context(ctx, timestamp, r.headers)?;
            store.put(&r.key, &ValueAndTimestamp::new(new, timestamp))?;
            return emit.finish(ctx, &change);
        }
        // The old value is kept when it is forwarded.
        let (base, old) = match prev {
            Some(p) if self.send_old => (Some(p.clone()), Some(p)),
            p => (p, None),
        };
        let new = (self.fold)(&r.key, r.value, base);
        let row = ValueAndTimestamp::new(new.clone(), timestamp);
        store.put(&r.key, &row)?;
        ctx.forward(Record {
            key: r.key,
            value: Change::new(Some(new), old),
            timestamp,
            headers: r.headers,
        })
    }
}

/// A cached row's change as a [`Change`] of plain values.
pub(crate) fn change<K, V>(
    key: K,
    new: Option<ValueAndTimestamp<V>>,
    old: Option<ValueAndTimestamp<V>>,
) -> (K, Change<V>) {
    (
        key,
        Change::new(
            new.map(ValueAndTimestamp::into_value),
            old.map(ValueAndTimestamp::into_value),
        ),
    )
}
