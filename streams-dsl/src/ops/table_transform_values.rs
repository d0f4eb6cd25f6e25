//! `KTable::transform_values`: a value transformer (possibly stateful) applied to each table update.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::ValueAndTimestamp;
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::stream_aggregate::missing_store;
use crate::ops::TableStore;
use crate::transformer::{ValueTransformerContext, ValueTransformerWithKey};

pub(crate) struct TableTransformValues<K, V, T: ValueTransformerWithKey<K, V>> {
    pub transformer: T,
    pub send_old: bool,
    pub store_name: Option<Arc<str>>,
    pub store: Option<TableStore<K, T::VOut>>,
    pub _p: PhantomData<fn(V)>,
}

impl<K: Data, V: Data, T: ValueTransformerWithKey<K, V>> Processor<K, Change<V>>
    for TableTransformValues<K, V, T>
{
    type KOut = K;
    type VOut = Change<T::VOut>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<T::VOut>>) -> Result<(), StreamsError> {
        if let Some(name) = &self.store_name {
            self.store = Some(TableStore::open(ctx, name, self.send_old)?);
        }
        self.transformer.init(&ValueTransformerContext {
            inner: ctx,
            timestamp: -1,
        })
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K, Change<T::VOut>>,
    ) -> Result<(), StreamsError> {
        let tctx = ValueTransformerContext {
            inner: ctx,
            timestamp: r.timestamp,
        };
        let new = self
            .transformer
            .transform(&r.key, r.value.new.as_ref(), &tctx)?;
        let (new, old) = match &self.store_name {
            // Materialized: the old value is the stored row, whatever the transformer's state.
            Some(_) => {
                let store = self
                    .store
                    .as_mut()
                    .ok_or_else(|| missing_store("table transform_values"))?;
                let old = if self.send_old {
                    store.store.get(&r.key)?.map(ValueAndTimestamp::into_value)
                } else {
                    None
                };
                return store.write_and_forward(ctx, r.key, new, old, r.timestamp, r.headers);
            }
            // Not materialized: the old value transformed again (Kafka's KTableTransformValues).
            None => {
                let old = if self.send_old {
                    self.transformer
                        .transform(&r.key, r.value.old.as_ref(), &tctx)?
                } else {
                    None
                };
                (new, old)
            }
        };
        ctx.forward(Record {
            key: r.key,
            value: Change::new(new, old).latest(r.value.is_latest),
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }

    fn flush(
        &mut self,
        ctx: &mut ProcessorContext<K, Change<T::VOut>>,
    ) -> Result<(), StreamsError> {
        match self.store.as_mut() {
            Some(store) => store.flush(ctx),
            None => Ok(()),
        }
    }

    fn close(
        &mut self,
        _ctx: &mut ProcessorContext<K, Change<T::VOut>>,
    ) -> Result<(), StreamsError> {
        self.transformer.close()
    }
}
