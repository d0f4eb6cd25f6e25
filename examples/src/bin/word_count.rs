//! Use case 5, the classic: counts words of text lines. Starts the embedded broker (or uses
//! `--bootstrap-servers`), writes a few lines, runs the application and prints the counts.
//!
//! `cargo run -p examples --bin word_count`

use std::time::{Duration, Instant};

use examples::word_count::{topology, INPUT, OUTPUT, STORE};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use streams_dsl::streams_core::runtime::{EmbeddedKafka, KafkaStreams, StreamsConfig};
use streams_dsl::StreamsError;

const LINES: [&str; 4] = [
    "all streams flow into the sea",
    "yet the sea is not full",
    "the streams return to the place they came from",
    "and flow again",
];

fn main() -> Result<(), StreamsError> {
    let args: Vec<String> = std::env::args().collect();
    let external = args
        .iter()
        .position(|a| a == "--bootstrap-servers")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let embedded = match &external {
        Some(_) => None,
        None => {
            let k = EmbeddedKafka::start()?;
            k.create_topic(INPUT, 2)?;
            k.create_topic(OUTPUT, 2)?;
            Some(k)
        }
    };
    let bootstrap = match (&external, &embedded) {
        (Some(b), _) => b.clone(),
        (None, Some(k)) => k.bootstrap_servers().to_string(),
        (None, None) => return Err(StreamsError::processor("no broker to connect to")),
    };
    let state = tempfile::tempdir().map_err(|source| StreamsError::Io {
        path: "temp dir".into(),
        source,
    })?;
    let mut config = StreamsConfig::new("word-count", bootstrap.as_str());
    config.set("commit.interval.ms", "500")?;
    config.set("state.dir", &state.path().display().to_string())?;
    let streams = KafkaStreams::new(
        topology()?,
        (config, embedded.as_ref().map(EmbeddedKafka::admin)),
    )?;
    streams.start()?;

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .map_err(|e| StreamsError::processor(format!("producer: {e}")))?;
    for line in LINES {
        let r: BaseRecord<'_, (), str> = BaseRecord::to(INPUT).payload(line);
        producer
            .send(r)
            .map_err(|(e, _)| StreamsError::processor(format!("send: {e}")))?;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| StreamsError::processor(format!("flush: {e}")))?;

    let words: usize = LINES.iter().map(|l| l.split_whitespace().count()).sum();
    let t0 = Instant::now();
    let counts = loop {
        let counts = streams
            .store::<String, i64>(STORE)
            .and_then(|s| s.all())
            .unwrap_or_default();
        if counts.iter().map(|(_, n)| *n as usize).sum::<usize>() == words
            || t0.elapsed() > Duration::from_secs(60)
        {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for (word, n) in counts {
        println!("{word:>8} {n}");
    }
    streams.close(Duration::from_secs(30));
    Ok(())
}
