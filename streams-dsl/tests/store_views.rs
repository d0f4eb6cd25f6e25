//! Typed read-only views of window and session stores (Kafka's `ReadOnlyWindowStore` and
//! `ReadOnlySessionStore`), checked against counts computed directly from the input, over several partitions
//! and with keys that are prefixes of one another.

use std::collections::BTreeMap;
use std::time::Duration;

use streams_dsl::*;

/// Keys whose bytes are prefixes of one another, so a view that scanned by prefix alone would mix them up.
const KEYS: [&str; 4] = ["a", "ab", "a\u{0}", "b"];

fn clicks() -> Vec<(String, i64)> {
    (0..200i64)
        .map(|i| {
            (
                KEYS[(i as usize * 7) % KEYS.len()].to_string(),
                i * 37 % 1_000,
            )
        })
        .collect()
}

#[test]
fn window_view_matches_counts_per_key_and_window() {
    let (size, advance) = (100i64, 50i64);
    let b = StreamsBuilder::new();
    b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .windowed_by(
            TimeWindows::of_size_and_grace(Duration::from_millis(100), Duration::from_secs(10))
                .advance_by(Duration::from_millis(50)),
        )
        .count(Materialized::as_store("counts"));
    let driver = TopologyTestDriver::builder(b.build().unwrap())
        .default_partitions(3)
        .build()
        .unwrap();
    let input = driver.input_topic("clicks", Serdes::string(), Serdes::string());
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (key, ts) in clicks() {
        input.pipe_input_at(key.clone(), "x".into(), ts).unwrap();
        let first = (ts - size + advance).max(0) / advance * advance;
        let mut start = first;
        while start <= ts {
            if start + size > ts {
                *expected.entry((key.clone(), start)).or_default() += 1;
            }
            start += advance;
        }
    }
    let view = driver.window_store::<String, i64>("counts").unwrap();
    for key in KEYS {
        let want: Vec<(i64, i64)> = expected
            .iter()
            .filter(|((k, s), _)| k == key && (200..=600).contains(s))
            .map(|((_, s), n)| (*s, *n))
            .collect();
        assert_eq!(
            view.fetch_range(&key.to_string(), 200, 600).unwrap(),
            want,
            "{key:?}"
        );
        for (&(ref k, s), &n) in &expected {
            if k == key {
                assert_eq!(view.fetch(&key.to_string(), s).unwrap(), Some(n));
            }
        }
        assert_eq!(
            view.fetch(&key.to_string(), 25).unwrap(),
            None,
            "no window starts at 25"
        );
    }
    let all: BTreeMap<(String, i64), i64> = view
        .all()
        .unwrap()
        .into_iter()
        .map(|(w, n)| ((w.key, w.window.start), n))
        .collect();
    assert_eq!(all, expected);
    // Timestamped reads give the latest click time in each window.
    let stamped = driver
        .window_store::<String, ValueAndTimestamp<i64>>("counts")
        .unwrap();
    let (key, start) = expected.keys().next().unwrap().clone();
    let latest = clicks()
        .iter()
        .filter(|(k, ts)| *k == key && (start..start + size).contains(ts))
        .map(|(_, ts)| *ts)
        .max();
    assert_eq!(
        stamped.fetch(&key, start).unwrap().map(|v| v.timestamp),
        latest
    );
}

#[test]
fn session_view_finds_sessions_as_kafka_does() {
    let gap = 30i64;
    let b = StreamsBuilder::new();
    b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .windowed_by(SessionWindows::of_inactivity_gap_and_grace(
            Duration::from_millis(30),
            Duration::from_secs(10),
        ))
        .count(Materialized::as_store("visits"));
    let driver = TopologyTestDriver::builder(b.build().unwrap())
        .default_partitions(2)
        .build()
        .unwrap();
    let input = driver.input_topic("clicks", Serdes::string(), Serdes::string());
    // Sessions computed directly: per key, sorted times split where the gap is exceeded.
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut clicks = clicks();
    clicks.sort_by_key(|(_, ts)| *ts);
    for (key, ts) in &clicks {
        input.pipe_input_at(key.clone(), "x".into(), *ts).unwrap();
        times.entry(key.clone()).or_default().push(*ts);
    }
    let view = driver.session_store::<String, i64>("visits").unwrap();
    for (key, ts) in times {
        let mut sessions: Vec<(i64, i64, i64)> = Vec::new();
        for t in ts {
            match sessions.last_mut() {
                Some((_, end, n)) if t - *end <= gap => {
                    *end = t;
                    *n += 1;
                }
                _ => sessions.push((t, t, 1)),
            }
        }
        let got: Vec<(i64, i64, i64)> = view
            .fetch(&key)
            .unwrap()
            .into_iter()
            .map(|(w, n)| (w.window.start, w.window.end, n))
            .collect();
        assert_eq!(got, sessions, "{key:?}");
        let (earliest_end, latest_start) = (300, 700);
        let want: Vec<_> = sessions
            .iter()
            .filter(|(s, e, _)| *e >= earliest_end && *s <= latest_start)
            .copied()
            .collect();
        let found: Vec<(i64, i64, i64)> = view
            .find_sessions(&key, earliest_end, latest_start)
            .unwrap()
            .into_iter()
            .map(|(w, n)| (w.window.start, w.window.end, n))
            .collect();
        assert_eq!(found, want, "{key:?}");
        let (s, e, n) = sessions[0];
        assert_eq!(view.fetch_session(&key, s, e).unwrap(), Some(n));
    }
}
