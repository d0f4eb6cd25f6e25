//! Use case 1: which clients hold US shares right now.
//!
//! Positions arrive on the compacted topic `share-holders` (key = position id, value = JSON position, a `null`
//! value closes the position). The application keeps, in the queryable store `us-share-holders`, each client
//! holding at least one open NASDAQ position with the set of those positions' ids:
//! `select distinct(client) from open_positions where exchange = 'NASDAQ'`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use streams_dsl::{
    Consumed, Grouped, Materialized, Produced, Serdes, StoreKind, StreamsBuilder, StreamsError,
    Topology,
};

/// Input topic.
pub const POSITIONS_TOPIC: &str = "share-holders";
/// Queryable store: client -> ids of its open NASDAQ positions.
pub const STORE: &str = "us-share-holders";

/// A position as it arrives on the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Position id (also the record key).
    pub id: String,
    /// Client holding it.
    pub client: String,
    /// Instrument.
    pub ticker: String,
    /// Number of shares.
    pub amount: i64,
    /// Exchange the instrument trades on.
    pub exchange: String,
}

impl Position {
    /// A position.
    pub fn new(id: &str, client: &str, ticker: &str, amount: i64, exchange: &str) -> Self {
        Position {
            id: id.into(),
            client: client.into(),
            ticker: ticker.into(),
            amount,
            exchange: exchange.into(),
        }
    }
}

/// The sample positions of the design document.
pub fn sample_positions() -> Vec<Position> {
    vec![
        Position::new("1", "client1", "AAPL", 100, "NASDAQ"),
        Position::new("2", "client1", "VOD", 5, "LON"),
        Position::new("3", "client1", "FB", 33, "NASDAQ"),
        Position::new("4", "client2", "AAPL", 25, "NASDAQ"),
        Position::new("5", "client3", "VOD", 33, "LON"),
    ]
}

/// The topology: table -> filter(NASDAQ) -> group_by(client) -> aggregate(set of position ids).
pub fn topology(store_kind: StoreKind) -> Result<Topology, StreamsError> {
    topology_with_changes(store_kind, None)
}

/// The same topology, also writing every change of the `us-share-holders` table to `changes` (a deletion is a
/// tombstone), for consumers outside the application.
pub fn topology_with_changes(
    store_kind: StoreKind,
    changes: Option<&str>,
) -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    let holders = builder
        .table(
            POSITIONS_TOPIC,
            Consumed::with(Serdes::string(), Serdes::json::<Position>()),
            Materialized::as_store("open-positions").with_store_kind(store_kind),
        )
        .filter(|_, p| p.exchange == "NASDAQ")
        .group_by(
            |id, p| (p.client.clone(), id.clone()),
            Grouped::with(Serdes::string(), Serdes::string()),
        )
        .aggregate(
            BTreeSet::new,
            |_client, id, mut ids: BTreeSet<String>| {
                ids.insert(id.clone());
                ids
            },
            |_client, id, mut ids: BTreeSet<String>| {
                ids.remove(id);
                // A client without NASDAQ positions leaves the table.
                (!ids.is_empty()).then_some(ids)
            },
            Materialized::as_store(STORE)
                .with_store_kind(store_kind)
                .with_value_serde(Serdes::json::<BTreeSet<String>>()),
        );
    if let Some(topic) = changes {
        holders.to_stream().to(topic, Produced::new());
    }
    builder.build()
}
