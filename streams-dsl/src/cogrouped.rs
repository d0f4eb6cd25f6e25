//! `cogroup`: several grouped streams, of different value types, aggregated into one table (Kafka Streams'
//! `KGroupedStream#cogroup` and `CogroupedKStream`).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use streams_core::{Data, SharedSerde};

use crate::builder::{BuilderInner, Shared};
use crate::change::Change;
use crate::grouped::KGroupedStream;
use crate::ktable::KTable;
use crate::ops::passthrough::PassThrough;
use crate::ops::stream_aggregate::StreamAggregate;
use crate::params::{pick_serde, Materialized};

type Initializer<VA> = Arc<dyn Fn() -> VA + Send + Sync>;

/// What one input of a cogroup needs to attach its aggregator once the store is known.
struct AttachCtx<'a, VA> {
    store: &'a str,
    processor: &'a str,
    init: &'a Initializer<VA>,
    send_old: &'a Arc<AtomicBool>,
}

/// Adds one input's repartition (when its key changed upstream) and aggregator; returns the node the aggregator
/// reads and the key serde the input knows.
type Attach<K, VA> =
    Box<dyn FnOnce(&mut BuilderInner, AttachCtx<'_, VA>) -> (String, Option<SharedSerde<K>>)>;

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
    inputs: Vec<Attach<K, VA>>,
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
        let grouped = grouped.clone_grouped();
        let aggregator = Arc::new(aggregator);
        self.inputs.push(Box::new(
            move |b: &mut BuilderInner, ctx: AttachCtx<'_, VA>| {
                // A repartition topic named after the store, unless that name is taken (by another input).
                let base = if b
                    .topology
                    .is_internal_topic(&format!("{}-repartition", ctx.store))
                {
                    b.name("COGROUPKSTREAM-AGGREGATE-STATE-STORE-")
                } else {
                    ctx.store.to_string()
                };
                let (input, key) = grouped.prepare_input(b, "cogroup", &base);
                let init = ctx.init.clone();
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
                        _p: PhantomData,
                    },
                    &[&input],
                );
                (input, key)
            },
        ));
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
        for attach in self.inputs {
            let processor = b.name("COGROUPKSTREAM-AGGREGATE-");
            let (input, k) = attach(
                &mut b,
                AttachCtx {
                    store: &store,
                    processor: &processor,
                    init: &init,
                    send_old: &flag,
                },
            );
            key = key.or(k);
            inputs.push(input);
            aggregators.push(processor);
        }
        if inputs.len() > 1 {
            let nodes: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let r = b.topology.add_copartition_group(&nodes).map(|_| ());
            b.check(r);
        }
        let merge = b.name("COGROUPKSTREAM-MERGE-");
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
