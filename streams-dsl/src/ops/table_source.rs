//! `StreamsBuilder::table`: materialize a topic as a table and forward its changes.

use std::sync::Arc;

use state_store::{TypedKeyValueStore, ValueAndTimestamp};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::flush_listener::CacheListener;
use crate::ops::stream_aggregate::{change, missing_store};

pub(crate) struct TableSource<K, V> {
    pub store_name: Arc<str>,
    pub send_old: bool,
    /// Whether Kafka would materialize this table (it was given a store name) and so forward through its
    /// store's cache; an unnamed source table forwards each record at once.
    pub materialized: bool,
    pub store: Option<TypedKeyValueStore<K, ValueAndTimestamp<V>>>,
    /// The store cache's flush listener, which forwards the updates while the store is cached.
    pub emit: Option<CacheListener<K, ValueAndTimestamp<V>>>,
}

impl<K: Data, V: Data> Processor<K, Option<V>> for TableSource<K, V> {
    type KOut = K;
    type VOut = Change<V>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        let store: TypedKeyValueStore<K, ValueAndTimestamp<V>> =
            ctx.key_value_store(&self.store_name)?;
        self.emit = Some(CacheListener::register(
            store.bytes(),
            store.key_serde().clone(),
            store.value_serde().clone(),
            self.send_old,
            self.materialized,
        )?);
        self.store = Some(store);
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        match self.emit.as_mut() {
            Some(emit) => emit.flush(ctx, &change),
            None => Ok(()),
        }
    }

    fn process(
        &mut self,
        r: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<K, Change<V>>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("table source"))?;
        let emit = self
            .emit
            .as_mut()
            .ok_or_else(|| missing_store("table source"))?;
        if emit.caching() {
            // The cache forwards the update when it flushes or evicts it.
            emit.set_context(ctx, r.timestamp, r.headers)?;
            match r.value {
                Some(v) => store.put(&r.key, &ValueAndTimestamp::new(v, r.timestamp))?,
                None => {
                    store.delete(&r.key)?;
                }
            }
            return emit.finish(ctx, &change);
        }
        let (new, old) = match r.value {
            Some(v) => {
                // The old value is read when it is forwarded.
                let old = if self.send_old {
                    store.get(&r.key)?.map(ValueAndTimestamp::into_value)
                } else {
                    None
                };
                let row = ValueAndTimestamp::new(v, r.timestamp);
                store.put(&r.key, &row)?;
                (Some(row), old)
            }
            None => {
                let old = store.delete(&r.key)?;
                if old.is_none() {
                    // Deleting an absent row changes nothing.
                    return Ok(());
                }
                (None, old.map(ValueAndTimestamp::into_value))
            }
        };
        ctx.forward(Record {
            key: r.key,
            value: Change::new(
                new.map(ValueAndTimestamp::into_value),
                old.filter(|_| self.send_old),
            ),
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}
