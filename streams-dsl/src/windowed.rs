//! Windowed aggregations (`KGroupedStream::windowed_by`) and `suppress` of their results.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use state_store::{SegmentKeySchema, SessionWindowedSerde, TimeWindowedSerde, Windowed};
use streams_core::{Data, SharedSerde, StreamsError};

use crate::grouped::KGroupedStream;
use crate::ktable::KTable;
use crate::ops::emit_final::{EmitFinal, SlidingEmitFinal};
use crate::ops::session_aggregate::SessionAggregate;
use crate::ops::sliding_aggregate::SlidingAggregate;
use crate::ops::window_aggregate::WindowAggregate;
use crate::params::{pick_serde, Materialized};
use crate::windows::{ms, SessionWindows, SlidingWindows, TimeWindows};

const STORE_HINT: &str = "Materialized::with(key_serde, value_serde)";

/// A window specification [`KGroupedStream::windowed_by`] accepts: [`TimeWindows`] and [`SlidingWindows`] give a
/// [`TimeWindowedKStream`], [`SessionWindows`] a [`SessionWindowedKStream`].
pub trait WindowedBy<K, V> {
    /// The windowed stream.
    type Output;
    /// Windows `grouped` by this specification.
    fn windowed(self, grouped: KGroupedStream<K, V>) -> Self::Output;
}

#[derive(Clone, Copy)]
enum Spec {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

impl Spec {
    fn size_ms(&self) -> i64 {
        match self {
            Spec::Time(w) => w.size_ms,
            Spec::Sliding(w) => w.difference_ms,
        }
    }
    fn grace_ms(&self) -> i64 {
        match self {
            Spec::Time(w) => w.grace_ms,
            Spec::Sliding(w) => w.grace_ms,
        }
    }
}

impl<K: Data, V: Data> WindowedBy<K, V> for TimeWindows {
    type Output = TimeWindowedKStream<K, V>;
    fn windowed(self, grouped: KGroupedStream<K, V>) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped,
            spec: Spec::Time(self),
            emit: EmitStrategy::OnWindowUpdate,
        }
    }
}

impl<K: Data, V: Data> WindowedBy<K, V> for SlidingWindows {
    type Output = TimeWindowedKStream<K, V>;
    fn windowed(self, grouped: KGroupedStream<K, V>) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped,
            spec: Spec::Sliding(self),
            emit: EmitStrategy::OnWindowUpdate,
        }
    }
}

impl<K: Data, V: Data> WindowedBy<K, V> for SessionWindows {
    type Output = SessionWindowedKStream<K, V>;
    fn windowed(self, grouped: KGroupedStream<K, V>) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream {
            grouped,
            windows: self,
        }
    }
}

/// The retention of a windowed store: the one asked for, which must cover `min`, else `min`.
pub(crate) fn retention<K, V>(
    m: &Materialized<K, V>,
    min: i64,
    op: &str,
) -> Result<i64, StreamsError> {
    match m.retention.map(ms) {
        Some(r) if r < min => Err(StreamsError::InvalidTopology(format!(
            "{op}: Materialized::with_retention({r} ms) is shorter than the window size (or gap) plus grace \
             ({min} ms); windows would be deleted while still open"
        ))),
        Some(r) => Ok(r),
        None => Ok(min),
    }
}

/// A grouped stream cut into time windows (tumbling, hopping or sliding), ready to aggregate per key and window
/// (Kafka Streams' `TimeWindowedKStream`). The results form a table keyed by [`Windowed`] keys; each update
/// is forwarded as it happens (use [`KTable::suppress`] for one final result per window).
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
///     // Windows stay queryable for an hour (by default only until they close).
///     .count(Materialized::as_store("views-per-minute").in_memory().with_retention(Duration::from_secs(3600)));
/// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
/// let views = driver.input_topic("page-views", Serdes::string(), Serdes::string());
/// views.pipe_input_at("/home".into(), "ann".into(), 1_000).unwrap();
/// views.pipe_input_at("/home".into(), "bob".into(), 59_000).unwrap();
/// views.pipe_input_at("/home".into(), "cid".into(), 61_000).unwrap();
/// let store = driver.key_value_store::<Windowed<String>, i64>("views-per-minute").unwrap();
/// let counts: Vec<(i64, i64)> = store.all().unwrap().into_iter().map(|(k, n)| (k.window.start, n)).collect();
/// assert_eq!(counts, vec![(0, 2), (60_000, 1)]);
/// ```
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    spec: Spec,
    emit: EmitStrategy,
}

/// When a windowed aggregation forwards its results (Kafka Streams' `EmitStrategy`, KIP-825).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitStrategy {
    /// Every update of a window, as it happens (the default).
    #[default]
    OnWindowUpdate,
    /// Only each window's final result, once it closes (stream time reaches its end plus grace), read from the
    /// aggregation's store: one record per window and key, with no suppression buffer. Records too late for
    /// their window are dropped (and counted in the `dropped_records` metric).
    OnWindowClose,
}

impl EmitStrategy {
    /// [`EmitStrategy::OnWindowUpdate`] (Kafka's `EmitStrategy.onWindowUpdate()`).
    pub fn on_window_update() -> Self {
        EmitStrategy::OnWindowUpdate
    }

    /// [`EmitStrategy::OnWindowClose`] (Kafka's `EmitStrategy.onWindowClose()`).
    pub fn on_window_close() -> Self {
        EmitStrategy::OnWindowClose
    }
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    /// This windowed stream, with the processor of the aggregation applied next named `named` (Kafka Streams'
    /// `count(Named)` and the like).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, String>("clicks", Consumed::new())
    ///     .group_by_key(Grouped::new())
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
    ///     .named(Named::as_name("clicks-per-minute"))
    ///     .count(Materialized::new());
    /// let description = builder.build().unwrap().describe().to_string();
    /// assert!(description.contains("Processor: clicks-per-minute"), "{description}");
    /// ```
    pub fn named(mut self, named: crate::named::Named) -> Self {
        self.grouped = self.grouped.named(named);
        self
    }

    /// When the aggregation forwards its results: every update (the default) or, with
    /// [`EmitStrategy::on_window_close`], only each window's final result once the window closes (Kafka Streams'
    /// `TimeWindowedKStream#emitStrategy`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream::<String, String>("page-views", Consumed::new())
    ///     .group_by_key(Grouped::new())
    ///     .windowed_by(TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(10)))
    ///     .emit_strategy(EmitStrategy::on_window_close())
    ///     .count(Materialized::new())
    ///     .to_stream()
    ///     .map(|k, n| (format!("{}@{}", k.key, k.window.start), n.unwrap_or(0)))
    ///     .to("final-counts", Produced::new());
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let views = driver.input_topic("page-views", Serdes::string(), Serdes::string());
    /// let out = driver.output_topic("final-counts", Serdes::string(), Serdes::i64());
    /// views.pipe_input_at("/home".into(), "ann".into(), 1_000).unwrap();
    /// views.pipe_input_at("/home".into(), "bob".into(), 65_000).unwrap();
    /// views.pipe_input_at("/home".into(), "cid".into(), 59_000).unwrap(); // late, but within grace
    /// assert!(out.is_empty());
    /// views.pipe_input_at("/home".into(), "dan".into(), 70_000).unwrap(); // the first minute closes
    /// assert_eq!(out.read_key_values_to_vec().unwrap(), vec![("/home@0".to_string(), 2)]);
    /// ```
    pub fn emit_strategy(mut self, strategy: EmitStrategy) -> Self {
        self.emit = strategy;
        self
    }

    fn fold<VA: Data, F>(
        &self,
        op: &str,
        fold: F,
        known_value: Option<SharedSerde<VA>>,
        m: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA>
    where
        F: Fn(&K, &V, Option<VA>) -> VA + Send + Sync + 'static,
    {
        let shared = self.grouped.shared().clone();
        let mut b = shared.borrow_mut();
        let name = self
            .grouped
            .stream()
            .processor_name(&mut b, "KSTREAM-AGGREGATE-");
        let store = m
            .name
            .clone()
            .unwrap_or_else(|| b.name("KSTREAM-AGGREGATE-STATE-STORE-"));
        let valid = match self.spec {
            Spec::Time(w) => w.validate(),
            Spec::Sliding(w) => w.validate(),
        };
        b.check(valid);
        let (size, grace) = (self.spec.size_ms(), self.spec.grace_ms());
        let retention_ms = b
            .check(retention(&m, size.saturating_add(grace), op))
            .unwrap_or(size);
        // A sliding window includes its end, so it is still open when stream time minus grace reaches it: by
        // default keep windows as long as Kafka's sliding-window stores do (two time differences plus grace).
        let retention_ms = match self.spec {
            Spec::Sliding(_) if m.retention.is_none() => {
                retention_ms.max(size.saturating_mul(2).saturating_add(grace))
            }
            _ => retention_ms,
        };
        let (input, key) = self.grouped.prepare_input(&mut b, op, &store);
        let sk = b.check(pick_serde(&m.key_serde, &key, op, "key", STORE_HINT));
        let sv = b.check(pick_serde(
            &m.value_serde,
            &known_value,
            op,
            "value",
            STORE_HINT,
        ));
        let flag = Arc::new(AtomicBool::new(false));
        let mut windowed_serde: Option<SharedSerde<Windowed<K>>> = None;
        if let (Some(k), Some(v)) = (sk, sv.clone()) {
            let ws: SharedSerde<Windowed<K>> = Arc::new(TimeWindowedSerde::new(k.clone(), size));
            windowed_serde = Some(ws.clone());
            let (f2, store_name, fold) = (
                flag.clone(),
                Arc::<str>::from(store.as_str()),
                Arc::new(fold),
            );
            let emit = self.emit;
            match self.spec {
                Spec::Time(windows) => {
                    let (k2, v2) = (k.clone(), v.clone());
                    b.add_processor::<K, V, _, _>(
                        &name,
                        move || WindowAggregate::<K, V, VA, F> {
                            store_name: store_name.clone(),
                            windows,
                            retention_ms,
                            key_serde: k2.clone(),
                            value_serde: v2.clone(),
                            fold: fold.clone(),
                            send_old: f2.load(Ordering::Relaxed),
                            store: None,
                            emit: None,
                            observed: i64::MIN,
                            last_expiry: i64::MIN / 2,
                            starts: Vec::new(),
                            emit_final: (emit == EmitStrategy::OnWindowClose).then_some(
                                EmitFinal {
                                    last_emit_close: None,
                                },
                            ),
                            _p: PhantomData,
                        },
                        &[&input],
                    );
                }
                Spec::Sliding(windows) => {
                    let (k2, v2) = (k.clone(), v.clone());
                    b.add_processor::<K, V, _, _>(
                        &name,
                        move || SlidingAggregate::<K, V, VA, F> {
                            store_name: store_name.clone(),
                            windows,
                            retention_ms,
                            key_serde: k2.clone(),
                            value_serde: v2.clone(),
                            fold: fold.clone(),
                            send_old: f2.load(Ordering::Relaxed),
                            store: None,
                            emit: None,
                            observed: i64::MIN,
                            last_expiry: i64::MIN / 2,
                            emit_final: (emit == EmitStrategy::OnWindowClose).then_some(
                                SlidingEmitFinal {
                                    last_emit_close: None,
                                },
                            ),
                            _p: PhantomData,
                        },
                        &[&input],
                    );
                }
            }
            b.add_timestamped_store_as(
                &store,
                &m.segmented(SegmentKeySchema::Window, retention_ms),
                ws,
                v,
                &name,
            );
            b.window_close.insert(name.clone(), (grace, false));
        }
        drop(b);
        KTable::new(
            shared.clone(),
            name,
            windowed_serde,
            sv,
            m.name.is_some().then_some(store),
            vec![flag],
        )
    }

    /// Counts each key's records per window. The store is queried with
    /// [`TopologyTestDriver::window_store`](crate::TopologyTestDriver::window_store) or
    /// `KafkaStreams::window_store`:
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::new())
    ///     .windowed_by(TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(60)))
    ///     .count(Materialized::as_store("clicks-per-minute"));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let clicks = driver.input_topic("clicks", Serdes::string(), Serdes::string());
    /// for ts in [1_000, 2_000, 61_000] {
    ///     clicks.pipe_input_at("alice".into(), "/home".into(), ts).unwrap();
    /// }
    /// let store = driver.window_store::<String, i64>("clicks-per-minute").unwrap();
    /// assert_eq!(store.fetch_range(&"alice".into(), 0, 60_000).unwrap(), vec![(0, 2), (60_000, 1)]);
    /// assert_eq!(store.fetch(&"alice".into(), 60_000).unwrap(), Some(1));
    /// ```
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.fold(
            "windowed count",
            |_: &K, _: &V, prev: Option<i64>| prev.unwrap_or(0) + 1,
            None,
            materialized,
        )
    }

    /// Folds each key's records per window into an aggregate starting from `init()`.
    pub fn aggregate<VA: Data, I, A>(
        &self,
        init: I,
        aggregator: A,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA>
    where
        I: Fn() -> VA + Send + Sync + 'static,
        A: Fn(&K, &V, VA) -> VA + Send + Sync + 'static,
    {
        self.fold(
            "windowed aggregate",
            move |k: &K, v: &V, prev: Option<VA>| aggregator(k, v, prev.unwrap_or_else(&init)),
            None,
            materialized,
        )
    }

    /// Combines each key's values per window with `reducer(aggregate, value)`; a window's first value starts it.
    pub fn reduce<R>(&self, reducer: R, materialized: Materialized<K, V>) -> KTable<Windowed<K>, V>
    where
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let known = {
            let mut b = self.grouped.shared().borrow_mut();
            self.grouped.value_serde(&mut b, "windowed reduce")
        };
        self.fold(
            "windowed reduce",
            move |_: &K, v: &V, prev: Option<V>| match prev {
                Some(agg) => reducer(agg, v.clone()),
                None => v.clone(),
            },
            known,
            materialized,
        )
    }
}

/// A grouped stream cut into sessions of activity, ready to aggregate per key and session (Kafka Streams'
/// `SessionWindowedKStream`). As in Kafka's `KStreamSessionWindowAggregate`, when a record joins or merges
/// existing sessions, each of them is deleted from the result table (a `None` update stamped with that session's
/// end) and the merged session is added, stamped with its end (with a cached store, as Kafka's
/// `CachingSessionStore` flushed after each record, a session the record falls inside is updated in one step
/// instead); a session closes (later records that would join it are dropped) once stream time passes its end by
/// gap + grace.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::*;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("clicks", Consumed::new())
///     .group_by_key(Grouped::new())
///     .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(300)))
///     .count(Materialized::as_store("clicks-per-session").in_memory().with_retention(Duration::from_secs(86_400)));
/// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
/// let clicks = driver.input_topic("clicks", Serdes::string(), Serdes::string());
/// for (t, page) in [(0, "/a"), (60_000, "/b"), (1_000_000, "/c")] {
///     clicks.pipe_input_at("ann".into(), page.into(), t).unwrap();
/// }
/// let store = driver.key_value_store::<Windowed<String>, i64>("clicks-per-session").unwrap();
/// let sessions: Vec<(i64, i64, i64)> =
///     store.all().unwrap().into_iter().map(|(k, n)| (k.window.start, k.window.end, n)).collect();
/// assert_eq!(sessions, vec![(0, 60_000, 2), (1_000_000, 1_000_000, 1)]);
/// ```
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
}

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    /// This windowed stream, with the processor of the aggregation applied next named `named` (Kafka Streams'
    /// `count(Named)` and the like).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder.stream::<String, String>("clicks", Consumed::new())
    ///     .group_by_key(Grouped::new())
    ///     .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(300)))
    ///     .named(Named::as_name("clicks-per-session"))
    ///     .count(Materialized::new());
    /// let description = builder.build().unwrap().describe().to_string();
    /// assert!(description.contains("Processor: clicks-per-session"), "{description}");
    /// ```
    pub fn named(mut self, named: crate::named::Named) -> Self {
        self.grouped = self.grouped.named(named);
        self
    }

    fn fold<VA: Data, A, M>(
        &self,
        op: &str,
        add: A,
        merge: M,
        known_value: Option<SharedSerde<VA>>,
        m: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA>
    where
        A: Fn(&K, &V, Option<VA>) -> VA + Send + Sync + 'static,
        M: Fn(&K, Option<VA>, VA) -> VA + Send + Sync + 'static,
    {
        let shared = self.grouped.shared().clone();
        let mut b = shared.borrow_mut();
        let name = self
            .grouped
            .stream()
            .processor_name(&mut b, "KSTREAM-SESSION-AGGREGATE-");
        let store = m
            .name
            .clone()
            .unwrap_or_else(|| b.name("KSTREAM-AGGREGATE-STATE-STORE-"));
        b.check(self.windows.validate());
        let windows = self.windows;
        let retention_ms = b
            .check(retention(
                &m,
                windows.gap_ms.saturating_add(windows.grace_ms),
                op,
            ))
            .unwrap_or(windows.gap_ms);
        let (input, key) = self.grouped.prepare_input(&mut b, op, &store);
        let sk = b.check(pick_serde(&m.key_serde, &key, op, "key", STORE_HINT));
        let sv = b.check(pick_serde(
            &m.value_serde,
            &known_value,
            op,
            "value",
            STORE_HINT,
        ));
        let cached = m.caching;
        let flag = Arc::new(AtomicBool::new(false));
        let mut windowed_serde: Option<SharedSerde<Windowed<K>>> = None;
        if let (Some(k), Some(v)) = (sk, sv.clone()) {
            let ws: SharedSerde<Windowed<K>> = Arc::new(SessionWindowedSerde::new(k.clone()));
            windowed_serde = Some(ws.clone());
            let (f2, store_name, add, merge) = (
                flag.clone(),
                Arc::<str>::from(store.as_str()),
                Arc::new(add),
                Arc::new(merge),
            );
            let (k2, v2) = (k.clone(), v.clone());
            b.add_processor::<K, V, _, _>(
                &name,
                move || SessionAggregate::<K, V, VA, A, M> {
                    store_name: store_name.clone(),
                    windows,
                    retention_ms,
                    key_serde: k2.clone(),
                    value_serde: v2.clone(),
                    add: add.clone(),
                    merge: merge.clone(),
                    send_old: f2.load(Ordering::Relaxed),
                    cached,
                    store: None,
                    emit: None,
                    observed: i64::MIN,
                    last_expiry: i64::MIN / 2,
                    _p: PhantomData,
                },
                &[&input],
            );
            let segmented = m.segmented(SegmentKeySchema::Session, retention_ms);
            b.add_store_as(&store, &segmented, ws, v, &name);
            // A session may still grow (a record within the gap after it) until end + gap + grace.
            b.window_close.insert(
                name.clone(),
                (windows.gap_ms.saturating_add(windows.grace_ms), true),
            );
        }
        drop(b);
        KTable::new(
            shared.clone(),
            name,
            windowed_serde,
            sv,
            m.name.is_some().then_some(store),
            vec![flag],
        )
    }

    /// Counts each key's records per session. The store is queried with
    /// [`TopologyTestDriver::session_store`](crate::TopologyTestDriver::session_store) or
    /// `KafkaStreams::session_store`:
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::*;
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::new())
    ///     .windowed_by(SessionWindows::of_inactivity_gap_and_grace(Duration::from_secs(30), Duration::from_secs(60)))
    ///     .count(Materialized::as_store("visits"));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let clicks = driver.input_topic("clicks", Serdes::string(), Serdes::string());
    /// for ts in [1_000, 20_000, 100_000] {
    ///     clicks.pipe_input_at("alice".into(), "/home".into(), ts).unwrap();
    /// }
    /// let store = driver.session_store::<String, i64>("visits").unwrap();
    /// let sessions: Vec<_> = store.fetch(&"alice".into()).unwrap().into_iter()
    ///     .map(|(w, n)| (w.window.start, w.window.end, n)).collect();
    /// assert_eq!(sessions, vec![(1_000, 20_000, 2), (100_000, 100_000, 1)]);
    /// ```
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.fold(
            "session count",
            |_: &K, _: &V, prev: Option<i64>| prev.unwrap_or(0) + 1,
            |_: &K, a: Option<i64>, b: i64| a.unwrap_or(0) + b,
            None,
            materialized,
        )
    }

    /// Folds each session's records into an aggregate starting from `init()`; `merger` combines the aggregates
    /// of two sessions a record bridges. As in Kafka Streams, the sessions a record joins are merged one by one
    /// into `init()` before the record is added: `merger(key, merger(key, init(), s1), s2)`.
    pub fn aggregate<VA: Data, I, A, M>(
        &self,
        init: I,
        aggregator: A,
        merger: M,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA>
    where
        I: Fn() -> VA + Send + Sync + 'static,
        A: Fn(&K, &V, VA) -> VA + Send + Sync + 'static,
        M: Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
    {
        let init = Arc::new(init);
        let init2 = init.clone();
        self.fold(
            "session aggregate",
            move |k: &K, v: &V, prev: Option<VA>| aggregator(k, v, prev.unwrap_or_else(|| init())),
            move |k: &K, a: Option<VA>, b: VA| merger(k, a.unwrap_or_else(|| init2()), b),
            None,
            materialized,
        )
    }

    /// Combines each session's values with `reducer(aggregate, value)` (also used to merge sessions).
    pub fn reduce<R>(&self, reducer: R, materialized: Materialized<K, V>) -> KTable<Windowed<K>, V>
    where
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let known = {
            let mut b = self.grouped.shared().borrow_mut();
            self.grouped.value_serde(&mut b, "session reduce")
        };
        let reducer = Arc::new(reducer);
        let r2 = reducer.clone();
        self.fold(
            "session reduce",
            move |_: &K, v: &V, prev: Option<V>| match prev {
                Some(agg) => reducer(agg, v.clone()),
                None => v.clone(),
            },
            move |_: &K, a: Option<V>, b: V| match a {
                Some(a) => r2(a, b),
                None => b,
            },
            known,
            materialized,
        )
    }
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    /// Cuts the grouped stream into windows: [`TimeWindows`] (tumbling, hopping), [`SlidingWindows`] or
    /// [`SessionWindows`].
    pub fn windowed_by<W: WindowedBy<K, V>>(&self, windows: W) -> W::Output {
        windows.windowed(self.clone_grouped())
    }
}
