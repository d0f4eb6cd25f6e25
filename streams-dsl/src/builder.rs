//! `StreamsBuilder`: where topologies start.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use state_store::serde::OptionSerde;
use streams_core::{
    Data, KeyValueStoreBuilder, Processor, SharedSerde, SinkOptions, SourceOptions, StoreKind,
    StreamsError, Topology, VersionedKeyValueStoreBuilder,
};

use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::ops::table_source::TableSource;
use crate::ops::versioned_table_source::VersionedTableSource;
use crate::params::{pick_serde, Consumed, Materialized};

pub(crate) type Shared = Rc<RefCell<BuilderInner>>;

/// The topology under construction, with a node counter for generated names and the first error met.
pub(crate) struct BuilderInner {
    pub topology: Topology,
    counter: usize,
    error: Option<StreamsError>,
    /// For windowed tables, by node: the grace period and whether window ends are inclusive (sessions), which
    /// `suppress(until_window_closes)` needs.
    pub window_close: std::collections::HashMap<String, (i64, bool)>,
    /// Source tables use their topic as their store's changelog.
    pub reuse_source_topics: bool,
    /// The next store added by [`BuilderInner::add_timestamped_store_as`] uses this source topic as its changelog.
    source_changelog: Option<String>,
    /// The node upstream of each repartition topic's source, so a search up the graph can cross the topic.
    repartition_upstream: std::collections::HashMap<String, String>,
    /// Nodes whose one store is not their table's rows (a suppression's buffer): a join reading such a table
    /// materializes it behind the node instead.
    pub buffer_nodes: std::collections::HashSet<String>,
}

impl BuilderInner {
    /// A generated name in Kafka Streams' style: `PREFIX-0000000007`.
    pub(crate) fn name(&mut self, prefix: &str) -> String {
        let n = format!("{prefix}{:010}", self.counter);
        self.counter += 1;
        n
    }

    /// Keeps the first error; DSL calls stay chainable and `build` reports it.
    pub(crate) fn check<T>(&mut self, r: Result<T, StreamsError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    pub(crate) fn add_processor<KIn, VIn, P, F>(
        &mut self,
        name: &str,
        supplier: F,
        parents: &[&str],
    ) where
        KIn: Data,
        VIn: Data,
        P: Processor<KIn, VIn>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let r = self
            .topology
            .add_processor::<KIn, VIn, P, F>(name, supplier, parents)
            .map(|_| ());
        self.check(r);
    }

    /// Sends what `parent` forwards through the internal topic `<base>-repartition`; returns the node reading it.
    pub(crate) fn repartition<K: Data, V: Data>(
        &mut self,
        parent: &str,
        base: &str,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
        partitions: Option<i32>,
    ) -> String {
        let topic = format!("{base}-repartition");
        let r = self
            .topology
            .add_internal_topic(&topic, partitions)
            .map(|_| ());
        self.check(r);
        let sink = self.name("KSTREAM-SINK-");
        let r = self
            .topology
            .add_sink(
                &sink,
                &topic,
                SinkOptions::from_shared(key_serde.clone(), value_serde.clone()),
                &[parent],
            )
            .map(|_| ());
        self.check(r);
        let source = self.name("KSTREAM-SOURCE-");
        let r = self
            .topology
            .add_source(
                &source,
                &[&topic],
                SourceOptions::from_shared(key_serde, value_serde),
            )
            .map(|_| ());
        self.check(r);
        self.repartition_upstream
            .insert(source.clone(), parent.to_string());
        source
    }

    /// How long after a window's end its result is final, for the windowed results node `node` emits: the
    /// grace period (plus the gap, and one for an inclusive end, for sessions) of the windowed aggregation
    /// upstream. As Kafka Streams' `GraphGraceSearchUtil`, the search goes up through every parent (and across
    /// repartition topics) until it meets windowed aggregations, and takes the longest of their waits; `Err`
    /// with the chain of nodes searched when some path reaches a source without meeting one.
    pub(crate) fn window_close_wait(&self, node: &str) -> Result<i64, String> {
        if let Some(&(grace, end_inclusive)) = self.window_close.get(node) {
            return Ok(grace.saturating_add(i64::from(end_inclusive)));
        }
        let mut parents: Vec<String> = self
            .topology
            .parents_of(node)
            .unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect();
        if let Some(up) = self.repartition_upstream.get(node) {
            parents.push(up.clone());
        }
        if parents.is_empty() {
            return Err(node.to_string());
        }
        let mut wait = i64::MIN;
        for p in parents {
            let w = self
                .window_close_wait(&p)
                .map_err(|chain| format!("{chain} -> {node}"))?;
            wait = wait.max(w);
        }
        Ok(wait)
    }

    /// Adds a store with the implementation, logging and caching of `m` but keys and values of any type.
    pub(crate) fn add_store_as<K: 'static, V: 'static, K2: 'static, V2: 'static>(
        &mut self,
        name: &str,
        m: &Materialized<K, V>,
        key_serde: SharedSerde<K2>,
        value_serde: SharedSerde<V2>,
        processor: &str,
    ) {
        if m.versioned.is_some() {
            self.check::<()>(Err(StreamsError::InvalidTopology(format!(
                "store '{name}': versioned stores (Materialized::as_versioned_store) are supported for source \
                 tables (StreamsBuilder::table) only"
            ))));
            return;
        }
        let supplier = m
            .supplier
            .clone()
            .unwrap_or_else(|| Arc::new(StoreKind::default()));
        let builder = KeyValueStoreBuilder::from_parts(name, supplier, key_serde, value_serde)
            .with_logging(m.logging)
            .with_caching(m.caching);
        let r = self
            .topology
            .add_state_store(builder, &[processor])
            .map(|_| ());
        self.check(r);
    }

    /// Adds the store a [`Materialized`] describes, connected to `processor`: a timestamped store, as every
    /// table and aggregate of the DSL keeps (`ValueAndTimestamp<V>` values; readable as plain `V` too).
    pub(crate) fn add_store<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        m: &Materialized<K, V>,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
        processor: &str,
    ) {
        self.add_timestamped_store_as(name, m, key_serde, value_serde, processor);
    }

    /// Adds the versioned store of a source table read from `topic`, keeping `history` of history.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_versioned_store<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        m: &Materialized<K, V>,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
        history: std::time::Duration,
        processor: &str,
        topic: &str,
    ) {
        let supplier = m
            .supplier
            .clone()
            .unwrap_or_else(|| Arc::new(StoreKind::default()));
        let mut builder = VersionedKeyValueStoreBuilder::from_parts(
            name,
            supplier,
            key_serde,
            value_serde,
            history,
        )
        .with_logging(m.logging);
        if self.reuse_source_topics && m.logging {
            builder = builder.with_changelog_from_source(topic);
        }
        let r = self
            .topology
            .add_versioned_state_store(builder, &[processor])
            .map(|_| ());
        self.check(r);
    }

    /// Adds a timestamped store with the implementation, logging and caching of `m` but keys and values of any
    /// type.
    pub(crate) fn add_timestamped_store_as<K: 'static, V: 'static, K2: 'static, V2: 'static>(
        &mut self,
        name: &str,
        m: &Materialized<K, V>,
        key_serde: SharedSerde<K2>,
        value_serde: SharedSerde<V2>,
        processor: &str,
    ) {
        if m.versioned.is_some() {
            self.check::<()>(Err(StreamsError::InvalidTopology(format!(
                "store '{name}': versioned stores (Materialized::as_versioned_store) are supported for source \
                 tables (StreamsBuilder::table) only"
            ))));
            return;
        }
        let supplier = m
            .supplier
            .clone()
            .unwrap_or_else(|| Arc::new(StoreKind::default()));
        let mut builder =
            KeyValueStoreBuilder::timestamped_from_parts(name, supplier, key_serde, value_serde)
                .with_logging(m.logging)
                .with_caching(m.caching);
        if let Some(topic) = self.source_changelog.take() {
            if m.logging {
                builder = builder.with_changelog_from_source(topic);
            }
        }
        let r = self
            .topology
            .add_state_store(builder, &[processor])
            .map(|_| ());
        self.check(r);
    }
}

/// Flags asking upstream table operators to send old values along with new ones (grouping a table needs them).
/// Each table holds the flags of itself and of the operators it derives from, up to one that has a store.
pub(crate) type OldValueFlags = Vec<Arc<AtomicBool>>;

/// Starts topologies: streams and tables from topics. Operators chain from there; [`StreamsBuilder::build`]
/// returns the [`Topology`].
///
/// ```
/// use streams_dsl::{Consumed, Materialized, Produced, Serdes, StreamsBuilder};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("text", Consumed::with(Serdes::unit(), Serdes::string()))
///     .flat_map_values(|_, line: String| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
///     .group_by(|_, word| word.clone(), Default::default())
///     .count(Materialized::as_store("word-counts"))
///     .to_stream()
///     .to("word-counts", Produced::new());
/// let topology = builder.build().unwrap();
/// println!("{}", topology.describe());
/// ```
pub struct StreamsBuilder {
    pub(crate) inner: Shared,
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StreamsBuilder {
            inner: Rc::new(RefCell::new(BuilderInner {
                topology: Topology::new(),
                counter: 0,
                error: None,
                window_close: Default::default(),
                repartition_upstream: Default::default(),
                reuse_source_topics: false,
                source_changelog: None,
                buffer_nodes: Default::default(),
            })),
        }
    }

    /// Applies `optimization` to the topology built (Kafka's `topology.optimization`).
    ///
    /// With [`TopologyOptimization::ReuseSourceTopics`](crate::TopologyOptimization::ReuseSourceTopics) (or [`TopologyOptimization::All`](crate::TopologyOptimization::All)), a table read from a
    /// topic ([`StreamsBuilder::table`]) keeps no changelog topic of its own: its source topic is its changelog,
    /// and after a failure or a move its store is restored from the source topic up to the offset the
    /// application committed. That saves a topic and a copy of every record; the price is that restoration
    /// copies the topic's records as they are, so a record that processing skipped (a value its serde cannot
    /// read, with a continue handler) enters the store when it is restored.
    ///
    /// ```
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new().with_optimization(TopologyOptimization::ReuseSourceTopics);
    /// builder.table::<String, String>("customers", Consumed::new(), Materialized::as_store("customers"));
    /// let topology = builder.build().unwrap();
    /// // The table's store is logged to, and restored from, its source topic.
    /// assert_eq!(topology.store_changelog_topic("shop", "customers"), "customers");
    /// ```
    pub fn with_optimization(self, optimization: crate::TopologyOptimization) -> Self {
        use crate::TopologyOptimization;
        self.inner.borrow_mut().reuse_source_topics = matches!(
            optimization,
            TopologyOptimization::ReuseSourceTopics | TopologyOptimization::All
        );
        self
    }

    /// A stream of the records of `topic`.
    pub fn stream<K: Data, V: Data>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V> {
        self.streams(&[topic], consumed)
    }

    /// One stream of the records of several topics.
    pub fn streams<K: Data, V: Data>(
        &self,
        topics: &[&str],
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        let mut b = self.inner.borrow_mut();
        let name = consumed
            .name
            .clone()
            .unwrap_or_else(|| b.name("KSTREAM-SOURCE-"));
        let op = format!("stream({})", topics.join(", "));
        let hint = "Consumed::with(key_serde, value_serde)";
        let k = b.check(pick_serde(&consumed.key_serde, &None, &op, "key", hint));
        let v = b.check(pick_serde(&consumed.value_serde, &None, &op, "value", hint));
        if let (Some(k), Some(v)) = (k.clone(), v.clone()) {
            let opts = SourceOptions::from_shared(k, v)
                .with_shared_timestamp_extractor(consumed.extractor);
            let r = b.topology.add_source(&name, topics, opts).map(|_| ());
            b.check(r);
        }
        drop(b);
        KStream::new(self.inner.clone(), name, k, v, false)
    }

    /// A table of the latest value per key of `topic` (a `null` value deletes the key; null keys are skipped and
    /// counted). The table is always materialized; name the store with `Materialized::as_store` to query it.
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let mut b = self.inner.borrow_mut();
        if consumed.extractor.is_some() {
            b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                "table('{topic}'): custom timestamp extractors are supported on streams only"
            ))));
        }
        let source = consumed
            .name
            .clone()
            .unwrap_or_else(|| b.name("KSTREAM-SOURCE-"));
        let op = format!("table({topic})");
        let hint = "Consumed::with(key_serde, value_serde)";
        let k = b.check(pick_serde(
            &materialized.key_serde,
            &consumed.key_serde,
            &op,
            "key",
            hint,
        ));
        let v = b.check(pick_serde(
            &materialized.value_serde,
            &consumed.value_serde,
            &op,
            "value",
            hint,
        ));
        let processor = b.name("KTABLE-SOURCE-");
        let store = materialized
            .name
            .clone()
            .unwrap_or_else(|| b.name(&format!("{topic}-STATE-STORE-")));
        let send_old = Arc::new(AtomicBool::new(false));
        let (k_out, v_out) = (k.clone(), v.clone());
        if let (Some(k), Some(v)) = (k.clone(), v.clone()) {
            let opts = SourceOptions::from_shared(
                k.clone(),
                Arc::new(OptionSerde::from_shared(v.clone())) as SharedSerde<Option<V>>,
            )
            .skip_null_keys();
            let r = b.topology.add_source(&source, &[topic], opts).map(|_| ());
            b.check(r);
            let store_name: Arc<str> = Arc::from(store.as_str());
            let flag = send_old.clone();
            if let Some(history) = materialized.versioned {
                b.add_processor::<K, Option<V>, _, _>(
                    &processor,
                    move || VersionedTableSource::<K, V> {
                        store_name: store_name.clone(),
                        send_old: flag.load(std::sync::atomic::Ordering::Relaxed),
                        store: None,
                    },
                    &[&source],
                );
                b.add_versioned_store(&store, &materialized, k, v, history, &processor, topic);
                drop(b);
                return KTable::new(
                    self.inner.clone(),
                    processor,
                    k_out,
                    v_out,
                    materialized.name.is_some().then_some(store),
                    vec![send_old],
                );
            }
            let named = materialized.name.is_some();
            b.add_processor::<K, Option<V>, _, _>(
                &processor,
                move || TableSource::<K, V> {
                    store_name: store_name.clone(),
                    send_old: flag.load(std::sync::atomic::Ordering::Relaxed),
                    materialized: named,
                    store: None,
                    emit: None,
                },
                &[&source],
            );
            if b.reuse_source_topics {
                b.source_changelog = Some(topic.to_string());
            }
            b.add_store(&store, &materialized, k, v, &processor);
        }
        drop(b);
        KTable::new(
            self.inner.clone(),
            processor,
            k,
            v,
            materialized.name.is_some().then_some(store),
            vec![send_old],
        )
    }

    /// Adds a store for processors attached later with [`KStream::process`].
    pub fn add_state_store<K: 'static, V: 'static>(
        &self,
        store: KeyValueStoreBuilder<K, V>,
    ) -> &Self {
        let mut b = self.inner.borrow_mut();
        let r = b.topology.add_state_store(store, &[]).map(|_| ());
        b.check(r);
        self
    }

    /// Adds a versioned store (Kafka's `addStateStore` with a versioned store builder) for processors attached
    /// later with [`KStream::process`] or [`KStream::process_values`], which read it with
    /// `versioned_key_value_store` on their context.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::*;
    ///
    /// /// Records each price as a version and forwards the price it replaced, as of the instant before.
    /// struct PreviousPrice;
    /// impl FixedKeyProcessor<String, i64> for PreviousPrice {
    ///     type VOut = String;
    ///     fn process(
    ///         &mut self,
    ///         r: FixedKeyRecord<String, i64>,
    ///         ctx: &mut FixedKeyProcessorContext<'_, String, String>,
    ///     ) -> Result<(), StreamsError> {
    ///         let mut history = ctx.versioned_key_value_store::<String, i64>("price-history")?;
    ///         let before = history.get_as_of(r.key(), r.timestamp() - 1)?.map(|v| v.value);
    ///         history.put(r.key(), Some(r.value()), r.timestamp())?;
    ///         let line = format!("{before:?} -> {}", r.value());
    ///         ctx.forward(r.with_value(line))
    ///     }
    /// }
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.add_versioned_state_store(VersionedKeyValueStoreBuilder::new(
    ///     "price-history",
    ///     StoreKind::InMemory,
    ///     Serdes::string(),
    ///     Serdes::i64(),
    ///     Duration::from_secs(3_600),
    /// ));
    /// builder
    ///     .stream::<String, i64>("prices", Consumed::new())
    ///     .process_values(|| PreviousPrice, &["price-history"])
    ///     .to("changes", Produced::new());
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let input = driver.input_topic("prices", Serdes::string(), Serdes::i64());
    /// input.pipe_input_at("pen".into(), 3, 1_000).unwrap();
    /// input.pipe_input_at("pen".into(), 5, 2_000).unwrap();
    /// input.pipe_input_at("pen".into(), 4, 1_500).unwrap(); // out of order: the price before 1 500 was 3
    /// let out = driver.output_topic("changes", Serdes::string(), Serdes::string());
    /// let lines: Vec<String> = out.read_key_values_to_vec().unwrap().into_iter().map(|(_, v)| v).collect();
    /// assert_eq!(lines, ["None -> 3", "Some(3) -> 5", "Some(3) -> 4"]);
    /// ```
    pub fn add_versioned_state_store<K: 'static, V: 'static>(
        &self,
        store: VersionedKeyValueStoreBuilder<K, V>,
    ) -> &Self {
        let mut b = self.inner.borrow_mut();
        let r = b.topology.add_versioned_state_store(store, &[]).map(|_| ());
        b.check(r);
        self
    }

    /// The finished topology, or the first error any DSL call met. Streams and tables still held are detached:
    /// operators added to them afterwards go nowhere.
    pub fn build(self) -> Result<Topology, StreamsError> {
        let mut inner = self.inner.borrow_mut();
        let topology = std::mem::take(&mut inner.topology);
        if let Some(e) = inner.error.take() {
            return Err(e);
        }
        topology.validate()?;
        Ok(topology)
    }
}
