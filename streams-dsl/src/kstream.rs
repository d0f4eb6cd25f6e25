//! `KStream`: an unbounded stream of records.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use state_store::serde::OptionSerde;
use streams_core::{Data, Processor, SharedSerde, SinkOptions, StreamsError};

use crate::builder::Shared;
use crate::change::Change;
use crate::fixed_key::{FixedKeyAdapter, FixedKeyProcessor};
use crate::grouped::KGroupedStream;
use crate::ktable::KTable;
use crate::named::{processor_name, Named};
use crate::ops::branch::{Branch, Branches, Predicate};
use crate::ops::filter::Filter;
use crate::ops::flat_map::{FlatMap, FlatMapValues};
use crate::ops::map::{Map, MapValues, SelectKey};
use crate::ops::passthrough::PassThrough;
use crate::ops::peek::Peek;
use crate::ops::table_source::TableSource;
use crate::ops::to_table::StreamToTable;
use crate::params::{pick_serde, Grouped, Materialized, Produced, Repartitioned};
use crate::routing::{TopicNameExtractor, TopicRouter};

/// A stream of key-value records, each an independent event (Kafka Streams' `KStream`).
///
/// Operators return new streams; a stream can be used several times (each use is a branch of the graph). Key
/// changing operators (`map`, `flat_map`, `select_key`, `process`) mark the stream so that a later grouping
/// repartitions it by the new key automatically.
pub struct KStream<K, V> {
    pub(crate) b: Shared,
    pub(crate) node: String,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) repartition_required: bool,
    /// The name the next operator applied to this handle gives its processor ([`KStream::named`]).
    pub(crate) pending_name: Option<Named>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream {
            b: self.b.clone(),
            node: self.node.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            repartition_required: self.repartition_required,
            pending_name: self.pending_name.clone(),
        }
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn new(
        b: Shared,
        node: String,
        key_serde: Option<SharedSerde<K>>,
        value_serde: Option<SharedSerde<V>>,
        repartition_required: bool,
    ) -> Self {
        KStream {
            b,
            node,
            key_serde,
            value_serde,
            repartition_required,
            pending_name: None,
        }
    }

    /// The name of the node this stream comes out of.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// This stream, with the processor of the next operator applied to it named `named` instead of a
    /// generated `PREFIX-<n>` (Kafka Streams' `Named` argument, e.g. `KStream#filter(predicate, Named)`). It
    /// names any operator of [`KStream`]: `filter`, `map`, `peek`, `merge`, `process`, `to_table`, joins, and so
    /// on; an operator whose options carry a name of their own ([`Produced::with_name`],
    /// [`Repartitioned::as_name`], a join's name) uses that one first. The name holds for this handle only, and
    /// two processors of one topology cannot share a name: [`StreamsBuilder::build`](crate::StreamsBuilder::build)
    /// reports the second one.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, i64>("amounts", Consumed::new())
    ///     .named(Named::as_name("large-amounts-only"))
    ///     .filter(|_, amount| *amount >= 100)
    ///     .to("large-amounts", Produced::new());
    /// let description = builder.build().unwrap().describe().to_string();
    /// assert!(description.contains("Processor: large-amounts-only"));
    /// ```
    pub fn named(&self, named: Named) -> KStream<K, V> {
        let mut s = self.clone();
        s.pending_name = Some(named);
        s
    }

    /// The processor name of the next operator: the pending [`KStream::named`] name or a generated one.
    pub(crate) fn processor_name(
        &self,
        b: &mut crate::builder::BuilderInner,
        prefix: &str,
    ) -> String {
        processor_name(b, self.pending_name.as_ref(), prefix)
    }

    /// Adds a stateless operator after this stream (`Topology::add_stateless_processor`: a chain of them is built
    /// into one node per task).
    fn then_stateless<K2: Data, V2: Data, P, F>(
        &self,
        prefix: &str,
        supplier: F,
        key_serde: Option<SharedSerde<K2>>,
        value_serde: Option<SharedSerde<V2>>,
        repartition_required: bool,
    ) -> KStream<K2, V2>
    where
        P: Processor<K, V, KOut = K2, VOut = V2>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let mut b = self.b.borrow_mut();
        let name = self.processor_name(&mut b, prefix);
        let added = b
            .topology
            .add_stateless_processor::<K, V, P, F>(&name, supplier, &[&self.node])
            .map(|_| ());
        b.check(added);
        drop(b);
        KStream::new(
            self.b.clone(),
            name,
            key_serde,
            value_serde,
            repartition_required,
        )
    }

    /// Keeps the records satisfying `predicate`.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, i64>("amounts", Consumed::new())
    ///     .filter(|_, amount| *amount >= 100)
    ///     .to("large-amounts", Produced::new());
    /// # builder.build().unwrap();
    /// ```
    pub fn filter<F>(&self, predicate: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let predicate = Arc::new(predicate);
        self.then_stateless(
            "KSTREAM-FILTER-",
            move || Filter {
                predicate: predicate.clone(),
                negate: false,
            },
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.repartition_required,
        )
    }

    /// Drops the records satisfying `predicate`.
    pub fn filter_not<F>(&self, predicate: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let predicate = Arc::new(predicate);
        self.then_stateless(
            "KSTREAM-FILTER-",
            move || Filter {
                predicate: predicate.clone(),
                negate: true,
            },
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.repartition_required,
        )
    }

    /// A new key and value for each record (marks the stream for repartitioning).
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, String>("orders", Consumed::new())
    ///     .map(|order_id, customer| (customer, order_id))
    ///     .to("orders-by-customer", Produced::new());
    /// # builder.build().unwrap();
    /// ```
    pub fn map<K2: Data, V2: Data, F>(&self, f: F) -> KStream<K2, V2>
    where
        F: Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then_stateless(
            "KSTREAM-MAP-",
            move || Map {
                f: f.clone(),
                _out: PhantomData,
            },
            None,
            None,
            true,
        )
    }

    /// A new value for each record; the key is kept (no repartitioning needed).
    pub fn map_values<V2: Data, F>(&self, f: F) -> KStream<K, V2>
    where
        F: Fn(V) -> V2 + Send + Sync + 'static,
    {
        self.map_values_with_key(move |_, v| f(v))
    }

    /// A new value from the key and the value.
    pub fn map_values_with_key<V2: Data, F>(&self, f: F) -> KStream<K, V2>
    where
        F: Fn(&K, V) -> V2 + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then_stateless(
            "KSTREAM-MAPVALUES-",
            move || MapValues {
                f: f.clone(),
                _out: PhantomData,
            },
            self.key_serde.clone(),
            None,
            self.repartition_required,
        )
    }

    /// Zero or more records for each record (marks the stream for repartitioning).
    pub fn flat_map<K2: Data, V2: Data, I, F>(&self, f: F) -> KStream<K2, V2>
    where
        F: Fn(K, V) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = (K2, V2)>,
    {
        let f = Arc::new(f);
        self.then_stateless(
            "KSTREAM-FLATMAP-",
            move || FlatMap {
                f: f.clone(),
                _out: PhantomData,
            },
            None,
            None,
            true,
        )
    }

    /// Zero or more values for each record, each with the record's key.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<(), String>("lines", Consumed::new())
    ///     .flat_map_values(|_, line: String| line.split(' ').map(str::to_string).collect::<Vec<_>>())
    ///     .to("words", Produced::new());
    /// # builder.build().unwrap();
    /// ```
    pub fn flat_map_values<V2: Data, I, F>(&self, f: F) -> KStream<K, V2>
    where
        F: Fn(&K, V) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = V2>,
    {
        let f = Arc::new(f);
        self.then_stateless(
            "KSTREAM-FLATMAPVALUES-",
            move || FlatMapValues {
                f: f.clone(),
                _out: PhantomData,
            },
            self.key_serde.clone(),
            None,
            self.repartition_required,
        )
    }

    /// A new key for each record, the value kept (marks the stream for repartitioning).
    pub fn select_key<K2: Data, F>(&self, f: F) -> KStream<K2, V>
    where
        F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then_stateless(
            "KSTREAM-KEY-SELECT-",
            move || SelectKey {
                f: f.clone(),
                _out: PhantomData,
            },
            None,
            self.value_serde.clone(),
            true,
        )
    }

    /// Looks at each record and passes it on.
    pub fn peek<F>(&self, f: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then_stateless(
            "KSTREAM-PEEK-",
            move || Peek {
                f: f.clone(),
                terminal: false,
            },
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.repartition_required,
        )
    }

    /// Calls `f` for each record; the end of this branch.
    pub fn foreach<F>(&self, f: F)
    where
        F: Fn(&K, &V) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then_stateless::<K, V, _, _>(
            "KSTREAM-FOREACH-",
            move || Peek {
                f: f.clone(),
                terminal: true,
            },
            None,
            None,
            false,
        );
    }

    /// Splits the stream by predicates (Kafka Streams' `KStream#split()`); see [`BranchedKStream`]. The
    /// splitter is named `KSTREAM-BRANCH-<n>`, and so are its branches followed by their names (or by their
    /// positions: 1, 2, ... in order, 0 for the default branch).
    pub fn split(&self) -> BranchedKStream<K, V> {
        if let Some(named) = &self.pending_name {
            return self.split_named(named.name.clone());
        }
        let name = self.b.borrow_mut().name("KSTREAM-BRANCH-");
        self.split_as(name.clone(), name)
    }

    /// Splits the stream; the splitter is named `prefix` and branch names (the keys of the returned map) start
    /// with it (Kafka Streams' `KStream#split(Named.as(prefix))`). An empty prefix leaves the splitter a
    /// generated name and the branches the names given to them.
    pub fn split_named(&self, prefix: impl Into<String>) -> BranchedKStream<K, V> {
        let prefix = prefix.into();
        let splitter = if prefix.is_empty() {
            self.b.borrow_mut().name("KSTREAM-BRANCH-")
        } else {
            prefix.clone()
        };
        self.split_as(splitter, prefix)
    }

    fn split_as(&self, splitter: String, prefix: String) -> BranchedKStream<K, V> {
        let branches: Arc<Mutex<Branches<K, V>>> = Arc::default();
        let for_supplier = branches.clone();
        self.b.borrow_mut().add_processor::<K, V, _, _>(
            &splitter,
            move || Branch {
                branches: Arc::new(
                    for_supplier
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone(),
                ),
            },
            &[&self.node],
        );
        BranchedKStream {
            stream: self.clone(),
            splitter,
            prefix,
            branches,
            out: HashMap::new(),
        }
    }

    /// One stream of the records of both (in processing order).
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let mut b = self.b.borrow_mut();
        let name = self.processor_name(&mut b, "KSTREAM-MERGE-");
        b.add_processor::<K, V, _, _>(&name, || PassThrough, &[&self.node, &other.node]);
        drop(b);
        KStream::new(
            self.b.clone(),
            name,
            self.key_serde.clone().or_else(|| other.key_serde.clone()),
            self.value_serde
                .clone()
                .or_else(|| other.value_serde.clone()),
            self.repartition_required || other.repartition_required,
        )
    }

    /// Writes the stream to `topic`.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let mut b = self.b.borrow_mut();
        let name = produced
            .name
            .clone()
            .unwrap_or_else(|| self.processor_name(&mut b, "KSTREAM-SINK-"));
        let op = format!("to({topic})");
        let hint = "Produced::with(key_serde, value_serde)";
        let k = b.check(pick_serde(
            &produced.key_serde,
            &self.key_serde,
            &op,
            "key",
            hint,
        ));
        let v = b.check(pick_serde(
            &produced.value_serde,
            &self.value_serde,
            &op,
            "value",
            hint,
        ));
        if let (Some(k), Some(v)) = (k, v) {
            let opts = SinkOptions::from_shared(k, v).with_partitioner(produced.partitioner);
            let r = b
                .topology
                .add_sink(&name, topic, opts, &[&self.node])
                .map(|_| ());
            b.check(r);
        }
    }

    /// Sends the stream through an internal topic, partitioned by the current key.
    pub fn repartition(&self, repartitioned: Repartitioned<K, V>) -> KStream<K, V> {
        let mut b = self.b.borrow_mut();
        let base = repartitioned
            .name
            .clone()
            .unwrap_or_else(|| self.processor_name(&mut b, "KSTREAM-REPARTITION-"));
        let hint = "Repartitioned::with(key_serde, value_serde)";
        let k = b.check(pick_serde(
            &repartitioned.key_serde,
            &self.key_serde,
            "repartition",
            "key",
            hint,
        ));
        let v = b.check(pick_serde(
            &repartitioned.value_serde,
            &self.value_serde,
            "repartition",
            "value",
            hint,
        ));
        let (Some(k), Some(v)) = (k, v) else {
            drop(b);
            return self.clone();
        };
        let source = b.repartition(
            &self.node,
            &base,
            k.clone(),
            v.clone(),
            repartitioned.partitions,
        );
        drop(b);
        KStream::new(self.b.clone(), source, Some(k), Some(v), false)
    }

    /// Applies a processor of your own, with access to `stores` (added with
    /// [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store)). Its output may have new keys,
    /// so the stream is marked for repartitioning.
    pub fn process<P, F>(&self, supplier: F, stores: &[&str]) -> KStream<P::KOut, P::VOut>
    where
        P: Processor<K, V>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let mut b = self.b.borrow_mut();
        let name = self.processor_name(&mut b, "KSTREAM-PROCESSOR-");
        b.add_processor::<K, V, P, F>(&name, supplier, &[&self.node]);
        if !stores.is_empty() {
            let r = b
                .topology
                .connect_processor_and_state_stores(&name, stores)
                .map(|_| ());
            b.check(r);
        }
        drop(b);
        KStream::new(self.b.clone(), name, None, None, true)
    }

    /// Groups by a new key computed from each record (always through a repartition topic).
    pub fn group_by<K2: Data, F>(&self, f: F, grouped: Grouped<K2, V>) -> KGroupedStream<K2, V>
    where
        F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
    {
        let mut s = self.select_key(f);
        s.repartition_required = true;
        KGroupedStream::new(s, grouped)
    }

    /// Groups by the current key (through a repartition topic only when the key was changed upstream).
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream::new(self.clone(), grouped)
    }
}

/// A stream being split into branches (Kafka Streams' `BranchedKStream`): each record goes to the first
/// branch whose predicate it satisfies, or to the default branch when none does (dropped without one).
///
/// Each branch is a stream named `<prefix><name>`; [`BranchedKStream::default_branch`] and
/// [`BranchedKStream::no_default_branch`] end the split with a map of those names to the branches. A
/// [`Branched`] can instead hand the branch to a function (whose result goes in the map) or to a consumer
/// (and leave it out of the map).
///
/// ```
/// # use streams_dsl::*;
/// let builder = StreamsBuilder::new();
/// let branches = builder.stream::<String, i64>("events", Consumed::new())
///     .split_named("events-")
///     .branch("negative", |_, v| *v < 0)
///     .branch("small", |_, v| *v < 100)
///     .default_branch("large");
/// branches["events-negative"].to("negative-events", Produced::new());
/// branches["events-large"].to("large-events", Produced::new());
/// # builder.build().unwrap();
/// ```
pub struct BranchedKStream<K, V> {
    stream: KStream<K, V>,
    splitter: String,
    prefix: String,
    /// Shared with the splitter's supplier, which reads it when tasks are created (after the split ended).
    branches: Arc<Mutex<Branches<K, V>>>,
    out: HashMap<String, KStream<K, V>>,
}

impl<K: Data, V: Data> BranchedKStream<K, V> {
    /// Adds a branch called `<prefix><name>` for the records satisfying `predicate`.
    pub fn branch<F>(self, name: &str, predicate: F) -> Self
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.branch_with(predicate, Branched::as_name(name))
    }

    /// Adds a branch for the records satisfying `predicate`, named and handled as `branched` says (Kafka
    /// Streams' `BranchedKStream#branch(predicate, branched)`): `<prefix><name>`, or `<prefix><position>`
    /// (from 1) for a branch without a name.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// let branches = builder.stream::<String, i64>("amounts", Consumed::new())
    ///     .split_named("amounts-")
    ///     // Into the map as "amounts-1", doubled.
    ///     .branch_with(|_, v| *v < 0, Branched::with_function(|s: KStream<String, i64>| s.map_values(|v| v * 2)))
    ///     // Written out here, not in the map.
    ///     .branch_with(|_, v| *v > 1000, Branched::with_consumer(|s: KStream<String, i64>| s.to("large", Produced::new())).with_name("large"))
    ///     .default_branch_with(Branched::as_name("rest"));
    /// assert_eq!(branches.len(), 2);
    /// branches["amounts-1"].to("negative-doubled", Produced::new());
    /// branches["amounts-rest"].to("other", Produced::new());
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let input = driver.input_topic("amounts", Serdes::string(), Serdes::i64());
    /// input.pipe_input("a".into(), -5).unwrap();
    /// input.pipe_input("b".into(), 5000).unwrap();
    /// input.pipe_input("c".into(), 7).unwrap();
    /// let read = |t: &str| driver.output_topic(t, Serdes::string(), Serdes::i64()).read_key_values_to_vec().unwrap();
    /// assert_eq!(read("negative-doubled"), vec![("a".to_string(), -10)]);
    /// assert_eq!(read("large"), vec![("b".to_string(), 5000)]);
    /// assert_eq!(read("other"), vec![("c".to_string(), 7)]);
    /// ```
    pub fn branch_with<F>(mut self, predicate: F, branched: Branched<K, V>) -> Self
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let position = self.lock().len() + 1;
        self.add_branch(Some(Arc::new(predicate)), branched, position);
        self
    }

    /// Ends with a branch `<prefix><name>` taking every record no other branch took.
    pub fn default_branch(self, name: &str) -> HashMap<String, KStream<K, V>> {
        self.default_branch_with(Branched::as_name(name))
    }

    /// Ends with a branch taking every record no other branch took, named and handled as `branched` says
    /// (`<prefix>0` without a name), as Kafka Streams' `BranchedKStream#defaultBranch(branched)`.
    pub fn default_branch_with(
        mut self,
        branched: Branched<K, V>,
    ) -> HashMap<String, KStream<K, V>> {
        self.add_branch(None, branched, 0);
        self.out
    }

    /// Ends without a default branch: records no branch took are dropped.
    pub fn no_default_branch(self) -> HashMap<String, KStream<K, V>> {
        self.out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Branches<K, V>> {
        self.branches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add_branch(
        &mut self,
        predicate: Option<Predicate<K, V>>,
        branched: Branched<K, V>,
        position: usize,
    ) {
        let s = &self.stream;
        let name = match &branched.name {
            Some(n) => format!("{}{}", self.prefix, n),
            None => format!("{}{}", self.prefix, position),
        };
        self.lock().push((name.clone(), predicate));
        s.b.borrow_mut()
            .add_processor::<K, V, _, _>(&name, || PassThrough, &[&self.splitter]);
        let branch = KStream::new(
            s.b.clone(),
            name.clone(),
            s.key_serde.clone(),
            s.value_serde.clone(),
            s.repartition_required,
        );
        match branched.chain {
            BranchChain::Keep => {
                self.out.insert(name, branch);
            }
            BranchChain::Function(f) => {
                if let Some(result) = f(branch) {
                    self.out.insert(name, result);
                }
            }
            BranchChain::Consumer(f) => f(branch),
        }
    }
}

/// What becomes of a branch.
enum BranchChain<K, V> {
    /// The branch itself goes in the map.
    Keep,
    /// What the function makes of the branch goes in the map (nothing for `None`).
    #[allow(clippy::type_complexity)]
    Function(Box<dyn FnOnce(KStream<K, V>) -> Option<KStream<K, V>>>),
    /// The consumer takes the branch; nothing goes in the map.
    Consumer(Box<dyn FnOnce(KStream<K, V>)>),
}

/// How a branch of [`KStream::split`] is named and what is done with it (Kafka Streams' `Branched`): kept in
/// the returned map (the default), handed to a function whose result goes in the map, or handed to a consumer.
/// A branch without a name is called after its position: `<prefix>1`, `<prefix>2`, ..., `<prefix>0` for the
/// default branch.
pub struct Branched<K, V> {
    name: Option<String>,
    chain: BranchChain<K, V>,
}

impl<K: Data, V: Data> Default for Branched<K, V> {
    fn default() -> Self {
        Branched {
            name: None,
            chain: BranchChain::Keep,
        }
    }
}

impl<K: Data, V: Data> Branched<K, V> {
    /// A branch named after its position, kept in the map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A branch called `<prefix><name>`, kept in the map (Kafka's `Branched.as`).
    pub fn as_name(name: impl Into<String>) -> Self {
        Self::default().with_name(name)
    }

    /// Hands the branch to `f`; what it returns (a stream, or `None` for nothing) goes in the map under the
    /// branch's name (Kafka's `Branched.withFunction`).
    pub fn with_function<F, R>(f: F) -> Self
    where
        F: FnOnce(KStream<K, V>) -> R + 'static,
        R: Into<Option<KStream<K, V>>>,
    {
        Branched {
            name: None,
            chain: BranchChain::Function(Box::new(move |s| f(s).into())),
        }
    }

    /// Hands the branch to `f`, which ends it (writes it to a topic, say); nothing goes in the map (Kafka's
    /// `Branched.withConsumer`).
    pub fn with_consumer<F>(f: F) -> Self
    where
        F: FnOnce(KStream<K, V>) + 'static,
    {
        Branched {
            name: None,
            chain: BranchChain::Consumer(Box::new(f)),
        }
    }

    /// Names the branch `<prefix><name>`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// `to_table`: a stream read as a changelog.
impl<K: Data, V: Data> KStream<K, V> {
    /// The stream as a table: each record is an upsert of its key's row (Kafka Streams' `KStream#toTable()`).
    /// A stream whose key was changed upstream is repartitioned by the new key first (through the topic
    /// `KSTREAM-TOTABLE-<n>-repartition`). Records update the row in processing order, whatever their
    /// timestamps, as in Kafka Streams; each row keeps the timestamp of the record that wrote it.
    ///
    /// The table is kept in an internal store (Kafka Streams keeps one only when a downstream operator needs
    /// it; here it always exists, so the table can always send old values and be joined). To query it, name the
    /// store with [`KStream::to_table_materialized`]. A stream of `Option` values, where `None` deletes a row,
    /// becomes a table with [`KStream::to_table_with_deletes`].
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, String>("user-regions", Consumed::new())
    ///     .to_table()
    ///     .group_by(|_user, region| (region.clone(), 1i64), Grouped::new())
    ///     .count(Materialized::as_store("users-per-region"));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let input = driver.input_topic("user-regions", Serdes::string(), Serdes::string());
    /// input.pipe_input("ann".into(), "eu".into()).unwrap();
    /// input.pipe_input("bob".into(), "eu".into()).unwrap();
    /// input.pipe_input("ann".into(), "us".into()).unwrap(); // ann moves: eu loses her
    /// let counts = driver.key_value_store::<String, i64>("users-per-region").unwrap();
    /// assert_eq!(counts.get(&"eu".to_string()).unwrap(), Some(1));
    /// assert_eq!(counts.get(&"us".to_string()).unwrap(), Some(1));
    /// ```
    pub fn to_table(&self) -> KTable<K, V> {
        self.to_table_materialized(Materialized::new())
    }

    /// The stream as a table kept in the store `materialized` describes: named with
    /// [`Materialized::as_store`], the table is queryable under that name. Its serdes, when given, also serve
    /// the repartition topic that a key change upstream requires.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, i64>("prices", Consumed::new())
    ///     .to_table_materialized(Materialized::as_store("latest-prices").in_memory());
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let input = driver.input_topic("prices", Serdes::string(), Serdes::i64());
    /// input.pipe_input("tea".into(), 3).unwrap();
    /// input.pipe_input("tea".into(), 4).unwrap();
    /// let prices = driver.key_value_store::<String, i64>("latest-prices").unwrap();
    /// assert_eq!(prices.get(&"tea".to_string()).unwrap(), Some(4));
    /// ```
    pub fn to_table_materialized(&self, materialized: Materialized<K, V>) -> KTable<K, V> {
        self.to_table_impl::<V, _, _>(
            self.pending_name.as_ref(),
            materialized,
            |v| v,
            |inner| StreamToTable { inner },
        )
    }

    /// [`KStream::to_table_materialized`] with the processor (and the repartition topic, `<name>-repartition`,
    /// when one is needed) named by `named` (Kafka Streams' `KStream#toTable(Named, Materialized)`).
    pub fn to_table_named(&self, named: Named, materialized: Materialized<K, V>) -> KTable<K, V> {
        self.to_table_impl::<V, _, _>(
            Some(&named),
            materialized,
            |v| v,
            |inner| StreamToTable { inner },
        )
    }

    /// `input_serde` gives the serde of the stream's values from the table's (for a repartition topic).
    fn to_table_impl<VIn: Data, P, W>(
        &self,
        named: Option<&Named>,
        materialized: Materialized<K, V>,
        input_serde: fn(SharedSerde<V>) -> SharedSerde<VIn>,
        wrap: W,
    ) -> KTable<K, V>
    where
        P: Processor<K, VIn, KOut = K, VOut = Change<V>>,
        W: Fn(TableSource<K, V>) -> P + Send + Sync + 'static,
    {
        const OP: &str = "to_table";
        const HINT: &str = "Materialized::with(key_serde, value_serde)";
        let mut b = self.b.borrow_mut();
        let name = processor_name(&mut b, named, "KSTREAM-TOTABLE-");
        let store = materialized
            .name
            .clone()
            .unwrap_or_else(|| b.name("KSTREAM-TOTABLE-STATE-STORE-"));
        let k = b.check(pick_serde(
            &materialized.key_serde,
            &self.key_serde,
            OP,
            "key",
            HINT,
        ));
        let v = b.check(pick_serde(
            &materialized.value_serde,
            &self.value_serde,
            OP,
            "value",
            HINT,
        ));
        let send_old = Arc::new(AtomicBool::new(false));
        if let (Some(k), Some(v)) = (k.clone(), v.clone()) {
            let mut input = self.node.clone();
            if self.repartition_required {
                let vin = input_serde(v.clone());
                input = b.repartition(&self.node, &name, k.clone(), vin, None);
            }
            let store_name: Arc<str> = Arc::from(store.as_str());
            let flag = send_old.clone();
            let named = materialized.name.is_some();
            b.add_processor::<K, VIn, _, _>(
                &name,
                move || {
                    wrap(TableSource::<K, V> {
                        store_name: store_name.clone(),
                        send_old: flag.load(Ordering::Relaxed),
                        materialized: named,
                        store: None,
                        emit: None,
                    })
                },
                &[&input],
            );
            b.add_store(&store, &materialized, k, v, &name);
        }
        drop(b);
        KTable::new(
            self.b.clone(),
            name,
            k,
            v,
            materialized.name.is_some().then_some(store),
            vec![send_old],
        )
    }
}

/// `to_table_with_deletes`: a stream of optional values read as a changelog with deletions.
impl<K: Data, V: Data> KStream<K, Option<V>> {
    /// The stream as a table where `Some(v)` upserts its key's row and `None` deletes it, as a `null` value
    /// does in Kafka Streams' `KStream#toTable()`: the way back from [`KTable::to_stream`]. A deletion of a row
    /// that does not exist changes nothing and is not forwarded.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, Option<String>>("sessions", Consumed::with(Serdes::string(), OptionSerde::new(Serdes::string())))
    ///     .to_table_with_deletes(Materialized::as_store("open-sessions").in_memory());
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let input = driver.input_topic("sessions", Serdes::string(), OptionSerde::new(Serdes::string()));
    /// input.pipe_input("s1".into(), Some("ann".into())).unwrap();
    /// input.pipe_input("s2".into(), Some("bob".into())).unwrap();
    /// input.pipe_input("s1".into(), None).unwrap();
    /// let open = driver.key_value_store::<String, String>("open-sessions").unwrap();
    /// assert_eq!(open.get(&"s1".to_string()).unwrap(), None);
    /// assert_eq!(open.get(&"s2".to_string()).unwrap(), Some("bob".to_string()));
    /// ```
    pub fn to_table_with_deletes(&self, materialized: Materialized<K, V>) -> KTable<K, V> {
        let plain: KStream<K, V> = KStream::new(
            self.b.clone(),
            self.node.clone(),
            self.key_serde.clone(),
            None,
            self.repartition_required,
        );
        plain.to_table_impl::<Option<V>, _, _>(
            self.pending_name.as_ref(),
            materialized,
            |v| Arc::new(OptionSerde::from_shared(v)) as SharedSerde<Option<V>>,
            |inner| inner,
        )
    }
}

/// `process_values`: processors of your own that keep keys.
impl<K: Data, V: Data> KStream<K, V> {
    /// Applies a [`FixedKeyProcessor`] of your own, with access to `stores` (added with
    /// [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store)): Kafka Streams'
    /// `KStream#processValues`. The processor can change values, timestamps and headers and forward any number
    /// of records per input, but not change keys, so unlike [`KStream::process`] the stream is not marked for
    /// repartitioning: a later `group_by_key` or join reads it directly (unless a key change upstream already
    /// required a repartition). The key serde carries over; the value serde is the default for the new type
    /// unless given downstream.
    ///
    /// ```
    /// use streams_dsl::*;
    ///
    /// /// Numbers each key's records: forwards "<n>:<value>".
    /// struct Sequence;
    ///
    /// impl FixedKeyProcessor<String, String> for Sequence {
    ///     type VOut = String;
    ///     fn process(
    ///         &mut self,
    ///         record: FixedKeyRecord<String, String>,
    ///         ctx: &mut FixedKeyProcessorContext<'_, String, String>,
    ///     ) -> Result<(), StreamsError> {
    ///         let mut seen = ctx.key_value_store::<String, i64>("seen")?;
    ///         let n = seen.get(record.key())?.unwrap_or(0) + 1;
    ///         seen.put(record.key(), &n)?;
    ///         let value = format!("{n}:{}", record.value());
    ///         ctx.forward(record.with_value(value))
    ///     }
    /// }
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.add_state_store(KeyValueStoreBuilder::new("seen", StoreKind::InMemory, Serdes::string(), Serdes::i64()));
    /// builder.stream::<String, String>("events", Consumed::new())
    ///     .process_values(|| Sequence, &["seen"])
    ///     .to("numbered", Produced::new());
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let input = driver.input_topic("events", Serdes::string(), Serdes::string());
    /// input.pipe_input("ann".into(), "login".into()).unwrap();
    /// input.pipe_input("ann".into(), "logout".into()).unwrap();
    /// let out = driver.output_topic("numbered", Serdes::string(), Serdes::string());
    /// assert_eq!(
    ///     out.read_key_values_to_vec().unwrap(),
    ///     vec![("ann".to_string(), "1:login".to_string()), ("ann".to_string(), "2:logout".to_string())],
    /// );
    /// ```
    pub fn process_values<P, F>(&self, supplier: F, stores: &[&str]) -> KStream<K, P::VOut>
    where
        P: FixedKeyProcessor<K, V>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.process_values_impl(self.pending_name.as_ref(), supplier, stores)
    }

    /// [`KStream::process_values`] with the processor named by `named` (Kafka Streams'
    /// `KStream#processValues(supplier, Named, stores)`).
    pub fn process_values_named<P, F>(
        &self,
        supplier: F,
        named: Named,
        stores: &[&str],
    ) -> KStream<K, P::VOut>
    where
        P: FixedKeyProcessor<K, V>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.process_values_impl(Some(&named), supplier, stores)
    }

    fn process_values_impl<P, F>(
        &self,
        named: Option<&Named>,
        supplier: F,
        stores: &[&str],
    ) -> KStream<K, P::VOut>
    where
        P: FixedKeyProcessor<K, V>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let mut b = self.b.borrow_mut();
        let name = processor_name(&mut b, named, "KSTREAM-PROCESSVALUES-");
        b.add_processor::<K, V, _, _>(
            &name,
            move || FixedKeyAdapter {
                processor: supplier(),
                _p: PhantomData,
            },
            &[&self.node],
        );
        if !stores.is_empty() {
            let r = b
                .topology
                .connect_processor_and_state_stores(&name, stores)
                .map(|_| ());
            b.check(r);
        }
        drop(b);
        KStream::new(
            self.b.clone(),
            name,
            self.key_serde.clone(),
            None,
            self.repartition_required,
        )
    }
}

/// `to_dynamic`: a topic chosen per record.
impl<K: Data, V: Data> KStream<K, V> {
    /// Writes each record to the topic `extractor` chooses for it (Kafka Streams' `KStream#to` with a
    /// `TopicNameExtractor`). The chosen topic must be one of `topics`: the application's outputs are declared
    /// up front (they show in the topology description, one sink per topic, and the test driver and the
    /// runtime know them), and a record routed anywhere else fails with an error naming the topic instead of
    /// creating it. Kafka Streams does not create dynamically chosen topics either; they must exist.
    ///
    /// The routing node is named by [`Produced::with_name`] (or `KSTREAM-SINK-<n>`), its sinks
    /// `<that name>-<topic>`; a partitioner of `produced` is used for every topic.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, String>("events", Consumed::new()).to_dynamic(
    ///     |_user: &String, event: &String, _ctx: &RecordContext<'_>| {
    ///         if event.starts_with("error") { "errors".to_string() } else { "events-ok".to_string() }
    ///     },
    ///     &["errors", "events-ok"],
    ///     Produced::new(),
    /// );
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let input = driver.input_topic("events", Serdes::string(), Serdes::string());
    /// input.pipe_input("ann".into(), "error: disk full".into()).unwrap();
    /// input.pipe_input("bob".into(), "login".into()).unwrap();
    /// let read = |t: &str| driver.output_topic(t, Serdes::string(), Serdes::string()).read_key_values_to_vec().unwrap();
    /// assert_eq!(read("errors"), vec![("ann".to_string(), "error: disk full".to_string())]);
    /// assert_eq!(read("events-ok"), vec![("bob".to_string(), "login".to_string())]);
    /// ```
    pub fn to_dynamic<E>(&self, extractor: E, topics: &[&str], produced: Produced<K, V>)
    where
        E: TopicNameExtractor<K, V>,
    {
        let mut b = self.b.borrow_mut();
        let router = produced
            .name
            .clone()
            .unwrap_or_else(|| self.processor_name(&mut b, "KSTREAM-SINK-"));
        if topics.is_empty() {
            b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                "to_dynamic ('{router}') declares no topic: name every topic the extractor may choose"
            ))));
            return;
        }
        let op = format!("to_dynamic({})", topics.join(", "));
        let hint = "Produced::with(key_serde, value_serde)";
        let k = b.check(pick_serde(
            &produced.key_serde,
            &self.key_serde,
            &op,
            "key",
            hint,
        ));
        let v = b.check(pick_serde(
            &produced.value_serde,
            &self.value_serde,
            &op,
            "value",
            hint,
        ));
        let (Some(k), Some(v)) = (k, v) else {
            return;
        };
        let mut sinks = HashMap::new();
        for topic in topics {
            sinks.insert(topic.to_string(), format!("{router}-{topic}"));
        }
        let extractor: Arc<dyn TopicNameExtractor<K, V>> = Arc::new(extractor);
        let for_router = Arc::new(sinks.clone());
        b.add_processor::<K, V, _, _>(
            &router,
            move || TopicRouter {
                extractor: extractor.clone(),
                sinks: for_router.clone(),
            },
            &[&self.node],
        );
        // Sinks in the order the topics were declared (a repeated topic gets one sink).
        let mut done = std::collections::HashSet::new();
        for topic in topics.iter().filter(|t| done.insert(**t)) {
            let opts = SinkOptions::from_shared(k.clone(), v.clone())
                .with_partitioner(produced.partitioner.clone());
            let r = b
                .topology
                .add_sink(&sinks[*topic], topic, opts, &[&router])
                .map(|_| ());
            b.check(r);
        }
    }
}
