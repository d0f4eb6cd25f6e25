//! `KTable::suppress` buffer bounds and full-buffer policies, checked against an independent model of the
//! buffer, and the buffer's survival across a restart.

use std::time::Duration;

use streams_dsl::*;

type Out = Vec<(String, Option<i64>, i64)>;

/// `table("input")` suppressed by `suppressed` to "output".
fn topology(suppressed: Suppressed<String>) -> Topology {
    let b = StreamsBuilder::new();
    b.table(
        "input",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::new(),
    )
    .suppress(suppressed.with_name("rate-limit"))
    .to_stream()
    .to(
        "output",
        Produced::with(Serdes::string(), OptionSerde::new(Serdes::i64())),
    );
    b.build().unwrap()
}

fn drain(d: &TopologyTestDriver) -> Out {
    d.output_topic("output", Serdes::string(), OptionSerde::new(Serdes::i64()))
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect()
}

/// A deterministic stream of table updates: (key, value, timestamp), timestamps increasing by 1 from 0.
fn updates(n: usize, keys: u64) -> Vec<(String, i64, i64)> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (format!("k{}", x % keys), (x >> 40) as i64, i as i64)
        })
        .collect()
}

/// The buffer as Kafka's `InMemoryTimeOrderedKeyValueChangeBuffer` keeps it, with a record bound and
/// emit-early: keys in the order they were first buffered (timestamps are distinct and increasing here, so that
/// is buffer-time order); an update of a buffered key replaces its value and timestamp in place; after each
/// update, the keys due (buffer time + limit <= stream time) and then the oldest keys over the bound are emitted.
fn model(input: &[(String, i64, i64)], limit: i64, max_records: usize) -> (Out, Vec<String>) {
    let mut buffer: Vec<(String, i64, i64, i64)> = Vec::new(); // key, value, timestamp, buffer time
    let mut out = Vec::new();
    let mut stream_time = i64::MIN;
    for (k, v, t) in input {
        stream_time = stream_time.max(*t);
        match buffer.iter_mut().find(|e| &e.0 == k) {
            Some(e) => {
                e.1 = *v;
                e.2 = *t;
            }
            None => buffer.push((k.clone(), *v, *t, *t)),
        }
        while buffer.first().is_some_and(|e| e.3 <= stream_time - limit) {
            let e = buffer.remove(0);
            out.push((e.0, Some(e.1), e.2));
        }
        while buffer.len() > max_records {
            let e = buffer.remove(0);
            out.push((e.0, Some(e.1), e.2));
        }
    }
    (out, buffer.into_iter().map(|e| e.0).collect())
}

#[test]
fn emit_early_emits_the_oldest_first_and_loses_nothing() {
    let input = updates(400, 12);
    let (limit, max) = (50, 5);
    let d = TopologyTestDriver::new(topology(Suppressed::until_time_limit(
        Duration::from_millis(limit as u64),
        BufferConfig::max_records(max as u64),
    )))
    .unwrap();
    let topic = d.input_topic("input", Serdes::string(), Serdes::i64());
    for (k, v, t) in &input {
        topic.pipe_input_at(k.clone(), *v, *t).unwrap();
    }
    let emitted = drain(&d);
    let (expected, still_held) = model(&input, limit, max);
    assert_eq!(emitted, expected);
    // The bound forced early emissions (not just the time limit).
    let (by_time_only, _) = model(&input, limit, usize::MAX);
    assert_ne!(emitted, by_time_only);
    // Nothing lost: once stream time passes every held key's limit, the last value emitted for each key is its
    // last input value.
    topic.pipe_input_at("tick".into(), 0, 1_000_000).unwrap();
    let flushed = drain(&d);
    let flushed_keys: Vec<String> = flushed.iter().map(|e| e.0.clone()).collect();
    assert_eq!(flushed_keys, still_held);
    let mut last_out = std::collections::BTreeMap::new();
    for (k, v, t) in emitted.into_iter().chain(flushed) {
        last_out.insert(k, (v, t));
    }
    let mut last_in = std::collections::BTreeMap::new();
    for (k, v, t) in &input {
        last_in.insert(k.clone(), (Some(*v), *t));
    }
    assert_eq!(last_out, last_in);
}

#[test]
fn emit_early_by_bytes_evicts_oldest_until_within_the_bound() {
    // An entry here is 8 (buffer time) + 2 (key) + 8 (value) + 20 (record context) + 5 ("input") = 43 bytes,
    // plus 8 once an update carries an old value: three entries fit in 140 bytes, four do not.
    let d = TopologyTestDriver::new(topology(Suppressed::until_time_limit(
        Duration::from_secs(3600),
        BufferConfig::max_bytes(140),
    )))
    .unwrap();
    let topic = d.input_topic("input", Serdes::string(), Serdes::i64());
    for (i, k) in ["k1", "k2", "k3"].iter().enumerate() {
        topic.pipe_input_at(k.to_string(), 1, i as i64).unwrap();
    }
    assert_eq!(drain(&d), vec![]);
    topic.pipe_input_at("k4".into(), 1, 3).unwrap();
    assert_eq!(drain(&d), vec![("k1".to_string(), Some(1), 0)]);
    // k2 updated (now 51 bytes with its old value): 51 + 43 + 43 = 137 still fits
    topic.pipe_input_at("k2".into(), 2, 4).unwrap();
    assert_eq!(drain(&d), vec![]);
    // a new key: k2 is the oldest (first buffered at 1), and goes out with its latest value
    topic.pipe_input_at("k5".into(), 1, 5).unwrap();
    assert_eq!(drain(&d), vec![("k2".to_string(), Some(2), 4)]);
}

#[test]
fn shut_down_when_full_fails_the_task_naming_the_suppression_and_its_bound() {
    let d = TopologyTestDriver::new(topology(Suppressed::until_time_limit(
        Duration::from_secs(3600),
        BufferConfig::max_records(2).shut_down_when_full(),
    )))
    .unwrap();
    let topic = d.input_topic("input", Serdes::string(), Serdes::i64());
    topic.pipe_input_at("a".into(), 1, 0).unwrap();
    topic.pipe_input_at("b".into(), 1, 1).unwrap();
    // Updating a held key does not grow the buffer.
    topic.pipe_input_at("a".into(), 2, 2).unwrap();
    let err = topic.pipe_input_at("c".into(), 1, 3).unwrap_err();
    assert!(
        matches!(&err, StreamsError::Processor { node, .. } if node == "rate-limit"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("suppression 'rate-limit'"), "{msg}");
    assert!(msg.contains("[3/2] records"), "{msg}");
    assert!(msg.contains("shut_down_when_full"), "{msg}");
    // Nothing was emitted early.
    assert_eq!(drain(&d), vec![]);
}

#[test]
fn until_window_closes_rejects_an_emit_early_buffer_and_zero_bounds_are_rejected() {
    let b = StreamsBuilder::new();
    b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
            10,
        )))
        .count(Materialized::new())
        .suppress(
            Suppressed::until_window_closes()
                .with_buffer_config(BufferConfig::max_records(10))
                .with_name("finals"),
        );
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("'finals'") && err.contains("strict"), "{err}");

    let b = StreamsBuilder::new();
    b.table(
        "t",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::new(),
    )
    .suppress(
        Suppressed::until_time_limit(Duration::from_secs(1), BufferConfig::max_bytes(0))
            .with_name("zero"),
    );
    let err = b.build().unwrap_err();
    assert!(
        matches!(&err, StreamsError::InvalidTopology(m) if m.contains("'zero'") && m.contains("max_bytes(0)")),
        "{err}"
    );

    // A strict bounded buffer is accepted for final results.
    let b = StreamsBuilder::new();
    b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
            10,
        )))
        .count(Materialized::new())
        .suppress(
            Suppressed::until_window_closes()
                .with_buffer_config(BufferConfig::max_records(10).shut_down_when_full()),
        );
    b.build().unwrap();
}

#[test]
fn a_held_update_carries_its_headers_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("suppress-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let suppressed =
        || Suppressed::until_time_limit(Duration::from_millis(10), BufferConfig::max_records(3));
    let input = updates(60, 6);
    // One uninterrupted run.
    let d = TopologyTestDriver::new(topology(suppressed())).unwrap();
    let topic = d.input_topic("input", Serdes::string(), Serdes::i64());
    for (k, v, t) in &input {
        topic.pipe_input_at(k.clone(), *v, *t).unwrap();
    }
    let whole = drain(&d);
    // The same input, stopped and restarted halfway on the same state directory.
    let mut halves = Vec::new();
    for part in [&input[..30], &input[30..]] {
        let d = TopologyTestDriver::builder(topology(suppressed()))
            .state_dir(&dir)
            .build()
            .unwrap();
        let topic = d.input_topic("input", Serdes::string(), Serdes::i64());
        for (k, v, t) in part {
            topic.pipe_input_at(k.clone(), *v, *t).unwrap();
        }
        halves.extend(drain(&d));
        d.close().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(halves, whole);

    // Headers: the emitted record carries the headers of the update it emits.
    let d = TopologyTestDriver::new(topology(suppressed())).unwrap();
    let topic = d.input_topic("input", Serdes::string(), Serdes::i64());
    topic
        .pipe_record(
            TestRecord::new("a".into(), 1, 0).with_headers(Headers::new().with("h", "first")),
        )
        .unwrap();
    topic
        .pipe_record(
            TestRecord::new("a".into(), 2, 5).with_headers(Headers::new().with("h", "second")),
        )
        .unwrap();
    topic.pipe_input_at("b".into(), 1, 10).unwrap();
    let out = d
        .output_topic("output", Serdes::string(), OptionSerde::new(Serdes::i64()))
        .read_records_to_vec()
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].value, out[0].timestamp), (Some(2), 5));
    let h = out[0].headers.last("h").and_then(|h| h.value.clone());
    assert_eq!(h.as_deref(), Some(&b"second"[..]));
}

// `until_window_closes` finds the grace period up the graph, as Kafka Streams' GraphGraceSearchUtil does.

/// Windowed counts of "clicks" (windows of 10 ms, `grace_ms` of grace) as (key, window start, count), read back
/// from "output" after `.filter(..).map_values(..)` and a final-results suppression further down.
fn windowed_then_derived(grace_ms: u64, input: &[(&str, i64)]) -> Vec<(String, i64, i64, i64)> {
    let b = StreamsBuilder::new();
    b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_millis(10),
            Duration::from_millis(grace_ms),
        ))
        .count(Materialized::new())
        .filter(|_, n| *n > 0)
        .map_values(|n| n * 100)
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .map(|k, v| (format!("{}@{}", k.key, k.window.start), v.unwrap_or(-1)))
        .to("output", Produced::with(Serdes::string(), Serdes::i64()));
    let d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    let clicks = d.input_topic("clicks", Serdes::string(), Serdes::string());
    let out = d.output_topic("output", Serdes::string(), Serdes::i64());
    let mut got = Vec::new();
    for (k, t) in input {
        clicks.pipe_input_at(k.to_string(), "x".into(), *t).unwrap();
        for r in out.read_records_to_vec().unwrap() {
            got.push((r.key, *t, r.value, r.timestamp));
        }
    }
    got
}

/// GraphGraceSearchUtilTest.shouldExtractGraceFromSessionAncestorThroughStatelessParent (here a time-windowed
/// aggregation behind a filter and a mapValues): the final result of each window comes out once stream time
/// reaches its end plus the grace found upstream, with the count of the records in it.
#[test]
fn until_window_closes_finds_the_grace_period_through_derived_tables() {
    let input = [
        ("a", 1),
        ("a", 3),
        ("b", 4),
        ("a", 12),
        ("a", 14), // window [0, 10) closes at 10 + 5 = 15: not yet
        ("b", 15), // closes [0, 10)
        ("a", 2),  // late for [0, 10): dropped
        ("a", 29), // closes [10, 20) at 25
    ];
    let got = windowed_then_derived(5, &input);
    // Independently: a record counts unless its window had closed when it came (end + grace <= stream time);
    // a window's final count is emitted at the first record that brings stream time to its end + grace.
    let mut expected = Vec::new();
    let mut stream_time = i64::MIN;
    let mut counted: Vec<(&str, i64)> = Vec::new();
    let mut closed = std::collections::BTreeSet::new();
    for (k, t) in &input {
        stream_time = stream_time.max(*t);
        let start = t - t % 10;
        if start + 10 + 5 > stream_time {
            counted.push((k, *t));
        }
        for start in [0i64, 10, 20] {
            if start + 10 + 5 <= stream_time && closed.insert(start) {
                let mut keys = std::collections::BTreeMap::<&str, i64>::new();
                for (k2, t2) in &counted {
                    if (start..start + 10).contains(t2) {
                        *keys.entry(k2).or_default() += 1;
                    }
                }
                for (k2, n) in keys {
                    expected.push((k2.to_string(), start, *t, n));
                }
            }
        }
    }
    // The late record ("a", 2) arrived after [0, 10) closed, so the expected count above, taken at the close,
    // does not include it.
    let got: Vec<(String, i64, i64)> = got
        .into_iter()
        .map(|(k, at, v, _)| (k, at, v / 100))
        .collect();
    let expected: Vec<(String, i64, i64)> = expected
        .into_iter()
        .map(|(k, start, at, n)| (format!("{k}@{start}"), at, n))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        got.iter().map(|(k, _, _)| k.as_str()).collect::<Vec<_>>(),
        vec!["a@0", "b@0", "a@10", "b@10"]
    );
}

/// GraphGraceSearchUtilTest.shouldFailIfThereIsNoGraceAncestor: a table with no windowed aggregation upstream
/// has no window close time; `build` says so and names the chain searched.
#[test]
fn until_window_closes_without_a_windowed_ancestor_is_rejected() {
    let b = StreamsBuilder::new();
    let windowed: TimeWindowedSerde<String> =
        TimeWindowedSerde::new(std::sync::Arc::new(Serdes::string()), 10);
    b.table(
        "input",
        Consumed::with(windowed, Serdes::i64()),
        Materialized::new(),
    )
    .filter(|_, v| *v > 0)
    .suppress(Suppressed::until_window_closes().with_name("final"))
    .to_stream()
    .map(|k, v| (k.key, v))
    .to(
        "output",
        Produced::with(Serdes::string(), OptionSerde::new(Serdes::i64())),
    );
    let err = b.build().unwrap_err().to_string();
    assert!(
        err.contains("window close time is only defined") && err.contains("KTABLE-FILTER-"),
        "{err}"
    );
}

/// GraphGraceSearchUtilTest.shouldUseMaxIfMultiParentsDoNotAgreeOnGrace: a join of two windowed tables, one
/// with 5 ms of grace and one with 20, is final only after the longer grace.
#[test]
fn until_window_closes_waits_for_the_longest_grace_of_several_parents() {
    let b = StreamsBuilder::new();
    let counts = |topic: &str, grace: u64| {
        b.stream(topic, Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::new())
            .windowed_by(TimeWindows::of_size_and_grace(
                Duration::from_millis(10),
                Duration::from_millis(grace),
            ))
            .count(Materialized::new())
    };
    let left = counts("left", 5);
    let right = counts("right", 20);
    left.join(&right, |l, r| l * 1000 + r)
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .map(|k, v| (format!("{}@{}", k.key, k.window.start), v.unwrap_or(-1)))
        .to("output", Produced::with(Serdes::string(), Serdes::i64()));
    let d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    let l = d.input_topic("left", Serdes::string(), Serdes::string());
    let r = d.input_topic("right", Serdes::string(), Serdes::string());
    let out = d.output_topic("output", Serdes::string(), Serdes::i64());
    // Suppression keeps its own stream time, from the joined records reaching it: each step joins a key.
    let both = |k: &str, t: i64| {
        l.pipe_input_at(k.into(), "x".into(), t).unwrap();
        r.pipe_input_at(k.into(), "x".into(), t).unwrap();
    };
    both("a", 1);
    // Window [0, 10) + 5 ms: the left side alone would close it at 15.
    both("b", 17);
    both("c", 29);
    assert_eq!(out.read_key_values_to_vec().unwrap(), vec![]);
    // 10 + 20 = 30 closes it.
    both("d", 30);
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![("a@0".to_string(), 1001)]
    );
}
