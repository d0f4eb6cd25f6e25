//! `KStream::to_table`: the latest value per key of a stream, as a table.

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::table_source::TableSource;

/// Upserts each record of a stream of plain values into the table's store (every value is an update; a stream
/// of `Option` values goes through [`TableSource`] itself, `None` deleting).
pub(crate) struct StreamToTable<K, V> {
    pub inner: TableSource<K, V>,
}

impl<K: Data, V: Data> Processor<K, V> for StreamToTable<K, V> {
    type KOut = K;
    type VOut = Change<V>;

    fn init(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        self.inner.init(ctx)
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<K, Change<V>>) -> Result<(), StreamsError> {
        self.inner.flush(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, Change<V>>,
    ) -> Result<(), StreamsError> {
        let Record {
            key,
            value,
            timestamp,
            headers,
        } = r;
        self.inner.process(
            Record {
                key,
                value: Some(value),
                timestamp,
                headers,
            },
            ctx,
        )
    }
}
