//! Use case 4 through the embedded broker: the clickstream example's per-minute page counts (live query, every
//! update, final results after the minute closes) against a plain count of the views produced.

use std::collections::BTreeMap;
use std::time::Duration;

use examples::clickstream::{
    topology, window_counts, window_key, window_start, PageView, COUNTS, FINAL_COUNTS, PAGE_VIEWS,
};
use streams_dsl::streams_core::runtime::KafkaStreams;
use tests::{consume_until, produce_at, wait_until, Broker};

const PAGES: [&str; 4] = ["/", "/docs", "/pricing", "/blog"];

#[test]
fn clickstream_counts_per_minute_on_the_embedded_broker() {
    let broker = Broker::embedded();
    // One input partition: views reach the counting task in the order they were produced, so which views are
    // late is decided by this test's timestamps alone.
    broker.create_topic(PAGE_VIEWS, 1);
    broker.create_topic(COUNTS, 2);
    broker.create_topic(FINAL_COUNTS, 2);
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(
        topology().unwrap(),
        broker.config("clickstream", dir.path()),
    )
    .unwrap();
    streams.start().unwrap();

    let base = window_start(1_800_000_000_000);
    let mut x: u64 = 17;
    let mut views = Vec::new();
    for i in 0..300i64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let jitter = if (x >> 40).is_multiple_of(5) {
            ((x >> 20) % 3000) as i64
        } else {
            0
        };
        let page = PAGES[((x >> 33) % 4) as usize];
        views.push((
            format!("user{}", (x >> 10) % 9),
            page,
            base + i * 600 - jitter,
        ));
    }
    // Far beyond the 5 s grace of its minute: dropped and counted.
    views.push(("late".into(), "/", base + 10));
    // Moves stream time past minutes 0..2 so their final counts come out.
    views.push(("last".into(), "/blog", base + 5 * 60_000 + 1));

    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (_, page, ts) in &views[..300] {
        *expected
            .entry(window_key(page, window_start(*ts)))
            .or_default() += 1;
    }
    let records: Vec<_> = views
        .iter()
        .map(|(user, page, ts)| {
            let v = serde_json::to_vec(&PageView {
                user: user.clone(),
                page: page.to_string(),
            })
            .unwrap();
            (user.clone().into_bytes(), Some(v), Some(*ts))
        })
        .collect();
    produce_at(&broker.bootstrap(), PAGE_VIEWS, &records);

    // Final results: one per page and closed minute, equal to the plain count.
    let closed: BTreeMap<String, i64> = expected.clone();
    let finals = consume_until(
        &broker.bootstrap(),
        FINAL_COUNTS,
        Duration::from_secs(60),
        |r| r.len() >= closed.len(),
    );
    let mut got = BTreeMap::new();
    for (k, v) in finals {
        let k = String::from_utf8(k).unwrap();
        let n = i64::from_be_bytes(v.unwrap().try_into().unwrap());
        assert!(got.insert(k.clone(), n).is_none(), "{k} emitted twice");
    }
    assert_eq!(got, closed);

    // Every update went out too; the last per window is the count.
    let updates = consume_until(&broker.bootstrap(), COUNTS, Duration::from_secs(60), |r| {
        r.len() >= 301
    });
    let last: BTreeMap<String, i64> = updates
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k).unwrap(),
                i64::from_be_bytes(v.unwrap().try_into().unwrap()),
            )
        })
        .collect();
    let mut expected_all = expected.clone();
    expected_all.insert(window_key("/blog", base + 5 * 60_000), 1);
    assert_eq!(last, expected_all);

    // Live queries of a minute's counts (the store keeps an hour).
    for minute in 0..3 {
        let at = base + minute * 60_000 + 30_000;
        let want: BTreeMap<String, i64> = PAGES
            .iter()
            .filter_map(|p| {
                expected
                    .get(&window_key(p, base + minute * 60_000))
                    .map(|n| (p.to_string(), *n))
            })
            .collect();
        wait_until("the minute's counts", Duration::from_secs(30), || {
            window_counts(&streams, at)
                .map(|c| c == want)
                .unwrap_or(false)
        });
    }
    let current = window_counts(&streams, base + 5 * 60_000 + 2).unwrap();
    assert_eq!(current, BTreeMap::from([("/blog".to_string(), 1)]));
    assert_eq!(streams.metrics().dropped_records, 1);
    assert!(streams.close(Duration::from_secs(30)));
}
