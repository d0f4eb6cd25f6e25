//! `KStream::join` and `KStream::left_join` with a `KTable`: each stream record looks its key up in the table's
//! store as it is processed; table updates alone produce nothing.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::{SharedSerde, TypedKeyValueStore};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::ops::stream_aggregate::missing_store;

/// `joiner(stream value, table row or None) -> joined value, or None to drop the record` (an inner join drops
/// records whose key the table lacks; a left join never drops).
///
/// As Kafka's `KStreamKTableJoinProcessor`, a record with a null value, or with a null key (except in a left
/// join, where a null key with a value joins with no row), cannot join: it is dropped and counted in
/// dropped-records. Nullness is the stream's serdes' (`Serde::is_null`); without a known serde a side is never
/// null.
pub(crate) struct StreamTableJoin<K, V, VT, VR, F> {
    pub store_name: Arc<str>,
    pub joiner: Arc<F>,
    pub left_join: bool,
    pub key_serde: Option<SharedSerde<K>>,
    pub value_serde: Option<SharedSerde<V>>,
    pub store: Option<TypedKeyValueStore<K, VT>>,
    pub _p: PhantomData<fn() -> VR>,
}

impl<K: Data, V: Data, VT: Data, VR: Data, F> Processor<K, V> for StreamTableJoin<K, V, VT, VR, F>
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
        let null_key = self.key_serde.as_ref().is_some_and(|s| s.is_null(&r.key));
        let null_value = self
            .value_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&r.value));
        if null_value || (null_key && !self.left_join) {
            ctx.record_dropped("null join key or value in a stream-table join");
            return Ok(());
        }
        // A null key has no row (tables hold no null keys).
        let row = if null_key { None } else { store.get(&r.key)? };
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
