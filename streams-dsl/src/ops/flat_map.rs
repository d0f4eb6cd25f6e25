//! `KStream::flat_map` and `flat_map_values`.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

/// Zero or more records per input record.
pub(crate) struct FlatMap<F, K2, V2> {
    pub f: Arc<F>,
    pub _out: PhantomData<fn() -> (K2, V2)>,
}

impl<K: Data, V: Data, K2: Data, V2: Data, I, F> Processor<K, V> for FlatMap<F, K2, V2>
where
    F: Fn(K, V) -> I + Send + Sync + 'static,
    I: IntoIterator<Item = (K2, V2)>,
{
    type KOut = K2;
    type VOut = V2;

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K2, V2>,
    ) -> Result<(), StreamsError> {
        let (ts, headers) = (r.timestamp, r.headers);
        for (k, v) in (self.f)(r.key, r.value) {
            ctx.forward(Record {
                key: k,
                value: v,
                timestamp: ts,
                headers: headers.clone(),
            })?;
        }
        Ok(())
    }
}

/// Zero or more values per input record, each with the input's key.
pub(crate) struct FlatMapValues<F, V2> {
    pub f: Arc<F>,
    pub _out: PhantomData<fn() -> V2>,
}

impl<K: Data, V: Data, V2: Data, I, F> Processor<K, V> for FlatMapValues<F, V2>
where
    F: Fn(&K, V) -> I + Send + Sync + 'static,
    I: IntoIterator<Item = V2>,
{
    type KOut = K;
    type VOut = V2;

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, V2>,
    ) -> Result<(), StreamsError> {
        let (ts, headers) = (r.timestamp, r.headers);
        for v in (self.f)(&r.key, r.value) {
            ctx.forward(Record {
                key: r.key.clone(),
                value: v,
                timestamp: ts,
                headers: headers.clone(),
            })?;
        }
        Ok(())
    }
}
