//! The right side of a foreign-key join, co-partitioned with the right table: it records which left keys
//! subscribe to each foreign key and answers them, on subscription and whenever the right row changes.

use std::sync::Arc;

use state_store::{KeyRange, StoreError, TypedKeyValueStore};
use streams_core::{Data, Processor, ProcessorContext, Record, SharedSerde, StreamsError};

use crate::change::Change;
use crate::ops::fk_wire::{
    decode_subscriber, encode_subscriber, subscription_prefix, Instruction, Response, Subscription,
};
use crate::ops::stream_aggregate::missing_store;

type Bytes = Vec<u8>;

fn open(
    ctx: &ProcessorContext<Bytes, Response<Bytes>>,
    name: &str,
) -> Result<TypedKeyValueStore<Bytes, Bytes>, StreamsError> {
    ctx.key_value_store(name)
}

fn corrupt(store: &str) -> StreamsError {
    StreamsError::Store(StoreError::Serde {
        store: store.to_string(),
        source: state_store::SerdeError::new(
            "foreign-key join subscriber",
            state_store::SerdeErrorKind::Other,
            "subscription entry is not 20 bytes (hash and partition)",
        ),
    })
}

/// Handles subscriptions: (un)registers `(foreign key, left key)` and answers with the current right value.
/// Works on bytes: foreign keys, left keys and right values are passed through without decoding.
pub(crate) struct FkSubscriptionReceive {
    pub subscription_store: Arc<str>,
    pub right_store: Arc<str>,
    pub subs: Option<TypedKeyValueStore<Bytes, Bytes>>,
    pub right: Option<TypedKeyValueStore<Bytes, Bytes>>,
    pub key_buf: Vec<u8>,
}

impl Processor<Bytes, Subscription<Bytes>> for FkSubscriptionReceive {
    type KOut = Bytes;
    type VOut = Response<Bytes>;

    fn init(
        &mut self,
        ctx: &mut ProcessorContext<Bytes, Response<Bytes>>,
    ) -> Result<(), StreamsError> {
        self.subs = Some(open(ctx, &self.subscription_store)?);
        self.right = Some(open(ctx, &self.right_store)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<Bytes, Subscription<Bytes>>,
        ctx: &mut ProcessorContext<Bytes, Response<Bytes>>,
    ) -> Result<(), StreamsError> {
        let (Some(subs), Some(right)) = (self.subs.as_mut(), self.right.as_mut()) else {
            return Err(missing_store("foreign-key join subscriptions"));
        };
        let s = r.value;
        subscription_prefix(&r.key, &mut self.key_buf);
        self.key_buf.extend_from_slice(&s.key);
        if s.instruction == Instruction::Unsubscribe {
            subs.delete(&self.key_buf)?;
            return Ok(());
        }
        subs.put(&self.key_buf, &encode_subscriber(s.hash, s.partition))?;
        let value = right.get(&r.key)?;
        if value.is_none() && s.instruction == Instruction::SubscribeIfPresent {
            return Ok(());
        }
        ctx.forward(Record {
            key: s.key,
            value: Response {
                hash: Some(s.hash),
                partition: s.partition,
                value,
            },
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

/// Handles right-table changes: keeps the join's copy of the right rows and answers every left key subscribed
/// to the changed foreign key.
pub(crate) struct FkRightUpdate<KO, VO> {
    pub subscription_store: Arc<str>,
    pub right_store: Arc<str>,
    pub key_serde: SharedSerde<KO>,
    pub value_serde: SharedSerde<VO>,
    pub subs: Option<TypedKeyValueStore<Bytes, Bytes>>,
    pub right: Option<TypedKeyValueStore<Bytes, Bytes>>,
    pub key_buf: Vec<u8>,
    pub prefix: Vec<u8>,
}

impl<KO: Data, VO: Data> FkRightUpdate<KO, VO> {
    fn serde_error(&self, source: state_store::SerdeError) -> StreamsError {
        StreamsError::Store(StoreError::Serde {
            store: self.right_store.to_string(),
            source,
        })
    }
}

impl<KO: Data, VO: Data> Processor<KO, Change<VO>> for FkRightUpdate<KO, VO> {
    type KOut = Bytes;
    type VOut = Response<Bytes>;

    fn init(
        &mut self,
        ctx: &mut ProcessorContext<Bytes, Response<Bytes>>,
    ) -> Result<(), StreamsError> {
        self.subs = Some(open(ctx, &self.subscription_store)?);
        self.right = Some(open(ctx, &self.right_store)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<KO, Change<VO>>,
        ctx: &mut ProcessorContext<Bytes, Response<Bytes>>,
    ) -> Result<(), StreamsError> {
        if !r.value.is_latest {
            // An out-of-order update of a versioned table joins nothing (Kafka's ForeignTableJoinProcessorSupplier).
            return Ok(());
        }
        self.key_buf.clear();
        let res = self.key_serde.serialize(&r.key, &mut self.key_buf);
        res.map_err(|e| self.serde_error(e))?;
        let value = match &r.value.new {
            Some(v) => {
                let mut bytes = Vec::new();
                let res = self.value_serde.serialize(v, &mut bytes);
                res.map_err(|e| self.serde_error(e))?;
                Some(bytes)
            }
            None => None,
        };
        let (Some(subs), Some(right)) = (self.subs.as_mut(), self.right.as_mut()) else {
            return Err(missing_store("foreign-key join right rows"));
        };
        match &value {
            Some(v) => right.put(&self.key_buf, v)?,
            None => {
                if right.delete(&self.key_buf)?.is_none() {
                    return Ok(()); // deleting an absent row changes nothing
                }
            }
        }
        subscription_prefix(&self.key_buf, &mut self.prefix);
        let subscribers = subs.scan(&KeyRange::prefix(&self.prefix), false, usize::MAX)?;
        let skip = self.prefix.len();
        for (key, sub) in subscribers {
            let (hash, partition) =
                decode_subscriber(&sub).ok_or_else(|| corrupt(&self.subscription_store))?;
            ctx.forward(Record {
                key: key[skip..].to_vec(),
                value: Response {
                    hash: Some(hash),
                    partition,
                    value: value.clone(),
                },
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            })?;
        }
        Ok(())
    }
}
