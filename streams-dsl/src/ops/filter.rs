//! `KStream::filter` and `filter_not`.

use std::sync::Arc;

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

pub(crate) struct Filter<F> {
    pub predicate: Arc<F>,
    /// Keep records for which the predicate is false (`filter_not`).
    pub negate: bool,
}

impl<K: Data, V: Data, F> Processor<K, V> for Filter<F>
where
    F: Fn(&K, &V) -> bool + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = V;

    #[inline]
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, V>,
    ) -> Result<(), StreamsError> {
        if (self.predicate)(&r.key, &r.value) != self.negate {
            ctx.forward(r)
        } else {
            Ok(())
        }
    }
}
