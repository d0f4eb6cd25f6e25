//! Exception handlers, as Kafka Streams has them: what happens to a record that cannot be deserialized
//! ([`DeserializationExceptionHandler`]), whose processing failed ([`ProcessingExceptionHandler`], KIP-1033) or that
//! a sink topic refused ([`ProductionExceptionHandler`]), and the dead-letter records (KIP-1034) the built-in
//! handlers write when `errors.dead.letter.queue.topic.name` is set.

use state_store::SerdeError;

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::record::Headers;

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
    /// `errors.dead.letter.queue.topic.name`, when set: [`LogAndContinue`] answers
    /// [`DeserializationResponse::DeadLetter`] with it, [`LogAndFail`]
    /// [`DeserializationResponse::DeadLetterAndFail`].
    pub dead_letter_topic: Option<&'a str>,
}

/// The handler's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeserializationResponse {
    /// Stop processing: the task fails with the deserialization error.
    Fail,
    /// Skip the record (it is counted in the task's `skipped_records`).
    Continue,
    /// Write the raw record to this dead-letter topic, with the source record's headers and Kafka Streams' error
    /// headers (see [`DLQ_EXCEPTION_HEADER`] and the other `DLQ_*_HEADER` constants) plus [`DLQ_ROLE_HEADER`],
    /// then skip it (counted in `skipped_records` and `dead_lettered`).
    DeadLetter(String),
    /// Write the raw record to this dead-letter topic as [`DeserializationResponse::DeadLetter`] does, then fail
    /// as [`DeserializationResponse::Fail`] does ([`LogAndFail`] with `errors.dead.letter.queue.topic.name` set,
    /// as Kafka Streams' fail handlers write dead letters too).
    DeadLetterAndFail(String),
}

/// Header naming the error's type on dead-letter records: `streams_core::StreamsError::<variant>` (Kafka Streams
/// puts the exception class name there). Same name as Kafka Streams'.
pub const DLQ_EXCEPTION_HEADER: &str = "__streams.errors.exception";
/// Header with the error and its chain of causes, one per line, on dead-letter records (Rust errors carry no stack
/// trace; Kafka Streams puts the Java stack trace under the same name).
pub const DLQ_STACKTRACE_HEADER: &str = "__streams.errors.stacktrace";
/// Header with the error message on dead-letter records. Same name as Kafka Streams'.
pub const DLQ_MESSAGE_HEADER: &str = "__streams.errors.message";
/// Header with the error message on dead-letter records: the same header as [`DLQ_MESSAGE_HEADER`] (it was
/// `streams.error.message` before the dead-letter records took Kafka Streams' header names).
pub const DLQ_ERROR_HEADER: &str = DLQ_MESSAGE_HEADER;
/// Header with the source topic on dead-letter records (a null value when there was no source record).
pub const DLQ_TOPIC_HEADER: &str = "__streams.errors.topic";
/// Header with the source partition on dead-letter records, in decimal (`-1` when unknown).
pub const DLQ_PARTITION_HEADER: &str = "__streams.errors.partition";
/// Header with the source offset on dead-letter records, in decimal (`-1` when unknown).
pub const DLQ_OFFSET_HEADER: &str = "__streams.errors.offset";
/// Header saying whether the key or the value failed, on records dead-lettered for their deserialization. Not a
/// Kafka Streams header (it has none for this).
pub const DLQ_ROLE_HEADER: &str = "streams.error.role";

/// A record to write to a dead-letter topic, as a handler returns it (Kafka Streams' dead-letter queue records of
/// KIP-1034). It is sent through the task's producer, so it is written before the offsets of the failed record
/// are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// Destination topic (it must exist).
    pub topic: String,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Timestamp (ms); negative values are written as 0.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}

/// Where a failed record came from, for the headers of a dead-letter record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FailedSource<'a> {
    pub topic: Option<&'a str>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
}

/// The name of `error`'s variant, as `streams_core::StreamsError::<Variant>`.
pub(crate) fn error_type_name(error: &StreamsError) -> String {
    let debug = format!("{error:?}");
    let variant = debug
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default();
    format!("streams_core::StreamsError::{variant}")
}

/// `error` and its causes, one per line.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        out.push_str("\ncaused by: ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Adds Kafka Streams' six error headers to `headers` (after the source record's own) for `error`, named
/// `exception`.
pub(crate) fn add_error_headers(
    headers: &mut Headers,
    exception: &str,
    error: &(dyn std::error::Error + 'static),
    source: FailedSource<'_>,
) {
    add_error_headers_text(
        headers,
        exception,
        &error.to_string(),
        &error_chain(error),
        source,
    );
}

/// [`add_error_headers`] with the message and the chain of causes given as text.
pub(crate) fn add_error_headers_text(
    headers: &mut Headers,
    exception: &str,
    message: &str,
    stacktrace: &str,
    source: FailedSource<'_>,
) {
    headers.add(DLQ_EXCEPTION_HEADER, Some(exception.as_bytes().to_vec()));
    headers.add(DLQ_STACKTRACE_HEADER, Some(stacktrace.as_bytes().to_vec()));
    headers.add(DLQ_MESSAGE_HEADER, Some(message.as_bytes().to_vec()));
    headers.add(
        DLQ_TOPIC_HEADER,
        source.topic.map(|t| t.as_bytes().to_vec()),
    );
    headers.add(
        DLQ_PARTITION_HEADER,
        Some(source.partition.unwrap_or(-1).to_string().into_bytes()),
    );
    headers.add(
        DLQ_OFFSET_HEADER,
        Some(source.offset.unwrap_or(-1).to_string().into_bytes()),
    );
}

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

/// The default: fail. With `errors.dead.letter.queue.topic.name` set, the record is written there first (as
/// Kafka Streams' `LogAndFailExceptionHandler` does): a restarted instance fails on it again, and writes it again.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndFail;

impl DeserializationExceptionHandler for LogAndFail {
    fn handle(&self, ctx: &ErrorContext<'_>, error: &SerdeError) -> DeserializationResponse {
        tracing::error!(topic = ctx.topic, partition = ctx.partition, offset = ctx.offset, role = ctx.role,
            %error, dead_letter_topic = ?ctx.dead_letter_topic, "cannot deserialize record; failing");
        match ctx.dead_letter_topic {
            Some(t) => DeserializationResponse::DeadLetterAndFail(t.to_string()),
            None => DeserializationResponse::Fail,
        }
    }
}

/// Log the record and go on with the next.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndContinue;

/// With `errors.dead.letter.queue.topic.name` set, the record is also written to that topic (as
/// [`DeserializationResponse::DeadLetter`] does).
impl DeserializationExceptionHandler for LogAndContinue {
    fn handle(&self, ctx: &ErrorContext<'_>, error: &SerdeError) -> DeserializationResponse {
        tracing::warn!(topic = ctx.topic, partition = ctx.partition, offset = ctx.offset, role = ctx.role,
            %error, dead_letter_topic = ?ctx.dead_letter_topic, "cannot deserialize record; skipping it");
        match ctx.dead_letter_topic {
            Some(t) => DeserializationResponse::DeadLetter(t.to_string()),
            None => DeserializationResponse::Continue,
        }
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

/// The default: fail. With `errors.dead.letter.queue.topic.name` set, the source record is written there first,
/// as Kafka Streams' `DefaultProductionExceptionHandler` does (for records refused when they are sent; see
/// [`LogAndContinueProduction`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultProductionExceptionHandler;

impl ProductionExceptionHandler for DefaultProductionExceptionHandler {
    fn handle(&self, ctx: &ProductionErrorContext<'_>, error: &str) -> ProductionResponse {
        tracing::error!(topic = ctx.topic, partition = ?ctx.partition, error, "cannot produce a record; failing");
        ProductionResponse::Fail
    }
}

/// Log the refused record (topic, partition and sizes; never its bytes) and go on. With
/// `errors.dead.letter.queue.topic.name` set, the source record the refused one came from is written there, for a
/// record refused when it is sent (too large for `message.max.bytes`, say); one the broker refuses later, in a
/// delivery report, is dropped without a dead letter (its source record is gone by then).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndContinueProduction;

impl ProductionExceptionHandler for LogAndContinueProduction {
    fn handle(&self, ctx: &ProductionErrorContext<'_>, error: &str) -> ProductionResponse {
        tracing::warn!(topic = ctx.topic, partition = ?ctx.partition, key_bytes = ctx.key.map_or(0, <[u8]>::len),
            value_bytes = ctx.value.map_or(0, <[u8]>::len), error, "cannot produce a record; dropping it");
        ProductionResponse::Continue
    }
}

/// Where a record's processing failed (Kafka Streams' `ErrorHandlerContext`): the processor, the task, and the
/// source record being processed. During a punctuation there is no source record: `topic`, `partition` and
/// `offset` are `None`, and so are the source bytes.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ProcessingErrorContext<'a> {
    /// The processor node that failed.
    pub processor: &'a str,
    /// The task.
    pub task: TaskId,
    /// The source record's topic.
    pub topic: Option<&'a str>,
    /// The source record's partition.
    pub partition: Option<i32>,
    /// The source record's offset.
    pub offset: Option<i64>,
    /// The record's timestamp, or the punctuation's time.
    pub timestamp: i64,
    /// The source record's headers, as read.
    pub headers: Option<&'a Headers>,
    /// The source record's key bytes, as read. Kept only when a handler may use them: `None` under the default
    /// [`LogAndFailProcessing`] without a dead-letter topic (see
    /// [`ProcessingExceptionHandler::uses_source_bytes`]).
    pub source_key: Option<&'a [u8]>,
    /// The source record's value bytes, as read (kept under the same condition as `source_key`).
    pub source_value: Option<&'a [u8]>,
    /// `errors.dead.letter.queue.topic.name`, when set.
    pub dead_letter_topic: Option<&'a str>,
}

impl ProcessingErrorContext<'_> {
    /// The dead-letter record Kafka Streams' built-in handlers write for this failure: the source record's key,
    /// value and headers, the six `__streams.errors.*` headers ([`DLQ_EXCEPTION_HEADER`], ...), the record's
    /// timestamp, to `topic`. `None` during a punctuation (there is no source record).
    pub fn dead_letter_record(
        &self,
        topic: &str,
        error: &StreamsError,
    ) -> Option<DeadLetterRecord> {
        let source_topic = self.topic?;
        let mut headers = self.headers.cloned().unwrap_or_default();
        add_error_headers(
            &mut headers,
            &error_type_name(error),
            error,
            FailedSource {
                topic: Some(source_topic),
                partition: self.partition,
                offset: self.offset,
            },
        );
        Some(DeadLetterRecord {
            topic: topic.to_string(),
            key: self.source_key.map(<[u8]>::to_vec),
            value: self.source_value.map(<[u8]>::to_vec),
            timestamp: self.timestamp,
            headers,
        })
    }
}

/// Whether processing stops or goes on after a failed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessingAction {
    /// Stop: the thread fails with the processor's error (the uncaught error handler decides what follows).
    Fail,
    /// Skip the record at the failed processor and go on; counted in `skipped_records`. After an error, the
    /// record's processing goes on elsewhere as if the processor had forwarded nothing more (other branches still
    /// get it, as in Kafka Streams); after a panic, the rest of the record's processing is abandoned (panics are
    /// caught once per record). What processors did before the failure stays done.
    Continue,
}

/// A processing handler's answer: an action, and dead-letter records to write first (Kafka Streams'
/// `ProcessingExceptionHandler.Response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingResponse {
    /// Fail or continue.
    pub action: ProcessingAction,
    /// Records to write before acting (usually none, or the failed source record for a dead-letter topic).
    pub dead_letters: Vec<DeadLetterRecord>,
}

impl ProcessingResponse {
    /// Fail, writing nothing.
    pub fn fail() -> Self {
        ProcessingResponse {
            action: ProcessingAction::Fail,
            dead_letters: Vec::new(),
        }
    }

    /// Continue with the next record, writing nothing (`continue` is a keyword; Kafka Streams 4.1 calls it
    /// `resume` too).
    pub fn resume() -> Self {
        ProcessingResponse {
            action: ProcessingAction::Continue,
            dead_letters: Vec::new(),
        }
    }

    /// Also writes `record` to its topic before acting.
    pub fn with_dead_letter(mut self, record: DeadLetterRecord) -> Self {
        self.dead_letters.push(record);
        self
    }
}

/// Decides what happens when a processor fails on a record, as Kafka Streams' `ProcessingExceptionHandler`
/// (KIP-1033): a Processor API `process` or `punctuate` returning an error, or panicking, or a DSL closure
/// panicking. Errors that are not about the record never reach it and always fail: the task moving to another
/// instance, a changelog write failing, a sink refusing a record (that is the production handler's), a handler
/// of a processor further down having chosen to fail.
///
/// Configure it with `processing.exception.handler` (`fail`, the default, or `continue`) or in code:
///
/// ```
/// use streams_core::runtime::StreamsConfig;
/// use streams_core::{
///     ProcessingErrorContext, ProcessingExceptionHandler, ProcessingResponse, StreamsError,
/// };
///
/// /// Skips records failing in the `enrich` processor; anything else fails.
/// struct SkipEnrichFailures;
///
/// impl ProcessingExceptionHandler for SkipEnrichFailures {
///     fn handle(&self, ctx: &ProcessingErrorContext<'_>, _error: &StreamsError) -> ProcessingResponse {
///         if ctx.processor == "enrich" {
///             ProcessingResponse::resume()
///         } else {
///             ProcessingResponse::fail()
///         }
///     }
/// }
///
/// let mut config = StreamsConfig::new("orders", "localhost:9092");
/// config.set("processing.exception.handler", "continue")?;
/// config.set("errors.dead.letter.queue.topic.name", "orders-dlq")?;
/// let config = config.with_processing_handler(SkipEnrichFailures);
/// # Ok::<(), StreamsError>(())
/// ```
pub trait ProcessingExceptionHandler: Send + Sync + 'static {
    /// Handles one failure.
    fn handle(&self, ctx: &ProcessingErrorContext<'_>, error: &StreamsError) -> ProcessingResponse;

    /// Whether this handler reads the source record's bytes ([`ProcessingErrorContext::source_key`] and
    /// `source_value`). Keeping them costs a copy of each record's bytes while it is queued, so the default
    /// fail handler says no; the runtime keeps them anyway when a dead-letter topic is configured.
    fn uses_source_bytes(&self) -> bool {
        true
    }
}

/// The default: log the failure and fail. With `errors.dead.letter.queue.topic.name` set, the source record is
/// written there first ([`ProcessingErrorContext::dead_letter_record`]), as Kafka Streams'
/// `LogAndFailProcessingExceptionHandler` does.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndFailProcessing;

impl ProcessingExceptionHandler for LogAndFailProcessing {
    fn handle(&self, ctx: &ProcessingErrorContext<'_>, error: &StreamsError) -> ProcessingResponse {
        tracing::error!(processor = ctx.processor, task = %ctx.task, topic = ?ctx.topic, partition = ?ctx.partition,
            offset = ?ctx.offset, %error, "processing failed; failing (set processing.exception.handler to \
            continue to skip such records)");
        let response = ProcessingResponse::fail();
        match ctx
            .dead_letter_topic
            .and_then(|t| ctx.dead_letter_record(t, error))
        {
            Some(r) => response.with_dead_letter(r),
            None => response,
        }
    }

    fn uses_source_bytes(&self) -> bool {
        false
    }
}

/// Log the failure and go on with the next record. With `errors.dead.letter.queue.topic.name` set, the source
/// record is also written there ([`ProcessingErrorContext::dead_letter_record`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndContinueProcessing;

impl ProcessingExceptionHandler for LogAndContinueProcessing {
    fn handle(&self, ctx: &ProcessingErrorContext<'_>, error: &StreamsError) -> ProcessingResponse {
        tracing::warn!(processor = ctx.processor, task = %ctx.task, topic = ?ctx.topic, partition = ?ctx.partition,
            offset = ?ctx.offset, %error, dead_letter_topic = ?ctx.dead_letter_topic,
            "processing failed; skipping the record");
        let response = ProcessingResponse::resume();
        match ctx
            .dead_letter_topic
            .and_then(|t| ctx.dead_letter_record(t, error))
        {
            Some(r) => response.with_dead_letter(r),
            None => response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(h: &Headers, key: &str) -> Option<Option<String>> {
        h.last(key)
            .map(|h| h.value.clone().map(|v| String::from_utf8(v).unwrap()))
    }

    #[test]
    fn error_type_names_are_the_variant_paths() {
        assert_eq!(
            error_type_name(&StreamsError::processor("x")),
            "streams_core::StreamsError::Processor"
        );
        assert_eq!(
            error_type_name(&StreamsError::TaskMigrated("t".into())),
            "streams_core::StreamsError::TaskMigrated"
        );
        assert_eq!(
            error_type_name(&StreamsError::UnknownTopic("t".into())),
            "streams_core::StreamsError::UnknownTopic"
        );
    }

    #[test]
    fn error_chain_lists_each_cause_on_its_own_line() {
        let e = StreamsError::Deserialization {
            topic: "in".into(),
            partition: 2,
            offset: 9,
            role: "key",
            source: SerdeError::new(
                "i64",
                state_store::SerdeErrorKind::InvalidUtf8,
                "expected 8 bytes, got 3",
            ),
        };
        let chain = error_chain(&e);
        let lines: Vec<&str> = chain.lines().collect();
        assert_eq!(lines.len(), 2, "{chain}");
        assert_eq!(lines[0], e.to_string());
        assert!(
            lines[1].starts_with("caused by: ") && lines[1].contains("expected 8 bytes, got 3"),
            "{chain}"
        );
    }

    fn context<'a>(
        topic: Option<&'a str>,
        headers: &'a Headers,
        dlq: Option<&'a str>,
    ) -> ProcessingErrorContext<'a> {
        ProcessingErrorContext {
            processor: "enrich",
            task: TaskId {
                subtopology: 1,
                partition: 3,
            },
            topic,
            partition: topic.map(|_| 3),
            offset: topic.map(|_| 41),
            timestamp: 1234,
            headers: topic.map(|_| headers),
            source_key: topic.map(|_| &b"key"[..]),
            source_value: topic.map(|_| &b"value"[..]),
            dead_letter_topic: dlq,
        }
    }

    #[test]
    fn log_and_continue_processing_dead_letters_the_source_record_only_with_a_topic() {
        let source_headers = Headers::new().with("trace", "abc");
        let error = StreamsError::Processor {
            node: "enrich".into(),
            message: "no customer".into(),
        };

        let r = LogAndContinueProcessing
            .handle(&context(Some("orders"), &source_headers, None), &error);
        assert_eq!(r, ProcessingResponse::resume());

        let r = LogAndContinueProcessing.handle(
            &context(Some("orders"), &source_headers, Some("dlq")),
            &error,
        );
        assert_eq!(r.action, ProcessingAction::Continue);
        assert_eq!(r.dead_letters.len(), 1);
        let d = &r.dead_letters[0];
        assert_eq!(d.topic, "dlq");
        assert_eq!(d.key.as_deref(), Some(&b"key"[..]));
        assert_eq!(d.value.as_deref(), Some(&b"value"[..]));
        assert_eq!(d.timestamp, 1234);
        let keys: Vec<&str> = d.headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "trace",
                "__streams.errors.exception",
                "__streams.errors.stacktrace",
                "__streams.errors.message",
                "__streams.errors.topic",
                "__streams.errors.partition",
                "__streams.errors.offset"
            ]
        );
        let h = |k| header(&d.headers, k).unwrap();
        assert_eq!(h("trace").as_deref(), Some("abc"));
        assert_eq!(
            h(DLQ_EXCEPTION_HEADER).as_deref(),
            Some("streams_core::StreamsError::Processor")
        );
        assert_eq!(
            h(DLQ_MESSAGE_HEADER).as_deref(),
            Some("processor 'enrich' failed: no customer")
        );
        assert_eq!(
            h(DLQ_STACKTRACE_HEADER).as_deref(),
            Some("processor 'enrich' failed: no customer")
        );
        assert_eq!(h(DLQ_TOPIC_HEADER).as_deref(), Some("orders"));
        assert_eq!(h(DLQ_PARTITION_HEADER).as_deref(), Some("3"));
        assert_eq!(h(DLQ_OFFSET_HEADER).as_deref(), Some("41"));

        // A punctuation has no source record: nothing to dead-letter.
        let r =
            LogAndContinueProcessing.handle(&context(None, &source_headers, Some("dlq")), &error);
        assert_eq!(r, ProcessingResponse::resume());
    }

    #[test]
    fn log_and_fail_processing_fails_and_dead_letters_only_with_a_topic() {
        let headers = Headers::new();
        let r = LogAndFailProcessing.handle(
            &context(Some("orders"), &headers, None),
            &StreamsError::processor("x"),
        );
        assert_eq!(r, ProcessingResponse::fail());
        let r = LogAndFailProcessing.handle(
            &context(Some("orders"), &headers, Some("dlq")),
            &StreamsError::processor("x"),
        );
        assert_eq!(r.action, ProcessingAction::Fail);
        assert_eq!(r.dead_letters.len(), 1);
        assert_eq!(r.dead_letters[0].topic, "dlq");
        assert!(!LogAndFailProcessing.uses_source_bytes());
        assert!(LogAndContinueProcessing.uses_source_bytes());
    }

    #[test]
    fn built_in_deserialization_handlers_dead_letter_only_with_a_topic() {
        let mut ctx = ErrorContext {
            topic: "in",
            partition: 0,
            offset: 1,
            role: "value",
            key: None,
            value: Some(&[1, 2, 3]),
            dead_letter_topic: None,
        };
        let e = SerdeError::new("i64", state_store::SerdeErrorKind::InvalidUtf8, "bad");
        assert_eq!(
            LogAndContinue.handle(&ctx, &e),
            DeserializationResponse::Continue
        );
        ctx.dead_letter_topic = Some("dlq");
        assert_eq!(
            LogAndContinue.handle(&ctx, &e),
            DeserializationResponse::DeadLetter("dlq".into())
        );
        assert_eq!(
            LogAndFail.handle(&ctx, &e),
            DeserializationResponse::DeadLetterAndFail("dlq".into())
        );
        ctx.dead_letter_topic = None;
        assert_eq!(LogAndFail.handle(&ctx, &e), DeserializationResponse::Fail);
    }
}
