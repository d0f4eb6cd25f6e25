//! `to_table`, `process_values`, `KTable::transform_values`, `split` with `Branched`, dynamic topic routing and
//! `cogroup`, through the test driver with several partitions, against plain computations of the expected
//! result.

use std::collections::{BTreeMap, HashMap};

use streams_dsl::*;

fn driver(builder: StreamsBuilder, partitions: i32) -> TopologyTestDriver {
    TopologyTestDriver::builder(builder.build().unwrap())
        .default_partitions(partitions)
        .build()
        .unwrap()
}

/// Deterministic pseudo-random input: (key, value, timestamp) over a few keys.
fn input(n: usize, keys: u64, seed: u64) -> Vec<(String, i64, i64)> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (x >> 33) % keys;
            let v = ((x >> 13) % 1000) as i64 - 300;
            // Mostly increasing, sometimes earlier than the record before.
            let ts = 1_000 + i as i64 * 10 - ((x >> 40) % 4) as i64 * 15;
            (format!("k{k}"), v, ts)
        })
        .collect()
}

fn strings() -> Consumed<String, i64> {
    Consumed::with(Serdes::string(), Serdes::i64())
}

fn pipe(d: &TopologyTestDriver, topic: &str, data: &[(String, i64, i64)]) {
    let t = d.input_topic(topic, Serdes::string(), Serdes::i64());
    for (k, v, ts) in data {
        t.pipe_input_at(k.clone(), *v, *ts).unwrap();
    }
}

/// Output records grouped by key in their order (the order partitioning preserves).
fn per_key<K: Ord + Clone, V: Clone>(records: &[(K, V)]) -> BTreeMap<K, Vec<V>> {
    let mut m: BTreeMap<K, Vec<V>> = BTreeMap::new();
    for (k, v) in records {
        m.entry(k.clone()).or_default().push(v.clone());
    }
    m
}

fn store_map<K: Ord + 'static, V: 'static>(d: &TopologyTestDriver, store: &str) -> BTreeMap<K, V> {
    d.key_value_store::<K, V>(store)
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// to_table
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn to_table_keeps_the_last_value_per_key_and_forwards_every_update() {
    let b = StreamsBuilder::new();
    let table = b
        .stream("in", strings())
        .to_table_materialized(Materialized::as_store("latest"));
    assert_eq!(table.queryable_store_name(), Some("latest"));
    table.to_stream().to("out", Produced::new());
    let d = driver(b, 3);
    let data = input(500, 17, 1);
    pipe(&d, "in", &data);

    let mut last = BTreeMap::new();
    for (k, v, _) in &data {
        last.insert(k.clone(), *v);
    }
    assert_eq!(store_map::<String, i64>(&d, "latest"), last);
    let stamped = d
        .key_value_store::<String, ValueAndTimestamp<i64>>("latest")
        .unwrap();
    for (k, v, ts) in data.iter().rev() {
        // The newest record of each key wrote its row, with its own timestamp.
        if last.get(k) == Some(v) {
            let row = stamped.get(k).unwrap().unwrap();
            assert_eq!(row.value, *v);
            last.remove(k);
            assert_eq!(row.timestamp, *ts, "key {k}");
        }
    }

    let out = d
        .output_topic("out", Serdes::string(), OptionSerde::new(Serdes::i64()))
        .read_records_to_vec()
        .unwrap();
    let got: Vec<_> = out
        .iter()
        .map(|r| (r.key.clone(), (r.value, r.timestamp)))
        .collect();
    let want: Vec<_> = data
        .iter()
        .map(|(k, v, ts)| (k.clone(), (Some(*v), *ts)))
        .collect();
    assert_eq!(per_key(&got), per_key(&want));
}

#[test]
fn to_table_after_a_key_change_repartitions_by_the_new_key() {
    let b = StreamsBuilder::new();
    b.stream("in", strings())
        .select_key(|_, v| format!("m{}", v.rem_euclid(7)))
        .to_table_materialized(Materialized::as_store("by-residue"));
    let topology = b.build().unwrap();
    let description = topology.describe().to_string();
    assert!(
        description.contains("KSTREAM-TOTABLE-0000000002-repartition"),
        "{description}"
    );
    let d = TopologyTestDriver::builder(topology)
        .default_partitions(4)
        .build()
        .unwrap();
    let data = input(300, 50, 2);
    pipe(&d, "in", &data);
    let mut last = BTreeMap::new();
    for (_, v, _) in &data {
        last.insert(format!("m{}", v.rem_euclid(7)), *v);
    }
    assert_eq!(store_map::<String, i64>(&d, "by-residue"), last);
}

#[test]
fn to_table_with_deletes_removes_rows_on_none() {
    let b = StreamsBuilder::new();
    let values = || OptionSerde::new(Serdes::i64());
    b.stream("in", Consumed::with(Serdes::string(), values()))
        .to_table_with_deletes(Materialized::as_store("rows"))
        .to_stream()
        .to("out", Produced::new());
    let d = driver(b, 2);
    let data = input(400, 11, 3);
    let t = d.input_topic("in", Serdes::string(), values());
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut updates: Vec<(String, Option<i64>)> = Vec::new();
    for (k, v, ts) in &data {
        // A negative value multiple of 3 is a deletion.
        let value = (!(*v < 0 && v % 3 == 0)).then_some(*v);
        t.pipe_input_at(k.clone(), value, *ts).unwrap();
        match value {
            Some(v) => {
                expected.insert(k.clone(), v);
                updates.push((k.clone(), Some(v)));
            }
            None => {
                if expected.remove(k).is_some() {
                    updates.push((k.clone(), None));
                }
            }
        }
    }
    assert_eq!(store_map::<String, i64>(&d, "rows"), expected);
    let out = d
        .output_topic("out", Serdes::string(), values())
        .read_key_values_to_vec()
        .unwrap();
    assert_eq!(per_key(&out), per_key(&updates));
}

#[test]
fn to_table_feeds_a_table_group_by_with_old_values() {
    // The count of keys per value: needs the table's old values to move a key between groups.
    let b = StreamsBuilder::new();
    b.stream("in", strings())
        .map_values(|v| v.rem_euclid(5))
        .to_table()
        .group_by(|_, v| (*v, 1i64), Grouped::new())
        .count(Materialized::as_store("keys-per-residue"));
    let d = driver(b, 3);
    let data = input(400, 23, 4);
    pipe(&d, "in", &data);
    let mut latest = HashMap::new();
    for (k, v, _) in &data {
        latest.insert(k.clone(), v.rem_euclid(5));
    }
    let mut counts = BTreeMap::new();
    for v in latest.values() {
        *counts.entry(*v).or_insert(0i64) += 1;
    }
    let got: BTreeMap<i64, i64> = store_map::<i64, i64>(&d, "keys-per-residue")
        .into_iter()
        .filter(|(_, c)| *c != 0)
        .collect();
    assert_eq!(got, counts);
}

// ---------------------------------------------------------------------------------------------------------------
// process_values
// ---------------------------------------------------------------------------------------------------------------

/// Forwards, for each record, `value` copies of (running sum of the key's values) each a millisecond later;
/// nothing for values below 1. Keeps the running sum in the store "sums".
struct Expand;

impl FixedKeyProcessor<String, i64> for Expand {
    type VOut = i64;

    fn process(
        &mut self,
        record: FixedKeyRecord<String, i64>,
        ctx: &mut FixedKeyProcessorContext<'_, String, i64>,
    ) -> Result<(), StreamsError> {
        let mut sums = ctx.key_value_store::<String, i64>("sums")?;
        let sum = sums.get(record.key())?.unwrap_or(0) + record.value();
        sums.put(record.key(), &sum)?;
        let copies = record.value().rem_euclid(4) - 1;
        let ts = record.timestamp();
        for i in 0..copies {
            ctx.forward(record.clone().with_value(sum).with_timestamp(ts + i))?;
        }
        Ok(())
    }
}

fn sums_store() -> KeyValueStoreBuilder<String, i64> {
    KeyValueStoreBuilder::new("sums", StoreKind::InMemory, Serdes::string(), Serdes::i64())
}

#[test]
fn process_values_keeps_keys_and_may_forward_several_records() {
    let b = StreamsBuilder::new();
    b.add_state_store(sums_store());
    b.stream("in", strings())
        .process_values(|| Expand, &["sums"])
        .to("out", Produced::new());
    let d = driver(b, 3);
    let data = input(400, 13, 7);
    pipe(&d, "in", &data);

    let mut sums = HashMap::new();
    let mut want = Vec::new();
    for (k, v, ts) in &data {
        let sum = sums.entry(k.clone()).or_insert(0i64);
        *sum += v;
        for i in 0..v.rem_euclid(4) - 1 {
            want.push((k.clone(), (*sum, ts + i)));
        }
    }
    let got: Vec<_> = d
        .output_topic("out", Serdes::string(), Serdes::i64())
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, (r.value, r.timestamp)))
        .collect();
    assert_eq!(per_key(&got), per_key(&want));
    let sums: BTreeMap<_, _> = sums.into_iter().collect();
    assert_eq!(store_map::<String, i64>(&d, "sums"), sums);
}

#[test]
fn process_values_needs_no_repartition_where_process_does() {
    struct Same;
    impl Processor<String, i64> for Same {
        type KOut = String;
        type VOut = i64;
        fn process(
            &mut self,
            r: Record<String, i64>,
            ctx: &mut ProcessorContext<String, i64>,
        ) -> Result<(), StreamsError> {
            ctx.forward(r)
        }
    }
    let count_after = |fixed: bool| {
        let b = StreamsBuilder::new();
        let s = b.stream("in", strings());
        let s = if fixed {
            b.add_state_store(sums_store());
            s.process_values(|| Expand, &["sums"])
        } else {
            s.process(|| Same, &[])
        };
        s.group_by_key(Grouped::new())
            .count(Materialized::as_store("counts"));
        let t = b.build().unwrap();
        t.internal_topics().count()
    };
    assert_eq!(count_after(true), 0);
    assert_eq!(count_after(false), 1);

    // A key change upstream still repartitions after process_values.
    let b = StreamsBuilder::new();
    b.add_state_store(sums_store());
    b.stream("in", strings())
        .select_key(|_, v| format!("r{}", v.rem_euclid(3)))
        .process_values(|| Expand, &["sums"])
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("counts"));
    let t = b.build().unwrap();
    assert_eq!(t.internal_topics().count(), 1);
}

#[test]
fn process_values_with_an_unknown_store_fails_the_build() {
    let b = StreamsBuilder::new();
    b.stream("in", strings())
        .process_values(|| Expand, &["no-such-store"])
        .to("out", Produced::new());
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("no-such-store"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------------
// KTable::transform_values
// ---------------------------------------------------------------------------------------------------------------

/// Stateless: the value modulo 5, deleting rows whose value is a multiple of 7.
struct Residue;

impl ValueTransformerWithKey<String, i64> for Residue {
    type VOut = i64;
    fn transform(
        &mut self,
        _key: &String,
        value: Option<&i64>,
        _ctx: &ValueTransformerContext<'_, String, i64>,
    ) -> Result<Option<i64>, StreamsError> {
        Ok(value.filter(|v| *v % 7 != 0).map(|v| v.rem_euclid(5)))
    }
}

/// Stateful: the number of updates of the key so far (in the store "updates"), plus the update's timestamp
/// parity; deletions stay deletions.
struct UpdateCount;

impl ValueTransformerWithKey<String, i64> for UpdateCount {
    type VOut = i64;
    fn transform(
        &mut self,
        key: &String,
        value: Option<&i64>,
        ctx: &ValueTransformerContext<'_, String, i64>,
    ) -> Result<Option<i64>, StreamsError> {
        let mut updates = ctx.key_value_store::<String, i64>("updates")?;
        let n = updates.get(key)?.unwrap_or(0) + 1;
        updates.put(key, &n)?;
        Ok(value.map(|_| n * 10 + ctx.timestamp().rem_euclid(2)))
    }
}

fn table_input(
    d: &TopologyTestDriver,
    data: &[(String, i64, i64)],
) -> Vec<(String, Option<i64>, i64)> {
    let t = d.input_topic("in", Serdes::string(), OptionSerde::new(Serdes::i64()));
    let mut piped = Vec::new();
    for (k, v, ts) in data {
        // Values above 600 are deletions.
        let value = (*v <= 600).then_some(*v);
        t.pipe_input_at(k.clone(), value, *ts).unwrap();
        piped.push((k.clone(), value, *ts));
    }
    piped
}

#[test]
fn transform_values_stateless_gives_old_values_to_a_group_by() {
    let b = StreamsBuilder::new();
    let t = b
        .table(
            "in",
            Consumed::with(Serdes::string(), Serdes::i64()),
            Materialized::new(),
        )
        .transform_values(|| Residue, &[]);
    t.to_stream().to("out", Produced::new());
    t.group_by(|_, r| (*r, 1i64), Grouped::new())
        .count(Materialized::as_store("per-residue"));
    let d = driver(b, 3);
    let data: Vec<_> = input(500, 19, 8)
        .into_iter()
        .map(|(k, v, ts)| (k, v + 300, ts))
        .collect();
    let piped = table_input(&d, &data);

    // The table upstream and the transformed rows, computed directly.
    let mut rows: HashMap<String, i64> = HashMap::new();
    let mut want = Vec::new();
    for (k, v, _) in &piped {
        match v {
            Some(v) => {
                rows.insert(k.clone(), *v);
                want.push((
                    k.clone(),
                    Some(*v).filter(|v| v % 7 != 0).map(|v| v.rem_euclid(5)),
                ));
            }
            None => {
                if rows.remove(k).is_some() {
                    want.push((k.clone(), None));
                }
            }
        }
    }
    let got = d
        .output_topic("out", Serdes::string(), OptionSerde::new(Serdes::i64()))
        .read_key_values_to_vec()
        .unwrap();
    assert_eq!(per_key(&got), per_key(&want));
    let mut counts = BTreeMap::new();
    for v in rows.values().filter(|v| *v % 7 != 0) {
        *counts.entry(v.rem_euclid(5)).or_insert(0i64) += 1;
    }
    let stored: BTreeMap<i64, i64> = store_map::<i64, i64>(&d, "per-residue")
        .into_iter()
        .filter(|(_, c)| *c != 0)
        .collect();
    assert_eq!(stored, counts);
}

#[test]
fn transform_values_materialized_stateful_takes_old_values_from_its_store() {
    let b = StreamsBuilder::new();
    b.add_state_store(KeyValueStoreBuilder::new(
        "updates",
        StoreKind::InMemory,
        Serdes::string(),
        Serdes::i64(),
    ));
    let t = b
        .table(
            "in",
            Consumed::with(Serdes::string(), Serdes::i64()),
            Materialized::new(),
        )
        .transform_values_materialized(
            || UpdateCount,
            Materialized::as_store("transformed"),
            &["updates"],
        );
    assert_eq!(t.queryable_store_name(), Some("transformed"));
    // The sum over all keys of their transformed rows, kept with adder and subtractor.
    t.group_by(|_, v| ("all".to_string(), *v), Grouped::new())
        .reduce(
            |a, v| a + v,
            |a, v| Some(a - v),
            Materialized::as_store("sum"),
        );
    let d = driver(b, 3);
    let data: Vec<_> = input(400, 11, 9)
        .into_iter()
        .map(|(k, v, ts)| (k, v + 300, ts))
        .collect();
    let piped = table_input(&d, &data);

    let mut updates: HashMap<String, i64> = HashMap::new();
    let mut rows: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v, ts) in &piped {
        if v.is_none() && !rows.contains_key(k) {
            continue; // The table source forwards nothing for a deletion of an absent row.
        }
        let n = updates.entry(k.clone()).or_insert(0);
        *n += 1;
        match v {
            Some(_) => {
                rows.insert(k.clone(), *n * 10 + ts.rem_euclid(2));
            }
            None => {
                rows.remove(k);
            }
        }
    }
    assert_eq!(store_map::<String, i64>(&d, "transformed"), rows);
    let sum: i64 = rows.values().sum();
    assert_eq!(
        d.key_value_store::<String, i64>("sum")
            .unwrap()
            .get(&"all".to_string())
            .unwrap(),
        Some(sum)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// split with Branched
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn split_with_branched_routes_like_a_first_match_and_names_like_kafka() {
    let b = StreamsBuilder::new();
    let branches = b
        .stream("in", strings())
        .split()
        .branch_with(|_, v| *v < -100, Branched::new())
        .branch_with(
            |_, v| *v < 0,
            Branched::with_function(|s: KStream<String, i64>| s.map_values(|v| -v))
                .with_name("neg"),
        )
        .branch_with(
            |_, v| v % 2 == 0,
            Branched::with_consumer(|s: KStream<String, i64>| s.to("even", Produced::new())),
        )
        .default_branch_with(Branched::new());
    let mut names: Vec<_> = branches.keys().cloned().collect();
    names.sort();
    // split() names the splitter KSTREAM-BRANCH-<n> and its branches after it, as Kafka does.
    assert_eq!(
        names,
        vec![
            "KSTREAM-BRANCH-00000000010",
            "KSTREAM-BRANCH-00000000011",
            "KSTREAM-BRANCH-0000000001neg"
        ]
    );
    branches["KSTREAM-BRANCH-00000000011"].to("very-negative", Produced::new());
    branches["KSTREAM-BRANCH-0000000001neg"].to("negated", Produced::new());
    branches["KSTREAM-BRANCH-00000000010"].to("odd", Produced::new());
    let d = driver(b, 3);
    let data = input(500, 13, 10);
    pipe(&d, "in", &data);
    let read = |t: &str| {
        let out = d
            .output_topic(t, Serdes::string(), Serdes::i64())
            .read_key_values_to_vec()
            .unwrap();
        per_key(&out)
    };
    let (mut very, mut neg, mut even, mut odd) = (vec![], vec![], vec![], vec![]);
    for (k, v, _) in &data {
        let r = (k.clone(), *v);
        if *v < -100 {
            very.push(r);
        } else if *v < 0 {
            neg.push((k.clone(), -v));
        } else if v % 2 == 0 {
            even.push(r);
        } else {
            odd.push(r);
        }
    }
    assert_eq!(read("very-negative"), per_key(&very));
    assert_eq!(read("negated"), per_key(&neg));
    assert_eq!(read("even"), per_key(&even));
    assert_eq!(read("odd"), per_key(&odd));
}

#[test]
fn split_with_two_branches_of_one_name_fails_the_build() {
    let b = StreamsBuilder::new();
    let _ = b
        .stream("in", strings())
        .split_named("s-")
        .branch("x", |_, v| *v < 0)
        .branch("x", |_, v| *v > 0)
        .no_default_branch();
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("s-x"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------------
// to_dynamic
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn to_dynamic_routes_by_record_and_source_topic() {
    let b = StreamsBuilder::new();
    b.streams(&["a", "b"], strings()).to_dynamic(
        |_k: &String, v: &i64, ctx: &RecordContext<'_>| {
            let sign = if *v < 0 { "neg" } else { "pos" };
            format!("{}-{sign}", ctx.topic().unwrap_or("?"))
        },
        &["a-neg", "a-pos", "b-neg", "b-pos"],
        Produced::new(),
    );
    let topology = b.build().unwrap();
    let description = topology.describe().to_string();
    for t in ["a-neg", "a-pos", "b-neg", "b-pos"] {
        assert!(
            description.contains(&format!("(topic: {t})")),
            "{description}"
        );
    }
    let d = TopologyTestDriver::builder(topology)
        .default_partitions(3)
        .partitions("b-pos", 5)
        .build()
        .unwrap();
    let (da, db) = (input(200, 7, 11), input(200, 7, 12));
    pipe(&d, "a", &da);
    pipe(&d, "b", &db);
    for (src, data) in [("a", &da), ("b", &db)] {
        for sign in ["neg", "pos"] {
            let topic = format!("{src}-{sign}");
            let got = d
                .output_topic(&topic, Serdes::string(), Serdes::i64())
                .read_records_to_vec()
                .unwrap();
            let partitions = if topic == "b-pos" { 5 } else { 3 };
            for r in &got {
                // Default partitioning by the key, over the chosen topic's partitions.
                assert_eq!(
                    r.partition,
                    Some(default_partition(r.key.as_bytes(), partitions)),
                    "{topic}"
                );
            }
            let got: Vec<_> = got
                .into_iter()
                .map(|r| (r.key, (r.value, r.timestamp)))
                .collect();
            let want: Vec<_> = data
                .iter()
                .filter(|(_, v, _)| (*v < 0) == (sign == "neg"))
                .map(|(k, v, ts)| (k.clone(), (*v, *ts)))
                .collect();
            assert_eq!(per_key(&got), per_key(&want), "{topic}");
        }
    }
}

#[test]
fn to_dynamic_never_writes_to_an_undeclared_topic() {
    let b = StreamsBuilder::new();
    b.stream("in", strings()).to_dynamic(
        |k: &String, _: &i64, _: &RecordContext<'_>| format!("out-{k}"),
        &["out-k0"],
        Produced::new(),
    );
    let d = driver(b, 1);
    let t = d.input_topic("in", Serdes::string(), Serdes::i64());
    t.pipe_input("k0".to_string(), 1).unwrap();
    let e = t.pipe_input("k1".to_string(), 2).unwrap_err().to_string();
    assert!(e.contains("out-k1") && e.contains("out-k0"), "{e}");
    let out = d
        .output_topic("out-k0", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    assert_eq!(out, vec![("k0".to_string(), 1)]);
    let undeclared = d
        .output_topic("out-k1", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    assert!(undeclared.is_empty());
}

#[test]
fn to_dynamic_without_topics_fails_the_build() {
    let b = StreamsBuilder::new();
    b.stream("in", strings()).to_dynamic(
        |_: &String, _: &i64, _: &RecordContext<'_>| "x".to_string(),
        &[],
        Produced::new(),
    );
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("to_dynamic") && e.contains("no topic"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------------
// cogroup
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn cogroup_folds_inputs_of_different_types_into_one_aggregate() {
    let b = StreamsBuilder::new();
    // Amounts keyed by account; labels re-keyed by their first character (so repartitioned); counts per key.
    let amounts = b.stream("amounts", strings()).group_by_key(Grouped::new());
    let labels = b
        .stream("labels", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by(|_, v: &String| format!("k{}", v.len() % 5), Grouped::new());
    let events = b
        .stream("events", strings())
        .select_key(|k, _| k.clone())
        .group_by_key(Grouped::as_name("events-by-key"));
    let table = amounts
        .cogroup(|_, v: &i64, (sum, n, l): (i64, i64, i64)| (sum + v, n, l))
        .cogroup(&labels, |_, v: &String, (sum, n, l)| {
            (sum, n, l + v.len() as i64)
        })
        .cogroup(&events, |_, _: &i64, (sum, n, l)| (sum, n + 1, l))
        .aggregate(
            || (0, 0, 0),
            Materialized::as_store("cogrouped").with_value_serde(JsonSerde::default()),
        );
    assert_eq!(table.queryable_store_name(), Some("cogrouped"));
    let topology = b.build().unwrap();
    let mut topics: Vec<String> = topology.internal_topics().map(|t| t.name.clone()).collect();
    topics.sort();
    assert_eq!(
        topics,
        vec!["cogrouped-repartition", "events-by-key-repartition"]
    );
    let d = TopologyTestDriver::builder(topology)
        .default_partitions(3)
        .build()
        .unwrap();
    let (a, e) = (input(300, 5, 13), input(200, 5, 14));
    pipe(&d, "amounts", &a);
    pipe(&d, "events", &e);
    let labels_in = d.input_topic("labels", Serdes::string(), Serdes::string());
    let mut want: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    let mut latest: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v, ts) in input(250, 9, 15) {
        let label = "x".repeat((v.unsigned_abs() % 11) as usize);
        labels_in.pipe_input_at(k, label.clone(), ts).unwrap();
        let key = format!("k{}", label.len() % 5);
        want.entry(key.clone()).or_default().2 += label.len() as i64;
        let t = latest.entry(key).or_insert(i64::MIN);
        *t = (*t).max(ts);
    }
    for (k, v, ts) in &a {
        want.entry(k.clone()).or_default().0 += v;
        let t = latest.entry(k.clone()).or_insert(i64::MIN);
        *t = (*t).max(*ts);
    }
    for (k, _, ts) in &e {
        want.entry(k.clone()).or_default().1 += 1;
        let t = latest.entry(k.clone()).or_insert(i64::MIN);
        *t = (*t).max(*ts);
    }
    assert_eq!(store_map::<String, (i64, i64, i64)>(&d, "cogrouped"), want);
    // Each aggregate carries the latest timestamp of the records folded into it.
    let stamped = d
        .key_value_store::<String, ValueAndTimestamp<(i64, i64, i64)>>("cogrouped")
        .unwrap();
    for (k, ts) in &latest {
        assert_eq!(stamped.get(k).unwrap().unwrap().timestamp, *ts, "{k}");
    }
}

#[test]
fn cogroup_result_is_a_table_that_sends_old_values() {
    // Re-grouping the cogrouped table by parity of its value counts keys per parity.
    let b = StreamsBuilder::new();
    let one = b.stream("one", strings()).group_by_key(Grouped::new());
    let two = b.stream("two", strings()).group_by_key(Grouped::new());
    one.cogroup(|_, v: &i64, agg: i64| agg + v)
        .cogroup(&two, |_, v: &i64, agg: i64| agg - v)
        .aggregate(|| 0, Materialized::new())
        .group_by(|_, v| (v.rem_euclid(2), 1i64), Grouped::new())
        .count(Materialized::as_store("parity"));
    let d = driver(b, 2);
    let (d1, d2) = (input(200, 8, 16), input(200, 8, 17));
    pipe(&d, "one", &d1);
    pipe(&d, "two", &d2);
    let mut agg: HashMap<String, i64> = HashMap::new();
    for (k, v, _) in &d1 {
        *agg.entry(k.clone()).or_default() += v;
    }
    for (k, v, _) in &d2 {
        *agg.entry(k.clone()).or_default() -= v;
    }
    let mut want = BTreeMap::new();
    for v in agg.values() {
        *want.entry(v.rem_euclid(2)).or_insert(0i64) += 1;
    }
    let got: BTreeMap<i64, i64> = store_map::<i64, i64>(&d, "parity")
        .into_iter()
        .filter(|(_, c)| *c != 0)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn time_windowed_cogroup_aggregates_each_window_of_both_inputs() {
    use std::time::Duration;
    let b = StreamsBuilder::new();
    let one = b.stream("one", strings()).group_by_key(Grouped::new());
    let two = b
        .stream("two", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new());
    // Windows of 100 ms every 40 ms; grace covers the input's disorder, so no record is dropped.
    let windows =
        TimeWindows::of_size_and_grace(Duration::from_millis(100), Duration::from_secs(10))
            .advance_by(Duration::from_millis(40));
    one.cogroup(|_, v: &i64, (sum, len): (i64, i64)| (sum + v, len))
        .cogroup(&two, |_, v: &String, (sum, len)| {
            (sum, len + v.len() as i64)
        })
        .windowed_by(windows)
        .aggregate(
            || (0, 0),
            Materialized::as_store("windowed-cogroup")
                .with_value_serde(JsonSerde::default())
                .with_retention(Duration::from_secs(3600)),
        );
    let d = driver(b, 3);
    let d1 = input(300, 6, 18);
    pipe(&d, "one", &d1);
    let t2 = d.input_topic("two", Serdes::string(), Serdes::string());
    let d2: Vec<_> = input(300, 6, 19)
        .into_iter()
        .map(|(k, v, ts)| (k, "y".repeat((v.unsigned_abs() % 7) as usize), ts))
        .collect();
    for (k, v, ts) in &d2 {
        t2.pipe_input_at(k.clone(), v.clone(), *ts).unwrap();
    }
    // Each record counts in every window [start, start + 100) with start a multiple of 40.
    let starts = |ts: i64| {
        let last = ts - ts.rem_euclid(40);
        (0..)
            .map(move |i| last - 40 * i)
            .take_while(move |s| *s > ts - 100 && *s >= 0)
    };
    let mut want: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for (k, v, ts) in &d1 {
        for s in starts(*ts) {
            want.entry((k.clone(), s)).or_default().0 += v;
        }
    }
    for (k, v, ts) in &d2 {
        for s in starts(*ts) {
            want.entry((k.clone(), s)).or_default().1 += v.len() as i64;
        }
    }
    let got: BTreeMap<(String, i64), (i64, i64)> = d
        .key_value_store::<Windowed<String>, (i64, i64)>("windowed-cogroup")
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .map(|(k, v)| ((k.key, k.window.start), v))
        .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------------------------------------------
// Named
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn named_operators_use_the_given_names() {
    let b = StreamsBuilder::new();
    b.add_state_store(sums_store());
    let t = b
        .stream("in", strings())
        .process_values_named(|| Expand, Named::as_name("expand"), &["sums"])
        .select_key(|k, _| k.clone())
        .to_table_named(Named::as_name("latest"), Materialized::new())
        .transform_values_named(|| Residue, None, Named::as_name("residue"), &[]);
    assert_eq!(t.node_name(), "residue");
    let description = b.build().unwrap().describe().to_string();
    for line in [
        "Processor: expand (stores: [sums])",
        "(topic: latest-repartition)",
        "Processor: latest (stores: [",
        "Processor: residue (stores: [])",
    ] {
        assert!(description.contains(line), "{line} in {description}");
    }
}

#[test]
fn an_invalid_name_is_reported_by_build() {
    for bad in ["", "has space", &"x".repeat(250)] {
        let b = StreamsBuilder::new();
        b.stream("in", strings())
            .to_table_named(Named::as_name(bad), Materialized::new());
        let e = b.build().unwrap_err().to_string();
        assert!(e.contains("Named::as_name"), "{e}");
    }
}
