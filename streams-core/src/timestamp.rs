//! Timestamp extractors: which time a record carries into windows, joins and stream time.

use crate::record::Record;

/// Chooses a record's event time. The record passed in carries the timestamp written by the producer (or the
/// broker, for log-append-time topics); `partition_time` is the highest timestamp extracted so far on the same
/// partition (-1 before the first).
///
/// A negative result is an invalid timestamp: what follows is the extractor's
/// [`on_invalid`](TimestampExtractor::on_invalid) choice, by default failing the task with
/// [`StreamsError::InvalidTimestamp`](crate::StreamsError::InvalidTimestamp) naming the record's topic, partition and
/// offset (as Kafka Streams' `FailOnInvalidTimestamp`); [`LogAndSkipOnInvalidTimestamp`] skips such records (counted
/// in `skipped_records`), [`UsePartitionTimeOnInvalid`] replaces the timestamp with the partition time. A record is
/// never processed with a negative timestamp. Any `Fn(&Record<K, V>, i64) -> i64` closure is an extractor:
///
/// ```
/// use streams_core::{Record, TimestampExtractor};
///
/// struct Order { placed_at: i64 }
/// let by_order_time = |r: &Record<String, Order>, _partition_time: i64| r.value.placed_at;
/// let rec = Record::new("o1".to_string(), Order { placed_at: 42 }, 7);
/// assert_eq!(by_order_time.extract(&rec, -1), 42);
/// ```
pub trait TimestampExtractor<K, V>: Send + Sync + 'static {
    /// The event time of `record`.
    fn extract(&self, record: &Record<K, V>, partition_time: i64) -> i64;

    /// What happens to a record whose extracted timestamp is negative: [`InvalidTimestampAction::Fail`] unless the
    /// extractor says otherwise.
    fn on_invalid(&self) -> InvalidTimestampAction {
        InvalidTimestampAction::Fail
    }
}

/// What happens to a record whose extracted timestamp is negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidTimestampAction {
    /// The task fails with [`StreamsError::InvalidTimestamp`](crate::StreamsError::InvalidTimestamp).
    Fail,
    /// The record is skipped, logged and counted in the task's `skipped_records`.
    Skip,
}

impl<K, V, F> TimestampExtractor<K, V> for F
where
    F: Fn(&Record<K, V>, i64) -> i64 + Send + Sync + 'static,
{
    fn extract(&self, record: &Record<K, V>, partition_time: i64) -> i64 {
        self(record, partition_time)
    }
}

/// The default: the record's own timestamp; a record without one (negative, as librdkafka reports a missing
/// timestamp) fails the task, as Kafka Streams' `FailOnInvalidTimestamp`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordTimestamp;

impl<K, V> TimestampExtractor<K, V> for RecordTimestamp {
    fn extract(&self, record: &Record<K, V>, _partition_time: i64) -> i64 {
        record.timestamp
    }
}

/// Kafka Streams' name for the default: the same as [`RecordTimestamp`] (a record without a valid timestamp fails
/// the task), to name it explicitly.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailOnInvalidTimestamp;

impl<K, V> TimestampExtractor<K, V> for FailOnInvalidTimestamp {
    fn extract(&self, record: &Record<K, V>, _partition_time: i64) -> i64 {
        record.timestamp
    }
}

/// The record's own timestamp; a record without a valid one is skipped, logged and counted in `skipped_records`
/// (Kafka Streams' `LogAndSkipOnInvalidTimestamp`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndSkipOnInvalidTimestamp;

impl<K, V> TimestampExtractor<K, V> for LogAndSkipOnInvalidTimestamp {
    fn extract(&self, record: &Record<K, V>, _partition_time: i64) -> i64 {
        record.timestamp
    }

    fn on_invalid(&self) -> InvalidTimestampAction {
        InvalidTimestampAction::Skip
    }
}

/// The record's timestamp, or the partition time (the highest timestamp seen so far on the partition) when the
/// record's is negative (Kafka Streams' `UsePartitionTimeOnInvalidTimestamp`). Before the partition's first valid
/// timestamp there is no partition time: the record's invalid timestamp is kept, and the task fails with
/// [`StreamsError::InvalidTimestamp`](crate::StreamsError::InvalidTimestamp), as Kafka Streams does.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsePartitionTimeOnInvalid;

impl<K, V> TimestampExtractor<K, V> for UsePartitionTimeOnInvalid {
    fn extract(&self, record: &Record<K, V>, partition_time: i64) -> i64 {
        if record.timestamp >= 0 || partition_time < 0 {
            record.timestamp
        } else {
            partition_time
        }
    }
}
