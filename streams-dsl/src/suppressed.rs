//! `KTable::suppress`: [`Suppressed`] (when a held-back update is emitted) and [`BufferConfig`] (how many updates
//! may be held, and what happens when there are more), after Kafka Streams' `Suppressed` and
//! `Suppressed.BufferConfig`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use state_store::Windowed;
use streams_core::{Data, SharedSerde, StreamsError};

use crate::change::Change;
use crate::ktable::KTable;
use crate::ops::suppress::{SuppressProcessor, TimeDefinition};
use crate::params::{pick_serde, Materialized};

/// What a full suppression buffer does (Kafka Streams' `BufferFullStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferFullStrategy {
    /// Emit the oldest buffered updates early, until the buffer is within its bounds again.
    EmitEarly,
    /// Fail the task with an error naming the suppression and its bounds.
    ShutDown,
}

/// The bounds of a suppression buffer and what happens when they are exceeded (Kafka Streams'
/// `Suppressed.BufferConfig`). Bounds are checked after each update is buffered: the buffer may hold at most
/// `max_records` keys and `max_bytes` bytes (an estimate of the memory an entry takes: its key, values, headers
/// and source topic name, as Kafka counts them).
///
/// [`BufferConfig::max_records`] and [`BufferConfig::max_bytes`] emit early when full;
/// [`BufferConfig::unbounded`] never is. A bound of 0 is rejected when the topology is built.
///
/// ```
/// use streams_dsl::{BufferConfig, BufferFullStrategy};
///
/// let eager = BufferConfig::max_records(1_000).with_max_bytes(1 << 20);
/// assert_eq!(eager.full_strategy(), BufferFullStrategy::EmitEarly);
/// let strict = BufferConfig::max_bytes(1 << 20).shut_down_when_full();
/// assert_eq!(strict.full_strategy(), BufferFullStrategy::ShutDown);
/// assert_eq!(BufferConfig::unbounded().max_record_bound(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    max_records: Option<u64>,
    max_bytes: Option<u64>,
    when_full: BufferFullStrategy,
}

impl BufferConfig {
    /// No bound: the buffer holds every key until it is due (it is never full).
    pub fn unbounded() -> Self {
        BufferConfig {
            max_records: None,
            max_bytes: None,
            when_full: BufferFullStrategy::ShutDown,
        }
    }

    /// At most `records` keys, emitting the oldest early when full.
    pub fn max_records(records: u64) -> Self {
        BufferConfig {
            max_records: Some(records),
            max_bytes: None,
            when_full: BufferFullStrategy::EmitEarly,
        }
    }

    /// At most `bytes` bytes, emitting the oldest keys early when full.
    pub fn max_bytes(bytes: u64) -> Self {
        BufferConfig {
            max_records: None,
            max_bytes: Some(bytes),
            when_full: BufferFullStrategy::EmitEarly,
        }
    }

    /// Also bounds the number of keys.
    pub fn with_max_records(mut self, records: u64) -> Self {
        self.max_records = Some(records);
        self
    }

    /// Also bounds the size in bytes.
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// When full, emit the oldest updates early (so results may not be final).
    pub fn emit_early_when_full(mut self) -> Self {
        self.when_full = BufferFullStrategy::EmitEarly;
        self
    }

    /// When full, fail the task: results stay final, at the cost of stopping.
    pub fn shut_down_when_full(mut self) -> Self {
        self.when_full = BufferFullStrategy::ShutDown;
        self
    }

    /// The bound on the number of keys, if any.
    pub fn max_record_bound(&self) -> Option<u64> {
        self.max_records
    }

    /// The bound on the size in bytes, if any.
    pub fn max_byte_bound(&self) -> Option<u64> {
        self.max_bytes
    }

    /// What a full buffer does.
    pub fn full_strategy(&self) -> BufferFullStrategy {
        self.when_full
    }

    fn validate(&self, node: &str) -> Result<(), StreamsError> {
        for (what, bound) in [
            ("max_records", self.max_records),
            ("max_bytes", self.max_bytes),
        ] {
            if bound == Some(0) {
                return Err(StreamsError::InvalidTopology(format!(
                    "suppress '{node}': BufferConfig::{what}(0) is not a usable bound; give at least 1, or use \
                     BufferConfig::unbounded()"
                )));
            }
        }
        Ok(())
    }
}

enum Kind<K> {
    UntilWindowCloses(fn(&K) -> i64),
    UntilTimeLimit(i64),
}

/// When a suppressed table emits its held-back updates (Kafka Streams' `Suppressed`); see [`KTable::suppress`].
pub struct Suppressed<K> {
    name: Option<String>,
    kind: Kind<K>,
    buffer: BufferConfig,
}

impl<K> Clone for Suppressed<K> {
    fn clone(&self) -> Self {
        Suppressed {
            name: self.name.clone(),
            kind: match self.kind {
                Kind::UntilWindowCloses(f) => Kind::UntilWindowCloses(f),
                Kind::UntilTimeLimit(ms) => Kind::UntilTimeLimit(ms),
            },
            buffer: self.buffer,
        }
    }
}

impl<K> fmt::Debug for Suppressed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Suppressed");
        d.field("name", &self.name);
        match self.kind {
            Kind::UntilWindowCloses(_) => d.field("until", &"window closes"),
            Kind::UntilTimeLimit(ms) => d.field("until_time_limit_ms", &ms),
        };
        d.field("buffer", &self.buffer).finish()
    }
}

fn window_end<K>(k: &Windowed<K>) -> i64 {
    k.window.end
}

impl<K: 'static> Suppressed<Windowed<K>> {
    /// One result per window: the final one, once stream time passes the window's end plus its grace period
    /// (Kafka Streams' `Suppressed.untilWindowCloses(BufferConfig.unbounded())`). Deletions are not emitted. The
    /// results waiting for their window to close are kept in a changelogged store, so a crash loses none. On the
    /// result of a windowed aggregation or a table derived from it (filtered, mapped, joined): the grace period
    /// is the one found upstream, the longest one when several windowed aggregations feed the table, and `build`
    /// reports a table with none upstream. Bound the buffer with [`Suppressed::with_buffer_config`] and a
    /// [`BufferConfig::shut_down_when_full`] buffer.
    pub fn until_window_closes() -> Self {
        Suppressed {
            name: None,
            kind: Kind::UntilWindowCloses(window_end::<K>),
            buffer: BufferConfig::unbounded(),
        }
    }
}

impl<K> Suppressed<K> {
    /// Holds each key's latest update until stream time reaches the time it was first held plus `limit`, then
    /// emits it (Kafka Streams' `Suppressed.untilTimeLimit`). The time a key is first held is the timestamp of
    /// that update; later updates replace the held one without moving it. Works on any table; deletions are
    /// emitted like updates. A limit beyond `i64::MAX` ms is taken as `i64::MAX` ms.
    pub fn until_time_limit(limit: Duration, buffer: BufferConfig) -> Self {
        Suppressed {
            name: None,
            kind: Kind::UntilTimeLimit(i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)),
            buffer,
        }
    }

    /// Names the suppression's node; its buffer store is named `<name>-store`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Replaces the buffer configuration. `until_window_closes` needs a strict one (unbounded, or
    /// [`BufferConfig::shut_down_when_full`]): emitting early would emit results before their window closes.
    pub fn with_buffer_config(mut self, buffer: BufferConfig) -> Self {
        self.buffer = buffer;
        self
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    /// Holds back this table's updates and emits only the latest update of each key once it is due
    /// (Kafka Streams' `KTable#suppress`): once its window closes ([`Suppressed::until_window_closes`], on a
    /// windowed aggregation's table or one derived from it), or a time limit after it was first held ([`Suppressed::until_time_limit`],
    /// on any table). Emitted records carry the timestamp and headers of the update they emit. The buffer is a
    /// changelogged store named `<name>-store`.
    ///
    /// Final results of windows:
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream::<String, String>("page-views", Consumed::new())
    ///     .group_by_key(Grouped::new())
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
    ///     .count(Materialized::new())
    ///     .suppress(Suppressed::until_window_closes())
    ///     .to_stream()
    ///     .map(|k, n| (format!("{}@{}", k.key, k.window.start), n.unwrap_or(0)))
    ///     .to("final-counts", Produced::new());
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let views = driver.input_topic("page-views", Serdes::string(), Serdes::string());
    /// let out = driver.output_topic("final-counts", Serdes::string(), Serdes::i64());
    /// views.pipe_input_at("/home".into(), "ann".into(), 1_000).unwrap();
    /// views.pipe_input_at("/home".into(), "bob".into(), 2_000).unwrap();
    /// assert!(out.is_empty()); // the minute is still open
    /// views.pipe_input_at("/home".into(), "cid".into(), 60_000).unwrap();
    /// assert_eq!(out.read_key_values_to_vec().unwrap(), vec![("/home@0".to_string(), 2)]);
    /// ```
    ///
    /// Rate-limiting a table's updates, at most 100 keys held (the oldest are emitted early beyond that):
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .table::<String, String>("prices", Consumed::new(), Materialized::new())
    ///     .suppress(Suppressed::until_time_limit(Duration::from_secs(10), BufferConfig::max_records(100)))
    ///     .to_stream()
    ///     .to("prices-every-10s", Produced::new());
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let prices = driver.input_topic("prices", Serdes::string(), Serdes::string());
    /// let out = driver.output_topic("prices-every-10s", Serdes::string(), OptionSerde::new(Serdes::string()));
    /// prices.pipe_input_at("ACME".into(), "10".into(), 0).unwrap();
    /// prices.pipe_input_at("ACME".into(), "11".into(), 4_000).unwrap();
    /// prices.pipe_input_at("INIT".into(), "5".into(), 9_000).unwrap();
    /// assert!(out.is_empty());
    /// // Ten seconds after ACME was first held, its latest price goes out, stamped with that update's time.
    /// prices.pipe_input_at("INIT".into(), "6".into(), 10_000).unwrap();
    /// let emitted = out.read_records_to_vec().unwrap();
    /// assert_eq!(emitted.len(), 1);
    /// assert_eq!((emitted[0].key.as_str(), emitted[0].value.as_deref(), emitted[0].timestamp), ("ACME", Some("11"), 4_000));
    /// ```
    ///
    /// A zero bound is rejected when the topology is built:
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .table::<String, String>("prices", Consumed::new(), Materialized::new())
    ///     .suppress(Suppressed::until_time_limit(Duration::from_secs(1), BufferConfig::max_records(0)).with_name("rate"));
    /// let err = builder.build().unwrap_err().to_string();
    /// assert!(err.contains("'rate'") && err.contains("max_records(0)"), "{err}");
    /// ```
    pub fn suppress(&self, suppressed: Suppressed<K>) -> KTable<K, V> {
        // The buffer keeps the value a key had before it was buffered (Kafka forces old values upstream too).
        self.enable_send_old_values();
        let mut b = self.b.borrow_mut();
        let name = suppressed
            .name
            .clone()
            .unwrap_or_else(|| self.processor_name(&mut b, "KTABLE-SUPPRESS-"));
        let store = format!("{name}-store");
        let cfg = suppressed.buffer;
        if b.check(cfg.validate(&name)).is_none() {
            drop(b);
            return self.clone();
        }
        let (wait_ms, time, drop_tombstones) = match suppressed.kind {
            Kind::UntilWindowCloses(end) => {
                let wait = match b.window_close_wait(&self.node) {
                    Ok(wait) => wait,
                    Err(chain) => {
                        b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                            "suppress(until_window_closes) '{name}': window close time is only defined for \
                             the results of windowed aggregations (count/reduce/aggregate after windowed_by) and \
                             tables derived from them; found none upstream of [{chain}]"
                        ))));
                        drop(b);
                        return self.clone();
                    }
                };
                if cfg.when_full == BufferFullStrategy::EmitEarly {
                    b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                        "suppress(until_window_closes) '{name}': the buffer must be strict (BufferConfig::unbounded() \
                         or shut_down_when_full()); emit_early_when_full() would emit results before their window \
                         closes"
                    ))));
                    drop(b);
                    return self.clone();
                }
                // A session includes its end: it is final once stream time is past end + gap + grace.
                (wait, TimeDefinition::Key(end), true)
            }
            Kind::UntilTimeLimit(ms) => (ms, TimeDefinition::Record, false),
        };
        let op = "suppress";
        let hint = "Materialized::with(key_serde, value_serde) on the table being suppressed";
        let k = b.check(pick_serde(&None, &self.key_serde, op, "key", hint));
        let v = b.check(pick_serde(&None, &self.value_serde, op, "value", hint));
        if let (Some(k), Some(v)) = (k, v) {
            let store_name = Arc::<str>::from(store.as_str());
            let bounds = (
                cfg.max_records,
                cfg.max_bytes,
                cfg.when_full == BufferFullStrategy::ShutDown,
            );
            b.add_processor::<K, Change<V>, _, _>(
                &name,
                move || {
                    let time = match &time {
                        TimeDefinition::Record => TimeDefinition::Record,
                        TimeDefinition::Key(f) => TimeDefinition::Key(*f),
                    };
                    SuppressProcessor::<K, V>::new(
                        store_name.clone(),
                        k.clone(),
                        v.clone(),
                        wait_ms,
                        time,
                        bounds,
                        drop_tombstones,
                    )
                },
                &[&self.node],
            );
            let bytes: SharedSerde<Vec<u8>> = Arc::new(state_store::Serdes::bytes());
            let m: Materialized<Vec<u8>, Vec<u8>> = Materialized::new();
            b.add_store_as(&store, &m, bytes.clone(), bytes, &name);
            // Read by a join, the suppressed table is what it emitted: a store materialized behind it holds
            // that (Kafka's view: the value before a buffered key was buffered, else the parent's value).
            b.buffer_nodes.insert(name.clone());
        }
        drop(b);
        KTable::new(
            self.b.clone(),
            name,
            self.key_serde.clone(),
            self.value_serde.clone(),
            None,
            Vec::new(),
        )
    }
}
