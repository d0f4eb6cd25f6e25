//! The runtime reports through the `metrics` facade (recorded here by a debugging recorder): records processed
//! per task, commit latency, consumer lag, store sizes and cache hit ratios, with values checked against the
//! input.

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use streams_dsl::streams_core::runtime::KafkaStreams;
use streams_dsl::*;
use tests::{produce, wait_until, Broker};

/// A metric's labels as (name, value) pairs.
type Labels = Vec<(String, String)>;

#[test]
fn runtime_metrics_match_the_work_done() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let broker = Broker::embedded();
    broker.create_topic("obs-in", 2);
    let b = StreamsBuilder::new();
    b.stream("obs-in", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("obs-counts").in_memory());
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(b.build().unwrap(), broker.config("obs", dir.path())).unwrap();
    streams.start().unwrap();
    let n = 300;
    let keys = 7;
    let raw: Vec<_> = (0..n)
        .map(|i| (format!("k{}", i % keys).into_bytes(), Some(b"v".to_vec())))
        .collect();
    produce(&broker.bootstrap(), "obs-in", &raw);
    wait_until("every record counted", Duration::from_secs(60), || {
        streams
            .store::<String, i64>("obs-counts")
            .and_then(|s| s.all())
            .map(|all| all.iter().map(|(_, c)| c).sum::<i64>() == n as i64)
            .unwrap_or(false)
    });
    assert!(streams.close(Duration::from_secs(30)));

    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    let mut gauges: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
    let mut histograms: BTreeMap<String, usize> = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let name = key.key().name().to_string();
        let labels: Vec<(String, String)> = key
            .key()
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        match value {
            DebugValue::Counter(c) => *counters.entry(name).or_default() += c,
            DebugValue::Gauge(g) => gauges
                .entry(name)
                .or_default()
                .push((labels, g.into_inner())),
            DebugValue::Histogram(h) => *histograms.entry(name).or_default() += h.len(),
        }
    }
    assert_eq!(
        counters.get("streams_records_processed_total"),
        Some(&(n as u64)),
        "{counters:?}"
    );
    assert!(
        histograms
            .get("streams_commit_latency_seconds")
            .is_some_and(|c| *c >= 1),
        "{histograms:?}"
    );
    let entries: f64 = gauges["streams_store_entries"]
        .iter()
        .filter(|(l, _)| l.contains(&("store".into(), "obs-counts".into())))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(entries, keys as f64, "one entry per key across the tasks");
    for (_, ratio) in &gauges["streams_cache_hit_ratio"] {
        assert!((0.0..=1.0).contains(ratio), "{ratio}");
    }
    let lag = &gauges["streams_consumer_lag"];
    assert!(!lag.is_empty());
    assert!(
        lag.iter().all(|(_, v)| *v == 0.0),
        "all input consumed by the last commit: {lag:?}"
    );
}
