//! Node instances (processors, sources, sinks) and the factories that build them per task.

use std::any::{type_name, Any, TypeId};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use state_store::SharedSerde;

use crate::error::panic_message;
use crate::error::StreamsError;
use crate::handler::{add_error_headers, DeserializationResponse, ErrorContext, FailedSource};
use crate::processor::{
    Children, Data, Node, NodeRef, OwnedNode, Processor, ProcessorContext, ScheduleId,
};
use crate::record::{RawRecordRef, Record};
use crate::task::{current_thread_name, OutgoingRecord, SourceBytes, TaskShared};
use crate::timestamp::{InvalidTimestampAction, TimestampExtractor};

/// Key and value types of a node's input or output, comparable at runtime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TypeSig {
    key: TypeId,
    value: TypeId,
    pub(crate) key_name: &'static str,
    pub(crate) value_name: &'static str,
}

impl TypeSig {
    pub(crate) fn of<K: 'static, V: 'static>() -> Self {
        TypeSig {
            key: TypeId::of::<K>(),
            value: TypeId::of::<V>(),
            key_name: type_name::<K>(),
            value_name: type_name::<V>(),
        }
    }
    pub(crate) fn same(&self, other: &TypeSig) -> bool {
        self.key == other.key && self.value == other.value
    }
    pub(crate) fn describe(&self) -> String {
        format!("{}, {}", self.key_name, self.value_name)
    }
}

/// Lifecycle calls the task makes on a node, independent of its record types.
pub(crate) trait NodeControl {
    fn init(&mut self) -> Result<(), StreamsError>;
    fn punctuate(&mut self, id: ScheduleId, timestamp: i64) -> Result<(), StreamsError>;
    /// Forwards what the processor held back (at a commit or a clean close).
    fn flush(&mut self) -> Result<(), StreamsError>;
    fn close(&mut self) -> Result<(), StreamsError>;
}

/// A source's per-task input: one queue per subscribed topic (the task's partition of it).
pub(crate) trait SourceInput {
    /// Deserializes and queues a record; returns false when it was skipped by the error handler or as a null key.
    fn enqueue(&mut self, slot: usize, raw: RawRecordRef<'_>) -> Result<bool, StreamsError>;
    fn head_timestamp(&self, slot: usize) -> Option<i64>;
    fn queued(&self, slot: usize) -> usize;
    /// Drops every queued record (after a rebalance, the consumer fetches them again).
    fn clear(&mut self);
    /// Processes the head record of `slot`; false when the queue was empty.
    fn process_next(&mut self, slot: usize) -> Result<bool, StreamsError>;
    fn topics(&self) -> &[Arc<str>];
}

/// What building a node yields.
pub(crate) struct BuiltNode {
    /// `NodeRef<K, V>` of the node's input types, boxed as `Any`, for its parents.
    pub input: Option<Box<dyn Any>>,
    /// Built to be owned by its only parent (`BuildCtx::owned`): `Box<dyn Node<K, V>>` of its input types, boxed
    /// as `Any`.
    pub owned: Option<Box<dyn Any>>,
    pub control: Option<Rc<RefCell<dyn NodeControl>>>,
    pub source: Option<Rc<RefCell<dyn SourceInput>>>,
}

pub(crate) struct BuildCtx<'a> {
    pub node: usize,
    pub name: Rc<str>,
    /// Children names and their `input` handles.
    pub children: Vec<(Rc<str>, &'a dyn Any)>,
    pub shared: &'a Rc<TaskShared>,
    /// Full names (internal topics prefixed) of the topics a source reads or a sink writes.
    pub topics: Vec<Arc<str>>,
    /// The only child, built to be owned by this node (its `BuiltNode::owned`), instead of in `children`.
    pub inline_child: Option<(Rc<str>, Box<dyn Any>)>,
    /// Build this node to be owned by its only parent: `BuiltNode::owned` rather than a shared `input`.
    pub owned: bool,
}

/// Builds one node instance for one task.
pub(crate) trait NodeFactory: Send + Sync {
    fn build(&self, ctx: BuildCtx<'_>) -> Result<BuiltNode, StreamsError>;
}

fn typed_children<K: Data, V: Data>(
    ctx: &mut BuildCtx<'_>,
) -> Result<Children<K, V>, StreamsError> {
    let parent = ctx.name.clone();
    let mismatch = |child: &str| StreamsError::TypeMismatch {
        parent: parent.to_string(),
        child: child.to_string(),
        produced: TypeSig::of::<K, V>().describe(),
        expected: "other types".into(),
    };
    let inline = match ctx.inline_child.take() {
        None => None,
        Some((name, any)) => {
            let node = any
                .downcast::<OwnedNode<K, V>>()
                .map_err(|_| mismatch(&name))?;
            Some((name, *node))
        }
    };
    let mut list = Vec::with_capacity(ctx.children.len());
    for (name, any) in &ctx.children {
        let node = any
            .downcast_ref::<NodeRef<K, V>>()
            .ok_or_else(|| mismatch(name))?;
        list.push((name.clone(), node.clone()));
    }
    Ok(Children { list, inline })
}

// ---------------------------------------------------------------------------------------------------------------
// Processors

struct ProcessorNode<P: Processor<KIn, VIn>, KIn, VIn> {
    processor: P,
    ctx: ProcessorContext<P::KOut, P::VOut>,
    _in: PhantomData<fn(KIn, VIn)>,
}

impl<P: Processor<KIn, VIn>, KIn, VIn> Node<KIn, VIn> for ProcessorNode<P, KIn, VIn> {
    #[inline]
    fn process(&mut self, record: Record<KIn, VIn>) -> Result<(), StreamsError> {
        let outer = self.ctx.shared.current_node.replace(Some(self.ctx.node));
        // An error of this processor goes to the processing exception handler here; a panic is caught once per
        // record, by the task (`Task::process_one`), and handed to the same handler.
        let r = match self.processor.process(record, &mut self.ctx) {
            Ok(()) => Ok(()),
            Err(e) => self.failed(e, None),
        };
        self.ctx.shared.current_node.set(outer);
        r
    }
}

impl<P: Processor<KIn, VIn>, KIn, VIn> NodeControl for ProcessorNode<P, KIn, VIn> {
    fn init(&mut self) -> Result<(), StreamsError> {
        self.processor.init(&mut self.ctx)
    }
    fn punctuate(&mut self, id: ScheduleId, timestamp: i64) -> Result<(), StreamsError> {
        self.shared_clear_record();
        let outer = self.ctx.shared.current_node.replace(Some(self.ctx.node));
        // As Kafka Streams 4.x, a failing punctuation goes to the processing exception handler too.
        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.processor.punctuate(id, timestamp, &mut self.ctx)
        })) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => self.failed(e, Some(timestamp)),
            Err(payload) => self.failed(self.panic_error(&*payload), Some(timestamp)),
        };
        self.ctx.shared.current_node.set(outer);
        r
    }
    fn flush(&mut self) -> Result<(), StreamsError> {
        self.shared_clear_record();
        let outer = self.ctx.shared.current_node.replace(Some(self.ctx.node));
        let r = self.processor.flush(&mut self.ctx);
        self.ctx.shared.current_node.set(outer);
        r
    }
    fn close(&mut self) -> Result<(), StreamsError> {
        self.processor.close(&mut self.ctx)
    }
}

impl<P: Processor<KIn, VIn>, KIn, VIn> ProcessorNode<P, KIn, VIn> {
    fn shared_clear_record(&self) {
        self.ctx.shared.clear_record();
    }

    #[cold]
    fn failed(
        &self,
        error: StreamsError,
        punctuation_time: Option<i64>,
    ) -> Result<(), StreamsError> {
        self.ctx
            .shared
            .on_processing_error(&self.ctx.name, error, punctuation_time)
    }

    #[cold]
    fn panic_error(&self, payload: &(dyn Any + Send)) -> StreamsError {
        StreamsError::Panic {
            thread: current_thread_name(),
            task: Some(self.ctx.shared.task_id),
            processor: Some(self.ctx.name.to_string()),
            message: panic_message(payload),
        }
    }
}

pub(crate) struct ProcessorFactory<KIn, VIn, F> {
    pub supplier: F,
    pub _in: PhantomData<fn(KIn, VIn)>,
}

impl<KIn, VIn, P, F> NodeFactory for ProcessorFactory<KIn, VIn, F>
where
    KIn: Data,
    VIn: Data,
    P: Processor<KIn, VIn>,
    F: Fn() -> P + Send + Sync + 'static,
{
    fn build(&self, mut ctx: BuildCtx<'_>) -> Result<BuiltNode, StreamsError> {
        let children = typed_children::<P::KOut, P::VOut>(&mut ctx)?;
        let node = ProcessorNode::<P, KIn, VIn> {
            processor: (self.supplier)(),
            ctx: ProcessorContext {
                children,
                shared: ctx.shared.clone(),
                node: ctx.node,
                name: ctx.name.clone(),
                inlined: ctx.owned,
            },
            _in: PhantomData,
        };
        if ctx.owned {
            // A stateless processor owned by its only parent: no lifecycle calls reach it (it has none).
            let owned: OwnedNode<KIn, VIn> = Box::new(node);
            return Ok(BuiltNode {
                input: None,
                owned: Some(Box::new(owned)),
                control: None,
                source: None,
            });
        }
        let node = Rc::new(RefCell::new(node));
        let input: NodeRef<KIn, VIn> = node.clone();
        Ok(BuiltNode {
            input: Some(Box::new(input)),
            owned: None,
            control: Some(node),
            source: None,
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Sources

pub(crate) struct SourceFactory<K, V> {
    pub key_serde: SharedSerde<K>,
    pub value_serde: SharedSerde<V>,
    pub extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    /// Drop records with a null key (counted), as table sources do.
    pub skip_null_keys: bool,
}

struct Queued<K, V> {
    record: Record<K, V>,
    offset: i64,
    /// The record as read, when the task keeps it for the processing handler.
    source: Option<Box<SourceBytes>>,
}

struct SourceNode<K, V> {
    factory_key: SharedSerde<K>,
    factory_value: SharedSerde<V>,
    extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    skip_null_keys: bool,
    topics: Vec<Arc<str>>,
    topic_ids: Vec<u32>,
    queues: Vec<VecDeque<Queued<K, V>>>,
    partition_time: Vec<i64>,
    children: Children<K, V>,
    shared: Rc<TaskShared>,
    /// This node's index in the topology.
    node: usize,
}

impl<K: Data, V: Data> SourceNode<K, V> {
    fn handle_error(
        &self,
        slot: usize,
        raw: &RawRecordRef<'_>,
        role: &'static str,
        error: state_store::SerdeError,
    ) -> Result<bool, StreamsError> {
        let topic = &self.topics[slot];
        let ctx = ErrorContext {
            topic,
            partition: self.shared.task_id.partition,
            offset: raw.offset,
            role,
            key: raw.key,
            value: raw.value,
            dead_letter_topic: self.shared.dead_letter_topic.as_deref(),
        };
        let response = self.shared.deserialization_handler.handle(&ctx, &error);
        match &response {
            DeserializationResponse::Continue => {
                self.shared
                    .metrics
                    .skipped_records
                    .set(self.shared.metrics.skipped_records.get() + 1);
                Ok(false)
            }
            DeserializationResponse::DeadLetter(dlq)
            | DeserializationResponse::DeadLetterAndFail(dlq) => {
                let fail = matches!(response, DeserializationResponse::DeadLetterAndFail(_));
                let partition = self.shared.task_id.partition;
                let error = StreamsError::Deserialization {
                    topic: topic.to_string(),
                    partition,
                    offset: raw.offset,
                    role,
                    source: error,
                };
                let mut headers = raw.headers.clone();
                add_error_headers(
                    &mut headers,
                    "streams_core::StreamsError::Deserialization",
                    &error,
                    FailedSource {
                        topic: Some(topic),
                        partition: Some(partition),
                        offset: Some(raw.offset),
                    },
                );
                headers.add(
                    crate::handler::DLQ_ROLE_HEADER,
                    Some(role.as_bytes().to_vec()),
                );
                self.shared.collector.borrow_mut().send(OutgoingRecord {
                    topic: dlq,
                    partition: None,
                    key: raw.key,
                    value: raw.value,
                    timestamp: raw.timestamp.max(0),
                    headers: &headers,
                })?;
                let m = &self.shared.metrics;
                m.dead_lettered.set(m.dead_lettered.get() + 1);
                if fail {
                    self.shared.deliver_before_failing();
                    return Err(error);
                }
                m.skipped_records.set(m.skipped_records.get() + 1);
                Ok(false)
            }
            DeserializationResponse::Fail => Err(StreamsError::Deserialization {
                topic: topic.to_string(),
                partition: self.shared.task_id.partition,
                offset: raw.offset,
                role,
                source: error,
            }),
        }
    }
}

impl<K: Data, V: Data> SourceInput for SourceNode<K, V> {
    fn enqueue(&mut self, slot: usize, raw: RawRecordRef<'_>) -> Result<bool, StreamsError> {
        // Deserializers and the timestamp extractor run here.
        self.shared.current_node.set(Some(self.node));
        if self.skip_null_keys && raw.key.is_none() {
            tracing::warn!(
                topic = &*self.topics[slot],
                offset = raw.offset,
                "skipping a record with a null key"
            );
            self.shared
                .metrics
                .skipped_records
                .set(self.shared.metrics.skipped_records.get() + 1);
            return Ok(false);
        }
        let source = self.shared.keep_source.then(|| {
            Box::new(SourceBytes {
                key: raw.key.map(<[u8]>::to_vec),
                value: raw.value.map(<[u8]>::to_vec),
                headers: raw.headers.clone(),
            })
        });
        let key = match self.factory_key.deserialize_nullable(raw.key) {
            Ok(k) => k,
            Err(e) => return self.handle_error(slot, &raw, "key", e),
        };
        let value = match self.factory_value.deserialize_nullable(raw.value) {
            Ok(v) => v,
            Err(e) => return self.handle_error(slot, &raw, "value", e),
        };
        let mut record = Record {
            key,
            value,
            timestamp: raw.timestamp,
            headers: raw.headers,
        };
        let mut on_invalid = InvalidTimestampAction::Fail;
        if let Some(ex) = &self.extractor {
            record.timestamp = ex.extract(&record, self.partition_time[slot]);
            if record.timestamp < 0 {
                on_invalid = ex.on_invalid();
            }
        }
        if record.timestamp < 0 {
            if on_invalid == InvalidTimestampAction::Skip {
                tracing::warn!(
                    topic = &*self.topics[slot],
                    partition = self.shared.task_id.partition,
                    offset = raw.offset,
                    timestamp = record.timestamp,
                    "skipping a record with an invalid timestamp"
                );
                let m = &self.shared.metrics.skipped_records;
                m.set(m.get() + 1);
                return Ok(false);
            }
            return Err(StreamsError::InvalidTimestamp {
                topic: self.topics[slot].to_string(),
                partition: self.shared.task_id.partition,
                offset: raw.offset,
                timestamp: record.timestamp,
            });
        }
        self.partition_time[slot] = self.partition_time[slot].max(record.timestamp);
        self.queues[slot].push_back(Queued {
            record,
            offset: raw.offset,
            source,
        });
        Ok(true)
    }

    fn head_timestamp(&self, slot: usize) -> Option<i64> {
        self.queues[slot].front().map(|q| q.record.timestamp)
    }

    fn queued(&self, slot: usize) -> usize {
        self.queues[slot].len()
    }

    fn clear(&mut self) {
        self.queues.iter_mut().for_each(VecDeque::clear);
    }

    #[inline]
    fn process_next(&mut self, slot: usize) -> Result<bool, StreamsError> {
        let Some(q) = self.queues[slot].pop_front() else {
            return Ok(false);
        };
        self.shared
            .begin_record(self.topic_ids[slot], q.offset, q.record.timestamp);
        if self.shared.keep_source {
            *self.shared.current_source.borrow_mut() = q.source;
        }
        self.shared.current_node.set(Some(self.node));
        self.children.forward(q.record)?;
        Ok(true)
    }

    fn topics(&self) -> &[Arc<str>] {
        &self.topics
    }
}

impl<K: Data, V: Data> NodeFactory for SourceFactory<K, V> {
    fn build(&self, mut ctx: BuildCtx<'_>) -> Result<BuiltNode, StreamsError> {
        let children = typed_children::<K, V>(&mut ctx)?;
        let topic_ids = ctx
            .topics
            .iter()
            .map(|t| ctx.shared.register_topic(t.clone()))
            .collect();
        let n = ctx.topics.len();
        let node = Rc::new(RefCell::new(SourceNode {
            factory_key: self.key_serde.clone(),
            factory_value: self.value_serde.clone(),
            extractor: self.extractor.clone(),
            skip_null_keys: self.skip_null_keys,
            topics: ctx.topics,
            topic_ids,
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            partition_time: vec![-1; n],
            children,
            shared: ctx.shared.clone(),
            node: ctx.node,
        }));
        Ok(BuiltNode {
            input: None,
            owned: None,
            control: None,
            source: Some(node),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Sinks

/// Chooses the partition of a record written by a sink: `None` leaves it to the default (murmur2 of the key).
pub trait StreamPartitioner<K, V>: Send + Sync + 'static {
    /// The partition for `key`/`value` among `partitions`.
    fn partition(&self, topic: &str, key: &K, value: &V, partitions: i32) -> Option<i32>;
}

impl<K, V, F> StreamPartitioner<K, V> for F
where
    F: Fn(&str, &K, &V, i32) -> Option<i32> + Send + Sync + 'static,
{
    fn partition(&self, topic: &str, key: &K, value: &V, partitions: i32) -> Option<i32> {
        self(topic, key, value, partitions)
    }
}

pub(crate) struct SinkFactory<K, V> {
    pub key_serde: SharedSerde<K>,
    pub value_serde: SharedSerde<V>,
    pub partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
}

struct SinkNode<K, V> {
    topic: Arc<str>,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
    partition_key_buf: Vec<u8>,
    shared: Rc<TaskShared>,
    /// This node's index in the topology.
    node: usize,
}

impl<K: Data, V: Data> Node<K, V> for SinkNode<K, V> {
    #[inline]
    fn process(&mut self, record: Record<K, V>) -> Result<(), StreamsError> {
        // Serializers and the partitioner run here. Their failures, and the producer's, are not for the
        // processing handler of the processor above: they are settled here (a refused record has had the
        // production handler already). A panic here is the task's to catch, and it fails too.
        let outer = self.shared.current_node.replace(Some(self.node));
        let r = self.send(record);
        if r.is_err() {
            self.shared.error_settled.set(true);
        }
        self.shared.current_node.set(outer);
        r
    }
}

impl<K: Data, V: Data> SinkNode<K, V> {
    #[inline]
    fn send(&mut self, record: Record<K, V>) -> Result<(), StreamsError> {
        let has_key = self
            .key_serde
            .serialize_nullable(&record.key, &mut self.key_buf)
            .map_err(|source| StreamsError::Serialization {
                topic: self.topic.to_string(),
                role: "key",
                source,
            })?;
        let has_value = self
            .value_serde
            .serialize_nullable(&record.value, &mut self.value_buf)
            .map_err(|source| StreamsError::Serialization {
                topic: self.topic.to_string(),
                role: "value",
                source,
            })?;
        let mut collector = self.shared.collector.borrow_mut();
        let partition = match &self.partitioner {
            Some(p) => {
                let n = collector.partitions_for(&self.topic)?;
                p.partition(&self.topic, &record.key, &record.value, n)
            }
            None => {
                // A key that is partitioned by part of itself (a windowed key by its inner key).
                self.partition_key_buf.clear();
                let partial = self
                    .key_serde
                    .serialize_partition_key(&record.key, &mut self.partition_key_buf)
                    .map_err(|source| StreamsError::Serialization {
                        topic: self.topic.to_string(),
                        role: "key",
                        source,
                    })?;
                if partial {
                    let n = collector.partitions_for(&self.topic)?;
                    Some(crate::partitioner::default_partition(
                        &self.partition_key_buf,
                        n,
                    ))
                } else {
                    None
                }
            }
        };
        let sent = collector.send(OutgoingRecord {
            topic: &self.topic,
            partition,
            key: has_key.then_some(self.key_buf.as_slice()),
            value: has_value.then_some(self.value_buf.as_slice()),
            timestamp: record.timestamp,
            headers: &record.headers,
        });
        // Only a dead-letter topic needs to know about refused records: skip the call otherwise.
        if self.shared.dead_letter_topic.is_none() {
            return sent;
        }
        match collector.take_refused() {
            None => sent,
            Some(refused) => {
                drop(collector);
                self.shared.dead_letter_refused(&self.topic, refused)?;
                if sent.is_err() {
                    self.shared.deliver_before_failing();
                }
                sent
            }
        }
    }
}

impl<K: Data, V: Data> NodeFactory for SinkFactory<K, V> {
    fn build(&self, ctx: BuildCtx<'_>) -> Result<BuiltNode, StreamsError> {
        let topic = ctx.topics.first().cloned().ok_or_else(|| {
            StreamsError::InvalidTopology(format!("sink '{}' has no topic", ctx.name))
        })?;
        let node: NodeRef<K, V> = Rc::new(RefCell::new(SinkNode {
            topic,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            partitioner: self.partitioner.clone(),
            key_buf: Vec::new(),
            partition_key_buf: Vec::new(),
            value_buf: Vec::new(),
            shared: ctx.shared.clone(),
            node: ctx.node,
        }));
        Ok(BuiltNode {
            input: Some(Box::new(node)),
            owned: None,
            control: None,
            source: None,
        })
    }
}
