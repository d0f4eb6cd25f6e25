//! Use case 1 end to end: which clients hold US shares right now.
//!
//! Starts the embedded broker (or uses `--bootstrap-servers host:port`), creates the `share-holders` topic,
//! produces the sample positions, runs the application, and prints the `us-share-holders` store as JSON; then
//! closes position 4 and prints it again. With `--serve`, it then keeps answering HTTP queries on
//! 127.0.0.1:8080 (`--port N` to change) until Ctrl-C, e.g. `curl localhost:8080/stores/us-share-holders/keys/client1`;
//! the operator page is at http://127.0.0.1:8080/ui.
//!
//! `cargo run -p examples --bin us_shareholders -- --help` lists the flags; `--exactly-once` runs it under
//! `processing.guarantee=exactly_once_v2`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use examples::cli::{init_logging, state_dir, Cluster, ConnectionArgs};
use examples::us_shareholders::{sample_positions, topology, Position, POSITIONS_TOPIC, STORE};
use streams_dsl::streams_core::runtime::{KafkaStreams, QueryServer, State};
use streams_dsl::{StoreKind, StreamsError};

/// Which clients hold US shares: the US-shareholders application (table filter -> group_by -> aggregate) on the
/// sample positions, its store printed after each change.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Keep answering HTTP queries after the sample run, until Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// The HTTP port with --serve.
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

type Holders = std::collections::BTreeMap<String, BTreeSet<String>>;

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

fn position(p: &Position) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (Some(p.id.clone().into_bytes()), serde_json::to_vec(p).ok())
}

fn main() -> Result<(), StreamsError> {
    let cli = Cli::parse();
    init_logging();
    let (serve, port) = (cli.serve, cli.port);
    let cluster = Cluster::from_args(&cli.connection, &[(POSITIONS_TOPIC, 2)])?;
    println!(
        "broker at {}, processing.guarantee={}",
        cluster.bootstrap(),
        cluster.guarantee()
    );
    let state = state_dir()?;
    let (mut config, admin) = cluster.config("us-shareholders", state.path())?;
    if serve {
        config.set("application.server", &format!("127.0.0.1:{port}"))?;
    }

    let streams = Arc::new(KafkaStreams::new(
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

    let positions: Vec<_> = sample_positions().iter().map(position).collect();
    cluster.produce(POSITIONS_TOPIC, &positions)?;
    let holders = wait_for(&streams, |h| h.len() == 2)?;
    println!(
        "us-share-holders:\n{}",
        serde_json::to_string_pretty(&holders).unwrap_or_default()
    );

    cluster.produce(POSITIONS_TOPIC, &[(Some(b"4".to_vec()), None)])?;
    let holders = wait_for(&streams, |h| !h.contains_key("client2"))?;
    println!(
        "after position 4 is closed:\n{}",
        serde_json::to_string_pretty(&holders).unwrap_or_default()
    );

    cluster.produce(
        POSITIONS_TOPIC,
        &[position(&Position::new("3", "client1", "FB", 33, "LON"))],
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
            let server = QueryServer::builder(streams.clone())
                .store::<String, BTreeSet<String>>(STORE)
                .bind(([127, 0, 0, 1], port).into())
                .serve()
                .await?;
            println!(
                "serving queries at http://{addr}/stores/{STORE}/keys/<client> (also /stores, /metadata), the \
                 operator page at http://{addr}/ui; Ctrl-C stops",
                addr = server.local_addr()
            );
            let _ = tokio::signal::ctrl_c().await;
            server.shutdown().await;
            Ok::<(), StreamsError>(())
        })?;
    }
    streams.close(Duration::from_secs(30));
    Ok(())
}
