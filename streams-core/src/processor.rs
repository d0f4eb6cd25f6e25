//! The Processor API: processors, their context, punctuations.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use state_store::TypedKeyValueStore;

use crate::error::StreamsError;
use crate::record::{Record, RecordMetadata};
use crate::task::{Schedule, TaskShared};

/// Bounds every key and value type flowing through a topology satisfies: owned data that can be cloned when a
/// record fans out to several children. Implemented for every such type.
pub trait Data: Clone + 'static {}
impl<T: Clone + 'static> Data for T {}

/// A task: one sub-topology processing one partition number of its input topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// Sub-topology index.
    pub subtopology: usize,
    /// Partition number.
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// Which clock drives a punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PunctuationType {
    /// Stream time: the highest record timestamp the task has processed. Fires only as records arrive; a jump of
    /// several intervals fires once.
    StreamTime,
    /// Wall-clock time of the machine (or of the test driver's mock clock).
    WallClockTime,
}

/// Identifies a scheduled punctuation; passed back to [`Processor::punctuate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScheduleId(pub(crate) u64);

/// A record-at-a-time operator: it receives records of key type `KIn` and value type `VIn`, and forwards records of
/// [`Processor::KOut`] / [`Processor::VOut`] to its children through the [`ProcessorContext`].
///
/// One instance exists per task; it is created by a supplier (any `Fn() -> P`) when the task starts.
///
/// ```
/// use streams_core::{Processor, ProcessorContext, Record, StreamsError};
///
/// /// Forwards each value in upper case.
/// struct Upper;
///
/// impl Processor<String, String> for Upper {
///     type KOut = String;
///     type VOut = String;
///     fn process(
///         &mut self,
///         record: Record<String, String>,
///         ctx: &mut ProcessorContext<String, String>,
///     ) -> Result<(), StreamsError> {
///         let upper = record.value.to_uppercase();
///         ctx.forward(record.with_value(upper))
///     }
/// }
/// ```
pub trait Processor<KIn, VIn>: 'static {
    /// Key type of forwarded records.
    type KOut: Data;
    /// Value type of forwarded records.
    type VOut: Data;

    /// Called once before the first record: fetch stores, schedule punctuations.
    fn init(
        &mut self,
        _ctx: &mut ProcessorContext<Self::KOut, Self::VOut>,
    ) -> Result<(), StreamsError> {
        Ok(())
    }

    /// Handles one record.
    fn process(
        &mut self,
        record: Record<KIn, VIn>,
        ctx: &mut ProcessorContext<Self::KOut, Self::VOut>,
    ) -> Result<(), StreamsError>;

    /// Called for each punctuation scheduled with [`ProcessorContext::schedule`], with the time that triggered it.
    fn punctuate(
        &mut self,
        _schedule: ScheduleId,
        _timestamp: i64,
        _ctx: &mut ProcessorContext<Self::KOut, Self::VOut>,
    ) -> Result<(), StreamsError> {
        Ok(())
    }

    /// Called when the task commits (and before a clean close), before its stores are flushed: a processor that
    /// holds back updates (as Kafka Streams' record cache does for a cached store) forwards them here. The task
    /// calls the processors in topological order, upstream first, so what one forwards here reaches a processor
    /// downstream before that one is flushed. No record is being processed: [`ProcessorContext::record_metadata`]
    /// is `None`.
    fn flush(
        &mut self,
        _ctx: &mut ProcessorContext<Self::KOut, Self::VOut>,
    ) -> Result<(), StreamsError> {
        Ok(())
    }

    /// Called once when the task closes. A task whose partitions were lost to another member (a session timeout,
    /// an exceeded `max.poll.interval.ms`) is dropped without this call: nothing it wrote could be published.
    fn close(
        &mut self,
        _ctx: &mut ProcessorContext<Self::KOut, Self::VOut>,
    ) -> Result<(), StreamsError> {
        Ok(())
    }
}

/// A processor's downstream view of one child.
pub(crate) trait Node<K, V> {
    fn process(&mut self, record: Record<K, V>) -> Result<(), StreamsError>;
}

pub(crate) type NodeRef<K, V> = Rc<RefCell<dyn Node<K, V>>>;

/// A node owned by its only parent.
pub(crate) type OwnedNode<K, V> = Box<dyn Node<K, V>>;

/// The children of a node, each with its name.
pub(crate) struct Children<K, V> {
    pub(crate) list: Vec<(Rc<str>, NodeRef<K, V>)>,
    /// The only child, owned by this node instead of shared through `list`: a stateless processor whose only
    /// parent is this node (see `Topology::add_stateless_processor`). A record reaches it with one call, without
    /// the borrow of a shared node.
    pub(crate) inline: Option<(Rc<str>, OwnedNode<K, V>)>,
}

impl<K: Data, V: Data> Children<K, V> {
    fn call(name: &str, node: &NodeRef<K, V>, record: Record<K, V>) -> Result<(), StreamsError> {
        match node.try_borrow_mut() {
            Ok(mut n) => n.process(record),
            Err(_) => Err(StreamsError::InvalidTopology(format!(
                "node '{name}' was re-entered while processing a record (a cycle in the processor graph)"
            ))),
        }
    }

    #[inline(always)]
    pub(crate) fn forward(&mut self, record: Record<K, V>) -> Result<(), StreamsError> {
        if let Some((_, only)) = &mut self.inline {
            return only.process(record);
        }
        match self.list.as_slice() {
            [] => Ok(()),
            [(name, only)] => Self::call(name, only, record),
            [rest @ .., (last_name, last)] => {
                for (name, child) in rest {
                    Self::call(name, child, record.clone())?;
                }
                Self::call(last_name, last, record)
            }
        }
    }

    pub(crate) fn forward_to(
        &mut self,
        child: &str,
        record: Record<K, V>,
    ) -> Result<(), StreamsError> {
        if let Some((name, only)) = &mut self.inline {
            if &**name == child {
                return only.process(record);
            }
        }
        match self.list.iter().find(|(n, _)| &**n == child) {
            Some((name, node)) => Self::call(name, node, record),
            None => Err(StreamsError::UnknownNode {
                name: child.to_string(),
            }),
        }
    }
}

/// What a processor can do besides computing: forward records, reach its stores, schedule punctuations, and
/// read the current record's metadata and the task's clocks.
///
/// (See also [`RecordPosition`].)
pub struct ProcessorContext<K, V> {
    pub(crate) children: Children<K, V>,
    pub(crate) shared: Rc<TaskShared>,
    pub(crate) node: usize,
    pub(crate) name: Rc<str>,
    /// Built into its parent (a stateless processor, `Topology::add_stateless_processor`): no punctuation reaches it.
    pub(crate) inlined: bool,
}

impl<K: Data, V: Data> ProcessorContext<K, V> {
    /// Sends `record` to every child (cloned for all but the last).
    #[inline(always)]
    pub fn forward(&mut self, record: Record<K, V>) -> Result<(), StreamsError> {
        self.children.forward(record)
    }

    /// Sends `record` to the child called `child` only.
    pub fn forward_to(&mut self, child: &str, record: Record<K, V>) -> Result<(), StreamsError> {
        self.children.forward_to(child, record)
    }

    /// Names of this processor's children, in the order they were connected.
    pub fn children(&self) -> impl Iterator<Item = &str> {
        self.children
            .inline
            .iter()
            .map(|(n, _)| &**n)
            .chain(self.children.list.iter().map(|(n, _)| &**n))
    }

    /// This processor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The typed key-value store `store`, which must be connected to this processor.
    pub fn key_value_store<SK: 'static, SV: 'static>(
        &self,
        store: &str,
    ) -> Result<TypedKeyValueStore<SK, SV>, StreamsError> {
        self.shared.key_value_store(self.node, &self.name, store)
    }

    /// The versioned key-value store `store` (added with
    /// [`Topology::add_versioned_state_store`](crate::Topology::add_versioned_state_store)), which must be
    /// connected to this processor.
    pub fn versioned_key_value_store<SK: 'static, SV: 'static>(
        &self,
        store: &str,
    ) -> Result<state_store::VersionedKeyValueStore<SK, SV>, StreamsError> {
        self.shared
            .versioned_key_value_store(self.node, &self.name, store)
    }

    /// What opens store `store` as a window or session store of the Processor API, if it is one.
    pub(crate) fn windowed_parts(
        &self,
        store: &str,
    ) -> Option<std::sync::Arc<dyn std::any::Any + Send + Sync>> {
        self.shared.windowed_parts(store)
    }

    /// Bytes of the record cache budget that the cache in front of store `store` shares with the other cached
    /// stores of this stream thread: 0 when the store has no cache (caching disabled for it, or
    /// `statestore.cache.max.bytes` is 0) or is not connected to this processor. A cached store's writes reach
    /// the store below when the task commits or when the thread's caches together exceed this budget.
    pub fn store_cache_bytes(&self, store: &str) -> usize {
        self.shared.store_cache_bytes(self.node, store)
    }

    /// Schedules [`Processor::punctuate`] every `interval` of the given clock; returns the schedule's id.
    pub fn schedule(
        &mut self,
        interval: Duration,
        kind: PunctuationType,
    ) -> Result<ScheduleId, StreamsError> {
        if self.inlined {
            return Err(StreamsError::Processor {
                node: self.name.to_string(),
                message: "a stateless processor (Topology::add_stateless_processor) cannot schedule punctuations; \
                          add it with Topology::add_processor"
                    .into(),
            });
        }
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        if interval_ms < 1 {
            return Err(StreamsError::Processor {
                node: self.name.to_string(),
                message: "a punctuation interval must be at least 1 ms".into(),
            });
        }
        let id = ScheduleId(self.shared.next_schedule_id.get());
        self.shared.next_schedule_id.set(id.0 + 1);
        let next = match kind {
            // Stream-time punctuations are aligned on multiples of the interval from time 0, as in Kafka
            // Streams: the first fires on the first record, the next at the first multiple after it.
            PunctuationType::StreamTime => 0,
            PunctuationType::WallClockTime => {
                self.shared.wall_clock.get().saturating_add(interval_ms)
            }
        };
        self.shared.schedules.borrow_mut().push(Schedule {
            id,
            node: self.node,
            interval_ms,
            kind,
            next,
            cancelled: false,
        });
        Ok(id)
    }

    /// Cancels a punctuation.
    pub fn cancel(&mut self, schedule: ScheduleId) {
        for s in self.shared.schedules.borrow_mut().iter_mut() {
            if s.id == schedule {
                s.cancelled = true;
            }
        }
    }

    /// Topic, partition and offset of the record being processed; `None` during punctuations.
    pub fn record_metadata(&self) -> Option<RecordMetadata> {
        self.shared.record_metadata()
    }

    /// The task's stream time: the highest timestamp processed so far (-1 before the first record).
    pub fn stream_time(&self) -> i64 {
        self.shared.stream_time.get()
    }

    /// Where the record being processed comes from (its topic and offset), as an opaque token; `None` during
    /// punctuations and flushes. A processor that holds records back (a cache) keeps it with each record and
    /// forwards the record later under [`ProcessorContext::with_record_position`], so downstream sees the
    /// metadata of the record that wrote it, as Kafka Streams' cached record context does.
    pub fn record_position(&self) -> Option<RecordPosition> {
        self.shared.current.get().map(RecordPosition)
    }

    /// Runs `f` with `position` as the current record's position (see [`ProcessorContext::record_position`]),
    /// then restores the previous one.
    pub fn with_record_position<T>(
        &mut self,
        position: Option<RecordPosition>,
        f: impl FnOnce(&mut Self) -> T,
    ) -> T {
        let previous = self.shared.current.replace(position.map(|p| p.0));
        let out = f(self);
        self.shared.current.set(previous);
        out
    }

    /// Wall-clock time in ms (the test driver's mock clock under test).
    pub fn wall_clock_time(&self) -> i64 {
        self.shared.wall_clock.get()
    }

    /// The task this processor instance belongs to.
    pub fn task_id(&self) -> crate::processor::TaskId {
        self.shared.task_id
    }

    /// Counts a record this processor drops on purpose (a record too late for its window, say) in the task's
    /// `dropped_records` metric, and logs why at debug level. Operators never drop a record without calling this.
    pub fn record_dropped(&self, reason: &str) {
        let m = &self.shared.metrics.dropped_records;
        m.set(m.get() + 1);
        tracing::debug!(processor = %self.name, task = %self.shared.task_id, reason, "record dropped");
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        &self.shared.application_id
    }
}

/// Where a record comes from within its task (topic and offset), as [`ProcessorContext::record_position`] gives
/// it: opaque, cheap to copy, valid within the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition((u32, i64));
