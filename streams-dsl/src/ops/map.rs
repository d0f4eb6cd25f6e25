//! `KStream::map`, `map_values`, `map_values_with_key` and `select_key`.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

/// New key and value from the old ones.
pub(crate) struct Map<F, K2, V2> {
    pub f: Arc<F>,
    pub _out: PhantomData<fn() -> (K2, V2)>,
}

impl<K: Data, V: Data, K2: Data, V2: Data, F> Processor<K, V> for Map<F, K2, V2>
where
    F: Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
{
    type KOut = K2;
    type VOut = V2;

    #[inline]
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K2, V2>,
    ) -> Result<(), StreamsError> {
        let Record {
            key,
            value,
            timestamp,
            headers,
        } = r;
        let (k, v) = (self.f)(key, value);
        ctx.forward(Record {
            key: k,
            value: v,
            timestamp,
            headers,
        })
    }
}

/// New value from the key and the old value.
pub(crate) struct MapValues<F, V2> {
    pub f: Arc<F>,
    pub _out: PhantomData<fn() -> V2>,
}

impl<K: Data, V: Data, V2: Data, F> Processor<K, V> for MapValues<F, V2>
where
    F: Fn(&K, V) -> V2 + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = V2;

    #[inline]
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, V2>,
    ) -> Result<(), StreamsError> {
        let Record {
            key,
            value,
            timestamp,
            headers,
        } = r;
        let v = (self.f)(&key, value);
        ctx.forward(Record {
            key,
            value: v,
            timestamp,
            headers,
        })
    }
}

/// New key from the key and value.
pub(crate) struct SelectKey<F, K2> {
    pub f: Arc<F>,
    pub _out: PhantomData<fn() -> K2>,
}

impl<K: Data, V: Data, K2: Data, F> Processor<K, V> for SelectKey<F, K2>
where
    F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
{
    type KOut = K2;
    type VOut = V;

    #[inline]
    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K2, V>,
    ) -> Result<(), StreamsError> {
        let k = (self.f)(&r.key, &r.value);
        ctx.forward(r.with_key(k))
    }
}
