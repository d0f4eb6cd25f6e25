//! Windowed aggregations through the test driver over several partitions, against plain reference computations
//! over random inputs with out-of-order records, within and beyond the grace period.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use streams_dsl::*;

const PARTITIONS: i32 = 3;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 17
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Keys, values and timestamps that mostly advance, with some records up to `jitter` ms late and a few far late.
fn events(seed: u64, n: usize, keys: u64, jitter: i64, far: i64) -> Vec<(String, i64, i64)> {
    let mut r = Rng(seed);
    let mut t = 1_000;
    (0..n)
        .map(|_| {
            t += r.below(40) as i64;
            let ts = match r.below(10) {
                0 => (t - far - r.below(far as u64) as i64).max(0),
                1 | 2 => (t - r.below(jitter as u64 + 1) as i64).max(0),
                _ => t,
            };
            (format!("k{}", r.below(keys)), r.below(100) as i64 - 20, ts)
        })
        .collect()
}

fn partition_of(key: &str) -> i32 {
    default_partition(key.as_bytes(), PARTITIONS)
}

fn driver(b: StreamsBuilder) -> TopologyTestDriver {
    TopologyTestDriver::builder(b.build().unwrap())
        .default_partitions(PARTITIONS)
        .build()
        .unwrap()
}

fn input() -> Consumed<String, i64> {
    Consumed::with(Serdes::string(), Serdes::i64())
}

/// The last value written per key.
fn last_per_key<K: Ord, V>(records: Vec<(K, V)>) -> BTreeMap<K, V> {
    records.into_iter().collect()
}

/// Reference for tumbling/hopping windows: per task (partition), stream time is the highest timestamp seen; a
/// record updates every window it falls in unless the window ended at or before stream time minus grace.
struct TimeReference {
    sums: BTreeMap<(String, i64), (i64, i64)>, // (key, start) -> (count, sum)
    dropped: u64,
    observed: HashMap<i32, i64>,
}

fn time_reference(
    events: &[(String, i64, i64)],
    size: i64,
    advance: i64,
    grace: i64,
) -> TimeReference {
    let mut r = TimeReference {
        sums: BTreeMap::new(),
        dropped: 0,
        observed: HashMap::new(),
    };
    for (k, v, ts) in events {
        let o = r.observed.entry(partition_of(k)).or_insert(-1);
        *o = (*o).max(*ts);
        let close = *o - grace;
        // Every start s (a multiple of advance, s >= 0) with s <= ts < s + size.
        let mut s = 0;
        while s <= *ts {
            if *ts < s + size {
                if s + size <= close {
                    r.dropped += 1;
                } else {
                    let e = r.sums.entry((k.clone(), s)).or_insert((0, 0));
                    e.0 += 1;
                    e.1 += v;
                }
            }
            s += advance;
        }
    }
    r
}

fn check_time_windows(seed: u64, size: i64, advance: i64, grace: i64, in_memory: bool) {
    let evs = events(seed, 600, 5, grace + 50, 400);
    let b = StreamsBuilder::new();
    let grouped = b.stream("clicks", input()).group_by_key(Grouped::new());
    let windows = TimeWindows::of_size_and_grace(
        Duration::from_millis(size as u64),
        Duration::from_millis(grace as u64),
    )
    .advance_by(Duration::from_millis(advance as u64));
    let store = |name: &str| {
        let m = Materialized::as_store(name);
        if in_memory {
            m.in_memory()
        } else {
            m
        }
    };
    let counts = grouped.windowed_by(windows).count(store("counts"));
    counts
        .to_stream()
        .map(|k, v| (format!("{}@{}", k.key, k.window.start), v.unwrap()))
        .to("counts-out", Produced::new());
    grouped
        .windowed_by(windows)
        .aggregate(|| 0i64, |_, v, agg| agg + v, store("sums"))
        .to_stream()
        .map(|k, v| (format!("{}@{}", k.key, k.window.start), v.unwrap()))
        .to("sums-out", Produced::new());
    counts
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .map(|k, v| (format!("{}@{}", k.key, k.window.start), v.unwrap()))
        .to("final-out", Produced::new());
    let d = driver(b);
    let topic = d.input_topic("clicks", Serdes::string(), Serdes::i64());
    for (k, v, ts) in &evs {
        topic.pipe_input_at(k.clone(), *v, *ts).unwrap();
    }
    let reference = time_reference(&evs, size, advance, grace);
    let name = |(k, s): &(String, i64)| format!("{k}@{s}");
    let expect_counts: BTreeMap<String, i64> = reference
        .sums
        .iter()
        .map(|(w, (c, _))| (name(w), *c))
        .collect();
    let expect_sums: BTreeMap<String, i64> = reference
        .sums
        .iter()
        .map(|(w, (_, s))| (name(w), *s))
        .collect();
    let out = |t: &str| {
        d.output_topic(t, Serdes::string(), Serdes::i64())
            .read_key_values_to_vec()
            .unwrap()
    };
    assert_eq!(
        last_per_key(out("counts-out")),
        expect_counts,
        "seed {seed}"
    );
    assert_eq!(last_per_key(out("sums-out")), expect_sums, "seed {seed}");
    // Two aggregations saw the same late records.
    assert!(
        reference.dropped > 0 || grace > 400,
        "seed {seed}: the input has late records"
    );
    assert_eq!(
        d.metrics().dropped_records,
        2 * reference.dropped,
        "seed {seed}"
    );

    // Suppressed: exactly one record per window that has closed, with its final count.
    let finals = out("final-out");
    let mut seen = BTreeMap::new();
    for (k, v) in &finals {
        assert!(seen.insert(k.clone(), *v).is_none(), "{k} emitted twice");
    }
    let closed: BTreeMap<String, i64> = reference
        .sums
        .iter()
        .filter(|((k, s), _)| s + size + grace <= reference.observed[&partition_of(k)])
        .map(|(w, (c, _))| (name(w), *c))
        .collect();
    assert_eq!(seen, closed, "seed {seed}");

    // The store holds what was emitted, for the windows not yet past retention (size + grace).
    let store = d
        .key_value_store::<Windowed<String>, i64>("counts")
        .unwrap();
    for (w, n) in store.all().unwrap() {
        let key = format!("{}@{}", w.key, w.window.start);
        assert_eq!(w.window.end - w.window.start, size);
        assert_eq!(expect_counts.get(&key), Some(&n), "{key}");
    }
    let live = expect_counts
        .keys()
        .filter(|k| {
            let (key, s) = k.split_once('@').unwrap();
            s.parse::<i64>().unwrap() > reference.observed[&partition_of(key)] - size - grace
        })
        .count();
    assert!(store.all().unwrap().len() >= live);
}

#[test]
fn tumbling_windows_match_the_reference() {
    for seed in 0..6 {
        check_time_windows(seed, 100, 100, 30, seed.is_multiple_of(2));
    }
}

#[test]
fn hopping_windows_match_the_reference() {
    for seed in 10..15 {
        check_time_windows(seed, 100, 30, 20, seed.is_multiple_of(2));
    }
}

#[test]
fn tumbling_windows_without_grace_drop_every_late_record() {
    check_time_windows(42, 50, 50, 0, true);
}

/// Sliding windows per Kafka Streams: each record ends one window and starts one (when a later record is close
/// enough); a window's aggregate covers exactly its records.
fn sliding_reference(events: &[(String, i64, i64)], d: i64) -> BTreeMap<String, (i64, i64)> {
    let mut by_key: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for (k, v, ts) in events {
        by_key.entry(k).or_default().push((*ts, *v));
    }
    let mut out = BTreeMap::new();
    for (k, recs) in by_key {
        let mut starts = std::collections::BTreeSet::new();
        for &(t, _) in &recs {
            starts.insert((t - d).max(0));
            if recs.iter().any(|&(r, _)| r > t && r <= t + 1 + d) {
                starts.insert(t + 1);
            }
        }
        for s in starts {
            let inside: Vec<i64> = recs
                .iter()
                .filter(|(t, _)| (s..=s + d).contains(t))
                .map(|(_, v)| *v)
                .collect();
            out.insert(
                format!("{k}@{s}"),
                (inside.len() as i64, inside.iter().sum()),
            );
        }
    }
    out
}

#[test]
fn sliding_windows_match_the_reference_within_grace() {
    for seed in 0..5 {
        let d_ms = 60;
        // Late records stay within the (long) grace period, so every record counts.
        let evs = events(seed, 300, 4, 100, 150);
        let b = StreamsBuilder::new();
        let windowed = b
            .stream("clicks", input())
            .group_by_key(Grouped::new())
            .windowed_by(SlidingWindows::of_time_difference_and_grace(
                Duration::from_millis(d_ms as u64),
                Duration::from_secs(10),
            ));
        windowed
            .count(Materialized::as_store("sliding-counts").with_store_kind(
                if seed.is_multiple_of(2) {
                    StoreKind::InMemory
                } else {
                    StoreKind::RocksDb
                },
            ))
            .to_stream()
            .map(|k, v| {
                assert_eq!(k.window.end - k.window.start, 60);
                (format!("{}@{}", k.key, k.window.start), v.unwrap())
            })
            .to("counts", Produced::new());
        windowed
            .reduce(|a, b| a + b, Materialized::new().in_memory())
            .to_stream()
            .map(|k, v| (format!("{}@{}", k.key, k.window.start), v.unwrap()))
            .to("sums", Produced::new());
        let drv = driver(b);
        let topic = drv.input_topic("clicks", Serdes::string(), Serdes::i64());
        for (k, v, ts) in &evs {
            topic.pipe_input_at(k.clone(), *v, *ts).unwrap();
        }
        let reference = sliding_reference(&evs, d_ms);
        let read = |t: &str| {
            last_per_key(
                drv.output_topic(t, Serdes::string(), Serdes::i64())
                    .read_key_values_to_vec()
                    .unwrap(),
            )
        };
        let counts: BTreeMap<String, (i64, i64)> = read("counts")
            .into_iter()
            .zip(read("sums"))
            .map(|((k, c), (k2, s))| {
                assert_eq!(k, k2);
                (k, (c, s))
            })
            .collect();
        assert_eq!(counts, reference, "seed {seed}");
        assert_eq!(drv.metrics().dropped_records, 0);
    }
}

#[test]
fn sliding_windows_drop_records_whose_windows_all_closed() {
    let b = StreamsBuilder::new();
    b.stream("clicks", input())
        .group_by_key(Grouped::new())
        .windowed_by(SlidingWindows::of_time_difference_and_grace(
            Duration::from_millis(10),
            Duration::from_millis(5),
        ))
        .count(Materialized::as_store("c").in_memory());
    let drv = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    let t = drv.input_topic("clicks", Serdes::string(), Serdes::i64());
    t.pipe_input_at("a".into(), 1, 100).unwrap();
    t.pipe_input_at("a".into(), 1, 200).unwrap(); // stream time 200, close = 195
    t.pipe_input_at("a".into(), 1, 184).unwrap(); // 184 + 1 + 10 = 195 <= 195: every window closed
    assert_eq!(drv.metrics().dropped_records, 1);
    t.pipe_input_at("a".into(), 1, 190).unwrap(); // 190 + 1 + 10 > 195: some of its windows are open
                                                  // ... but its own window [180, 190] has closed: as Kafka's window aggregations
                                                  // (AbstractKStreamTimeWindowAggregateProcessor.logSkippedRecordForExpiredWindow), skipping a closed window
                                                  // counts in dropped-records, while the record still updates the open ones.
    assert_eq!(drv.metrics().dropped_records, 2);
    let store = drv.key_value_store::<Windowed<String>, i64>("c").unwrap();
    let windows: Vec<(i64, i64)> = store
        .all()
        .unwrap()
        .into_iter()
        .map(|(w, n)| (w.window.start, n))
        .collect();
    // [90, 100]: 100. No window after 100 (no record within 11 ms of it). The window ending at 190, [180, 190],
    // had closed (190 <= 195), so it is not created; [190, 200] is open and takes 190 beside 200; the window
    // after 190, [191, 201], holds 200.
    assert_eq!(windows, vec![(90, 1), (190, 2), (191, 1)]);
}

/// (key, start, end) -> (count, sum).
type Sessions = BTreeMap<(String, i64, i64), (i64, i64)>;

/// Session reference: Kafka's algorithm on plain vectors.
fn session_reference(events: &[(String, i64, i64)], gap: i64, grace: i64) -> (Sessions, u64) {
    let mut sessions: BTreeMap<String, Vec<(i64, i64, i64, i64)>> = BTreeMap::new(); // start, end, count, sum
    let mut observed: HashMap<i32, i64> = HashMap::new();
    let mut dropped = 0;
    for (k, v, ts) in events {
        let o = observed.entry(partition_of(k)).or_insert(-1);
        // The store (retention gap + grace) no longer returns sessions that ended at or before its stream time
        // (the newest session end written, before this record) - retention.
        let store_live = *o - gap - grace;
        // KStreamSessionWindowAggregate: stream time includes this record; a session closes at stream time -
        // grace - gap.
        *o = (*o).max(*ts);
        let close = *o - grace - gap;
        let list = sessions.entry(k.clone()).or_default();
        #[allow(clippy::type_complexity)]
        let (hit, keep): (Vec<&(i64, i64, i64, i64)>, Vec<&(i64, i64, i64, i64)>) = list
            .iter()
            .partition(|(s, e, _, _)| *e >= ts - gap && *s <= ts + gap && *e > store_live);
        let start = hit.iter().map(|x| x.0).chain([*ts]).min().unwrap();
        let end = hit.iter().map(|x| x.1).chain([*ts]).max().unwrap();
        if end < close {
            dropped += 1;
            continue;
        }
        let count = hit.iter().map(|x| x.2).sum::<i64>() + 1;
        let sum = hit.iter().map(|x| x.3).sum::<i64>() + v;
        let mut next: Vec<_> = keep.into_iter().copied().collect();
        next.push((start, end, count, sum));
        *list = next;
    }
    let mut out = BTreeMap::new();
    for (k, list) in sessions {
        for (s, e, c, sum) in list {
            out.insert((k.clone(), s, e), (c, sum));
        }
    }
    (out, dropped)
}

#[test]
fn session_windows_match_the_reference() {
    for seed in 0..6 {
        let (gap, grace) = (25, 40);
        let evs = events(seed, 400, 4, 80, 300);
        let b = StreamsBuilder::new();
        let windowed = b
            .stream("clicks", input())
            .group_by_key(Grouped::new())
            .windowed_by(SessionWindows::of_inactivity_gap_and_grace(
                Duration::from_millis(gap as u64),
                Duration::from_millis(grace as u64),
            ));
        let kind = if seed.is_multiple_of(2) {
            StoreKind::InMemory
        } else {
            StoreKind::RocksDb
        };
        let counts = windowed.count(Materialized::as_store("sessions").with_store_kind(kind));
        counts
            .to_stream()
            .map(|k, v| {
                (
                    format!("{}@{}-{}", k.key, k.window.start, k.window.end),
                    v.unwrap_or(-1),
                )
            })
            .to("counts", Produced::new());
        windowed
            .aggregate(
                || 0i64,
                |_, v, agg| agg + v,
                |_, a, b| a + b,
                Materialized::as_store("session-sums").in_memory(),
            )
            .suppress(Suppressed::until_window_closes())
            .to_stream()
            .map(|k, v| {
                (
                    format!("{}@{}-{}", k.key, k.window.start, k.window.end),
                    v.unwrap(),
                )
            })
            .to("final-sums", Produced::new());
        let drv = driver(b);
        let topic = drv.input_topic("clicks", Serdes::string(), Serdes::i64());
        for (k, v, ts) in &evs {
            topic.pipe_input_at(k.clone(), *v, *ts).unwrap();
        }
        let (reference, dropped) = session_reference(&evs, gap, grace);
        assert!(
            dropped > 0,
            "seed {seed}: the input has records beyond grace"
        );
        assert_eq!(drv.metrics().dropped_records, 2 * dropped, "seed {seed}");
        let store = drv
            .key_value_store::<Windowed<String>, i64>("sessions")
            .unwrap();
        let got: BTreeMap<(String, i64, i64), i64> = store
            .all()
            .unwrap()
            .into_iter()
            .map(|(w, n)| ((w.key, w.window.start, w.window.end), n))
            .collect();
        // Sessions past retention (gap + grace) may already be deleted from the store; the live ones must match.
        let observed: HashMap<i32, i64> = evs.iter().fold(HashMap::new(), |mut m, (k, _, ts)| {
            let o = m.entry(partition_of(k)).or_insert(-1);
            *o = (*o).max(*ts);
            m
        });
        let live = |(k, _, e): &(String, i64, i64)| *e > observed[&partition_of(k)] - gap - grace;
        let expect_live: BTreeMap<_, _> = reference
            .iter()
            .filter(|(w, _)| live(w))
            .map(|(w, (c, _))| (w.clone(), *c))
            .collect();
        let got_live: BTreeMap<_, _> = got
            .iter()
            .filter(|(w, _)| live(w))
            .map(|(w, c)| (w.clone(), *c))
            .collect();
        assert_eq!(got_live, expect_live, "seed {seed}");
        // The change stream: the last update of every session is its count, or a deletion (-1) when merged away.
        let updates = last_per_key(
            drv.output_topic("counts", Serdes::string(), Serdes::i64())
                .read_key_values_to_vec()
                .unwrap(),
        );
        let final_sessions: BTreeMap<String, i64> =
            updates.into_iter().filter(|(_, v)| *v >= 0).collect();
        let expect_all: BTreeMap<String, i64> = reference
            .iter()
            .map(|((k, s, e), (c, _))| (format!("{k}@{s}-{e}"), *c))
            .collect();
        assert_eq!(final_sessions, expect_all, "seed {seed}");
        // Suppressed sums: one record per closed session, never a merged-away one. A session can grow while a
        // record within the gap after it can still arrive in time: it is final once end + gap + grace < stream
        // time.
        let finals = drv
            .output_topic("final-sums", Serdes::string(), Serdes::i64())
            .read_key_values_to_vec()
            .unwrap();
        let mut seen = BTreeMap::new();
        for (k, v) in finals {
            assert!(seen.insert(k.clone(), v).is_none(), "{k} emitted twice");
        }
        let closed: BTreeMap<String, i64> = reference
            .iter()
            .filter(|((k, _, e), _)| e + gap + grace < observed[&partition_of(k)])
            .map(|((k, s, e), (_, sum))| (format!("{k}@{s}-{e}"), *sum))
            .collect();
        assert_eq!(seen, closed, "seed {seed}");
    }
}

#[test]
fn window_specifications_are_validated() {
    let b = StreamsBuilder::new();
    b.stream("in", input())
        .group_by_key(Grouped::new())
        .windowed_by(
            TimeWindows::of_size_with_no_grace(Duration::from_millis(10))
                .advance_by(Duration::from_millis(20)),
        )
        .count(Materialized::new());
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("advance_by"), "{err}");

    let b = StreamsBuilder::new();
    b.stream("in", input())
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_secs(60),
            Duration::from_secs(10),
        ))
        .count(Materialized::as_store("short").with_retention(Duration::from_secs(30)));
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("with_retention"), "{err}");

    // As in Kafka Streams, final-results suppression also applies to a table derived from a windowed aggregation
    // (the grace period is found upstream; see tests/suppress.rs).
    let b2 = StreamsBuilder::new();
    b2.stream("in", input())
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
            10,
        )))
        .count(Materialized::new())
        .filter(|_, _| true)
        .suppress(Suppressed::until_window_closes());
    assert!(b2.build().is_ok());
}

#[test]
fn negative_timestamps_are_refused_at_the_source() {
    let b = StreamsBuilder::new();
    b.stream("in", input())
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
            10,
        )))
        .count(Materialized::as_store("c").in_memory());
    let drv = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    let t = drv.input_topic("in", Serdes::string(), Serdes::i64());
    // Sources refuse negative timestamps before any window sees them.
    let err = t.pipe_input_at("a".into(), 1, -5).unwrap_err();
    assert!(
        matches!(err, StreamsError::InvalidTimestamp { timestamp: -5, .. }),
        "{err}"
    );
    t.pipe_input_at("a".into(), 1, 5).unwrap();
    let store = drv.key_value_store::<Windowed<String>, i64>("c").unwrap();
    assert_eq!(store.all().unwrap().len(), 1);
}

#[test]
fn windowed_changelog_carries_each_windows_latest_value() {
    // What a restore replays: the changelog's last value per windowed key is the window's count.
    let b = StreamsBuilder::new();
    b.stream("in", input())
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
            10,
        )))
        .count(Materialized::as_store("c").in_memory());
    let drv = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    let t = drv.input_topic("in", Serdes::string(), Serdes::i64());
    for ts in [1, 2, 11, 12, 13] {
        t.pipe_input_at("a".into(), 1, ts).unwrap();
    }
    drv.commit().unwrap();
    let changelog = Topology::changelog_topic("test-app", "c");
    let serde = TimeWindowedSerde::new(std::sync::Arc::new(Serdes::string()), 10);
    let log = drv.output_topic(&changelog, serde, Serdes::i64());
    let last: BTreeMap<i64, i64> = log
        .read_key_values_to_vec()
        .unwrap()
        .into_iter()
        .map(|(w, n)| (w.window.start, n))
        .collect();
    assert_eq!(last, BTreeMap::from([(0, 2), (10, 3)]));
}

/// Sessions are deleted from the store once stream time passes their end by the retention period (here the
/// configured 100 s, longer than gap + grace), a whole time segment at a time as in Kafka's segmented session
/// stores (segments of a minute here: half the retention, at least a minute); the deletion runs every half
/// retention (at least every minute) of stream time, not on every record.
#[test]
fn session_store_deletes_sessions_past_retention() {
    for kind in [StoreKind::InMemory, StoreKind::RocksDb] {
        let b = StreamsBuilder::new();
        b.stream("clicks", input())
            .group_by_key(Grouped::new())
            .windowed_by(SessionWindows::of_inactivity_gap_and_grace(
                Duration::from_millis(10),
                Duration::from_millis(5),
            ))
            .count(
                Materialized::as_store("sessions")
                    .with_store_kind(kind)
                    .with_retention(Duration::from_secs(100)),
            );
        let drv = driver(b);
        let topic = drv.input_topic("clicks", Serdes::string(), Serdes::i64());
        let stored = || -> Vec<(i64, i64, i64)> {
            drv.key_value_store::<Windowed<String>, i64>("sessions")
                .unwrap()
                .all()
                .unwrap()
                .into_iter()
                .map(|(w, n)| (w.window.start, w.window.end, n))
                .collect()
        };
        for t in [0, 5, 50_000] {
            topic.pipe_input_at("a".into(), 1, t).unwrap();
        }
        assert_eq!(stored(), vec![(0, 5, 2), (50_000, 50_000, 1)], "{kind:?}");
        // Stream time 100,006: [0, 5] ended more than 100 s ago and the periodic deletion is due, but its
        // segment [0, 60,000) still holds a live session ([50,000, 50,000]), so it stays whole.
        topic.pipe_input_at("a".into(), 1, 100_006).unwrap();
        assert_eq!(
            stored(),
            vec![(0, 5, 2), (50_000, 50_000, 1), (100_006, 100_006, 1)],
            "{kind:?}"
        );
        // Stream time 170,000: every session of the first segment ended more than 100 s ago, and a minute has
        // passed since the last deletion: the segment goes.
        topic.pipe_input_at("a".into(), 1, 170_000).unwrap();
        assert_eq!(
            stored(),
            vec![(100_006, 100_006, 1), (170_000, 170_000, 1)],
            "{kind:?}"
        );
    }
}

/// A record inside an existing session: without a cache the session is retracted (a tombstone at its end) and
/// re-added, as Kafka's KStreamSessionWindowAggregate forwards them; with one, Kafka's CachingSessionStore
/// collapses the removal and the put of the same session into one update (the TopologyTestDriver flushes the
/// cache after each record), so only the new value is forwarded.
#[test]
fn a_record_inside_a_session_updates_it_as_kafka_does_with_and_without_a_cache() {
    for cached in [false, true] {
        let b = StreamsBuilder::new();
        let m = Materialized::as_store("sessions");
        b.stream("clicks", input())
            .group_by_key(Grouped::new())
            .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(
                Duration::from_millis(10),
            ))
            .count(if cached { m } else { m.with_caching_disabled() })
            .to_stream()
            .map(|k, v| (format!("{}@{}/{}", k.key, k.window.start, k.window.end), v))
            .to(
                "counts",
                Produced::with(Serdes::string(), OptionSerde::new(Serdes::i64())),
            );
        let drv = driver(b);
        let topic = drv.input_topic("clicks", Serdes::string(), Serdes::i64());
        for t in [0, 5, 3, 20, 20] {
            topic.pipe_input_at("a".into(), 1, t).unwrap();
        }
        let got: Vec<(String, Option<i64>, i64)> = drv
            .output_topic("counts", Serdes::string(), OptionSerde::new(Serdes::i64()))
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp))
            .collect();
        let mut expected = vec![
            ("a@0/0".to_string(), Some(1), 0),
            ("a@0/0".to_string(), None, 0),
            ("a@0/5".to_string(), Some(2), 5),
        ];
        if !cached {
            expected.push(("a@0/5".to_string(), None, 5));
        }
        expected.extend([
            ("a@0/5".to_string(), Some(3), 5),
            ("a@20/20".to_string(), Some(1), 20),
            ("a@20/20".to_string(), Some(2), 20),
        ]);
        assert_eq!(got, expected, "cached: {cached}");
    }
}

/// Session updates carry the input record's headers through a cached store (Kafka's CachingSessionStore keeps
/// the record context with each entry) and none without a cache (KStreamSessionWindowAggregate forwards
/// `new Record(key, change, end)`).
#[test]
fn session_updates_carry_headers_only_through_a_cache() {
    for cached in [false, true] {
        let b = StreamsBuilder::new();
        let m = Materialized::as_store("sessions");
        b.stream("clicks", input())
            .group_by_key(Grouped::new())
            .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(
                Duration::from_millis(10),
            ))
            .count(if cached { m } else { m.with_caching_disabled() })
            .to_stream()
            .map(|k, v| (format!("{}@{}/{}", k.key, k.window.start, k.window.end), v))
            .to(
                "counts",
                Produced::with(Serdes::string(), OptionSerde::new(Serdes::i64())),
            );
        let drv = driver(b);
        let topic = drv.input_topic("clicks", Serdes::string(), Serdes::i64());
        for t in [0, 5] {
            let mut r = TestRecord::new("a".to_string(), 1, t);
            r.headers = streams_dsl::streams_core::Headers::default().with("h", b"1".to_vec());
            topic.pipe_record(r).unwrap();
        }
        let headers: Vec<usize> = drv
            .output_topic("counts", Serdes::string(), OptionSerde::new(Serdes::i64()))
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| r.headers.len())
            .collect();
        let n = usize::from(cached);
        assert_eq!(headers, vec![n, n, n], "cached: {cached}");
    }
}
