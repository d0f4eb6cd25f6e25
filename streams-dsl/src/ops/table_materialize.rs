//! Keeps the rows of a table that has no store of its own (a `filter` or `map_values` without `Materialized`) in
//! a store, so that joins can look its rows up; forwards each change unchanged.

use std::sync::Arc;

use state_store::{TypedKeyValueStore, ValueAndTimestamp};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::put_timestamped;
use crate::ops::stream_aggregate::missing_store;

pub(crate) struct TableMaterialize<K, V> {
    pub store_name: Arc<str>,
    pub store: Option<TypedKeyValueStore<K, ValueAndTimestamp<V>>>,
}

impl<K: Data, V: Data> Processor<K, Change<V>> for TableMaterialize<K, V> {
    type KOut = K;
    type VOut = Change<V>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K, Change<V>>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("table materialization"))?;
        let Record {
            key,
            value:
                Change {
                    new,
                    old,
                    is_latest,
                },
            timestamp,
            headers,
        } = r;
        let new = put_timestamped(store, &key, new, timestamp)?;
        ctx.forward(Record {
            key,
            value: Change::new(new, old).latest(is_latest),
            timestamp,
            headers,
        })
    }
}

/// Keeps the rows of a table derived without a store of its own from a versioned table (a `filter` or
/// `map_values` of it) in a versioned store of the same history retention, so that a stream-table join reads
/// the derived table as of each record's time: Kafka Streams' derived tables inherit their source's versioned
/// value getter. Every change is put at its timestamp, out-of-order ones included; each is forwarded unchanged.
pub(crate) struct VersionedTableMaterialize<K, V> {
    pub store_name: Arc<str>,
    pub store: Option<state_store::VersionedKeyValueStore<K, V>>,
}

impl<K: Data, V: Data> Processor<K, Change<V>> for VersionedTableMaterialize<K, V> {
    type KOut = K;
    type VOut = Change<V>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        self.store = Some(ctx.versioned_key_value_store(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K, Change<V>>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("versioned table materialization"))?;
        // A version older than the history retention is not kept (the source dropped and counted it already).
        store.put(&r.key, r.value.new.as_ref(), r.timestamp)?;
        ctx.forward(r)
    }
}
