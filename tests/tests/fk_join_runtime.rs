//! Foreign-key joins through a broker: orders (2 partitions) joined with customers (3 partitions), inner and
//! left; the result stores and the output topic converge to a plain join of the last rows written.

use std::collections::BTreeMap;
use std::time::Duration;

use streams_dsl::streams_core::runtime::KafkaStreams;
use streams_dsl::*;
use tests::{consume_until, produce, wait_until, Broker};

const ORDERS: &str = "fk-orders";
const CUSTOMERS: &str = "fk-customers";
const OUTPUT: &str = "fk-orders-with-customers";

/// An order's value: `"<customer>|<item>"`, or `"-|<item>"` without customer.
fn customer_of(order: &str) -> Option<String> {
    let (c, _) = order.split_once('|')?;
    (c != "-").then(|| c.to_string())
}

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let orders = b.table(
        ORDERS,
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::new(),
    );
    let customers = b.table(
        CUSTOMERS,
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::new(),
    );
    orders
        .join_foreign_key(
            &customers,
            |o: &String| customer_of(o),
            |o, c| format!("{o} for {c}"),
            Materialized::as_store("orders-with-customers"),
        )
        .to_stream()
        .to(OUTPUT, Produced::new());
    orders.left_join_foreign_key(
        &customers,
        |o: &String| customer_of(o),
        |o, c: Option<&String>| format!("{o} for {}", c.map_or("nobody", String::as_str)),
        Materialized::as_store("orders-any-customer").in_memory(),
    );
    b.build().unwrap()
}

/// A small deterministic generator (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

type Rows = Vec<(Vec<u8>, Option<Vec<u8>>)>;

#[test]
fn foreign_key_joins_on_the_embedded_broker() {
    let broker = Broker::embedded();
    broker.create_topic(ORDERS, 2);
    broker.create_topic(CUSTOMERS, 3);
    broker.create_topic(OUTPUT, 2);
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(topology(), broker.config("fk-join", dir.path())).unwrap();
    streams.start().unwrap();

    let mut rng = Lcg(42);
    let mut orders: BTreeMap<String, String> = BTreeMap::new();
    let mut customers: BTreeMap<String, String> = BTreeMap::new();
    // Three rounds, each writing both topics, so later rounds change rows the join already holds.
    for round in 0..3 {
        let (mut order_rows, mut customer_rows): (Rows, Rows) = (Vec::new(), Vec::new());
        for i in 0..150 {
            if rng.next(3) == 0 {
                let key = format!("customer-{}", rng.next(8));
                if rng.next(5) == 0 {
                    customers.remove(&key);
                    customer_rows.push((key.into_bytes(), None));
                } else {
                    let name = format!("name-{round}-{i}");
                    customers.insert(key.clone(), name.clone());
                    customer_rows.push((key.into_bytes(), Some(name.into_bytes())));
                }
            } else {
                let key = format!("order-{}", rng.next(20));
                if rng.next(6) == 0 {
                    orders.remove(&key);
                    order_rows.push((key.into_bytes(), None));
                } else {
                    let customer = match rng.next(13) {
                        0 => "-".to_string(),
                        c => format!("customer-{}", c - 1), // customer-8 to 11 never exist
                    };
                    let value = format!("{customer}|item-{round}-{i}");
                    orders.insert(key.clone(), value.clone());
                    order_rows.push((key.into_bytes(), Some(value.into_bytes())));
                }
            }
        }
        produce(&broker.bootstrap(), ORDERS, &order_rows);
        produce(&broker.bootstrap(), CUSTOMERS, &customer_rows);
    }

    let inner: BTreeMap<String, String> = orders
        .iter()
        .filter_map(|(k, o)| {
            let c = customers.get(&customer_of(o)?)?;
            Some((k.clone(), format!("{o} for {c}")))
        })
        .collect();
    let left: BTreeMap<String, String> = orders
        .iter()
        .map(|(k, o)| {
            let c = customer_of(o).and_then(|c| customers.get(&c));
            (
                k.clone(),
                format!("{o} for {}", c.map_or("nobody", String::as_str)),
            )
        })
        .collect();
    assert!(
        !inner.is_empty() && inner.len() < left.len(),
        "the data should have matched and unmatched orders: {} of {}",
        inner.len(),
        left.len()
    );

    for (store, expected) in [
        ("orders-with-customers", &inner),
        ("orders-any-customer", &left),
    ] {
        wait_until(store, Duration::from_secs(90), || {
            streams
                .store::<String, String>(store)
                .and_then(|s| s.all())
                .is_ok_and(|all| all.into_iter().collect::<BTreeMap<_, _>>() == *expected)
        });
    }
    let last_values = |records: &[(Vec<u8>, Option<Vec<u8>>)]| {
        let mut m = BTreeMap::new();
        for (k, v) in records {
            let k = String::from_utf8(k.clone()).unwrap();
            match v {
                Some(v) => m.insert(k, String::from_utf8(v.clone()).unwrap()),
                None => m.remove(&k),
            };
        }
        m
    };
    let out = consume_until(
        &broker.bootstrap(),
        OUTPUT,
        Duration::from_secs(60),
        |records| last_values(records) == inner,
    );
    assert_eq!(last_values(&out), inner);
    assert!(streams.close(Duration::from_secs(30)));
}
