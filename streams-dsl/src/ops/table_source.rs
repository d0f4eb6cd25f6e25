//! `StreamsBuilder::table`: materialize a topic as a table and forward its changes.

use std::sync::Arc;

use state_store::{TypedKeyValueStore, ValueAndTimestamp};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::put_timestamped;
use crate::ops::stream_aggregate::missing_store;

pub(crate) struct TableSource<K, V> {
    pub store_name: Arc<str>,
    pub send_old: bool,
    pub store: Option<TypedKeyValueStore<K, ValueAndTimestamp<V>>>,
}

impl<K: Data, V: Data> Processor<K, Option<V>> for TableSource<K, V> {
    type KOut = K;
    type VOut = Change<V>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
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
        let (new, old) = match r.value {
            Some(v) => {
                let old = if self.send_old {
                    store.get(&r.key)?.map(ValueAndTimestamp::into_value)
                } else {
                    None
                };
                (put_timestamped(store, &r.key, Some(v), r.timestamp)?, old)
            }
            None => {
                let old = store.delete(&r.key)?;
                if old.is_none() {
                    // Deleting an absent row changes nothing.
                    return Ok(());
                }
                (
                    None,
                    old.filter(|_| self.send_old)
                        .map(ValueAndTimestamp::into_value),
                )
            }
        };
        let value = Change::new(new, old);
        ctx.forward(Record {
            key: r.key,
            value,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}
