//! Use case 2, the pizza pipeline: an HTTP order service takes `POST /order/{count}` and answers
//! `{"order_id": ...}`; each pizza flows through pizza -> pizza-with-sauce -> pizza-with-cheese ->
//! pizza-with-meat -> pizza-with-veggies, each stage a small stream application adding a topping; an order
//! application keeps each order's finished pizzas in a table, and `GET /order/{id}` answers the assembled order
//! from it by interactive query.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::{Deserialize, Serialize};
use serde_json::json;
use streams_dsl::streams_core::runtime::KafkaStreams;
use streams_dsl::{
    Consumed, Grouped, Materialized, Produced, Serdes, StreamsBuilder, StreamsError, Topology,
};

/// The topics of the pipeline, in order.
pub const TOPICS: [&str; 5] = [
    "pizza",
    "pizza-with-sauce",
    "pizza-with-cheese",
    "pizza-with-meat",
    "pizza-with-veggies",
];
/// The store of assembled orders.
pub const ORDERS_STORE: &str = "pizza-orders";
/// The largest order the service accepts.
pub const MAX_PIZZAS: u32 = 20;

/// A pizza on its way through the pipeline (key: order id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Pizza {
    /// The order it belongs to.
    pub order_id: String,
    /// Its number within the order.
    pub number: u32,
    /// How many pizzas the order has.
    pub order_size: u32,
    /// Added by the sauce stage.
    pub sauce: Option<String>,
    /// Added by the cheese stage.
    pub cheese: Option<String>,
    /// Added by the meat stage.
    pub meats: Option<String>,
    /// Added by the veggie stage.
    pub veggies: Option<String>,
}

/// An assembled order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Order {
    /// Order id.
    pub id: String,
    /// Pizzas ordered.
    pub count: u32,
    /// Pizzas finished so far.
    pub pizzas: Vec<Pizza>,
}

const SAUCES: [&str; 3] = ["regular", "light", "extra"];
const CHEESES: [&str; 4] = ["mozzarella", "cheddar", "parmesan", "goat"];
const MEATS: [&str; 4] = ["pepperoni", "ham", "sausage", "bacon"];
const VEGGIES: [&str; 5] = ["onion", "pepper", "olive", "mushroom", "tomato"];

/// A stable pseudo-random pick for a pizza and a stage (FNV-1a of both).
fn pick<'a>(choices: &[&'a str], pizza: &Pizza, stage: &str) -> &'a str {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pizza
        .order_id
        .bytes()
        .chain(pizza.number.to_be_bytes())
        .chain(stage.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    choices[(h % choices.len() as u64) as usize]
}

fn stage(input: &str, output: &str, add: fn(&mut Pizza)) -> Result<Topology, StreamsError> {
    let b = StreamsBuilder::new();
    b.stream(
        input,
        Consumed::with(Serdes::string(), Serdes::json::<Pizza>()),
    )
    .map_values(move |mut p| {
        add(&mut p);
        p
    })
    .to(
        output,
        Produced::with(Serdes::string(), Serdes::json::<Pizza>()),
    );
    b.build()
}

/// The four topping stages, each `(application id, topology)`.
pub fn stages() -> Result<Vec<(&'static str, Topology)>, StreamsError> {
    Ok(vec![
        (
            "pizza-sauce",
            stage(TOPICS[0], TOPICS[1], |p| {
                p.sauce = Some(pick(&SAUCES, p, "sauce").to_string())
            })?,
        ),
        (
            "pizza-cheese",
            stage(TOPICS[1], TOPICS[2], |p| {
                p.cheese = Some(pick(&CHEESES, p, "cheese").to_string())
            })?,
        ),
        (
            "pizza-meat",
            stage(TOPICS[2], TOPICS[3], |p| {
                p.meats = Some(pick(&MEATS, p, "meat").to_string())
            })?,
        ),
        (
            "pizza-veggies",
            stage(TOPICS[3], TOPICS[4], |p| {
                let a = pick(&VEGGIES, p, "veggie-1");
                let b = pick(&VEGGIES, p, "veggie-2");
                p.veggies = Some(if a == b {
                    a.to_string()
                } else {
                    format!("{a} & {b}")
                });
            })?,
        ),
    ])
}

/// The order application: finished pizzas grouped by order into the queryable store `pizza-orders`.
pub fn orders() -> Result<Topology, StreamsError> {
    let b = StreamsBuilder::new();
    b.stream(
        TOPICS[4],
        Consumed::with(Serdes::string(), Serdes::json::<Pizza>()),
    )
    .group_by_key(Grouped::with(Serdes::string(), Serdes::json::<Pizza>()))
    .aggregate(
        Order::default,
        |order_id, pizza, mut order: Order| {
            order.id = order_id.clone();
            order.count = pizza.order_size;
            if !order.pizzas.iter().any(|p| p.number == pizza.number) {
                order.pizzas.push(pizza.clone());
                order.pizzas.sort_by_key(|p| p.number);
            }
            order
        },
        Materialized::as_store(ORDERS_STORE).with_value_serde(Serdes::json::<Order>()),
    );
    b.build()
}

struct Service {
    producer: BaseProducer,
    orders: Arc<KafkaStreams>,
    next: AtomicU64,
}

/// The HTTP order service: `POST /order/{count}`, `GET /order/{id}`; orders are written by a producer made from
/// `producer_config` (bootstrap servers and connection settings).
pub fn order_service(
    mut producer_config: ClientConfig,
    orders: Arc<KafkaStreams>,
) -> Result<Router, StreamsError> {
    let producer: BaseProducer = producer_config
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .create()
        .map_err(|e| StreamsError::processor(format!("producer: {e}")))?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let state = Arc::new(Service {
        producer,
        orders,
        next: AtomicU64::new(seed),
    });
    Ok(Router::new()
        // POST takes a pizza count, GET an order id.
        .route("/order/{param}", post(place_order).get(get_order))
        .with_state(state))
}

fn bad_request(message: String) -> axum::response::Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn place_order(
    State(s): State<Arc<Service>>,
    Path(count): Path<String>,
) -> axum::response::Response {
    let count: u32 = match count.parse() {
        Ok(n) if (1..=MAX_PIZZAS).contains(&n) => n,
        _ => {
            return bad_request(format!(
                "the count must be a number from 1 to {MAX_PIZZAS}, got '{count}'"
            ))
        }
    };
    let order_id = format!("order-{:x}", s.next.fetch_add(1, Ordering::Relaxed));
    for number in 1..=count {
        let pizza = Pizza {
            order_id: order_id.clone(),
            number,
            order_size: count,
            ..Pizza::default()
        };
        let value = match serde_json::to_vec(&pizza) {
            Ok(v) => v,
            Err(e) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({ "error": e.to_string() })),
                )
                    .into_response()
            }
        };
        if let Err((e, _)) = s.producer.send(
            BaseRecord::to(TOPICS[0])
                .key(order_id.as_str())
                .payload(value.as_slice()),
        ) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    }
    if let Err(e) = s.producer.flush(Duration::from_secs(10)) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response();
    }
    (StatusCode::OK, Json(json!({ "order_id": order_id }))).into_response()
}

async fn get_order(
    State(s): State<Arc<Service>>,
    Path(id): Path<String>,
) -> axum::response::Response {
    match s
        .orders
        .store::<String, Order>(ORDERS_STORE)
        .and_then(|store| store.get(&id))
    {
        Ok(Some(order)) => (StatusCode::OK, Json(order)).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no order '{id}' (yet)") })),
        )
            .into_response(),
        Err(StreamsError::StoreUnavailable { reason, .. }) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": reason })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// Serves `router` on `addr` until the returned sender is dropped or fired; returns the bound address.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>), StreamsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StreamsError::Io {
            path: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StreamsError::Io {
        path: addr.to_string(),
        source,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok((local, tx))
}
