//! `KStream::join_global` and `left_join_global`: look each stream record up in a global table.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::SharedSerde;
use streams_core::{
    Data, Processor, ProcessorContext, ReadOnlyKeyValueStore, Record, StreamsError,
};

/// The joiner of a stream-global join: inner joins call it with the matching row only, left joins with the row
/// or `None`. One type for both keeps a single processor.
pub(crate) enum GlobalJoiner<J, L> {
    Inner(Arc<J>),
    Left(Arc<L>),
}

impl<J, L> Clone for GlobalJoiner<J, L> {
    fn clone(&self) -> Self {
        match self {
            GlobalJoiner::Inner(j) => GlobalJoiner::Inner(j.clone()),
            GlobalJoiner::Left(j) => GlobalJoiner::Left(j.clone()),
        }
    }
}

/// As Kafka's `KStreamKTableJoinProcessor` (which global joins share), a record whose value is null, or whose
/// selected table key is null, cannot join: it is dropped and counted in dropped-records; except that a left join
/// passes a record with a null key and a value, joining it with no row when its selected key is null too.
/// Nullness is the serdes' (`Serde::is_null`); without a known serde nothing is null.
pub(crate) struct GlobalJoin<K, V, GK, GV, VR, KS, J, L> {
    pub store_name: Arc<str>,
    pub store: Option<ReadOnlyKeyValueStore<GK, GV>>,
    pub key_selector: Arc<KS>,
    pub joiner: GlobalJoiner<J, L>,
    pub key_serde: Option<SharedSerde<K>>,
    pub value_serde: Option<SharedSerde<V>>,
    pub lookup_serde: Option<SharedSerde<GK>>,
    pub _out: PhantomData<fn() -> VR>,
}

impl<K, V, GK, GV, VR, KS, J, L> Processor<K, V> for GlobalJoin<K, V, GK, GV, VR, KS, J, L>
where
    K: Data,
    V: Data,
    GK: 'static,
    GV: 'static,
    VR: Data,
    KS: Fn(&K, &V) -> GK + Send + Sync + 'static,
    J: Fn(&V, &GV) -> VR + Send + Sync + 'static,
    L: Fn(&V, Option<&GV>) -> VR + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = VR;

    fn init(&mut self, ctx: &mut ProcessorContext<K, VR>) -> Result<(), StreamsError> {
        self.store = Some(ctx.global_store(&self.store_name)?);
        Ok(())
    }

    #[inline]
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        let store = self.store.as_ref().ok_or_else(|| StreamsError::Processor {
            node: ctx.name().to_string(),
            message: format!("global store '{}' was not opened in init", self.store_name),
        })?;
        let lookup = (self.key_selector)(&r.key, &r.value);
        let null_key = self.key_serde.as_ref().is_some_and(|s| s.is_null(&r.key));
        let null_value = self
            .value_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&r.value));
        let null_lookup = self
            .lookup_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&lookup));
        let left = matches!(self.joiner, GlobalJoiner::Left(_));
        let passes = left && null_key && !null_value;
        if !passes && (null_lookup || null_value) {
            ctx.record_dropped("null join key or value in a stream-global table join");
            return Ok(());
        }
        // A null key has no row (tables hold no null keys).
        let row = if null_lookup {
            None
        } else {
            store.get(&lookup)?
        };
        let value = match (&self.joiner, row) {
            (GlobalJoiner::Inner(j), Some(row)) => j(&r.value, &row),
            // An inner join drops records without a matching row.
            (GlobalJoiner::Inner(_), None) => return Ok(()),
            (GlobalJoiner::Left(j), row) => j(&r.value, row.as_ref()),
        };
        ctx.forward(Record {
            key: r.key,
            value,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}
