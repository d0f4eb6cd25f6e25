//! Use case 5, the classic: counts words of text lines. Starts the embedded broker (or uses
//! `--bootstrap-servers`), writes a few lines, runs the application and prints the counts.
//!
//! `cargo run -p examples --bin word_count -- --help` lists the flags; `--exactly-once` runs it under
//! `processing.guarantee=exactly_once_v2`.

use std::time::{Duration, Instant};

use clap::Parser;
use examples::cli::{init_logging, state_dir, Cluster, ConnectionArgs};
use examples::word_count::{topology, INPUT, OUTPUT, STORE};
use streams_dsl::streams_core::runtime::KafkaStreams;
use streams_dsl::StreamsError;

const LINES: [&str; 4] = [
    "all streams flow into the sea",
    "yet the sea is not full",
    "the streams return to the place they came from",
    "and flow again",
];

/// Word count: counts the words of a few lines of text and prints the counts.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
}

fn main() -> Result<(), StreamsError> {
    let cli = Cli::parse();
    init_logging();
    let cluster = Cluster::from_args(&cli.connection, &[(INPUT, 2), (OUTPUT, 2)])?;
    println!("processing.guarantee={}", cluster.guarantee());
    let state = state_dir()?;
    let streams = KafkaStreams::new(topology()?, cluster.config("word-count", state.path())?)?;
    streams.start()?;
    let lines: Vec<_> = LINES
        .iter()
        .map(|l| (None, Some(l.as_bytes().to_vec())))
        .collect();
    cluster.produce(INPUT, &lines)?;

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
