//! The stream threads' counters as a test reads them: a `metrics` recorder installed once per process, and
//! each counter summed over the threads of one application.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// The recorder of this process (a test binary, or a child process it runs), installed at the first call.
pub fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this process");
        snapshotter
    })
}

/// Counter `name` summed over the stream threads of application `app` (labelled `thread` =
/// `<app>-StreamThread-<n>`); 0 when never incremented.
pub fn counter(name: &str, app: &str) -> u64 {
    let thread = format!("{app}-StreamThread-");
    // A snapshot takes the counters' values (and zeroes them): they are added up here, under one lock.
    type Totals = BTreeMap<(String, Vec<(String, String)>), u64>;
    static TOTALS: Mutex<Totals> = Mutex::new(BTreeMap::new());
    let mut totals = TOTALS.lock().unwrap();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        if let DebugValue::Counter(c) = value {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            *totals
                .entry((key.key().name().to_string(), labels))
                .or_default() += c;
        }
    }
    totals
        .iter()
        .filter(|((n, labels), _)| {
            n == name
                && labels
                    .iter()
                    .any(|(k, v)| k == "thread" && v.starts_with(&thread))
        })
        .map(|(_, c)| c)
        .sum()
}
