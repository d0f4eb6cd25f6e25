//! Versioned source tables (KIP-889, KIP-914) beyond the transcribed conformance scenarios: what the table
//! forwards, what it keeps, what it drops, the builds it refuses, and the grace-period buffer across a restart.

use std::time::Duration;

use streams_dsl::*;

fn prices(b: &StreamsBuilder, history: Duration) -> KTable<String, i64> {
    b.table(
        "prices",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::as_versioned_store("prices", history),
    )
}

/// An out-of-order update goes into the history (a lookup as of its time sees it) and is forwarded marked as
/// not the latest, so `to_stream` emits it, as Kafka's KTableSource on a versioned store forwards it with
/// `isLatest = false`. An update older than the history retention is dropped and counted. Deleting a key
/// forwards a deletion; deleting it again forwards nothing.
#[test]
fn a_versioned_table_forwards_out_of_order_rows_to_its_stream() {
    let b = StreamsBuilder::new();
    prices(&b, Duration::from_millis(100)).to_stream().to(
        "changes",
        Produced::with(Serdes::string(), OptionSerde::new(Serdes::i64())),
    );
    let d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    let input = d.input_topic("prices", Serdes::string(), OptionSerde::new(Serdes::i64()));
    let pen = || "pen".to_string();
    input.pipe_input_at(pen(), Some(3), 1_000).unwrap();
    input.pipe_input_at(pen(), Some(5), 1_050).unwrap();
    input.pipe_input_at(pen(), Some(4), 1_020).unwrap(); // out of order, within the retention
    input.pipe_input_at(pen(), Some(9), 900).unwrap(); // older than 1 050 - 100: dropped
    input.pipe_input_at(pen(), None, 1_060).unwrap();
    input.pipe_input_at(pen(), None, 1_070).unwrap();
    let out = d.output_topic("changes", Serdes::string(), OptionSerde::new(Serdes::i64()));
    let changes: Vec<(Option<i64>, i64)> = out
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect();
    assert_eq!(
        changes,
        vec![
            (Some(3), 1_000),
            (Some(5), 1_050),
            (Some(4), 1_020),
            (None, 1_060)
        ]
    );
    assert_eq!(d.metrics().dropped_records, 1);
    let history = d
        .versioned_key_value_store::<String, i64>("prices")
        .unwrap();
    let at = |t| {
        history
            .get_as_of(&pen(), t)
            .unwrap()
            .map(|r| (r.value, r.timestamp, r.valid_to))
    };
    assert_eq!(at(1_030), Some((4, 1_020, Some(1_050))));
    assert_eq!(at(1_010), Some((3, 1_000, Some(1_020))));
    assert_eq!(at(1_065), None);
    assert_eq!(history.get(&pen()).unwrap(), None);
}

/// Versioned stores are offered for source tables only: asking for one anywhere else is a build error naming
/// the store, never a silently unversioned store.
#[test]
fn a_versioned_store_elsewhere_than_a_source_table_is_a_build_error() {
    let b = StreamsBuilder::new();
    b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .count(Materialized::as_versioned_store(
            "counts",
            Duration::from_secs(60),
        ));
    let err = b.build().unwrap_err();
    assert!(
        matches!(&err, StreamsError::InvalidTopology(m) if m.contains("'counts'") && m.contains("versioned")),
        "{err}"
    );
}

/// Table-table joins of versioned tables are not supported yet: a build error, not a join that fails when the
/// application starts.
#[test]
fn a_table_table_join_of_a_versioned_table_is_a_build_error() {
    let b = StreamsBuilder::new();
    let p = prices(&b, Duration::from_secs(60));
    let stock = b.table::<String, i64>("stock", Consumed::new(), Materialized::new());
    p.join(&stock, |a, b| a * b);
    let err = b.build().unwrap_err();
    assert!(
        matches!(&err, StreamsError::InvalidTopology(m) if m.contains("'prices' is versioned")),
        "{err}"
    );
}

/// The grace-period buffer is a changelogged store: a record buffered before a restart is joined after it, when
/// stream time finally passes it, with the table as of its time.
#[test]
fn buffered_records_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("versioned-grace-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let topology = || {
        let b = StreamsBuilder::new();
        let p = prices(&b, Duration::from_secs(60));
        b.stream("orders", Consumed::with(Serdes::string(), Serdes::i64()))
            .join(
                &p,
                |qty, price| qty * price,
                Joined::as_name("totals").with_grace_period(Duration::from_millis(100)),
            )
            .to("totals", Produced::with(Serdes::string(), Serdes::i64()));
        b.build().unwrap()
    };
    // The buffer store is named after the join, as Kafka Streams names it.
    assert!(topology().describe().to_string().contains("totals-Buffer"));
    let open = || {
        TopologyTestDriver::builder(topology())
            .state_dir(&dir)
            .build()
            .unwrap()
    };
    let d = open();
    let p = d.input_topic("prices", Serdes::string(), Serdes::i64());
    let o = d.input_topic("orders", Serdes::string(), Serdes::i64());
    p.pipe_input_at("pen".into(), 3, 1_000).unwrap();
    p.pipe_input_at("pen".into(), 7, 1_100).unwrap();
    o.pipe_input_at("pen".into(), 2, 1_050).unwrap(); // buffered until stream time reaches 1 150
    let out = d.output_topic("totals", Serdes::string(), Serdes::i64());
    assert!(out.is_empty());
    d.close().unwrap();

    let d = open();
    let o = d.input_topic("orders", Serdes::string(), Serdes::i64());
    o.pipe_input_at("pen".into(), 10, 1_200).unwrap();
    let out = d.output_topic("totals", Serdes::string(), Serdes::i64());
    let got: Vec<(i64, i64)> = out
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect();
    // The buffered order joins with the price valid at 1 050 (3), not the latest (7).
    assert_eq!(got, vec![(6, 1_050)]);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A table derived from a versioned one without a store of its own (here a `map_values`) keeps its source's
/// versioned lookups, as in Kafka Streams: a stream-table join reads it as of each record's time, out-of-order
/// source updates included, and a grace-period join on it builds. Checked against the prices at each time,
/// computed directly.
#[test]
fn a_table_derived_from_a_versioned_one_is_read_as_of_each_record() {
    let b = StreamsBuilder::new();
    let with_tax = prices(&b, Duration::from_secs(60)).map_values(|p| p * 2);
    b.stream("orders", Consumed::with(Serdes::string(), Serdes::i64()))
        .join(
            &with_tax,
            |qty, price| qty * price,
            Joined::as_name("totals").with_grace_period(Duration::from_millis(10)),
        )
        .to("totals", Produced::with(Serdes::string(), Serdes::i64()));
    let d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    let p = d.input_topic("prices", Serdes::string(), Serdes::i64());
    let o = d.input_topic("orders", Serdes::string(), Serdes::i64());
    let price_updates = [(3, 1_000), (7, 1_100), (5, 1_050)]; // the last one out of order
    for (price, t) in price_updates {
        p.pipe_input_at("pen".into(), price, t).unwrap();
    }
    let orders = [(1, 1_010), (2, 1_060), (4, 1_120), (1, 1_200)];
    for (qty, t) in orders {
        o.pipe_input_at("pen".into(), qty, t).unwrap();
    }
    // The price at time t: the update with the latest time <= t, whatever the order it came in.
    let price_at = |t: i64| {
        price_updates
            .iter()
            .filter(|(_, pt)| *pt <= t)
            .max_by_key(|(_, pt)| *pt)
            .map(|(p, _)| p * 2)
    };
    // The grace period holds an order until stream time passes it by 10 ms: the last one stays buffered.
    let expected: Vec<i64> = orders[..3]
        .iter()
        .filter_map(|(qty, t)| price_at(*t).map(|p| qty * p))
        .collect();
    let got: Vec<i64> = d
        .output_topic("totals", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(got, expected);
    assert_eq!(got, vec![6, 20, 56]);
}
