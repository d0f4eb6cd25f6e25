//! KStream-KStream windowed joins through the test driver over several partitions, against a plain simulation of
//! the join's rules over random, partly out-of-order inputs.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use streams_dsl::*;

const PARTITIONS: i32 = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Inner,
    Left,
    Outer,
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 17) % n
    }
}

/// (left side?, key, value, timestamp): mostly advancing time, some records late within grace, a few far late.
fn events(seed: u64, n: usize) -> Vec<(bool, String, i64, i64)> {
    let mut r = Rng(seed);
    let mut t = 1_000;
    (0..n)
        .map(|_| {
            t += r.below(15) as i64;
            let ts = match r.below(12) {
                0 => t - 150 - r.below(100) as i64,
                1 | 2 => t - r.below(40) as i64,
                _ => t,
            };
            (
                r.below(2) == 0,
                format!("k{}", r.below(6)),
                r.below(1000) as i64,
                ts,
            )
        })
        .collect()
}

/// One task's join state in the simulation.
struct Task {
    stream_time: i64,
    min_time: i64,
    /// Newest timestamp put into each side's store (left, right).
    observed: [i64; 2],
    /// Each side's records (key, timestamp, value) (left, right).
    stores: [Vec<(String, i64, i64)>; 2],
    /// Unmatched records by (timestamp, side (1 left, 0 right), key): their values in arrival order.
    outer: BTreeMap<(i64, u8, String), Vec<i64>>,
}

/// The join's rules, written out plainly after Kafka Streams' `KStreamKStreamJoin` (per task, here per partition):
/// each side's store retains records for `before + after + grace` of its newest timestamp; a record joins the
/// other side's retained records within its join window, however late it is; a record of an outer side without
/// a partner is held, or emitted alone at once when already behind stream time by more than its reach; held
/// records are emitted alone, timestamp first, once stream time passes `t + reach(S) + grace` (reach: `after`
/// for left records, `before` for right ones), checked when a record at stream time arrives.
fn reference(
    evs: &[(bool, String, i64, i64)],
    kind: Kind,
    before: i64,
    after: i64,
    grace: i64,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tasks: HashMap<i32, Task> = HashMap::new();
    let retention = before + after + grace;
    let show = |left: bool, v: i64, other: Option<i64>| {
        let o = other.map_or("null".to_string(), |o| o.to_string());
        if left {
            format!("{v}|{o}")
        } else {
            format!("{o}|{v}")
        }
    };
    for (left, k, v, t) in evs {
        let (left, t, v) = (*left, *t, *v);
        let p = default_partition(k.as_bytes(), PARTITIONS);
        let task = tasks.entry(p).or_insert_with(|| Task {
            stream_time: -1,
            min_time: i64::MAX,
            observed: [i64::MIN; 2],
            stores: [Vec::new(), Vec::new()],
            outer: BTreeMap::new(),
        });
        let this = usize::from(!left);
        let other = 1 - this;
        let is_outer = match kind {
            Kind::Inner => false,
            Kind::Left => left,
            Kind::Outer => true,
        };
        let held = kind != Kind::Inner;
        task.stream_time = task.stream_time.max(t);
        let (join_before, join_after) = if left {
            (before, after)
        } else {
            (after, before)
        };
        if held
            && t == task.stream_time
            && task.min_time.saturating_add(join_after + grace) < task.stream_time
        {
            task.min_time = i64::MAX;
            let (mut left_open, mut right_open) = (false, false);
            let mut done = Vec::new();
            for ((ts, side, key), values) in &task.outer {
                task.min_time = *ts;
                if left_open && right_open {
                    break;
                }
                let reach = if *side == 1 { after } else { before };
                if ts + reach + grace >= task.stream_time {
                    if *side == 1 {
                        left_open = true;
                    } else {
                        right_open = true;
                    }
                    continue;
                }
                for v in values {
                    out.entry(key.clone())
                        .or_default()
                        .push(show(*side == 1, *v, None));
                }
                done.push((*ts, *side, key.clone()));
            }
            for d in done {
                task.outer.remove(&d);
            }
        }
        let from = (t - join_before)
            .max(0)
            .max(task.observed[other].saturating_sub(retention) + 1);
        let to = (t + join_after).max(0);
        let partners: Vec<(i64, i64)> = task.stores[other]
            .iter()
            .filter(|(key, t2, _)| key == k && *t2 >= from && *t2 <= to)
            .map(|(_, t2, v2)| (*t2, *v2))
            .collect();
        for (t2, v2) in &partners {
            task.outer.remove(&(*t2, u8::from(!left), k.clone()));
            out.entry(k.clone())
                .or_default()
                .push(show(left, v, Some(*v2)));
        }
        if is_outer && partners.is_empty() {
            if to < task.stream_time {
                out.entry(k.clone()).or_default().push(show(left, v, None));
            } else {
                task.min_time = task.min_time.min(t);
                task.outer
                    .entry((t, u8::from(left), k.clone()))
                    .or_default()
                    .push(v);
            }
        }
        task.observed[this] = task.observed[this].max(t);
        if t > task.observed[this].saturating_sub(retention) {
            task.stores[this].push((k.clone(), t, v));
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn fmt(v: Option<&i64>) -> String {
    v.map_or("null".to_string(), |v| v.to_string())
}

fn run(seed: u64, kind: Kind, before: i64, after: i64, grace: i64, in_memory: bool) {
    let evs = events(seed, 500);
    let b = StreamsBuilder::new();
    let consumed = || Consumed::with(Serdes::string(), Serdes::i64());
    let left = b.stream("left", consumed());
    let right = b.stream("right", consumed());
    let windows = JoinWindows::of_time_difference_and_grace(
        Duration::from_millis(after as u64),
        Duration::from_millis(grace as u64),
    )
    .before(Duration::from_millis(before as u64));
    let joined = || {
        let j = StreamJoined::new();
        if in_memory {
            j.in_memory()
        } else {
            j
        }
    };
    let out = match kind {
        Kind::Inner => left.join_stream(&right, |l, r| format!("{l}|{r}"), windows, joined()),
        Kind::Left => {
            left.left_join_stream(&right, |l, r| format!("{l}|{}", fmt(r)), windows, joined())
        }
        Kind::Outer => left.outer_join_stream(
            &right,
            |l, r| format!("{}|{}", fmt(l), fmt(r)),
            windows,
            joined(),
        ),
    };
    out.to("joined", Produced::with(Serdes::string(), Serdes::string()));
    let d = TopologyTestDriver::builder(b.build().unwrap())
        .default_partitions(PARTITIONS)
        .build()
        .unwrap();
    let l = d.input_topic("left", Serdes::string(), Serdes::i64());
    let r = d.input_topic("right", Serdes::string(), Serdes::i64());
    for (is_left, k, v, t) in &evs {
        let topic = if *is_left { &l } else { &r };
        topic.pipe_input_at(k.clone(), *v, *t).unwrap();
    }
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in d
        .output_topic("joined", Serdes::string(), Serdes::string())
        .read_key_values_to_vec()
        .unwrap()
    {
        got.entry(k).or_default().push(v);
    }
    got.values_mut().for_each(|v| v.sort());
    let expected = reference(&evs, kind, before, after, grace);
    assert_eq!(got, expected, "seed {seed} {kind:?}");
    // As in Kafka, a late record is joined with what is still retained, never dropped.
    assert_eq!(d.metrics().dropped_records, 0, "seed {seed} {kind:?}");
}

#[test]
fn inner_joins_match_the_reference() {
    for seed in 0..4 {
        run(seed, Kind::Inner, 30, 30, 20, seed.is_multiple_of(2));
    }
    run(9, Kind::Inner, 60, 5, 10, true);
}

#[test]
fn left_joins_match_the_reference() {
    for seed in 10..14 {
        run(seed, Kind::Left, 30, 30, 20, seed.is_multiple_of(2));
    }
    run(19, Kind::Left, 5, 60, 0, false);
}

#[test]
fn outer_joins_match_the_reference() {
    for seed in 20..24 {
        run(seed, Kind::Outer, 30, 30, 20, seed.is_multiple_of(2));
    }
    run(29, Kind::Outer, 60, 5, 10, true);
}

#[test]
fn left_join_waits_for_the_window_to_close_before_emitting_unmatched() {
    let b = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::i64());
    b.stream("left", c())
        .left_join_stream(
            &b.stream("right", c()),
            |l, r| format!("{l}|{}", fmt(r)),
            JoinWindows::of_time_difference_and_grace(
                Duration::from_millis(10),
                Duration::from_millis(5),
            ),
            StreamJoined::new().in_memory(),
        )
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    let l = d.input_topic("left", Serdes::string(), Serdes::i64());
    let r = d.input_topic("right", Serdes::string(), Serdes::i64());
    let out = d.output_topic("out", Serdes::string(), Serdes::string());
    l.pipe_input_at("a".into(), 1, 100).unwrap();
    l.pipe_input_at("b".into(), 2, 100).unwrap();
    assert!(
        out.is_empty(),
        "no unmatched result while the window is open"
    );
    r.pipe_input_at("a".into(), 7, 108).unwrap(); // joins a
    assert_eq!(out.read_value().unwrap(), Some("1|7".to_string()));
    l.pipe_input_at("c".into(), 0, 115).unwrap(); // stream time 115 = 100 + 10 + 5: still open
    assert!(out.is_empty());
    l.pipe_input_at("c".into(), 0, 116).unwrap(); // closes a's and b's windows: only b is unmatched
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![("b".to_string(), "2|null".to_string())]
    );
}

#[test]
fn a_key_change_before_a_stream_join_repartitions_both_sides_consistently() {
    let b = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::i64());
    // Left records are keyed by "user/order"; re-key them by user before joining the users' clicks.
    let orders = b
        .stream("orders", c())
        .select_key(|k, _| k.split('/').next().unwrap_or_default().to_string());
    orders
        .join_stream(
            &b.stream("clicks", c()),
            |o, c| o * 1000 + c,
            JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(100)),
            StreamJoined::new().in_memory(),
        )
        .to("out", Produced::with(Serdes::string(), Serdes::i64()));
    let topology = b.build().unwrap();
    assert!(topology
        .internal_topics()
        .any(|t| t.name.ends_with("-left-repartition")));
    let d = TopologyTestDriver::builder(topology)
        .default_partitions(PARTITIONS)
        .build()
        .unwrap();
    let o = d.input_topic("orders", Serdes::string(), Serdes::i64());
    let cl = d.input_topic("clicks", Serdes::string(), Serdes::i64());
    let mut expected = Vec::new();
    for u in 0..8 {
        cl.pipe_input_at(format!("u{u}"), u, 10).unwrap();
        o.pipe_input_at(format!("u{u}/o{u}"), u + 1, 20).unwrap();
        expected.push((format!("u{u}"), (u + 1) * 1000 + u));
    }
    let mut got = d
        .output_topic("out", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    got.sort();
    assert_eq!(got, expected);
}

#[test]
fn streams_joined_must_be_co_partitioned() {
    let b = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::i64());
    b.stream("left", c())
        .join_stream(
            &b.stream("right", c()),
            |l, r| l + r,
            JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10)),
            StreamJoined::new().in_memory(),
        )
        .to("out", Produced::with(Serdes::string(), Serdes::i64()));
    let err = TopologyTestDriver::builder(b.build().unwrap())
        .partitions("left", 3)
        .partitions("right", 2)
        .build()
        .err()
        .expect("unequal partition counts are refused");
    assert!(
        matches!(err, StreamsError::CopartitionMismatch { .. }),
        "{err}"
    );
}

/// The join's window stores forget records as stream time passes their retention (`before + after + grace`),
/// as Kafka's segmented join stores do: whole segments (a minute each here, Kafka's minimum segment interval)
/// go once all their records are out of retention, so after a long run of event time each store holds only the
/// records of the segment still partly live, and the outer join store only the records whose windows are still
/// open.
#[test]
fn join_stores_forget_records_past_retention() {
    for in_memory in [true, false] {
        let b = StreamsBuilder::new();
        let c = || Consumed::with(Serdes::string(), Serdes::i64());
        let joined = StreamJoined::new().with_store_name("j");
        let joined = if in_memory {
            joined.in_memory()
        } else {
            joined
        };
        b.stream("left", c())
            .outer_join_stream(
                &b.stream("right", c()),
                |l, r| format!("{}|{}", fmt(l), fmt(r)),
                JoinWindows::of_time_difference_and_grace(
                    Duration::from_millis(10),
                    Duration::from_millis(5),
                ),
                joined,
            )
            .to("out", Produced::with(Serdes::string(), Serdes::string()));
        let d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
        let l = d.input_topic("left", Serdes::string(), Serdes::i64());
        let r = d.input_topic("right", Serdes::string(), Serdes::i64());
        // 500 records per side, a second apart, over 20 distinct keys: each joins its partner 3 ms later.
        for i in 0..500i64 {
            let k = format!("k{}", i % 20);
            l.pipe_input_at(k.clone(), i, i * 1000).unwrap();
            r.pipe_input_at(k, i, i * 1000 + 3).unwrap();
        }
        let out = d.output_topic("out", Serdes::string(), Serdes::string());
        assert_eq!(out.read_records_to_vec().unwrap().len(), 500);
        // Retention 25 ms: at 499,000 only the segment [480,000, 540,000) is partly live; the 20 records of
        // each side in it are held, everything older is gone.
        for store in ["j-this-join-store", "j-other-join-store"] {
            let entries = d
                .key_value_store::<Windowed<String>, i64>(store)
                .unwrap()
                .all()
                .unwrap();
            assert_eq!(entries.len(), 20, "{store} (in memory: {in_memory})");
            assert!(entries.iter().all(|(w, _)| w.window.start >= 480_000));
        }
        let outer = d
            .key_value_store::<Vec<u8>, Vec<u8>>("j-outer-shared-join-store")
            .unwrap()
            .all()
            .unwrap();
        assert!(outer.is_empty(), "in memory: {in_memory}");
    }
}

/// After a restart on the same state directory, the records the join's stores kept from before are still
/// forgotten once their segment falls out of retention (the segments are reopened from their directories).
#[test]
fn join_stores_forget_records_kept_from_before_a_restart() {
    let dir = std::env::temp_dir().join(format!("stream-joins-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let topology = || {
        let b = StreamsBuilder::new();
        let c = || Consumed::with(Serdes::string(), Serdes::i64());
        b.stream("left", c())
            .left_join_stream(
                &b.stream("right", c()),
                |l, r| format!("{l}|{}", fmt(r)),
                JoinWindows::of_time_difference_and_grace(
                    Duration::from_millis(10),
                    Duration::from_millis(5),
                ),
                StreamJoined::new().with_store_name("j"),
            )
            .to("out", Produced::with(Serdes::string(), Serdes::string()));
        b.build().unwrap()
    };
    let run = |from: i64, to: i64| {
        let d = TopologyTestDriver::builder(topology())
            .state_dir(&dir)
            .build()
            .unwrap();
        let l = d.input_topic("left", Serdes::string(), Serdes::i64());
        let r = d.input_topic("right", Serdes::string(), Serdes::i64());
        for i in from..to {
            let k = format!("k{}", i % 7);
            l.pipe_input_at(k.clone(), i, i * 100).unwrap();
            r.pipe_input_at(k, i, i * 100 + 3).unwrap();
        }
        let counts: Vec<usize> = ["j-this-join-store", "j-other-join-store"]
            .iter()
            .map(|s| {
                d.key_value_store::<Windowed<String>, i64>(s)
                    .unwrap()
                    .all()
                    .unwrap()
                    .len()
            })
            .collect();
        d.close().unwrap();
        counts
    };
    // Everything of the first run lies in the first segment (a minute), still partly live at its end.
    assert_eq!(run(0, 50), vec![50, 50]);
    // The first run's last records (at 4,900 and 4,903) are behind the second run's first ones by more than
    // the retention (25 ms), and so is their whole segment: it goes as soon as the second run writes.
    assert_eq!(run(1_000, 1_001), vec![1, 1]);
    let _ = std::fs::remove_dir_all(&dir);
}
