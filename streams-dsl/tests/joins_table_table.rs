//! KTable-KTable joins (inner, left, outer) through the test driver, over 2 to 4 partitions, against a plain
//! simulation: two HashMaps of rows and the join computed from them after every update.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use streams_dsl::*;

#[derive(Debug, Clone)]
enum Op {
    PutLeft(u8, i64),
    DeleteLeft(u8),
    PutRight(u8, i64),
    DeleteRight(u8),
}

impl Op {
    fn key(&self) -> u8 {
        match *self {
            Op::PutLeft(k, _) | Op::DeleteLeft(k) | Op::PutRight(k, _) | Op::DeleteRight(k) => k,
        }
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0u8..6, -50i64..50).prop_map(|(k, v)| Op::PutLeft(k, v)),
            1 => (0u8..6).prop_map(Op::DeleteLeft),
            3 => (0u8..6, -50i64..50).prop_map(|(k, v)| Op::PutRight(k, v)),
            1 => (0u8..6).prop_map(Op::DeleteRight),
        ],
        1..120,
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Inner,
    Left,
    Outer,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Inner), Just(Kind::Left), Just(Kind::Outer)]
}

/// The joined value of a key, from both sides' rows (`None`: no joined row).
fn joined(kind: Kind, l: Option<i64>, r: Option<i64>) -> Option<i64> {
    match (kind, l, r) {
        (_, Some(l), Some(r)) => Some(l * 100 + r),
        (Kind::Left | Kind::Outer, Some(l), None) => Some(l * 100 - 1),
        (Kind::Outer, None, Some(r)) => Some(700 + r),
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Case {
    kind: Kind,
    /// The left table is `filter`ed without a store (so it gets one for the join).
    filter_left: bool,
    /// The right table is `map_values`ed without a store.
    map_right: bool,
    materialized: bool,
    /// A downstream aggregation counts the joined rows (it asks the join for old values).
    count_classes: bool,
    partitions: i32,
    ops: Vec<Op>,
}

fn left_view(c: &Case, v: i64) -> Option<i64> {
    (!c.filter_left || v % 3 != 0).then_some(v)
}

fn right_view(c: &Case, v: i64) -> i64 {
    if c.map_right {
        v * 2
    } else {
        v
    }
}

fn key(k: u8) -> String {
    format!("k{k}")
}

fn topology(c: &Case) -> Topology {
    let b = StreamsBuilder::new();
    let mut left = b.table::<String, i64>("left", Consumed::new(), Materialized::new().in_memory());
    if c.filter_left {
        left = left.filter(|_, v| v % 3 != 0);
    }
    let mut right =
        b.table::<String, i64>("right", Consumed::new(), Materialized::new().in_memory());
    if c.map_right {
        right = right.map_values(|v| v * 2);
    }
    let m = || Materialized::as_store("joined").in_memory();
    let result = match (c.kind, c.materialized) {
        (Kind::Inner, false) => left.join(&right, |l, r| l * 100 + r),
        (Kind::Inner, true) => left.join_materialized(&right, |l, r| l * 100 + r, m()),
        (Kind::Left, false) => left.left_join(&right, |l, r| l * 100 + r.copied().unwrap_or(-1)),
        (Kind::Left, true) => {
            left.left_join_materialized(&right, |l, r| l * 100 + r.copied().unwrap_or(-1), m())
        }
        (Kind::Outer, false) => left.outer_join(&right, |l, r| {
            l.copied().unwrap_or(7) * 100 + r.copied().unwrap_or(-1)
        }),
        (Kind::Outer, true) => left.outer_join_materialized(
            &right,
            |l, r| l.copied().unwrap_or(7) * 100 + r.copied().unwrap_or(-1),
            m(),
        ),
    };
    result.to_stream().to("out", Produced::new());
    if c.count_classes {
        // Counting the joined rows by value class needs the join's old values (the retractions).
        result
            .group_by(|_, v| (v.rem_euclid(3), 1i64), Grouped::new())
            .count(Materialized::as_store("classes").in_memory());
    }
    b.build().unwrap()
}

fn check(c: Case) {
    let d = TopologyTestDriver::builder(topology(&c))
        .default_partitions(c.partitions)
        .build()
        .unwrap();
    let left_in = d.input_topic("left", Serdes::string(), OptionSerde::new(Serdes::i64()));
    let right_in = d.input_topic("right", Serdes::string(), OptionSerde::new(Serdes::i64()));
    let out = d.output_topic("out", Serdes::string(), OptionSerde::new(Serdes::i64()));
    let (mut l, mut r): (HashMap<u8, i64>, HashMap<u8, i64>) = Default::default();
    let expected =
        |c: &Case, l: &HashMap<u8, i64>, r: &HashMap<u8, i64>| -> BTreeMap<String, i64> {
            (0u8..6)
                .filter_map(|k| {
                    let lv = l.get(&k).and_then(|&v| left_view(c, v));
                    let rv = r.get(&k).map(|&v| right_view(c, v));
                    joined(c.kind, lv, rv).map(|j| (key(k), j))
                })
                .collect()
        };
    // The joined table as its change stream says it is.
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    for (i, op) in c.ops.iter().enumerate() {
        let before = expected(&c, &l, &r);
        let ts = i as i64;
        match *op {
            Op::PutLeft(k, v) => {
                l.insert(k, v);
                left_in.pipe_input_at(key(k), Some(v), ts).unwrap();
            }
            Op::DeleteLeft(k) => {
                l.remove(&k);
                left_in.pipe_input_at(key(k), None, ts).unwrap();
            }
            Op::PutRight(k, v) => {
                r.insert(k, v);
                right_in.pipe_input_at(key(k), Some(v), ts).unwrap();
            }
            Op::DeleteRight(k) => {
                r.remove(&k);
                right_in.pipe_input_at(key(k), None, ts).unwrap();
            }
        }
        let after = expected(&c, &l, &r);
        let changes = out.read_key_values_to_vec().unwrap();
        assert!(
            changes.len() <= 1,
            "one update makes at most one change: {changes:?}"
        );
        for (k, v) in &changes {
            assert_eq!(k, &key(op.key()), "a change of another key after {op:?}");
            match v {
                Some(v) => seen.insert(k.clone(), *v),
                None => seen.remove(k),
            };
        }
        assert_eq!(seen, after, "after op {i} ({op:?}) of {c:?}");
        if !c.filter_left {
            // Kafka's semantics: no output for a key that has no joined row before or after.
            let k = key(op.key());
            if !before.contains_key(&k) && !after.contains_key(&k) {
                assert!(changes.is_empty(), "{op:?} produced {changes:?}");
            }
        }
    }
    let after = expected(&c, &l, &r);
    if c.materialized {
        let store = d.key_value_store::<String, i64>("joined").unwrap();
        for k in 0u8..6 {
            assert_eq!(store.get(&key(k)).unwrap(), after.get(&key(k)).copied());
        }
    }
    if !c.count_classes {
        return;
    }
    let mut classes: BTreeMap<i64, i64> = BTreeMap::new();
    for v in after.values() {
        *classes.entry(v.rem_euclid(3)).or_default() += 1;
    }
    let counts = d.key_value_store::<i64, i64>("classes").unwrap();
    for class in 0..3 {
        let got = counts.get(&class).unwrap().unwrap_or(0);
        assert_eq!(
            got,
            classes.get(&class).copied().unwrap_or(0),
            "class {class}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn table_table_joins_match_a_hashmap(
        kind in kind(),
        materialized in any::<bool>(),
        count_classes in any::<bool>(),
        partitions in 2i32..=4,
        ops in ops(),
    ) {
        check(Case { kind, filter_left: false, map_right: false, materialized, count_classes, partitions, ops });
    }

    #[test]
    fn joins_of_tables_without_stores_match_a_hashmap(
        kind in kind(),
        filter_left in any::<bool>(),
        map_right in any::<bool>(),
        materialized in any::<bool>(),
        count_classes in any::<bool>(),
        partitions in 2i32..=4,
        ops in ops(),
    ) {
        check(Case { kind, filter_left, map_right, materialized, count_classes, partitions, ops });
    }
}

#[test]
fn differently_partitioned_tables_fail_at_build() {
    let b = StreamsBuilder::new();
    let left = b.table::<String, i64>("left", Consumed::new(), Materialized::new().in_memory());
    let right = b.table::<String, i64>("right", Consumed::new(), Materialized::new().in_memory());
    left.outer_join(&right, |l, r| {
        l.copied().unwrap_or(0) + r.copied().unwrap_or(0)
    })
    .to_stream()
    .to("out", Produced::new());
    let err = TopologyTestDriver::builder(b.build().unwrap())
        .partitions("left", 2)
        .partitions("right", 3)
        .build()
        .err()
        .expect("co-partitioning must be checked");
    let message = err.to_string();
    assert!(
        matches!(err, StreamsError::CopartitionMismatch { .. })
            && message.contains("left (2 partitions)")
            && message.contains("right (3 partitions)"),
        "{message}"
    );
}

#[test]
fn joined_table_is_queryable_only_when_named() {
    let b = StreamsBuilder::new();
    let left = b.table::<String, i64>("left", Consumed::new(), Materialized::new().in_memory());
    let right = b.table::<String, i64>("right", Consumed::new(), Materialized::new().in_memory());
    let plain = left.join(&right, |l, r| l + r);
    let named = left.join_materialized(&right, |l, r| l - r, Materialized::as_store("diff"));
    assert_eq!(plain.queryable_store_name(), None);
    assert_eq!(named.queryable_store_name(), Some("diff"));
    b.build().unwrap();
}
