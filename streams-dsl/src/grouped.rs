//! Grouped streams and tables, and their aggregations.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use streams_core::{Data, SharedSerde};

use crate::builder::Shared;
use crate::change::{Change, ChangeSerde};
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::ops::stream_aggregate::StreamAggregate;
use crate::ops::table_aggregate::TableAggregate;
use crate::params::{pick_serde, Grouped, Materialized};

const GROUP_HINT: &str = "Grouped::with(key_serde, value_serde)";
const STORE_HINT: &str = "Materialized::with(key_serde, value_serde)";

/// A stream grouped by key, ready to aggregate (Kafka Streams' `KGroupedStream`).
pub struct KGroupedStream<K, V> {
    stream: KStream<K, V>,
    grouped: Grouped<K, V>,
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    pub(crate) fn new(stream: KStream<K, V>, grouped: Grouped<K, V>) -> Self {
        KGroupedStream { stream, grouped }
    }

    /// This grouped stream, with the processor of the aggregation applied next (`count`, `reduce`,
    /// `aggregate`) named `named` (Kafka Streams' `KGroupedStream#count(Named)` and the like).
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, String>("clicks", Consumed::new())
    ///     .group_by_key(Grouped::new())
    ///     .named(Named::as_name("clicks-per-user"))
    ///     .count(Materialized::new());
    /// let description = builder.build().unwrap().describe().to_string();
    /// assert!(description.contains("Processor: clicks-per-user"), "{description}");
    /// ```
    pub fn named(mut self, named: crate::named::Named) -> Self {
        self.stream.pending_name = Some(named);
        self
    }

    /// The node an aggregation named `store` reads from (a repartition topic's source when the key changed
    /// upstream) and the key serde it knows.
    pub(crate) fn prepare_input(
        &self,
        b: &mut crate::builder::BuilderInner,
        op: &str,
        store: &str,
    ) -> (String, Option<SharedSerde<K>>) {
        let s = &self.stream;
        let key = b.check(pick_serde(
            &self.grouped.key_serde,
            &s.key_serde,
            op,
            "key",
            GROUP_HINT,
        ));
        let mut input = s.node.clone();
        if s.repartition_required {
            let value = b.check(pick_serde(
                &self.grouped.value_serde,
                &s.value_serde,
                op,
                "value",
                GROUP_HINT,
            ));
            if let (Some(k), Some(v)) = (key.clone(), value) {
                let base = self
                    .grouped
                    .name
                    .clone()
                    .unwrap_or_else(|| store.to_string());
                input = b.repartition(&s.node, &base, k, v, None);
            }
        }
        (input, key)
    }

    /// The value serde of the grouped records, if known.
    pub(crate) fn value_serde(
        &self,
        b: &mut crate::builder::BuilderInner,
        op: &str,
    ) -> Option<SharedSerde<V>> {
        b.check(pick_serde(
            &self.grouped.value_serde,
            &self.stream.value_serde,
            op,
            "value",
            GROUP_HINT,
        ))
    }

    pub(crate) fn clone_grouped(&self) -> Self {
        KGroupedStream {
            stream: self.stream.clone(),
            grouped: Grouped {
                key_serde: self.grouped.key_serde.clone(),
                value_serde: self.grouped.value_serde.clone(),
                name: self.grouped.name.clone(),
            },
        }
    }

    pub(crate) fn stream(&self) -> &KStream<K, V> {
        &self.stream
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.stream.b
    }

    fn fold<VA: Data, F>(
        &self,
        op: &str,
        prefix: &str,
        fold: F,
        known_value: Option<SharedSerde<VA>>,
        m: Materialized<K, VA>,
    ) -> KTable<K, VA>
    where
        F: Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
    {
        let s = &self.stream;
        let mut b = s.b.borrow_mut();
        let name = s.processor_name(&mut b, prefix);
        let store = m
            .name
            .clone()
            .unwrap_or_else(|| b.name("KSTREAM-AGGREGATE-STATE-STORE-"));
        let (input, key) = self.prepare_input(&mut b, op, &store);
        let flag = Arc::new(AtomicBool::new(false));
        let (f2, store_name, fold) = (
            flag.clone(),
            Arc::<str>::from(store.as_str()),
            Arc::new(fold),
        );
        b.add_processor::<K, V, _, _>(
            &name,
            move || StreamAggregate::<K, VA, F> {
                store_name: store_name.clone(),
                fold: fold.clone(),
                send_old: f2.load(Ordering::Relaxed),
                store: None,
                emit: None,
                _p: PhantomData,
            },
            &[&input],
        );
        let sk = b.check(pick_serde(&m.key_serde, &key, op, "key", STORE_HINT));
        let sv = b.check(pick_serde(
            &m.value_serde,
            &known_value,
            op,
            "value",
            STORE_HINT,
        ));
        if let (Some(k), Some(v)) = (sk.clone(), sv.clone()) {
            b.add_store(&store, &m, k, v, &name);
        }
        drop(b);
        KTable::new(
            s.b.clone(),
            name,
            sk,
            sv,
            m.name.is_some().then_some(store),
            vec![flag],
        )
    }

    /// Folds each key's records into an aggregate, starting from `init()`.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, i64>("payments", Consumed::new())
    ///     .group_by_key(Grouped::new())
    ///     .aggregate(|| 0i64, |_account, amount, total| total + amount, Materialized::as_store("balances"));
    /// # builder.build().unwrap();
    /// ```
    pub fn aggregate<VA: Data, I, A>(
        &self,
        init: I,
        aggregator: A,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA>
    where
        I: Fn() -> VA + Send + Sync + 'static,
        A: Fn(&K, &V, VA) -> VA + Send + Sync + 'static,
    {
        self.fold(
            "aggregate",
            "KSTREAM-AGGREGATE-",
            move |k: &K, v: V, prev: Option<VA>| aggregator(k, &v, prev.unwrap_or_else(&init)),
            None,
            materialized,
        )
    }

    /// Combines each key's values with `reducer(aggregate, value)`; the first value is the starting aggregate.
    pub fn reduce<R>(&self, reducer: R, materialized: Materialized<K, V>) -> KTable<K, V>
    where
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let known = self
            .grouped
            .value_serde
            .clone()
            .or_else(|| self.stream.value_serde.clone());
        self.fold(
            "reduce",
            "KSTREAM-REDUCE-",
            move |_: &K, v: V, prev: Option<V>| match prev {
                Some(agg) => reducer(agg, v),
                None => v,
            },
            known,
            materialized,
        )
    }

    /// Counts each key's records.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.fold(
            "count",
            "KSTREAM-AGGREGATE-",
            |_: &K, _: V, prev: Option<i64>| prev.unwrap_or(0) + 1,
            None,
            materialized,
        )
    }
}

/// A table re-keyed by [`KTable::group_by`], ready to aggregate with an adder and a subtractor (Kafka Streams'
/// `KGroupedTable`).
pub struct KGroupedTable<K, V> {
    b: Shared,
    node: String,
    grouped: Grouped<K, V>,
    pending_name: Option<crate::named::Named>,
}

impl<K: Data, V: Data> KGroupedTable<K, V> {
    pub(crate) fn new(b: Shared, node: String, grouped: Grouped<K, V>) -> Self {
        KGroupedTable {
            b,
            node,
            grouped,
            pending_name: None,
        }
    }

    /// This grouped table, with the processor of the aggregation applied next (`count`, `reduce`,
    /// `aggregate`) named `named` (Kafka Streams' `KGroupedTable#count(Named)` and the like).
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.table::<String, String>("users", Consumed::new(), Materialized::new())
    ///     .group_by(|_user, region| (region.clone(), 1i64), Grouped::new())
    ///     .named(Named::as_name("users-per-region"))
    ///     .count(Materialized::new());
    /// let description = builder.build().unwrap().describe().to_string();
    /// assert!(description.contains("Processor: users-per-region"), "{description}");
    /// ```
    pub fn named(mut self, named: crate::named::Named) -> Self {
        self.pending_name = Some(named);
        self
    }

    fn fold<VA: Data, A, S>(
        &self,
        op: &str,
        prefix: &str,
        add: A,
        sub: S,
        known_value: Option<SharedSerde<VA>>,
        m: Materialized<K, VA>,
    ) -> KTable<K, VA>
    where
        A: Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
        S: Fn(&K, &V, VA) -> Option<VA> + Send + Sync + 'static,
    {
        let mut b = self.b.borrow_mut();
        let name = crate::named::processor_name(&mut b, self.pending_name.as_ref(), prefix);
        let store = m
            .name
            .clone()
            .unwrap_or_else(|| b.name("KTABLE-AGGREGATE-STATE-STORE-"));
        let key = b.check(pick_serde(
            &self.grouped.key_serde,
            &None,
            op,
            "key",
            GROUP_HINT,
        ));
        let value = b.check(pick_serde(
            &self.grouped.value_serde,
            &None,
            op,
            "value",
            GROUP_HINT,
        ));
        let mut input = self.node.clone();
        if let (Some(k), Some(v)) = (key.clone(), value.clone()) {
            let base = self.grouped.name.clone().unwrap_or_else(|| store.clone());
            let change: SharedSerde<Change<V>> = Arc::new(ChangeSerde::new(v));
            input = b.repartition(&self.node, &base, k, change, None);
        }
        let flag = Arc::new(AtomicBool::new(false));
        let (f2, store_name, add, sub) = (
            flag.clone(),
            Arc::<str>::from(store.as_str()),
            Arc::new(add),
            Arc::new(sub),
        );
        b.add_processor::<K, Change<V>, _, _>(
            &name,
            move || TableAggregate::<K, VA, A, S> {
                store_name: store_name.clone(),
                add: add.clone(),
                sub: sub.clone(),
                send_old: f2.load(Ordering::Relaxed),
                store: None,
                emit: None,
                _p: PhantomData,
            },
            &[&input],
        );
        let sk = b.check(pick_serde(&m.key_serde, &key, op, "key", STORE_HINT));
        let sv = b.check(pick_serde(
            &m.value_serde,
            &known_value,
            op,
            "value",
            STORE_HINT,
        ));
        if let (Some(k), Some(v)) = (sk.clone(), sv.clone()) {
            b.add_store(&store, &m, k, v, &name);
        }
        drop(b);
        KTable::new(
            self.b.clone(),
            name,
            sk,
            sv,
            m.name.is_some().then_some(store),
            vec![flag],
        )
    }

    /// Aggregates each group: `adder` folds in a row that joins the group, `subtractor` takes out a row that
    /// leaves it (an update of a row is a subtraction of its old value, then an addition of the new one).
    /// A subtractor returning `None` removes the group from the table.
    pub fn aggregate<VA: Data, I, A, S>(
        &self,
        init: I,
        adder: A,
        subtractor: S,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA>
    where
        I: Fn() -> VA + Send + Sync + 'static,
        A: Fn(&K, &V, VA) -> VA + Send + Sync + 'static,
        S: Fn(&K, &V, VA) -> Option<VA> + Send + Sync + 'static,
    {
        self.fold(
            "aggregate",
            "KTABLE-AGGREGATE-",
            move |k: &K, v: V, prev: Option<VA>| adder(k, &v, prev.unwrap_or_else(&init)),
            subtractor,
            None,
            materialized,
        )
    }

    /// Combines each group's values: `adder(aggregate, new value)`, `subtractor(aggregate, old value)` (`None`
    /// removes the group).
    pub fn reduce<A, S>(
        &self,
        adder: A,
        subtractor: S,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V>
    where
        A: Fn(V, V) -> V + Send + Sync + 'static,
        S: Fn(V, &V) -> Option<V> + Send + Sync + 'static,
    {
        let known = self.grouped.value_serde.clone();
        self.fold(
            "reduce",
            "KTABLE-REDUCE-",
            move |_: &K, v: V, prev: Option<V>| match prev {
                Some(agg) => adder(agg, v),
                None => v,
            },
            move |_: &K, v: &V, agg: V| subtractor(agg, v),
            known,
            materialized,
        )
    }

    /// Counts the rows in each group (a group whose rows all left stays at 0, as in Kafka Streams).
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.fold(
            "count",
            "KTABLE-AGGREGATE-",
            |_: &K, _: V, prev: Option<i64>| prev.unwrap_or(0) + 1,
            |_: &K, _: &V, c: i64| Some(c - 1),
            None,
            materialized,
        )
    }
}
