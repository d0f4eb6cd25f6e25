//! `KStream::split`: each record goes to the first branch whose predicate it satisfies.

use std::sync::Arc;

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

pub(crate) type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// (child node name, predicate) in order; `None` is the default branch.
pub(crate) type Branches<K, V> = Vec<(String, Option<Predicate<K, V>>)>;

pub(crate) struct Branch<K, V> {
    /// (child node name, predicate); `None` is the default branch, which takes everything left.
    pub branches: Arc<Branches<K, V>>,
}

impl<K: Data, V: Data> Processor<K, V> for Branch<K, V> {
    type KOut = K;
    type VOut = V;

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, V>,
    ) -> Result<(), StreamsError> {
        for (child, predicate) in self.branches.iter() {
            if predicate.as_ref().is_none_or(|p| p(&r.key, &r.value)) {
                return ctx.forward_to(child, r);
            }
        }
        Ok(())
    }
}
