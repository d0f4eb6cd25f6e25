//! `KTable::to_stream`: each change as a record whose value is the new row (`None` for a deletion).

use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;

pub(crate) struct TableToStream;

impl<K: Data, V: Data> Processor<K, Change<V>> for TableToStream {
    type KOut = K;
    type VOut = Option<V>;

    #[inline]
    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<K, Option<V>>,
    ) -> Result<(), StreamsError> {
        let new = r.value.new;
        ctx.forward(Record {
            key: r.key,
            value: new,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}
