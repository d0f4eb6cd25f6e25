//! Use case 3: a checkout publisher and independent consumers. Starts the embedded broker (or uses
//! `--bootstrap-servers`), runs shipping, email and inventory as separate applications, publishes checkouts,
//! prints what each did; then starts a fourth consumer (fraud screening) without touching the others.
//!
//! `cargo run -p examples --bin checkout_fanout -- --help` lists the flags.

use std::time::{Duration, Instant};

use clap::Parser;
use examples::checkout::*;
use examples::cli::{init_logging, state_dir, Cluster, ConnectionArgs};
use streams_dsl::streams_core::runtime::KafkaStreams;
use streams_dsl::{StreamsError, Topology};

/// Checkout fan-out: shipping, email and inventory consume the same checkout events as independent
/// applications; a fourth (fraud screening) joins later without touching them.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
}

fn main() -> Result<(), StreamsError> {
    let cli = Cli::parse();
    init_logging();
    let topics: Vec<(&str, i32)> = [CHECKOUTS, SHIPMENTS, EMAILS, RESERVED, FRAUD_ALERTS]
        .iter()
        .map(|t| (*t, 2))
        .collect();
    let cluster = Cluster::from_args(&cli.connection, &topics)?;
    let state = state_dir()?;
    let start = |app: &str, topology: Topology| -> Result<KafkaStreams, StreamsError> {
        let s = KafkaStreams::new(topology, cluster.config(app, state.path())?)?;
        s.start()?;
        Ok(s)
    };
    let apps = vec![
        ("shipping", start("shipping", shipping()?)?),
        ("email", start("email", email()?)?),
        ("inventory", start("inventory", inventory()?)?),
    ];
    let checkouts = sample_checkouts(20);
    let records: Vec<_> = checkouts
        .iter()
        .map(|c| {
            (
                Some(c.order_id.clone().into_bytes()),
                serde_json::to_vec(c).ok(),
            )
        })
        .collect();
    cluster.produce(CHECKOUTS, &records)?;
    let wait_all = |apps: &[(&str, KafkaStreams)]| {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60)
            && apps
                .iter()
                .any(|(_, s)| s.metrics().processed < checkouts.len() as u64)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_all(&apps);
    for (name, s) in &apps {
        println!("{name}: {} records processed", s.metrics().processed);
    }
    // Inventory reserves through a repartition topic: wait until every unit is counted.
    let units: i64 = checkouts
        .iter()
        .flat_map(|c| &c.items)
        .map(|i| i.quantity)
        .sum();
    let t0 = Instant::now();
    let reserved = loop {
        let current = apps[2]
            .1
            .store::<String, i64>("reserved-per-sku")
            .and_then(|s| s.all())
            .unwrap_or_default();
        if current.iter().map(|(_, n)| n).sum::<i64>() == units
            || t0.elapsed() > Duration::from_secs(60)
        {
            break current;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("inventory, units reserved per SKU: {reserved:?}");
    println!("adding a fourth consumer (fraud screening); the others are not touched");
    let fraud = vec![(
        "fraud-screening",
        start("fraud-screening", fraud_screening()?)?,
    )];
    wait_all(&fraud);
    println!(
        "fraud-screening: processed {} checkouts (every checkout published before it started)",
        fraud[0].1.metrics().processed
    );
    for (_, s) in apps.iter().chain(&fraud) {
        s.close(Duration::from_secs(30));
    }
    Ok(())
}
