//! Foreign-key table-table joins through the test driver: random inserts, updates (foreign-key changes among
//! them) and deletes on both tables, partitioned differently, checked after every step against a plain
//! computation of the join over the two tables' current rows.

use std::collections::BTreeMap;

use proptest::prelude::*;
use streams_dsl::streams_core::RawRecord;
use streams_dsl::*;

/// An order: `"<customer>|<payload>"`, or `"-|<payload>"` for an order without customer.
fn customer_of(order: &str) -> Option<String> {
    order
        .split_once('|')
        .map(|(c, _)| c)
        .filter(|c| *c != "-")
        .map(str::to_string)
}

fn inner_joiner(order: &String, credit: &i64) -> String {
    format!("{order}+{credit}")
}

fn left_joiner(order: &String, credit: Option<&i64>) -> String {
    format!("{order}+{credit:?}")
}

/// The right rows the third join sees: customers with a credit not divisible by 3.
fn keep_customer(credit: &i64) -> bool {
    credit % 3 != 0
}

/// The left rows the fourth join sees: orders whose payload is not `p3`.
fn keep_order(order: &str) -> bool {
    !order.ends_with("|p3")
}

/// Orders joined with customers four ways: inner, left, inner from filtered orders, and left against filtered
/// customers.
fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let orders = b.table(
        "orders",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::new().in_memory(),
    );
    let customers = b.table(
        "customers",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::new().in_memory(),
    );
    orders
        .join_foreign_key(
            &customers,
            |o: &String| customer_of(o),
            inner_joiner,
            Materialized::as_store("inner").in_memory(),
        )
        .to_stream()
        .to("inner-out", Produced::new());
    orders
        .left_join_foreign_key(
            &customers,
            |o: &String| customer_of(o),
            left_joiner,
            Materialized::as_store("left").in_memory(),
        )
        .to_stream()
        .to("left-out", Produced::new());
    orders.filter(|_, o| keep_order(o)).join_foreign_key(
        &customers,
        |o: &String| customer_of(o),
        inner_joiner,
        Materialized::as_store("inner-filtered-orders").in_memory(),
    );
    let kept = customers.filter(|_, credit| keep_customer(credit));
    orders.left_join_foreign_key(
        &kept,
        |o: &String| customer_of(o),
        left_joiner,
        Materialized::as_store("left-filtered"),
    );
    b.build().unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    /// Order `n`: new value (customer index or none, payload) or deletion.
    Order(u8, Option<(Option<u8>, u8)>),
    /// Customer `n`: new credit or deletion.
    Customer(u8, Option<i64>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8, proptest::option::weighted(0.8, (proptest::option::weighted(0.85, 0u8..5), 0u8..4)))
            .prop_map(|(k, v)| Op::Order(k, v)),
        2 => (0u8..5, proptest::option::weighted(0.75, -20i64..20)).prop_map(|(k, v)| Op::Customer(k, v)),
    ]
}

/// The two tables as plain maps, and the joins computed from them.
#[derive(Default)]
struct Reference {
    orders: BTreeMap<String, String>,
    customers: BTreeMap<String, i64>,
}

impl Reference {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Order(k, Some(v)) => {
                self.orders.insert(order_key(*k), order_value(v));
            }
            Op::Order(k, None) => {
                self.orders.remove(&order_key(*k));
            }
            Op::Customer(k, Some(c)) => {
                self.customers.insert(customer_key(*k), *c);
            }
            Op::Customer(k, None) => {
                self.customers.remove(&customer_key(*k));
            }
        }
    }

    fn inner(&self) -> BTreeMap<String, String> {
        self.inner_of(|_| true)
    }

    fn inner_of(&self, keep: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
        self.orders
            .iter()
            .filter(|(_, o)| keep(o))
            .filter_map(|(k, o)| {
                let c = self.customers.get(&customer_of(o)?)?;
                Some((k.clone(), inner_joiner(o, c)))
            })
            .collect()
    }

    fn left(&self, keep: impl Fn(&i64) -> bool) -> BTreeMap<String, String> {
        self.orders
            .iter()
            .map(|(k, o)| {
                let c = customer_of(o)
                    .and_then(|c| self.customers.get(&c))
                    .filter(|c| keep(c));
                (k.clone(), left_joiner(o, c))
            })
            .collect()
    }
}

fn order_key(k: u8) -> String {
    format!("order-{k}")
}

fn customer_key(k: u8) -> String {
    format!("customer-{k}")
}

fn order_value((customer, payload): &(Option<u8>, u8)) -> String {
    match customer {
        Some(c) => format!("{}|p{payload}", customer_key(*c)),
        None => format!("-|p{payload}"),
    }
}

fn store_contents(d: &TopologyTestDriver, store: &str) -> BTreeMap<String, String> {
    d.key_value_store::<String, String>(store)
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect()
}

/// Applies the records written to an output topic since the last call: a value sets the key, a tombstone
/// removes it.
fn apply_output(d: &TopologyTestDriver, topic: &str, table: &mut BTreeMap<String, String>) {
    for (k, v) in d
        .output_topic(topic, Serdes::string(), Serdes::option(Serdes::string()))
        .read_key_values_to_vec()
        .unwrap()
    {
        match v {
            Some(v) => table.insert(k, v),
            None => table.remove(&k),
        };
    }
}

fn raw<K: 'static, V: 'static>(
    key: &K,
    value: Option<&V>,
    ks: &dyn Serde<K>,
    vs: &dyn Serde<V>,
    ts: i64,
) -> RawRecord {
    let mut k = Vec::new();
    ks.serialize(key, &mut k).unwrap();
    let value = value.map(|v| {
        let mut b = Vec::new();
        vs.serialize(v, &mut b).unwrap();
        b
    });
    RawRecord {
        key: Some(k),
        value,
        timestamp: ts,
        headers: Headers::new(),
        offset: -1,
    }
}

/// Pipes each batch as one poll of both topics (so a left row can change again before the right side answers
/// its previous subscription), then compares the join stores and output topics with the reference.
fn run(
    batches: &[Vec<Op>],
    order_partitions: i32,
    customer_partitions: i32,
) -> Result<(), TestCaseError> {
    let d = TopologyTestDriver::builder(topology())
        .partitions("orders", order_partitions)
        .partitions("customers", customer_partitions)
        .build()
        .unwrap();
    prop_assert_eq!(
        d.partitions_of(&d.resolve_topic("inner-subscription-registration-topic")),
        customer_partitions
    );
    prop_assert_eq!(
        d.partitions_of(&d.resolve_topic("inner-subscription-response-topic")),
        order_partitions
    );
    let mut reference = Reference::default();
    let (mut inner_out, mut left_out) = (BTreeMap::new(), BTreeMap::new());
    let mut ts = 0;
    for (step, batch) in batches.iter().enumerate() {
        let mut records = Vec::new();
        for op in batch {
            ts += 1;
            let record = match op {
                Op::Order(k, v) => (
                    "orders",
                    raw(
                        &order_key(*k),
                        v.as_ref().map(order_value).as_ref(),
                        &Serdes::string(),
                        &Serdes::string(),
                        ts,
                    ),
                ),
                Op::Customer(k, v) => (
                    "customers",
                    raw(
                        &customer_key(*k),
                        v.as_ref(),
                        &Serdes::string(),
                        &Serdes::i64(),
                        ts,
                    ),
                ),
            };
            records.push((record.0, None, record.1));
            reference.apply(op);
        }
        d.pipe_raw_batch(records).unwrap();
        let context = format!("after batch {step} ({batch:?})");
        prop_assert_eq!(
            store_contents(&d, "inner"),
            reference.inner(),
            "{}",
            &context
        );
        prop_assert_eq!(
            store_contents(&d, "left"),
            reference.left(|_| true),
            "{}",
            &context
        );
        prop_assert_eq!(
            store_contents(&d, "inner-filtered-orders"),
            reference.inner_of(keep_order),
            "{}",
            &context
        );
        prop_assert_eq!(
            store_contents(&d, "left-filtered"),
            reference.left(keep_customer),
            "{}",
            &context
        );
        apply_output(&d, "inner-out", &mut inner_out);
        apply_output(&d, "left-out", &mut left_out);
        prop_assert_eq!(&inner_out, &reference.inner(), "{}", &context);
        prop_assert_eq!(&left_out, &reference.left(|_| true), "{}", &context);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn joins_match_the_tables_after_every_step(
        batches in proptest::collection::vec(proptest::collection::vec(op(), 1..5), 1..25),
        order_partitions in 2i32..=4,
        shift in 1i32..=2,
    ) {
        // Never the same partition count on both sides.
        let customer_partitions = (order_partitions - 2 + shift) % 3 + 2;
        prop_assert_ne!(order_partitions, customer_partitions);
        run(&batches, order_partitions, customer_partitions)?;
    }
}

#[test]
fn internal_topics_and_stores_are_named_after_the_join() {
    let t = topology();
    let topics: Vec<String> = t.internal_topics().map(|t| t.name.clone()).collect();
    for name in ["inner", "left", "left-filtered"] {
        for suffix in [
            "subscription-registration-topic",
            "subscription-response-topic",
        ] {
            let topic = format!("{name}-{suffix}");
            assert!(topics.contains(&topic), "{topic} missing from {topics:?}");
        }
        for suffix in ["subscription-store", "left-values", "right-values"] {
            let store = format!("{name}-{suffix}");
            assert_eq!(
                t.stores().find(|(s, _)| *s == store),
                Some((store.as_str(), true)),
                "{store} should exist and be changelogged"
            );
        }
    }
}

#[test]
fn a_table_joins_itself_by_foreign_key() {
    // Employees: id -> "manager id|name"; each employee's manager's name.
    let b = StreamsBuilder::new();
    let employees = b.table(
        "employees",
        Consumed::with(Serdes::i64(), Serdes::string()),
        Materialized::new().in_memory(),
    );
    let manager_of = |e: &String| e.split_once('|').and_then(|(m, _)| m.parse::<i64>().ok());
    let name_of = |e: &String| {
        e.split_once('|')
            .map_or(String::new(), |(_, n)| n.to_string())
    };
    employees.left_join_foreign_key(
        &employees,
        manager_of,
        move |e, m: Option<&String>| {
            format!(
                "{} reports to {}",
                name_of(e),
                m.map_or("nobody".into(), name_of)
            )
        },
        Materialized::as_store("reports-to").in_memory(),
    );
    let d = TopologyTestDriver::builder(b.build().unwrap())
        .default_partitions(3)
        .build()
        .unwrap();
    let input = d.input_topic("employees", Serdes::i64(), Serdes::option(Serdes::string()));
    let mut rows: BTreeMap<i64, String> = BTreeMap::new();
    let mut x: u64 = 7;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % n
    };
    for step in 0..300 {
        let id = next(12) as i64;
        if next(5) == 0 {
            rows.remove(&id);
            input.pipe_input(id, None).unwrap();
        } else {
            let row = format!("{}|e{id}-{step}", next(14)); // managers 12 and 13 never exist
            rows.insert(id, row.clone());
            input.pipe_input(id, Some(row)).unwrap();
        }
        let expected: BTreeMap<i64, String> = rows
            .iter()
            .map(|(id, e)| {
                let m = manager_of(e).and_then(|m| rows.get(&m));
                (
                    *id,
                    format!(
                        "{} reports to {}",
                        name_of(e),
                        m.map_or("nobody".into(), name_of)
                    ),
                )
            })
            .collect();
        let got: BTreeMap<i64, String> = d
            .key_value_store::<i64, String>("reports-to")
            .unwrap()
            .all()
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(got, expected, "after step {step}");
    }
}

#[test]
fn tables_of_another_builder_are_refused() {
    let b1 = StreamsBuilder::new();
    let b2 = StreamsBuilder::new();
    let orders = b1.table::<String, String>("orders", Consumed::new(), Materialized::new());
    let customers = b2.table::<String, i64>("customers", Consumed::new(), Materialized::new());
    orders.join_foreign_key(
        &customers,
        |o: &String| customer_of(o),
        inner_joiner,
        Materialized::new(),
    );
    match b1.build() {
        Err(StreamsError::InvalidTopology(m)) => {
            assert!(m.contains("different StreamsBuilder"), "{m}")
        }
        other => panic!("expected an invalid topology, got {other:?}"),
    }
}

#[test]
fn a_result_without_serde_is_named() {
    #[derive(Clone, Debug)]
    struct Enriched;
    let b = StreamsBuilder::new();
    let orders = b.table::<String, String>("orders", Consumed::new(), Materialized::new());
    let customers = b.table::<String, i64>("customers", Consumed::new(), Materialized::new());
    orders.join_foreign_key(
        &customers,
        |o: &String| customer_of(o),
        |_, _| Enriched,
        Materialized::new(),
    );
    match b.build() {
        Err(e @ StreamsError::MissingSerde { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("KTable::join_foreign_key") && m.contains("Enriched"),
                "{m}"
            );
        }
        other => panic!("expected a missing serde, got {other:?}"),
    }
}
