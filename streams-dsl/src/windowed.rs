//! Windowed aggregations (`KGroupedStream::windowed_by`) and `suppress` of their results.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use state_store::{SessionWindowedSerde, TimeWindowedSerde, Windowed};
use streams_core::{Data, SharedSerde, StreamsError};

use crate::grouped::KGroupedStream;
use crate::ktable::KTable;
use crate::ops::session_aggregate::SessionAggregate;
use crate::ops::sliding_aggregate::{buffer_retention, SlidingAggregate};
use crate::ops::suppress::SuppressUntilClose;
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
        }
    }
}

impl<K: Data, V: Data> WindowedBy<K, V> for SlidingWindows {
    type Output = TimeWindowedKStream<K, V>;
    fn windowed(self, grouped: KGroupedStream<K, V>) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped,
            spec: Spec::Sliding(self),
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
fn retention<K, V>(m: &Materialized<K, V>, min: i64, op: &str) -> Result<i64, StreamsError> {
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
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
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
        let name = b.name("KSTREAM-AGGREGATE-");
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
                            _p: PhantomData,
                        },
                        &[&input],
                    );
                }
                Spec::Sliding(windows) => {
                    let input_serde = self.grouped.value_serde(&mut b, op);
                    let buffer = format!("{store}-records");
                    if let Some(iv) = input_serde {
                        let (k2, v2, iv2) = (k.clone(), v.clone(), iv.clone());
                        let buffer_name = Arc::<str>::from(buffer.as_str());
                        b.add_processor::<K, V, _, _>(
                            &name,
                            move || SlidingAggregate::<K, V, VA, F> {
                                store_name: store_name.clone(),
                                buffer_name: buffer_name.clone(),
                                windows,
                                retention_ms,
                                key_serde: k2.clone(),
                                input_serde: iv2.clone(),
                                value_serde: v2.clone(),
                                fold: fold.clone(),
                                send_old: f2.load(Ordering::Relaxed),
                                store: None,
                                buffer: None,
                                observed: i64::MIN,
                                last_expiry: i64::MIN / 2,
                            },
                            &[&input],
                        );
                        let records: SharedSerde<Windowed<K>> =
                            Arc::new(TimeWindowedSerde::new(k.clone(), 0).with_sequence_numbers());
                        let _ = buffer_retention(&windows);
                        b.add_store_as(&buffer, &m, records, iv, &name);
                    }
                }
            }
            match self.spec {
                Spec::Time(_) => b.add_timestamped_store_as(&store, &m, ws, v, &name),
                Spec::Sliding(_) => b.add_store_as(&store, &m, ws, v, &name),
            }
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

    /// Counts each key's records per window.
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
        let name = b.name("KSTREAM-SESSION-AGGREGATE-");
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
                    observed: i64::MIN,
                    last_expiry: i64::MIN / 2,
                    _p: PhantomData,
                },
                &[&input],
            );
            b.add_store_as(&store, &m, ws, v, &name);
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

    /// Counts each key's records per session.
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

/// When a suppressed table emits (Kafka Streams' `Suppressed`).
#[derive(Debug, Clone, Default)]
pub struct Suppressed {
    name: Option<String>,
}

impl Suppressed {
    /// One result per window: the final one, once stream time passes the window's end plus its grace period.
    /// The results waiting for their window to close are kept in a changelogged store, so a crash loses none.
    pub fn until_window_closes() -> Self {
        Suppressed { name: None }
    }

    /// Names the suppression's node and buffer store.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<K: Data, V: Data> KTable<Windowed<K>, V> {
    /// Holds back this windowed table's updates and emits each window's final result once the window closes
    /// (only directly on the result of a windowed aggregation).
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
    pub fn suppress(&self, suppressed: Suppressed) -> KTable<Windowed<K>, V> {
        let mut b = self.b.borrow_mut();
        let name = suppressed
            .name
            .clone()
            .unwrap_or_else(|| b.name("KTABLE-SUPPRESS-"));
        let store = format!("{name}-store");
        let Some(&(grace_ms, end_inclusive)) = b.window_close.get(&self.node) else {
            b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                "suppress(until_window_closes) on '{}': apply it directly to the result of a windowed \
                 aggregation (count/reduce/aggregate after windowed_by)",
                self.node
            ))));
            drop(b);
            return self.clone();
        };
        let op = "suppress";
        let hint = "Materialized::with(key_serde, value_serde) on the windowed aggregation";
        let k = b.check(pick_serde(&None, &self.key_serde, op, "key", hint));
        let v = b.check(pick_serde(&None, &self.value_serde, op, "value", hint));
        if let (Some(k), Some(v)) = (k, v) {
            let store_name = Arc::<str>::from(store.as_str());
            b.add_processor::<Windowed<K>, crate::change::Change<V>, _, _>(
                &name,
                move || SuppressUntilClose::<K, V> {
                    store_name: store_name.clone(),
                    key_serde: k.clone(),
                    value_serde: v.clone(),
                    grace_ms,
                    end_inclusive,
                    store: None,
                    observed: i64::MIN,
                    min_end: None,
                    key_buf: Vec::new(),
                    value_buf: Vec::new(),
                },
                &[&self.node],
            );
            let bytes: SharedSerde<Vec<u8>> = Arc::new(state_store::Serdes::bytes());
            let m: Materialized<Vec<u8>, Vec<u8>> = Materialized::new();
            b.add_store_as(&store, &m, bytes.clone(), bytes, &name);
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

impl<K: Data, V: Data> KGroupedStream<K, V> {
    /// Cuts the grouped stream into windows: [`TimeWindows`] (tumbling, hopping), [`SlidingWindows`] or
    /// [`SessionWindows`].
    pub fn windowed_by<W: WindowedBy<K, V>>(&self, windows: W) -> W::Output {
        windows.windowed(self.clone_grouped())
    }
}
