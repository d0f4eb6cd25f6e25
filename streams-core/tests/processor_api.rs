//! The Processor API and the topology graph, through the test driver.

use std::time::Duration;

use streams_core::*;

struct Tag(&'static str);

impl Processor<String, String> for Tag {
    type KOut = String;
    type VOut = String;
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<String, String>,
    ) -> Result<(), StreamsError> {
        let v = format!("{}:{}", self.0, r.value);
        ctx.forward(r.with_value(v))
    }
}

fn strings() -> SourceOptions<String, String> {
    SourceOptions::new(Serdes::string(), Serdes::string())
}

fn sink() -> SinkOptions<String, String> {
    SinkOptions::new(Serdes::string(), Serdes::string())
}

#[test]
fn describe_prints_sub_topologies_like_kafka_streams() {
    let mut t = Topology::new();
    t.add_source("src", &["in"], strings()).unwrap();
    t.add_processor::<String, String, _, _>("a", || Tag("a"), &["src"])
        .unwrap();
    t.add_processor::<String, String, _, _>("b", || Tag("b"), &["src"])
        .unwrap();
    t.add_internal_topic("x-repartition", None).unwrap();
    t.add_sink("to-x", "x-repartition", sink(), &["a", "b"])
        .unwrap();
    t.add_source("from-x", &["x-repartition"], strings())
        .unwrap();
    t.add_sink("out", "output", sink(), &["from-x"]).unwrap();
    let expected = "Topologies:
   Sub-topology: 0
    Source: src (topics: [in])
      --> a, b
    Processor: a (stores: [])
      --> to-x
      <-- src
    Processor: b (stores: [])
      --> to-x
      <-- src
    Sink: to-x (topic: x-repartition)
      <-- a, b

   Sub-topology: 1
    Source: from-x (topics: [x-repartition])
      --> out
    Sink: out (topic: output)
      <-- from-x

";
    assert_eq!(t.describe().to_string(), expected);
    let subs = t.sub_topologies();
    assert_eq!(subs[0].sink_topics, vec!["x-repartition".to_string()]);
    assert_eq!(subs[1].source_topics, vec!["x-repartition".to_string()]);
}

#[test]
fn wrong_types_between_nodes_are_a_precise_error() {
    let mut t = Topology::new();
    t.add_source(
        "src",
        &["in"],
        SourceOptions::new(Serdes::string(), Serdes::i64()),
    )
    .unwrap();
    let err = t
        .add_processor::<String, String, _, _>("tag", || Tag("x"), &["src"])
        .unwrap_err();
    match err {
        StreamsError::TypeMismatch {
            parent,
            child,
            produced,
            expected,
        } => {
            assert_eq!((parent.as_str(), child.as_str()), ("src", "tag"));
            assert!(produced.contains("i64"), "{produced}");
            assert!(
                expected.contains("String, alloc::string::String"),
                "{expected}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        t.add_processor::<String, String, _, _>("p", || Tag("x"), &["nope"]),
        Err(StreamsError::UnknownNode { .. })
    ));
    assert!(matches!(
        t.add_source("src", &["other"], strings()),
        Err(StreamsError::DuplicateName(_))
    ));
    let err = t.add_source("src2", &["in"], strings()).unwrap_err();
    assert!(
        err.to_string().contains("already read by source 'src'"),
        "{err}"
    );
}

/// Counts records per key in a store, emits the running count, and on each punctuation emits a summary.
struct Counter {
    store: Option<state_store::TypedKeyValueStore<String, i64>>,
    stream_schedule: Option<ScheduleId>,
}

impl Processor<String, String> for Counter {
    type KOut = String;
    type VOut = String;
    fn init(&mut self, ctx: &mut ProcessorContext<String, String>) -> Result<(), StreamsError> {
        self.store = Some(ctx.key_value_store("counts")?);
        self.stream_schedule =
            Some(ctx.schedule(Duration::from_millis(100), PunctuationType::StreamTime)?);
        ctx.schedule(Duration::from_secs(10), PunctuationType::WallClockTime)?;
        Ok(())
    }
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<String, String>,
    ) -> Result<(), StreamsError> {
        let store = self.store.as_mut().unwrap();
        let n = store.get(&r.key)?.unwrap_or(0) + 1;
        store.put(&r.key, &n)?;
        let meta = ctx.record_metadata().expect("metadata while processing");
        let v = format!("{n}@{}/{}/{}", meta.topic, meta.partition, meta.offset);
        ctx.forward_to("counts-out", r.with_value(v))
    }
    fn punctuate(
        &mut self,
        id: ScheduleId,
        ts: i64,
        ctx: &mut ProcessorContext<String, String>,
    ) -> Result<(), StreamsError> {
        assert!(ctx.record_metadata().is_none());
        let total: i64 = self
            .store
            .as_ref()
            .unwrap()
            .all()?
            .iter()
            .map(|(_, v)| v)
            .sum();
        let kind = if Some(id) == self.stream_schedule {
            "stream"
        } else {
            "wall"
        };
        ctx.forward_to(
            "ticks-out",
            Record::new(kind.to_string(), format!("{ts}:{total}"), ts),
        )
    }
}

fn counter_topology(kind: StoreKind) -> Topology {
    let mut t = Topology::new();
    t.add_source("src", &["in"], strings()).unwrap();
    t.add_processor::<String, String, _, _>(
        "count",
        || Counter {
            store: None,
            stream_schedule: None,
        },
        &["src"],
    )
    .unwrap();
    t.add_state_store(
        KeyValueStoreBuilder::new("counts", kind, Serdes::string(), Serdes::i64()),
        &["count"],
    )
    .unwrap();
    t.add_sink("counts-out", "counts", sink(), &["count"])
        .unwrap();
    t.add_sink("ticks-out", "ticks", sink(), &["count"])
        .unwrap();
    t
}

#[test]
fn stores_forward_to_and_punctuations() {
    for kind in [StoreKind::InMemory, StoreKind::RocksDb] {
        let d = TopologyTestDriver::new(counter_topology(kind)).unwrap();
        let input = d.input_topic("in", Serdes::string(), Serdes::string());
        input.pipe_input_at("a".into(), "x".into(), 0).unwrap();
        input.pipe_input_at("a".into(), "x".into(), 50).unwrap();
        input.pipe_input_at("b".into(), "x".into(), 99).unwrap();
        input.pipe_input_at("a".into(), "x".into(), 100).unwrap();
        input.pipe_input_at("b".into(), "x".into(), 450).unwrap();
        // Out-of-order record: stream time stays at 450.
        input.pipe_input_at("b".into(), "x".into(), 10).unwrap();
        let counts = d
            .output_topic("counts", Serdes::string(), Serdes::string())
            .read_key_values_to_vec()
            .unwrap();
        let expected: Vec<(String, String)> = [
            ("a", 1, 0),
            ("a", 2, 1),
            ("b", 1, 2),
            ("a", 3, 3),
            ("b", 2, 4),
            ("b", 3, 5),
        ]
        .iter()
        .map(|(k, n, off)| (k.to_string(), format!("{n}@in/0/{off}")))
        .collect();
        assert_eq!(counts, expected);
        let ticks = d.output_topic("ticks", Serdes::string(), Serdes::string());
        // Stream-time punctuation: on the first record (t=0), then at 100 and at 450 (once, however many
        // intervals were skipped), never for the late record.
        assert_eq!(
            ticks.read_key_values_to_vec().unwrap(),
            vec![
                ("stream".to_string(), "0:1".to_string()),
                ("stream".to_string(), "100:4".to_string()),
                ("stream".to_string(), "450:5".to_string()),
            ]
        );
        d.advance_wall_clock(Duration::from_secs(9)).unwrap();
        assert!(ticks.is_empty());
        d.advance_wall_clock(Duration::from_secs(1)).unwrap();
        assert_eq!(
            ticks.read_key_value().unwrap(),
            Some(("wall".to_string(), "10000:6".to_string()))
        );
        assert_eq!(d.metrics().punctuations, 4);
        let store = d.key_value_store::<String, i64>("counts").unwrap();
        assert_eq!(
            store.all().unwrap(),
            vec![("a".to_string(), 3), ("b".to_string(), 3)]
        );
        assert!(matches!(
            d.key_value_store::<String, String>("counts"),
            Err(StreamsError::StoreTypeMismatch { .. })
        ));
        assert!(matches!(
            d.key_value_store::<String, i64>("nope"),
            Err(StreamsError::UnknownStore { .. })
        ));
    }
}

#[test]
fn store_access_requires_a_connection() {
    struct Sneaky;
    impl Processor<String, String> for Sneaky {
        type KOut = String;
        type VOut = String;
        fn init(&mut self, ctx: &mut ProcessorContext<String, String>) -> Result<(), StreamsError> {
            ctx.key_value_store::<String, i64>("counts").map(|_| ())
        }
        fn process(
            &mut self,
            _: Record<String, String>,
            _: &mut ProcessorContext<String, String>,
        ) -> Result<(), StreamsError> {
            Ok(())
        }
    }
    let mut t = counter_topology(StoreKind::InMemory);
    t.add_processor::<String, String, _, _>("sneaky", || Sneaky, &["src"])
        .unwrap();
    let err = TopologyTestDriver::new(t).err().expect("init must fail");
    assert!(err.to_string().contains("not connected"), "{err}");
}

/// Sees records of two topics in one task and tags them; the task must hand them over in timestamp order.
#[test]
fn a_task_processes_its_partitions_in_timestamp_order() {
    let mut t = Topology::new();
    t.add_source("left", &["l"], strings()).unwrap();
    t.add_source("right", &["r"], strings()).unwrap();
    t.add_processor::<String, String, _, _>("merge", || Tag("m"), &["left", "right"])
        .unwrap();
    t.add_sink("out", "out", sink(), &["merge"]).unwrap();
    let d = TopologyTestDriver::new(t).unwrap();
    // Queue records on both inputs before processing: pipe raw batches so both queues fill up.
    let raw = |v: &str, ts: i64| {
        (
            None,
            RawRecord {
                key: Some(b"k".to_vec()),
                value: Some(v.as_bytes().to_vec()),
                timestamp: ts,
                ..Default::default()
            },
        )
    };
    let batch = [
        ("l", raw("l1", 10)),
        ("l", raw("l2", 30)),
        ("r", raw("r1", 20)),
        ("r", raw("r2", 5)),
    ];
    d.pipe_raw_batch(batch.into_iter().map(|(t, (p, r))| (t, p, r)))
        .unwrap();
    // Heads compared at each step: l1(10) < r1(20); r1(20) < l2(30); r2(5) < l2(30); then l2.
    let out: Vec<_> = d
        .output_topic("out", Serdes::string(), Serdes::string())
        .read_values_in_order();
    assert_eq!(out, vec!["m:l1", "m:r1", "m:r2", "m:l2"]);
    // Within one partition, order is the log's order even when timestamps go backwards.
    d.pipe_raw("l", [raw("late", 1), raw("later", 0)]).unwrap();
    let out: Vec<_> = d
        .output_topic("out", Serdes::string(), Serdes::string())
        .read_values_in_order();
    assert_eq!(out, vec!["m:late", "m:later"]);
}

trait ReadAll {
    fn read_values_in_order(&self) -> Vec<String>;
}
impl ReadAll for TestOutputTopic<'_, String, String> {
    fn read_values_in_order(&self) -> Vec<String> {
        self.read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| r.value)
            .collect()
    }
}

#[test]
fn bad_records_fail_by_default_and_are_counted_when_skipped() {
    let topology = || {
        let mut t = Topology::new();
        t.add_source(
            "src",
            &["in"],
            SourceOptions::new(Serdes::string(), Serdes::i64()),
        )
        .unwrap();
        t.add_sink(
            "out",
            "out",
            SinkOptions::new(Serdes::string(), Serdes::i64()),
            &["src"],
        )
        .unwrap();
        t
    };
    let bad = || {
        (
            None,
            RawRecord {
                key: Some(b"k".to_vec()),
                value: Some(vec![1, 2, 3]),
                ..Default::default()
            },
        )
    };
    let good = || {
        (
            None,
            RawRecord {
                key: Some(b"k".to_vec()),
                value: Some(7i64.to_be_bytes().to_vec()),
                ..Default::default()
            },
        )
    };

    let d = TopologyTestDriver::new(topology()).unwrap();
    let err = d.pipe_raw("in", [bad()]).unwrap_err();
    match &err {
        StreamsError::Deserialization {
            topic,
            partition,
            offset,
            role,
            ..
        } => {
            assert_eq!(
                (topic.as_str(), *partition, *offset, *role),
                ("in", 0, 0, "value")
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    let d = TopologyTestDriver::builder(topology())
        .deserialization_handler(LogAndContinue)
        .build()
        .unwrap();
    d.pipe_raw("in", [good(), bad(), good()]).unwrap();
    assert_eq!(d.metrics().skipped_records, 1);
    assert_eq!(d.metrics().processed, 2);
    assert_eq!(
        d.output_topic("out", Serdes::string(), Serdes::i64())
            .read_values()
            .len(),
        2
    );
}

trait ReadValues {
    fn read_values(&self) -> Vec<i64>;
}
impl ReadValues for TestOutputTopic<'_, String, i64> {
    fn read_values(&self) -> Vec<i64> {
        self.read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| r.value)
            .collect()
    }
}

#[test]
fn negative_timestamps_are_rejected_and_extractors_apply() {
    let mut t = Topology::new();
    t.add_source(
        "src",
        &["in"],
        SourceOptions::new(Serdes::string(), Serdes::i64())
            .with_timestamp_extractor(|r: &Record<String, i64>, _| r.value),
    )
    .unwrap();
    t.add_sink(
        "out",
        "out",
        SinkOptions::new(Serdes::string(), Serdes::i64()),
        &["src"],
    )
    .unwrap();
    let d = TopologyTestDriver::new(t).unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::i64());
    input.pipe_input_at("a".into(), 1234, 1).unwrap();
    let r = d
        .output_topic("out", Serdes::string(), Serdes::i64())
        .read_record()
        .unwrap()
        .unwrap();
    assert_eq!(r.timestamp, 1234);
    let err = input.pipe_input_at("a".into(), -5, 1).unwrap_err();
    assert!(
        matches!(err, StreamsError::InvalidTimestamp { timestamp: -5, .. }),
        "{err}"
    );
}

#[test]
fn changelog_records_every_flushed_write() {
    let d = TopologyTestDriver::builder(counter_topology(StoreKind::InMemory))
        .application_id("app")
        .cache_max_bytes(1 << 20)
        .build()
        .unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::string());
    // One batch = one commit: the cache collapses the three updates of "a" into one changelog record.
    input
        .pipe_records((0..3).map(|i| TestRecord::new("a".to_string(), "x".to_string(), i)))
        .unwrap();
    input.pipe_input_at("b".into(), "x".into(), 5).unwrap();
    let changelog = d.output_topic("app-counts-changelog", Serdes::string(), Serdes::i64());
    assert_eq!(
        changelog.read_key_values_to_vec().unwrap(),
        vec![("a".to_string(), 3), ("b".to_string(), 1)]
    );
}

/// A topology whose store `counts` is logged to `changelog_source` (a topic the sub-topology reads, or not).
fn source_changelog_topology(changelog_source: &str) -> Topology {
    let mut t = counter_topology(StoreKind::InMemory);
    t.add_source("other-src", &["other"], strings()).unwrap();
    t.add_processor::<String, String, _, _>(
        "noop",
        || Counter {
            store: None,
            stream_schedule: None,
        },
        &["other-src"],
    )
    .unwrap();
    t.add_state_store(
        KeyValueStoreBuilder::new("copy", StoreKind::InMemory, Serdes::string(), Serdes::i64())
            .with_changelog_from_source(changelog_source),
        &["count"],
    )
    .unwrap();
    t
}

#[test]
fn a_store_logged_to_its_source_topic_gets_no_changelog_topic() {
    let t = source_changelog_topology("in");
    assert_eq!(t.store_changelog_topic("app", "copy"), "in");
    assert_eq!(
        t.store_changelog_topic("app", "counts"),
        "app-counts-changelog"
    );
    let plan = t.partition_plan("app", |_| Ok(4)).unwrap();
    assert_eq!(
        plan.changelogs.keys().cloned().collect::<Vec<_>>(),
        vec!["app-counts-changelog".to_string()]
    );
}

#[test]
fn a_store_logged_to_a_topic_its_sub_topology_does_not_read_is_refused() {
    let t = source_changelog_topology("other");
    let err = t.partition_plan("app", |_| Ok(4)).unwrap_err().to_string();
    assert!(err.contains("copy") && err.contains("other"), "{err}");
}

/// Holds every record back until [`Processor::flush`], then forwards them in arrival order with its tag
/// appended to the value.
struct HoldBack {
    tag: &'static str,
    held: Vec<Record<String, String>>,
}

impl Processor<String, String> for HoldBack {
    type KOut = String;
    type VOut = String;
    fn process(
        &mut self,
        r: Record<String, String>,
        _ctx: &mut ProcessorContext<String, String>,
    ) -> Result<(), StreamsError> {
        self.held.push(r);
        Ok(())
    }
    fn flush(&mut self, ctx: &mut ProcessorContext<String, String>) -> Result<(), StreamsError> {
        assert!(ctx.record_metadata().is_none(), "no record during a flush");
        for r in std::mem::take(&mut self.held) {
            let v = format!("{}{}", r.value, self.tag);
            ctx.forward(r.with_value(v))?;
        }
        Ok(())
    }
}

/// Processor::flush runs at each commit, upstream first: what the first processor forwards on flush reaches
/// the second before that one is flushed, so one commit empties both. With commits after each pipe (the
/// default, as Kafka's TopologyTestDriver) every record comes out at once.
#[test]
fn flush_runs_at_commit_in_topological_order() {
    let topology = || {
        let mut t = Topology::new();
        t.add_source("src", &["in"], strings()).unwrap();
        t.add_processor::<String, String, _, _>(
            "first",
            || HoldBack {
                tag: "1",
                held: Vec::new(),
            },
            &["src"],
        )
        .unwrap();
        t.add_processor::<String, String, _, _>(
            "second",
            || HoldBack {
                tag: "2",
                held: Vec::new(),
            },
            &["first"],
        )
        .unwrap();
        t.add_sink("sink", "out", sink(), &["second"]).unwrap();
        t
    };
    let d = TopologyTestDriver::builder(topology())
        .commit_after_each_pipe(false)
        .build()
        .unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::string());
    let out = d.output_topic("out", Serdes::string(), Serdes::string());
    input.pipe_input("a".into(), "x".into()).unwrap();
    input.pipe_input("b".into(), "y".into()).unwrap();
    assert_eq!(out.read_key_value().unwrap(), None);
    d.commit().unwrap();
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![("a".into(), "x12".into()), ("b".into(), "y12".into())]
    );
    d.commit().unwrap();
    assert_eq!(out.read_key_value().unwrap(), None);

    let d = TopologyTestDriver::new(topology()).unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::string());
    let out = d.output_topic("out", Serdes::string(), Serdes::string());
    input.pipe_input("a".into(), "x".into()).unwrap();
    assert_eq!(
        out.read_key_value().unwrap(),
        Some(("a".into(), "x12".into()))
    );
}
