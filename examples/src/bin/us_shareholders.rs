//! Use case 1 end to end: which clients hold US shares right now.
//!
//! Starts the embedded broker (or uses `--bootstrap-servers host:port`), creates the `share-holders` topic,
//! produces the sample positions, runs the application, and prints the `us-share-holders` store as JSON; then
//! closes position 4 and prints it again. With `--serve`, it then keeps answering HTTP queries on
//! 127.0.0.1:8080 (`--port N` to change) until Ctrl-C, e.g. `curl localhost:8080/stores/us-share-holders/keys/client1`.
//!
//! `cargo run -p examples --bin us_shareholders [-- --bootstrap-servers host:port] [--serve [--port N]]`

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use examples::us_shareholders::{sample_positions, topology, Position, POSITIONS_TOPIC, STORE};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use streams_dsl::streams_core::runtime::{EmbeddedKafka, KafkaStreams, State, StreamsConfig};
use streams_dsl::{StoreKind, StreamsError};

type Holders = std::collections::BTreeMap<String, BTreeSet<String>>;

fn produce(bootstrap: &str, records: &[(String, Option<Vec<u8>>)]) -> Result<(), StreamsError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .map_err(|e| StreamsError::processor(format!("producer: {e}")))?;
    for (k, v) in records {
        let mut r: BaseRecord<'_, str, [u8]> = BaseRecord::to(POSITIONS_TOPIC).key(k.as_str());
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        producer
            .send(r)
            .map_err(|(e, _)| StreamsError::processor(format!("send: {e}")))?;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| StreamsError::processor(format!("flush: {e}")))
}

/// Reads the store until `done` holds (the application works asynchronously) or 30 s pass.
fn wait_for(
    streams: &KafkaStreams,
    done: impl Fn(&Holders) -> bool,
) -> Result<Holders, StreamsError> {
    let start = Instant::now();
    loop {
        let current: Holders = match streams.store::<String, BTreeSet<String>>(STORE) {
            Ok(store) => store.all()?.into_iter().collect(),
            Err(StreamsError::StoreUnavailable { .. }) => Holders::new(),
            Err(e) => return Err(e),
        };
        if done(&current) || start.elapsed() > Duration::from_secs(30) {
            return Ok(current);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() -> Result<(), StreamsError> {
    // Library warnings (the embedded broker's limits, among others) on stderr; RUST_LOG overrides the level.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let bootstrap_arg = args
        .iter()
        .position(|a| a == "--bootstrap-servers")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let serve = args.iter().any(|a| a == "--serve");
    let port: u16 = match args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
    {
        Some(p) => p.parse().map_err(|_| StreamsError::Config {
            key: "--port".into(),
            message: format!("expected a port number, got '{p}'"),
        })?,
        None => 8080,
    };
    let state_dir = tempfile::tempdir().map_err(|source| StreamsError::Io {
        path: "temp dir".into(),
        source,
    })?;

    let embedded;
    let (mut config, admin) = match &bootstrap_arg {
        Some(servers) => (
            StreamsConfig::new("us-shareholders", servers.as_str()),
            None,
        ),
        None => {
            embedded = EmbeddedKafka::start()?;
            embedded.create_topic(POSITIONS_TOPIC, 2)?;
            println!("embedded broker at {}", embedded.bootstrap_servers());
            let (c, a) = StreamsConfig::embedded("us-shareholders", &embedded);
            (c, Some(a))
        }
    };
    config.set("commit.interval.ms", "500")?;
    if serve {
        config.set("application.server", &format!("127.0.0.1:{port}"))?;
    }
    config.set("state.dir", &state_dir.path().display().to_string())?;
    let bootstrap = config.bootstrap_servers.clone();

    let streams = std::sync::Arc::new(KafkaStreams::new(
        topology(StoreKind::RocksDb)?,
        (config, admin),
    )?);
    streams.set_state_listener(|from, to| println!("state: {from:?} -> {to:?}"));
    streams.start()?;
    if !streams.wait_for_state(State::Running, Duration::from_secs(60)) {
        return Err(StreamsError::processor(format!(
            "not running: {:?} {:?}",
            streams.state(),
            streams.errors()
        )));
    }

    let positions: Vec<(String, Option<Vec<u8>>)> = sample_positions()
        .iter()
        .map(|p| (p.id.clone(), serde_json::to_vec(p).ok()))
        .collect();
    produce(&bootstrap, &positions)?;
    let holders = wait_for(&streams, |h| h.len() == 2)?;
    println!(
        "us-share-holders:\n{}",
        serde_json::to_string_pretty(&holders).unwrap_or_default()
    );

    produce(&bootstrap, &[("4".to_string(), None)])?;
    let holders = wait_for(&streams, |h| !h.contains_key("client2"))?;
    println!(
        "after position 4 is closed:\n{}",
        serde_json::to_string_pretty(&holders).unwrap_or_default()
    );

    let moved = Position::new("3", "client1", "FB", 33, "LON");
    produce(
        &bootstrap,
        &[("3".to_string(), serde_json::to_vec(&moved).ok())],
    )?;
    let holders = wait_for(&streams, |h| {
        h.get("client1").is_some_and(|ids| ids.len() == 1)
    })?;
    println!(
        "after position 3 moves to LON:\n{}",
        serde_json::to_string_pretty(&holders).unwrap_or_default()
    );

    if serve {
        let rt = tokio::runtime::Runtime::new().map_err(|source| StreamsError::Io {
            path: "tokio runtime".into(),
            source,
        })?;
        rt.block_on(async {
            let server = streams_dsl::streams_core::runtime::QueryServer::builder(streams.clone())
                .store::<String, BTreeSet<String>>(STORE)
                .bind(([127, 0, 0, 1], port).into())
                .serve()
                .await?;
            println!(
                "serving queries at http://{}/stores/{STORE}/keys/<client> (also /stores, /metadata); Ctrl-C stops",
                server.local_addr()
            );
            let _ = tokio::signal::ctrl_c().await;
            server.shutdown().await;
            Ok::<(), StreamsError>(())
        })?;
    }
    streams.close(Duration::from_secs(30));
    Ok(())
}
