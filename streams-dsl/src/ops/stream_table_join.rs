//! `KStream::join` and `KStream::left_join` with a `KTable`: each stream record looks its key up in the table's
//! store as it is processed; table updates alone produce nothing.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::TypedKeyValueStore;
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::ops::stream_aggregate::missing_store;

/// `joiner(stream value, table row or None) -> joined value, or None to drop the record` (an inner join drops
/// records whose key the table lacks; a left join never drops).
pub(crate) struct StreamTableJoin<K, VT, VR, F> {
    pub store_name: Arc<str>,
    pub joiner: Arc<F>,
    pub store: Option<TypedKeyValueStore<K, VT>>,
    pub _p: PhantomData<fn() -> VR>,
}

impl<K: Data, V: Data, VT: Data, VR: Data, F> Processor<K, V> for StreamTableJoin<K, VT, VR, F>
where
    F: Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = VR;

    fn init(&mut self, ctx: &mut ProcessorContext<K, VR>) -> Result<(), StreamsError> {
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("stream-table join"))?;
        let row = store.get(&r.key)?;
        let Some(value) = (self.joiner)(&r.value, row.as_ref()) else {
            return Ok(());
        };
        ctx.forward(Record {
            key: r.key,
            value,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}
