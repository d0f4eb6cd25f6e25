//! The end of a foreign-key join, on the left table's partitions: applies a response when the left row still is
//! the one that subscribed (same value hash), joins, and keeps the result table.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::{StoreError, TypedKeyValueStore, ValueAndTimestamp};
use streams_core::{Data, Processor, ProcessorContext, Record, SharedSerde, StreamsError};

use crate::change::Change;
use crate::ops::fk_wire::{value_hash, Response};
use crate::ops::put_timestamped;
use crate::ops::stream_aggregate::missing_store;

/// `joiner(left value, right value or None) -> result or None (no result row)`.
pub(crate) struct FkResolve<K, V, VO, VR, J> {
    pub joiner: Arc<J>,
    pub value_serde: SharedSerde<V>,
    pub left_store: Arc<str>,
    pub result_store: Arc<str>,
    pub send_old: bool,
    pub left: Option<TypedKeyValueStore<K, V>>,
    pub result: Option<TypedKeyValueStore<K, ValueAndTimestamp<VR>>>,
    pub buf: Vec<u8>,
    pub _p: PhantomData<fn(VO)>,
}

impl<K: Data, V: Data, VO: Data, VR: Data, J> Processor<K, Response<VO>>
    for FkResolve<K, V, VO, VR, J>
where
    J: Fn(&V, Option<&VO>) -> Option<VR> + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = Change<VR>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<VR>>) -> Result<(), StreamsError> {
        self.left = Some(ctx.key_value_store(&self.left_store)?);
        self.result = Some(ctx.key_value_store(&self.result_store)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, Response<VO>>,
        ctx: &mut ProcessorContext<K, Change<VR>>,
    ) -> Result<(), StreamsError> {
        let (Some(left), Some(result)) = (self.left.as_mut(), self.result.as_mut()) else {
            return Err(missing_store("foreign-key join result"));
        };
        let current = left.get(&r.key)?;
        let current_hash = match &current {
            Some(v) => {
                self.buf.clear();
                self.value_serde
                    .serialize(v, &mut self.buf)
                    .map_err(|source| {
                        StreamsError::Store(StoreError::Serde {
                            store: self.left_store.to_string(),
                            source,
                        })
                    })?;
                Some(value_hash(&self.buf))
            }
            None => None,
        };
        if current_hash != r.value.hash {
            // An answer to a subscription the left row has since replaced: its own answer is on the way.
            tracing::trace!(
                node = ctx.name(),
                "dropping a stale foreign-key join response"
            );
            return Ok(());
        }
        let new = current.and_then(|v| (self.joiner)(&v, r.value.value.as_ref()));
        let old = result.get(&r.key)?.map(ValueAndTimestamp::into_value);
        if new.is_none() && old.is_none() {
            return Ok(()); // no result before, none now
        }
        let new = put_timestamped(result, &r.key, new, r.timestamp)?;
        ctx.forward(Record {
            key: r.key,
            value: Change::new(new, old.filter(|_| self.send_old)),
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}
