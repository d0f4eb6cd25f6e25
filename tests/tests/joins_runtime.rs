//! A stream-table join through a broker: orders keyed by order id are re-keyed by customer (so they go through a
//! repartition topic sized like the customers topic) and left-joined with the customers table, in two phases
//! with table updates and deletions in between. Output is checked against a plain computation.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use streams_dsl::streams_core::runtime::{KafkaStreams, State};
use streams_dsl::*;
use tests::{consume_until, produce, wait_until, Broker};

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let customers = b.table(
        "customers",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_store("customers-store"),
    );
    // order id -> "customer:amount"
    b.stream("orders", Consumed::with(Serdes::string(), Serdes::string()))
        .map(|_order, v: String| {
            let (customer, amount) = v.split_once(':').unwrap_or(("", "0"));
            (customer.to_string(), amount.to_string())
        })
        .left_join(
            &customers,
            |amount, name| format!("{amount}@{}", name.map_or("?", |n| n.as_str())),
            Joined::with(Serdes::string(), Serdes::string(), Serdes::string())
                .with_name("orders-by-customer"),
        )
        .to("enriched-orders", Produced::new());
    b.build().unwrap()
}

fn orders(from: usize, n: usize) -> Vec<(String, String)> {
    (from..from + n)
        .map(|i| (format!("o{i}"), format!("c{}:{}", (i * 7) % 13, i * 3)))
        .collect()
}

/// Each order joined with `customers` as it is when the order is processed.
fn reference(
    orders: &[(String, String)],
    customers: &HashMap<String, String>,
) -> Vec<(String, String)> {
    orders
        .iter()
        .map(|(_, v)| {
            let (c, amount) = v.split_once(':').unwrap();
            let name = customers.get(c).map_or("?", String::as_str);
            (c.to_string(), format!("{amount}@{name}"))
        })
        .collect()
}

fn sorted_per_key(records: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in records {
        m.entry(k.clone()).or_default().push(v.clone());
    }
    m.values_mut().for_each(|v| v.sort());
    m
}

fn raw(records: &[(String, Option<String>)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    records
        .iter()
        .map(|(k, v)| {
            (
                k.as_bytes().to_vec(),
                v.as_ref().map(|v| v.as_bytes().to_vec()),
            )
        })
        .collect()
}

/// Produces table updates and waits until the instance's store shows `expected`.
fn update_customers(
    broker: &Broker,
    streams: &KafkaStreams,
    updates: &[(String, Option<String>)],
    expected: &HashMap<String, String>,
) {
    produce(&broker.bootstrap(), "customers", &raw(updates));
    wait_until("the customers table", Duration::from_secs(60), || {
        let Ok(store) = streams.store::<String, String>("customers-store") else {
            return false;
        };
        (0..13).all(|c| {
            let k = format!("c{c}");
            store.get(&k).ok() == Some(expected.get(&k).cloned())
        })
    });
}

fn run(broker: Broker) {
    broker.create_topic("customers", 3);
    broker.create_topic("orders", 4);
    broker.create_topic("enriched-orders", 3);
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(topology(), broker.config("order-join", dir.path())).unwrap();
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "state {:?}, errors {:?}",
        streams.state(),
        streams.errors()
    );

    // Phase 1: customers c0..c9 exist (c10..c12 do not).
    let mut customers: HashMap<String, String> = HashMap::new();
    let mut updates = Vec::new();
    for c in 0..10 {
        let (k, v) = (format!("c{c}"), format!("name{c}"));
        customers.insert(k.clone(), v.clone());
        updates.push((k, Some(v)));
    }
    update_customers(&broker, &streams, &updates, &customers);
    let first = orders(0, 150);
    let mut expected = reference(&first, &customers);
    produce(
        &broker.bootstrap(),
        "orders",
        &raw(&first
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect::<Vec<_>>()),
    );
    let wait_for = |n: usize| {
        consume_until(
            &broker.bootstrap(),
            "enriched-orders",
            Duration::from_secs(60),
            |r| r.len() >= n,
        )
    };
    assert_eq!(wait_for(expected.len()).len(), expected.len());

    // Phase 2: some customers renamed, some deleted, one added.
    let mut updates = Vec::new();
    for c in [1, 4, 7] {
        let (k, v) = (format!("c{c}"), format!("renamed{c}"));
        customers.insert(k.clone(), v.clone());
        updates.push((k, Some(v)));
    }
    for c in [2, 5] {
        customers.remove(&format!("c{c}"));
        updates.push((format!("c{c}"), None));
    }
    customers.insert("c11".into(), "newcomer".into());
    updates.push(("c11".into(), Some("newcomer".into())));
    update_customers(&broker, &streams, &updates, &customers);
    let second = orders(150, 150);
    expected.extend(reference(&second, &customers));
    produce(
        &broker.bootstrap(),
        "orders",
        &raw(&second
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect::<Vec<_>>()),
    );
    let got: Vec<(String, String)> = wait_for(expected.len())
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k).unwrap(),
                String::from_utf8(v.unwrap()).unwrap(),
            )
        })
        .collect();
    assert!(streams.close(Duration::from_secs(30)));
    assert_eq!(got.len(), expected.len());
    assert_eq!(sorted_per_key(&got), sorted_per_key(&expected));
}

#[test]
fn stream_table_join_on_the_embedded_broker() {
    run(Broker::embedded());
}

#[test]
fn start_fails_when_joined_topics_are_not_co_partitioned() {
    let broker = Broker::embedded();
    broker.create_topic("customers", 3);
    broker.create_topic("orders", 4);
    let b = StreamsBuilder::new();
    let customers = b.table(
        "customers",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::new(),
    );
    b.stream("orders", Consumed::with(Serdes::string(), Serdes::string()))
        .join(&customers, |o, c| format!("{o}{c}"), Joined::new())
        .to("out", Produced::new());
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(
        b.build().unwrap(),
        broker.config("not-copartitioned", dir.path()),
    )
    .unwrap();
    let err = streams.start().expect_err("partition counts differ");
    let message = err.to_string();
    assert!(
        matches!(err, StreamsError::CopartitionMismatch { .. })
            && message.contains("orders (4 partitions)")
            && message.contains("customers (3 partitions)"),
        "{message}"
    );
}

/// Finding: a task did not synchronise its partitions by timestamp (`max.task.idle.ms`): records of one input
/// were processed while another input still had earlier records on the broker, not yet fetched. Kafka Streams
/// (KIP-695, default `max.task.idle.ms = 0`) waits for records the broker holds: here the customer (time 1 s)
/// is in the table before any order (time 2 s and later) is joined, so every order finds its customer.
#[test]
fn finding_a_join_waits_for_earlier_records_the_broker_holds() {
    let broker = Broker::embedded();
    broker.create_topic("idle-customers", 1);
    broker.create_topic("idle-orders", 1);
    broker.create_topic("idle-enriched", 1);
    let b = StreamsBuilder::new();
    let customers = b.table(
        "idle-customers",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_store("idle-customers-store"),
    );
    b.stream(
        "idle-orders",
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .left_join(
        &customers,
        |amount, name| format!("{amount}@{}", name.map_or("?", |n| n.as_str())),
        Joined::with(Serdes::string(), Serdes::string(), Serdes::string()),
    )
    .to("idle-enriched", Produced::new());
    let topology = b.build().unwrap();

    // Orders, each later than the customer.
    let n = 20_000;
    let orders: Vec<tests::TimedRecord> = (0..n)
        .map(|i| {
            (
                b"c1".to_vec(),
                Some(format!("{i}").into_bytes()),
                Some(2_000 + i as i64),
            )
        })
        .collect();
    tests::produce_at(&broker.bootstrap(), "idle-orders", &orders);
    // The customers topic holds a long history before the customer the orders need: it takes the consumer
    // several fetches to reach it, while the orders are all fetched at once.
    let mut history: Vec<tests::TimedRecord> = (0..300_000)
        .map(|i| {
            (
                format!("f{i}").into_bytes(),
                Some(b"filler-customer-name".to_vec()),
                Some(i as i64 / 300),
            )
        })
        .collect();
    history.push((b"c1".to_vec(), Some(b"Ada".to_vec()), Some(1_000)));
    tests::produce_at(&broker.bootstrap(), "idle-customers", &history);

    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(topology, broker.config("idle", dir.path())).unwrap();
    streams.start().unwrap();
    let out = consume_until(
        &broker.bootstrap(),
        "idle-enriched",
        Duration::from_secs(60),
        {
            let mut distinct = std::collections::HashSet::new();
            let mut read = 0;
            move |out| {
                for (_, v) in &out[read..] {
                    distinct.insert(v.clone());
                }
                read = out.len();
                distinct.len() >= n
            }
        },
    );
    let got: Vec<String> = out
        .iter()
        .map(|(_, v)| String::from_utf8(v.clone().unwrap()).unwrap())
        .collect();
    let expected: Vec<String> = (0..n).map(|i| format!("{i}@Ada")).collect();
    let unmatched = got.iter().filter(|v| v.ends_with("@?")).count();
    assert_eq!(
        unmatched, 0,
        "orders joined before their earlier customer was processed"
    );
    // At least once: a rebalance before the first commit may repeat a prefix; every order comes out, in order,
    // and nothing else does.
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<&String> = got.iter().filter(|v| seen.insert(v.as_str())).collect();
    assert_eq!(firsts, expected.iter().collect::<Vec<_>>());
    assert!(streams.close(Duration::from_secs(30)));
}
