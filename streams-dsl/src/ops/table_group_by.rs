//! `KTable::group_by`: re-key each row; an update retracts the old row from its group and adds the new one.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Data, Processor, ProcessorContext, Record, SharedSerde, StreamsError};

use crate::change::Change;

pub(crate) struct TableGroupBy<F, K2, V2> {
    pub f: Arc<F>,
    /// Group keys are compared by their encoding (what the repartition topic and the aggregate's store see);
    /// without a serde an update always goes as a retraction and an addition.
    pub key_serde: Option<SharedSerde<K2>>,
    pub bufs: (Vec<u8>, Vec<u8>),
    pub _p: PhantomData<fn() -> (K2, V2)>,
}

impl<K: Data, V: Data, K2: Data, V2: Data, F> Processor<K, Change<V>> for TableGroupBy<F, K2, V2>
where
    F: Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
{
    type KOut = K2;
    type VOut = Change<V2>;

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K2, Change<V2>>,
    ) -> Result<(), StreamsError> {
        if !r.value.is_latest {
            // An out-of-order update of a versioned table changes no group (Kafka's KTableRepartitionMap).
            return Ok(());
        }
        let old = r.value.old.as_ref().map(|old| (self.f)(&r.key, old));
        let new = r.value.new.as_ref().map(|new| (self.f)(&r.key, new));
        let same_group = match (&old, &new, &self.key_serde) {
            (Some((old_key, _)), Some((new_key, _)), Some(serde)) => {
                let (a, b) = &mut self.bufs;
                a.clear();
                b.clear();
                serde.serialize(old_key, a).is_ok() && serde.serialize(new_key, b).is_ok() && a == b
            }
            _ => false,
        };
        match (old, new) {
            // The row stays in its group: one update carries both, so the aggregate subtracts and adds in one
            // step and emits once (KIP-904; Kafka's KTableRepartitionMap since 3.5).
            (Some((_, old_value)), Some((new_key, new_value))) if same_group => {
                ctx.forward(Record {
                    key: new_key,
                    value: Change::new(Some(new_value), Some(old_value)),
                    timestamp: r.timestamp,
                    headers: r.headers,
                })?;
            }
            (old, new) => {
                // The retraction goes first, to the old group; then the addition to the new one.
                if let Some((k2, v2)) = old {
                    ctx.forward(Record {
                        key: k2,
                        value: Change::new(None, Some(v2)),
                        timestamp: r.timestamp,
                        headers: r.headers.clone(),
                    })?;
                }
                if let Some((k2, v2)) = new {
                    ctx.forward(Record {
                        key: k2,
                        value: Change::new(Some(v2), None),
                        timestamp: r.timestamp,
                        headers: r.headers,
                    })?;
                }
            }
        }
        Ok(())
    }
}
