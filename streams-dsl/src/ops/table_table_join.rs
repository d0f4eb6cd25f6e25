//! `KTable::join`, `left_join` and `outer_join`: one processor per side looks the other side's store up for each
//! change of its side; a merge node joins their outputs (and keeps the result in a store when materialized).

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::{ValueAndTimestamp, NO_TIMESTAMP};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::stream_aggregate::missing_store;
use crate::ops::{RowReader, TableStore};

/// The processor of one side ("this" side, values `VT`) of a table-table join; `VO` is the other side, whose
/// rows are read from its store.
///
/// A joined row exists when both sides do, when only this side does and `this_outer` is set, or when only the
/// other side does and `other_outer` is set (inner join: neither; left join: the left side's processor has
/// `this_outer`, the right side's `other_outer`; outer join: both). `joiner(this, other)` computes it (and
/// answers `None` only for combinations that make no row).
pub(crate) struct TableTableJoin<K, VT, VO, VR, F> {
    pub other_store_name: Arc<str>,
    pub joiner: Arc<F>,
    pub this_outer: bool,
    pub other_outer: bool,
    pub send_old: bool,
    pub store: Option<RowReader<K, VO>>,
    pub _p: PhantomData<fn() -> (VT, VR)>,
}

impl<K, VT, VO, VR, F> TableTableJoin<K, VT, VO, VR, F>
where
    F: Fn(Option<&VT>, Option<&VO>) -> Option<VR>,
{
    fn joined(&self, this: Option<&VT>, other: Option<&VO>) -> Option<VR> {
        let exists = match (this, other) {
            (Some(_), Some(_)) => true,
            (Some(_), None) => self.this_outer,
            (None, Some(_)) => self.other_outer,
            (None, None) => false,
        };
        if exists {
            (self.joiner)(this, other)
        } else {
            None
        }
    }
}

impl<K: Data, VT: Data, VO: Data, VR: Data, F> Processor<K, Change<VT>>
    for TableTableJoin<K, VT, VO, VR, F>
where
    F: Fn(Option<&VT>, Option<&VO>) -> Option<VR> + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = Change<VR>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<VR>>) -> Result<(), StreamsError> {
        self.store = Some(RowReader::open(ctx, &self.other_store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, Change<VT>>,
        ctx: &mut ProcessorContext<K, Change<VR>>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("table-table join"))?;
        let other_row = store.get(&r.key)?;
        // A joined row is as recent as the later of its two sides (Kafka's KTableKTable*Join processors).
        let timestamp = r
            .timestamp
            .max(other_row.as_ref().map_or(NO_TIMESTAMP, |o| o.timestamp));
        let other = other_row.map(ValueAndTimestamp::into_value);
        if !r.value.is_latest {
            // An out-of-order update of a versioned table joins nothing (Kafka's KTableKTable*Join).
            return Ok(());
        }
        let Change { new, old, .. } = &r.value;
        // Whether the key can have a joined row before or after this change. With the other side present it
        // can (this side is present now or just went away, which deletes the joined row); with it absent only
        // when this side alone makes a row.
        let relevant = other.is_some() || (self.this_outer && (new.is_some() || old.is_some()));
        if !relevant {
            return Ok(());
        }
        let new_joined = self.joined(new.as_ref(), other.as_ref());
        let old_joined = if self.send_old {
            self.joined(old.as_ref(), other.as_ref())
        } else {
            None
        };
        ctx.forward(Record {
            key: r.key,
            value: Change::new(new_joined, old_joined),
            timestamp,
            headers: r.headers,
        })
    }
}

/// Where both sides' joined changes meet: the node of the joined table. Keeps its rows in a store when the
/// join is materialized.
pub(crate) struct JoinMerge<K, VR> {
    pub store_name: Option<Arc<str>>,
    pub send_old: bool,
    pub store: Option<TableStore<K, VR>>,
}

impl<K: Data, VR: Data> Processor<K, Change<VR>> for JoinMerge<K, VR> {
    type KOut = K;
    type VOut = Change<VR>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<VR>>) -> Result<(), StreamsError> {
        if let Some(name) = &self.store_name {
            self.store = Some(TableStore::open(ctx, name, self.send_old)?);
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<K, Change<VR>>) -> Result<(), StreamsError> {
        match self.store.as_mut() {
            Some(store) => store.flush(ctx),
            None => Ok(()),
        }
    }

    fn process(
        &mut self,
        r: Record<K, Change<VR>>,
        ctx: &mut ProcessorContext<K, Change<VR>>,
    ) -> Result<(), StreamsError> {
        if self.store_name.is_some() {
            let store = self
                .store
                .as_mut()
                .ok_or_else(|| missing_store("table-table join"))?;
            let Record {
                key,
                value: Change { new, old, .. },
                timestamp,
                headers,
            } = r;
            return store.write_and_forward(ctx, key, new, old, timestamp, headers);
        }
        ctx.forward(r)
    }
}
