//! `KTable::filter` and `filter_not`.

use std::sync::Arc;

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::stream_aggregate::missing_store;
use crate::ops::TableStore;

pub(crate) struct TableFilter<K, V, F> {
    pub predicate: Arc<F>,
    pub negate: bool,
    pub send_old: bool,
    pub store_name: Option<Arc<str>>,
    pub store: Option<TableStore<K, V>>,
}

impl<K: Data, V: Data, F> Processor<K, Change<V>> for TableFilter<K, V, F>
where
    F: Fn(&K, &V) -> bool + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = Change<V>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        if let Some(name) = &self.store_name {
            self.store = Some(TableStore::open(ctx, name, self.send_old)?);
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        match self.store.as_mut() {
            Some(store) => store.flush(ctx),
            None => Ok(()),
        }
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K, Change<V>>,
    ) -> Result<(), StreamsError> {
        let (pred, negate) = (&self.predicate, self.negate);
        let key = &r.key;
        let keep = |v: &V| pred(key, v) != negate;
        let new = r.value.new.filter(&keep);
        let old = if self.send_old {
            r.value.old.filter(&keep)
        } else {
            None
        };
        if self.send_old && new.is_none() && old.is_none() {
            // Neither before nor after passed the filter: nothing changed downstream.
            return Ok(());
        }
        // Without old values, a row that fails the filter is forwarded as a deletion: downstream cannot know
        // whether it passed before.
        if self.store_name.is_some() {
            let store = self
                .store
                .as_mut()
                .ok_or_else(|| missing_store("table filter"))?;
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
