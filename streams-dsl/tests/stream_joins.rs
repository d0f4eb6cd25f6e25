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

struct Rec {
    t: i64,
    v: i64,
    matched: bool,
    emitted: bool,
}

/// The join's rules, written out plainly: a record of side S at t can be joined until stream time passes
/// `t + reach(S) + grace` (reach: `after` for left records, `before` for right ones); a record arriving after
/// that point is dropped; an unmatched record is emitted alone (left/outer) once that point passes.
fn reference(
    evs: &[(bool, String, i64, i64)],
    kind: Kind,
    before: i64,
    after: i64,
    grace: i64,
) -> (BTreeMap<String, Vec<String>>, u64) {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut observed: HashMap<i32, i64> = HashMap::new();
    let mut sides: HashMap<(bool, String), Vec<Rec>> = HashMap::new();
    let mut dropped = 0;
    let close = |left: bool, t: i64| t + if left { after } else { before } + grace;
    for (left, k, v, t) in evs {
        let p = default_partition(k.as_bytes(), PARTITIONS);
        let o = observed.entry(p).or_insert(-1);
        *o = (*o).max(*t);
        let o = *o;
        // Unmatched records of this partition whose windows closed.
        for ((side, key), recs) in sides.iter_mut() {
            if default_partition(key.as_bytes(), PARTITIONS) != p {
                continue;
            }
            for r in recs.iter_mut() {
                let emits = match kind {
                    Kind::Inner => false,
                    Kind::Left => *side,
                    Kind::Outer => true,
                };
                if emits && !r.matched && !r.emitted && close(*side, r.t) < o {
                    r.emitted = true;
                    let s = if *side {
                        format!("{}|null", r.v)
                    } else {
                        format!("null|{}", r.v)
                    };
                    out.entry(key.clone()).or_default().push(s);
                }
            }
        }
        if close(*left, *t) < o {
            dropped += 1;
            continue;
        }
        let (lo, hi) = if *left {
            (t - before, t + after)
        } else {
            (t - after, t + before)
        };
        let mut matched = false;
        if let Some(partners) = sides.get_mut(&(!*left, k.clone())) {
            for p in partners.iter_mut() {
                if p.t < lo || p.t > hi || close(!*left, p.t) < o {
                    continue;
                }
                matched = true;
                p.matched = true;
                let s = if *left {
                    format!("{v}|{}", p.v)
                } else {
                    format!("{}|{v}", p.v)
                };
                out.entry(k.clone()).or_default().push(s);
            }
        }
        sides.entry((*left, k.clone())).or_default().push(Rec {
            t: *t,
            v: *v,
            matched,
            emitted: false,
        });
    }
    for v in out.values_mut() {
        v.sort();
    }
    (out, dropped)
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
    let (expected, dropped) = reference(&evs, kind, before, after, grace);
    assert!(
        dropped > 0,
        "seed {seed}: the input has records beyond grace"
    );
    assert_eq!(got, expected, "seed {seed} {kind:?}");
    assert_eq!(d.metrics().dropped_records, dropped, "seed {seed} {kind:?}");
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
