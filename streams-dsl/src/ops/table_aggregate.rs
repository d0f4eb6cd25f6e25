//! `KGroupedTable::aggregate`, `reduce` and `count`: adder for new rows, subtractor for retracted ones.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::TypedKeyValueStore;
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::stream_aggregate::missing_store;

/// `add(key, value, current or None) -> aggregate`; `sub(key, value, current) -> aggregate or None (delete)`.
pub(crate) struct TableAggregate<K, VA, A, S> {
    pub store_name: Arc<str>,
    pub add: Arc<A>,
    pub sub: Arc<S>,
    pub send_old: bool,
    pub store: Option<TypedKeyValueStore<K, VA>>,
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
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
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
        let prev = store.get(&r.key)?;
        let existed = prev.is_some();
        let (mut current, old) = if self.send_old {
            (prev.clone(), prev)
        } else {
            (prev, None)
        };
        let Change {
            new,
            old: retracted,
        } = r.value;
        if let Some(o) = &retracted {
            // Nothing to subtract from when the group is empty (as Kafka Streams does).
            if let Some(c) = current.take() {
                current = (self.sub)(&r.key, o, c);
            }
        }
        if let Some(n) = new {
            current = Some((self.add)(&r.key, n, current));
        }
        if !existed && current.is_none() {
            return Ok(());
        }
        match &current {
            Some(v) => store.put(&r.key, v)?,
            None => {
                store.delete(&r.key)?;
            }
        }
        ctx.forward(Record {
            key: r.key,
            value: Change::new(current, old),
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}
