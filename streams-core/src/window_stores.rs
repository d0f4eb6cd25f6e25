//! Window and session stores for the Processor API (Kafka Streams' `Stores.windowStoreBuilder` and
//! `Stores.sessionStoreBuilder`): described with a [`WindowStoreBuilder`] or [`SessionStoreBuilder`], added
//! with [`Topology::add_window_store`] or [`Topology::add_session_store`], and used from a processor through
//! [`ProcessorContext::window_store`] or [`ProcessorContext::session_store`].
//!
//! Both are kept in time segments (one underlying store per segment of half the retention, at least a minute),
//! so expiring old windows drops whole segments; both keep their own stream time from what is put into them (the
//! newest window start, the newest session end), as Kafka's stores do, and expire by themselves as it advances.
//! Their changelog is one compacted topic whose keys are the windowed keys (`key ++ start` for windows,
//! `key ++ end ++ start` for sessions); expired entries get tombstones.

use std::sync::Arc;
use std::time::Duration;

use state_store::{
    KeyValueStoreSupplier, SegmentKeySchema, SegmentedStoreSupplier, Serde, SessionStore,
    SessionWindowedSerde, SharedSerde, TimeWindowedSerde, WindowStore, Windowed,
};

use crate::error::StreamsError;
use crate::processor::{Data, ProcessorContext};
use crate::topology::{KeyValueStoreBuilder, Topology};

/// What a processor needs to open a window store: its key and value serdes and its windows.
pub(crate) struct WindowParts<K, V> {
    key: SharedSerde<K>,
    value: SharedSerde<V>,
    size_ms: i64,
    retention_ms: i64,
    duplicates: bool,
}

/// What a processor needs to open a session store.
pub(crate) struct SessionParts<K, V> {
    key: SharedSerde<K>,
    value: SharedSerde<V>,
    retention_ms: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Describes a window store to attach to processors (Kafka Streams' `Stores.windowStoreBuilder`): values per
/// (key, window start), kept for a retention period of the store's stream time, cached and changelogged by
/// default. With `retain_duplicates` (as Kafka's stream-stream joins use) every value put is kept, several per
/// key and start, and caching is off.
///
/// ```
/// use std::time::Duration;
/// use streams_core::{
///     Processor, ProcessorContext, Record, Serdes, SinkOptions, SourceOptions, StoreKind, StreamsError,
///     Topology, TopologyTestDriver, WindowStore, WindowStoreBuilder,
/// };
///
/// /// Counts clicks per user and minute in a window store, forwarding each new count.
/// #[derive(Default)]
/// struct ClicksPerMinute {
///     store: Option<WindowStore<String, i64>>,
/// }
///
/// impl Processor<String, String> for ClicksPerMinute {
///     type KOut = String;
///     type VOut = i64;
///
///     fn init(&mut self, ctx: &mut ProcessorContext<String, i64>) -> Result<(), StreamsError> {
///         self.store = Some(ctx.window_store("clicks")?);
///         Ok(())
///     }
///
///     fn process(
///         &mut self,
///         r: Record<String, String>,
///         ctx: &mut ProcessorContext<String, i64>,
///     ) -> Result<(), StreamsError> {
///         let store = self.store.as_mut().expect("opened in init");
///         let start = r.timestamp - r.timestamp % 60_000;
///         let count = store.fetch(&r.key, start)?.unwrap_or(0) + 1;
///         store.put(&r.key, start, Some(&count))?;
///         ctx.forward(Record { key: r.key, value: count, timestamp: r.timestamp, headers: r.headers })
///     }
/// }
///
/// let mut topology = Topology::new();
/// topology.add_source("in", &["clicks"], SourceOptions::new(Serdes::string(), Serdes::string())).unwrap();
/// topology.add_processor::<String, String, _, _>("count", ClicksPerMinute::default, &["in"]).unwrap();
/// let hourly = Duration::from_secs(3600);
/// let minute = Duration::from_secs(60);
/// let builder =
///     WindowStoreBuilder::new("clicks", StoreKind::InMemory, Serdes::string(), Serdes::i64(), hourly, minute, false);
/// topology.add_window_store(builder, &["count"]).unwrap();
/// topology.add_sink("out", "counts", SinkOptions::new(Serdes::string(), Serdes::i64()), &["count"]).unwrap();
///
/// let driver = TopologyTestDriver::new(topology).unwrap();
/// let input = driver.input_topic("clicks", Serdes::string(), Serdes::string());
/// for (page, t) in [("/home", 1_000), ("/cart", 59_000), ("/home", 61_000)] {
///     input.pipe_input_at("ann".to_string(), page.to_string(), t).unwrap();
/// }
/// let out = driver.output_topic("counts", Serdes::string(), Serdes::i64());
/// let counts: Vec<i64> = out.read_key_values_to_vec().unwrap().into_iter().map(|(_, v)| v).collect();
/// assert_eq!(counts, vec![1, 2, 1]);
/// // The store is queryable like the DSL's window stores.
/// let view = driver.window_store::<String, i64>("clicks").unwrap();
/// assert_eq!(view.fetch(&"ann".to_string(), 0).unwrap(), Some(2));
/// ```
pub struct WindowStoreBuilder<K, V> {
    name: String,
    supplier: Arc<dyn KeyValueStoreSupplier>,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    retention: Duration,
    window_size: Duration,
    retain_duplicates: bool,
    logging: bool,
    caching: bool,
}

impl<K: 'static, V: 'static> WindowStoreBuilder<K, V> {
    /// A window store called `name` whose segments `supplier` opens (a [`StoreKind`](crate::StoreKind) or
    /// your own supplier), keeping windows `window_size` long for `retention` (which must be at least the
    /// window size), several values per key and start when `retain_duplicates`.
    pub fn new(
        name: impl Into<String>,
        supplier: impl KeyValueStoreSupplier + 'static,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        retention: Duration,
        window_size: Duration,
        retain_duplicates: bool,
    ) -> Self {
        WindowStoreBuilder {
            name: name.into(),
            supplier: Arc::new(supplier),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            retention,
            window_size,
            retain_duplicates,
            logging: true,
            caching: true,
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets whether the store has a changelog (on by default).
    pub fn with_logging(mut self, enabled: bool) -> Self {
        self.logging = enabled;
        self
    }

    /// Sets whether the store has a write-back cache (on by default; always off with duplicates, as in Kafka).
    pub fn with_caching(mut self, enabled: bool) -> Self {
        self.caching = enabled;
        self
    }

    fn check(&self) -> Result<(), StreamsError> {
        let bad = |message: String| StreamsError::Config {
            key: format!("window store '{}'", self.name),
            message,
        };
        if self.window_size.is_zero() && !self.retain_duplicates {
            return Err(bad("the window size must be greater than zero".into()));
        }
        if self.retention < self.window_size {
            return Err(bad(format!(
                "the retention ({} ms) must be at least the window size ({} ms)",
                ms(self.retention),
                ms(self.window_size)
            )));
        }
        Ok(())
    }
}

/// Describes a session store to attach to processors (Kafka Streams' `Stores.sessionStoreBuilder`): values per
/// (key, session window), kept while the session ended within the retention period of the store's stream time,
/// cached and changelogged by default.
pub struct SessionStoreBuilder<K, V> {
    name: String,
    supplier: Arc<dyn KeyValueStoreSupplier>,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    retention: Duration,
    logging: bool,
    caching: bool,
}

impl<K: 'static, V: 'static> SessionStoreBuilder<K, V> {
    /// A session store called `name` whose segments `supplier` opens, keeping sessions for `retention`.
    pub fn new(
        name: impl Into<String>,
        supplier: impl KeyValueStoreSupplier + 'static,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        retention: Duration,
    ) -> Self {
        SessionStoreBuilder {
            name: name.into(),
            supplier: Arc::new(supplier),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            retention,
            logging: true,
            caching: true,
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets whether the store has a changelog (on by default).
    pub fn with_logging(mut self, enabled: bool) -> Self {
        self.logging = enabled;
        self
    }

    /// Sets whether the store has a write-back cache (on by default).
    pub fn with_caching(mut self, enabled: bool) -> Self {
        self.caching = enabled;
        self
    }
}

impl Topology {
    /// Adds a window store and connects it to `processors`, which open it with
    /// [`ProcessorContext::window_store`]. A window size of zero (without duplicates) or a retention shorter
    /// than the window size is a [`StreamsError::Config`].
    pub fn add_window_store<K: 'static, V: 'static>(
        &mut self,
        builder: WindowStoreBuilder<K, V>,
        processors: &[&str],
    ) -> Result<&mut Self, StreamsError> {
        builder.check()?;
        let (size_ms, retention_ms) = (ms(builder.window_size), ms(builder.retention));
        let (schema, windowed) = if builder.retain_duplicates {
            (
                SegmentKeySchema::WindowWithSequence,
                TimeWindowedSerde::new(builder.key_serde.clone(), size_ms).with_sequence_numbers(),
            )
        } else {
            (
                SegmentKeySchema::Window,
                TimeWindowedSerde::new(builder.key_serde.clone(), size_ms),
            )
        };
        let supplier = SegmentedStoreSupplier::new(builder.supplier, schema, retention_ms);
        let windowed: SharedSerde<Windowed<K>> = Arc::new(windowed);
        let parts = WindowParts {
            key: builder.key_serde,
            value: builder.value_serde.clone(),
            size_ms,
            retention_ms,
            duplicates: builder.retain_duplicates,
        };
        let kv = KeyValueStoreBuilder::from_parts(
            builder.name,
            Arc::new(supplier),
            windowed,
            builder.value_serde,
        )
        .with_logging(builder.logging)
        .with_caching(builder.caching && !builder.retain_duplicates)
        .with_windowed_parts(Arc::new(parts));
        self.add_state_store(kv, processors)
    }

    /// Adds a session store and connects it to `processors`, which open it with
    /// [`ProcessorContext::session_store`].
    pub fn add_session_store<K: 'static, V: 'static>(
        &mut self,
        builder: SessionStoreBuilder<K, V>,
        processors: &[&str],
    ) -> Result<&mut Self, StreamsError> {
        let retention_ms = ms(builder.retention);
        let supplier =
            SegmentedStoreSupplier::new(builder.supplier, SegmentKeySchema::Session, retention_ms);
        let windowed: SharedSerde<Windowed<K>> =
            Arc::new(SessionWindowedSerde::new(builder.key_serde.clone()));
        let parts = SessionParts {
            key: builder.key_serde,
            value: builder.value_serde.clone(),
            retention_ms,
        };
        let kv = KeyValueStoreBuilder::from_parts(
            builder.name,
            Arc::new(supplier),
            windowed,
            builder.value_serde,
        )
        .with_logging(builder.logging)
        .with_caching(builder.caching)
        .with_windowed_parts(Arc::new(parts));
        self.add_state_store(kv, processors)
    }
}

impl<K: Data, V: Data> ProcessorContext<K, V> {
    /// The window store `store` (added with [`Topology::add_window_store`] and connected to this processor),
    /// with keys `SK` and values `SV`. The store keeps its own stream time (the newest window start put) and
    /// expires what falls out of retention by itself. Open it in [`Processor::init`](crate::Processor::init)
    /// and keep it: a new handle starts without stream time, so until its first put it reads windows not yet
    /// expired.
    pub fn window_store<SK: 'static, SV: 'static>(
        &self,
        store: &str,
    ) -> Result<WindowStore<SK, SV>, StreamsError> {
        let bytes = self.key_value_store::<Windowed<SK>, SV>(store)?;
        let parts = self
            .windowed_parts(store)
            .and_then(|p| p.downcast::<WindowParts<SK, SV>>().ok())
            .ok_or_else(|| StreamsError::StoreAccess {
                processor: self.name().to_string(),
                store: store.to_string(),
                reason: "not a window store (add it with Topology::add_window_store)".into(),
            })?;
        let s = WindowStore::new(
            bytes.bytes().clone(),
            parts.key.clone(),
            parts.value.clone(),
            parts.size_ms,
            parts.retention_ms,
        )
        .tracking_time_from_puts();
        Ok(if parts.duplicates {
            s.retaining_duplicates()
        } else {
            s
        })
    }

    /// The session store `store` (added with [`Topology::add_session_store`] and connected to this processor),
    /// with keys `SK` and values `SV`. It keeps its own stream time (the newest session end put) and expires
    /// what falls out of retention by itself; as for [`ProcessorContext::window_store`], open it once.
    pub fn session_store<SK: 'static, SV: 'static>(
        &self,
        store: &str,
    ) -> Result<SessionStore<SK, SV>, StreamsError> {
        let bytes = self.key_value_store::<Windowed<SK>, SV>(store)?;
        let parts = self
            .windowed_parts(store)
            .and_then(|p| p.downcast::<SessionParts<SK, SV>>().ok())
            .ok_or_else(|| StreamsError::StoreAccess {
                processor: self.name().to_string(),
                store: store.to_string(),
                reason: "not a session store (add it with Topology::add_session_store)".into(),
            })?;
        Ok(SessionStore::new(
            bytes.bytes().clone(),
            parts.key.clone(),
            parts.value.clone(),
            parts.retention_ms,
        )
        .tracking_time_from_puts())
    }
}
