//! The topology graph: named sources, processors and sinks, the stores attached to them, and its split into
//! sub-topologies.

use std::any::{type_name, Any};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use state_store::{
    KeyValueStoreSupplier, Serde, SharedSerde, TimestampedSerde, ValueAndTimestamp,
    ValueOfTimestampedSerde,
};

use crate::error::StreamsError;
use crate::node::{
    NodeFactory, ProcessorFactory, SinkFactory, SourceFactory, StreamPartitioner, TypeSig,
};
use crate::processor::{Data, Processor};
use crate::timestamp::TimestampExtractor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Source { topics: Vec<String> },
    Processor,
    Sink { topic: String },
}

pub(crate) struct NodeDef {
    pub name: String,
    pub kind: NodeKind,
    pub parents: Vec<usize>,
    pub children: Vec<usize>,
    pub stores: Vec<String>,
    pub output: Option<TypeSig>,
    pub factory: Arc<dyn NodeFactory>,
    /// A stateless processor (`Topology::add_stateless_processor`): when it is the only child of its only parent,
    /// a task builds it into that parent.
    pub stateless: bool,
}

impl NodeDef {
    /// Whether a task builds this node into its parent: a stateless processor with one parent, which has no other
    /// child, and no store connected to it.
    pub(crate) fn inlined_into_parent(&self, nodes: &[NodeDef]) -> bool {
        self.stateless
            && self.stores.is_empty()
            && matches!(self.kind, NodeKind::Processor)
            && self.parents.len() == 1
            && nodes[self.parents[0]].children.len() == 1
    }
}

/// The serdes of a store, type-erased for storage in the topology.
pub(crate) struct StoreSerdes<K, V> {
    pub key: SharedSerde<K>,
    pub value: SharedSerde<V>,
}

/// A store's serdes with their types erased: those of the values it holds, and for a timestamped store also a
/// view of its plain values (so it can be read as a store of `V` as well as of `ValueAndTimestamp<V>`).
#[derive(Clone)]
pub(crate) struct ErasedSerdes {
    stored: Arc<dyn Any + Send + Sync>,
    plain: Option<Arc<dyn Any + Send + Sync>>,
    /// For a versioned store, its history retention in ms: the store's bytes are laid out as
    /// [`state_store::versioned`] describes and it is read through a `VersionedKeyValueStore` only.
    versioned: Option<i64>,
    /// For a window or session store of the Processor API: what a processor needs to open it as one.
    pub(crate) windowed: Option<Arc<dyn Any + Send + Sync>>,
}

impl ErasedSerdes {
    pub(crate) fn new<K: 'static, V: 'static>(key: SharedSerde<K>, value: SharedSerde<V>) -> Self {
        ErasedSerdes {
            stored: Arc::new(StoreSerdes { key, value }),
            plain: None,
            versioned: None,
            windowed: None,
        }
    }

    /// The history retention of a versioned store; `None` for other stores.
    pub(crate) fn versioned(&self) -> Option<i64> {
        self.versioned
    }

    /// Whether the store keeps values with timestamps (`ValueAndTimestamp<V>`).
    pub(crate) fn timestamped(&self) -> bool {
        self.plain.is_some()
    }

    /// The serdes for reading the store as `K` to `V`: its stored types, or plain values of a timestamped store.
    pub(crate) fn get<K: 'static, V: 'static>(&self) -> Option<&StoreSerdes<K, V>> {
        self.stored
            .downcast_ref::<StoreSerdes<K, V>>()
            .or_else(|| self.plain.as_ref()?.downcast_ref::<StoreSerdes<K, V>>())
    }
}

pub(crate) struct StoreDef {
    pub name: String,
    pub supplier: Arc<dyn KeyValueStoreSupplier>,
    pub serdes: ErasedSerdes,
    pub key_type: &'static str,
    pub value_type: &'static str,
    pub logging: bool,
    pub caching: bool,
    /// The store is a copy of this source topic (a table read from it), which serves as its changelog.
    pub source_changelog: Option<String>,
    pub processors: Vec<usize>,
}

/// Describes a key-value store to attach to processors: name, implementation, serdes, and whether it is cached
/// and changelogged (both on by default, as in Kafka Streams).
///
/// ```
/// use streams_core::{KeyValueStoreBuilder, Serdes, StoreKind};
///
/// let counts = KeyValueStoreBuilder::new("counts", StoreKind::InMemory, Serdes::string(), Serdes::i64())
///     .with_caching_disabled();
/// assert_eq!(counts.name(), "counts");
/// ```
pub struct KeyValueStoreBuilder<K, V> {
    name: String,
    supplier: Arc<dyn KeyValueStoreSupplier>,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    plain: Option<Arc<dyn Any + Send + Sync>>,
    versioned: Option<i64>,
    windowed: Option<Arc<dyn Any + Send + Sync>>,
    logging: bool,
    caching: bool,
    source_changelog: Option<String>,
}

impl<K: 'static, V: 'static> KeyValueStoreBuilder<K, ValueAndTimestamp<V>> {
    /// A timestamped key-value store (Kafka's `Stores.timestampedKeyValueStoreBuilder`): each value is kept with
    /// a timestamp, as the DSL keeps its tables and aggregates. Processors read and write it as
    /// `ValueAndTimestamp<V>`; it can also be read as a store of plain `V` (interactive queries, the test driver).
    ///
    /// ```
    /// use streams_core::{KeyValueStoreBuilder, Serdes, StoreKind, ValueAndTimestamp};
    ///
    /// let latest: KeyValueStoreBuilder<String, ValueAndTimestamp<i64>> =
    ///     KeyValueStoreBuilder::timestamped("latest", StoreKind::InMemory, Serdes::string(), Serdes::i64());
    /// assert_eq!(latest.name(), "latest");
    /// ```
    pub fn timestamped(
        name: impl Into<String>,
        supplier: impl KeyValueStoreSupplier + 'static,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Self {
        Self::timestamped_from_parts(
            name,
            Arc::new(supplier),
            Arc::new(key_serde),
            Arc::new(value_serde),
        )
    }

    /// Same, from shared parts.
    pub fn timestamped_from_parts(
        name: impl Into<String>,
        supplier: Arc<dyn KeyValueStoreSupplier>,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> Self {
        let plain: Arc<dyn Any + Send + Sync> = Arc::new(StoreSerdes {
            key: key_serde.clone(),
            value: Arc::new(ValueOfTimestampedSerde::new(value_serde.clone())) as SharedSerde<V>,
        });
        let stored: SharedSerde<ValueAndTimestamp<V>> =
            Arc::new(TimestampedSerde::new(value_serde));
        let mut builder = KeyValueStoreBuilder::from_parts(name, supplier, key_serde, stored);
        builder.plain = Some(plain);
        builder
    }
}

impl<K: 'static, V: 'static> KeyValueStoreBuilder<K, V> {
    /// A store called `name` opened by `supplier` (a [`StoreKind`](state_store::StoreKind) or your own supplier).
    pub fn new(
        name: impl Into<String>,
        supplier: impl KeyValueStoreSupplier + 'static,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Self {
        Self::from_parts(
            name,
            Arc::new(supplier),
            Arc::new(key_serde),
            Arc::new(value_serde),
        )
    }

    /// Same, from shared parts.
    pub fn from_parts(
        name: impl Into<String>,
        supplier: Arc<dyn KeyValueStoreSupplier>,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> Self {
        KeyValueStoreBuilder {
            name: name.into(),
            supplier,
            key_serde,
            value_serde,
            plain: None,
            versioned: None,
            windowed: None,
            logging: true,
            caching: true,
            source_changelog: None,
        }
    }

    /// Marks the store as a window or session store of the Processor API, opened with `parts`.
    pub(crate) fn with_windowed_parts(mut self, parts: Arc<dyn Any + Send + Sync>) -> Self {
        self.windowed = Some(parts);
        self
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// No changelog topic: the store is not restored after a failure or a move.
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }

    /// No write-back cache: every write reaches the store and its changelog.
    pub fn with_caching_disabled(mut self) -> Self {
        self.caching = false;
        self
    }

    /// Sets whether the store has a changelog.
    pub fn with_logging(mut self, enabled: bool) -> Self {
        self.logging = enabled;
        self
    }

    /// Sets whether the store has a write-back cache.
    pub fn with_caching(mut self, enabled: bool) -> Self {
        self.caching = enabled;
        self
    }

    /// Uses source topic `topic` as the store's changelog, for a store that holds exactly what `topic` holds (a
    /// table read from it, Kafka's `topology.optimization=reuse.ktable.source.topics`): no changelog topic is
    /// created or written, and the store is restored from `topic`, up to the offset the application committed
    /// on it, so the task goes on processing exactly where its state stands. `topic` must be read by a source of
    /// the sub-topology the store belongs to.
    ///
    /// Restoration copies the topic's records as they are: a record the table's processing would have skipped
    /// (a value its serde cannot read, kept by a continue handler) enters the store on restore.
    ///
    /// ```
    /// use streams_core::{KeyValueStoreBuilder, Serdes, StoreKind};
    ///
    /// let prices = KeyValueStoreBuilder::new("prices", StoreKind::RocksDb, Serdes::string(), Serdes::i64())
    ///     .with_changelog_from_source("prices");
    /// assert_eq!(prices.name(), "prices");
    /// ```
    pub fn with_changelog_from_source(mut self, topic: impl Into<String>) -> Self {
        self.source_changelog = Some(topic.into());
        self.logging = true;
        self
    }

    /// Name, supplier and serdes.
    #[allow(clippy::type_complexity)]
    pub(crate) fn into_parts(
        self,
    ) -> (
        String,
        Arc<dyn KeyValueStoreSupplier>,
        SharedSerde<K>,
        SharedSerde<V>,
    ) {
        (self.name, self.supplier, self.key_serde, self.value_serde)
    }
}

/// Describes a versioned key-value store (Kafka's `Stores.versionedKeyValueStoreBuilder` over
/// `Stores.persistentVersionedKeyValueStore`): every version of each key's value is kept for
/// `history_retention`, and processors read it as of a time. Processors get it with
/// [`ProcessorContext::versioned_key_value_store`](crate::ProcessorContext::versioned_key_value_store) as a
/// [`state_store::VersionedKeyValueStore`]; see that type for the semantics.
///
/// The store is changelogged by default, as Kafka's: each version is one changelog record whose key and value
/// are the plain key and value (a tombstone for a deleted version) and whose timestamp is the version's, and
/// restoring replays them into the history. It has no write-back cache (Kafka's versioned stores have none).
///
/// ```
/// use std::time::Duration;
/// use streams_core::*;
///
/// /// Forwards each record's value with the price valid at the record's time.
/// struct PriceAtOrderTime;
/// impl Processor<String, i64> for PriceAtOrderTime {
///     type KOut = String;
///     type VOut = String;
///     fn process(&mut self, r: Record<String, i64>, ctx: &mut ProcessorContext<String, String>) -> Result<(), StreamsError> {
///         let mut prices = ctx.versioned_key_value_store::<String, i64>("prices")?;
///         if r.value < 0 {
///             // A negative quantity records a price change: -price.
///             prices.put(&r.key, Some(&-r.value), r.timestamp)?;
///             return Ok(());
///         }
///         let price = prices.get_as_of(&r.key, r.timestamp)?.map(|v| v.value);
///         let line = format!("{} x {price:?}", r.value);
///         ctx.forward(r.with_value(line))
///     }
/// }
///
/// let mut t = Topology::new();
/// t.add_source("in", &["in"], SourceOptions::new(Serdes::string(), Serdes::i64())).unwrap();
/// t.add_processor::<String, i64, _, _>("p", || PriceAtOrderTime, &["in"]).unwrap();
/// t.add_versioned_state_store(
///     VersionedKeyValueStoreBuilder::new("prices", StoreKind::InMemory, Serdes::string(), Serdes::i64(), Duration::from_secs(60)),
///     &["p"],
/// ).unwrap();
/// t.add_sink("out", "out", SinkOptions::new(Serdes::string(), Serdes::string()), &["p"]).unwrap();
///
/// let driver = TopologyTestDriver::new(t).unwrap();
/// let input = driver.input_topic("in", Serdes::string(), Serdes::i64());
/// input.pipe_input_at("pen".into(), -3, 1_000).unwrap();
/// input.pipe_input_at("pen".into(), -5, 3_000).unwrap();
/// input.pipe_input_at("pen".into(), 2, 2_000).unwrap(); // out of order: the price valid at 2 000
/// let out = driver.output_topic("out", Serdes::string(), Serdes::string());
/// assert_eq!(out.read_value().unwrap().as_deref(), Some("2 x Some(3)"));
/// ```
pub struct VersionedKeyValueStoreBuilder<K, V> {
    inner: KeyValueStoreBuilder<K, V>,
}

impl<K: 'static, V: 'static> VersionedKeyValueStoreBuilder<K, V> {
    /// A versioned store called `name` opened by `supplier`, keeping `history_retention` of history (in stream
    /// time; whole milliseconds).
    pub fn new(
        name: impl Into<String>,
        supplier: impl KeyValueStoreSupplier + 'static,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        history_retention: std::time::Duration,
    ) -> Self {
        Self::from_parts(
            name,
            Arc::new(supplier),
            Arc::new(key_serde),
            Arc::new(value_serde),
            history_retention,
        )
    }

    /// Same, from shared parts.
    pub fn from_parts(
        name: impl Into<String>,
        supplier: Arc<dyn KeyValueStoreSupplier>,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
        history_retention: std::time::Duration,
    ) -> Self {
        let mut inner = KeyValueStoreBuilder::from_parts(name, supplier, key_serde, value_serde)
            .with_caching_disabled();
        inner.versioned = Some(i64::try_from(history_retention.as_millis()).unwrap_or(i64::MAX));
        VersionedKeyValueStoreBuilder { inner }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The history retention in ms.
    pub fn history_retention_ms(&self) -> i64 {
        self.inner.versioned.unwrap_or(0)
    }

    /// Sets whether the store has a changelog (on by default).
    pub fn with_logging(mut self, enabled: bool) -> Self {
        self.inner = self.inner.with_logging(enabled);
        self
    }

    /// Uses source topic `topic` as the store's changelog (see
    /// [`KeyValueStoreBuilder::with_changelog_from_source`]): restoring replays its records as versions.
    pub fn with_changelog_from_source(mut self, topic: impl Into<String>) -> Self {
        self.inner = self.inner.with_changelog_from_source(topic);
        self
    }
}

/// Options of a source node: serdes, timestamp extractor, and whether null keys are dropped.
pub struct SourceOptions<K, V> {
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    skip_null_keys: bool,
}

impl<K: 'static, V: 'static> SourceOptions<K, V> {
    /// Reads keys and values with these serdes.
    pub fn new(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Self::from_shared(Arc::new(key_serde), Arc::new(value_serde))
    }
    /// Same, from shared serdes.
    pub fn from_shared(key_serde: SharedSerde<K>, value_serde: SharedSerde<V>) -> Self {
        SourceOptions {
            key_serde,
            value_serde,
            extractor: None,
            skip_null_keys: false,
        }
    }
    /// Uses `extractor` for event time instead of the record timestamp.
    pub fn with_timestamp_extractor(mut self, extractor: impl TimestampExtractor<K, V>) -> Self {
        self.extractor = Some(Arc::new(extractor));
        self
    }
    /// Uses a shared extractor.
    pub fn with_shared_timestamp_extractor(
        mut self,
        extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    ) -> Self {
        self.extractor = extractor;
        self
    }
    /// Drops (and counts) records whose key is null, as table sources do.
    pub fn skip_null_keys(mut self) -> Self {
        self.skip_null_keys = true;
        self
    }
}

/// Options of a sink node: serdes and an optional partitioner.
pub struct SinkOptions<K, V> {
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
}

impl<K: 'static, V: 'static> SinkOptions<K, V> {
    /// Writes keys and values with these serdes; partitions by murmur2 of the key bytes.
    pub fn new(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Self::from_shared(Arc::new(key_serde), Arc::new(value_serde))
    }
    /// Same, from shared serdes.
    pub fn from_shared(key_serde: SharedSerde<K>, value_serde: SharedSerde<V>) -> Self {
        SinkOptions {
            key_serde,
            value_serde,
            partitioner: None,
        }
    }
    /// Chooses partitions with `partitioner`.
    pub fn with_partitioner(
        mut self,
        partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
    ) -> Self {
        self.partitioner = partitioner;
        self
    }
}

/// A topic the application creates and owns (named `<application.id>-<name>` on the cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopic {
    /// Name without the application id prefix.
    pub name: String,
    /// Fixed partition count; `None` follows the writing sub-topology's task count.
    pub partitions: Option<i32>,
}

/// A sub-topology: the nodes connected by parent links or shared stores; each runs as one task per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTopology {
    /// Index, numbered by the first node it contains.
    pub id: usize,
    pub(crate) nodes: Vec<usize>,
    /// Topics it reads (internal topics by their short name).
    pub source_topics: Vec<String>,
    /// Topics it writes.
    pub sink_topics: Vec<String>,
    /// Stores its processors use.
    pub stores: Vec<String>,
}

/// The partition counts a topology needs: see [`Topology::partition_plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlan {
    /// Tasks per sub-topology, by sub-topology index.
    pub task_counts: Vec<i32>,
    /// Partitions of each external source topic.
    pub external: BTreeMap<String, i32>,
    /// Partitions of each repartition topic (full name).
    pub topic_partitions: BTreeMap<String, i32>,
    /// Partitions of each changelog topic (full name).
    pub changelogs: BTreeMap<String, i32>,
    /// `min.compaction.lag.ms` of the changelog topics of versioned stores: history retention plus a day, as
    /// Kafka Streams sets it, so compaction keeps every version the store may still need.
    pub changelog_min_compaction_lag_ms: BTreeMap<String, i64>,
}

/// A processing graph: build it node by node (the Processor API) or through the DSL's `StreamsBuilder`.
///
/// ```
/// use streams_core::{Processor, ProcessorContext, Record, SinkOptions, SourceOptions, Serdes, StreamsError, Topology};
///
/// struct Shout;
/// impl Processor<String, String> for Shout {
///     type KOut = String;
///     type VOut = String;
///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<String, String>)
///         -> Result<(), StreamsError> {
///         let v = format!("{}!", r.value);
///         ctx.forward(r.with_value(v))
///     }
/// }
///
/// let mut topology = Topology::new();
/// topology.add_source("in", &["words"], SourceOptions::new(Serdes::string(), Serdes::string())).unwrap();
/// topology.add_processor::<String, String, _, _>("shout", || Shout, &["in"]).unwrap();
/// topology.add_sink("out", "loud-words", SinkOptions::new(Serdes::string(), Serdes::string()), &["shout"]).unwrap();
/// println!("{}", topology.describe());
/// assert_eq!(topology.sub_topologies().len(), 1);
/// ```
#[derive(Default)]
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: BTreeMap<String, StoreDef>,
    pub(crate) internal_topics: BTreeMap<String, InternalTopic>,
    /// Groups of source topics (internal ones by short name) that must have equal partition counts.
    pub(crate) copartition_groups: Vec<BTreeSet<String>>,
    /// Global stores by name (see `Topology::add_global_store`).
    pub(crate) global_stores: BTreeMap<String, crate::global::GlobalStoreDef>,
    /// Internal topics sized by the sub-topology reading them (see [`Topology::add_reader_sized_internal_topic`]).
    pub(crate) reader_sized: BTreeSet<String>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Topology::default()
    }

    /// The names of the nodes feeding node `name` (none for a source), or `None` when there is no such node.
    pub fn parents_of(&self, name: &str) -> Option<Vec<&str>> {
        let node = &self.nodes[self.index_of(name)?];
        Some(
            node.parents
                .iter()
                .map(|&p| self.nodes[p].name.as_str())
                .collect(),
        )
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn check_new_name(&self, name: &str) -> Result<(), StreamsError> {
        if name.is_empty() {
            return Err(StreamsError::InvalidTopology(
                "node names must not be empty".into(),
            ));
        }
        if self.index_of(name).is_some() || self.global_stores.values().any(|g| g.source == name) {
            return Err(StreamsError::DuplicateName(name.to_string()));
        }
        Ok(())
    }

    fn link_parents(
        &self,
        name: &str,
        parents: &[&str],
        input: &TypeSig,
    ) -> Result<Vec<usize>, StreamsError> {
        if parents.is_empty() {
            return Err(StreamsError::InvalidTopology(format!(
                "node '{name}' needs at least one parent"
            )));
        }
        let mut out = Vec::with_capacity(parents.len());
        for p in parents {
            let i = self.index_of(p).ok_or_else(|| StreamsError::UnknownNode {
                name: p.to_string(),
            })?;
            let parent = &self.nodes[i];
            let produced = parent.output.ok_or_else(|| {
                StreamsError::InvalidTopology(format!(
                    "sink '{p}' cannot be the parent of '{name}'"
                ))
            })?;
            if !produced.same(input) {
                return Err(StreamsError::TypeMismatch {
                    parent: p.to_string(),
                    child: name.to_string(),
                    produced: produced.describe(),
                    expected: input.describe(),
                });
            }
            out.push(i);
        }
        Ok(out)
    }

    fn push(&mut self, def: NodeDef) {
        let index = self.nodes.len();
        for &p in &def.parents {
            self.nodes[p].children.push(index);
        }
        self.nodes.push(def);
    }

    /// Adds a source reading `topics` (each topic may be read by one source only).
    pub fn add_source<K: Data, V: Data>(
        &mut self,
        name: &str,
        topics: &[&str],
        options: SourceOptions<K, V>,
    ) -> Result<&mut Self, StreamsError> {
        self.check_new_name(name)?;
        if topics.is_empty() {
            return Err(StreamsError::InvalidTopology(format!(
                "source '{name}' reads no topic"
            )));
        }
        for t in topics {
            if t.is_empty() {
                return Err(StreamsError::InvalidTopology(format!(
                    "source '{name}' names an empty topic"
                )));
            }
            if let Some(other) = self.nodes.iter().find(
                |n| matches!(&n.kind, NodeKind::Source { topics } if topics.iter().any(|x| x == t)),
            ) {
                return Err(StreamsError::InvalidTopology(format!(
                    "topic '{t}' is already read by source '{}'; read it once and share the stream",
                    other.name
                )));
            }
            if let Some(g) = self.global_stores.values().find(|g| g.topic == *t) {
                return Err(StreamsError::InvalidTopology(format!(
                    "topic '{t}' feeds global store '{}' and cannot also be read by source '{name}'",
                    g.def.name
                )));
            }
        }
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Source {
                topics: topics.iter().map(|t| t.to_string()).collect(),
            },
            parents: Vec::new(),
            children: Vec::new(),
            stores: Vec::new(),
            output: Some(TypeSig::of::<K, V>()),
            factory: Arc::new(SourceFactory {
                key_serde: options.key_serde,
                value_serde: options.value_serde,
                extractor: options.extractor,
                skip_null_keys: options.skip_null_keys,
            }),
            stateless: false,
        });
        Ok(self)
    }

    /// Adds a processor created by `supplier` (once per task), fed by `parents`, which must forward `KIn`/`VIn`.
    pub fn add_processor<KIn, VIn, P, F>(
        &mut self,
        name: &str,
        supplier: F,
        parents: &[&str],
    ) -> Result<&mut Self, StreamsError>
    where
        KIn: Data,
        VIn: Data,
        P: Processor<KIn, VIn>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.add_processor_node(name, supplier, parents, false)
    }

    /// Adds a stateless processor: one that only computes from each record and forwards (no store, no
    /// punctuation, nothing to do in `init`, `flush` or `close`), as the DSL's `filter`, `map`, `map_values`,
    /// `flat_map`, `select_key` and `peek` are. Where it is the only child of its only parent, a task builds it into
    /// that parent, so a chain of them costs one call per operator instead of a visit of the processor graph:
    /// `init`, `flush` and `close` are then not called, and [`ProcessorContext::schedule`] refuses with an error.
    /// It is described, named and reported in errors as any processor.
    ///
    /// ```
    /// use streams_core::{Processor, ProcessorContext, Record, Serdes, SinkOptions, SourceOptions,
    ///     StreamsError, Topology, TopologyTestDriver};
    ///
    /// struct Double;
    /// impl Processor<String, i64> for Double {
    ///     type KOut = String;
    ///     type VOut = i64;
    ///     fn process(&mut self, r: Record<String, i64>, ctx: &mut ProcessorContext<String, i64>)
    ///         -> Result<(), StreamsError> {
    ///         let v = r.value * 2;
    ///         ctx.forward(r.with_value(v))
    ///     }
    /// }
    ///
    /// let mut t = Topology::new();
    /// t.add_source("in", &["numbers"], SourceOptions::new(Serdes::string(), Serdes::i64()))?
    ///     .add_stateless_processor("double", || Double, &["in"])?
    ///     .add_stateless_processor("double-again", || Double, &["double"])?
    ///     .add_sink("out", "quadrupled", SinkOptions::new(Serdes::string(), Serdes::i64()), &["double-again"])?;
    /// let driver = TopologyTestDriver::new(t)?;
    /// driver.input_topic("numbers", Serdes::string(), Serdes::i64()).pipe_input("a".to_string(), 5)?;
    /// let out = driver.output_topic("quadrupled", Serdes::string(), Serdes::i64());
    /// assert_eq!(out.read_key_value()?, Some(("a".to_string(), 20)));
    /// # Ok::<(), StreamsError>(())
    /// ```
    pub fn add_stateless_processor<KIn, VIn, P, F>(
        &mut self,
        name: &str,
        supplier: F,
        parents: &[&str],
    ) -> Result<&mut Self, StreamsError>
    where
        KIn: Data,
        VIn: Data,
        P: Processor<KIn, VIn>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.add_processor_node(name, supplier, parents, true)
    }

    fn add_processor_node<KIn, VIn, P, F>(
        &mut self,
        name: &str,
        supplier: F,
        parents: &[&str],
        stateless: bool,
    ) -> Result<&mut Self, StreamsError>
    where
        KIn: Data,
        VIn: Data,
        P: Processor<KIn, VIn>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.check_new_name(name)?;
        let input = TypeSig::of::<KIn, VIn>();
        let parents = self.link_parents(name, parents, &input)?;
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Processor,
            parents,
            children: Vec::new(),
            stores: Vec::new(),
            output: Some(TypeSig::of::<P::KOut, P::VOut>()),
            factory: Arc::new(ProcessorFactory::<KIn, VIn, F> {
                supplier,
                _in: PhantomData,
            }),
            stateless,
        });
        Ok(self)
    }

    /// Adds a sink writing what `parents` forward to `topic`.
    pub fn add_sink<K: Data, V: Data>(
        &mut self,
        name: &str,
        topic: &str,
        options: SinkOptions<K, V>,
        parents: &[&str],
    ) -> Result<&mut Self, StreamsError> {
        self.check_new_name(name)?;
        if topic.is_empty() {
            return Err(StreamsError::InvalidTopology(format!(
                "sink '{name}' names an empty topic"
            )));
        }
        let input = TypeSig::of::<K, V>();
        let parents = self.link_parents(name, parents, &input)?;
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Sink {
                topic: topic.to_string(),
            },
            parents,
            children: Vec::new(),
            stores: Vec::new(),
            output: None,
            factory: Arc::new(SinkFactory {
                key_serde: options.key_serde,
                value_serde: options.value_serde,
                partitioner: options.partitioner,
            }),
            stateless: false,
        });
        Ok(self)
    }

    /// Declares an internal topic (a repartition topic), named `<application.id>-<name>` on the cluster. Sources and
    /// sinks name it by its short `name`.
    pub fn add_internal_topic(
        &mut self,
        name: &str,
        partitions: Option<i32>,
    ) -> Result<&mut Self, StreamsError> {
        if let Some(p) = partitions {
            if p < 1 {
                return Err(StreamsError::InvalidTopology(format!(
                    "internal topic '{name}' needs at least 1 partition, got {p}"
                )));
            }
        }
        if self.internal_topics.contains_key(name) {
            return Err(StreamsError::DuplicateName(name.to_string()));
        }
        self.internal_topics.insert(
            name.to_string(),
            InternalTopic {
                name: name.to_string(),
                partitions,
            },
        );
        Ok(self)
    }

    /// Declares an internal topic whose partition count follows the sub-topology that *reads* it, sized by that
    /// sub-topology's other source topics, so the topic is co-partitioned with them whatever the writer's task
    /// count. A foreign-key join uses two: subscriptions go to the right table's partitions, responses come back
    /// to the left table's. A sub-topology reading only such topics cannot be sized.
    pub fn add_reader_sized_internal_topic(
        &mut self,
        name: &str,
    ) -> Result<&mut Self, StreamsError> {
        self.add_internal_topic(name, None)?;
        self.reader_sized.insert(name.to_string());
        Ok(self)
    }

    /// Adds a key-value store and connects it to `processors`.
    pub fn add_state_store<K: 'static, V: 'static>(
        &mut self,
        builder: KeyValueStoreBuilder<K, V>,
        processors: &[&str],
    ) -> Result<&mut Self, StreamsError> {
        if self.stores.contains_key(&builder.name) || self.global_stores.contains_key(&builder.name)
        {
            return Err(StreamsError::DuplicateName(builder.name));
        }
        let name = builder.name.clone();
        self.stores.insert(
            name.clone(),
            StoreDef {
                name: name.clone(),
                supplier: builder.supplier,
                serdes: ErasedSerdes {
                    stored: Arc::new(StoreSerdes {
                        key: builder.key_serde,
                        value: builder.value_serde,
                    }),
                    plain: builder.plain,
                    versioned: builder.versioned,
                    windowed: builder.windowed,
                },
                key_type: type_name::<K>(),
                value_type: type_name::<V>(),
                logging: builder.logging,
                caching: builder.caching,
                source_changelog: builder.source_changelog,
                processors: Vec::new(),
            },
        );
        self.connect_processor_and_state_stores_many(processors, &[&name])?;
        Ok(self)
    }

    /// Adds a versioned key-value store and connects it to `processors`.
    pub fn add_versioned_state_store<K: 'static, V: 'static>(
        &mut self,
        builder: VersionedKeyValueStoreBuilder<K, V>,
        processors: &[&str],
    ) -> Result<&mut Self, StreamsError> {
        self.add_state_store(builder.inner, processors)
    }

    /// The history retention of store `name` when it is versioned.
    pub fn versioned_store_retention(&self, name: &str) -> Option<i64> {
        self.stores.get(name).and_then(|d| d.serdes.versioned())
    }

    /// Gives `processor` access to `stores`.
    pub fn connect_processor_and_state_stores(
        &mut self,
        processor: &str,
        stores: &[&str],
    ) -> Result<&mut Self, StreamsError> {
        self.connect_processor_and_state_stores_many(&[processor], stores)
    }

    fn connect_processor_and_state_stores_many(
        &mut self,
        processors: &[&str],
        stores: &[&str],
    ) -> Result<&mut Self, StreamsError> {
        for p in processors {
            let i = self.index_of(p).ok_or_else(|| StreamsError::UnknownNode {
                name: p.to_string(),
            })?;
            if self.nodes[i].kind != NodeKind::Processor {
                return Err(StreamsError::InvalidTopology(format!(
                    "only processors can use stores; '{p}' is a source or sink"
                )));
            }
            for s in stores {
                let def = self
                    .stores
                    .get_mut(*s)
                    .ok_or_else(|| StreamsError::StoreAccess {
                        processor: p.to_string(),
                        store: s.to_string(),
                        reason: "no such store in the topology; add it with add_state_store first"
                            .into(),
                    })?;
                if !def.processors.contains(&i) {
                    def.processors.push(i);
                }
                if !self.nodes[i].stores.iter().any(|x| x == s) {
                    self.nodes[i].stores.push(s.to_string());
                }
            }
        }
        Ok(self)
    }

    /// The serdes of store `name`, which must hold `K` keys and `V` values.
    pub(crate) fn store_serdes<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<&StoreSerdes<K, V>, StreamsError> {
        let def = self
            .stores
            .get(name)
            .or_else(|| self.global_stores.get(name).map(|g| &g.def))
            .ok_or_else(|| StreamsError::UnknownStore {
                store: name.to_string(),
                hint: format!(
                    " (stores: {})",
                    self.stores.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })?;
        if def.serdes.versioned().is_some() {
            return Err(StreamsError::StoreTypeMismatch {
                store: name.to_string(),
                actual: format!(
                    "a versioned store of {}, {} (read it as a versioned store)",
                    def.key_type, def.value_type
                ),
                requested: format!(
                    "a key-value store of {}, {}",
                    std::any::type_name::<K>(),
                    std::any::type_name::<V>()
                ),
            });
        }
        self.versioned_store_serdes::<K, V>(name)
    }

    /// The serdes of store `name`, versioned or not, which must hold `K` keys and `V` values.
    pub(crate) fn versioned_store_serdes<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<&StoreSerdes<K, V>, StreamsError> {
        let def = self
            .stores
            .get(name)
            .or_else(|| self.global_stores.get(name).map(|g| &g.def))
            .ok_or_else(|| StreamsError::UnknownStore {
                store: name.to_string(),
                hint: String::new(),
            })?;
        def.serdes
            .get::<K, V>()
            .ok_or_else(|| StreamsError::StoreTypeMismatch {
                store: name.to_string(),
                actual: format!("{}, {}", def.key_type, def.value_type),
                requested: format!(
                    "{}, {}",
                    std::any::type_name::<K>(),
                    std::any::type_name::<V>()
                ),
            })
    }

    /// The internal topics declared so far.
    pub fn internal_topics(&self) -> impl Iterator<Item = &InternalTopic> {
        self.internal_topics.values()
    }

    /// Whether `topic` (a short name) is internal.
    pub fn is_internal_topic(&self, topic: &str) -> bool {
        self.internal_topics.contains_key(topic)
    }

    /// The full name of `topic` for application `application_id`.
    pub fn resolve_topic(&self, application_id: &str, topic: &str) -> String {
        if self.is_internal_topic(topic) {
            format!("{application_id}-{topic}")
        } else {
            topic.to_string()
        }
    }

    /// Whether a store uses its source topic as its changelog.
    pub(crate) fn has_source_changelogs(&self) -> bool {
        self.stores.values().any(|d| d.source_changelog.is_some())
    }

    /// The source topic store `name` uses as its changelog, if it does.
    pub(crate) fn source_changelog_of(&self, name: &str) -> Option<String> {
        self.stores.get(name)?.source_changelog.clone()
    }

    /// The topic store `name` is logged to and restored from: its source topic when it has one
    /// ([`KeyValueStoreBuilder::with_changelog_from_source`]), otherwise [`Topology::changelog_topic`].
    pub fn store_changelog_topic(&self, application_id: &str, name: &str) -> String {
        match self
            .stores
            .get(name)
            .and_then(|d| d.source_changelog.as_ref())
        {
            Some(topic) => topic.clone(),
            None => Topology::changelog_topic(application_id, name),
        }
    }

    /// The changelog topic of `store`: `<application.id>-<store>-changelog`.
    pub fn changelog_topic(application_id: &str, store: &str) -> String {
        format!("{application_id}-{store}-changelog")
    }

    /// Names of the stores, with whether each is changelogged.
    pub fn stores(&self) -> impl Iterator<Item = (&str, bool)> {
        self.stores.values().map(|s| (s.name.as_str(), s.logging))
    }

    /// The sub-topologies: connected components of the graph, where processors sharing a store count as connected.
    pub fn sub_topologies(&self) -> Vec<SubTopology> {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        fn union(p: &mut [usize], a: usize, b: usize) {
            let (ra, rb) = (find(p, a), find(p, b));
            if ra != rb {
                let (lo, hi) = (ra.min(rb), ra.max(rb));
                p[hi] = lo;
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for &q in &node.parents {
                union(&mut parent, i, q);
            }
        }
        for store in self.stores.values() {
            for w in store.processors.windows(2) {
                union(&mut parent, w[0], w[1]);
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..n {
            let root = find(&mut parent, i);
            groups.entry(root).or_default().push(i);
        }
        groups
            .into_values()
            .enumerate()
            .map(|(id, nodes)| {
                let mut source_topics = Vec::new();
                let mut sink_topics = Vec::new();
                let mut stores = BTreeSet::new();
                for &i in &nodes {
                    match &self.nodes[i].kind {
                        NodeKind::Source { topics } => source_topics.extend(topics.iter().cloned()),
                        NodeKind::Sink { topic } => sink_topics.push(topic.clone()),
                        NodeKind::Processor => {}
                    }
                    stores.extend(self.nodes[i].stores.iter().cloned());
                }
                SubTopology {
                    id,
                    nodes,
                    source_topics,
                    sink_topics,
                    stores: stores.into_iter().collect(),
                }
            })
            .collect()
    }

    /// How many tasks each sub-topology runs and how many partitions each internal topic (repartition and
    /// changelog, by full name) gets, given the partition counts of the external topics. Each sub-topology runs
    /// as many tasks as its largest source topic has partitions; a repartition topic follows the sub-topology that
    /// writes it unless its count is fixed; a changelog has one partition per task of its store's sub-topology.
    pub fn partition_plan(
        &self,
        application_id: &str,
        mut external_partitions: impl FnMut(&str) -> Result<i32, StreamsError>,
    ) -> Result<PartitionPlan, StreamsError> {
        let subs = self.sub_topologies();
        let mut known: BTreeMap<String, i32> = BTreeMap::new();
        for s in &subs {
            for t in &s.source_topics {
                if !self.is_internal_topic(t) && !known.contains_key(t) {
                    known.insert(t.clone(), external_partitions(t)?);
                }
            }
        }
        let groups = self.merged_copartition_groups();
        let mut task_counts: Vec<Option<i32>> = vec![None; subs.len()];
        for _ in 0..=subs.len() {
            for s in &subs {
                if task_counts[s.id].is_some() {
                    continue;
                }
                let mut count = Some(0);
                for t in &s.source_topics {
                    let n = if self.reader_sized.contains(t) {
                        // Sized by this sub-topology, not the other way round.
                        Some(0)
                    } else if let Some(it) = self.internal_topics.get(t) {
                        it.partitions.or_else(|| {
                            self.internal_partitions(t, &groups, &known, &subs, &task_counts)
                        })
                    } else {
                        known.get(t).copied()
                    };
                    count = match (count, n) {
                        (Some(c), Some(n)) => Some(c.max(n)),
                        _ => None,
                    };
                }
                task_counts[s.id] = count;
            }
        }
        let task_counts: Vec<i32> = task_counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| match c {
                Some(0) => Err(StreamsError::InvalidTopology(format!(
                    "cannot size sub-topology {i}: it reads only internal topics sized by their reader"
                ))),
                Some(n) => Ok(n),
                None => Err(StreamsError::InvalidTopology(format!(
                    "cannot size sub-topology {i}: its repartition topics form a cycle"
                ))),
            })
            .collect::<Result<_, _>>()?;
        let mut topic_partitions = BTreeMap::new();
        let mut changelogs = BTreeMap::new();
        let counts: Vec<Option<i32>> = task_counts.iter().copied().map(Some).collect();
        for it in self.internal_topics.values() {
            if self.reader_sized.contains(&it.name) {
                let reader = subs
                    .iter()
                    .find(|r| r.source_topics.contains(&it.name))
                    .ok_or_else(|| {
                        StreamsError::InvalidTopology(format!(
                            "internal topic '{}' has no reader to size it",
                            it.name
                        ))
                    })?;
                topic_partitions.insert(
                    self.resolve_topic(application_id, &it.name),
                    task_counts[reader.id],
                );
                continue;
            }
            let n = it
                .partitions
                .or_else(|| self.internal_partitions(&it.name, &groups, &known, &subs, &counts))
                .ok_or_else(|| {
                    StreamsError::InvalidTopology(format!(
                        "internal topic '{}' has no writer to size it",
                        it.name
                    ))
                })?;
            topic_partitions.insert(self.resolve_topic(application_id, &it.name), n);
        }
        self.check_copartitioning(application_id, &groups, &known, &topic_partitions)?;
        let mut min_lag = BTreeMap::new();
        for s in &subs {
            for store in &s.stores {
                if let Some(topic) = self
                    .stores
                    .get(store)
                    .and_then(|d| d.source_changelog.as_ref())
                {
                    if !s.source_topics.iter().any(|t| t == topic) {
                        return Err(StreamsError::InvalidTopology(format!(
                            "store '{store}' uses topic '{topic}' as its changelog, but its sub-topology reads {:?}",
                            s.source_topics
                        )));
                    }
                    continue; // the source topic is its changelog
                }
                if let Some(def) = self.stores.get(store).filter(|d| d.logging) {
                    let topic = Topology::changelog_topic(application_id, store);
                    if let Some(retention) = def.serdes.versioned() {
                        min_lag.insert(topic.clone(), retention.saturating_add(86_400_000));
                    }
                    changelogs.insert(topic, task_counts[s.id]);
                }
            }
        }
        Ok(PartitionPlan {
            task_counts,
            external: known,
            topic_partitions,
            changelogs,
            changelog_min_compaction_lag_ms: min_lag,
        })
    }

    /// Declares that the topics read by the sources upstream of `nodes` (following parent links, so within one
    /// sub-topology) must be co-partitioned: the same number of partitions, so that the same key lands in the
    /// same partition number on each. Joins need this. A repartition topic in such a group without a fixed count
    /// gets the group's count; otherwise [`Topology::partition_plan`] (and so the runtime and the test driver)
    /// fails with [`StreamsError::CopartitionMismatch`] when the counts differ. Groups sharing a topic merge.
    ///
    /// ```
    /// use streams_core::{Serdes, SourceOptions, StreamsError, Topology};
    ///
    /// let mut t = Topology::new();
    /// t.add_source("clicks", &["clicks"], SourceOptions::new(Serdes::string(), Serdes::string())).unwrap();
    /// t.add_source("users", &["users"], SourceOptions::new(Serdes::string(), Serdes::string())).unwrap();
    /// t.add_copartition_group(&["clicks", "users"]).unwrap();
    /// let counts = |topic: &str| -> Result<i32, StreamsError> { Ok(if topic == "clicks" { 4 } else { 3 }) };
    /// let err = t.partition_plan("app", counts).unwrap_err();
    /// assert!(err.to_string().contains("clicks (4 partitions)"));
    /// ```
    pub fn add_copartition_group(&mut self, nodes: &[&str]) -> Result<&mut Self, StreamsError> {
        let mut topics = BTreeSet::new();
        let mut stack = Vec::with_capacity(nodes.len());
        for n in nodes {
            stack.push(self.index_of(n).ok_or_else(|| StreamsError::UnknownNode {
                name: n.to_string(),
            })?);
        }
        let mut seen = BTreeSet::new();
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            let node = &self.nodes[i];
            if let NodeKind::Source { topics: t } = &node.kind {
                topics.extend(t.iter().cloned());
            }
            stack.extend(node.parents.iter().copied());
        }
        if topics.len() > 1 && !self.copartition_groups.contains(&topics) {
            self.copartition_groups.push(topics);
        }
        Ok(self)
    }

    /// The groups of topics (internal ones by short name) that must be co-partitioned, as declared with
    /// [`Topology::add_copartition_group`].
    pub fn copartition_groups(&self) -> &[BTreeSet<String>] {
        &self.copartition_groups
    }

    /// The declared groups with overlapping ones merged.
    fn merged_copartition_groups(&self) -> Vec<BTreeSet<String>> {
        let mut merged: Vec<BTreeSet<String>> = Vec::new();
        for g in &self.copartition_groups {
            let mut g = g.clone();
            let mut i = 0;
            while i < merged.len() {
                if merged[i].iter().any(|t| g.contains(t)) {
                    g.extend(merged.swap_remove(i));
                    i = 0;
                } else {
                    i += 1;
                }
            }
            merged.push(g);
        }
        merged
    }

    /// The partition count of internal topic `topic` when it has no fixed count: in a co-partition group, the
    /// group's count (the largest fixed count among its members, or else the largest count of their writers);
    /// otherwise the task count of the sub-topology writing it. `None` while that is not known yet.
    fn internal_partitions(
        &self,
        topic: &str,
        groups: &[BTreeSet<String>],
        known: &BTreeMap<String, i32>,
        subs: &[SubTopology],
        task_counts: &[Option<i32>],
    ) -> Option<i32> {
        let writer = |t: &str| {
            subs.iter()
                .find(|w| w.sink_topics.iter().any(|s| s == t))
                .and_then(|w| task_counts[w.id])
        };
        let Some(group) = groups.iter().find(|g| g.contains(topic)) else {
            return writer(topic);
        };
        let fixed = group
            .iter()
            .filter_map(|t| match self.internal_topics.get(t) {
                Some(it) => it.partitions,
                None => known.get(t).copied(),
            });
        if let Some(n) = fixed.max() {
            return Some(n);
        }
        group
            .iter()
            .try_fold(0, |acc, t| writer(t).map(|n| acc.max(n)))
    }

    /// Fails when the topics of a co-partition group have different partition counts.
    fn check_copartitioning(
        &self,
        application_id: &str,
        groups: &[BTreeSet<String>],
        known: &BTreeMap<String, i32>,
        internal: &BTreeMap<String, i32>,
    ) -> Result<(), StreamsError> {
        for g in groups {
            let counts: Vec<(String, i32)> = g
                .iter()
                .filter_map(|t| {
                    let full = self.resolve_topic(application_id, t);
                    let n = if self.is_internal_topic(t) {
                        internal.get(&full).copied()
                    } else {
                        known.get(t).copied()
                    };
                    n.map(|n| (full, n))
                })
                .collect();
            if counts.windows(2).any(|w| w[0].1 != w[1].1) {
                return Err(StreamsError::CopartitionMismatch { topics: counts });
            }
        }
        Ok(())
    }

    /// Checks the whole graph: every sub-topology reads at least one topic.
    pub fn validate(&self) -> Result<(), StreamsError> {
        if self.nodes.is_empty() {
            return Err(StreamsError::InvalidTopology(
                "the topology has no nodes".into(),
            ));
        }
        for sub in self.sub_topologies() {
            if sub.source_topics.is_empty() {
                let first = &self.nodes[sub.nodes[0]].name;
                return Err(StreamsError::InvalidTopology(format!(
                    "sub-topology {} (starting at '{first}') reads no topic",
                    sub.id
                )));
            }
        }
        for s in self.stores.values() {
            if s.processors.is_empty() {
                return Err(StreamsError::InvalidTopology(format!(
                    "store '{}' is not connected to any processor",
                    s.name
                )));
            }
        }
        Ok(())
    }

    /// A description of the graph, printed the way Kafka Streams prints `Topology#describe()`.
    pub fn describe(&self) -> TopologyDescription {
        let subs = self
            .sub_topologies()
            .into_iter()
            .map(|s| SubTopologyDescription {
                id: s.id,
                nodes: s
                    .nodes
                    .iter()
                    .map(|&i| {
                        let n = &self.nodes[i];
                        NodeDescription {
                            name: n.name.clone(),
                            kind: match &n.kind {
                                NodeKind::Source { topics } => {
                                    NodeDescriptionKind::Source(topics.clone())
                                }
                                NodeKind::Processor => {
                                    NodeDescriptionKind::Processor(n.stores.clone())
                                }
                                NodeKind::Sink { topic } => {
                                    NodeDescriptionKind::Sink(topic.clone())
                                }
                            },
                            successors: n
                                .children
                                .iter()
                                .map(|&c| self.nodes[c].name.clone())
                                .collect(),
                            predecessors: n
                                .parents
                                .iter()
                                .map(|&c| self.nodes[c].name.clone())
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect();
        TopologyDescription {
            sub_topologies: subs,
            global_stores: self.global_stores().collect(),
        }
    }
}

/// What kind of node, with its topics or stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeDescriptionKind {
    /// A source and its topics.
    Source(Vec<String>),
    /// A processor and its stores.
    Processor(Vec<String>),
    /// A sink and its topic.
    Sink(String),
}

/// One node of a [`TopologyDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDescription {
    /// Node name.
    pub name: String,
    /// Kind.
    pub kind: NodeDescriptionKind,
    /// Children names.
    pub successors: Vec<String>,
    /// Parent names.
    pub predecessors: Vec<String>,
}

/// One sub-topology of a [`TopologyDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTopologyDescription {
    /// Index.
    pub id: usize,
    /// Nodes in the order they were added.
    pub nodes: Vec<NodeDescription>,
}

/// The printable structure of a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyDescription {
    /// Sub-topologies in order.
    pub sub_topologies: Vec<SubTopologyDescription>,
    /// Global stores, by store name; they run no tasks.
    pub global_stores: Vec<crate::global::GlobalStoreDescription>,
}

impl fmt::Display for TopologyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Topologies:")?;
        for s in &self.sub_topologies {
            writeln!(f, "   Sub-topology: {}", s.id)?;
            for n in &s.nodes {
                match &n.kind {
                    NodeDescriptionKind::Source(t) => {
                        writeln!(f, "    Source: {} (topics: [{}])", n.name, t.join(", "))?
                    }
                    NodeDescriptionKind::Processor(st) => {
                        writeln!(f, "    Processor: {} (stores: [{}])", n.name, st.join(", "))?
                    }
                    NodeDescriptionKind::Sink(t) => {
                        writeln!(f, "    Sink: {} (topic: {})", n.name, t)?
                    }
                }
                if !matches!(n.kind, NodeDescriptionKind::Sink(_)) {
                    let succ = if n.successors.is_empty() {
                        "none".to_string()
                    } else {
                        n.successors.join(", ")
                    };
                    writeln!(f, "      --> {succ}")?;
                }
                if !matches!(n.kind, NodeDescriptionKind::Source(_)) {
                    writeln!(f, "      <-- {}", n.predecessors.join(", "))?;
                }
            }
            writeln!(f)?;
        }
        crate::global::describe_global_stores(f, self)?;
        Ok(())
    }
}

#[cfg(test)]
mod inline_tests {
    use super::*;
    use crate::{ProcessorContext, Record, Serdes};

    struct Pass;
    impl Processor<String, i64> for Pass {
        type KOut = String;
        type VOut = i64;
        fn process(
            &mut self,
            r: Record<String, i64>,
            ctx: &mut ProcessorContext<String, i64>,
        ) -> Result<(), StreamsError> {
            ctx.forward(r)
        }
    }

    fn inlined(t: &Topology) -> Vec<&str> {
        t.nodes
            .iter()
            .filter(|n| n.inlined_into_parent(&t.nodes))
            .map(|n| n.name.as_str())
            .collect()
    }

    #[test]
    fn only_stateless_only_children_of_a_single_parent_are_built_into_it() {
        let sink = || SinkOptions::new(Serdes::string(), Serdes::i64());
        let mut t = Topology::new();
        t.add_source(
            "src",
            &["in"],
            SourceOptions::new(Serdes::string(), Serdes::i64()),
        )
        .unwrap()
        .add_stateless_processor("a", || Pass, &["src"])
        .unwrap()
        .add_stateless_processor("b", || Pass, &["a"])
        .unwrap()
        // `b` has two children: neither is built into it.
        .add_stateless_processor("c", || Pass, &["b"])
        .unwrap()
        .add_stateless_processor("d", || Pass, &["b"])
        .unwrap()
        // Two parents.
        .add_stateless_processor("e", || Pass, &["c", "d"])
        .unwrap()
        // A plain processor, then a stateless one with a store connected to it.
        .add_processor("f", || Pass, &["e"])
        .unwrap()
        .add_stateless_processor("g", || Pass, &["f"])
        .unwrap()
        .add_sink("out", "out", sink(), &["g"])
        .unwrap();
        assert_eq!(inlined(&t), vec!["a", "b", "g"]);
        t.add_state_store(
            crate::KeyValueStoreBuilder::new(
                "s",
                crate::StoreKind::InMemory,
                Serdes::string(),
                Serdes::i64(),
            ),
            &["g"],
        )
        .unwrap();
        assert_eq!(inlined(&t), vec!["a", "b"]);
    }
}
