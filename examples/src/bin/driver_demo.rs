//! Runs the US-shareholders application in the in-process test driver (no broker needed) and prints the
//! queryable store `us-share-holders` as JSON after each step.
//!
//! `cargo run -p examples --bin driver_demo`

use std::collections::BTreeSet;

use examples::us_shareholders::{sample_positions, topology, Position, POSITIONS_TOPIC, STORE};
use streams_dsl::{Serdes, StoreKind, StreamsError, TopologyTestDriver};

fn print_store(driver: &TopologyTestDriver, step: &str) -> Result<(), StreamsError> {
    let store = driver.key_value_store::<String, BTreeSet<String>>(STORE)?;
    let rows: serde_json::Map<String, serde_json::Value> = store
        .all()?
        .into_iter()
        .map(|(client, ids)| (client, serde_json::json!(ids)))
        .collect();
    println!(
        "{step}\n{}",
        serde_json::to_string_pretty(&rows).expect("JSON of strings")
    );
    Ok(())
}

/// The US-shareholders topology in the in-process test driver: no broker.
#[derive(clap::Parser)]
struct Cli {
    /// Taken, as by every example, but without effect here: the test driver has no broker and no transactions;
    /// it processes and commits each record before the next, so what it prints is the same under
    /// at_least_once and exactly_once_v2 (the other examples run with processing.guarantee=exactly_once_v2).
    #[arg(long)]
    exactly_once: bool,
}

fn main() -> Result<(), StreamsError> {
    let cli = <Cli as clap::Parser>::parse();
    if cli.exactly_once {
        println!(
            "--exactly-once: the test driver commits after every record, so the output is the same under either \
             guarantee"
        );
    }
    let topology = topology(StoreKind::RocksDb)?;
    println!("{}", topology.describe());
    let driver = TopologyTestDriver::builder(topology)
        .default_partitions(3)
        .build()?;
    let positions = driver.input_topic(
        POSITIONS_TOPIC,
        Serdes::string(),
        Serdes::option(Serdes::json::<Position>()),
    );

    for p in sample_positions() {
        positions.pipe_input(p.id.clone(), Some(p))?;
    }
    print_store(&driver, "us-share-holders after the five sample positions:")?;

    positions.pipe_input("4".to_string(), None)?;
    print_store(&driver, "after position 4 is closed:")?;

    positions.pipe_input(
        "3".to_string(),
        Some(Position::new("3", "client1", "FB", 33, "LON")),
    )?;
    print_store(&driver, "after position 3 moves to LON:")?;
    Ok(())
}
