//! Timestamp extractors: which time a record carries into windows, joins and stream time.

use crate::record::Record;

/// Chooses a record's event time. The record passed in carries the timestamp written by the producer (or the
/// broker, for log-append-time topics); `partition_time` is the highest timestamp extracted so far on the same
/// partition (-1 before the first).
///
/// A negative result fails the task with [`StreamsError::InvalidTimestamp`](crate::StreamsError::InvalidTimestamp).
/// Any `Fn(&Record<K, V>, i64) -> i64` closure is an extractor:
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
}

impl<K, V, F> TimestampExtractor<K, V> for F
where
    F: Fn(&Record<K, V>, i64) -> i64 + Send + Sync + 'static,
{
    fn extract(&self, record: &Record<K, V>, partition_time: i64) -> i64 {
        self(record, partition_time)
    }
}

/// The default: the record's own timestamp.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordTimestamp;

impl<K, V> TimestampExtractor<K, V> for RecordTimestamp {
    fn extract(&self, record: &Record<K, V>, _partition_time: i64) -> i64 {
        record.timestamp
    }
}

/// The record's timestamp, or the partition time when the record's is negative (invalid).
#[derive(Debug, Clone, Copy, Default)]
pub struct UsePartitionTimeOnInvalid;

impl<K, V> TimestampExtractor<K, V> for UsePartitionTimeOnInvalid {
    fn extract(&self, record: &Record<K, V>, partition_time: i64) -> i64 {
        if record.timestamp >= 0 {
            record.timestamp
        } else {
            partition_time.max(0)
        }
    }
}
