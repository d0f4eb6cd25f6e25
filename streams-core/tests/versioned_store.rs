//! Versioned stores through the Processor API: access from the processor context, the changelog they write
//! (Kafka's format: plain key and value, the version's timestamp as the record's), and rebuilding the history
//! from that changelog.

use std::time::Duration;

use state_store::serde::OptionSerde;
use state_store::{share, InMemoryKeyValueStore, KeyValueStore};
use streams_core::*;

/// Puts each record as a version of its key (`None`: a tombstone) and forwards the version valid at the record's
/// time minus 1 (`as of` the instant before it).
struct Versioner;

impl Processor<String, Option<String>> for Versioner {
    type KOut = String;
    type VOut = String;
    fn process(
        &mut self,
        r: Record<String, Option<String>>,
        ctx: &mut ProcessorContext<String, String>,
    ) -> Result<(), StreamsError> {
        let mut store = ctx.versioned_key_value_store::<String, String>("history")?;
        let put = store.put(&r.key, r.value.as_ref(), r.timestamp)?;
        let before = store.get_as_of(&r.key, r.timestamp - 1)?;
        let line = format!(
            "{put:?} before={:?}",
            before.map(|b| (b.value, b.timestamp, b.valid_to))
        );
        ctx.forward(r.with_value(line))
    }
}

fn topology(kind: StoreKind) -> Topology {
    let mut t = Topology::new();
    t.add_source(
        "in",
        &["in"],
        SourceOptions::new(Serdes::string(), OptionSerde::new(Serdes::string())),
    )
    .unwrap();
    t.add_processor::<String, Option<String>, _, _>("p", || Versioner, &["in"])
        .unwrap();
    t.add_versioned_state_store(
        VersionedKeyValueStoreBuilder::new(
            "history",
            kind,
            Serdes::string(),
            Serdes::string(),
            Duration::from_millis(100),
        ),
        &["p"],
    )
    .unwrap();
    t.add_sink(
        "out",
        "out",
        SinkOptions::new(Serdes::string(), Serdes::string()),
        &["p"],
    )
    .unwrap();
    t
}

fn pipe(d: &TopologyTestDriver, records: &[(&str, Option<&str>, i64)]) {
    let input = d.input_topic("in", Serdes::string(), OptionSerde::new(Serdes::string()));
    for (k, v, ts) in records {
        input
            .pipe_input_at(k.to_string(), v.map(str::to_string), *ts)
            .unwrap();
    }
}

const RECORDS: &[(&str, Option<&str>, i64)] = &[
    ("a", Some("a1"), 110),
    ("a", Some("a3"), 130),
    ("a", Some("a2"), 120), // out of order: into the history
    ("b", Some("b1"), 115),
    ("a", None, 140),        // a tombstone version
    ("a", Some("a0"), 105), // out of order, still within the retention (stream time 140, cutoff 40)
    ("b", Some("late"), 30), // older than stream time - retention: not put
];

#[test]
fn processors_put_and_read_versions() {
    let d = TopologyTestDriver::builder(topology(StoreKind::InMemory))
        .application_id("app")
        .build()
        .unwrap();
    pipe(&d, RECORDS);
    let out = d.output_topic("out", Serdes::string(), Serdes::string());
    assert_eq!(
        out.read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| r.value)
            .collect::<Vec<_>>(),
        vec![
            "Latest before=None",
            "Latest before=Some((\"a1\", 110, Some(130)))",
            "ValidTo(130) before=Some((\"a1\", 110, Some(120)))",
            "Latest before=None",
            "Latest before=Some((\"a3\", 130, Some(140)))",
            "ValidTo(110) before=None",
            "NotPut before=None",
        ]
    );
    let view = d
        .versioned_key_value_store::<String, String>("history")
        .unwrap();
    assert_eq!(view.get(&"a".into()).unwrap(), None);
    let at = |k: &str, t| {
        view.get_as_of(&k.to_string(), t)
            .unwrap()
            .map(|r| (r.value, r.timestamp, r.valid_to))
    };
    assert_eq!(at("a", 107), Some(("a0".into(), 105, Some(110))));
    assert_eq!(at("a", 125), Some(("a2".into(), 120, Some(130))));
    assert_eq!(at("a", 145), None);
    assert_eq!(at("b", 100), None);
    assert_eq!(at("b", 199), Some(("b1".into(), 115, None)));
}

/// The changelog has one record per version (Kafka's `ChangeLoggingVersionedKeyValueBytesStore`): plain key,
/// plain value or null for a tombstone, the version's timestamp as the record's; the rejected put writes nothing.
/// Replaying it into an empty store, as restoration does, rebuilds the same history.
#[test]
fn the_changelog_carries_versions_and_rebuilds_the_history() {
    for kind in [StoreKind::InMemory, StoreKind::RocksDb] {
        let dir = tempfile::tempdir().unwrap();
        let d = TopologyTestDriver::builder(topology(kind))
            .application_id("app")
            .state_dir(dir.path())
            .build()
            .unwrap();
        pipe(&d, RECORDS);
        let changelog = d.output_topic(
            "app-history-changelog",
            Serdes::string(),
            OptionSerde::new(Serdes::string()),
        );
        let logged: Vec<(String, Option<String>, i64)> = changelog
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp))
            .collect();
        let expected: Vec<(String, Option<String>, i64)> = RECORDS[..6]
            .iter()
            .map(|(k, v, ts)| (k.to_string(), v.map(str::to_string), *ts))
            .collect();
        assert_eq!(logged, expected, "{kind:?}");

        let rebuilt = share(Box::new(InMemoryKeyValueStore::new("history")));
        {
            let mut bytes = rebuilt.lock().unwrap();
            for (k, v, ts) in &logged {
                state_store::versioned::restore_version(
                    &mut **bytes as &mut dyn KeyValueStore,
                    100,
                    k.as_bytes(),
                    v.as_deref().map(str::as_bytes),
                    *ts,
                )
                .unwrap();
            }
        }
        let rebuilt = VersionedKeyValueStore::new(rebuilt, Serdes::string(), Serdes::string(), 100);
        let original = d
            .versioned_key_value_store::<String, String>("history")
            .unwrap();
        for key in ["a", "b"] {
            for t in 20..160 {
                assert_eq!(
                    rebuilt.get_as_of(&key.to_string(), t).unwrap(),
                    original.get_as_of(&key.to_string(), t).unwrap(),
                    "{kind:?} {key} as of {t}"
                );
            }
        }
        assert_eq!(rebuilt.observed_stream_time().unwrap(), 140);
    }
}

/// Reading a versioned store as a plain one (or the reverse) is a typed error naming the store, not garbage.
#[test]
fn a_versioned_store_is_not_readable_as_a_plain_one() {
    struct Plain;
    impl Processor<String, Option<String>> for Plain {
        type KOut = String;
        type VOut = String;
        fn init(&mut self, ctx: &mut ProcessorContext<String, String>) -> Result<(), StreamsError> {
            match ctx.key_value_store::<String, String>("history") {
                Err(StreamsError::StoreAccess { store, reason, .. }) => {
                    assert_eq!(store, "history");
                    assert!(reason.contains("versioned"), "{reason}");
                    Ok(())
                }
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("a versioned store was handed out as a plain one"),
            }
        }
        fn process(
            &mut self,
            _: Record<String, Option<String>>,
            _: &mut ProcessorContext<String, String>,
        ) -> Result<(), StreamsError> {
            Ok(())
        }
    }
    let mut t = Topology::new();
    t.add_source(
        "in",
        &["in"],
        SourceOptions::new(Serdes::string(), OptionSerde::new(Serdes::string())),
    )
    .unwrap();
    t.add_processor::<String, Option<String>, _, _>("p", || Plain, &["in"])
        .unwrap();
    t.add_versioned_state_store(
        VersionedKeyValueStoreBuilder::new(
            "history",
            StoreKind::InMemory,
            Serdes::string(),
            Serdes::string(),
            Duration::from_millis(100),
        ),
        &["p"],
    )
    .unwrap();
    let d = TopologyTestDriver::new(t).unwrap();
    pipe(&d, &[("a", Some("x"), 1)]);
    assert!(matches!(
        d.key_value_store::<String, String>("history"),
        Err(StreamsError::StoreTypeMismatch { .. })
    ));
    let plain = topology_with_plain_store();
    let d = TopologyTestDriver::new(plain).unwrap();
    assert!(matches!(
        d.versioned_key_value_store::<String, String>("plain"),
        Err(StreamsError::StoreTypeMismatch { .. })
    ));
}

fn topology_with_plain_store() -> Topology {
    let mut t = topology(StoreKind::InMemory);
    t.add_state_store(
        KeyValueStoreBuilder::new(
            "plain",
            StoreKind::InMemory,
            Serdes::string(),
            Serdes::string(),
        ),
        &["p"],
    )
    .unwrap();
    t
}

/// A versioned store's changelog topic keeps its history from compaction: `min.compaction.lag.ms` is the history
/// retention plus a day, as Kafka Streams' `InternalTopologyBuilder` sets it for versioned stores.
#[test]
fn the_changelog_topic_of_a_versioned_store_keeps_its_history_from_compaction() {
    let t = topology_with_plain_store();
    let plan = t.partition_plan("app", |_| Ok(2)).unwrap();
    assert_eq!(plan.changelogs.len(), 2);
    assert_eq!(
        plan.changelog_min_compaction_lag_ms
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("app-history-changelog".to_string(), 100 + 86_400_000)]
    );
}
