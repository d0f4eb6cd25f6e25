//! `KTable::map_values`.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::stream_aggregate::missing_store;
use crate::ops::TableStore;

pub(crate) struct TableMapValues<K, V2, F> {
    pub f: Arc<F>,
    pub send_old: bool,
    pub store_name: Option<Arc<str>>,
    pub store: Option<TableStore<K, V2>>,
    pub _p: PhantomData<fn() -> V2>,
}

impl<K: Data, V: Data, V2: Data, F> Processor<K, Change<V>> for TableMapValues<K, V2, F>
where
    F: Fn(&K, &V) -> V2 + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = Change<V2>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<V2>>) -> Result<(), StreamsError> {
        if let Some(name) = &self.store_name {
            self.store = Some(TableStore::open(ctx, name, self.send_old)?);
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<K, Change<V2>>) -> Result<(), StreamsError> {
        match self.store.as_mut() {
            Some(store) => store.flush(ctx),
            None => Ok(()),
        }
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K, Change<V2>>,
    ) -> Result<(), StreamsError> {
        let new = r.value.new.as_ref().map(|v| (self.f)(&r.key, v));
        let old = if self.send_old {
            r.value.old.as_ref().map(|v| (self.f)(&r.key, v))
        } else {
            None
        };
        if self.store_name.is_some() {
            let store = self
                .store
                .as_mut()
                .ok_or_else(|| missing_store("table map_values"))?;
            return store.write_and_forward(ctx, r.key, new, old, r.timestamp, r.headers);
        }
        ctx.forward(Record {
            key: r.key,
            value: Change::new(new, old).latest(r.value.is_latest),
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}
