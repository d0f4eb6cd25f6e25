//! The left side of a foreign-key join: turn each left-row change into subscriptions (keyed by the foreign key)
//! and, where no answer from the right side is needed, into an immediate local response.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::{StoreError, TypedKeyValueStore};
use streams_core::{Data, Processor, ProcessorContext, Record, SharedSerde, StreamsError};

use crate::change::Change;
use crate::ops::fk_wire::{value_hash, Instruction, Response, Subscription};
use crate::ops::stream_aggregate::missing_store;

/// What one left change asks for.
#[derive(Debug, Clone)]
pub(crate) enum LeftEvent<KO> {
    /// Send this subscription to the right side, keyed by `foreign_key`.
    Subscription {
        foreign_key: KO,
        instruction: Instruction,
        hash: u128,
    },
    /// Resolve the row now, as if the right side had answered "no right row" (`hash: None`: the row is gone).
    Local { hash: Option<u128> },
}

/// Keeps the left rows (the join's own copy, to know a row's previous foreign key and to join responses) and
/// emits [`LeftEvent`]s.
pub(crate) struct FkSubscriptionSend<K, V, KO, F> {
    pub extractor: Arc<F>,
    pub value_serde: SharedSerde<V>,
    pub foreign_key_serde: SharedSerde<KO>,
    pub left_store: Arc<str>,
    /// Inner join: a row that had no result needs an answer only when the right row exists.
    pub inner: bool,
    pub store: Option<TypedKeyValueStore<K, V>>,
    pub buf: Vec<u8>,
    pub old_fk: Vec<u8>,
    pub _p: PhantomData<fn() -> KO>,
}

impl<K, V, KO, F> FkSubscriptionSend<K, V, KO, F> {
    fn serde_error(&self, source: state_store::SerdeError) -> StreamsError {
        StreamsError::Store(StoreError::Serde {
            store: self.left_store.to_string(),
            source,
        })
    }
}

impl<K: Data, V: Data, KO: Data, F> Processor<K, Change<V>> for FkSubscriptionSend<K, V, KO, F>
where
    F: Fn(&V) -> Option<KO> + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = LeftEvent<KO>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, LeftEvent<KO>>) -> Result<(), StreamsError> {
        self.store = Some(ctx.key_value_store(&self.left_store)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K, LeftEvent<KO>>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("foreign-key join"))?;
        let old = store.get(&r.key)?;
        let new = r.value.new;
        match &new {
            Some(v) => store.put(&r.key, v)?,
            None if old.is_none() => return Ok(()), // deleting an absent row changes nothing
            None => {
                store.delete(&r.key)?;
            }
        }
        let old_fk = old.as_ref().and_then(|v| (self.extractor)(v));
        let new_fk = new.as_ref().and_then(|v| (self.extractor)(v));
        let hash = match &new {
            Some(v) => {
                self.buf.clear();
                let res = self.value_serde.serialize(v, &mut self.buf);
                res.map_err(|e| self.serde_error(e))?;
                Some(value_hash(&self.buf))
            }
            None => None,
        };
        // Foreign keys compare by their bytes, as they are partitioned.
        let mut same_fk = false;
        if let Some(ofk) = &old_fk {
            self.old_fk.clear();
            let res = self.foreign_key_serde.serialize(ofk, &mut self.old_fk);
            res.map_err(|e| self.serde_error(e))?;
            if let Some(nfk) = &new_fk {
                self.buf.clear();
                let res = self.foreign_key_serde.serialize(nfk, &mut self.buf);
                res.map_err(|e| self.serde_error(e))?;
                same_fk = self.buf == self.old_fk;
            }
        }
        // An inner join had no result for a row without a foreign key: nothing to take back if the right row is
        // missing.
        let had_fk = old_fk.is_some();
        if let (Some(ofk), false) = (old_fk, same_fk) {
            ctx.forward(Record {
                key: r.key.clone(),
                value: LeftEvent::Subscription {
                    foreign_key: ofk,
                    instruction: Instruction::Unsubscribe,
                    hash: 0,
                },
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            })?;
        }
        let event = match (new_fk, hash) {
            (Some(foreign_key), Some(hash)) => LeftEvent::Subscription {
                foreign_key,
                instruction: if self.inner && !had_fk {
                    Instruction::SubscribeIfPresent
                } else {
                    Instruction::Subscribe
                },
                hash,
            },
            (_, hash) => LeftEvent::Local { hash },
        };
        ctx.forward(Record {
            key: r.key,
            value: event,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

/// Passes on the subscriptions of [`LeftEvent`]s, keyed by foreign key.
pub(crate) struct ToSubscription<KO> {
    pub _p: PhantomData<fn() -> KO>,
}

impl<K: Data, KO: Data> Processor<K, LeftEvent<KO>> for ToSubscription<KO> {
    type KOut = KO;
    type VOut = Subscription<K>;

    fn process(
        &mut self,
        r: Record<K, LeftEvent<KO>>,
        ctx: &mut ProcessorContext<KO, Subscription<K>>,
    ) -> Result<(), StreamsError> {
        let LeftEvent::Subscription {
            foreign_key,
            instruction,
            hash,
        } = r.value
        else {
            return Ok(());
        };
        let partition = ctx.task_id().partition;
        ctx.forward(Record {
            key: foreign_key,
            value: Subscription {
                instruction,
                hash,
                partition,
                key: r.key,
            },
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

/// Passes on the local responses of [`LeftEvent`]s, to the same resolver as the right side's responses.
pub(crate) struct ToLocalResponse<VO> {
    pub _p: PhantomData<fn() -> VO>,
}

impl<K: Data, KO: Data, VO: Data> Processor<K, LeftEvent<KO>> for ToLocalResponse<VO> {
    type KOut = K;
    type VOut = Response<VO>;

    fn process(
        &mut self,
        r: Record<K, LeftEvent<KO>>,
        ctx: &mut ProcessorContext<K, Response<VO>>,
    ) -> Result<(), StreamsError> {
        let LeftEvent::Local { hash } = r.value else {
            return Ok(());
        };
        let partition = ctx.task_id().partition;
        ctx.forward(Record {
            key: r.key,
            value: Response {
                hash,
                partition,
                value: None,
            },
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}
