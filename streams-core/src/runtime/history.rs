//! A short history of an instance's throughput and commit latency: one sample per 10 seconds, the last
//! 5 minutes kept, for the operator page and anyone polling [`crate::runtime::KafkaStreams::metrics_history`].
//!
//! Stream threads add their processed-record counts once per loop round (an atomic add) and each commit's
//! latency (a short lock per commit); windows close lazily, when a thread or a reader notices the current one is
//! over.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The length of one sample.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// How many completed samples are kept (5 minutes).
pub const SAMPLES_KEPT: usize = 30;

/// Throughput and commits of an instance over one window of time.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricsSample {
    /// Start of the window, in milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// Length of the window in milliseconds: [`SAMPLE_INTERVAL`], or less for the window in progress.
    pub duration_ms: u64,
    /// Records processed by every thread during the window.
    pub records_processed: u64,
    /// Commits completed during the window.
    pub commits: u64,
    /// Mean commit latency in milliseconds (0 without commits).
    pub commit_latency_avg_ms: f64,
    /// Longest commit in milliseconds (0 without commits).
    pub commit_latency_max_ms: f64,
}

impl MetricsSample {
    /// Records processed per second over the window.
    pub fn records_per_second(&self) -> f64 {
        if self.duration_ms == 0 {
            0.0
        } else {
            self.records_processed as f64 * 1000.0 / self.duration_ms as f64
        }
    }
}

#[derive(Debug)]
struct Window {
    start_ms: i64,
    commits: u64,
    latency_total_ms: f64,
    latency_max_ms: f64,
}

impl Window {
    fn new(start_ms: i64) -> Self {
        Window {
            start_ms,
            commits: 0,
            latency_total_ms: 0.0,
            latency_max_ms: 0.0,
        }
    }

    fn sample(&self, duration_ms: u64, records_processed: u64) -> MetricsSample {
        MetricsSample {
            start_ms: self.start_ms,
            duration_ms,
            records_processed,
            commits: self.commits,
            commit_latency_avg_ms: if self.commits == 0 {
                0.0
            } else {
                self.latency_total_ms / self.commits as f64
            },
            commit_latency_max_ms: self.latency_max_ms,
        }
    }
}

#[derive(Debug)]
struct Samples {
    done: VecDeque<MetricsSample>,
    current: Window,
}

/// The ring buffer of samples of one instance.
#[derive(Debug)]
pub(crate) struct MetricsHistory {
    interval_ms: i64,
    keep: usize,
    /// Records processed in the current window.
    processed: AtomicU64,
    samples: Mutex<Samples>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Default for MetricsHistory {
    fn default() -> Self {
        // Windows start on multiples of the interval, so samples of several instances line up.
        let now = now_ms();
        let interval = SAMPLE_INTERVAL.as_millis() as i64;
        MetricsHistory::new(SAMPLE_INTERVAL, SAMPLES_KEPT, now - now % interval)
    }
}

impl MetricsHistory {
    /// A history of windows of `interval`, keeping `keep` completed ones, whose first window starts at
    /// `start_ms`.
    pub fn new(interval: Duration, keep: usize, start_ms: i64) -> Self {
        MetricsHistory {
            interval_ms: (interval.as_millis() as i64).max(1),
            keep: keep.max(1),
            processed: AtomicU64::new(0),
            samples: Mutex::new(Samples {
                done: VecDeque::new(),
                current: Window::new(start_ms),
            }),
        }
    }

    /// Counts `n` more records processed.
    pub fn add_processed(&self, n: u64) {
        if n > 0 {
            self.processed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts a commit that took `latency`.
    pub fn record_commit(&self, latency: Duration) {
        self.record_commit_at(latency, now_ms());
    }

    pub(crate) fn record_commit_at(&self, latency: Duration, now_ms: i64) {
        let Ok(mut s) = self.samples.lock() else {
            return;
        };
        self.roll(&mut s, now_ms);
        let ms = latency.as_secs_f64() * 1000.0;
        s.current.commits += 1;
        s.current.latency_total_ms += ms;
        s.current.latency_max_ms = s.current.latency_max_ms.max(ms);
    }

    /// Closes the windows that ended before `now_ms`. Records counted since the last roll go to the first window
    /// closed; windows without activity are kept, as zeros.
    fn roll(&self, s: &mut Samples, now_ms: i64) {
        while now_ms >= s.current.start_ms + self.interval_ms {
            let processed = self.processed.swap(0, Ordering::Relaxed);
            let sample = s.current.sample(self.interval_ms as u64, processed);
            s.done.push_back(sample);
            while s.done.len() > self.keep {
                s.done.pop_front();
            }
            let next = s.current.start_ms + self.interval_ms;
            // After a long pause, skip straight to the windows that are still kept.
            let skip_to = now_ms - self.interval_ms * self.keep as i64;
            let next = if next < skip_to {
                next + (skip_to - next) / self.interval_ms * self.interval_ms
            } else {
                next
            };
            s.current = Window::new(next);
        }
    }

    /// The completed samples, oldest first, then the window in progress (shorter than the interval).
    pub fn samples(&self) -> Vec<MetricsSample> {
        self.samples_at(now_ms())
    }

    pub(crate) fn samples_at(&self, now_ms: i64) -> Vec<MetricsSample> {
        let Ok(mut s) = self.samples.lock() else {
            return Vec::new();
        };
        self.roll(&mut s, now_ms);
        let mut out: Vec<MetricsSample> = s.done.iter().cloned().collect();
        let elapsed = (now_ms - s.current.start_ms).max(0) as u64;
        out.push(
            s.current
                .sample(elapsed, self.processed.load(Ordering::Relaxed)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_close_as_time_passes_and_old_ones_drop_out() {
        let h = MetricsHistory::new(Duration::from_secs(10), 3, 0);
        h.add_processed(50);
        h.record_commit_at(Duration::from_millis(4), 1_000);
        h.record_commit_at(Duration::from_millis(8), 2_000);
        let s = h.samples_at(5_000);
        assert_eq!(s.len(), 1, "only the window in progress");
        assert_eq!(s[0].duration_ms, 5_000);
        assert_eq!(s[0].records_processed, 50);
        assert_eq!(s[0].records_per_second(), 10.0);
        assert_eq!(s[0].commits, 2);
        assert_eq!(s[0].commit_latency_avg_ms, 6.0);
        assert_eq!(s[0].commit_latency_max_ms, 8.0);

        h.add_processed(100);
        let s = h.samples_at(12_000);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].start_ms, s[0].duration_ms, s[0].records_processed),
            (0, 10_000, 150)
        );
        assert_eq!((s[1].start_ms, s[1].records_processed), (10_000, 0));

        // Idle windows are zeros; only `keep` completed ones stay.
        let s = h.samples_at(45_000);
        let starts: Vec<i64> = s.iter().map(|x| x.start_ms).collect();
        assert_eq!(starts, vec![10_000, 20_000, 30_000, 40_000]);
        assert!(s.iter().all(|x| x.records_processed == 0 && x.commits == 0));
    }

    #[test]
    fn a_long_pause_skips_to_the_windows_kept() {
        let h = MetricsHistory::new(Duration::from_secs(10), 3, 0);
        let s = h.samples_at(10_000_005);
        assert_eq!(s.len(), 4);
        assert_eq!(s.last().map(|x| x.start_ms), Some(10_000_000));
        assert!(s
            .windows(2)
            .all(|w| w[1].start_ms - w[0].start_ms == 10_000));
    }
}
