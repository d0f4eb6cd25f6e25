//! Use case 3: a checkout publisher and independent consumers. Starts the embedded broker (or uses
//! `--bootstrap-servers`), runs shipping, email and inventory as separate applications, publishes checkouts,
//! prints what each did; then starts a fourth consumer (fraud screening) without touching the others.
//!
//! `cargo run -p examples --bin checkout_fanout`

use std::time::{Duration, Instant};

use examples::checkout::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use streams_dsl::streams_core::runtime::{EmbeddedKafka, KafkaStreams, StreamsConfig};
use streams_dsl::{StreamsError, Topology};

fn publish(bootstrap: &str, checkouts: &[Checkout]) -> Result<(), StreamsError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .map_err(|e| StreamsError::processor(format!("producer: {e}")))?;
    for c in checkouts {
        let value = serde_json::to_vec(c).map_err(|e| StreamsError::processor(e.to_string()))?;
        let r = BaseRecord::to(CHECKOUTS)
            .key(c.order_id.as_str())
            .payload(value.as_slice());
        producer
            .send(r)
            .map_err(|(e, _)| StreamsError::processor(format!("send: {e}")))?;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| StreamsError::processor(format!("flush: {e}")))
}

fn main() -> Result<(), StreamsError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let external = args
        .iter()
        .position(|a| a == "--bootstrap-servers")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let embedded = match &external {
        Some(_) => None,
        None => {
            let k = EmbeddedKafka::start()?;
            for t in [CHECKOUTS, SHIPMENTS, EMAILS, RESERVED, FRAUD_ALERTS] {
                k.create_topic(t, 2)?;
            }
            Some(k)
        }
    };
    let bootstrap = external.unwrap_or_else(|| {
        embedded
            .as_ref()
            .map(|k| k.bootstrap_servers().to_string())
            .unwrap_or_default()
    });
    let state = tempfile::tempdir().map_err(|source| StreamsError::Io {
        path: "temp dir".into(),
        source,
    })?;
    let start = |app: &str, topology: Topology| -> Result<KafkaStreams, StreamsError> {
        let mut config = StreamsConfig::new(app, bootstrap.as_str());
        config.set("commit.interval.ms", "500")?;
        config.set("state.dir", &state.path().display().to_string())?;
        let setup = (config, embedded.as_ref().map(EmbeddedKafka::admin));
        let s = KafkaStreams::new(topology, setup)?;
        s.start()?;
        Ok(s)
    };
    let apps = vec![
        ("shipping", start("shipping", shipping()?)?),
        ("email", start("email", email()?)?),
        ("inventory", start("inventory", inventory()?)?),
    ];
    let checkouts = sample_checkouts(20);
    publish(&bootstrap, &checkouts)?;
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
