//! Each DSL operator through the test driver, with several partitions, against a plain computation of the
//! expected result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use streams_dsl::*;

fn driver(builder: StreamsBuilder, partitions: i32) -> TopologyTestDriver {
    TopologyTestDriver::builder(builder.build().unwrap())
        .default_partitions(partitions)
        .build()
        .unwrap()
}

/// Deterministic pseudo-random input: (key, value) pairs over a few keys.
fn input(n: usize, keys: u64, seed: u64) -> Vec<(String, i64)> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (x >> 33) % keys;
            let v = ((x >> 13) % 1000) as i64 - 300;
            (format!("k{k}"), v)
        })
        .collect()
}

fn strings() -> Consumed<String, i64> {
    Consumed::with(Serdes::string(), Serdes::i64())
}

/// Sorted values per key: for re-keyed output, records of one new key come from several input partitions, so
/// only the multiset per key is determined.
fn multiset_per_key<K: Ord + Clone, V: Clone + Ord>(records: &[(K, V)]) -> BTreeMap<K, Vec<V>> {
    let mut m = per_key(records);
    m.values_mut().for_each(|v| v.sort());
    m
}

/// Groups output records by key, keeping their order per key (the order that partitioning preserves).
fn per_key<K: Ord + Clone, V: Clone>(records: &[(K, V)]) -> BTreeMap<K, Vec<V>> {
    let mut m: BTreeMap<K, Vec<V>> = BTreeMap::new();
    for (k, v) in records {
        m.entry(k.clone()).or_default().push(v.clone());
    }
    m
}

#[test]
fn filter_and_filter_not_partition_the_input() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", strings());
    s.filter(|_, v| v % 2 == 0).to("even", Produced::new());
    s.filter_not(|_, v| v % 2 == 0).to("odd", Produced::new());
    let d = driver(b, 3);
    let data = input(500, 17, 1);
    d.input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_key_values(data.clone())
        .unwrap();
    let even = d
        .output_topic("even", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let odd = d
        .output_topic("odd", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let exp_even: Vec<_> = data.iter().filter(|(_, v)| v % 2 == 0).cloned().collect();
    let exp_odd: Vec<_> = data.iter().filter(|(_, v)| v % 2 != 0).cloned().collect();
    assert_eq!(per_key(&even), per_key(&exp_even));
    assert_eq!(per_key(&odd), per_key(&exp_odd));
    assert_eq!(even.len() + odd.len(), data.len());
}

#[test]
fn map_select_key_and_map_values() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", strings());
    s.map(|k, v| (v, k))
        .to("swapped", Produced::with(Serdes::i64(), Serdes::string()));
    s.select_key(|k, v| format!("{k}/{}", v.rem_euclid(3)))
        .to("rekeyed", Produced::new());
    s.map_values(|v| v * 10).to("times10", Produced::new());
    s.map_values_with_key(|k, v| format!("{k}={v}"))
        .to("described", Produced::new());
    let d = driver(b, 4);
    let data = input(300, 11, 2);
    d.input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_key_values(data.clone())
        .unwrap();

    let swapped = d
        .output_topic("swapped", Serdes::i64(), Serdes::string())
        .read_key_values_to_vec()
        .unwrap();
    let exp: Vec<_> = data.iter().map(|(k, v)| (*v, k.clone())).collect();
    assert_eq!(multiset_per_key(&swapped), multiset_per_key(&exp));

    let rekeyed = d
        .output_topic("rekeyed", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let exp: Vec<_> = data
        .iter()
        .map(|(k, v)| (format!("{k}/{}", v.rem_euclid(3)), *v))
        .collect();
    // Each new key comes from one old key, hence one input partition: order per key is kept.
    assert_eq!(per_key(&rekeyed), per_key(&exp));

    let t10 = d
        .output_topic("times10", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let exp: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v * 10)).collect();
    assert_eq!(per_key(&t10), per_key(&exp));

    let described = d
        .output_topic("described", Serdes::string(), Serdes::string())
        .read_key_values_to_vec()
        .unwrap();
    let exp: Vec<_> = data
        .iter()
        .map(|(k, v)| (k.clone(), format!("{k}={v}")))
        .collect();
    assert_eq!(per_key(&described), per_key(&exp));
}

#[test]
fn flat_map_and_flat_map_values() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", strings());
    s.flat_map(|k, v| {
        (0..v.rem_euclid(4))
            .map(move |i| (format!("{k}#{i}"), v + i))
            .collect::<Vec<_>>()
    })
    .to("fm", Produced::new());
    s.flat_map_values(|_, v| if v > 0 { vec![v, -v] } else { vec![] })
        .to("fmv", Produced::new());
    let d = driver(b, 3);
    let data = input(200, 9, 3);
    d.input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_key_values(data.clone())
        .unwrap();

    // Each new key "k#i" comes from the one old key k: order per key is kept.
    let fm = d
        .output_topic("fm", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let mut exp = Vec::new();
    for (k, v) in &data {
        for i in 0..v.rem_euclid(4) {
            exp.push((format!("{k}#{i}"), v + i));
        }
    }
    assert_eq!(per_key(&fm), per_key(&exp));

    let fmv = d
        .output_topic("fmv", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let exp: Vec<_> = data
        .iter()
        .filter(|(_, v)| *v > 0)
        .flat_map(|(k, v)| [(k.clone(), *v), (k.clone(), -v)])
        .collect();
    assert_eq!(per_key(&fmv), per_key(&exp));
}

#[test]
fn peek_and_foreach_see_every_record() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let each = Arc::new(Mutex::new(0usize));
    let b = StreamsBuilder::new();
    let (s1, e1) = (seen.clone(), each.clone());
    let s = b
        .stream("in", strings())
        .peek(move |k, v| s1.lock().unwrap().push((k.clone(), *v)));
    s.foreach(move |_, _| *e1.lock().unwrap() += 1);
    s.to("out", Produced::new());
    let d = driver(b, 2);
    let data = input(100, 5, 4);
    d.input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_key_values(data.clone())
        .unwrap();
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    let mut exp = data.clone();
    exp.sort();
    assert_eq!(got, exp);
    assert_eq!(*each.lock().unwrap(), data.len());
    assert_eq!(
        d.output_topic("out", Serdes::string(), Serdes::i64())
            .queue_size(),
        data.len()
    );
}

#[test]
fn split_sends_each_record_to_its_first_matching_branch() {
    let b = StreamsBuilder::new();
    let branches = b
        .stream("in", strings())
        .split_named("n-")
        .branch("negative", |_, v| *v < 0)
        .branch("small", |_, v| *v < 100)
        .default_branch("large");
    assert_eq!(branches.len(), 3);
    for (name, s) in &branches {
        s.to(name, Produced::new());
    }
    let d = driver(b, 3);
    let data = input(400, 13, 5);
    d.input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_key_values(data.clone())
        .unwrap();
    let read = |t: &str| {
        let mut v = d
            .output_topic(t, Serdes::string(), Serdes::i64())
            .read_key_values_to_vec()
            .unwrap();
        v.sort();
        v
    };
    let pick = |f: &dyn Fn(i64) -> bool| {
        let mut v: Vec<_> = data.iter().filter(|(_, v)| f(*v)).cloned().collect();
        v.sort();
        v
    };
    assert_eq!(read("n-negative"), pick(&|v| v < 0));
    assert_eq!(read("n-small"), pick(&|v| (0..100).contains(&v)));
    assert_eq!(read("n-large"), pick(&|v| v >= 100));
}

#[test]
fn merge_combines_two_streams() {
    let b = StreamsBuilder::new();
    let a = b.stream("a", strings());
    let c = b.stream("c", strings()).map_values(|v| v + 1_000_000);
    a.merge(&c).to("merged", Produced::new());
    let d = driver(b, 2);
    let da = input(50, 5, 6);
    let dc = input(60, 5, 7);
    d.input_topic("a", Serdes::string(), Serdes::i64())
        .pipe_key_values(da.clone())
        .unwrap();
    d.input_topic("c", Serdes::string(), Serdes::i64())
        .pipe_key_values(dc.clone())
        .unwrap();
    let mut got = d
        .output_topic("merged", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let mut exp: Vec<_> = da
        .into_iter()
        .chain(dc.into_iter().map(|(k, v)| (k, v + 1_000_000)))
        .collect();
    got.sort();
    exp.sort();
    assert_eq!(got, exp);
}

#[test]
fn to_uses_murmur2_by_default_and_a_custom_partitioner_when_given() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", strings());
    s.to("by-key", Produced::new());
    s.to(
        "by-value",
        Produced::new().with_partitioner(|_: &str, _: &String, v: &i64, n: i32| {
            Some(v.rem_euclid(n as i64) as i32)
        }),
    );
    let d = TopologyTestDriver::builder(b.build().unwrap())
        .default_partitions(5)
        .build()
        .unwrap();
    let data = input(100, 20, 8);
    d.input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_key_values(data.clone())
        .unwrap();
    for r in d
        .output_topic("by-key", Serdes::string(), Serdes::i64())
        .read_records_to_vec()
        .unwrap()
    {
        assert_eq!(r.partition, Some(default_partition(r.key.as_bytes(), 5)));
    }
    for r in d
        .output_topic("by-value", Serdes::string(), Serdes::i64())
        .read_records_to_vec()
        .unwrap()
    {
        assert_eq!(r.partition, Some(r.value.rem_euclid(5) as i32));
    }
}

#[test]
fn repartition_routes_by_the_new_key() {
    let b = StreamsBuilder::new();
    b.stream("in", strings())
        .select_key(|_, v| format!("v{}", v.rem_euclid(7)))
        .repartition(Repartitioned::as_name("by-value"))
        .to("out", Produced::new());
    let d = driver(b, 3);
    let data = input(100, 20, 9);
    d.input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_key_values(data.clone())
        .unwrap();
    let topic = d.resolve_topic("by-value-repartition");
    assert_eq!(topic, "test-app-by-value-repartition");
    let through = d
        .output_topic(&topic, Serdes::string(), Serdes::i64())
        .read_records_to_vec()
        .unwrap();
    assert_eq!(through.len(), data.len());
    for r in &through {
        assert_eq!(r.partition, Some(default_partition(r.key.as_bytes(), 3)));
    }
    let out = d
        .output_topic("out", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let exp: Vec<_> = data
        .iter()
        .map(|(_, v)| (format!("v{}", v.rem_euclid(7)), *v))
        .collect();
    assert_eq!(multiset_per_key(&out), multiset_per_key(&exp));
}

fn stream_aggregations(kind: StoreKind) {
    let b = StreamsBuilder::new();
    let s = b.stream("in", strings());
    let by_sign = s.group_by(
        |_, v| {
            if *v >= 0 {
                "pos".to_string()
            } else {
                "neg".to_string()
            }
        },
        Grouped::new(),
    );
    by_sign.count(Materialized::as_store("count-by-sign").with_store_kind(kind));
    let grouped = s.group_by_key(Grouped::new());
    grouped.reduce(
        |a, b| a.max(b),
        Materialized::as_store("max").with_store_kind(kind),
    );
    grouped
        .aggregate(
            Vec::new,
            |_, v, mut acc: Vec<i64>| {
                acc.push(*v);
                acc
            },
            Materialized::as_store("all-values")
                .with_store_kind(kind)
                .with_value_serde(Serdes::json::<Vec<i64>>()),
        )
        .to_stream()
        .to("all-values-changes", Produced::new());
    let d = driver(b, 3);
    let data = input(600, 23, 10);
    d.input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_key_values(data.clone())
        .unwrap();

    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut max: BTreeMap<String, i64> = BTreeMap::new();
    let mut all: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (k, v) in &data {
        *counts
            .entry(if *v >= 0 { "pos".into() } else { "neg".into() })
            .or_default() += 1;
        max.entry(k.clone())
            .and_modify(|m| *m = (*m).max(*v))
            .or_insert(*v);
        all.entry(k.clone()).or_default().push(*v);
    }
    let store = d.key_value_store::<String, i64>("count-by-sign").unwrap();
    assert_eq!(
        store.all().unwrap().into_iter().collect::<BTreeMap<_, _>>(),
        counts
    );
    let store = d.key_value_store::<String, i64>("max").unwrap();
    assert_eq!(
        store.all().unwrap().into_iter().collect::<BTreeMap<_, _>>(),
        max
    );
    let store = d.key_value_store::<String, Vec<i64>>("all-values").unwrap();
    assert_eq!(
        store.all().unwrap().into_iter().collect::<BTreeMap<_, _>>(),
        all
    );
    // The table's change stream ends, per key, with the final aggregate.
    let changes = d
        .output_topic(
            "all-values-changes",
            Serdes::string(),
            Serdes::option(Serdes::json::<Vec<i64>>()),
        )
        .read_key_values_to_map()
        .unwrap();
    let last: BTreeMap<_, _> = changes.into_iter().map(|(k, v)| (k, v.unwrap())).collect();
    assert_eq!(last, all);
}

#[test]
fn stream_count_reduce_aggregate_in_memory() {
    stream_aggregations(StoreKind::InMemory);
}

#[test]
fn stream_count_reduce_aggregate_on_rocksdb() {
    stream_aggregations(StoreKind::RocksDb);
}

#[test]
fn group_by_key_repartitions_only_after_a_key_change() {
    let b = StreamsBuilder::new();
    b.stream("in", strings())
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("c1"));
    let plain = b.build().unwrap();
    assert!(plain.internal_topics().next().is_none());
    assert_eq!(plain.sub_topologies().len(), 1);

    let b = StreamsBuilder::new();
    b.stream("in", strings())
        .map(|k, v| (format!("{k}!"), v))
        .group_by_key(Grouped::as_name("rekeyed"))
        .count(Materialized::as_store("c2"));
    let t = b.build().unwrap();
    let topics: Vec<_> = t.internal_topics().map(|t| t.name.clone()).collect();
    assert_eq!(topics, vec!["rekeyed-repartition".to_string()]);
    assert_eq!(t.sub_topologies().len(), 2);
}

fn table_operators(kind: StoreKind) {
    let b = StreamsBuilder::new();
    let t = b.table(
        "prices",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::as_store("prices-store").with_store_kind(kind),
    );
    t.filter(|_, p| *p >= 0)
        .to_stream()
        .to("non-negative", Produced::new());
    t.filter_not(|_, p| *p >= 0)
        .map_values(|p| -p)
        .to_stream()
        .to("debts", Produced::new());
    t.group_by(|_, p| ((p.rem_euclid(3)).to_string(), *p), Grouped::new())
        .count(Materialized::as_store("count-by-mod").with_store_kind(kind));
    t.group_by(|_, p| ((p.rem_euclid(3)).to_string(), *p), Grouped::new())
        .reduce(
            |a, b| a + b,
            |a, b| Some(a - b),
            Materialized::as_store("sum-by-mod").with_store_kind(kind),
        );
    let d = driver(b, 3);
    let input = d.input_topic("prices", Serdes::string(), Serdes::option(Serdes::i64()));
    let mut model: BTreeMap<String, i64> = BTreeMap::new();
    let data = crate::input(400, 15, 11);
    for (i, (k, v)) in data.iter().enumerate() {
        if i % 5 == 4 {
            input.pipe_input(k.clone(), None).unwrap();
            model.remove(k);
        } else {
            input.pipe_input(k.clone(), Some(*v)).unwrap();
            model.insert(k.clone(), *v);
        }
    }
    let read_table = |topic: &str| -> BTreeMap<String, i64> {
        d.output_topic(topic, Serdes::string(), Serdes::option(Serdes::i64()))
            .read_key_values_to_map()
            .unwrap()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect()
    };
    let exp: BTreeMap<_, _> = model
        .iter()
        .filter(|(_, p)| **p >= 0)
        .map(|(k, p)| (k.clone(), *p))
        .collect();
    assert_eq!(read_table("non-negative"), exp);
    let exp: BTreeMap<_, _> = model
        .iter()
        .filter(|(_, p)| **p < 0)
        .map(|(k, p)| (k.clone(), -p))
        .collect();
    assert_eq!(read_table("debts"), exp);

    let source = d.key_value_store::<String, i64>("prices-store").unwrap();
    assert_eq!(
        source
            .all()
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        model
    );

    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for p in model.values() {
        *counts.entry(p.rem_euclid(3).to_string()).or_default() += 1;
        *sums.entry(p.rem_euclid(3).to_string()).or_default() += p;
    }
    let got: BTreeMap<_, _> = d
        .key_value_store::<String, i64>("count-by-mod")
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect();
    // Groups whose rows all left stay at 0, as in Kafka Streams.
    let got_nonzero: BTreeMap<_, _> = got.into_iter().filter(|(_, c)| *c != 0).collect();
    assert_eq!(got_nonzero, counts);
    let got: BTreeMap<_, _> = d
        .key_value_store::<String, i64>("sum-by-mod")
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect();
    for (k, s) in &sums {
        assert_eq!(got.get(k), Some(s), "sum of group {k}");
    }
}

#[test]
fn table_filter_map_values_group_by_in_memory() {
    table_operators(StoreKind::InMemory);
}

#[test]
fn table_filter_map_values_group_by_on_rocksdb() {
    table_operators(StoreKind::RocksDb);
}

#[test]
fn table_skips_null_keys_and_counts_them() {
    let b = StreamsBuilder::new();
    b.table(
        "t",
        Consumed::with(Serdes::option(Serdes::string()), Serdes::i64()),
        Materialized::as_store("t-store"),
    );
    let d = driver(b, 1);
    let input = d.input_topic("t", Serdes::option(Serdes::string()), Serdes::i64());
    input.pipe_input(None, 1).unwrap();
    input.pipe_input(Some("a".into()), 2).unwrap();
    assert_eq!(d.metrics().skipped_records, 1);
    let store = d.key_value_store::<Option<String>, i64>("t-store").unwrap();
    assert_eq!(store.all().unwrap(), vec![(Some("a".to_string()), 2)]);
}

#[test]
fn missing_serde_is_reported_at_build() {
    #[derive(Clone)]
    struct Custom;
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("in", Consumed::new())
        .map_values(|_| Custom)
        .to("out", Produced::new());
    let err = b.build().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("to(out) needs a value serde"), "{msg}");
    assert!(msg.contains("Custom"), "{msg}");
}

#[test]
fn word_count_matches_a_hashmap() {
    let b = StreamsBuilder::new();
    b.stream("text", Consumed::with(Serdes::unit(), Serdes::string()))
        .flat_map_values(|_, line: String| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(|_, w| w.clone(), Grouped::new())
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("counts-out", Produced::new());
    let d = driver(b, 4);
    let lines = [
        "The quick brown fox",
        "jumps over the lazy dog",
        "THE END the end",
        "",
    ];
    let input = d.input_topic("text", Serdes::unit(), Serdes::string());
    for l in lines {
        input.pipe_input((), l.to_string()).unwrap();
    }
    let mut exp: HashMap<String, i64> = HashMap::new();
    for w in lines.iter().flat_map(|l| l.split_whitespace()) {
        *exp.entry(w.to_lowercase()).or_default() += 1;
    }
    let got: HashMap<_, _> = d
        .key_value_store::<String, i64>("counts")
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(got, exp);
    let out = d
        .output_topic(
            "counts-out",
            Serdes::string(),
            Serdes::option(Serdes::i64()),
        )
        .read_key_values_to_map()
        .unwrap();
    let out: HashMap<_, _> = out.into_iter().map(|(k, v)| (k, v.unwrap())).collect();
    assert_eq!(out, exp);
    let distinct: BTreeSet<_> = exp.keys().collect();
    assert_eq!(
        distinct.len(),
        d.key_value_store::<String, i64>("counts")
            .unwrap()
            .all()
            .unwrap()
            .len()
    );
}

/// Emits, for each record, how many records its key has seen so far, using a store added to the builder.
struct Seen {
    store: Option<streams_dsl::state_store::TypedKeyValueStore<String, i64>>,
}

impl Processor<String, i64> for Seen {
    type KOut = String;
    type VOut = i64;
    fn init(&mut self, ctx: &mut ProcessorContext<String, i64>) -> Result<(), StreamsError> {
        self.store = Some(ctx.key_value_store("seen")?);
        Ok(())
    }
    fn process(
        &mut self,
        r: Record<String, i64>,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        let store = self.store.as_mut().expect("init ran");
        let n = store.get(&r.key)?.unwrap_or(0) + 1;
        store.put(&r.key, &n)?;
        ctx.forward(r.with_value(n))
    }
}

#[test]
fn process_runs_a_custom_processor_with_its_store() {
    let b = StreamsBuilder::new();
    b.add_state_store(KeyValueStoreBuilder::new(
        "seen",
        StoreKind::InMemory,
        Serdes::string(),
        Serdes::i64(),
    ));
    b.stream("in", strings())
        .process(|| Seen { store: None }, &["seen"])
        .to("out", Produced::with(Serdes::string(), Serdes::i64()));
    let d = driver(b, 3);
    let data = input(300, 7, 12);
    d.input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_key_values(data.clone())
        .unwrap();
    let out = d
        .output_topic("out", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let mut seen: HashMap<String, i64> = HashMap::new();
    let exp: Vec<_> = data
        .iter()
        .map(|(k, _)| {
            let n = seen.entry(k.clone()).or_default();
            *n += 1;
            (k.clone(), *n)
        })
        .collect();
    assert_eq!(per_key(&out), per_key(&exp));
}

#[test]
fn only_named_stores_are_queryable() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", strings()).group_by_key(Grouped::new());
    assert_eq!(
        s.count(Materialized::as_store("named"))
            .queryable_store_name(),
        Some("named")
    );
    assert_eq!(s.count(Materialized::new()).queryable_store_name(), None);
    let t = b.table("t", strings(), Materialized::new());
    assert_eq!(t.queryable_store_name(), None);
    assert_eq!(
        t.filter_materialized(|_, _| true, Materialized::as_store("f"))
            .queryable_store_name(),
        Some("f")
    );
    assert_eq!(t.filter(|_, _| true).queryable_store_name(), None);
}
