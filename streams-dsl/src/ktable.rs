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
use crate::ops::table_filter::TableFilter;
use crate::ops::table_group_by::TableGroupBy;
use crate::ops::table_map_values::TableMapValues;
use crate::ops::table_to_stream::TableToStream;
use crate::params::{pick_serde, Grouped, Materialized};

/// A table: for each key, its latest value (Kafka Streams' `KTable`). Each update flows downstream as a change;
/// a `None` row is a deletion.
pub struct KTable<K, V> {
    pub(crate) b: Shared,
    pub(crate) node: String,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) store: Option<String>,
    pub(crate) old_flags: OldValueFlags,
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
        }
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
        let name = b.name("KTABLE-FILTER-");
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
        let name = b.name("KTABLE-MAPVALUES-");
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
        let name = b.name("KTABLE-TOSTREAM-");
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
        let name = b.name("KTABLE-SELECT-");
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
