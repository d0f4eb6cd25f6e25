//! `cogroup`: several grouped streams, of different value types, aggregated into one table (Kafka Streams'
//! `KGroupedStream#cogroup` and `CogroupedKStream`).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use state_store::{SessionWindowedSerde, TimeWindowedSerde, Windowed};
use streams_core::{Data, SharedSerde};

use crate::builder::{BuilderInner, Shared};
use crate::change::Change;
use crate::grouped::KGroupedStream;
use crate::ktable::KTable;
use crate::named::Named;
use crate::ops::passthrough::PassThrough;
use crate::ops::session_aggregate::SessionAggregate;
use crate::ops::sliding_aggregate::SlidingAggregate;
use crate::ops::stream_aggregate::StreamAggregate;
use crate::ops::window_aggregate::WindowAggregate;
use crate::params::{pick_serde, Materialized};
use crate::windowed::retention;
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows};

type Initializer<VA> = Arc<dyn Fn() -> VA + Send + Sync>;

/// Where one input's aggregator goes, once the store is known.
struct AttachCtx<'a, VA> {
    store: &'a str,
    processor: &'a str,
    init: &'a Initializer<VA>,
    send_old: &'a Arc<AtomicBool>,
}

/// The windows of a time-windowed cogroup: tumbling or hopping, or sliding.
#[derive(Clone, Copy)]
enum TimeSpec {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

/// The windows and serdes of a windowed cogroup's store.
struct WindowCtx<K, VA, W> {
    windows: W,
    retention_ms: i64,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<VA>,
}

/// The key and value serdes of a cogroup's store.
type StoreSerdes<K, VA> = (SharedSerde<K>, SharedSerde<VA>);

type Merger<K, VA> = Arc<dyn Fn(&K, VA, VA) -> VA + Send + Sync>;

/// One grouped stream of a cogroup, with its aggregator, its value type hidden.
trait CogroupInput<K, VA> {
    /// Adds the input's repartition (when its key changed upstream) if needed; returns the node the aggregator
    /// reads and the key serde the input knows.
    fn prepare(&self, b: &mut BuilderInner, store: &str) -> (String, Option<SharedSerde<K>>);
    /// Adds the aggregator of a non-windowed cogroup, reading `input`.
    fn add_aggregator(&self, b: &mut BuilderInner, input: &str, ctx: AttachCtx<'_, VA>);
    /// Adds the aggregator of a time- or sliding-windowed cogroup, reading `input`.
    fn add_window_aggregator(
        &self,
        b: &mut BuilderInner,
        input: &str,
        ctx: AttachCtx<'_, VA>,
        windows: &WindowCtx<K, VA, TimeSpec>,
    );
    /// Adds the aggregator of a session-windowed cogroup, reading `input`; `merger` combines the aggregates of
    /// sessions a record bridges.
    fn add_session_aggregator(
        &self,
        b: &mut BuilderInner,
        input: &str,
        ctx: AttachCtx<'_, VA>,
        windows: &WindowCtx<K, VA, SessionWindows>,
        merger: &Merger<K, VA>,
    );
}

struct Input<K, V, A> {
    grouped: KGroupedStream<K, V>,
    aggregator: Arc<A>,
}

impl<K: Data, V: Data, VA: Data, A> CogroupInput<K, VA> for Input<K, V, A>
where
    A: Fn(&K, &V, VA) -> VA + Send + Sync + 'static,
{
    fn prepare(&self, b: &mut BuilderInner, store: &str) -> (String, Option<SharedSerde<K>>) {
        // A repartition topic named after the store, unless that name is taken (by another input).
        let base = if b
            .topology
            .is_internal_topic(&format!("{store}-repartition"))
        {
            b.name("COGROUPKSTREAM-AGGREGATE-STATE-STORE-")
        } else {
            store.to_string()
        };
        self.grouped.prepare_input(b, "cogroup", &base)
    }

    fn add_aggregator(&self, b: &mut BuilderInner, input: &str, ctx: AttachCtx<'_, VA>) {
        let (init, aggregator) = (ctx.init.clone(), self.aggregator.clone());
        let fold = Arc::new(move |k: &K, v: V, prev: Option<VA>| {
            aggregator(k, &v, prev.unwrap_or_else(|| init()))
        });
        let (flag, store_name) = (ctx.send_old.clone(), Arc::<str>::from(ctx.store));
        b.add_processor::<K, V, _, _>(
            ctx.processor,
            move || StreamAggregate::<K, VA, _> {
                store_name: store_name.clone(),
                fold: fold.clone(),
                send_old: flag.load(Ordering::Relaxed),
                store: None,
                // Each input's processor writes the one store and registers on its one cache: a key's updates
                // leave it in write order, whichever processor collects them.
                emit: None,
                _p: PhantomData,
            },
            &[input],
        );
    }

    fn add_window_aggregator(
        &self,
        b: &mut BuilderInner,
        input: &str,
        ctx: AttachCtx<'_, VA>,
        w: &WindowCtx<K, VA, TimeSpec>,
    ) {
        let (init, aggregator) = (ctx.init.clone(), self.aggregator.clone());
        let fold = Arc::new(move |k: &K, v: &V, prev: Option<VA>| {
            aggregator(k, v, prev.unwrap_or_else(|| init()))
        });
        let (flag, store_name) = (ctx.send_old.clone(), Arc::<str>::from(ctx.store));
        let retention_ms = w.retention_ms;
        let (k, v) = (w.key_serde.clone(), w.value_serde.clone());
        match w.windows {
            TimeSpec::Time(windows) => b.add_processor::<K, V, _, _>(
                ctx.processor,
                move || WindowAggregate::<K, V, VA, _> {
                    store_name: store_name.clone(),
                    windows,
                    retention_ms,
                    key_serde: k.clone(),
                    value_serde: v.clone(),
                    fold: fold.clone(),
                    send_old: flag.load(Ordering::Relaxed),
                    store: None,
                    emit: None,
                    emit_final: None,
                    observed: i64::MIN,
                    last_expiry: i64::MIN / 2,
                    starts: Vec::new(),
                    _p: PhantomData,
                },
                &[input],
            ),
            TimeSpec::Sliding(windows) => b.add_processor::<K, V, _, _>(
                ctx.processor,
                move || SlidingAggregate::<K, V, VA, _> {
                    store_name: store_name.clone(),
                    windows,
                    retention_ms,
                    key_serde: k.clone(),
                    value_serde: v.clone(),
                    fold: fold.clone(),
                    send_old: flag.load(Ordering::Relaxed),
                    store: None,
                    emit: None,
                    observed: i64::MIN,
                    last_expiry: i64::MIN / 2,
                    emit_final: None,
                    _p: PhantomData,
                },
                &[input],
            ),
        }
    }

    fn add_session_aggregator(
        &self,
        b: &mut BuilderInner,
        input: &str,
        ctx: AttachCtx<'_, VA>,
        w: &WindowCtx<K, VA, SessionWindows>,
        merger: &Merger<K, VA>,
    ) {
        let (init, aggregator) = (ctx.init.clone(), self.aggregator.clone());
        let init2 = init.clone();
        let add = Arc::new(move |k: &K, v: &V, prev: Option<VA>| {
            aggregator(k, v, prev.unwrap_or_else(|| init()))
        });
        let merger = merger.clone();
        let merge = Arc::new(move |k: &K, so_far: Option<VA>, session: VA| {
            merger(k, so_far.unwrap_or_else(|| init2()), session)
        });
        let (flag, store_name) = (ctx.send_old.clone(), Arc::<str>::from(ctx.store));
        let (windows, retention_ms) = (w.windows, w.retention_ms);
        let (k, v) = (w.key_serde.clone(), w.value_serde.clone());
        b.add_processor::<K, V, _, _>(
            ctx.processor,
            move || SessionAggregate::<K, V, VA, _, _> {
                store_name: store_name.clone(),
                windows,
                retention_ms,
                key_serde: k.clone(),
                value_serde: v.clone(),
                add: add.clone(),
                merge: merge.clone(),
                send_old: flag.load(Ordering::Relaxed),
                // Each input's processor writes the one store and registers on its one cache (see add_aggregator).
                cached: true,
                store: None,
                emit: None,
                observed: i64::MIN,
                last_expiry: i64::MIN / 2,
                _p: PhantomData,
            },
            &[input],
        );
    }
}

/// Grouped streams being aggregated together into one table per key (Kafka Streams' `CogroupedKStream`):
/// each grouped stream brings its own aggregator (its values may be of any type), all fold into the same
/// aggregate of type `VA`, kept in one store. Made by [`KGroupedStream::cogroup`], extended by
/// [`CogroupedKStream::cogroup`], finished by [`CogroupedKStream::aggregate`].
///
/// ```
/// # use streams_dsl::*;
/// let builder = StreamsBuilder::new();
/// let clicks = builder.stream::<String, String>("clicks", Consumed::new()).group_by_key(Grouped::new());
/// let purchases = builder.stream::<String, i64>("purchases", Consumed::new()).group_by_key(Grouped::new());
/// // Per user: "<clicks>/<amount spent>".
/// clicks
///     .cogroup(|_user, _page: &String, agg: (i64, i64)| (agg.0 + 1, agg.1))
///     .cogroup(&purchases, |_user, amount: &i64, agg: (i64, i64)| (agg.0, agg.1 + amount))
///     .aggregate(|| (0, 0), Materialized::as_store("activity").with_value_serde(JsonSerde::default()))
///     .to_stream()
///     .map_values(|a| a.map(|(c, s)| format!("{c}/{s}")))
///     .to("user-activity", Produced::with(Serdes::string(), OptionSerde::new(Serdes::string())));
/// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
/// driver.input_topic("clicks", Serdes::string(), Serdes::string()).pipe_input("ann".into(), "/home".into()).unwrap();
/// driver.input_topic("purchases", Serdes::string(), Serdes::i64()).pipe_input("ann".into(), 30).unwrap();
/// let out = driver.output_topic("user-activity", Serdes::string(), OptionSerde::new(Serdes::string()));
/// assert_eq!(
///     out.read_key_values_to_vec().unwrap(),
///     vec![("ann".to_string(), Some("1/0".to_string())), ("ann".to_string(), Some("1/30".to_string()))],
/// );
/// ```
pub struct CogroupedKStream<K, VA> {
    b: Shared,
    inputs: Vec<Box<dyn CogroupInput<K, VA>>>,
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    /// Starts a cogroup of this grouped stream, folded into an aggregate of type `VA` by `aggregator(key,
    /// value, aggregate)` (Kafka Streams' `KGroupedStream#cogroup`). Add more grouped streams with
    /// [`CogroupedKStream::cogroup`]; [`CogroupedKStream::aggregate`] gives the table.
    pub fn cogroup<VA: Data, A>(&self, aggregator: A) -> CogroupedKStream<K, VA>
    where
        A: Fn(&K, &V, VA) -> VA + Send + Sync + 'static,
    {
        CogroupedKStream {
            b: self.shared().clone(),
            inputs: Vec::new(),
        }
        .cogroup(self, aggregator)
    }
}

impl<K: Data, VA: Data> CogroupedKStream<K, VA> {
    /// Adds `grouped` to the cogroup, folded into the same aggregate by `aggregator(key, value, aggregate)`.
    /// Its values may be of another type than the other inputs'. All inputs must be co-partitioned (have the
    /// same number of partitions); a grouped stream whose key changed upstream is repartitioned first.
    pub fn cogroup<V: Data, A>(mut self, grouped: &KGroupedStream<K, V>, aggregator: A) -> Self
    where
        A: Fn(&K, &V, VA) -> VA + Send + Sync + 'static,
    {
        self.inputs.push(Box::new(Input {
            grouped: grouped.clone_grouped(),
            aggregator: Arc::new(aggregator),
        }));
        self
    }

    /// The table of each key's aggregate: `init()` to start, then each input's aggregator for each of its
    /// records, in processing order (Kafka Streams' `CogroupedKStream#aggregate`). Each update carries the
    /// latest timestamp of the records folded into the aggregate so far, as in Kafka Streams. The store is
    /// the one `materialized` describes (queryable when named); the aggregate's value serde must be known
    /// (given in `materialized`, or the type's default).
    ///
    /// Processors are named `COGROUPKSTREAM-AGGREGATE-<n>` (one per input) and `COGROUPKSTREAM-MERGE-<n>`
    /// (the table's node), the store `COGROUPKSTREAM-AGGREGATE-STATE-STORE-<n>` unless named.
    pub fn aggregate<I>(self, init: I, materialized: Materialized<K, VA>) -> KTable<K, VA>
    where
        I: Fn() -> VA + Send + Sync + 'static,
    {
        self.aggregate_impl(None, init, materialized)
    }

    /// [`CogroupedKStream::aggregate`] with processors named after `named`, as Kafka Streams'
    /// `CogroupedKStream#aggregate(initializer, Named, Materialized)` names them: `<name>-cogroup-agg-<i>` for
    /// the inputs' aggregators (from 0, in the order they were cogrouped) and `<name>-cogroup-merge` for the
    /// table's node.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// let a = builder.stream::<String, i64>("a", Consumed::new()).group_by_key(Grouped::new());
    /// let b = builder.stream::<String, i64>("b", Consumed::new()).group_by_key(Grouped::new());
    /// a.cogroup(|_, v: &i64, sum: i64| sum + v)
    ///     .cogroup(&b, |_, v: &i64, sum: i64| sum - v)
    ///     .aggregate_named(|| 0, Named::as_name("balance"), Materialized::as_store("balances"));
    /// let description = builder.build().unwrap().describe().to_string();
    /// assert!(description.contains("Processor: balance-cogroup-agg-1 (stores: [balances])"));
    /// assert!(description.contains("Processor: balance-cogroup-merge"));
    /// ```
    pub fn aggregate_named<I>(
        self,
        init: I,
        named: Named,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA>
    where
        I: Fn() -> VA + Send + Sync + 'static,
    {
        self.aggregate_impl(Some(&named), init, materialized)
    }

    fn aggregate_impl<I>(
        self,
        named: Option<&Named>,
        init: I,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA>
    where
        I: Fn() -> VA + Send + Sync + 'static,
    {
        const OP: &str = "cogroup aggregate";
        const HINT: &str = "Materialized::with(key_serde, value_serde)";
        let mut b = self.b.borrow_mut();
        let store = materialized
            .name
            .clone()
            .unwrap_or_else(|| b.name("COGROUPKSTREAM-AGGREGATE-STATE-STORE-"));
        let init: Initializer<VA> = Arc::new(init);
        let flag = Arc::new(AtomicBool::new(false));
        let mut aggregators = Vec::new();
        let mut inputs = Vec::new();
        let mut key = None;
        let base = named.map(|n| n.resolve(&mut b, "COGROUPKSTREAM-"));
        for (i, input) in self.inputs.iter().enumerate() {
            let processor = match &base {
                Some(n) => format!("{n}-cogroup-agg-{i}"),
                None => b.name("COGROUPKSTREAM-AGGREGATE-"),
            };
            let (node, k) = input.prepare(&mut b, &store);
            input.add_aggregator(
                &mut b,
                &node,
                AttachCtx {
                    store: &store,
                    processor: &processor,
                    init: &init,
                    send_old: &flag,
                },
            );
            key = key.or(k);
            inputs.push(node);
            aggregators.push(processor);
        }
        if inputs.len() > 1 {
            let nodes: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let r = b.topology.add_copartition_group(&nodes).map(|_| ());
            b.check(r);
        }
        let merge = match &base {
            Some(n) => format!("{n}-cogroup-merge"),
            None => b.name("COGROUPKSTREAM-MERGE-"),
        };
        let parents: Vec<&str> = aggregators.iter().map(String::as_str).collect();
        b.add_processor::<K, Change<VA>, _, _>(&merge, || PassThrough, &parents);
        let sk = b.check(pick_serde(&materialized.key_serde, &key, OP, "key", HINT));
        let sv = b.check(pick_serde(
            &materialized.value_serde,
            &None,
            OP,
            "value",
            HINT,
        ));
        if let (Some(k), Some(v), Some((first, rest))) =
            (sk.clone(), sv.clone(), aggregators.split_first())
        {
            b.add_store(&store, &materialized, k, v, first);
            for other in rest {
                let r = b
                    .topology
                    .connect_processor_and_state_stores(other, &[&store])
                    .map(|_| ());
                b.check(r);
            }
        }
        drop(b);
        KTable::new(
            self.b.clone(),
            merge,
            sk,
            sv,
            materialized.name.is_some().then_some(store),
            vec![flag],
        )
    }
}

impl<K: Data, VA: Data> CogroupedKStream<K, VA> {
    /// Cuts the cogrouped streams into windows, to aggregate per key and window (Kafka Streams'
    /// `CogroupedKStream#windowedBy`): [`TimeWindows`] (tumbling, hopping) or [`SlidingWindows`] give a
    /// [`TimeWindowedCogroupedKStream`], [`SessionWindows`] a [`SessionWindowedCogroupedKStream`].
    pub fn windowed_by<W: CogroupWindowedBy<K, VA>>(self, windows: W) -> W::Output {
        windows.cogroup_windowed(self)
    }

    /// Prepares every input (repartitioning where needed): the nodes the aggregators read, and the key serde
    /// known upstream.
    fn prepare_all(
        &self,
        b: &mut BuilderInner,
        store: &str,
    ) -> (Vec<String>, Option<SharedSerde<K>>) {
        let mut prepared = Vec::new();
        let mut key = None;
        for input in &self.inputs {
            let (node, k) = input.prepare(b, store);
            key = key.or(k);
            prepared.push(node);
        }
        (prepared, key)
    }

    /// [`CogroupedKStream::prepare_all`], and the serdes of a windowed cogroup's store: `materialized`'s or the
    /// ones known upstream (`None`, with the error recorded, when one is unknown).
    fn prepare_with_serdes(
        &self,
        b: &mut BuilderInner,
        store: &str,
        materialized: &Materialized<K, VA>,
        op: &str,
    ) -> (Vec<String>, Option<StoreSerdes<K, VA>>) {
        const HINT: &str = "Materialized::with(key_serde, value_serde)";
        let (prepared, key) = self.prepare_all(b, store);
        let k = b.check(pick_serde(&materialized.key_serde, &key, op, "key", HINT));
        let v = b.check(pick_serde(
            &materialized.value_serde,
            &None,
            op,
            "value",
            HINT,
        ));
        (prepared, k.zip(v))
    }

    /// Adds one aggregator per input with `attach(input, builder, node read, processor name)`, the inputs'
    /// co-partitioning and the table's merge node; returns the aggregators and the merge node.
    fn attach_all(
        &self,
        b: &mut BuilderInner,
        prepared: &[String],
        mut attach: impl FnMut(&dyn CogroupInput<K, VA>, &mut BuilderInner, &str, &str),
    ) -> (Vec<String>, String) {
        let mut aggregators = Vec::new();
        for (input, node) in self.inputs.iter().zip(prepared) {
            let processor = b.name("COGROUPKSTREAM-AGGREGATE-");
            attach(input.as_ref(), b, node, &processor);
            aggregators.push(processor);
        }
        if prepared.len() > 1 {
            let nodes: Vec<&str> = prepared.iter().map(String::as_str).collect();
            let r = b.topology.add_copartition_group(&nodes).map(|_| ());
            b.check(r);
        }
        let merge = b.name("COGROUPKSTREAM-MERGE-");
        (aggregators, merge)
    }

    /// The store of a windowed cogroup, written by every aggregator, and the table's node.
    #[allow(clippy::too_many_arguments)]
    fn finish_windowed(
        b: &mut BuilderInner,
        shared: &Shared,
        store: &str,
        materialized: &Materialized<K, VA>,
        aggregators: &[String],
        merge: String,
        windowed: SharedSerde<Windowed<K>>,
        value: SharedSerde<VA>,
        timestamped: bool,
        segments: (state_store::SegmentKeySchema, i64),
        flag: Arc<AtomicBool>,
    ) -> KTable<Windowed<K>, VA> {
        let parents: Vec<&str> = aggregators.iter().map(String::as_str).collect();
        b.add_processor::<Windowed<K>, Change<VA>, _, _>(&merge, || PassThrough, &parents);
        if let Some((first, rest)) = aggregators.split_first() {
            // Kept in time segments, dropped whole once expired.
            let segmented = materialized.segmented(segments.0, segments.1);
            if timestamped {
                b.add_timestamped_store_as(
                    store,
                    &segmented,
                    windowed.clone(),
                    value.clone(),
                    first,
                );
            } else {
                b.add_store_as(store, &segmented, windowed.clone(), value.clone(), first);
            }
            for other in rest {
                let r = b
                    .topology
                    .connect_processor_and_state_stores(other, &[store])
                    .map(|_| ());
                b.check(r);
            }
        }
        KTable::new(
            shared.clone(),
            merge,
            Some(windowed),
            Some(value),
            materialized.name.is_some().then(|| store.to_string()),
            vec![flag],
        )
    }
}

/// The windows a cogroup can be cut into with [`CogroupedKStream::windowed_by`]: [`TimeWindows`],
/// [`SlidingWindows`] and [`SessionWindows`].
pub trait CogroupWindowedBy<K, VA> {
    /// The windowed cogroup these windows make.
    type Output;
    /// Cuts `cogrouped` into these windows.
    fn cogroup_windowed(self, cogrouped: CogroupedKStream<K, VA>) -> Self::Output;
}

impl<K: Data, VA: Data> CogroupWindowedBy<K, VA> for TimeWindows {
    type Output = TimeWindowedCogroupedKStream<K, VA>;
    fn cogroup_windowed(self, cogrouped: CogroupedKStream<K, VA>) -> Self::Output {
        TimeWindowedCogroupedKStream {
            cogrouped,
            windows: TimeSpec::Time(self),
        }
    }
}

impl<K: Data, VA: Data> CogroupWindowedBy<K, VA> for SlidingWindows {
    type Output = TimeWindowedCogroupedKStream<K, VA>;
    fn cogroup_windowed(self, cogrouped: CogroupedKStream<K, VA>) -> Self::Output {
        TimeWindowedCogroupedKStream {
            cogrouped,
            windows: TimeSpec::Sliding(self),
        }
    }
}

impl<K: Data, VA: Data> CogroupWindowedBy<K, VA> for SessionWindows {
    type Output = SessionWindowedCogroupedKStream<K, VA>;
    fn cogroup_windowed(self, cogrouped: CogroupedKStream<K, VA>) -> Self::Output {
        SessionWindowedCogroupedKStream {
            cogrouped,
            windows: self,
        }
    }
}

/// Cogrouped streams cut into time windows (tumbling, hopping or sliding), ready to aggregate per key and window
/// (Kafka Streams' `TimeWindowedCogroupedKStream`).
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::*;
///
/// let builder = StreamsBuilder::new();
/// let views = builder.stream::<String, String>("views", Consumed::new()).group_by_key(Grouped::new());
/// let likes = builder.stream::<String, i64>("likes", Consumed::new()).group_by_key(Grouped::new());
/// // Per page and minute: views + 10 * likes.
/// views
///     .cogroup(|_, _: &String, score: i64| score + 1)
///     .cogroup(&likes, |_, n: &i64, score| score + 10 * n)
///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
///     .aggregate(|| 0, Materialized::as_store("scores").with_retention(Duration::from_secs(3600)));
/// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
/// driver.input_topic("views", Serdes::string(), Serdes::string()).pipe_input_at("/a".into(), "ann".into(), 1_000).unwrap();
/// driver.input_topic("likes", Serdes::string(), Serdes::i64()).pipe_input_at("/a".into(), 2, 2_000).unwrap();
/// driver.input_topic("views", Serdes::string(), Serdes::string()).pipe_input_at("/a".into(), "bob".into(), 61_000).unwrap();
/// let store = driver.key_value_store::<Windowed<String>, i64>("scores").unwrap();
/// let scores: Vec<(i64, i64)> = store.all().unwrap().into_iter().map(|(k, s)| (k.window.start, s)).collect();
/// assert_eq!(scores, vec![(0, 21), (60_000, 1)]);
/// ```
pub struct TimeWindowedCogroupedKStream<K, VA> {
    cogrouped: CogroupedKStream<K, VA>,
    windows: TimeSpec,
}

impl<K: Data, VA: Data> TimeWindowedCogroupedKStream<K, VA> {
    /// The table of each key's aggregate per window: `init()` to start each window, then each input's
    /// aggregator for each record falling in it (Kafka Streams' `TimeWindowedCogroupedKStream#aggregate`).
    /// Records later than the window's end plus grace (in stream time) are dropped; each update carries the
    /// latest timestamp of the window's records. The store keeps windows for `materialized`'s retention, by
    /// default the window size plus grace.
    pub fn aggregate<I>(self, init: I, materialized: Materialized<K, VA>) -> KTable<Windowed<K>, VA>
    where
        I: Fn() -> VA + Send + Sync + 'static,
    {
        const OP: &str = "windowed cogroup aggregate";
        let shared = self.cogrouped.b.clone();
        let mut b = shared.borrow_mut();
        let store = materialized
            .name
            .clone()
            .unwrap_or_else(|| b.name("COGROUPKSTREAM-AGGREGATE-STATE-STORE-"));
        let spec = self.windows;
        let (size_ms, grace_ms) = match spec {
            TimeSpec::Time(w) => {
                b.check(w.validate());
                (w.size_ms, w.grace_ms)
            }
            TimeSpec::Sliding(w) => {
                b.check(w.validate());
                (w.difference_ms, w.grace_ms)
            }
        };
        let min_retention = size_ms.saturating_add(grace_ms);
        let retention_ms = match (spec, materialized.retention) {
            // Sliding windows are kept as long as Kafka's sliding-window stores keep them.
            (TimeSpec::Sliding(_), None) => size_ms.saturating_mul(2).saturating_add(grace_ms),
            _ => b
                .check(retention(&materialized, min_retention, OP))
                .unwrap_or(min_retention),
        };
        let init: Initializer<VA> = Arc::new(init);
        let flag = Arc::new(AtomicBool::new(false));
        let (prepared, serdes) =
            self.cogrouped
                .prepare_with_serdes(&mut b, &store, &materialized, OP);
        let Some((k, v)) = serdes else {
            drop(b);
            return KTable::new(shared.clone(), String::new(), None, None, None, vec![flag]);
        };
        let window_ctx = WindowCtx {
            windows: spec,
            retention_ms,
            key_serde: k.clone(),
            value_serde: v.clone(),
        };
        let (aggregators, merge) =
            self.cogrouped
                .attach_all(&mut b, &prepared, |input, b, node, processor| {
                    input.add_window_aggregator(
                        b,
                        node,
                        AttachCtx {
                            store: &store,
                            processor,
                            init: &init,
                            send_old: &flag,
                        },
                        &window_ctx,
                    )
                });
        let ws: SharedSerde<Windowed<K>> = Arc::new(TimeWindowedSerde::new(k, size_ms));
        // For `suppress(until_window_closes)` downstream.
        b.window_close.insert(merge.clone(), (grace_ms, false));
        CogroupedKStream::finish_windowed(
            &mut b,
            &shared,
            &store,
            &materialized,
            &aggregators,
            merge,
            ws,
            v,
            true,
            (state_store::SegmentKeySchema::Window, retention_ms),
            flag,
        )
    }
}

/// Cogrouped streams cut into sessions of activity, ready to aggregate per key and session (Kafka Streams'
/// `SessionWindowedCogroupedKStream`). As for [`SessionWindowedKStream`](crate::SessionWindowedKStream), a record
/// joins or merges the sessions within the inactivity gap of it; each input's aggregator folds its records,
/// and `merger` combines the aggregates of sessions a record bridges.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::*;
///
/// let builder = StreamsBuilder::new();
/// let views = builder.stream::<String, String>("views", Consumed::new()).group_by_key(Grouped::new());
/// let buys = builder.stream::<String, i64>("buys", Consumed::new()).group_by_key(Grouped::new());
/// // Per user and visit: pages viewed + 100 * items bought.
/// views
///     .cogroup(|_, _: &String, score: i64| score + 1)
///     .cogroup(&buys, |_, n: &i64, score| score + 100 * n)
///     .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(300)))
///     .aggregate(|| 0, |_, a, b| a + b, Materialized::as_store("visits").with_retention(Duration::from_secs(86_400)));
/// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
/// let v = driver.input_topic("views", Serdes::string(), Serdes::string());
/// let b = driver.input_topic("buys", Serdes::string(), Serdes::i64());
/// v.pipe_input_at("ann".into(), "/a".into(), 0).unwrap();
/// b.pipe_input_at("ann".into(), 2, 60_000).unwrap();
/// v.pipe_input_at("ann".into(), "/b".into(), 1_000_000).unwrap();
/// let visits = driver.session_store::<String, i64>("visits").unwrap();
/// let scores: Vec<(i64, i64, i64)> = visits.fetch(&"ann".into()).unwrap().into_iter()
///     .map(|(w, s)| (w.window.start, w.window.end, s)).collect();
/// assert_eq!(scores, vec![(0, 60_000, 201), (1_000_000, 1_000_000, 1)]);
/// ```
pub struct SessionWindowedCogroupedKStream<K, VA> {
    cogrouped: CogroupedKStream<K, VA>,
    windows: SessionWindows,
}

impl<K: Data, VA: Data> SessionWindowedCogroupedKStream<K, VA> {
    /// The table of each key's aggregate per session: `init()` to start, each input's aggregator for its
    /// records, `merger(key, aggregate, other session's aggregate)` when a record bridges sessions (Kafka
    /// Streams' `SessionWindowedCogroupedKStream#aggregate`). Records later than the session's end plus gap
    /// plus grace (in stream time) are dropped. The store keeps sessions for `materialized`'s retention, by
    /// default the gap plus grace.
    pub fn aggregate<I, M>(
        self,
        init: I,
        merger: M,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA>
    where
        I: Fn() -> VA + Send + Sync + 'static,
        M: Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
    {
        const OP: &str = "session-windowed cogroup aggregate";
        let shared = self.cogrouped.b.clone();
        let mut b = shared.borrow_mut();
        let store = materialized
            .name
            .clone()
            .unwrap_or_else(|| b.name("COGROUPKSTREAM-AGGREGATE-STATE-STORE-"));
        let w = self.windows;
        b.check(w.validate());
        let min_retention = w.gap_ms.saturating_add(w.grace_ms);
        let retention_ms = b
            .check(retention(&materialized, min_retention, OP))
            .unwrap_or(min_retention);
        let init: Initializer<VA> = Arc::new(init);
        let merger: Merger<K, VA> = Arc::new(merger);
        let flag = Arc::new(AtomicBool::new(false));
        let (prepared, serdes) =
            self.cogrouped
                .prepare_with_serdes(&mut b, &store, &materialized, OP);
        let Some((k, v)) = serdes else {
            drop(b);
            return KTable::new(shared.clone(), String::new(), None, None, None, vec![flag]);
        };
        let window_ctx = WindowCtx {
            windows: w,
            retention_ms,
            key_serde: k.clone(),
            value_serde: v.clone(),
        };
        let (aggregators, merge) =
            self.cogrouped
                .attach_all(&mut b, &prepared, |input, b, node, processor| {
                    input.add_session_aggregator(
                        b,
                        node,
                        AttachCtx {
                            store: &store,
                            processor,
                            init: &init,
                            send_old: &flag,
                        },
                        &window_ctx,
                        &merger,
                    )
                });
        let ws: SharedSerde<Windowed<K>> = Arc::new(SessionWindowedSerde::new(k));
        // A session may still grow (a record within the gap after it) until end + gap + grace.
        b.window_close
            .insert(merge.clone(), (w.gap_ms.saturating_add(w.grace_ms), true));
        CogroupedKStream::finish_windowed(
            &mut b,
            &shared,
            &store,
            &materialized,
            &aggregators,
            merge,
            ws,
            v,
            false,
            (state_store::SegmentKeySchema::Session, retention_ms),
            flag,
        )
    }
}
