//! Joins: a stream with a table ([`KStream::join`], [`KStream::left_join`]) and a table with a table
//! ([`KTable::join`], [`KTable::left_join`], [`KTable::outer_join`]), with Kafka Streams' semantics.
//!
//! Both sides of a join must be co-partitioned: the join runs in the task of each partition and looks the key
//! up in that task's part of the table. The topology records the topics of both sides as a co-partition group;
//! starting the application (or the test driver) fails with
//! [`StreamsError::CopartitionMismatch`](crate::StreamsError::CopartitionMismatch) when their partition counts
//! differ. A stream whose key was changed upstream is first repartitioned through `<name>-repartition`, which
//! gets as many partitions as the table's topics.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use streams_core::{
    Data, KeyValueStoreBuilder, NodeDescriptionKind, Serdes, SharedSerde, StoreKind, StreamsError,
    Topology, VersionedKeyValueStoreBuilder,
};

use crate::builder::BuilderInner;
use crate::change::Change;
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::ops::stream_table_join::{Grace, StreamTableJoin};
use crate::ops::table_materialize::{TableMaterialize, VersionedTableMaterialize};
use crate::ops::table_table_join::{JoinMerge, TableTableJoin};
use crate::params::{pick_serde, Joined, Materialized};

const JOINED_HINT: &str = "Joined::with(key_serde, value_serde, other_value_serde)";
const TABLE_HINT: &str = "Materialized::with(key_serde, value_serde) on the joined table";

/// The history retention of the versioned store a table without a store of its own derives from: walking up
/// from `node` through nodes without stores (`filter`, `map_values`, ... without `Materialized`), the first store
/// met, if it is versioned. A materialized, non-versioned table in between ends the inheritance, as in Kafka
/// Streams (InternalStreamsBuilderTest.shouldNotSetUseVersionedSemanticsWithMaterializedIntermediateNode).
fn inherited_history(b: &BuilderInner, node: &str) -> Option<i64> {
    let mut node = node.to_string();
    loop {
        let stores = stores_of(&b.topology, &node);
        match stores.as_slice() {
            [store] => return b.topology.versioned_store_retention(store),
            [] => {}
            _ => return None,
        }
        match b.topology.parents_of(&node)?.as_slice() {
            [parent] => node = parent.to_string(),
            _ => return None,
        }
    }
}

/// The stores connected to `node`.
fn stores_of(topology: &Topology, node: &str) -> Vec<String> {
    topology
        .describe()
        .sub_topologies
        .into_iter()
        .flat_map(|s| s.nodes)
        .find(|n| n.name == node)
        .and_then(|n| match n.kind {
            NodeDescriptionKind::Processor(stores) => Some(stores),
            _ => None,
        })
        .unwrap_or_default()
}

impl<K: Data, V: Data> KTable<K, V> {
    /// A node whose changes are this table's and a store holding its rows: the table's own store when it has
    /// one, otherwise a new store behind it (tables derived without `Materialized` keep no rows). `None` when a
    /// serde is missing (the error is kept for `build`).
    fn with_store(
        &self,
        value_serde: &Option<SharedSerde<V>>,
        op: &str,
    ) -> Option<(String, String)> {
        let mut b = self.b.borrow_mut();
        if let [store] = stores_of(&b.topology, &self.node).as_slice() {
            if !b.buffer_nodes.contains(&self.node) {
                return Some((self.node.clone(), store.clone()));
            }
        }
        let k = b.check(pick_serde(&None, &self.key_serde, op, "key", TABLE_HINT))?;
        let v = b.check(pick_serde(
            value_serde,
            &self.value_serde,
            op,
            "value",
            TABLE_HINT,
        ))?;
        let node = b.name("KTABLE-MATERIALIZE-");
        let store = b.name("KTABLE-MATERIALIZE-STATE-STORE-");
        let store_name: Arc<str> = Arc::from(store.as_str());
        if let Some(history_ms) = inherited_history(&b, &self.node) {
            b.add_processor::<K, Change<V>, _, _>(
                &node,
                move || VersionedTableMaterialize::<K, V> {
                    store_name: store_name.clone(),
                    store: None,
                },
                &[&self.node],
            );
            let builder = VersionedKeyValueStoreBuilder::from_parts(
                &store,
                Arc::new(StoreKind::default()),
                k,
                v,
                std::time::Duration::from_millis(u64::try_from(history_ms).unwrap_or(0)),
            );
            let r = b
                .topology
                .add_versioned_state_store(builder, &[&node])
                .map(|_| ());
            b.check(r);
            return Some((node, store));
        }
        b.add_processor::<K, Change<V>, _, _>(
            &node,
            move || TableMaterialize::<K, V> {
                store_name: store_name.clone(),
                store: None,
            },
            &[&self.node],
        );
        b.add_store(&store, &Materialized::new(), k, v, &node);
        Some((node, store))
    }

    fn join_tables<VO: Data, VR: Data, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        (this_outer, other_outer): (bool, bool),
        materialized: Option<Materialized<K, VR>>,
        op: &str,
    ) -> KTable<K, VR>
    where
        F: Fn(Option<&V>, Option<&VO>) -> Option<VR> + Send + Sync + 'static,
    {
        // A side that makes rows on its own needs its old values: deleting its row must delete the joined row
        // even when the other side has none.
        if this_outer {
            self.enable_send_old_values();
        }
        if other_outer {
            other.enable_send_old_values();
        }
        let this_view = self.with_store(&None, op);
        let other_view = other.with_store(&None, op);
        let mut b = self.b.borrow_mut();
        for (_, store) in this_view.iter().chain(other_view.iter()) {
            if b.topology.versioned_store_retention(store).is_some() {
                b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                    "{op}: table '{store}' is versioned; table-table joins of versioned tables are not \
                     supported (join a stream with it, or materialize it without versioning)"
                ))));
            }
        }
        // Named as Kafka names a table-table join given `Named`: `<name>-join-this`, `<name>-join-other`, `<name>`.
        let (this_name, other_name, merge_name) = match &self.pending_name {
            Some(named) => {
                let n = named.resolve(&mut b, "KTABLE-MERGE-");
                (format!("{n}-join-this"), format!("{n}-join-other"), n)
            }
            None => (
                b.name("KTABLE-JOINTHIS-"),
                b.name("KTABLE-JOINOTHER-"),
                b.name("KTABLE-MERGE-"),
            ),
        };
        let flag = Arc::new(AtomicBool::new(false));
        let known_key = self.key_serde.clone().or_else(|| other.key_serde.clone());
        let (mut k, mut v) = (known_key.clone(), None);
        let store = materialized.as_ref().map(|m| {
            m.name
                .clone()
                .unwrap_or_else(|| b.name("KTABLE-MERGE-STATE-STORE-"))
        });
        if let (Some((this_node, this_store)), Some((other_node, other_store))) =
            (this_view, other_view)
        {
            let joiner = Arc::new(joiner);
            let (j, f, s) = (
                joiner.clone(),
                flag.clone(),
                Arc::<str>::from(other_store.as_str()),
            );
            b.add_processor::<K, Change<V>, _, _>(
                &this_name,
                move || TableTableJoin::<K, V, VO, VR, F> {
                    other_store_name: s.clone(),
                    joiner: j.clone(),
                    this_outer,
                    other_outer,
                    send_old: f.load(Ordering::Relaxed),
                    store: None,
                    _p: PhantomData,
                },
                &[&this_node],
            );
            let swapped = Arc::new(move |o: Option<&VO>, t: Option<&V>| joiner(t, o));
            let (f, s) = (flag.clone(), Arc::<str>::from(this_store.as_str()));
            b.add_processor::<K, Change<VO>, _, _>(
                &other_name,
                move || TableTableJoin {
                    other_store_name: s.clone(),
                    joiner: swapped.clone(),
                    this_outer: other_outer,
                    other_outer: this_outer,
                    send_old: f.load(Ordering::Relaxed),
                    store: None,
                    _p: PhantomData::<fn() -> (VO, VR)>,
                },
                &[&other_node],
            );
            let r = b
                .topology
                .connect_processor_and_state_stores(&this_name, &[&other_store])
                .and_then(|t| t.connect_processor_and_state_stores(&other_name, &[&this_store]))
                .and_then(|t| t.add_copartition_group(&[&this_node, &other_node]))
                .map(|_| ());
            b.check(r);
            let store_name = store.as_deref().map(Arc::<str>::from);
            let f = flag.clone();
            b.add_processor::<K, Change<VR>, _, _>(
                &merge_name,
                move || JoinMerge::<K, VR> {
                    store_name: store_name.clone(),
                    send_old: f.load(Ordering::Relaxed),
                    store: None,
                },
                &[&this_name, &other_name],
            );
            if let (Some(m), Some(s)) = (&materialized, &store) {
                k = b.check(pick_serde(&m.key_serde, &known_key, op, "key", TABLE_HINT));
                v = b.check(pick_serde(&m.value_serde, &None, op, "value", TABLE_HINT));
                if let (Some(k), Some(v)) = (k.clone(), v.clone()) {
                    b.add_store(s, m, k, v, &merge_name);
                }
            }
        }
        drop(b);
        let mut flags = vec![flag];
        flags.extend(self.old_flags.iter().cloned());
        flags.extend(other.old_flags.iter().cloned());
        let queryable = store.filter(|_| materialized.as_ref().is_some_and(|m| m.name.is_some()));
        KTable::new(self.b.clone(), merge_name, k, v, queryable, flags)
    }

    /// Joins with `other` on the key: a row for each key both tables have, `joiner(value, other value)`.
    ///
    /// An update of either side looks the key up in the other side's store and forwards the new joined row; when
    /// either side loses the key the joined row is deleted. Both tables' topics must have as many partitions.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// let names = builder.table::<String, String>("names", Consumed::new(), Materialized::new());
    /// let emails = builder.table::<String, String>("emails", Consumed::new(), Materialized::new());
    /// names
    ///     .join(&emails, |name, email| format!("{name} <{email}>"))
    ///     .to_stream()
    ///     .to("contacts", Produced::new());
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let n = driver.input_topic("names", Serdes::string(), Serdes::string());
    /// let e = driver.input_topic("emails", Serdes::string(), OptionSerde::new(Serdes::string()));
    /// let out = driver.output_topic("contacts", Serdes::string(), OptionSerde::new(Serdes::string()));
    /// n.pipe_input("u1".into(), "Ann".into()).unwrap();
    /// e.pipe_input("u1".into(), Some("ann@example.com".into())).unwrap();
    /// e.pipe_input("u1".into(), None).unwrap(); // the email is deleted: so is the joined row
    /// assert_eq!(
    ///     out.read_key_values_to_vec().unwrap().into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    ///     vec![Some("Ann <ann@example.com>".to_string()), None]
    /// );
    /// ```
    pub fn join<VO: Data, VR: Data, F>(&self, other: &KTable<K, VO>, joiner: F) -> KTable<K, VR>
    where
        F: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        self.join_materialized_impl(other, joiner, None)
    }

    /// [`KTable::join`], with the result kept in a store (queryable when named with
    /// [`Materialized::as_store`]).
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// let prices = builder.table::<String, i64>("prices", Consumed::new(), Materialized::new());
    /// let stock = builder.table::<String, i64>("stock", Consumed::new(), Materialized::new());
    /// prices.join_materialized(&stock, |price, count| price * count, Materialized::as_store("stock-value"));
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// driver.input_topic("prices", Serdes::string(), Serdes::i64()).pipe_input("pen".into(), 3).unwrap();
    /// driver.input_topic("stock", Serdes::string(), Serdes::i64()).pipe_input("pen".into(), 40).unwrap();
    /// let value = driver.key_value_store::<String, i64>("stock-value").unwrap();
    /// assert_eq!(value.get(&"pen".to_string()).unwrap(), Some(120));
    /// ```
    pub fn join_materialized<VO: Data, VR: Data, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        F: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        self.join_materialized_impl(other, joiner, Some(materialized))
    }

    fn join_materialized_impl<VO: Data, VR: Data, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        materialized: Option<Materialized<K, VR>>,
    ) -> KTable<K, VR>
    where
        F: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        self.join_tables(
            other,
            move |t: Option<&V>, o: Option<&VO>| match (t, o) {
                (Some(t), Some(o)) => Some(joiner(t, o)),
                _ => None,
            },
            (false, false),
            materialized,
            "KTable::join",
        )
    }

    /// Left join with `other` on the key: a row for each key of this table, `joiner(value, other value or
    /// None)`. An update of `other` for a key this table lacks produces nothing; deleting this table's row
    /// deletes the joined row.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// let users = builder.table::<String, String>("users", Consumed::new(), Materialized::new());
    /// let nicknames = builder.table::<String, String>("nicknames", Consumed::new(), Materialized::new());
    /// users
    ///     .left_join(&nicknames, |name, nick| nick.cloned().unwrap_or_else(|| name.clone()))
    ///     .to_stream()
    ///     .to("display-names", Produced::new());
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let u = driver.input_topic("users", Serdes::string(), Serdes::string());
    /// let n = driver.input_topic("nicknames", Serdes::string(), Serdes::string());
    /// let out = driver.output_topic("display-names", Serdes::string(), OptionSerde::new(Serdes::string()));
    /// n.pipe_input("u2".into(), "Bo".into()).unwrap(); // no user u2 yet: nothing
    /// u.pipe_input("u1".into(), "Ann".into()).unwrap();
    /// n.pipe_input("u1".into(), "Annie".into()).unwrap();
    /// assert_eq!(
    ///     out.read_key_values_to_vec().unwrap(),
    ///     vec![("u1".to_string(), Some("Ann".to_string())), ("u1".to_string(), Some("Annie".to_string()))]
    /// );
    /// ```
    pub fn left_join<VO: Data, VR: Data, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
    ) -> KTable<K, VR>
    where
        F: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.left_join_impl(other, joiner, None)
    }

    /// [`KTable::left_join`], with the result kept in a store.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// let orders = builder.table::<String, i64>("orders", Consumed::new(), Materialized::new());
    /// let discounts = builder.table::<String, i64>("discounts", Consumed::new(), Materialized::new());
    /// orders.left_join_materialized(
    ///     &discounts,
    ///     |amount, discount| amount - discount.copied().unwrap_or(0),
    ///     Materialized::as_store("amounts-due").in_memory(),
    /// );
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// driver.input_topic("orders", Serdes::string(), Serdes::i64()).pipe_input("o1".into(), 100).unwrap();
    /// let due = driver.key_value_store::<String, i64>("amounts-due").unwrap();
    /// assert_eq!(due.get(&"o1".to_string()).unwrap(), Some(100));
    /// driver.input_topic("discounts", Serdes::string(), Serdes::i64()).pipe_input("o1".into(), 15).unwrap();
    /// assert_eq!(due.get(&"o1".to_string()).unwrap(), Some(85));
    /// ```
    pub fn left_join_materialized<VO: Data, VR: Data, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        F: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.left_join_impl(other, joiner, Some(materialized))
    }

    fn left_join_impl<VO: Data, VR: Data, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        materialized: Option<Materialized<K, VR>>,
    ) -> KTable<K, VR>
    where
        F: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.join_tables(
            other,
            move |t: Option<&V>, o: Option<&VO>| t.map(|t| joiner(t, o)),
            (true, false),
            materialized,
            "KTable::left_join",
        )
    }

    /// Outer join with `other` on the key: a row for each key either table has, `joiner(value or None, other
    /// value or None)`; the joined row is deleted when both sides have lost the key.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// let a = builder.table::<String, i64>("stock-a", Consumed::new(), Materialized::new());
    /// let b = builder.table::<String, i64>("stock-b", Consumed::new(), Materialized::new());
    /// a.outer_join(&b, |x, y| x.copied().unwrap_or(0) + y.copied().unwrap_or(0))
    ///     .to_stream()
    ///     .to("total-stock", Produced::new());
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let a_in = driver.input_topic("stock-a", Serdes::string(), OptionSerde::new(Serdes::i64()));
    /// let b_in = driver.input_topic("stock-b", Serdes::string(), OptionSerde::new(Serdes::i64()));
    /// let out = driver.output_topic("total-stock", Serdes::string(), OptionSerde::new(Serdes::i64()));
    /// b_in.pipe_input("pen".into(), Some(5)).unwrap();
    /// a_in.pipe_input("pen".into(), Some(7)).unwrap();
    /// b_in.pipe_input("pen".into(), None).unwrap();
    /// a_in.pipe_input("pen".into(), None).unwrap();
    /// assert_eq!(out.read_key_values_to_vec().unwrap().into_iter().map(|(_, v)| v).collect::<Vec<_>>(), vec![Some(5), Some(12), Some(7), None]);
    /// ```
    pub fn outer_join<VO: Data, VR: Data, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
    ) -> KTable<K, VR>
    where
        F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.outer_join_impl(other, joiner, None)
    }

    /// [`KTable::outer_join`], with the result kept in a store.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// let a = builder.table::<String, i64>("stock-a", Consumed::new(), Materialized::new());
    /// let b = builder.table::<String, i64>("stock-b", Consumed::new(), Materialized::new());
    /// a.outer_join_materialized(
    ///     &b,
    ///     |x, y| x.copied().unwrap_or(0) + y.copied().unwrap_or(0),
    ///     Materialized::as_store("total-stock"),
    /// );
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// driver.input_topic("stock-b", Serdes::string(), Serdes::i64()).pipe_input("pen".into(), 5).unwrap();
    /// let total = driver.key_value_store::<String, i64>("total-stock").unwrap();
    /// assert_eq!(total.get(&"pen".to_string()).unwrap(), Some(5));
    /// ```
    pub fn outer_join_materialized<VO: Data, VR: Data, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.outer_join_impl(other, joiner, Some(materialized))
    }

    fn outer_join_impl<VO: Data, VR: Data, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        materialized: Option<Materialized<K, VR>>,
    ) -> KTable<K, VR>
    where
        F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.join_tables(
            other,
            move |t: Option<&V>, o: Option<&VO>| Some(joiner(t, o)),
            (true, true),
            materialized,
            "KTable::outer_join",
        )
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    fn join_table<VT: Data, VR: Data, F>(
        &self,
        table: &KTable<K, VT>,
        joiner: F,
        joined: Joined<K, V, VT>,
        left_join: bool,
        op: &str,
    ) -> KStream<K, VR>
    where
        F: Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync + 'static,
    {
        let view = table.with_store(&joined.other_value_serde, op);
        let mut b = self.b.borrow_mut();
        let name = joined
            .name
            .clone()
            .unwrap_or_else(|| self.processor_name(&mut b, "KSTREAM-JOIN-"));
        let mut key_serde = joined
            .key_serde
            .clone()
            .or_else(|| self.key_serde.clone())
            .or_else(|| table.key_serde.clone());
        let value_serde = joined
            .value_serde
            .clone()
            .or_else(|| self.value_serde.clone());
        let mut input = self.node.clone();
        if self.repartition_required {
            let k = b.check(pick_serde(
                &joined.key_serde,
                &self.key_serde,
                op,
                "key",
                JOINED_HINT,
            ));
            let v = b.check(pick_serde(
                &joined.value_serde,
                &self.value_serde,
                op,
                "value",
                JOINED_HINT,
            ));
            if let (Some(k), Some(v)) = (k, v) {
                input = b.repartition(&self.node, &name, k.clone(), v, None);
                key_serde = Some(k);
            }
        }
        if let Some((table_node, store)) = view {
            let history = b.topology.versioned_store_retention(&store);
            let mut grace = None;
            if let Some(period) = joined.grace_period {
                let grace_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
                match history {
                    None => {
                        b.check::<()>(Err(StreamsError::GracePeriodNeedsVersionedTable {
                            join: name.clone(),
                        }));
                    }
                    Some(h) if h < grace_ms => {
                        b.check::<()>(Err(StreamsError::GracePeriodExceedsHistoryRetention {
                            join: name.clone(),
                            grace_ms,
                            history_retention_ms: h,
                        }));
                    }
                    Some(_) => {
                        // The buffer keeps records through the stream's serdes, which must be known.
                        let k = b.check(pick_serde(
                            &joined.key_serde,
                            &key_serde,
                            op,
                            "key",
                            JOINED_HINT,
                        ));
                        let v = b.check(pick_serde(
                            &joined.value_serde,
                            &value_serde,
                            op,
                            "value",
                            JOINED_HINT,
                        ));
                        if let (Some(k), Some(v)) = (k, v) {
                            grace = Some(Grace {
                                buffer_store: Arc::from(format!("{name}-Buffer").as_str()),
                                grace_ms,
                                key_serde: k,
                                value_serde: v,
                            });
                        }
                    }
                }
            }
            let store_name: Arc<str> = Arc::from(store.as_str());
            let joiner = Arc::new(joiner);
            let (join_key_serde, value_serde) = (key_serde.clone(), value_serde);
            let (versioned, join_grace) = (history.is_some(), grace.clone());
            b.add_processor::<K, V, _, _>(
                &name,
                move || StreamTableJoin::<K, V, VT, VR, F> {
                    store_name: store_name.clone(),
                    joiner: joiner.clone(),
                    left_join,
                    key_serde: join_key_serde.clone(),
                    value_serde: value_serde.clone(),
                    versioned,
                    grace: join_grace.clone(),
                    table: None,
                    buffer: None,
                    _p: PhantomData,
                },
                &[&input],
            );
            if let Some(g) = &grace {
                // Kafka keeps the buffer in a changelogged RocksDB store; so does this join.
                let buffer = KeyValueStoreBuilder::new(
                    g.buffer_store.to_string(),
                    StoreKind::RocksDb,
                    Serdes::bytes(),
                    Serdes::bytes(),
                )
                .with_caching_disabled();
                let r = b.topology.add_state_store(buffer, &[&name]).map(|_| ());
                b.check(r);
            }
            let r = b
                .topology
                .connect_processor_and_state_stores(&name, &[&store])
                .and_then(|t| t.add_copartition_group(&[&input, &table_node]))
                .map(|_| ());
            b.check(r);
        }
        drop(b);
        KStream::new(self.b.clone(), name, key_serde, None, false)
    }

    /// Joins each record with the row of its key in `table`, as the table is when the record is processed:
    /// `joiner(value, row)`. Records whose key the table lacks are dropped; table updates alone produce nothing.
    ///
    /// The stream and the table must be co-partitioned. A stream whose key was changed upstream (`map`,
    /// `select_key`...) is repartitioned first through `<name>-repartition` (name from [`Joined`], or generated),
    /// which gets as many partitions as the table's topic.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// let customers = builder.table::<String, String>("customers", Consumed::new(), Materialized::new());
    /// builder
    ///     .stream::<String, i64>("orders", Consumed::new()) // customer id -> amount
    ///     .join(&customers, |amount, name| format!("{name}: {amount}"), Joined::new())
    ///     .to("orders-with-names", Produced::new());
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let c = driver.input_topic("customers", Serdes::string(), Serdes::string());
    /// let o = driver.input_topic("orders", Serdes::string(), Serdes::i64());
    /// let out = driver.output_topic("orders-with-names", Serdes::string(), Serdes::string());
    /// o.pipe_input("c1".into(), 10).unwrap(); // no customer c1 yet: dropped
    /// c.pipe_input("c1".into(), "Ann".into()).unwrap();
    /// o.pipe_input("c1".into(), 25).unwrap();
    /// assert_eq!(out.read_key_values_to_vec().unwrap().into_iter().map(|(_, v)| v).collect::<Vec<_>>(), vec!["Ann: 25".to_string()]);
    /// ```
    pub fn join<VT: Data, VR: Data, F>(
        &self,
        table: &KTable<K, VT>,
        joiner: F,
        joined: Joined<K, V, VT>,
    ) -> KStream<K, VR>
    where
        F: Fn(&V, &VT) -> VR + Send + Sync + 'static,
    {
        self.join_table(
            table,
            move |v: &V, t: Option<&VT>| t.map(|t| joiner(v, t)),
            joined,
            false,
            "KStream::join",
        )
    }

    /// Like [`KStream::join`], but every record produces output: `joiner(value, row or None)`.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// let customers = builder.table::<String, String>("customers", Consumed::new(), Materialized::new());
    /// builder
    ///     .stream::<String, i64>("orders", Consumed::new())
    ///     .left_join(
    ///         &customers,
    ///         |amount, name| format!("{}: {amount}", name.map_or("unknown", |n| n.as_str())),
    ///         Joined::as_name("orders-customers"),
    ///     )
    ///     .to("orders-with-names", Produced::new());
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let c = driver.input_topic("customers", Serdes::string(), Serdes::string());
    /// let o = driver.input_topic("orders", Serdes::string(), Serdes::i64());
    /// let out = driver.output_topic("orders-with-names", Serdes::string(), Serdes::string());
    /// o.pipe_input("c1".into(), 10).unwrap();
    /// c.pipe_input("c1".into(), "Ann".into()).unwrap();
    /// o.pipe_input("c1".into(), 25).unwrap();
    /// assert_eq!(
    ///     out.read_key_values_to_vec().unwrap().into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    ///     vec!["unknown: 10".to_string(), "Ann: 25".to_string()]
    /// );
    /// ```
    pub fn left_join<VT: Data, VR: Data, F>(
        &self,
        table: &KTable<K, VT>,
        joiner: F,
        joined: Joined<K, V, VT>,
    ) -> KStream<K, VR>
    where
        F: Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    {
        self.join_table(
            table,
            move |v: &V, t: Option<&VT>| Some(joiner(v, t)),
            joined,
            true,
            "KStream::left_join",
        )
    }
}
