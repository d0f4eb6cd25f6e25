//! `KGroupedStream::aggregate`, `reduce` and `count`: fold each key's records into a value kept in a store.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::{TypedKeyValueStore, ValueAndTimestamp};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::put_timestamped;

pub(crate) fn missing_store(op: &str) -> StreamsError {
    StreamsError::processor(format!("{op} used before init: its store is not open"))
}

/// `fold(key, value, previous aggregate or None) -> new aggregate`.
pub(crate) struct StreamAggregate<K, VA, F> {
    pub store_name: Arc<str>,
    pub fold: Arc<F>,
    pub send_old: bool,
    pub store: Option<TypedKeyValueStore<K, ValueAndTimestamp<VA>>>,
    pub _p: PhantomData<fn() -> VA>,
}

impl<K: Data, V: Data, VA: Data, F> Processor<K, V> for StreamAggregate<K, VA, F>
where
    F: Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = Change<VA>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<VA>>) -> Result<(), StreamsError> {
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
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
        let prev = store.get(&r.key)?;
        // The aggregate is as recent as the latest record folded into it (Kafka's KStreamAggregate).
        let timestamp = prev
            .as_ref()
            .map_or(r.timestamp, |p| p.timestamp.max(r.timestamp));
        let prev = prev.map(ValueAndTimestamp::into_value);
        let (base, old) = match prev {
            Some(p) if self.send_old => (Some(p.clone()), Some(p)),
            p => (p, None),
        };
        let new = (self.fold)(&r.key, r.value, base);
        let new = put_timestamped(store, &r.key, Some(new), timestamp)?;
        ctx.forward(Record {
            key: r.key,
            value: Change::new(new, old),
            timestamp,
            headers: r.headers,
        })
    }
}
