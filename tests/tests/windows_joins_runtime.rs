//! Session windows, sliding windows and a stream-stream join through the embedded broker, against plain
//! computations. The grace periods are long, so the results do not depend on the order in which the two
//! partitions' records reach their tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use streams_dsl::streams_core::runtime::KafkaStreams;
use streams_dsl::*;
use tests::{consume_until, produce_at, wait_until, Broker};

const GAP: i64 = 30_000;
const SLIDE: i64 = 10_000;
const JOIN: i64 = 5_000;

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let hour = Duration::from_secs(3600);
    let clicks = b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    let grouped = clicks.group_by_key(Grouped::new());
    grouped
        .windowed_by(SessionWindows::of_inactivity_gap_and_grace(
            Duration::from_millis(GAP as u64),
            hour,
        ))
        .count(Materialized::as_store("sessions").with_retention(hour * 24));
    grouped
        .windowed_by(SlidingWindows::of_time_difference_and_grace(
            Duration::from_millis(SLIDE as u64),
            hour,
        ))
        .count(Materialized::as_store("sliding").with_retention(hour * 24));
    clicks
        .join_stream(
            &b.stream("purchases", Consumed::with(Serdes::string(), Serdes::i64())),
            |page, amount| format!("{page}:{amount}"),
            JoinWindows::of_time_difference_and_grace(Duration::from_millis(JOIN as u64), hour),
            StreamJoined::new(),
        )
        .to(
            "attributed",
            Produced::with(Serdes::string(), Serdes::string()),
        );
    b.build().unwrap()
}

#[test]
fn windows_and_stream_joins_on_the_embedded_broker() {
    let broker = Broker::embedded();
    for t in ["clicks", "purchases", "attributed"] {
        broker.create_topic(t, 2);
    }
    let dir = tempfile::tempdir().unwrap();
    let streams =
        KafkaStreams::new(topology(), broker.config("windows-joins", dir.path())).unwrap();
    streams.start().unwrap();

    let base = 1_800_000_000_000i64;
    let mut x: u64 = 5;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 20
    };
    let mut clicks = Vec::new();
    let mut t = base;
    for _ in 0..240 {
        t += (next() % 9_000) as i64 + if next() % 10 == 0 { 40_000 } else { 0 };
        clicks.push((
            format!("user{}", next() % 5),
            format!("/p{}", next() % 4),
            t,
        ));
    }
    let mut purchases = Vec::new();
    let mut t = base;
    for _ in 0..60 {
        t += (next() % 40_000) as i64;
        purchases.push((format!("user{}", next() % 5), (next() % 100) as i64, t));
    }
    produce_at(
        &broker.bootstrap(),
        "clicks",
        &clicks
            .iter()
            .map(|(u, p, t)| {
                (
                    u.clone().into_bytes(),
                    Some(p.clone().into_bytes()),
                    Some(*t),
                )
            })
            .collect::<Vec<_>>(),
    );
    produce_at(
        &broker.bootstrap(),
        "purchases",
        &purchases
            .iter()
            .map(|(u, a, t)| {
                (
                    u.clone().into_bytes(),
                    Some(a.to_be_bytes().to_vec()),
                    Some(*t),
                )
            })
            .collect::<Vec<_>>(),
    );

    // Sessions: per user, runs of clicks no more than GAP apart.
    let mut by_user: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (u, _, t) in &clicks {
        by_user.entry(u).or_default().push(*t);
    }
    let mut sessions = BTreeMap::new();
    let mut sliding = BTreeMap::new();
    for (u, ts) in &mut by_user {
        ts.sort();
        let (mut start, mut end, mut n) = (ts[0], ts[0], 0);
        for &t in ts.iter() {
            if t - end > GAP {
                sessions.insert((u.to_string(), start, end), n);
                (start, n) = (t, 0);
            }
            end = t;
            n += 1;
        }
        sessions.insert((u.to_string(), start, end), n);
        // Sliding windows: the one ending at each click, and the one just after it when another click follows
        // within the time difference; each counts the clicks inside it.
        let mut starts = BTreeSet::new();
        for &t in ts.iter() {
            starts.insert(t - SLIDE);
            if ts.iter().any(|&r| r > t && r <= t + 1 + SLIDE) {
                starts.insert(t + 1);
            }
        }
        for s in starts {
            let n = ts.iter().filter(|&&t| t >= s && t <= s + SLIDE).count() as i64;
            sliding.insert((u.to_string(), s), n);
        }
    }
    wait_until("the sessions", Duration::from_secs(60), || {
        streams
            .store::<Windowed<String>, i64>("sessions")
            .and_then(|s| s.all())
            .map(|all| {
                all.into_iter()
                    .map(|(w, n)| ((w.key, w.window.start, w.window.end), n))
                    .collect::<BTreeMap<_, _>>()
                    == sessions
            })
            .unwrap_or(false)
    });
    wait_until("the sliding windows", Duration::from_secs(60), || {
        streams
            .store::<Windowed<String>, i64>("sliding")
            .and_then(|s| s.all())
            .map(|all| {
                all.into_iter()
                    .map(|(w, n)| ((w.key, w.window.start), n))
                    .collect::<BTreeMap<_, _>>()
                    == sliding
            })
            .unwrap_or(false)
    });

    // The join: every (click, purchase) pair of a user at most JOIN ms apart.
    let mut expected: Vec<(String, String)> = Vec::new();
    for (u, p, t) in &clicks {
        for (u2, a, t2) in &purchases {
            if u == u2 && (t - t2).abs() <= JOIN {
                expected.push((u.clone(), format!("{p}:{a}")));
            }
        }
    }
    expected.sort();
    assert!(!expected.is_empty(), "the input has clicks near purchases");
    let got = consume_until(
        &broker.bootstrap(),
        "attributed",
        Duration::from_secs(60),
        |r| r.len() >= expected.len(),
    );
    let mut got: Vec<(String, String)> = got
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k).unwrap(),
                String::from_utf8(v.unwrap()).unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(streams.metrics().dropped_records, 0);
    assert!(streams.close(Duration::from_secs(30)));
}
