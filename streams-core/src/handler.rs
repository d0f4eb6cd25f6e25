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
