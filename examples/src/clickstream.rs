//! Use case 4: clickstream analytics. Page views are counted per page in 1-minute tumbling windows (event time,
//! 5 s of grace for late views); the running counts are queryable live, every update goes to one topic and each
//! minute's final counts, once the minute has closed, to another.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use streams_dsl::streams_core::runtime::KafkaStreams;
use streams_dsl::{
    Consumed, Grouped, JsonSerde, Materialized, Produced, Serdes, StreamsBuilder, StreamsError,
    Suppressed, TimeWindows, Topology, Windowed,
};

/// Input topic: key = user id, value = a JSON [`PageView`]; the record timestamp is when the page was viewed.
pub const PAGE_VIEWS: &str = "page-views";
/// Output topic: `page@window-start` -> count, on every view.
pub const COUNTS: &str = "page-view-counts";
/// Output topic: `page@window-start` -> count, once per page and minute, when the minute has closed.
pub const FINAL_COUNTS: &str = "page-view-counts-final";
/// Queryable window store of the counts.
pub const STORE: &str = "page-views-per-minute";
/// The window size.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How late a view may arrive and still count.
pub const GRACE: Duration = Duration::from_secs(5);

/// A page view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageView {
    /// Who viewed it.
    pub user: String,
    /// The page's path.
    pub page: String,
}

/// `page@window-start`, the key of the output topics.
pub fn window_key(page: &str, window_start: i64) -> String {
    format!("{page}@{window_start}")
}

/// Page views -> per page and minute, counts (kept for an hour for queries), all updates and final results.
pub fn topology() -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    let counts = builder
        .stream(
            PAGE_VIEWS,
            Consumed::with(Serdes::string(), JsonSerde::<PageView>::default()),
        )
        .group_by(
            |_user, view| view.page.clone(),
            Grouped::with(Serdes::string(), JsonSerde::<PageView>::default()),
        )
        .windowed_by(TimeWindows::of_size_and_grace(WINDOW, GRACE))
        .count(Materialized::as_store(STORE).with_retention(Duration::from_secs(3600)));
    counts
        .to_stream()
        .map(|k, n| (window_key(&k.key, k.window.start), n.unwrap_or(0)))
        .to(COUNTS, Produced::with(Serdes::string(), Serdes::i64()));
    counts
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .map(|k, n| (window_key(&k.key, k.window.start), n.unwrap_or(0)))
        .to(
            FINAL_COUNTS,
            Produced::with(Serdes::string(), Serdes::i64()),
        );
    builder.build()
}

/// The start of the window `at_ms` falls in.
pub fn window_start(at_ms: i64) -> i64 {
    let size = WINDOW.as_millis() as i64;
    at_ms - at_ms.rem_euclid(size)
}

/// Views per page in the window containing `at_ms`, from this instance's store (a live query: the window may
/// still be filling).
pub fn window_counts(
    streams: &KafkaStreams,
    at_ms: i64,
) -> Result<BTreeMap<String, i64>, StreamsError> {
    let start = window_start(at_ms);
    let store = streams.store::<Windowed<String>, i64>(STORE)?;
    Ok(store
        .all()?
        .into_iter()
        .filter(|(k, _)| k.window.start == start)
        .map(|(k, n)| (k.key, n))
        .collect())
}
