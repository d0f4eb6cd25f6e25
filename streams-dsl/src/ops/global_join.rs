//! `KStream::join_global` and `left_join_global`: look each stream record up in a global table.

use std::marker::PhantomData;
use std::sync::Arc;

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

pub(crate) struct GlobalJoin<GK, GV, VR, KS, J, L> {
    pub store_name: Arc<str>,
    pub store: Option<ReadOnlyKeyValueStore<GK, GV>>,
    pub key_selector: Arc<KS>,
    pub joiner: GlobalJoiner<J, L>,
    pub _out: PhantomData<fn() -> VR>,
}

impl<K, V, GK, GV, VR, KS, J, L> Processor<K, V> for GlobalJoin<GK, GV, VR, KS, J, L>
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
        let row = store.get(&lookup)?;
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
