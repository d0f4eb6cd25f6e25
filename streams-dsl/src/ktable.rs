//! `KTable`: a changelog stream seen as a table of the latest value per key.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use state_store::serde::OptionSerde;
use streams_core::{Data, SharedSerde};

use crate::builder::{OldValueFlags, Shared};
use crate::change::Change;
use crate::grouped::KGroupedTable;
use crate::kstream::KStream;
use crate::named::{processor_name, Named};
use crate::ops::table_filter::TableFilter;
use crate::ops::table_group_by::TableGroupBy;
use crate::ops::table_map_values::TableMapValues;
use crate::ops::table_to_stream::TableToStream;
use crate::ops::table_transform_values::TableTransformValues;
use crate::params::{pick_serde, Grouped, Materialized};
use crate::transformer::ValueTransformerWithKey;

/// A table: for each key, its latest value (Kafka Streams' `KTable`). Each update flows downstream as a change;
/// a `None` row is a deletion.
pub struct KTable<K, V> {
    pub(crate) b: Shared,
    pub(crate) node: String,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) store: Option<String>,
    pub(crate) old_flags: OldValueFlags,
    /// The name the next operator applied to this handle gives its processor ([`KTable::named`]).
    pub(crate) pending_name: Option<Named>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable {
            b: self.b.clone(),
            node: self.node.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            store: self.store.clone(),
            old_flags: self.old_flags.clone(),
            pending_name: self.pending_name.clone(),
        }
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    pub(crate) fn new(
        b: Shared,
        node: String,
        key_serde: Option<SharedSerde<K>>,
        value_serde: Option<SharedSerde<V>>,
        store: Option<String>,
        old_flags: OldValueFlags,
    ) -> Self {
        KTable {
            b,
            node,
            key_serde,
            value_serde,
            store,
            old_flags,
            pending_name: None,
        }
    }

    /// This table, with the processor of the next operator applied to it named `named` instead of a generated
    /// `PREFIX-<n>` (Kafka Streams' `Named` argument, e.g. `KTable#filter(predicate, Named)`): `filter`,
    /// `map_values`, `transform_values`, `to_stream`, `group_by`, `suppress` (when its [`Suppressed`](crate::Suppressed) carries no name)
    /// and the table-table joins (named `<name>-join-this`, `<name>-join-other` and `<name>`, as Kafka names
    /// them). The name holds for this handle only.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.table::<String, i64>("balances", Consumed::new(), Materialized::new())
    ///     .named(Named::as_name("positive-balances"))
    ///     .filter(|_, balance| *balance > 0)
    ///     .named(Named::as_name("positive-balance-changes"))
    ///     .to_stream()
    ///     .to("positive", Produced::new());
    /// let description = builder.build().unwrap().describe().to_string();
    /// assert!(description.contains("Processor: positive-balances"), "{description}");
    /// assert!(description.contains("Processor: positive-balance-changes"), "{description}");
    /// ```
    pub fn named(&self, named: Named) -> KTable<K, V> {
        let mut t = self.clone();
        t.pending_name = Some(named);
        t
    }

    /// The processor name of the next operator: the pending [`KTable::named`] name or a generated one.
    pub(crate) fn processor_name(
        &self,
        b: &mut crate::builder::BuilderInner,
        prefix: &str,
    ) -> String {
        processor_name(b, self.pending_name.as_ref(), prefix)
    }

    /// The name of the store to query this table by: set when the table was materialized with a named
    /// [`Materialized::as_store`]. Tables kept in generated, internal stores are not queryable.
    pub fn queryable_store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// The name of the node this table's changes come out of.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// Asks this table's operators to forward old values with new ones.
    pub(crate) fn enable_send_old_values(&self) {
        for f in &self.old_flags {
            f.store(true, Ordering::Relaxed);
        }
    }

    fn filter_impl<F>(
        &self,
        predicate: F,
        negate: bool,
        materialized: Option<Materialized<K, V>>,
    ) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let mut b = self.b.borrow_mut();
        let name = self.processor_name(&mut b, "KTABLE-FILTER-");
        let flag = Arc::new(AtomicBool::new(false));
        let store = materialized.as_ref().map(|m| {
            m.name
                .clone()
                .unwrap_or_else(|| b.name("KTABLE-FILTER-STATE-STORE-"))
        });
        let predicate = Arc::new(predicate);
        let (f2, store_name) = (flag.clone(), store.as_deref().map(Arc::<str>::from));
        b.add_processor::<K, Change<V>, _, _>(
            &name,
            move || TableFilter::<K, V, F> {
                predicate: predicate.clone(),
                negate,
                send_old: f2.load(Ordering::Relaxed),
                store_name: store_name.clone(),
                store: None,
            },
            &[&self.node],
        );
        let (mut k, mut v) = (self.key_serde.clone(), self.value_serde.clone());
        if let (Some(m), Some(s)) = (&materialized, &store) {
            let hint = "Materialized::with(key_serde, value_serde)";
            k = b.check(pick_serde(
                &m.key_serde,
                &self.key_serde,
                "KTable::filter",
                "key",
                hint,
            ));
            v = b.check(pick_serde(
                &m.value_serde,
                &self.value_serde,
                "KTable::filter",
                "value",
                hint,
            ));
            if let (Some(k), Some(v)) = (k.clone(), v.clone()) {
                b.add_store(s, m, k, v, &name);
            }
        }
        drop(b);
        let mut flags = vec![flag];
        flags.extend(self.old_flags.iter().cloned());
        let queryable = store.filter(|_| materialized.as_ref().is_some_and(|m| m.name.is_some()));
        KTable::new(self.b.clone(), name, k, v, queryable, flags)
    }

    /// Keeps the rows satisfying `predicate`; a row that stops satisfying it is deleted downstream.
    pub fn filter<F>(&self, predicate: F) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_impl(predicate, false, None)
    }

    /// Keeps the rows satisfying `predicate`, materialized in a queryable store.
    pub fn filter_materialized<F>(
        &self,
        predicate: F,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_impl(predicate, false, Some(materialized))
    }

    /// Drops the rows satisfying `predicate`.
    pub fn filter_not<F>(&self, predicate: F) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_impl(predicate, true, None)
    }

    fn map_values_impl<V2: Data, F>(
        &self,
        f: F,
        materialized: Option<Materialized<K, V2>>,
    ) -> KTable<K, V2>
    where
        F: Fn(&K, &V) -> V2 + Send + Sync + 'static,
    {
        let mut b = self.b.borrow_mut();
        let name = self.processor_name(&mut b, "KTABLE-MAPVALUES-");
        let flag = Arc::new(AtomicBool::new(false));
        let store = materialized.as_ref().map(|m| {
            m.name
                .clone()
                .unwrap_or_else(|| b.name("KTABLE-MAPVALUES-STATE-STORE-"))
        });
        let f = Arc::new(f);
        let (f2, store_name) = (flag.clone(), store.as_deref().map(Arc::<str>::from));
        b.add_processor::<K, Change<V>, _, _>(
            &name,
            move || TableMapValues::<K, V2, F> {
                f: f.clone(),
                send_old: f2.load(Ordering::Relaxed),
                store_name: store_name.clone(),
                store: None,
                _p: PhantomData,
            },
            &[&self.node],
        );
        let (mut k, mut v) = (self.key_serde.clone(), None);
        if let (Some(m), Some(s)) = (&materialized, &store) {
            let hint = "Materialized::with(key_serde, value_serde)";
            k = b.check(pick_serde(
                &m.key_serde,
                &self.key_serde,
                "KTable::map_values",
                "key",
                hint,
            ));
            v = b.check(pick_serde(
                &m.value_serde,
                &None,
                "KTable::map_values",
                "value",
                hint,
            ));
            if let (Some(k), Some(v)) = (k.clone(), v.clone()) {
                b.add_store(s, m, k, v, &name);
            }
        }
        drop(b);
        let mut flags = vec![flag];
        flags.extend(self.old_flags.iter().cloned());
        let queryable = store.filter(|_| materialized.as_ref().is_some_and(|m| m.name.is_some()));
        KTable::new(self.b.clone(), name, k, v, queryable, flags)
    }

    /// A new value for each row.
    pub fn map_values<V2: Data, F>(&self, f: F) -> KTable<K, V2>
    where
        F: Fn(&V) -> V2 + Send + Sync + 'static,
    {
        self.map_values_impl(move |_, v| f(v), None)
    }

    /// A new value for each row, from key and value.
    pub fn map_values_with_key<V2: Data, F>(&self, f: F) -> KTable<K, V2>
    where
        F: Fn(&K, &V) -> V2 + Send + Sync + 'static,
    {
        self.map_values_impl(f, None)
    }

    /// A new value for each row, materialized in a queryable store.
    pub fn map_values_materialized<V2: Data, F>(
        &self,
        f: F,
        materialized: Materialized<K, V2>,
    ) -> KTable<K, V2>
    where
        F: Fn(&V) -> V2 + Send + Sync + 'static,
    {
        self.map_values_impl(move |_, v| f(v), Some(materialized))
    }

    /// The table's changes as a stream: each update's new value, `None` for deletions (written as tombstones).
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let mut b = self.b.borrow_mut();
        let name = self.processor_name(&mut b, "KTABLE-TOSTREAM-");
        b.add_processor::<K, Change<V>, _, _>(&name, || TableToStream, &[&self.node]);
        drop(b);
        let v = self
            .value_serde
            .clone()
            .or_else(streams_core::default_serde::<V>)
            .map(|v| Arc::new(OptionSerde::from_shared(v)) as SharedSerde<Option<V>>);
        KStream::new(self.b.clone(), name, self.key_serde.clone(), v, false)
    }

    /// Re-keys the rows for aggregation: each row maps to a (group key, value); when a row changes, its old
    /// value is subtracted from its old group and its new value added to its new group.
    ///
    /// ```
    /// # use streams_dsl::*;
    /// # use std::collections::BTreeSet;
    /// let builder = StreamsBuilder::new();
    /// // owner of each car -> number of cars per owner
    /// builder.table::<String, String>("car-owners", Consumed::new(), Materialized::new())
    ///     .group_by(|_car, owner| (owner.clone(), 1i64), Grouped::new())
    ///     .count(Materialized::as_store("cars-per-owner"));
    /// # builder.build().unwrap();
    /// ```
    pub fn group_by<K2: Data, V2: Data, F>(
        &self,
        f: F,
        grouped: Grouped<K2, V2>,
    ) -> KGroupedTable<K2, V2>
    where
        F: Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
    {
        self.enable_send_old_values();
        let mut b = self.b.borrow_mut();
        let name = self.processor_name(&mut b, "KTABLE-SELECT-");
        let f = Arc::new(f);
        let key_serde = grouped
            .key_serde
            .clone()
            .or_else(streams_core::default_serde::<K2>);
        b.add_processor::<K, Change<V>, _, _>(
            &name,
            move || TableGroupBy {
                f: f.clone(),
                key_serde: key_serde.clone(),
                bufs: (Vec::new(), Vec::new()),
                _p: PhantomData,
            },
            &[&self.node],
        );
        drop(b);
        KGroupedTable::new(self.b.clone(), name, grouped)
    }
}

/// `transform_values`: a value transformer of your own, possibly with state.
impl<K: Data, V: Data> KTable<K, V> {
    /// Transforms each row's value with a [`ValueTransformerWithKey`] made by `supplier` (one per task), which
    /// may read and write `stores` (added with
    /// [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store)): Kafka Streams'
    /// `KTable#transformValues`. The transformer sees deletions as `None` and may return `None` to delete the
    /// row downstream. When a downstream operator needs old values, they are computed by transforming the old
    /// value again; a stateful transformer should use [`KTable::transform_values_materialized`] instead, whose
    /// old values come from its store.
    ///
    /// ```
    /// use streams_dsl::*;
    ///
    /// /// "<value> (update n)": counts each key's updates in the store "updates".
    /// struct Versioned;
    ///
    /// impl ValueTransformerWithKey<String, String> for Versioned {
    ///     type VOut = String;
    ///     fn transform(
    ///         &mut self,
    ///         key: &String,
    ///         value: Option<&String>,
    ///         ctx: &ValueTransformerContext<'_, String, String>,
    ///     ) -> Result<Option<String>, StreamsError> {
    ///         let mut updates = ctx.key_value_store::<String, i64>("updates")?;
    ///         let n = updates.get(key)?.unwrap_or(0) + 1;
    ///         updates.put(key, &n)?;
    ///         Ok(value.map(|v| format!("{v} (update {n})")))
    ///     }
    /// }
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.add_state_store(KeyValueStoreBuilder::new("updates", StoreKind::InMemory, Serdes::string(), Serdes::i64()));
    /// builder.table::<String, String>("profiles", Consumed::new(), Materialized::new())
    ///     .transform_values(|| Versioned, &["updates"])
    ///     .to_stream()
    ///     .to("versioned-profiles", Produced::new());
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let input = driver.input_topic("profiles", Serdes::string(), Serdes::string());
    /// input.pipe_input("ann".into(), "v1".into()).unwrap();
    /// input.pipe_input("ann".into(), "v2".into()).unwrap();
    /// let out = driver.output_topic("versioned-profiles", Serdes::string(), OptionSerde::new(Serdes::string()));
    /// let values: Vec<_> = out.read_key_values_to_vec().unwrap().into_iter().map(|(_, v)| v).collect();
    /// assert_eq!(values, vec![Some("v1 (update 1)".to_string()), Some("v2 (update 2)".to_string())]);
    /// ```
    pub fn transform_values<T, F>(&self, supplier: F, stores: &[&str]) -> KTable<K, T::VOut>
    where
        T: ValueTransformerWithKey<K, V>,
        F: Fn() -> T + Send + Sync + 'static,
    {
        self.transform_values_impl(self.pending_name.as_ref(), supplier, None, stores)
    }

    /// [`KTable::transform_values`] (with `materialized`, when given) with the processor named by `named`
    /// (Kafka Streams' `KTable#transformValues(supplier, Materialized, Named, stores)`).
    pub fn transform_values_named<T, F>(
        &self,
        supplier: F,
        materialized: Option<Materialized<K, T::VOut>>,
        named: Named,
        stores: &[&str],
    ) -> KTable<K, T::VOut>
    where
        T: ValueTransformerWithKey<K, V>,
        F: Fn() -> T + Send + Sync + 'static,
    {
        self.transform_values_impl(Some(&named), supplier, materialized, stores)
    }

    /// Transforms each row's value as [`KTable::transform_values`] does, and keeps the result in the store
    /// `materialized` describes (queryable when named). Old values then come from that store, so they are right
    /// even for a stateful transformer.
    ///
    /// ```
    /// use streams_dsl::*;
    ///
    /// /// The value's length; deletions stay deletions.
    /// struct Length;
    ///
    /// impl ValueTransformerWithKey<String, String> for Length {
    ///     type VOut = i64;
    ///     fn transform(
    ///         &mut self,
    ///         _key: &String,
    ///         value: Option<&String>,
    ///         _ctx: &ValueTransformerContext<'_, String, i64>,
    ///     ) -> Result<Option<i64>, StreamsError> {
    ///         Ok(value.map(|v| v.len() as i64))
    ///     }
    /// }
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.table::<String, String>("names", Consumed::new(), Materialized::new())
    ///     .transform_values_materialized(|| Length, Materialized::as_store("name-lengths"), &[]);
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let input = driver.input_topic("names", Serdes::string(), Serdes::string());
    /// input.pipe_input("u1".into(), "Ann".into()).unwrap();
    /// let lengths = driver.key_value_store::<String, i64>("name-lengths").unwrap();
    /// assert_eq!(lengths.get(&"u1".to_string()).unwrap(), Some(3));
    /// ```
    pub fn transform_values_materialized<T, F>(
        &self,
        supplier: F,
        materialized: Materialized<K, T::VOut>,
        stores: &[&str],
    ) -> KTable<K, T::VOut>
    where
        T: ValueTransformerWithKey<K, V>,
        F: Fn() -> T + Send + Sync + 'static,
    {
        self.transform_values_impl(
            self.pending_name.as_ref(),
            supplier,
            Some(materialized),
            stores,
        )
    }

    fn transform_values_impl<T, F>(
        &self,
        named: Option<&Named>,
        supplier: F,
        materialized: Option<Materialized<K, T::VOut>>,
        stores: &[&str],
    ) -> KTable<K, T::VOut>
    where
        T: ValueTransformerWithKey<K, V>,
        F: Fn() -> T + Send + Sync + 'static,
    {
        const OP: &str = "KTable::transform_values";
        const HINT: &str = "Materialized::with(key_serde, value_serde)";
        let mut b = self.b.borrow_mut();
        let name = processor_name(&mut b, named, "KTABLE-TRANSFORMVALUES-");
        let flag = Arc::new(AtomicBool::new(false));
        let store = materialized.as_ref().map(|m| {
            m.name
                .clone()
                .unwrap_or_else(|| b.name("KTABLE-TRANSFORMVALUES-STATE-STORE-"))
        });
        let (f2, store_name) = (flag.clone(), store.as_deref().map(Arc::<str>::from));
        b.add_processor::<K, Change<V>, _, _>(
            &name,
            move || TableTransformValues::<K, V, T> {
                transformer: supplier(),
                send_old: f2.load(Ordering::Relaxed),
                store_name: store_name.clone(),
                store: None,
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
        let (mut k, mut v) = (self.key_serde.clone(), None);
        if let (Some(m), Some(s)) = (&materialized, &store) {
            k = b.check(pick_serde(&m.key_serde, &self.key_serde, OP, "key", HINT));
            v = b.check(pick_serde(&m.value_serde, &None, OP, "value", HINT));
            if let (Some(k), Some(v)) = (k.clone(), v.clone()) {
                b.add_store(s, m, k, v, &name);
            }
        }
        drop(b);
        // A materialized result has its own store and old values; otherwise old values come from upstream.
        let mut flags = vec![flag];
        if materialized.is_none() {
            flags.extend(self.old_flags.iter().cloned());
        }
        let queryable = store.filter(|_| materialized.as_ref().is_some_and(|m| m.name.is_some()));
        KTable::new(self.b.clone(), name, k, v, queryable, flags)
    }
}
