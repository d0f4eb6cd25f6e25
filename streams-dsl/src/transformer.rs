//! Value transformers for [`KTable::transform_values`](crate::KTable::transform_values) (Kafka Streams'
//! `ValueTransformerWithKey`).

use state_store::TypedKeyValueStore;
use streams_core::{Data, ProcessorContext, RecordMetadata, StreamsError, TaskId};

use crate::change::Change;

/// What a [`ValueTransformerWithKey`] can reach: the stores named in `transform_values`, the current record's
/// timestamp and metadata, and the task's clocks. It cannot forward: the operator forwards what `transform`
/// returns.
pub struct ValueTransformerContext<'a, K, V> {
    pub(crate) inner: &'a ProcessorContext<K, Change<V>>,
    pub(crate) timestamp: i64,
}

impl<K: Data, V: Data> ValueTransformerContext<'_, K, V> {
    /// The typed key-value store `store`, which must be named in the `transform_values` call.
    pub fn key_value_store<SK: 'static, SV: 'static>(
        &self,
        store: &str,
    ) -> Result<TypedKeyValueStore<SK, SV>, StreamsError> {
        self.inner.key_value_store(store)
    }

    /// The timestamp of the table update being transformed (-1 in `init`).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Topic, partition and offset of the record being processed, when known.
    pub fn record_metadata(&self) -> Option<RecordMetadata> {
        self.inner.record_metadata()
    }

    /// The task's stream time.
    pub fn stream_time(&self) -> i64 {
        self.inner.stream_time()
    }

    /// Wall-clock time in ms (the test driver's mock clock under test).
    pub fn wall_clock_time(&self) -> i64 {
        self.inner.wall_clock_time()
    }

    /// The task this transformer instance belongs to.
    pub fn task_id(&self) -> TaskId {
        self.inner.task_id()
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        self.inner.application_id()
    }
}

/// Computes a table row's new value from its key and value, possibly with state (Kafka Streams'
/// `ValueTransformerWithKey`, as `KTable#transformValues` uses it). One instance exists per task.
///
/// `transform` sees the value `None` for a deletion and returns the transformed row, `None` for none (a
/// deletion downstream). When a downstream operator needs old values (grouping the table does) and the result
/// is not materialized, the old value is computed by calling `transform` on the old value too, as Kafka Streams
/// does: a stateful transformer should then be materialized, so that the old value comes from the store
/// instead.
pub trait ValueTransformerWithKey<K, V>: 'static {
    /// The transformed value type.
    type VOut: Data;

    /// Called once before the first record: fetch stores.
    fn init(
        &mut self,
        _ctx: &ValueTransformerContext<'_, K, Self::VOut>,
    ) -> Result<(), StreamsError> {
        Ok(())
    }

    /// The new value of the row of `key` whose value is now `value` (`None`: deleted).
    fn transform(
        &mut self,
        key: &K,
        value: Option<&V>,
        ctx: &ValueTransformerContext<'_, K, Self::VOut>,
    ) -> Result<Option<Self::VOut>, StreamsError>;

    /// Called once when the task closes.
    fn close(&mut self) -> Result<(), StreamsError> {
        Ok(())
    }
}
