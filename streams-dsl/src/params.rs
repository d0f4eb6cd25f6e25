//! Parameter objects naming topics and stores and choosing serdes, as Kafka Streams' `Consumed`, `Produced`,
//! `Grouped`, `Materialized` and `Repartitioned`.

use std::sync::Arc;

use streams_core::{
    default_serde, KeyValueStoreSupplier, Serde, SharedSerde, StoreKind, StreamPartitioner,
    StreamsError, TimestampExtractor,
};

/// Picks a serde: the explicit one, else the one known from upstream, else the default for the type.
pub(crate) fn pick_serde<T: 'static>(
    explicit: &Option<SharedSerde<T>>,
    known: &Option<SharedSerde<T>>,
    operation: &str,
    role: &'static str,
    hint: &'static str,
) -> Result<SharedSerde<T>, StreamsError> {
    explicit
        .clone()
        .or_else(|| known.clone())
        .or_else(default_serde::<T>)
        .ok_or_else(|| StreamsError::MissingSerde {
            operation: operation.to_string(),
            role,
            type_name: std::any::type_name::<T>(),
            hint,
        })
}

/// How a topic is read: serdes, timestamp extractor, source name.
///
/// ```
/// use streams_dsl::{Consumed, Serdes};
/// let consumed = Consumed::with(Serdes::string(), Serdes::i64()).with_name("orders-source");
/// # let _ = consumed;
/// ```
pub struct Consumed<K, V> {
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Consumed<K, V> {
    fn default() -> Self {
        Consumed {
            key_serde: None,
            value_serde: None,
            extractor: None,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static> Consumed<K, V> {
    /// Default serdes for the types (strings, bytes, numbers, unit); other types need [`Consumed::with`].
    pub fn new() -> Self {
        Self::default()
    }
    /// Reads with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Consumed {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            ..Self::default()
        }
    }
    /// Takes event time from `extractor`.
    pub fn with_timestamp_extractor(mut self, extractor: impl TimestampExtractor<K, V>) -> Self {
        self.extractor = Some(Arc::new(extractor));
        self
    }
    /// Names the source node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a stream is written to a topic: serdes, partitioner, sink name.
pub struct Produced<K, V> {
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Produced<K, V> {
    fn default() -> Self {
        Produced {
            key_serde: None,
            value_serde: None,
            partitioner: None,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static> Produced<K, V> {
    /// Serdes known from upstream or the types' defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Writes with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Produced {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            ..Self::default()
        }
    }
    /// Chooses partitions with `partitioner` instead of murmur2 of the key.
    pub fn with_partitioner(mut self, partitioner: impl StreamPartitioner<K, V>) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }
    /// Names the sink node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a stream is grouped: the serdes of its repartition topic and the name it is based on.
pub struct Grouped<K, V> {
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Grouped {
            key_serde: None,
            value_serde: None,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static> Grouped<K, V> {
    /// Serdes known from upstream or the types' defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Repartitions with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Grouped {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            name: None,
        }
    }
    /// Names the repartition topic `<name>-repartition`.
    pub fn as_name(name: impl Into<String>) -> Self {
        Grouped {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// Sets the key serde.
    pub fn with_key_serde(mut self, serde: impl Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }
    /// Sets the value serde.
    pub fn with_value_serde(mut self, serde: impl Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }
    /// Names the repartition topic.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a table or aggregation result is stored: store name (which makes it queryable), implementation, serdes,
/// changelog and cache.
///
/// ```
/// use streams_dsl::{Materialized, Serdes};
/// let m: Materialized<String, i64> = Materialized::as_store("counts").in_memory().with_caching_disabled();
/// # let _ = m;
/// ```
pub struct Materialized<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) supplier: Option<Arc<dyn KeyValueStoreSupplier>>,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) logging: bool,
    pub(crate) caching: bool,
    pub(crate) retention: Option<std::time::Duration>,
    /// A versioned store keeping this much history.
    pub(crate) versioned: Option<std::time::Duration>,
}

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Materialized {
            name: None,
            supplier: None,
            key_serde: None,
            value_serde: None,
            logging: true,
            caching: true,
            retention: None,
            versioned: None,
        }
    }
}

impl<K, V> Materialized<K, V> {
    /// The same store kept in time segments laid out by `schema` for `retention_ms` (window and session stores),
    /// whatever implementation it was given (RocksDB by default).
    pub(crate) fn segmented(
        &self,
        schema: state_store::SegmentKeySchema,
        retention_ms: i64,
    ) -> Self {
        let inner = self
            .supplier
            .clone()
            .unwrap_or_else(|| Arc::new(StoreKind::default()));
        Materialized {
            name: self.name.clone(),
            supplier: Some(Arc::new(state_store::SegmentedStoreSupplier::new(
                inner,
                schema,
                retention_ms,
            ))),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            logging: self.logging,
            caching: self.caching,
            retention: self.retention,
            versioned: self.versioned,
        }
    }
}

impl<K: 'static, V: 'static> Materialized<K, V> {
    /// An unnamed RocksDB store with serdes known from upstream or the types' defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// A store called `name`, queryable under that name.
    pub fn as_store(name: impl Into<String>) -> Self {
        Materialized {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// A store with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Self::default()
            .with_key_serde(key_serde)
            .with_value_serde(value_serde)
    }
    /// Sets the key serde.
    pub fn with_key_serde(mut self, serde: impl Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }
    /// Sets the value serde.
    pub fn with_value_serde(mut self, serde: impl Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }
    /// A versioned store called `name` keeping `history_retention` of history (Kafka's
    /// `Materialized.as(Stores.persistentVersionedKeyValueStore(name, historyRetention))`): every version of each
    /// row is kept for that long in stream time, so a stream-table join can look rows up as of each record's
    /// time. Supported for source tables ([`StreamsBuilder::table`](crate::StreamsBuilder::table)); RocksDB by
    /// default, [`Materialized::in_memory`] works too. A versioned store has no cache.
    ///
    /// A versioned source table stores out-of-order updates (older than the key's latest) in its history and
    /// forwards them marked as not the latest (`to_stream` emits them; re-grouping and foreign-key joins ignore
    /// them), as Kafka Streams does, and skips updates older than the history retention (counted as dropped
    /// records).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// let prices = builder.table::<String, i64>(
    ///     "prices",
    ///     Consumed::new(),
    ///     Materialized::as_versioned_store("prices", Duration::from_secs(600)),
    /// );
    /// builder
    ///     .stream::<String, i64>("orders", Consumed::new())
    ///     .join(&prices, |qty, price| qty * price, Joined::new())
    ///     .to("order-totals", Produced::new());
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let p = driver.input_topic("prices", Serdes::string(), Serdes::i64());
    /// let o = driver.input_topic("orders", Serdes::string(), Serdes::i64());
    /// p.pipe_input_at("pen".into(), 3, 1_000).unwrap();
    /// p.pipe_input_at("pen".into(), 5, 3_000).unwrap();
    /// o.pipe_input_at("pen".into(), 2, 2_000).unwrap(); // joined with the price valid at 2 000
    /// let out = driver.output_topic("order-totals", Serdes::string(), Serdes::i64());
    /// assert_eq!(out.read_value().unwrap(), Some(6));
    /// let history = driver.versioned_key_value_store::<String, i64>("prices").unwrap();
    /// assert_eq!(history.get_as_of(&"pen".to_string(), 2_500).unwrap().map(|r| r.value), Some(3));
    /// ```
    pub fn as_versioned_store(
        name: impl Into<String>,
        history_retention: std::time::Duration,
    ) -> Self {
        Materialized {
            name: Some(name.into()),
            versioned: Some(history_retention),
            ..Self::default()
        }
    }
    /// Makes the store versioned, keeping `history_retention` of history (see
    /// [`Materialized::as_versioned_store`]).
    pub fn with_history_retention(mut self, history_retention: std::time::Duration) -> Self {
        self.versioned = Some(history_retention);
        self
    }
    /// Keeps the store in memory instead of RocksDB.
    pub fn in_memory(self) -> Self {
        self.with_store_kind(StoreKind::InMemory)
    }
    /// Chooses the store implementation.
    pub fn with_store_kind(mut self, kind: StoreKind) -> Self {
        self.supplier = Some(Arc::new(kind));
        self
    }
    /// Uses a store implementation of your own.
    pub fn with_supplier(mut self, supplier: impl KeyValueStoreSupplier + 'static) -> Self {
        self.supplier = Some(Arc::new(supplier));
        self
    }
    /// No changelog topic (the store is not restored after a failure).
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }
    /// No write-back cache.
    pub fn with_caching_disabled(mut self) -> Self {
        self.caching = false;
        self
    }
    /// How long a window or session store keeps windows, in stream time (windowed aggregations only). The
    /// default is the window size (or inactivity gap) plus the grace period; interactive queries of older
    /// windows need a longer retention. Must be at least that default.
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention = Some(retention);
        self
    }
}

/// An explicit repartitioning: topic name, partition count and serdes.
pub struct Repartitioned<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) partitions: Option<i32>,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
}

impl<K, V> Default for Repartitioned<K, V> {
    fn default() -> Self {
        Repartitioned {
            name: None,
            partitions: None,
            key_serde: None,
            value_serde: None,
        }
    }
}

impl<K: 'static, V: 'static> Repartitioned<K, V> {
    /// Generated name, partitions as the upstream, known or default serdes.
    pub fn new() -> Self {
        Self::default()
    }
    /// Names the topic `<name>-repartition`.
    pub fn as_name(name: impl Into<String>) -> Self {
        Repartitioned {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// Uses these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Repartitioned {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            ..Self::default()
        }
    }
    /// Gives the topic `n` partitions.
    pub fn with_partitions(mut self, n: i32) -> Self {
        self.partitions = Some(n);
        self
    }
}

/// How a stream is joined with a table: the key and value serdes of the stream (used when the stream must be
/// repartitioned by its new key first), the serde of the table's values (used when the table has to be given a
/// store), and a name for the join (its processor and its repartition topic `<name>-repartition`), as Kafka
/// Streams' `Joined`.
///
/// ```
/// use streams_dsl::{Joined, Serdes};
/// let joined: Joined<String, i64, String> =
///     Joined::with(Serdes::string(), Serdes::i64(), Serdes::string()).with_name("orders-with-customers");
/// # let _ = joined;
/// ```
pub struct Joined<K, V, VO> {
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) other_value_serde: Option<SharedSerde<VO>>,
    pub(crate) name: Option<String>,
    pub(crate) grace_period: Option<std::time::Duration>,
}

impl<K, V, VO> Default for Joined<K, V, VO> {
    fn default() -> Self {
        Joined {
            key_serde: None,
            value_serde: None,
            other_value_serde: None,
            name: None,
            grace_period: None,
        }
    }
}

impl<K: 'static, V: 'static, VO: 'static> Joined<K, V, VO> {
    /// Serdes known from upstream or the types' defaults, a generated name.
    pub fn new() -> Self {
        Self::default()
    }
    /// Uses these serdes for the key, the stream's values and the table's values.
    pub fn with(
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        other_value_serde: impl Serde<VO>,
    ) -> Self {
        Joined {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            other_value_serde: Some(Arc::new(other_value_serde)),
            name: None,
            grace_period: None,
        }
    }
    /// Names the join processor `name` and its repartition topic `<name>-repartition`.
    pub fn as_name(name: impl Into<String>) -> Self {
        Joined {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// Sets the key serde.
    pub fn with_key_serde(mut self, serde: impl Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }
    /// Sets the serde of the stream's values.
    pub fn with_value_serde(mut self, serde: impl Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }
    /// Sets the serde of the table's values.
    pub fn with_other_value_serde(mut self, serde: impl Serde<VO>) -> Self {
        self.other_value_serde = Some(Arc::new(serde));
        self
    }
    /// Names the join.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Delays a stream-table join by `grace` (Kafka's `Joined.withGracePeriod`, KIP-914): stream records are
    /// buffered and joined in timestamp order once the join's stream time has passed their timestamp plus
    /// `grace`, each with the table's row as of the record's timestamp; so a table update that arrives a little
    /// after the stream record it should have joined with is still seen. A record already older than stream time
    /// minus `grace` when it arrives is joined at once. The table must be versioned, with a history retention of
    /// at least `grace`; otherwise building the topology fails with
    /// [`StreamsError::GracePeriodNeedsVersionedTable`](crate::StreamsError::GracePeriodNeedsVersionedTable) or
    /// [`StreamsError::GracePeriodExceedsHistoryRetention`](crate::StreamsError::GracePeriodExceedsHistoryRetention).
    /// The buffer is a store named `<join name>-Buffer` (as in Kafka Streams), changelogged, so buffered records
    /// survive a restart.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// let rates = builder.table::<String, i64>(
    ///     "rates",
    ///     Consumed::new(),
    ///     Materialized::as_versioned_store("rates", Duration::from_secs(60)),
    /// );
    /// builder
    ///     .stream::<String, i64>("payments", Consumed::new())
    ///     .join(&rates, |amount, rate| amount * rate, Joined::as_name("convert").with_grace_period(Duration::from_millis(10)))
    ///     .to("converted", Produced::new());
    ///
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let r = driver.input_topic("rates", Serdes::string(), Serdes::i64());
    /// let p = driver.input_topic("payments", Serdes::string(), Serdes::i64());
    /// let out = driver.output_topic("converted", Serdes::string(), Serdes::i64());
    /// p.pipe_input_at("eur".into(), 100, 1_000).unwrap(); // buffered: no rate yet
    /// r.pipe_input_at("eur".into(), 2, 995).unwrap(); // the rate arrives late
    /// assert!(out.is_empty());
    /// p.pipe_input_at("usd".into(), 1, 1_010).unwrap(); // stream time reaches 1 000 + 10: the payment joins
    /// assert_eq!(out.read_value().unwrap(), Some(200));
    /// ```
    pub fn with_grace_period(mut self, grace: std::time::Duration) -> Self {
        self.grace_period = Some(grace);
        self
    }
}

/// Rewrites of the topology, as Kafka Streams applies them under `topology.optimization`; see
/// [`StreamsBuilder::with_optimization`](crate::StreamsBuilder::with_optimization).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TopologyOptimization {
    /// None (Kafka's default, `none`).
    #[default]
    None,
    /// Source tables use their topic as their changelog (`reuse.ktable.source.topics`).
    ReuseSourceTopics,
    /// Every optimization this library implements (`all`); today the same as `ReuseSourceTopics`.
    All,
}
