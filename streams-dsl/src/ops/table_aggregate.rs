//! `KGroupedTable::aggregate`, `reduce` and `count`: adder for new rows, subtractor for retracted ones.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::{TypedKeyValueStore, ValueAndTimestamp};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::flush_listener::CacheListener;
use crate::ops::stream_aggregate::{change, missing_store};

/// `add(key, value, current or None) -> aggregate`; `sub(key, value, current) -> aggregate or None (delete)`.
pub(crate) struct TableAggregate<K, VA, A, S> {
    pub store_name: Arc<str>,
    pub add: Arc<A>,
    pub sub: Arc<S>,
    pub send_old: bool,
    pub store: Option<TypedKeyValueStore<K, ValueAndTimestamp<VA>>>,
    /// Updates on their way downstream, held back while the store is cached.
    pub emit: Option<CacheListener<K, ValueAndTimestamp<VA>>>,
    pub _p: PhantomData<fn() -> VA>,
}

impl<K: Data, V: Data, VA: Data, A, S> Processor<K, Change<V>> for TableAggregate<K, VA, A, S>
where
    A: Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
    S: Fn(&K, &V, VA) -> Option<VA> + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = Change<VA>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<VA>>) -> Result<(), StreamsError> {
        let store: TypedKeyValueStore<K, ValueAndTimestamp<VA>> =
            ctx.key_value_store(&self.store_name)?;
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
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("table aggregate"))?;
        let emit = self
            .emit
            .as_mut()
            .ok_or_else(|| missing_store("table aggregate"))?;
        let prev = store.get(&r.key)?;
        // The aggregate's time moves to the later of its own and the record's when the record changes it, as in
        // Kafka's KTableAggregate: a subtraction or an addition to an existing aggregate.
        let prev_ts = prev.as_ref().map(|p| p.timestamp);
        let prev = prev.map(ValueAndTimestamp::into_value);
        let existed = prev.is_some();
        let mut timestamp = r.timestamp;
        let (mut current, old) = if self.send_old && !emit.caching() {
            (prev.clone(), prev)
        } else {
            (prev, None)
        };
        let Change {
            new,
            old: retracted,
            ..
        } = r.value;
        if let Some(o) = &retracted {
            // Nothing to subtract from when the group is empty (as Kafka Streams does).
            if let Some(c) = current.take() {
                current = (self.sub)(&r.key, o, c);
                timestamp = timestamp.max(prev_ts.unwrap_or(timestamp));
            }
        }
        if let Some(n) = new {
            current = Some((self.add)(&r.key, n, current));
            timestamp = timestamp.max(prev_ts.unwrap_or(timestamp));
        }
        if !existed && current.is_none() {
            return Ok(());
        }
        if emit.caching() {
            // The cache forwards the update when it flushes or evicts it.
            emit.set_context(ctx, timestamp, r.headers)?;
            match current {
                Some(c) => store.put(&r.key, &ValueAndTimestamp::new(c, timestamp))?,
                None => {
                    store.delete(&r.key)?;
                }
            }
            return emit.finish(ctx, &change);
        }
        match &current {
            Some(c) => store.put(&r.key, &ValueAndTimestamp::new(c.clone(), timestamp))?,
            None => {
                store.delete(&r.key)?;
            }
        }
        ctx.forward(Record {
            key: r.key,
            value: Change::new(current, old),
            timestamp,
            headers: r.headers,
        })
    }
}
