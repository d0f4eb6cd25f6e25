//! Fixed-key processors for [`KStream::process_values`](crate::KStream::process_values): processors that may
//! change values, timestamps and headers but never keys (Kafka Streams' `FixedKeyProcessor`,
//! `FixedKeyRecord` and `FixedKeyProcessorContext`).

use std::marker::PhantomData;
use std::time::Duration;

use state_store::TypedKeyValueStore;
use streams_core::{
    Data, Headers, Processor, ProcessorContext, PunctuationType, Record, RecordMetadata,
    ScheduleId, StreamsError, TaskId,
};

/// A record whose key cannot be changed: the input of a [`FixedKeyProcessor`], and the only thing it can
/// forward. Its value, timestamp and headers can be replaced; its key can only be read, so whatever the
/// processor forwards stays in the partition it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedKeyRecord<K, V> {
    key: K,
    value: V,
    timestamp: i64,
    headers: Headers,
}

impl<K, V> FixedKeyRecord<K, V> {
    fn from_record(r: Record<K, V>) -> Self {
        FixedKeyRecord {
            key: r.key,
            value: r.value,
            timestamp: r.timestamp,
            headers: r.headers,
        }
    }

    fn into_record(self) -> Record<K, V> {
        Record {
            key: self.key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// The key (fixed).
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// Takes the value out, with the rest of the record to give it a new one.
    pub fn take_value(self) -> (V, FixedKeyRecord<K, ()>) {
        (
            self.value,
            FixedKeyRecord {
                key: self.key,
                value: (),
                timestamp: self.timestamp,
                headers: self.headers,
            },
        )
    }

    /// Event time in milliseconds since the epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> FixedKeyRecord<K, V2> {
        FixedKeyRecord {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The same record with other headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

/// What a [`FixedKeyProcessor`] can do besides computing: forward fixed-key records, reach its stores, schedule
/// punctuations, and read the current record's metadata and the task's clocks.
pub struct FixedKeyProcessorContext<'a, K, V> {
    inner: &'a mut ProcessorContext<K, V>,
}

impl<K: Data, V: Data> FixedKeyProcessorContext<'_, K, V> {
    /// Sends `record` to every child.
    pub fn forward(&mut self, record: FixedKeyRecord<K, V>) -> Result<(), StreamsError> {
        self.inner.forward(record.into_record())
    }

    /// Sends `record` to the child called `child` only.
    pub fn forward_to(
        &mut self,
        child: &str,
        record: FixedKeyRecord<K, V>,
    ) -> Result<(), StreamsError> {
        self.inner.forward_to(child, record.into_record())
    }

    /// This processor's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The typed key-value store `store`, which must be connected to this processor (named in
    /// [`KStream::process_values`](crate::KStream::process_values)).
    pub fn key_value_store<SK: 'static, SV: 'static>(
        &self,
        store: &str,
    ) -> Result<TypedKeyValueStore<SK, SV>, StreamsError> {
        self.inner.key_value_store(store)
    }

    /// The versioned key-value store `store`, which must be connected to this processor (see
    /// [`StreamsBuilder::add_versioned_state_store`](crate::StreamsBuilder::add_versioned_state_store)).
    pub fn versioned_key_value_store<SK: 'static, SV: 'static>(
        &self,
        store: &str,
    ) -> Result<streams_core::VersionedKeyValueStore<SK, SV>, StreamsError> {
        self.inner.versioned_key_value_store(store)
    }

    /// Schedules [`FixedKeyProcessor::punctuate`] every `interval` of the given clock.
    pub fn schedule(
        &mut self,
        interval: Duration,
        kind: PunctuationType,
    ) -> Result<ScheduleId, StreamsError> {
        self.inner.schedule(interval, kind)
    }

    /// Cancels a punctuation.
    pub fn cancel(&mut self, schedule: ScheduleId) {
        self.inner.cancel(schedule)
    }

    /// Topic, partition and offset of the record being processed; `None` during punctuations.
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

    /// The task this processor instance belongs to.
    pub fn task_id(&self) -> TaskId {
        self.inner.task_id()
    }

    /// Counts a record dropped on purpose in the task's `dropped_records` metric.
    pub fn record_dropped(&self, reason: &str) {
        self.inner.record_dropped(reason)
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        self.inner.application_id()
    }
}

/// A record-at-a-time operator that keeps keys: it receives [`FixedKeyRecord`]s and forwards fixed-key records
/// of the same key type, with values of type [`FixedKeyProcessor::VOut`] (Kafka Streams' `FixedKeyProcessor`).
/// Used with [`KStream::process_values`](crate::KStream::process_values); since it cannot change keys, the
/// stream needs no repartitioning afterwards.
///
/// A processor may forward zero, one or several records per input; it gets a new key only by forwarding a
/// record it was given (with a new value), never by building one.
pub trait FixedKeyProcessor<K, VIn>: 'static {
    /// Value type of forwarded records.
    type VOut: Data;

    /// Called once before the first record: fetch stores, schedule punctuations.
    fn init(
        &mut self,
        _ctx: &mut FixedKeyProcessorContext<'_, K, Self::VOut>,
    ) -> Result<(), StreamsError> {
        Ok(())
    }

    /// Handles one record.
    fn process(
        &mut self,
        record: FixedKeyRecord<K, VIn>,
        ctx: &mut FixedKeyProcessorContext<'_, K, Self::VOut>,
    ) -> Result<(), StreamsError>;

    /// Called for each punctuation scheduled with [`FixedKeyProcessorContext::schedule`].
    fn punctuate(
        &mut self,
        _schedule: ScheduleId,
        _timestamp: i64,
        _ctx: &mut FixedKeyProcessorContext<'_, K, Self::VOut>,
    ) -> Result<(), StreamsError> {
        Ok(())
    }

    /// Called once when the task closes.
    fn close(
        &mut self,
        _ctx: &mut FixedKeyProcessorContext<'_, K, Self::VOut>,
    ) -> Result<(), StreamsError> {
        Ok(())
    }
}

/// Runs a [`FixedKeyProcessor`] as a [`Processor`] whose output keys are its input keys.
pub(crate) struct FixedKeyAdapter<P, K, VIn> {
    pub processor: P,
    pub _p: PhantomData<fn(K, VIn)>,
}

impl<K: Data, VIn: Data, P: FixedKeyProcessor<K, VIn>> Processor<K, VIn>
    for FixedKeyAdapter<P, K, VIn>
{
    type KOut = K;
    type VOut = P::VOut;

    fn init(&mut self, ctx: &mut ProcessorContext<K, P::VOut>) -> Result<(), StreamsError> {
        self.processor
            .init(&mut FixedKeyProcessorContext { inner: ctx })
    }

    fn process(
        &mut self,
        record: Record<K, VIn>,
        ctx: &mut ProcessorContext<K, P::VOut>,
    ) -> Result<(), StreamsError> {
        self.processor.process(
            FixedKeyRecord::from_record(record),
            &mut FixedKeyProcessorContext { inner: ctx },
        )
    }

    fn punctuate(
        &mut self,
        schedule: ScheduleId,
        timestamp: i64,
        ctx: &mut ProcessorContext<K, P::VOut>,
    ) -> Result<(), StreamsError> {
        self.processor.punctuate(
            schedule,
            timestamp,
            &mut FixedKeyProcessorContext { inner: ctx },
        )
    }

    fn close(&mut self, ctx: &mut ProcessorContext<K, P::VOut>) -> Result<(), StreamsError> {
        self.processor
            .close(&mut FixedKeyProcessorContext { inner: ctx })
    }
}
