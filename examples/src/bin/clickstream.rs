//! Use case 4, clickstream analytics: simulated users browse a small site for a few seconds; the application
//! counts views per page in 1-minute windows, and this program queries the current minute's counts live, once a
//! second, while the views arrive.
//!
//! `cargo run -p examples --bin clickstream -- --help` lists the flags.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use examples::cli::{init_logging, state_dir, Cluster, ConnectionArgs};
use examples::clickstream::{
    topology, window_counts, window_start, PageView, COUNTS, FINAL_COUNTS, PAGE_VIEWS,
};
use streams_dsl::streams_core::runtime::{KafkaStreams, State};
use streams_dsl::StreamsError;

const PAGES: [&str; 5] = ["/", "/pricing", "/docs", "/blog", "/signup"];

/// Clickstream analytics: page views counted per page in 1-minute windows, the current minute queried live.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// How long simulated users browse.
    #[arg(long, default_value_t = 6)]
    seconds: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() -> Result<(), StreamsError> {
    let cli = Cli::parse();
    init_logging();
    let seconds = cli.seconds;
    let cluster = Cluster::from_args(
        &cli.connection,
        &[(PAGE_VIEWS, 2), (COUNTS, 2), (FINAL_COUNTS, 2)],
    )?;
    let state = state_dir()?;
    let streams = KafkaStreams::new(topology()?, cluster.config("clickstream", state.path())?)?;
    streams.start()?;
    if !streams.wait_for_state(State::Running, Duration::from_secs(60)) {
        return Err(StreamsError::processor(
            "the application did not start within 60 s",
        ));
    }

    // Views produced so far in each minute, to show next to what the application reports.
    let mut sent: BTreeMap<(i64, String), i64> = BTreeMap::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let mut batch = Vec::new();
        for _ in 0..20 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // A skewed choice: the home page is viewed most, sign-up least.
            let page = PAGES[match (x >> 33) % 16 {
                0..=6 => 0,
                7..=10 => 1,
                11..=13 => 2,
                14 => 3,
                _ => 4,
            }];
            let user = format!("user-{}", (x >> 20) % 50);
            let ts = now_ms();
            *sent
                .entry((window_start(ts), page.to_string()))
                .or_default() += 1;
            let view = serde_json::to_vec(&PageView {
                user: user.clone(),
                page: page.to_string(),
            })
            .map_err(|e| StreamsError::processor(e.to_string()))?;
            batch.push((Some(user.into_bytes()), Some(view), Some(ts)));
        }
        cluster.produce_at(PAGE_VIEWS, &batch)?;
        std::thread::sleep(Duration::from_secs(1));
        let now = now_ms();
        match window_counts(&streams, now) {
            Ok(counts) => println!(
                "minute starting {}: {}",
                window_start(now),
                serde_json::to_string(&counts).unwrap_or_default()
            ),
            Err(e) => println!("not queryable yet: {e}"),
        }
    }
    // Let the last views through, then show the application's counts beside what was sent.
    let now = now_ms();
    let expected: BTreeMap<String, i64> = sent
        .iter()
        .filter(|((w, _), _)| *w == window_start(now))
        .map(|((_, p), n)| (p.clone(), *n))
        .collect();
    let t0 = Instant::now();
    loop {
        let counts = window_counts(&streams, now).unwrap_or_default();
        if counts == expected || t0.elapsed() > Duration::from_secs(30) {
            println!(
                "final for this minute: {}",
                serde_json::to_string(&counts).unwrap_or_default()
            );
            println!(
                "views sent:            {}",
                serde_json::to_string(&expected).unwrap_or_default()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    streams.close(Duration::from_secs(30));
    Ok(())
}
