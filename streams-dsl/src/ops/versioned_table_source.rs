//! `StreamsBuilder::table` materialized as a versioned store (KIP-914): every update goes into the store's
//! history at its timestamp and is forwarded; one older than the key's latest version is forwarded marked as not
//! the latest (`Change::is_latest`), which re-grouping and joins ignore.

use std::sync::Arc;

use state_store::{VersionedKeyValueStore, VersionedPut};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::stream_aggregate::missing_store;

pub(crate) struct VersionedTableSource<K, V> {
    pub store_name: Arc<str>,
    pub send_old: bool,
    pub store: Option<VersionedKeyValueStore<K, V>>,
}

impl<K: Data, V: Data> Processor<K, Option<V>> for VersionedTableSource<K, V> {
    type KOut = K;
    type VOut = Change<V>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        self.store = Some(ctx.versioned_key_value_store(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<K, Change<V>>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("versioned table source"))?;
        // The latest row before this update, as Kafka's KTableSource reads it.
        let old = store.get(&r.key)?.map(|v| v.value);
        match store.put(&r.key, r.value.as_ref(), r.timestamp)? {
            VersionedPut::Latest => {
                if r.value.is_none() && old.is_none() {
                    // Deleting an absent row changes nothing downstream (as for unversioned tables).
                    return Ok(());
                }
                let old = if self.send_old { old } else { None };
                ctx.forward(Record {
                    key: r.key,
                    value: Change::new(r.value, old),
                    timestamp: r.timestamp,
                    headers: r.headers,
                })
            }
            // Out of order: kept in the history for lookups as of its time, not a change of the table's
            // current rows.
            // An out-of-order update: kept in the history and forwarded marked as not the latest, with the
            // latest version as its old value (Kafka's KTableSource on a versioned store).
            VersionedPut::ValidTo(_) => {
                let old = if self.send_old { old } else { None };
                ctx.forward(Record {
                    key: r.key,
                    value: Change::new(r.value, old).latest(false),
                    timestamp: r.timestamp,
                    headers: r.headers,
                })
            }
            VersionedPut::NotPut => {
                ctx.record_dropped(
                    "table update older than the versioned store's history retention",
                );
                Ok(())
            }
        }
    }
}
