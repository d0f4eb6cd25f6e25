//! KStream-KTable joins through the test driver, over 2 to 4 partitions, against a plain simulation: a HashMap
//! of the table's rows, consulted when each stream record arrives.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use streams_dsl::*;

/// One input, in the order they are piped.
#[derive(Debug, Clone)]
enum Op {
    /// Table row `k` set to the value.
    Put(u8, i64),
    /// Table row `k` deleted (tombstone).
    Delete(u8),
    /// Stream record with key `k`.
    Event(u8, i64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0u8..8, -50i64..50).prop_map(|(k, v)| Op::Put(k, v)),
            1 => (0u8..8).prop_map(Op::Delete),
            4 => (0u8..8, -50i64..50).prop_map(|(k, v)| Op::Event(k, v)),
        ],
        1..150,
    )
}

/// How the joined table is derived from its topic.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// The source table itself (it has a store).
    Source,
    /// `filter` without `Materialized` (no store of its own).
    Filtered,
    /// `map_values` without `Materialized` (no store of its own).
    Mapped,
}

impl Shape {
    /// What the derived table holds for a source row.
    fn view(self, v: i64) -> Option<i64> {
        match self {
            Shape::Source => Some(v),
            Shape::Filtered => (v % 3 != 0).then_some(v),
            Shape::Mapped => Some(v * 2),
        }
    }
}

struct Case {
    shape: Shape,
    left: bool,
    /// The stream arrives keyed `raw<k>` and is re-keyed to `k<k>` before the join (so it is repartitioned).
    rekey: bool,
    partitions: i32,
    ops: Vec<Op>,
}

fn key(k: u8) -> String {
    format!("k{k}")
}

fn topology(c: &Case) -> Topology {
    let b = StreamsBuilder::new();
    let source = b.table::<String, i64>("rows", Consumed::new(), Materialized::new().in_memory());
    let table = match c.shape {
        Shape::Source => source,
        Shape::Filtered => source.filter(|_, v| v % 3 != 0),
        Shape::Mapped => source.map_values(|v| v * 2),
    };
    let mut events = b.stream::<String, i64>("events", Consumed::new());
    if c.rekey {
        events = events.map(|k, v| (k.replace("raw", "k"), v));
    }
    let joined = if c.left {
        events.left_join(
            &table,
            |v, t| format!("{v}:{t:?}"),
            Joined::as_name("events-rows"),
        )
    } else {
        events.join(&table, |v, t| format!("{v}:{t}"), Joined::new())
    };
    joined.to("out", Produced::new());
    b.build().unwrap()
}

/// The expected output: each stream record joined with the table as it is at that point.
fn reference(c: &Case) -> Vec<(String, String)> {
    let mut rows: HashMap<u8, i64> = HashMap::new();
    let mut out = Vec::new();
    for op in &c.ops {
        match *op {
            Op::Put(k, v) => {
                rows.insert(k, v);
            }
            Op::Delete(k) => {
                rows.remove(&k);
            }
            Op::Event(k, v) => {
                let row = rows.get(&k).and_then(|&r| c.shape.view(r));
                match (c.left, row) {
                    (true, row) => out.push((key(k), format!("{v}:{row:?}"))),
                    (false, Some(row)) => out.push((key(k), format!("{v}:{row}"))),
                    (false, None) => {}
                }
            }
        }
    }
    out
}

fn per_key(records: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in records {
        m.entry(k.clone()).or_default().push(v.clone());
    }
    m
}

fn run(c: &Case) -> Vec<(String, String)> {
    let topology = topology(c);
    let repartition: Vec<String> = topology
        .internal_topics()
        .map(|t| t.name.clone())
        .filter(|t| t.ends_with("-repartition"))
        .collect();
    let mut builder = TopologyTestDriver::builder(topology).default_partitions(c.partitions);
    if c.rekey {
        // The stream's topic may then have any partition count: the repartition topic follows the table's.
        builder = builder.partitions("events", c.partitions + 1);
    }
    let d = builder.build().unwrap();
    if c.rekey {
        assert_eq!(repartition.len(), 1);
        if c.left {
            assert_eq!(repartition[0], "events-rows-repartition");
        }
        let topic = d.resolve_topic(&repartition[0]);
        assert_eq!(d.partitions_of(&topic), c.partitions, "{topic}");
    } else {
        assert!(repartition.is_empty(), "{repartition:?}");
    }
    let rows = d.input_topic("rows", Serdes::string(), OptionSerde::new(Serdes::i64()));
    let events = d.input_topic("events", Serdes::string(), Serdes::i64());
    for (ts, op) in c.ops.iter().enumerate() {
        let ts = ts as i64;
        match *op {
            Op::Put(k, v) => rows.pipe_input_at(key(k), Some(v), ts).unwrap(),
            Op::Delete(k) => rows.pipe_input_at(key(k), None, ts).unwrap(),
            Op::Event(k, v) => {
                let k = if c.rekey { format!("raw{k}") } else { key(k) };
                events.pipe_input_at(k, v, ts).unwrap()
            }
        }
    }
    d.output_topic("out", Serdes::string(), Serdes::string())
        .read_key_values_to_vec()
        .unwrap()
}

fn check(c: Case) {
    let got = run(&c);
    let expected = reference(&c);
    assert_eq!(got.len(), expected.len());
    assert_eq!(per_key(&got), per_key(&expected));
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Source),
        Just(Shape::Filtered),
        Just(Shape::Mapped)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn inner_join_matches_a_hashmap(shape in shape(), partitions in 2i32..=4, ops in ops()) {
        check(Case { shape, left: false, rekey: false, partitions, ops });
    }

    #[test]
    fn left_join_matches_a_hashmap(shape in shape(), partitions in 2i32..=4, ops in ops()) {
        check(Case { shape, left: true, rekey: false, partitions, ops });
    }

    #[test]
    fn rekeyed_stream_is_repartitioned_before_the_join(
        shape in shape(),
        left in any::<bool>(),
        partitions in 2i32..=4,
        ops in ops(),
    ) {
        check(Case { shape, left, rekey: true, partitions, ops });
    }
}

#[test]
fn join_on_rocksdb_stores_matches_a_hashmap() {
    // A default (RocksDB) table store, and a filtered table whose rows get a store of their own.
    let ops: Vec<Op> = (0..400u32)
        .map(|i| {
            let x = i.wrapping_mul(2_654_435_761) >> 7;
            let k = (x % 8) as u8;
            match x % 7 {
                0 => Op::Delete(k),
                1..=3 => Op::Put(k, (x % 97) as i64),
                _ => Op::Event(k, i as i64),
            }
        })
        .collect();
    let b = StreamsBuilder::new();
    let table = b
        .table::<String, i64>("rows", Consumed::new(), Materialized::new())
        .filter(|_, v| v % 3 != 0);
    b.stream::<String, i64>("events", Consumed::new())
        .left_join(&table, |v, t| format!("{v}:{t:?}"), Joined::new())
        .to("out", Produced::new());
    let d = TopologyTestDriver::builder(b.build().unwrap())
        .default_partitions(3)
        .build()
        .unwrap();
    let rows = d.input_topic("rows", Serdes::string(), OptionSerde::new(Serdes::i64()));
    let events = d.input_topic("events", Serdes::string(), Serdes::i64());
    for op in &ops {
        match *op {
            Op::Put(k, v) => rows.pipe_input(key(k), Some(v)).unwrap(),
            Op::Delete(k) => rows.pipe_input(key(k), None).unwrap(),
            Op::Event(k, v) => events.pipe_input(key(k), v).unwrap(),
        }
    }
    let got = d
        .output_topic("out", Serdes::string(), Serdes::string())
        .read_key_values_to_vec()
        .unwrap();
    let c = Case {
        shape: Shape::Filtered,
        left: true,
        rekey: false,
        partitions: 3,
        ops,
    };
    assert_eq!(per_key(&got), per_key(&reference(&c)));
}

#[test]
fn table_updates_alone_produce_nothing() {
    let c = Case {
        shape: Shape::Source,
        left: true,
        rekey: false,
        partitions: 2,
        ops: vec![Op::Put(1, 5), Op::Put(2, 6), Op::Delete(1)],
    };
    assert!(run(&c).is_empty());
}

#[test]
fn differently_partitioned_sides_fail_at_build() {
    let b = StreamsBuilder::new();
    let table = b.table::<String, i64>("rows", Consumed::new(), Materialized::new().in_memory());
    b.stream::<String, i64>("events", Consumed::new())
        .join(&table, |v, t| v + t, Joined::new())
        .to("out", Produced::new());
    let err = TopologyTestDriver::builder(b.build().unwrap())
        .partitions("events", 3)
        .partitions("rows", 4)
        .build()
        .err()
        .expect("co-partitioning must be checked");
    match &err {
        StreamsError::CopartitionMismatch { topics } => {
            let mut topics = topics.clone();
            topics.sort();
            assert_eq!(
                topics,
                vec![("events".to_string(), 3), ("rows".to_string(), 4)]
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("events (3 partitions)") && message.contains("rows (4 partitions)"),
        "{message}"
    );
}

#[test]
fn a_rekeyed_stream_joins_a_table_with_any_partition_count() {
    // Without a key change the same topology would fail the co-partitioning check; with one, the stream goes
    // through a repartition topic sized like the table's topic.
    let b = StreamsBuilder::new();
    let table = b.table::<String, i64>("rows", Consumed::new(), Materialized::new().in_memory());
    b.stream::<String, i64>("events", Consumed::new())
        .select_key(|k, _| k.to_uppercase())
        .join(&table, |v, t| v + t, Joined::as_name("upper"))
        .to("out", Produced::new());
    let topology = b.build().unwrap();
    let plan = topology
        .partition_plan("app", |t| Ok(if t == "events" { 7 } else { 3 }))
        .unwrap();
    assert_eq!(plan.topic_partitions.get("app-upper-repartition"), Some(&3));
    assert!(topology
        .copartition_groups()
        .iter()
        .any(|g| g.contains("upper-repartition") && g.contains("rows")));
}
