//! KStream-KStream windowed joins: `join_stream`, `left_join_stream`, `outer_join_stream`.

use std::sync::Arc;

use state_store::{KeyValueStoreSupplier, TimeWindowedSerde, Windowed};
use streams_core::{Data, KeyValueStoreBuilder, Serde, SharedSerde, StoreKind};

use crate::kstream::KStream;
use crate::ops::passthrough::PassThrough;
use crate::ops::stream_join::{JoinCore, JoinKind, JoinLeft, JoinRight, TimeTrackers};
use crate::params::pick_serde;
use crate::windows::JoinWindows;

/// Serdes and stores of a stream-stream join (Kafka Streams' `StreamJoined`).
///
/// ```
/// use streams_dsl::{Serdes, StreamJoined};
/// let joined = StreamJoined::with(Serdes::string(), Serdes::i64(), Serdes::string())
///     .with_store_name("orders-payments")
///     .in_memory();
/// # let _ = joined;
/// ```
pub struct StreamJoined<K, V1, V2> {
    key_serde: Option<SharedSerde<K>>,
    value_serde: Option<SharedSerde<V1>>,
    other_value_serde: Option<SharedSerde<V2>>,
    store_name: Option<String>,
    supplier: Option<Arc<dyn KeyValueStoreSupplier>>,
    logging: bool,
}

impl<K, V1, V2> Default for StreamJoined<K, V1, V2> {
    fn default() -> Self {
        StreamJoined {
            key_serde: None,
            value_serde: None,
            other_value_serde: None,
            store_name: None,
            supplier: None,
            logging: true,
        }
    }
}

impl<K: 'static, V1: 'static, V2: 'static> StreamJoined<K, V1, V2> {
    /// Serdes known from upstream or the types' defaults; RocksDB stores with generated names.
    pub fn new() -> Self {
        Self::default()
    }
    /// These serdes for the key, this stream's values and the other stream's values.
    pub fn with(key: impl Serde<K>, value: impl Serde<V1>, other_value: impl Serde<V2>) -> Self {
        StreamJoined {
            key_serde: Some(Arc::new(key)),
            value_serde: Some(Arc::new(value)),
            other_value_serde: Some(Arc::new(other_value)),
            ..Self::default()
        }
    }
    /// Names the join's stores `<name>-this-join-store`, `<name>-other-join-store` (and, for outer and left
    /// joins, `<name>-outer-shared-join-store`); their changelogs follow.
    pub fn with_store_name(mut self, name: impl Into<String>) -> Self {
        self.store_name = Some(name.into());
        self
    }
    /// Keeps the join's stores in memory.
    pub fn in_memory(self) -> Self {
        self.with_store_kind(StoreKind::InMemory)
    }
    /// Chooses the stores' implementation.
    pub fn with_store_kind(mut self, kind: StoreKind) -> Self {
        self.supplier = Some(Arc::new(kind));
        self
    }
    /// No changelog topics for the join's stores.
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }
}

const HINT: &str = "StreamJoined::with(key_serde, value_serde, other_value_serde)";

impl<K: Data, V: Data> KStream<K, V> {
    fn stream_join<V2: Data, VR: Data, J>(
        &self,
        other: &KStream<K, V2>,
        kind: JoinKind,
        joiner: J,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR>
    where
        J: Fn(&K, Option<&V>, Option<&V2>) -> VR + Send + Sync + 'static,
    {
        let mut b = self.b.borrow_mut();
        let op = match kind {
            JoinKind::Inner => "join_stream",
            JoinKind::Left => "left_join_stream",
            JoinKind::Outer => "outer_join_stream",
        };
        b.check(windows.validate());
        let (this_prefix, other_prefix) = match kind {
            JoinKind::Outer => ("KSTREAM-OUTERTHIS-", "KSTREAM-OUTEROTHER-"),
            _ => ("KSTREAM-JOINTHIS-", "KSTREAM-JOINOTHER-"),
        };
        // Named as Kafka names a join given `StreamJoined.withName`: `<name>-this-join`, `<name>-other-join`
        // (`-outer-this-join`, `-outer-other-join` for outer joins) and `<name>-merge`.
        let (this_name, other_name, merge_name) = match &self.pending_name {
            Some(named) => {
                let n = named.resolve(&mut b, "KSTREAM-MERGE-");
                let outer = if kind == JoinKind::Outer {
                    "outer-"
                } else {
                    ""
                };
                (
                    format!("{n}-{outer}this-join"),
                    format!("{n}-{outer}other-join"),
                    format!("{n}-merge"),
                )
            }
            None => (
                b.name(this_prefix),
                b.name(other_prefix),
                b.name("KSTREAM-MERGE-"),
            ),
        };
        let (left_store, right_store, shared_store) = match &joined.store_name {
            Some(n) => (
                format!("{n}-this-join-store"),
                format!("{n}-other-join-store"),
                format!("{n}-outer-shared-join-store"),
            ),
            None => (
                format!("{this_name}-store"),
                format!("{other_name}-store"),
                format!("{merge_name}-outer-shared-join-store"),
            ),
        };
        let known_key = self.key_serde.clone().or_else(|| other.key_serde.clone());
        let k = b.check(pick_serde(&joined.key_serde, &known_key, op, "key", HINT));
        let v1 = b.check(pick_serde(
            &joined.value_serde,
            &self.value_serde,
            op,
            "value",
            HINT,
        ));
        let v2 = b.check(pick_serde(
            &joined.other_value_serde,
            &other.value_serde,
            op,
            "other value",
            HINT,
        ));
        let (Some(k), Some(v1), Some(v2)) = (k, v1, v2) else {
            drop(b);
            return KStream::new(self.b.clone(), merge_name, None, None, false);
        };
        // A key changed upstream: bring each side to the partition of its new key first.
        let mut left_input = self.node.clone();
        if self.repartition_required {
            left_input = b.repartition(
                &self.node,
                &format!("{this_name}-left"),
                k.clone(),
                v1.clone(),
                None,
            );
        }
        let mut right_input = other.node.clone();
        if other.repartition_required {
            right_input = b.repartition(
                &other.node,
                &format!("{other_name}-right"),
                k.clone(),
                v2.clone(),
                None,
            );
        }
        // Both sides' records of a key must reach the same task.
        let r = b
            .topology
            .add_copartition_group(&[&left_input, &right_input])
            .map(|_| ());
        b.check(r);
        let joiner = Arc::new(joiner);
        let unmatched: Option<Arc<str>> =
            (kind != JoinKind::Inner).then(|| Arc::from(shared_store.as_str()));
        let names = (
            Arc::<str>::from(left_store.as_str()),
            Arc::<str>::from(right_store.as_str()),
            unmatched.clone(),
        );
        let serdes = (k.clone(), v1.clone(), v2.clone());
        let trackers = TimeTrackers::default();
        {
            let (joiner, names, serdes) = (joiner.clone(), names.clone(), serdes.clone());
            let trackers = trackers.clone();
            b.add_processor::<K, V, _, _>(
                &this_name,
                move || {
                    JoinLeft(JoinCore::new_core(
                        kind,
                        windows,
                        joiner.clone(),
                        names.clone(),
                        serdes.clone(),
                        trackers.clone(),
                    ))
                },
                &[&left_input],
            );
        }
        b.add_processor::<K, V2, _, _>(
            &other_name,
            move || {
                JoinRight(JoinCore::new_core(
                    kind,
                    windows,
                    joiner.clone(),
                    names.clone(),
                    serdes.clone(),
                    trackers.clone(),
                ))
            },
            &[&right_input],
        );
        b.add_processor::<K, VR, _, _>(&merge_name, || PassThrough, &[&this_name, &other_name]);
        let supplier = joined
            .supplier
            .clone()
            .unwrap_or_else(|| Arc::new(StoreKind::default()));
        let windowed: SharedSerde<Windowed<K>> =
            Arc::new(TimeWindowedSerde::new(k.clone(), 0).with_sequence_numbers());
        // Both sides' stores are kept in time segments, for cheap expiry (Kafka's join stores are segmented).
        let join_retention = windows
            .before_ms
            .saturating_add(windows.after_ms)
            .saturating_add(windows.grace_ms);
        let segmented: Arc<dyn KeyValueStoreSupplier> =
            Arc::new(state_store::SegmentedStoreSupplier::new(
                supplier.clone(),
                state_store::SegmentKeySchema::WindowWithSequence,
                join_retention,
            ));
        let both = [this_name.as_str(), other_name.as_str()];
        let r = b
            .topology
            .add_state_store(
                KeyValueStoreBuilder::from_parts(
                    &left_store,
                    segmented.clone(),
                    windowed.clone(),
                    v1,
                )
                .with_logging(joined.logging)
                .with_caching(false),
                &both,
            )
            .map(|_| ());
        b.check(r);
        let r = b
            .topology
            .add_state_store(
                KeyValueStoreBuilder::from_parts(&right_store, segmented, windowed, v2)
                    .with_logging(joined.logging)
                    .with_caching(false),
                &both,
            )
            .map(|_| ());
        b.check(r);
        if unmatched.is_some() {
            let bytes: SharedSerde<Vec<u8>> = Arc::new(state_store::Serdes::bytes());
            let r = b
                .topology
                .add_state_store(
                    KeyValueStoreBuilder::from_parts(&shared_store, supplier, bytes.clone(), bytes)
                        .with_logging(joined.logging)
                        .with_caching(false),
                    &both,
                )
                .map(|_| ());
            b.check(r);
        }
        drop(b);
        KStream::new(self.b.clone(), merge_name, Some(k), None, false)
    }

    /// Joins each record with the other stream's records of the same key whose timestamps are within
    /// `windows` (inner join: records without a partner produce nothing). The result's timestamp is the later
    /// of the two.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders = builder.stream::<String, i64>("orders", Consumed::new());
    /// let payments = builder.stream::<String, i64>("payments", Consumed::new());
    /// orders
    ///     .join_stream(
    ///         &payments,
    ///         |amount, paid| format!("{amount} paid {paid}"),
    ///         JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60)),
    ///         StreamJoined::new().in_memory(),
    ///     )
    ///     .to("paid-orders", Produced::with(Serdes::string(), Serdes::string()));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    /// let o = driver.input_topic("orders", Serdes::string(), Serdes::i64());
    /// let p = driver.input_topic("payments", Serdes::string(), Serdes::i64());
    /// let out = driver.output_topic("paid-orders", Serdes::string(), Serdes::string());
    /// o.pipe_input_at("o1".into(), 30, 1_000).unwrap();
    /// p.pipe_input_at("o1".into(), 30, 20_000).unwrap(); // within a minute: joins
    /// p.pipe_input_at("o1".into(), 5, 90_000).unwrap(); // too late for the order
    /// assert_eq!(out.read_key_values_to_vec().unwrap(), vec![("o1".to_string(), "30 paid 30".to_string())]);
    /// ```
    pub fn join_stream<V2: Data, VR: Data, F>(
        &self,
        other: &KStream<K, V2>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR>
    where
        F: Fn(&V, &V2) -> VR + Send + Sync + 'static,
    {
        self.stream_join(
            other,
            JoinKind::Inner,
            move |_: &K, l: Option<&V>, r: Option<&V2>| match (l, r) {
                (Some(l), Some(r)) => joiner(l, r),
                _ => unreachable!("an inner join calls its joiner with both sides"),
            },
            windows,
            joined,
        )
    }

    /// Like [`KStream::join_stream`], and a record of this stream that found no partner by the time its window
    /// closed (stream time past its timestamp + `after` + grace) is emitted once, with `None`.
    pub fn left_join_stream<V2: Data, VR: Data, F>(
        &self,
        other: &KStream<K, V2>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR>
    where
        F: Fn(&V, Option<&V2>) -> VR + Send + Sync + 'static,
    {
        self.stream_join(
            other,
            JoinKind::Left,
            move |_: &K, l: Option<&V>, r: Option<&V2>| match l {
                Some(l) => joiner(l, r),
                None => unreachable!("a left join never emits a right record alone"),
            },
            windows,
            joined,
        )
    }

    /// Like [`KStream::left_join_stream`], for both sides: a record of either stream without a partner when its
    /// window closes is emitted once with `None` for the other side.
    pub fn outer_join_stream<V2: Data, VR: Data, F>(
        &self,
        other: &KStream<K, V2>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR>
    where
        F: Fn(Option<&V>, Option<&V2>) -> VR + Send + Sync + 'static,
    {
        self.stream_join(
            other,
            JoinKind::Outer,
            move |_: &K, l: Option<&V>, r: Option<&V2>| joiner(l, r),
            windows,
            joined,
        )
    }
}
