//! `KTable::group_by`: re-key each row; an update retracts the old row from its group and adds the new one.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;

pub(crate) struct TableGroupBy<F, K2, V2> {
    pub f: Arc<F>,
    pub _p: PhantomData<fn() -> (K2, V2)>,
}

impl<K: Data, V: Data, K2: Data, V2: Data, F> Processor<K, Change<V>> for TableGroupBy<F, K2, V2>
where
    F: Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
{
    type KOut = K2;
    type VOut = Change<V2>;

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K2, Change<V2>>,
    ) -> Result<(), StreamsError> {
        // The retraction goes first, so a row that stays in its group is subtracted before it is added again.
        if let Some(old) = &r.value.old {
            let (k2, v2) = (self.f)(&r.key, old);
            ctx.forward(Record {
                key: k2,
                value: Change::new(None, Some(v2)),
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            })?;
        }
        if let Some(new) = &r.value.new {
            let (k2, v2) = (self.f)(&r.key, new);
            ctx.forward(Record {
                key: k2,
                value: Change::new(Some(v2), None),
                timestamp: r.timestamp,
                headers: r.headers,
            })?;
        }
        Ok(())
    }
}
