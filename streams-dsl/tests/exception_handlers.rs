//! The processing exception handler with DSL closures: a `map` closure that panics on some keys, under
//! log-and-continue (the other records' results match a plain computation) and log-and-fail (the error names the
//! map's processor). The scenario follows Kafka Streams' `ProcessingExceptionHandlerIntegrationTest`.

use std::collections::{BTreeMap, BTreeSet};

use streams_dsl::*;

/// Keys whose records make the map closure panic.
fn poisoned(key: &str) -> bool {
    key.ends_with('3') || key == "k10"
}

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let mapped = b
        .stream("in", Consumed::with(Serdes::string(), Serdes::i64()))
        .map(|k: String, v: i64| {
            if poisoned(&k) {
                panic!("poisoned key {k}");
            }
            (k, v * 2)
        });
    mapped.to("doubled", Produced::new());
    mapped
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to(
            "counts",
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    b.build().unwrap()
}

fn input() -> Vec<(String, i64)> {
    (0..400i64).map(|i| (format!("k{}", i % 17), i)).collect()
}

#[test]
fn processing_handler_continue_skips_only_failing_records() {
    let d = TopologyTestDriver::builder(topology())
        .default_partitions(4)
        .processing_handler(LogAndContinueProcessing)
        .build()
        .unwrap();
    let data = input();
    d.input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_key_values(data.clone())
        .unwrap();

    // Reference: the same computation without the engine.
    let good: Vec<(String, i64)> = data
        .iter()
        .filter(|(k, _)| !poisoned(k))
        .map(|(k, v)| (k.clone(), v * 2))
        .collect();
    let mut doubled: Vec<(String, i64)> = d
        .output_topic("doubled", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let mut expected = good.clone();
    doubled.sort();
    expected.sort();
    assert_eq!(doubled, expected);

    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for (k, _) in &good {
        *counts.entry(k.clone()).or_default() += 1;
    }
    let final_counts: BTreeMap<String, i64> = d
        .output_topic("counts", Serdes::string(), Serdes::option(Serdes::i64()))
        .read_key_values_to_vec()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap()))
        .collect();
    assert_eq!(final_counts, counts);
    let poisoned_keys: BTreeSet<&str> = data
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| poisoned(k))
        .collect();
    assert_eq!(poisoned_keys, BTreeSet::from(["k3", "k10", "k13"]));
    assert!(poisoned_keys.iter().all(|k| !final_counts.contains_key(*k)));

    let bad = data.iter().filter(|(k, _)| poisoned(k)).count() as u64;
    assert_eq!(d.metrics().skipped_records, bad);
}

#[test]
fn processing_handler_fail_names_the_map_processor() {
    let d = TopologyTestDriver::builder(topology())
        .processing_handler(LogAndFailProcessing)
        .build()
        .unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::i64());
    input.pipe_input("k1".into(), 1).unwrap();
    let err = input.pipe_input("k3".into(), 2).unwrap_err();
    match &err {
        StreamsError::Panic {
            processor, message, ..
        } => {
            assert!(
                processor
                    .as_deref()
                    .is_some_and(|p| p.starts_with("KSTREAM-MAP-")),
                "{err}"
            );
            assert_eq!(message, "poisoned key k3");
        }
        other => panic!("unexpected {other:?}"),
    }
}
