//! Use case 5: the classic word count.

use streams_dsl::{
    Consumed, Grouped, Materialized, Produced, Serdes, StreamsBuilder, StreamsError, Topology,
};

/// Input topic of text lines (null keys).
pub const INPUT: &str = "text-lines";
/// Output topic: word -> count, updated on each occurrence.
pub const OUTPUT: &str = "word-counts";
/// Queryable store of the counts.
pub const STORE: &str = "word-counts-store";

/// Splits lines into lower-case words and counts each word.
pub fn topology() -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    builder
        .stream(INPUT, Consumed::with(Serdes::unit(), Serdes::string()))
        .flat_map_values(|_, line: String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(|_, word| word.clone(), Grouped::new())
        .count(Materialized::as_store(STORE))
        .to_stream()
        .to(OUTPUT, Produced::new());
    builder.build()
}
