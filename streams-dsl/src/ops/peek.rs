//! `KStream::peek` (pass records on after looking at them) and `foreach` (terminal).

use std::sync::Arc;

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

pub(crate) struct Peek<F> {
    pub f: Arc<F>,
    /// `foreach`: do not forward.
    pub terminal: bool,
}

impl<K: Data, V: Data, F> Processor<K, V> for Peek<F>
where
    F: Fn(&K, &V) + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = V;

    #[inline]
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, V>,
    ) -> Result<(), StreamsError> {
        (self.f)(&r.key, &r.value);
        if self.terminal {
            Ok(())
        } else {
            ctx.forward(r)
        }
    }
}
