//! Use case 2 over HTTP on the embedded broker: every ordered pizza comes back with its four toppings and the
//! order with the right count; bad requests get clear 4xx answers.

use std::sync::Arc;
use std::time::Duration;

use examples::pizza::{self, Order, TOPICS};
use streams_dsl::streams_core::runtime::{KafkaStreams, State};
use tests::{http_request, wait_until, Broker};

#[test]
fn pizza_orders_over_http_on_the_embedded_broker() {
    let broker = Broker::embedded();
    for t in TOPICS {
        broker.create_topic(t, 2);
    }
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut apps = Vec::new();
    for ((app, topology), dir) in pizza::stages().unwrap().into_iter().zip(&dirs) {
        let s = KafkaStreams::new(topology, broker.config(app, dir.path())).unwrap();
        s.start().unwrap();
        apps.push(Arc::new(s));
    }
    let orders = Arc::new(
        KafkaStreams::new(
            pizza::orders().unwrap(),
            broker.config("pizza-orders", dirs[4].path()),
        )
        .unwrap(),
    );
    orders.start().unwrap();
    apps.push(orders.clone());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let router = pizza::order_service(
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .clone(),
        orders.clone(),
    )
    .unwrap();
    let (addr, stop) = rt
        .block_on(pizza::serve(router, ([127, 0, 0, 1], 0).into()))
        .unwrap();
    let url = |path: &str| format!("http://{addr}{path}");

    // Bad requests.
    for bad in ["/order/0", "/order/1000", "/order/three"] {
        let (status, body) = http_request("POST", &url(bad));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body.contains("the count must be a number from 1 to"),
            "{body}"
        );
    }
    // While the order application starts, an order cannot be looked up yet: 503; then an unknown one is 404.
    assert!(orders.wait_for_state(State::Running, Duration::from_secs(60)));
    assert_eq!(http_request("GET", &url("/order/no-such-order")).0, 404);

    let mut placed = Vec::new();
    for count in [3u32, 1, 5] {
        let (status, body) = http_request("POST", &url(&format!("/order/{count}")));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        placed.push((v["order_id"].as_str().unwrap().to_string(), count));
    }
    for (id, count) in &placed {
        let mut order = Order::default();
        wait_until(&format!("order {id}"), Duration::from_secs(90), || {
            let (status, body) = http_request("GET", &url(&format!("/order/{id}")));
            if status != 200 {
                return false;
            }
            order = serde_json::from_str(&body).unwrap();
            order.pizzas.len() == *count as usize
        });
        assert_eq!((&order.id, order.count), (id, *count));
        let numbers: Vec<u32> = order.pizzas.iter().map(|p| p.number).collect();
        assert_eq!(numbers, (1..=*count).collect::<Vec<_>>());
        for p in &order.pizzas {
            assert_eq!(&p.order_id, id);
            for topping in [&p.sauce, &p.cheese, &p.meats, &p.veggies] {
                assert!(
                    topping.as_deref().is_some_and(|t| !t.is_empty()),
                    "missing topping on {p:?}"
                );
            }
        }
    }
    let _ = stop.send(());
    for s in &apps {
        assert!(s.close(Duration::from_secs(30)));
    }
}
