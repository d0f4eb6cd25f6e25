//! Use case 3: one checkout event, several independent consumers. Shipping, email and inventory are separate
//! applications (each its own application id, so each reads every checkout), and none knows the others: a
//! fourth (fraud screening) is added by starting it, with no change to the rest.

use serde::{Deserialize, Serialize};
use streams_dsl::{
    Consumed, Grouped, Materialized, Produced, Serdes, StreamsBuilder, StreamsError, Topology,
};

/// Where checkouts are published.
pub const CHECKOUTS: &str = "checkouts";
/// Shipping's output.
pub const SHIPMENTS: &str = "shipments";
/// Email's output.
pub const EMAILS: &str = "emails";
/// Inventory's output: units reserved per SKU, updated on each checkout.
pub const RESERVED: &str = "inventory-reserved";
/// The fourth consumer's output.
pub const FRAUD_ALERTS: &str = "fraud-alerts";

/// A line of a checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Stock-keeping unit.
    pub sku: String,
    /// Units.
    pub quantity: i64,
}

/// A checkout event (key: order id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    /// Order id.
    pub order_id: String,
    /// Customer's email address.
    pub email: String,
    /// Delivery address.
    pub address: String,
    /// Lines.
    pub items: Vec<Item>,
    /// Total in cents.
    pub total_cents: i64,
}

/// A shipment request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// Order id.
    pub order_id: String,
    /// Where to.
    pub address: String,
    /// Units in the parcel.
    pub units: i64,
}

/// An email to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
}

fn checkouts(b: &StreamsBuilder) -> streams_dsl::KStream<String, Checkout> {
    b.stream(
        CHECKOUTS,
        Consumed::with(Serdes::string(), Serdes::json::<Checkout>()),
    )
}

/// Shipping: one shipment request per checkout.
pub fn shipping() -> Result<Topology, StreamsError> {
    let b = StreamsBuilder::new();
    checkouts(&b)
        .map_values(|c| Shipment {
            units: c.items.iter().map(|i| i.quantity).sum(),
            order_id: c.order_id,
            address: c.address,
        })
        .to(
            SHIPMENTS,
            Produced::with(Serdes::string(), Serdes::json::<Shipment>()),
        );
    b.build()
}

/// Email: one confirmation per checkout, keyed by recipient.
pub fn email() -> Result<Topology, StreamsError> {
    let b = StreamsBuilder::new();
    checkouts(&b)
        .map(|order, c| {
            let subject = format!("Your order {order} is confirmed");
            (
                c.email.clone(),
                Email {
                    to: c.email,
                    subject,
                },
            )
        })
        .to(
            EMAILS,
            Produced::with(Serdes::string(), Serdes::json::<Email>()),
        );
    b.build()
}

/// Inventory: units reserved per SKU over all checkouts.
pub fn inventory() -> Result<Topology, StreamsError> {
    let b = StreamsBuilder::new();
    checkouts(&b)
        .flat_map(|_, c| {
            c.items
                .into_iter()
                .map(|i| (i.sku, i.quantity))
                .collect::<Vec<_>>()
        })
        .group_by_key(Grouped::with(Serdes::string(), Serdes::i64()))
        .reduce(|a, b| a + b, Materialized::as_store("reserved-per-sku"))
        .to_stream()
        .to(RESERVED, Produced::new());
    b.build()
}

/// The fourth consumer, added later: flags checkouts over 1000.00.
pub fn fraud_screening() -> Result<Topology, StreamsError> {
    let b = StreamsBuilder::new();
    checkouts(&b)
        .filter(|_, c| c.total_cents > 100_000)
        .map_values(|c| c.total_cents)
        .to(FRAUD_ALERTS, Produced::new());
    b.build()
}

/// Sample checkouts.
pub fn sample_checkouts(n: usize) -> Vec<Checkout> {
    let skus = ["mug", "shirt", "poster", "sticker"];
    (0..n)
        .map(|i| Checkout {
            order_id: format!("order-{i}"),
            email: format!("customer{}@example.com", i % 7),
            address: format!("{} Main Street", i + 1),
            items: (0..(i % 3 + 1))
                .map(|j| Item {
                    sku: skus[(i + j) % skus.len()].to_string(),
                    quantity: (j as i64) + 1,
                })
                .collect(),
            total_cents: ((i as i64) * 37_777) % 250_000,
        })
        .collect()
}
