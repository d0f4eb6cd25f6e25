//! Tables and aggregates keep each value with its timestamp (Kafka's timestamped stores, KIP-258): results are
//! stamped with the latest time among what they were computed from, the stores answer with or without the
//! timestamps, and changelogs carry plain values stamped with the value's time, as Kafka Streams writes them.

use std::collections::BTreeMap;

use streams_dsl::*;

fn counts_topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("clicks-per-page"))
        .to_stream()
        .to(
            "counts",
            Produced::with(Serdes::string(), OptionSerde::new(Serdes::i64())),
        );
    b.build().unwrap()
}

/// Input (page, timestamp) in arrival order, out of order on purpose.
const CLICKS: [(&str, i64); 7] = [
    ("home", 50),
    ("cart", 20),
    ("home", 10),
    ("home", 70),
    ("cart", 5),
    ("home", 60),
    ("cart", 30),
];

/// The expected count and timestamp (the latest time among the records counted) of every update, computed
/// directly from the input.
fn expected_updates() -> Vec<(String, i64, i64)> {
    let mut state: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    CLICKS
        .iter()
        .map(|&(page, ts)| {
            let e = state.entry(page).or_insert((0, i64::MIN));
            e.0 += 1;
            e.1 = e.1.max(ts);
            (page.to_string(), e.0, e.1)
        })
        .collect()
}

#[test]
fn an_aggregate_is_stamped_with_its_latest_record_in_output_store_and_changelog() {
    let driver = TopologyTestDriver::new(counts_topology()).unwrap();
    let input = driver.input_topic("clicks", Serdes::string(), Serdes::string());
    for (page, ts) in CLICKS {
        input
            .pipe_input_at(page.to_string(), "u".to_string(), ts)
            .unwrap();
    }
    driver.commit().unwrap();
    let expected = expected_updates();

    let out = driver.output_topic("counts", Serdes::string(), OptionSerde::new(Serdes::i64()));
    let got: Vec<(String, i64, i64)> = out
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value.unwrap(), r.timestamp))
        .collect();
    assert_eq!(got, expected);

    // The store answers plain counts and, asked for them, the counts with their timestamps.
    let mut last: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (k, n, ts) in &expected {
        last.insert(k.clone(), (*n, *ts));
    }
    let plain = driver
        .key_value_store::<String, i64>("clicks-per-page")
        .unwrap();
    let timestamped = driver
        .key_value_store::<String, ValueAndTimestamp<i64>>("clicks-per-page")
        .unwrap();
    for (k, (n, ts)) in &last {
        assert_eq!(plain.get(k).unwrap(), Some(*n));
        assert_eq!(
            timestamped.get(k).unwrap(),
            Some(ValueAndTimestamp::new(*n, *ts))
        );
    }

    // The changelog holds plain counts, each record stamped with the count's timestamp.
    let changelog = Topology::changelog_topic("test-app", "clicks-per-page");
    let log = driver.output_topic(&changelog, Serdes::string(), Serdes::i64());
    let logged: BTreeMap<String, (i64, i64)> = log
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, (r.value, r.timestamp)))
        .collect();
    assert_eq!(logged, last);
}

#[test]
fn a_store_of_another_type_is_refused_with_both_types_named() {
    let driver = TopologyTestDriver::new(counts_topology()).unwrap();
    let Err(err) = driver.key_value_store::<String, String>("clicks-per-page") else {
        panic!("a store of counts read as strings");
    };
    let err = err.to_string();
    assert!(
        err.contains("clicks-per-page") && err.contains("String"),
        "{err}"
    );
}

#[test]
fn a_table_table_join_is_stamped_with_the_later_side() {
    let b = StreamsBuilder::new();
    let consumed = || Consumed::with(Serdes::string(), Serdes::string());
    let left = b.table("left", consumed(), Materialized::new());
    let right = b.table("right", consumed(), Materialized::new());
    left.left_join(&right, |l, r| {
        format!("{l}+{}", r.map_or("-", |r| r.as_str()))
    })
    .to_stream()
    .to(
        "joined",
        Produced::with(Serdes::string(), OptionSerde::new(Serdes::string())),
    );
    let driver = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    let l = driver.input_topic("left", Serdes::string(), Serdes::string());
    let r = driver.input_topic("right", Serdes::string(), Serdes::string());
    let out = driver.output_topic(
        "joined",
        Serdes::string(),
        OptionSerde::new(Serdes::string()),
    );
    // (side, value, timestamp); the expected stamp of each result is the later of the two rows' times.
    let events = [
        ("r", "R1", 100),
        ("l", "L1", 40),
        ("l", "L2", 150),
        ("r", "R2", 120),
    ];
    let (mut lt, mut rt) = (None::<i64>, None::<i64>);
    let mut expected = Vec::new();
    for (side, v, ts) in events {
        if side == "l" {
            l.pipe_input_at("k".into(), v.into(), ts).unwrap();
            lt = Some(ts);
        } else {
            r.pipe_input_at("k".into(), v.into(), ts).unwrap();
            rt = Some(ts);
        }
        if let Some(lts) = lt {
            expected.push(lts.max(rt.unwrap_or(-1)));
        }
    }
    let stamps: Vec<i64> = out
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(stamps, expected);
}
