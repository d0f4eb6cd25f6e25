//! Exception handlers through the test driver: the processing exception handler (KIP-1033), dead-letter records
//! with Kafka Streams' headers (KIP-1034), and records without a valid timestamp.
//!
//! Scenarios follow Kafka Streams' `ProcessingExceptionHandlerIntegrationTest` (a processor failing on some
//! records under log-and-continue and log-and-fail, a failing punctuation) and `DeadLetterQueueIntegrationTest`
//! (what the dead-letter topic holds), with expected results computed independently of the engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use streams_core::*;

/// Multiplies values by 3; fails with an error on multiples of 7 and panics on multiples of 11 (the panic wins on
/// multiples of both).
struct Checked;

impl Processor<String, i64> for Checked {
    type KOut = String;
    type VOut = i64;
    fn process(
        &mut self,
        r: Record<String, i64>,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        if r.value % 11 == 0 {
            panic!("value {} is divisible by 11", r.value);
        }
        if r.value % 7 == 0 {
            return Err(StreamsError::processor(format!(
                "value {} is divisible by 7",
                r.value
            )));
        }
        let v = r.value * 3;
        ctx.forward(r.with_value(v))
    }
}

/// Forwards every record unchanged (a sibling branch of `checked`).
struct Pass;

impl Processor<String, i64> for Pass {
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

fn longs() -> SourceOptions<String, i64> {
    SourceOptions::new(Serdes::string(), Serdes::i64())
}

/// `in` -> `checked` -> `out`, and `in` -> `pass` -> `all`.
fn topology() -> Topology {
    let mut t = Topology::new();
    t.add_source("src", &["in"], longs()).unwrap();
    t.add_processor("checked", || Checked, &["src"]).unwrap();
    t.add_sink(
        "out",
        "out",
        SinkOptions::new(Serdes::string(), Serdes::i64()),
        &["checked"],
    )
    .unwrap();
    t.add_processor("pass", || Pass, &["src"]).unwrap();
    t.add_sink(
        "all",
        "all",
        SinkOptions::new(Serdes::string(), Serdes::i64()),
        &["pass"],
    )
    .unwrap();
    t
}

/// Input values 1..=100 (key `k<v>`, timestamp 1000 + v), each with a header naming it.
fn raw_input() -> Vec<(Option<i32>, RawRecord)> {
    (1..=100i64)
        .map(|v| {
            (
                None,
                RawRecord {
                    key: Some(format!("k{v}").into_bytes()),
                    value: Some(v.to_be_bytes().to_vec()),
                    timestamp: 1000 + v,
                    headers: Headers::new().with("origin", format!("record-{v}")),
                    offset: 0,
                },
            )
        })
        .collect()
}

fn bad(v: i64) -> bool {
    v % 7 == 0 || v % 11 == 0
}

fn header(h: &Headers, key: &str) -> Option<String> {
    h.last(key)
        .map(|h| String::from_utf8(h.value.clone().unwrap_or_default()).unwrap())
}

#[test]
fn processing_handler_continue_skips_only_failing_records() {
    let d = TopologyTestDriver::builder(topology())
        .processing_handler(LogAndContinueProcessing)
        .build()
        .unwrap();
    d.pipe_raw("in", raw_input()).unwrap();

    let expected: Vec<(String, i64)> = (1..=100i64)
        .filter(|v| !bad(*v))
        .map(|v| (format!("k{v}"), v * 3))
        .collect();
    let out = d
        .output_topic("out", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    assert_eq!(out, expected);
    // The sibling branch (after `checked`) saw every record `checked` failed on with an error: an error skips the
    // record at the failing processor only. A panic abandons the rest of the record's processing.
    let all = d
        .output_topic("all", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    let expected_all: Vec<(String, i64)> = (1..=100i64)
        .filter(|v| v % 11 != 0)
        .map(|v| (format!("k{v}"), v))
        .collect();
    assert_eq!(all, expected_all);
    let bad_count = (1..=100i64).filter(|v| bad(*v)).count() as u64;
    assert_eq!(bad_count, 14 + 9 - 1);
    let m = d.metrics();
    assert_eq!(m.skipped_records, bad_count);
    assert_eq!(m.processed, 100);
    assert_eq!(m.dead_lettered, 0);
}

#[test]
fn processing_handler_fail_is_the_default_and_names_processor_and_task() {
    // An error returned by the processor.
    let d = TopologyTestDriver::new(topology()).unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::i64());
    input.pipe_input("a".into(), 1).unwrap();
    let err = input.pipe_input("b".into(), 14).unwrap_err();
    match &err {
        StreamsError::Processor { node, message } => {
            assert_eq!(node, "checked");
            assert_eq!(message, "value 14 is divisible by 7");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(d.metrics().skipped_records, 0);

    // A panic of the processor.
    let d = TopologyTestDriver::builder(topology())
        .processing_handler(LogAndFailProcessing)
        .build()
        .unwrap();
    let err = d
        .input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_input("c".into(), 22)
        .unwrap_err();
    match &err {
        StreamsError::Panic {
            task,
            processor,
            message,
            ..
        } => {
            assert_eq!(
                *task,
                Some(TaskId {
                    subtopology: 0,
                    partition: 0
                })
            );
            assert_eq!(processor.as_deref(), Some("checked"));
            assert_eq!(message, "value 22 is divisible by 11");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("in task 0_0 at processor 'checked'"),
        "{err}"
    );
}

#[test]
fn dead_letter_topic_holds_exactly_the_failing_source_records_with_kafka_headers() {
    let d = TopologyTestDriver::builder(topology())
        .processing_handler(LogAndContinueProcessing)
        .dead_letter_queue_topic("dlq")
        .build()
        .unwrap();
    d.pipe_raw("in", raw_input()).unwrap();

    let dlq = d
        .output_topic("dlq", Serdes::bytes(), Serdes::bytes())
        .read_records_to_vec()
        .unwrap();
    let bad_values: Vec<i64> = (1..=100i64).filter(|v| bad(*v)).collect();
    assert_eq!(dlq.len(), bad_values.len());
    for (r, v) in dlq.iter().zip(&bad_values) {
        // The source record's bytes, as read.
        assert_eq!(r.key, format!("k{v}").into_bytes());
        assert_eq!(r.value, v.to_be_bytes().to_vec());
        assert_eq!(r.timestamp, 1000 + v);
        assert_eq!(header(&r.headers, "origin"), Some(format!("record-{v}")));
        let (exception, message) = if v % 11 == 0 {
            (
                "streams_core::StreamsError::Panic",
                format!(
                    "stream thread '{}' panicked in task 0_0 at processor 'checked': value {v} is divisible by 11",
                    std::thread::current().name().unwrap()
                ),
            )
        } else {
            (
                "streams_core::StreamsError::Processor",
                format!("processor 'checked' failed: value {v} is divisible by 7"),
            )
        };
        assert_eq!(
            header(&r.headers, "__streams.errors.exception").as_deref(),
            Some(exception)
        );
        assert_eq!(
            header(&r.headers, "__streams.errors.message"),
            Some(message.clone())
        );
        let trace = header(&r.headers, "__streams.errors.stacktrace").unwrap();
        assert!(trace.starts_with(&message), "{trace}");
        assert_eq!(
            header(&r.headers, "__streams.errors.topic").as_deref(),
            Some("in")
        );
        assert_eq!(
            header(&r.headers, "__streams.errors.partition").as_deref(),
            Some("0")
        );
        // Offsets count from 0 in the order records were piped: value v is at offset v - 1.
        assert_eq!(
            header(&r.headers, "__streams.errors.offset"),
            Some((v - 1).to_string())
        );
        // The source's header, then exactly the six error headers.
        assert_eq!(r.headers.len(), 7);
    }
    let m = d.metrics();
    assert_eq!(m.dead_lettered, bad_values.len() as u64);
    assert_eq!(m.skipped_records, bad_values.len() as u64);
    // The good records are unaffected.
    assert_eq!(
        d.output_topic("out", Serdes::string(), Serdes::i64())
            .read_values_to_vec(),
        (1..=100i64)
            .filter(|v| !bad(*v))
            .map(|v| v * 3)
            .collect::<Vec<_>>()
    );
}

trait ReadValues {
    fn read_values_to_vec(&self) -> Vec<i64>;
}
impl ReadValues for TestOutputTopic<'_, String, i64> {
    fn read_values_to_vec(&self) -> Vec<i64> {
        self.read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| r.value)
            .collect()
    }
}

/// What a handler was told, for the assertions.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    processor: String,
    task: TaskId,
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    error: String,
}

#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<Seen>>>);

impl ProcessingExceptionHandler for Recording {
    fn handle(&self, ctx: &ProcessingErrorContext<'_>, error: &StreamsError) -> ProcessingResponse {
        self.0.lock().unwrap().push(Seen {
            processor: ctx.processor.to_string(),
            task: ctx.task,
            topic: ctx.topic.map(str::to_string),
            partition: ctx.partition,
            offset: ctx.offset,
            timestamp: ctx.timestamp,
            key: ctx.source_key.map(<[u8]>::to_vec),
            value: ctx.source_value.map(<[u8]>::to_vec),
            error: error.to_string(),
        });
        ProcessingResponse::resume()
    }
}

#[test]
fn processing_handler_context_names_processor_task_and_source_record() {
    let seen = Recording::default();
    let d = TopologyTestDriver::builder(topology())
        .default_partitions(2)
        .processing_handler(seen.clone())
        .build()
        .unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::i64());
    input
        .pipe_record(TestRecord::new("x".to_string(), 7, 500).with_partition(1))
        .unwrap();
    input
        .pipe_record(TestRecord::new("y".to_string(), 8, 600).with_partition(1))
        .unwrap();
    input
        .pipe_record(TestRecord::new("z".to_string(), 21, 700).with_partition(1))
        .unwrap();
    let seen = seen.0.lock().unwrap().clone();
    let task = TaskId {
        subtopology: 0,
        partition: 1,
    };
    let expect = |v: i64, offset: i64, ts: i64, key: &str| Seen {
        processor: "checked".into(),
        task,
        topic: Some("in".into()),
        partition: Some(1),
        offset: Some(offset),
        timestamp: ts,
        key: Some(key.as_bytes().to_vec()),
        value: Some(v.to_be_bytes().to_vec()),
        error: format!("processor 'checked' failed: value {v} is divisible by 7"),
    };
    assert_eq!(seen, vec![expect(7, 0, 500, "x"), expect(21, 2, 700, "z")]);
}

/// Schedules a wall-clock punctuation every second that fails every other time.
struct FailingPunctuation {
    fired: u32,
}

impl Processor<String, i64> for FailingPunctuation {
    type KOut = String;
    type VOut = i64;
    fn init(&mut self, ctx: &mut ProcessorContext<String, i64>) -> Result<(), StreamsError> {
        ctx.schedule(Duration::from_secs(1), PunctuationType::WallClockTime)?;
        Ok(())
    }
    fn process(
        &mut self,
        r: Record<String, i64>,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        ctx.forward(r)
    }
    fn punctuate(
        &mut self,
        _: ScheduleId,
        timestamp: i64,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        self.fired += 1;
        if self.fired % 2 == 1 {
            return Err(StreamsError::processor(format!(
                "punctuation at {timestamp}"
            )));
        }
        ctx.forward(Record::new("tick".to_string(), timestamp, timestamp))
    }
}

fn punctuating() -> Topology {
    let mut t = Topology::new();
    t.add_source("src", &["in"], longs()).unwrap();
    t.add_processor("ticker", || FailingPunctuation { fired: 0 }, &["src"])
        .unwrap();
    t.add_sink(
        "out",
        "out",
        SinkOptions::new(Serdes::string(), Serdes::i64()),
        &["ticker"],
    )
    .unwrap();
    t
}

#[test]
fn punctuation_errors_go_to_the_processing_handler() {
    let seen = Recording::default();
    let d = TopologyTestDriver::builder(punctuating())
        .processing_handler(seen.clone())
        .dead_letter_queue_topic("dlq")
        .build()
        .unwrap();
    d.advance_wall_clock(Duration::from_secs(1)).unwrap(); // fails: skipped
    d.advance_wall_clock(Duration::from_secs(1)).unwrap(); // forwards a tick
    d.advance_wall_clock(Duration::from_secs(1)).unwrap(); // fails: skipped
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (s, at) in seen.iter().zip([1000, 3000]) {
        assert_eq!(s.processor, "ticker");
        assert_eq!(
            (s.topic.as_deref(), s.partition, s.offset),
            (None, None, None)
        );
        assert_eq!((s.key.as_deref(), s.value.as_deref()), (None, None));
        assert_eq!(s.timestamp, at);
        assert_eq!(
            s.error,
            format!("processor 'ticker' failed: punctuation at {at}")
        );
    }
    assert_eq!(d.metrics().skipped_records, 2);
    assert_eq!(
        d.output_topic("out", Serdes::string(), Serdes::i64())
            .read_values_to_vec(),
        vec![2000]
    );

    // Under the default handler, the first failing punctuation fails, naming the processor.
    let d = TopologyTestDriver::new(punctuating()).unwrap();
    let err = d.advance_wall_clock(Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(&err, StreamsError::Processor { node, .. } if node == "ticker"),
        "{err:?}"
    );
}

#[test]
fn deserialization_continue_with_dead_letter_topic_writes_kafka_headers() {
    let mut t = Topology::new();
    t.add_source("src", &["in"], longs()).unwrap();
    t.add_sink(
        "out",
        "out",
        SinkOptions::new(Serdes::string(), Serdes::i64()),
        &["src"],
    )
    .unwrap();
    let d = TopologyTestDriver::builder(t)
        .deserialization_handler(LogAndContinue)
        .dead_letter_queue_topic("dlq")
        .build()
        .unwrap();
    let record = |value: Vec<u8>| {
        (
            None,
            RawRecord {
                key: Some(b"k".to_vec()),
                value: Some(value),
                timestamp: 42,
                headers: Headers::new().with("h", "1"),
                offset: 0,
            },
        )
    };
    d.pipe_raw(
        "in",
        [
            record(5i64.to_be_bytes().to_vec()),
            record(vec![1, 2, 3]),
            record(6i64.to_be_bytes().to_vec()),
        ],
    )
    .unwrap();
    let dlq = d
        .output_topic("dlq", Serdes::bytes(), Serdes::bytes())
        .read_records_to_vec()
        .unwrap();
    assert_eq!(dlq.len(), 1);
    let r = &dlq[0];
    assert_eq!(
        (r.key.as_slice(), r.value.as_slice()),
        (&b"k"[..], &[1u8, 2, 3][..])
    );
    assert_eq!(header(&r.headers, "h").as_deref(), Some("1"));
    assert_eq!(
        header(&r.headers, "__streams.errors.exception").as_deref(),
        Some("streams_core::StreamsError::Deserialization")
    );
    let message = header(&r.headers, "__streams.errors.message").unwrap();
    assert!(
        message.starts_with("cannot deserialize the value of the record at in-0@1: "),
        "{message}"
    );
    assert!(header(&r.headers, "__streams.errors.stacktrace")
        .unwrap()
        .starts_with(&message));
    assert_eq!(
        header(&r.headers, "__streams.errors.topic").as_deref(),
        Some("in")
    );
    assert_eq!(
        header(&r.headers, "__streams.errors.partition").as_deref(),
        Some("0")
    );
    assert_eq!(
        header(&r.headers, "__streams.errors.offset").as_deref(),
        Some("1")
    );
    assert_eq!(
        header(&r.headers, DLQ_ROLE_HEADER).as_deref(),
        Some("value")
    );
    let m = d.metrics();
    assert_eq!((m.skipped_records, m.dead_lettered, m.processed), (1, 1, 2));
}

fn timestamp_topology(extractor: impl TimestampExtractor<String, i64>) -> Topology {
    let mut t = Topology::new();
    t.add_source("src", &["in"], longs().with_timestamp_extractor(extractor))
        .unwrap();
    t.add_sink(
        "out",
        "out",
        SinkOptions::new(Serdes::string(), Serdes::i64()),
        &["src"],
    )
    .unwrap();
    t
}

fn at(timestamp: i64, value: i64) -> (Option<i32>, RawRecord) {
    (
        None,
        RawRecord {
            key: Some(b"k".to_vec()),
            value: Some(value.to_be_bytes().to_vec()),
            timestamp,
            ..Default::default()
        },
    )
}

#[test]
fn records_without_a_valid_timestamp_fail_by_default_naming_topic_partition_offset() {
    let d = TopologyTestDriver::new(timestamp_topology(FailOnInvalidTimestamp)).unwrap();
    let err = d.pipe_raw("in", [at(10, 1), at(-1, 2)]).unwrap_err();
    match &err {
        StreamsError::InvalidTimestamp {
            topic,
            partition,
            offset,
            timestamp,
        } => assert_eq!(
            (topic.as_str(), *partition, *offset, *timestamp),
            ("in", 0, 1, -1)
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn log_and_skip_on_invalid_timestamp_skips_and_counts() {
    let d = TopologyTestDriver::new(timestamp_topology(LogAndSkipOnInvalidTimestamp)).unwrap();
    d.pipe_raw("in", [at(10, 1), at(-1, 2), at(20, 3), at(-7, 4)])
        .unwrap();
    let out: Vec<(i64, i64)> = d
        .output_topic("out", Serdes::string(), Serdes::i64())
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect();
    assert_eq!(out, vec![(1, 10), (3, 20)]);
    let m = d.metrics();
    assert_eq!((m.skipped_records, m.processed), (2, 2));
}

#[test]
fn use_partition_time_on_invalid_fails_before_any_partition_time() {
    let d = TopologyTestDriver::new(timestamp_topology(UsePartitionTimeOnInvalid)).unwrap();
    d.pipe_raw("in", [at(10, 1), at(-1, 2), at(5, 3)]).unwrap();
    let out: Vec<(i64, i64)> = d
        .output_topic("out", Serdes::string(), Serdes::i64())
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect();
    // The invalid one takes the partition time (the highest so far: 10).
    assert_eq!(out, vec![(1, 10), (2, 10), (3, 5)]);

    // A partition whose first record has no timestamp has no partition time to use.
    let d = TopologyTestDriver::new(timestamp_topology(UsePartitionTimeOnInvalid)).unwrap();
    let err = d.pipe_raw("in", [at(-1, 1)]).unwrap_err();
    assert!(
        matches!(
            err,
            StreamsError::InvalidTimestamp {
                offset: 0,
                timestamp: -1,
                ..
            }
        ),
        "{err:?}"
    );
}

/// A value serde whose serializer refuses negative numbers.
struct NonNegative;

impl Serde<i64> for NonNegative {
    fn serialize(&self, value: &i64, out: &mut Vec<u8>) -> Result<(), serde::SerdeError> {
        if *value < 0 {
            return Err(serde::SerdeError::new(
                "i64",
                serde::SerdeErrorKind::InvalidUtf8,
                "negative",
            ));
        }
        out.extend_from_slice(&value.to_be_bytes());
        Ok(())
    }
    fn deserialize(&self, data: &[u8]) -> Result<i64, serde::SerdeError> {
        Serdes::i64().deserialize(data)
    }
}

#[test]
fn sink_failures_never_reach_the_processing_handler() {
    let mut t = Topology::new();
    t.add_source("src", &["in"], longs()).unwrap();
    t.add_processor("pass", || Pass, &["src"]).unwrap();
    t.add_sink(
        "out",
        "out",
        SinkOptions::new(Serdes::string(), NonNegative),
        &["pass"],
    )
    .unwrap();
    let seen = Recording::default();
    let d = TopologyTestDriver::builder(t)
        .processing_handler(seen.clone())
        .build()
        .unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::i64());
    input.pipe_input("a".into(), 1).unwrap();
    let err = input.pipe_input("b".into(), -1).unwrap_err();
    assert!(
        matches!(&err, StreamsError::Serialization { topic, role: "value", .. } if topic == "out"),
        "{err:?}"
    );
    assert!(seen.0.lock().unwrap().is_empty());
    assert_eq!(d.metrics().skipped_records, 0);
}

/// A handler that panics.
struct PanickingHandler;

impl ProcessingExceptionHandler for PanickingHandler {
    fn handle(&self, _: &ProcessingErrorContext<'_>, _: &StreamsError) -> ProcessingResponse {
        panic!("handler bug");
    }
}

#[test]
fn a_panicking_handler_fails_naming_the_processor_and_the_original_error() {
    let d = TopologyTestDriver::builder(topology())
        .processing_handler(PanickingHandler)
        .build()
        .unwrap();
    let err = d
        .input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_input("a".into(), 7)
        .unwrap_err();
    match &err {
        StreamsError::Panic {
            processor, message, ..
        } => {
            assert_eq!(processor.as_deref(), Some("checked"));
            assert!(message.contains("handler bug"), "{message}");
            assert!(message.contains("value 7 is divisible by 7"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Records what it is told, and says it does not read the source bytes.
#[derive(Clone, Default)]
struct NoBytes(Recording);

impl ProcessingExceptionHandler for NoBytes {
    fn handle(&self, ctx: &ProcessingErrorContext<'_>, error: &StreamsError) -> ProcessingResponse {
        self.0.handle(ctx, error)
    }
    fn uses_source_bytes(&self) -> bool {
        false
    }
}

#[test]
fn source_bytes_are_kept_only_for_handlers_that_use_them_or_a_dead_letter_topic() {
    for dlq in [false, true] {
        let seen = NoBytes::default();
        let mut b = TopologyTestDriver::builder(topology()).processing_handler(seen.clone());
        if dlq {
            b = b.dead_letter_queue_topic("dlq");
        }
        let d = b.build().unwrap();
        d.input_topic("in", Serdes::string(), Serdes::i64())
            .pipe_input("a".into(), 7)
            .unwrap();
        let seen = seen.0 .0.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let bytes = (seen[0].key.clone(), seen[0].value.clone());
        if dlq {
            assert_eq!(
                bytes,
                (Some(b"a".to_vec()), Some(7i64.to_be_bytes().to_vec()))
            );
        } else {
            assert_eq!(bytes, (None, None));
        }
        // The metadata is there either way.
        assert_eq!(
            (seen[0].topic.as_deref(), seen[0].offset),
            (Some("in"), Some(0))
        );
    }
}

#[test]
fn fail_handlers_write_the_dead_letter_before_failing() {
    // Processing: the default handler with a dead-letter topic.
    let d = TopologyTestDriver::builder(topology())
        .dead_letter_queue_topic("dlq")
        .build()
        .unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::i64());
    input.pipe_input("a".into(), 1).unwrap();
    let err = input.pipe_input("b".into(), 14).unwrap_err();
    assert!(
        matches!(&err, StreamsError::Processor { node, .. } if node == "checked"),
        "{err:?}"
    );
    let dlq = d
        .output_topic("dlq", Serdes::bytes(), Serdes::bytes())
        .read_records_to_vec()
        .unwrap();
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        (dlq[0].key.as_slice(), dlq[0].value.as_slice()),
        (&b"b"[..], &14i64.to_be_bytes()[..])
    );
    assert_eq!(
        header(&dlq[0].headers, "__streams.errors.offset").as_deref(),
        Some("1")
    );
    assert_eq!(d.metrics().skipped_records, 0);

    // Deserialization: the default handler with a dead-letter topic.
    let mut t = Topology::new();
    t.add_source("src", &["in"], longs()).unwrap();
    t.add_sink(
        "out",
        "out",
        SinkOptions::new(Serdes::string(), Serdes::i64()),
        &["src"],
    )
    .unwrap();
    let d = TopologyTestDriver::builder(t)
        .dead_letter_queue_topic("dlq")
        .build()
        .unwrap();
    let err = d
        .pipe_raw(
            "in",
            [(
                None,
                RawRecord {
                    key: Some(b"k".to_vec()),
                    value: Some(vec![9]),
                    ..Default::default()
                },
            )],
        )
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StreamsError::Deserialization {
                offset: 0,
                role: "value",
                ..
            }
        ),
        "{err:?}"
    );
    let dlq = d
        .output_topic("dlq", Serdes::bytes(), Serdes::bytes())
        .read_records_to_vec()
        .unwrap();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].value, vec![9]);
    assert_eq!(
        header(&dlq[0].headers, "__streams.errors.exception").as_deref(),
        Some("streams_core::StreamsError::Deserialization")
    );
}
