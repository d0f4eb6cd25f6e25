//! What happens to a record that cannot be deserialized.

use state_store::SerdeError;

/// Where the bad record was read.
#[derive(Debug, Clone, Copy)]
pub struct ErrorContext<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// "key" or "value".
    pub role: &'static str,
    /// The raw key.
    pub key: Option<&'a [u8]>,
    /// The raw value.
    pub value: Option<&'a [u8]>,
}

/// The handler's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeserializationResponse {
    /// Stop processing: the task fails with the deserialization error.
    Fail,
    /// Skip the record (it is counted in the task's `skipped_records`).
    Continue,
    /// Write the raw record to this dead-letter topic, with the error, source topic, partition, offset and
    /// failing part in headers (see the `DLQ_*_HEADER` constants), then skip it (counted).
    DeadLetter(String),
}

/// Header with the error message on dead-lettered records.
pub const DLQ_ERROR_HEADER: &str = "streams.error.message";
/// Header with the source topic on dead-lettered records.
pub const DLQ_TOPIC_HEADER: &str = "streams.error.topic";
/// Header with the source partition on dead-lettered records.
pub const DLQ_PARTITION_HEADER: &str = "streams.error.partition";
/// Header with the source offset on dead-lettered records.
pub const DLQ_OFFSET_HEADER: &str = "streams.error.offset";
/// Header saying whether the key or the value failed.
pub const DLQ_ROLE_HEADER: &str = "streams.error.role";

/// Send bad records to a dead-letter topic and go on.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    topic: String,
}

impl DeadLetterQueue {
    /// Dead-letters to `topic` (which must exist).
    pub fn new(topic: impl Into<String>) -> Self {
        DeadLetterQueue {
            topic: topic.into(),
        }
    }
}

impl DeserializationExceptionHandler for DeadLetterQueue {
    fn handle(&self, ctx: &ErrorContext<'_>, error: &SerdeError) -> DeserializationResponse {
        tracing::warn!(topic = ctx.topic, partition = ctx.partition, offset = ctx.offset, role = ctx.role,
            %error, dead_letter_topic = %self.topic, "cannot deserialize record; sending it to the dead-letter topic");
        DeserializationResponse::DeadLetter(self.topic.clone())
    }
}

/// Decides what to do with a record whose key or value cannot be deserialized. Never silent: whatever it decides,
/// the engine counts the record and logs it.
pub trait DeserializationExceptionHandler: Send + Sync + 'static {
    /// Handles one bad record.
    fn handle(&self, ctx: &ErrorContext<'_>, error: &SerdeError) -> DeserializationResponse;
}

/// The default: fail.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndFail;

impl DeserializationExceptionHandler for LogAndFail {
    fn handle(&self, ctx: &ErrorContext<'_>, error: &SerdeError) -> DeserializationResponse {
        tracing::error!(topic = ctx.topic, partition = ctx.partition, offset = ctx.offset, role = ctx.role,
            %error, "cannot deserialize record; failing");
        DeserializationResponse::Fail
    }
}

/// Log the record and go on with the next.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndContinue;

impl DeserializationExceptionHandler for LogAndContinue {
    fn handle(&self, ctx: &ErrorContext<'_>, error: &SerdeError) -> DeserializationResponse {
        tracing::warn!(topic = ctx.topic, partition = ctx.partition, offset = ctx.offset, role = ctx.role,
            %error, "cannot deserialize record; skipping it");
        DeserializationResponse::Continue
    }
}

/// A record the producer could not write to a sink topic.
#[derive(Debug, Clone, Copy)]
pub struct ProductionErrorContext<'a> {
    /// The destination topic.
    pub topic: &'a str,
    /// The destination partition, when known.
    pub partition: Option<i32>,
    /// The serialized key.
    pub key: Option<&'a [u8]>,
    /// The serialized value.
    pub value: Option<&'a [u8]>,
}

/// The production handler's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProductionResponse {
    /// Stop: the thread fails with the production error.
    Fail,
    /// Drop the record and go on (it is logged and counted in `streams_production_errors_skipped_total`).
    Continue,
}

/// Decides what to do with a record the broker or the producer refused for a reason of its own (too large,
/// invalid), as Kafka Streams' `ProductionExceptionHandler`. Only such record-specific errors reach it: a broker
/// that is unreachable, or a record for a changelog topic (whose loss would corrupt a store), always fails.
pub trait ProductionExceptionHandler: Send + Sync + 'static {
    /// Handles one refused record.
    fn handle(&self, ctx: &ProductionErrorContext<'_>, error: &str) -> ProductionResponse;
}

/// The default: fail.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultProductionExceptionHandler;

impl ProductionExceptionHandler for DefaultProductionExceptionHandler {
    fn handle(&self, ctx: &ProductionErrorContext<'_>, error: &str) -> ProductionResponse {
        tracing::error!(topic = ctx.topic, partition = ?ctx.partition, error, "cannot produce a record; failing");
        ProductionResponse::Fail
    }
}

/// Log the refused record (topic, partition and sizes; never its bytes) and go on.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndContinueProduction;

impl ProductionExceptionHandler for LogAndContinueProduction {
    fn handle(&self, ctx: &ProductionErrorContext<'_>, error: &str) -> ProductionResponse {
        tracing::warn!(topic = ctx.topic, partition = ?ctx.partition, key_bytes = ctx.key.map_or(0, <[u8]>::len),
            value_bytes = ctx.value.map_or(0, <[u8]>::len), error, "cannot produce a record; dropping it");
        ProductionResponse::Continue
    }
}
