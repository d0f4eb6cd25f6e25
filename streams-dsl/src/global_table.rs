//! `GlobalKTable`: a table replicated in full on every instance, and the stream joins that read it.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Data, KeyValueStoreBuilder, SharedSerde, StoreKind, StreamsError};

use crate::builder::{Shared, StreamsBuilder};
use crate::kstream::KStream;
use crate::ops::global_join::{GlobalJoin, GlobalJoiner};
use crate::params::{pick_serde, Consumed, Materialized};

/// A table holding every key of its topic on every instance (Kafka Streams' `GlobalKTable`).
///
/// Where a [`KTable`](crate::KTable) is split by partition across the instances of an application, a global
/// table is read from every partition of its topic by each instance, into a store of its own. It is kept up to
/// date by a global thread, outside the tasks, and is restored to the end of its topic when the instance starts,
/// before any stream record is processed. Its topic is its changelog: nothing else is written.
///
/// A global table is used through stream joins ([`KStream::join_global`], [`KStream::left_join_global`]), which
/// need no co-partitioning: the stream is looked up in the table as it is, whatever its partitioning, with a key
/// computed from each record. Its store can be queried on any instance (every key is local).
///
/// ```
/// use streams_dsl::*;
///
/// let builder = StreamsBuilder::new();
/// let products: GlobalKTable<String, String> = builder.global_table(
///     "products",
///     Consumed::with(Serdes::string(), Serdes::string()),
///     Materialized::as_store("products-store").in_memory(),
/// );
/// assert_eq!(products.queryable_store_name(), "products-store");
/// // Views (user -> product id), not partitioned like the products topic.
/// builder
///     .stream::<String, String>("views", Consumed::with(Serdes::string(), Serdes::string()))
///     .join_global(&products, |_user, product_id| product_id.clone(), |_, name| name.clone())
///     .to("viewed-products", Produced::with(Serdes::string(), Serdes::string()));
/// let topology = builder.build().unwrap();
///
/// let driver = TopologyTestDriver::builder(topology).default_partitions(4).build().unwrap();
/// let input = driver.input_topic("products", Serdes::string(), Serdes::string());
/// input.pipe_input("p1".into(), "kettle".into()).unwrap();
/// input.pipe_input("p2".into(), "toaster".into()).unwrap();
/// let store = driver.key_value_store::<String, String>("products-store").unwrap();
/// assert_eq!(store.get(&"p2".to_string()).unwrap(), Some("toaster".to_string()));
///
/// driver.input_topic("views", Serdes::string(), Serdes::string()).pipe_input("ann".into(), "p1".into()).unwrap();
/// let out = driver.output_topic("viewed-products", Serdes::string(), Serdes::string());
/// assert_eq!(out.read_key_value().unwrap(), Some(("ann".to_string(), "kettle".to_string())));
/// ```
pub struct GlobalKTable<K, V> {
    pub(crate) b: Shared,
    pub(crate) store: String,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
}

impl<K, V> Clone for GlobalKTable<K, V> {
    fn clone(&self) -> Self {
        GlobalKTable {
            b: self.b.clone(),
            store: self.store.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

impl<K: Data, V: Data> GlobalKTable<K, V> {
    /// The name of the table's store: query it with `KafkaStreams::store` or the test driver's
    /// `key_value_store`. Generated (`<topic>-STATE-STORE-<n>`) unless named with `Materialized::as_store`.
    pub fn queryable_store_name(&self) -> &str {
        &self.store
    }
}

impl StreamsBuilder {
    /// A global table of the latest value per key of `topic`, read from every partition on every instance (see
    /// [`GlobalKTable`]). A `null` value deletes the key; records with a null key are skipped.
    ///
    /// The store holds the topic's bytes as they are (the topic is its changelog), so its serdes are the ones
    /// the topic is read with: those of `materialized` when given, else those of `consumed`, else the types'
    /// defaults. `materialized` also chooses the store kind (RocksDB by default; a persistent store resumes from
    /// its checkpoint after a restart instead of re-reading the topic); its logging and caching settings do not
    /// apply, and custom timestamp extractors are refused.
    pub fn global_table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> GlobalKTable<K, V> {
        let mut b = self.inner.borrow_mut();
        if consumed.extractor.is_some() {
            b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                "global_table('{topic}'): custom timestamp extractors are supported on streams only"
            ))));
        }
        if materialized.versioned.is_some() {
            b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                "global_table('{topic}'): a global table cannot be versioned"
            ))));
        }
        let source = consumed
            .name
            .clone()
            .unwrap_or_else(|| b.name("KSTREAM-SOURCE-"));
        let op = format!("global_table({topic})");
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
        let store = materialized
            .name
            .clone()
            .unwrap_or_else(|| b.name(&format!("{topic}-STATE-STORE-")));
        if let (Some(k), Some(v)) = (k.clone(), v.clone()) {
            let supplier = materialized
                .supplier
                .clone()
                .unwrap_or_else(|| Arc::new(StoreKind::default()));
            let builder = KeyValueStoreBuilder::from_parts(store.clone(), supplier, k, v);
            let r = b
                .topology
                .add_global_store(builder, &source, topic)
                .map(|_| ());
            b.check(r);
        }
        drop(b);
        GlobalKTable {
            b: self.inner.clone(),
            store,
            key_serde: k,
            value_serde: v,
        }
    }
}

type NoLeft<V, GV, VR> = fn(&V, Option<&GV>) -> VR;
type NoInner<V, GV, VR> = fn(&V, &GV) -> VR;

impl<K: Data, V: Data> KStream<K, V> {
    fn global_join<GK, GV, VR, KS, J, L>(
        &self,
        global: &GlobalKTable<GK, GV>,
        key_selector: KS,
        joiner: GlobalJoiner<J, L>,
        prefix: &str,
    ) -> KStream<K, VR>
    where
        GK: Data,
        GV: Data,
        VR: Data,
        KS: Fn(&K, &V) -> GK + Send + Sync + 'static,
        J: Fn(&V, &GV) -> VR + Send + Sync + 'static,
        L: Fn(&V, Option<&GV>) -> VR + Send + Sync + 'static,
    {
        let mut b = self.b.borrow_mut();
        if !std::rc::Rc::ptr_eq(&self.b, &global.b) {
            b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                "{prefix}: the stream and global table '{}' come from different StreamsBuilders",
                global.store
            ))));
        }
        let name = self.processor_name(&mut b, prefix);
        let store_name: Arc<str> = Arc::from(global.store.as_str());
        let key_selector = Arc::new(key_selector);
        let (key_serde, value_serde, lookup_serde) = (
            self.key_serde.clone(),
            self.value_serde.clone(),
            global.key_serde.clone(),
        );
        b.add_processor::<K, V, _, _>(
            &name,
            move || GlobalJoin::<K, V, GK, GV, VR, KS, J, L> {
                store_name: store_name.clone(),
                store: None,
                key_selector: key_selector.clone(),
                joiner: joiner.clone(),
                key_serde: key_serde.clone(),
                value_serde: value_serde.clone(),
                lookup_serde: lookup_serde.clone(),
                _out: PhantomData,
            },
            &[&self.node],
        );
        drop(b);
        KStream::new(
            self.b.clone(),
            name,
            self.key_serde.clone(),
            None,
            self.repartition_required,
        )
    }

    /// Joins each record with the row of `global` under `key_selector(key, value)`, and forwards
    /// `joiner(value, row)` under the record's key; records without a row are dropped (an inner join). Kafka
    /// Streams' `KStream#join(GlobalKTable, ...)`.
    ///
    /// The stream is not repartitioned and needs no co-partitioning with the table's topic: every instance holds
    /// the whole table. The lookup sees the table as the global thread has brought it so far; at start, the whole
    /// topic as it was when the instance started.
    ///
    /// ```
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// let customers = builder.global_table::<String, String>(
    ///     "customers",
    ///     Consumed::with(Serdes::string(), Serdes::string()),
    ///     Materialized::as_store("customers").in_memory(),
    /// );
    /// // Orders keyed by order id, valued by customer id.
    /// builder
    ///     .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .join_global(&customers, |_order, customer| customer.clone(), |customer, name| format!("{customer}: {name}"))
    ///     .to("orders-with-names", Produced::with(Serdes::string(), Serdes::string()));
    ///
    /// let driver = TopologyTestDriver::builder(builder.build().unwrap()).default_partitions(3).build().unwrap();
    /// let customers = driver.input_topic("customers", Serdes::string(), Serdes::string());
    /// let orders = driver.input_topic("orders", Serdes::string(), Serdes::string());
    /// let out = driver.output_topic("orders-with-names", Serdes::string(), Serdes::string());
    /// customers.pipe_input("c1".into(), "Ada".into()).unwrap();
    /// orders.pipe_input("o1".into(), "c1".into()).unwrap();
    /// orders.pipe_input("o2".into(), "c9".into()).unwrap(); // no such customer: dropped
    /// assert_eq!(out.read_key_values_to_vec().unwrap(), vec![("o1".to_string(), "c1: Ada".to_string())]);
    /// ```
    pub fn join_global<GK, GV, VR, KS, J>(
        &self,
        global: &GlobalKTable<GK, GV>,
        key_selector: KS,
        joiner: J,
    ) -> KStream<K, VR>
    where
        GK: Data,
        GV: Data,
        VR: Data,
        KS: Fn(&K, &V) -> GK + Send + Sync + 'static,
        J: Fn(&V, &GV) -> VR + Send + Sync + 'static,
    {
        self.global_join::<GK, GV, VR, KS, J, NoLeft<V, GV, VR>>(
            global,
            key_selector,
            GlobalJoiner::Inner(Arc::new(joiner)),
            "KSTREAM-JOIN-GLOBAL-",
        )
    }

    /// Like [`KStream::join_global`], but every record is forwarded: `joiner(value, None)` when the table has no
    /// row for it (a left join; Kafka Streams' `KStream#leftJoin(GlobalKTable, ...)`).
    ///
    /// ```
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// let rates = builder.global_table::<String, i64>(
    ///     "discounts",
    ///     Consumed::with(Serdes::string(), Serdes::i64()),
    ///     Materialized::as_store("customers").in_memory(),
    /// );
    /// builder
    ///     .stream::<String, i64>("prices", Consumed::with(Serdes::string(), Serdes::i64()))
    ///     .left_join_global(&rates, |item, _| item.clone(), |price, discount| price - discount.copied().unwrap_or(0))
    ///     .to("final-prices", Produced::with(Serdes::string(), Serdes::i64()));
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// driver.input_topic("discounts", Serdes::string(), Serdes::i64()).pipe_input("tea".into(), 2).unwrap();
    /// let prices = driver.input_topic("prices", Serdes::string(), Serdes::i64());
    /// prices.pipe_input("tea".into(), 10).unwrap();
    /// prices.pipe_input("milk".into(), 5).unwrap();
    /// let out = driver.output_topic("final-prices", Serdes::string(), Serdes::i64());
    /// assert_eq!(out.read_key_values_to_vec().unwrap(), vec![("tea".to_string(), 8), ("milk".to_string(), 5)]);
    /// ```
    pub fn left_join_global<GK, GV, VR, KS, J>(
        &self,
        global: &GlobalKTable<GK, GV>,
        key_selector: KS,
        joiner: J,
    ) -> KStream<K, VR>
    where
        GK: Data,
        GV: Data,
        VR: Data,
        KS: Fn(&K, &V) -> GK + Send + Sync + 'static,
        J: Fn(&V, Option<&GV>) -> VR + Send + Sync + 'static,
    {
        self.global_join::<GK, GV, VR, KS, NoInner<V, GV, VR>, J>(
            global,
            key_selector,
            GlobalJoiner::Left(Arc::new(joiner)),
            "KSTREAM-LEFTJOIN-GLOBAL-",
        )
    }
}
