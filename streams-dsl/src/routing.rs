//! Dynamic topic routing for [`KStream::to_dynamic`](crate::KStream::to_dynamic): a topic chosen per record
//! (Kafka Streams' `TopicNameExtractor` and `RecordContext`).

use std::collections::HashMap;
use std::sync::Arc;

use streams_core::{
    Data, Headers, Processor, ProcessorContext, Record, RecordMetadata, StreamsError,
};

/// Where the record being routed came from: its source topic, partition and offset (when it came from a topic
/// rather than a punctuation), its timestamp and headers (Kafka Streams' `RecordContext`).
pub struct RecordContext<'a> {
    metadata: Option<RecordMetadata>,
    timestamp: i64,
    headers: &'a Headers,
}

impl RecordContext<'_> {
    /// The topic the record was read from (the full name of an internal topic), if known.
    pub fn topic(&self) -> Option<&str> {
        self.metadata.as_ref().map(|m| &*m.topic)
    }

    /// The partition the record was read from, if known.
    pub fn partition(&self) -> Option<i32> {
        self.metadata.as_ref().map(|m| m.partition)
    }

    /// The offset the record was read at, if known.
    pub fn offset(&self) -> Option<i64> {
        self.metadata.as_ref().map(|m| m.offset)
    }

    /// The record's timestamp.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The record's headers.
    pub fn headers(&self) -> &Headers {
        self.headers
    }
}

/// Chooses the topic of each record written by [`KStream::to_dynamic`](crate::KStream::to_dynamic) (Kafka
/// Streams' `TopicNameExtractor`). Implemented for closures `Fn(&K, &V, &RecordContext) -> String`.
pub trait TopicNameExtractor<K, V>: Send + Sync + 'static {
    /// The topic for this record: one of the topics declared to `to_dynamic`.
    fn extract(&self, key: &K, value: &V, context: &RecordContext<'_>) -> String;
}

impl<K, V, F> TopicNameExtractor<K, V> for F
where
    F: Fn(&K, &V, &RecordContext<'_>) -> String + Send + Sync + 'static,
{
    fn extract(&self, key: &K, value: &V, context: &RecordContext<'_>) -> String {
        self(key, value, context)
    }
}

/// Forwards each record to the sink of the topic its extractor names; a topic that was not declared is an
/// error naming it, never a new topic.
pub(crate) struct TopicRouter<K, V> {
    pub extractor: Arc<dyn TopicNameExtractor<K, V>>,
    /// Declared topic -> the name of its sink.
    pub sinks: Arc<HashMap<String, String>>,
}

impl<K: Data, V: Data> Processor<K, V> for TopicRouter<K, V> {
    type KOut = K;
    type VOut = V;

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, V>,
    ) -> Result<(), StreamsError> {
        let topic = self.extractor.extract(
            &r.key,
            &r.value,
            &RecordContext {
                metadata: ctx.record_metadata(),
                timestamp: r.timestamp,
                headers: &r.headers,
            },
        );
        match self.sinks.get(&topic) {
            Some(sink) => ctx.forward_to(sink, r),
            None => {
                let mut declared: Vec<&str> = self.sinks.keys().map(String::as_str).collect();
                declared.sort_unstable();
                Err(StreamsError::Processor {
                    node: ctx.name().to_string(),
                    message: format!(
                        "the topic name extractor chose topic '{topic}', which is not among the topics declared \
                         to to_dynamic ({}); records are never written to undeclared topics",
                        declared.join(", ")
                    ),
                })
            }
        }
    }
}
