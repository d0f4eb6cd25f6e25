//! Forwards every record unchanged: merge points and branch children.

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

pub(crate) struct PassThrough;

impl<K: Data, V: Data> Processor<K, V> for PassThrough {
    type KOut = K;
    type VOut = V;

    #[inline]
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, V>,
    ) -> Result<(), StreamsError> {
        ctx.forward(r)
    }
}
