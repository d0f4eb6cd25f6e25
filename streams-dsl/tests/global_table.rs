//! Global tables and stream-global joins through the test driver, with several partitions on both sides, against
//! a plain HashMap computation over the same random inputs.

use std::collections::HashMap;

use proptest::prelude::*;
use streams_dsl::*;

/// One input event: an update of the global topic (None deletes) or a stream record looking a key up.
#[derive(Debug, Clone)]
enum Event {
    Global {
        key: u8,
        value: Option<i64>,
        partition: Option<i32>,
    },
    Stream {
        key: u8,
        lookup: u8,
        value: i64,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            0u8..8,
            proptest::option::weighted(0.8, -50i64..50),
            proptest::option::of(0i32..3)
        )
            .prop_map(|(key, value, partition)| Event::Global {
                key,
                value,
                partition
            }),
        (0u8..20, 0u8..10, -100i64..100).prop_map(|(key, lookup, value)| Event::Stream {
            key,
            lookup,
            value
        }),
    ]
}

const GLOBAL_PARTITIONS: i32 = 3;
const STREAM_PARTITIONS: i32 = 4;

/// A topology with an inner and a left join of the stream "orders" against the global table "rates"; the
/// lookup key comes from the record's value (so the stream is not partitioned by it).
fn topology(kind: StoreKind) -> Topology {
    let b = StreamsBuilder::new();
    let rates = b.global_table::<String, i64>(
        "rates",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::as_store("rates-store").with_store_kind(kind),
    );
    // Value = "lookup-key:amount".
    let orders =
        b.stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()));
    let lookup = |_: &String, v: &String| v.split(':').next().unwrap_or_default().to_string();
    let amount = |v: &String| v.split(':').nth(1).unwrap().parse::<i64>().unwrap();
    orders
        .join_global(&rates, lookup, move |v, rate| amount(v) * rate)
        .to("inner-out", Produced::with(Serdes::string(), Serdes::i64()));
    orders
        .left_join_global(&rates, lookup, move |v, rate| {
            format!("{}|{:?}", amount(v), rate.copied())
        })
        .to(
            "left-out",
            Produced::with(Serdes::string(), Serdes::string()),
        );
    b.build().unwrap()
}

fn run(events: &[Event], kind: StoreKind) {
    let driver = TopologyTestDriver::builder(topology(kind))
        .partitions("rates", GLOBAL_PARTITIONS)
        .partitions("orders", STREAM_PARTITIONS)
        .build()
        .unwrap();
    let rates = driver.input_topic("rates", Serdes::string(), Serdes::option(Serdes::i64()));
    let orders = driver.input_topic("orders", Serdes::string(), Serdes::string());
    let inner = driver.output_topic("inner-out", Serdes::string(), Serdes::i64());
    let left = driver.output_topic("left-out", Serdes::string(), Serdes::string());

    let mut table: HashMap<String, i64> = HashMap::new();
    let mut want_inner = Vec::new();
    let mut want_left = Vec::new();
    for e in events {
        match e {
            Event::Global {
                key,
                value,
                partition,
            } => {
                let k = format!("r{key}");
                let mut rec = TestRecord::new(k.clone(), *value, 0);
                if let Some(p) = partition {
                    rec = rec.with_partition(*p);
                }
                rates.pipe_record(rec).unwrap();
                match value {
                    Some(v) => table.insert(k, *v),
                    None => table.remove(&k),
                };
            }
            Event::Stream { key, lookup, value } => {
                let k = format!("o{key}");
                let lk = format!("r{lookup}");
                orders
                    .pipe_input(k.clone(), format!("{lk}:{value}"))
                    .unwrap();
                let rate = table.get(&lk).copied();
                if let Some(r) = rate {
                    want_inner.push((k.clone(), value * r));
                }
                want_left.push((k, format!("{value}|{rate:?}")));
            }
        }
    }
    assert_eq!(inner.read_key_values_to_vec().unwrap(), want_inner);
    assert_eq!(left.read_key_values_to_vec().unwrap(), want_left);

    // The global store holds every key of every partition of its topic.
    let store = driver
        .key_value_store::<String, i64>("rates-store")
        .unwrap();
    let mut got: Vec<(String, i64)> = store.all().unwrap();
    let mut want: Vec<(String, i64)> = table.into_iter().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn joins_match_a_hashmap_reference(events in proptest::collection::vec(event(), 0..120)) {
        run(&events, StoreKind::InMemory);
    }
}

/// Deterministic pseudo-random events (a seeded LCG), many more than the property test's.
fn seeded_events(n: usize, seed: u64) -> Vec<Event> {
    let mut x = seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    (0..n)
        .map(|_| {
            if next().is_multiple_of(3) {
                let key = (next() % 16) as u8;
                let value = (!next().is_multiple_of(5)).then(|| (next() % 100) as i64 - 50);
                let partition = next()
                    .is_multiple_of(2)
                    .then(|| (next() % GLOBAL_PARTITIONS as u64) as i32);
                Event::Global {
                    key,
                    value,
                    partition,
                }
            } else {
                Event::Stream {
                    key: (next() % 50) as u8,
                    lookup: (next() % 20) as u8,
                    value: (next() % 200) as i64 - 100,
                }
            }
        })
        .collect()
}

#[test]
fn seeded_joins_match_with_an_in_memory_store() {
    for seed in [1, 7, 42] {
        run(&seeded_events(2_000, seed), StoreKind::InMemory);
    }
}

#[test]
fn seeded_joins_match_with_a_rocksdb_store() {
    run(&seeded_events(1_000, 99), StoreKind::RocksDb);
}

#[test]
fn the_stream_is_not_repartitioned_even_after_a_key_change() {
    let b = StreamsBuilder::new();
    let g = b.global_table::<String, String>(
        "g",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_store("g-store").in_memory(),
    );
    b.stream::<String, String>("s", Consumed::with(Serdes::string(), Serdes::string()))
        .select_key(|_, v| v.clone())
        .join_global(&g, |k, _| k.clone(), |v, gv| format!("{v}+{gv}"))
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let t = b.build().unwrap();
    assert_eq!(t.internal_topics().count(), 0);
    assert_eq!(t.sub_topologies().len(), 1);
    let description = t.describe().to_string();
    assert!(
        description.contains("Global store: g-store"),
        "{description}"
    );
    let globals: Vec<_> = t.global_stores().collect();
    assert_eq!(globals.len(), 1);
    assert_eq!(globals[0].topic, "g");
}

#[test]
fn a_global_topic_cannot_also_be_a_stream_source() {
    let b = StreamsBuilder::new();
    let _g = b.global_table::<String, String>(
        "shared",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_store("shared-store").in_memory(),
    );
    b.stream::<String, String>("shared", Consumed::with(Serdes::string(), Serdes::string()))
        .to("out", Produced::new());
    let err = b.build().unwrap_err();
    assert!(err.to_string().contains("shared"), "{err}");
}

#[test]
fn a_wrongly_typed_global_store_is_a_typed_error() {
    let mut t = Topology::new();
    t.add_global_store(
        KeyValueStoreBuilder::new("g", StoreKind::InMemory, Serdes::string(), Serdes::i64()),
        "g-source",
        "g-topic",
    )
    .unwrap();

    struct Reader;
    impl Processor<String, String> for Reader {
        type KOut = String;
        type VOut = String;
        fn init(&mut self, ctx: &mut ProcessorContext<String, String>) -> Result<(), StreamsError> {
            ctx.global_store::<String, String>("g").map(|_| ())
        }
        fn process(
            &mut self,
            r: Record<String, String>,
            ctx: &mut ProcessorContext<String, String>,
        ) -> Result<(), StreamsError> {
            ctx.forward(r)
        }
    }
    t.add_source(
        "src",
        &["in"],
        streams_core::SourceOptions::new(Serdes::string(), Serdes::string()),
    )
    .unwrap();
    t.add_processor::<String, String, _, _>("reader", || Reader, &["src"])
        .unwrap();
    let err = TopologyTestDriver::new(t).err().expect("init must fail");
    assert!(matches!(err, StreamsError::StoreAccess { .. }), "{err}");
    assert!(err.to_string().contains("i64"), "{err}");
}

#[test]
fn null_keys_in_the_global_topic_are_skipped_and_null_values_delete() {
    let b = StreamsBuilder::new();
    let _g = b.global_table::<Option<String>, String>(
        "g",
        Consumed::with(Serdes::option(Serdes::string()), Serdes::string()),
        Materialized::as_store("g-store").in_memory(),
    );
    b.stream::<String, String>("s", Consumed::with(Serdes::string(), Serdes::string()))
        .to("out", Produced::new());
    let d = TopologyTestDriver::builder(b.build().unwrap())
        .default_partitions(2)
        .build()
        .unwrap();
    let g = d.input_topic(
        "g",
        Serdes::option(Serdes::string()),
        Serdes::option(Serdes::string()),
    );
    g.pipe_input(Some("a".into()), Some("1".into())).unwrap();
    g.pipe_input(None, Some("lost".into())).unwrap();
    g.pipe_input(Some("b".into()), Some("2".into())).unwrap();
    g.pipe_input(Some("a".into()), None).unwrap();
    let store = d
        .key_value_store::<Option<String>, String>("g-store")
        .unwrap();
    assert_eq!(
        store.all().unwrap(),
        vec![(Some("b".to_string()), "2".to_string())]
    );
}
