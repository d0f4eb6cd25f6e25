//! Use case 2: the pizza pipeline, all in one process on the embedded broker (or `--bootstrap-servers`).
//!
//! Starts the four topping stages and the order application (each its own application id), serves the order
//! service on 127.0.0.1:8080 (`--port N`), places a sample order of two pizzas and prints it once assembled, then
//! keeps serving until Ctrl-C (`--once` stops after the sample). Metrics are exposed for Prometheus on
//! 127.0.0.1:9464/metrics (`--metrics-port N`):
//!
//! ```text
//! curl -X POST localhost:8080/order/3      # {"order_id":"order-..."}
//! curl localhost:8080/order/order-...      # {"id":...,"count":3,"pizzas":[...]}
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use examples::cli::{init_logging, state_dir, Cluster, ConnectionArgs};
use examples::pizza::{self, Order, ORDERS_STORE, TOPICS};
use streams_dsl::streams_core::runtime::{KafkaStreams, State};
use streams_dsl::StreamsError;

/// The pizza pipeline: an order service and four topping stages, each its own application.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Stop after the sample order instead of serving until Ctrl-C.
    #[arg(long)]
    once: bool,
    /// The order service's port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The Prometheus metrics port.
    #[arg(long, default_value_t = 9464)]
    metrics_port: u16,
}

fn main() -> Result<(), StreamsError> {
    let cli = Cli::parse();
    init_logging();
    let (once, port, metrics_port) = (cli.once, cli.port, cli.metrics_port);
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(([127, 0, 0, 1], metrics_port))
        .install()
        .map_err(|e| StreamsError::processor(format!("cannot start the metrics exporter: {e}")))?;
    println!("metrics at http://127.0.0.1:{metrics_port}/metrics");
    let topics: Vec<(&str, i32)> = TOPICS.iter().map(|t| (*t, 2)).collect();
    let cluster = Cluster::from_args(&cli.connection, &topics)?;
    let state = state_dir()?;
    let start = |app: &str, topology| -> Result<Arc<KafkaStreams>, StreamsError> {
        let s = KafkaStreams::new(topology, cluster.config(app, state.path())?)?;
        s.start()?;
        Ok(Arc::new(s))
    };
    let mut apps = Vec::new();
    for (app, topology) in pizza::stages()? {
        apps.push(start(app, topology)?);
    }
    let orders = start("pizza-orders", pizza::orders()?)?;
    apps.push(orders.clone());

    let rt = tokio::runtime::Runtime::new().map_err(|source| StreamsError::Io {
        path: "tokio runtime".into(),
        source,
    })?;
    let router = pizza::order_service(cluster.producer_config()?, orders.clone())?;
    let (addr, stop) = rt.block_on(pizza::serve(router, ([127, 0, 0, 1], port).into()))?;
    println!("order service at http://{addr}: POST /order/{{count}}, GET /order/{{id}}");

    // A sample order, placed through the service like any client would.
    if !orders.wait_for_state(State::Running, Duration::from_secs(60)) {
        return Err(StreamsError::processor(format!(
            "orders not running: {:?}",
            orders.errors()
        )));
    }
    let order_id = sample_order(&addr.to_string())?;
    println!("placed {order_id} (2 pizzas)");
    let t0 = Instant::now();
    loop {
        if let Ok(Some(order)) = orders
            .store::<String, Order>(ORDERS_STORE)
            .and_then(|s| s.get(&order_id))
        {
            if order.pizzas.len() == order.count as usize {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&order).unwrap_or_default()
                );
                break;
            }
        }
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(StreamsError::processor(
                "the sample order did not come through in 60 s",
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !once {
        println!("serving until Ctrl-C");
        rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }
    let _ = stop.send(());
    for s in &apps {
        s.close(Duration::from_secs(30));
    }
    Ok(())
}

/// `POST /order/2` on the service; returns the order id.
fn sample_order(addr: &str) -> Result<String, StreamsError> {
    use std::io::{Read, Write};
    let io = |source| StreamsError::Io {
        path: addr.to_string(),
        source,
    };
    let mut s = std::net::TcpStream::connect(addr).map_err(io)?;
    s.write_all(b"POST /order/2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").map_err(io)?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(io)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| StreamsError::processor(format!("bad answer {body}: {e}")))?;
    v["order_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| StreamsError::processor(format!("no order id in {body}")))
}
