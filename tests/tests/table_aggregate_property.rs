//! Property: for random insert / update / delete sequences over several partitions, a table's
//! group_by + aggregate (count, sum, and the set of member keys) equals a plain computation over the final
//! table, and the in-memory and RocksDB stores give identical results, output stream included.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use streams_dsl::*;

#[derive(Debug, Clone)]
enum Op {
    Upsert(u8, u8, i32),
    Delete(u8),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            3 => (0u8..24, 0u8..5, -50i32..50).prop_map(|(k, g, v)| Op::Upsert(k, g, v)),
            1 => (0u8..24).prop_map(Op::Delete),
        ],
        1..60,
    )
}

/// Rows: key -> "group:amount".
fn topology(kind: StoreKind) -> Topology {
    let b = StreamsBuilder::new();
    let rows = b.table(
        "rows",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_store("rows-store").with_store_kind(kind),
    );
    let parse = |v: &String| -> (String, i64) {
        let (g, a) = v.split_once(':').expect("group:amount");
        (g.to_string(), a.parse().expect("amount"))
    };
    let grouped = rows.group_by(
        move |k, v| (parse(v).0, format!("{k}:{}", parse(v).1)),
        Grouped::new(),
    );
    grouped.count(Materialized::as_store("count").with_store_kind(kind));
    grouped
        .aggregate(
            || 0i64,
            |_, v, acc| acc + v.split_once(':').unwrap().1.parse::<i64>().unwrap(),
            |_, v, acc| Some(acc - v.split_once(':').unwrap().1.parse::<i64>().unwrap()),
            Materialized::as_store("sum").with_store_kind(kind),
        )
        .to_stream()
        .to("sums", Produced::new());
    grouped.aggregate(
        BTreeSet::new,
        |_, v, mut s: BTreeSet<String>| {
            s.insert(v.split_once(':').unwrap().0.to_string());
            s
        },
        |_, v, mut s: BTreeSet<String>| {
            s.remove(v.split_once(':').unwrap().0);
            (!s.is_empty()).then_some(s)
        },
        Materialized::as_store("members")
            .with_store_kind(kind)
            .with_value_serde(Serdes::json::<BTreeSet<String>>()),
    );
    b.build().unwrap()
}

struct Outcome {
    count: BTreeMap<String, i64>,
    sum: BTreeMap<String, i64>,
    members: BTreeMap<String, BTreeSet<String>>,
    sums_stream: Vec<(String, Option<i64>)>,
}

fn run(kind: StoreKind, partitions: i32, ops: &[Op]) -> (Outcome, BTreeMap<String, (String, i64)>) {
    let d = TopologyTestDriver::builder(topology(kind))
        .default_partitions(partitions)
        .build()
        .unwrap();
    let input = d.input_topic("rows", Serdes::string(), Serdes::option(Serdes::string()));
    let mut table: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Upsert(k, g, v) => {
                let (k, g) = (format!("r{k}"), format!("g{g}"));
                input
                    .pipe_input(k.clone(), Some(format!("{g}:{v}")))
                    .unwrap();
                table.insert(k, (g, i64::from(*v)));
            }
            Op::Delete(k) => {
                input.pipe_input(format!("r{k}"), None).unwrap();
                table.remove(&format!("r{k}"));
            }
        }
    }
    let all = |name: &str| {
        d.key_value_store::<String, i64>(name)
            .unwrap()
            .all()
            .unwrap()
            .into_iter()
            .collect()
    };
    let outcome = Outcome {
        count: all("count"),
        sum: all("sum"),
        members: d
            .key_value_store::<String, BTreeSet<String>>("members")
            .unwrap()
            .all()
            .unwrap()
            .into_iter()
            .collect(),
        sums_stream: d
            .output_topic("sums", Serdes::string(), Serdes::option(Serdes::i64()))
            .read_key_values_to_vec()
            .unwrap(),
    };
    (outcome, table)
}

fn check_against_reference(
    outcome: &Outcome,
    table: &BTreeMap<String, (String, i64)>,
) -> Result<(), TestCaseError> {
    let mut count: BTreeMap<String, i64> = BTreeMap::new();
    let mut sum: BTreeMap<String, i64> = BTreeMap::new();
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, (g, v)) in table {
        *count.entry(g.clone()).or_default() += 1;
        *sum.entry(g.clone()).or_default() += v;
        members.entry(g.clone()).or_default().insert(k.clone());
    }
    // Groups emptied by deletions or moves stay in count and sum at 0 (Kafka Streams' semantics).
    let nonzero =
        |m: &BTreeMap<String, i64>, reference: &BTreeMap<String, i64>| -> BTreeMap<String, i64> {
            m.iter()
                .filter(|(k, v)| **v != 0 || reference.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
    prop_assert_eq!(nonzero(&outcome.count, &count), count.clone());
    prop_assert!(outcome
        .count
        .iter()
        .all(|(g, c)| count.contains_key(g) || *c == 0));
    prop_assert_eq!(nonzero(&outcome.sum, &sum), sum.clone());
    prop_assert!(outcome
        .sum
        .iter()
        .all(|(g, s)| sum.contains_key(g) || *s == 0));
    prop_assert_eq!(&outcome.members, &members);
    // The change stream's last value per group is the group's sum.
    let last: BTreeMap<String, i64> = outcome
        .sums_stream
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
        .collect();
    prop_assert_eq!(nonzero(&last, &sum), sum);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn table_aggregation_equals_reference_in_memory(ops in ops(), partitions in 1i32..5) {
        let (outcome, table) = run(StoreKind::InMemory, partitions, &ops);
        check_against_reference(&outcome, &table)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn rocksdb_and_in_memory_stores_agree(ops in ops(), partitions in 1i32..5) {
        let (mem, table) = run(StoreKind::InMemory, partitions, &ops);
        let (rocks, _) = run(StoreKind::RocksDb, partitions, &ops);
        check_against_reference(&rocks, &table)?;
        prop_assert_eq!(&mem.count, &rocks.count);
        prop_assert_eq!(&mem.sum, &rocks.sum);
        prop_assert_eq!(&mem.members, &rocks.members);
        prop_assert_eq!(&mem.sums_stream, &rocks.sums_stream);
    }
}
