//! `KGroupedStream::aggregate`, `reduce` and `count`: fold each key's records into a value kept in a store.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::TypedKeyValueStore;
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;

pub(crate) fn missing_store(op: &str) -> StreamsError {
    StreamsError::processor(format!("{op} used before init: its store is not open"))
}

/// `fold(key, value, previous aggregate or None) -> new aggregate`.
pub(crate) struct StreamAggregate<K, VA, F> {
    pub store_name: Arc<str>,
    pub fold: Arc<F>,
    pub send_old: bool,
    pub store: Option<TypedKeyValueStore<K, VA>>,
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
        let (base, old) = match prev {
            Some(p) if self.send_old => (Some(p.clone()), Some(p)),
            p => (p, None),
        };
        let new = (self.fold)(&r.key, r.value, base);
        store.put(&r.key, &new)?;
        ctx.forward(Record {
            key: r.key,
            value: Change::new(Some(new), old),
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}
