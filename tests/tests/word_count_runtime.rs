//! Use case 5 through a broker: the word-count example's counts equal a HashMap count of the words written.

use std::collections::BTreeMap;
use std::time::Duration;

use examples::word_count::{topology, INPUT, OUTPUT, STORE};
use streams_dsl::streams_core::runtime::KafkaStreams;
use tests::{produce, wait_until, Broker};

#[test]
fn word_count_on_the_embedded_broker() {
    let broker = Broker::embedded();
    broker.create_topic(INPUT, 3);
    broker.create_topic(OUTPUT, 3);
    let dir = tempfile::tempdir().unwrap();
    let streams =
        KafkaStreams::new(topology().unwrap(), broker.config("word-count", dir.path())).unwrap();
    streams.start().unwrap();
    let lines: Vec<String> = (0..200)
        .map(|i| format!("Word{} word{} WORD{}, the end.", i % 7, i % 11, i % 3))
        .collect();
    let raw: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("{i}").into_bytes(), Some(l.clone().into_bytes())))
        .collect();
    produce(&broker.bootstrap(), INPUT, &raw);
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for l in &lines {
        for w in l
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *expected.entry(w.to_lowercase()).or_default() += 1;
        }
    }
    wait_until("the counts", Duration::from_secs(60), || {
        streams
            .store::<String, i64>(STORE)
            .and_then(|s| s.all())
            .map(|all| all.into_iter().collect::<BTreeMap<_, _>>() == expected)
            .unwrap_or(false)
    });
    assert!(streams.close(Duration::from_secs(30)));
}
