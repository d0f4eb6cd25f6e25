//! Window specifications: tumbling and hopping ([`TimeWindows`]), sliding ([`SlidingWindows`]), session
//! ([`SessionWindows`]) and the join window of stream-stream joins ([`JoinWindows`]).
//!
//! Every window has a grace period: how long after the window ends (in stream time, the highest record
//! timestamp the task has seen) records may still arrive for it. A record arriving later is dropped, logged and
//! counted in the task's `dropped_records` metric. Stream-stream joins are the exception, as in Kafka Streams:
//! their grace period sets how long each side's records are kept (`before + after + grace`) and when left and
//! outer joins emit unmatched records; a late record is not dropped but joined with whatever is still kept.

use std::time::Duration;

use streams_core::StreamsError;

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Fixed-size windows by time: tumbling (each record in exactly one window) or, with
/// [`TimeWindows::advance_by`], hopping (overlapping windows starting every `advance`).
///
/// Windows are aligned to the epoch: a 1-minute window starts at a whole minute. A window covers
/// `[start, start + size)`.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::TimeWindows;
///
/// let tumbling = TimeWindows::of_size_with_no_grace(Duration::from_secs(60));
/// assert_eq!(tumbling.window_starts(125_000), vec![120_000]);
/// let hopping = TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(10))
///     .advance_by(Duration::from_secs(30));
/// assert_eq!(hopping.window_starts(125_000), vec![90_000, 120_000]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    pub(crate) size_ms: i64,
    pub(crate) advance_ms: i64,
    pub(crate) grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` that close as soon as stream time passes their end.
    pub fn of_size_with_no_grace(size: Duration) -> Self {
        Self::of_size_and_grace(size, Duration::ZERO)
    }

    /// Tumbling windows of `size` that accept records up to `grace` after their end.
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Self {
        let size_ms = ms(size);
        TimeWindows {
            size_ms,
            advance_ms: size_ms,
            grace_ms: ms(grace),
        }
    }

    /// Hopping windows: a new window starts every `advance` (which must be positive and at most the size).
    pub fn advance_by(mut self, advance: Duration) -> Self {
        self.advance_ms = ms(advance);
        self
    }

    /// The window size in ms.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// The grace period in ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    pub(crate) fn validate(&self) -> Result<(), StreamsError> {
        if self.size_ms <= 0 {
            return Err(StreamsError::InvalidTopology(
                "TimeWindows: the window size must be at least 1 ms".into(),
            ));
        }
        if self.advance_ms <= 0 || self.advance_ms > self.size_ms {
            return Err(StreamsError::InvalidTopology(format!(
                "TimeWindows: advance_by must be between 1 ms and the window size ({} ms), got {} ms",
                self.size_ms, self.advance_ms
            )));
        }
        Ok(())
    }

    /// Starts of the windows a record at `timestamp` (>= 0) falls in, ascending.
    pub fn window_starts(&self, timestamp: i64) -> Vec<i64> {
        let mut out = Vec::new();
        self.for_each_start(timestamp, |s| out.push(s));
        out
    }

    #[inline]
    pub(crate) fn for_each_start(&self, timestamp: i64, mut f: impl FnMut(i64)) {
        let first = (timestamp - self.size_ms + self.advance_ms).max(0);
        let mut start = first - first % self.advance_ms;
        if start + self.size_ms <= timestamp {
            start += self.advance_ms;
        }
        while start <= timestamp {
            f(start);
            start += self.advance_ms;
        }
    }
}

/// Sliding windows (Kafka Streams' `SlidingWindows`): windows of a fixed `time_difference` defined by the
/// records themselves, covering `[start, start + time_difference]` (both ends included). Each record `r` defines
/// the window ending at `r` and, when a later record falls within `time_difference` of it, the window starting
/// just after `r`; the aggregate of every such window covers exactly the records inside it. Unlike hopping
/// windows, no two windows cover the same set of records and no window is empty.
///
/// Within a window, records are folded in timestamp order (ties in arrival order). Windows never start before
/// 0: a record less than `time_difference` after the epoch ends the window `[0, time_difference]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    pub(crate) difference_ms: i64,
    pub(crate) grace_ms: i64,
}

impl SlidingWindows {
    /// Sliding windows of `time_difference` with no grace period.
    pub fn of_time_difference_with_no_grace(time_difference: Duration) -> Self {
        Self::of_time_difference_and_grace(time_difference, Duration::ZERO)
    }

    /// Sliding windows of `time_difference` accepting records up to `grace` late.
    pub fn of_time_difference_and_grace(time_difference: Duration, grace: Duration) -> Self {
        SlidingWindows {
            difference_ms: ms(time_difference),
            grace_ms: ms(grace),
        }
    }

    /// The maximum time difference between two records of one window, in ms.
    pub fn time_difference_ms(&self) -> i64 {
        self.difference_ms
    }

    /// The grace period in ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    pub(crate) fn validate(&self) -> Result<(), StreamsError> {
        if self.difference_ms <= 0 {
            return Err(StreamsError::InvalidTopology(
                "SlidingWindows: the time difference must be at least 1 ms".into(),
            ));
        }
        Ok(())
    }
}

/// Session windows: a key's records closer together than the inactivity gap form one session, which grows (and
/// merges with neighbouring sessions) as records arrive. A session covers `[first record, last record]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    pub(crate) gap_ms: i64,
    pub(crate) grace_ms: i64,
}

impl SessionWindows {
    /// Sessions split by gaps of inactivity longer than `gap`, with no grace period.
    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Self {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }

    /// Sessions split by gaps longer than `gap`, accepting records up to `grace` after a session's end.
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        SessionWindows {
            gap_ms: ms(gap),
            grace_ms: ms(grace),
        }
    }

    /// The inactivity gap in ms.
    pub fn inactivity_gap_ms(&self) -> i64 {
        self.gap_ms
    }

    /// The grace period in ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    pub(crate) fn validate(&self) -> Result<(), StreamsError> {
        if self.gap_ms <= 0 {
            return Err(StreamsError::InvalidTopology(
                "SessionWindows: the inactivity gap must be at least 1 ms".into(),
            ));
        }
        Ok(())
    }
}

/// The window of a stream-stream join: a record of one side joins the other side's records whose timestamps are
/// at most `before` earlier and at most `after` later (for the left side; mirrored for the right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    pub(crate) before_ms: i64,
    pub(crate) after_ms: i64,
    pub(crate) grace_ms: i64,
}

impl JoinWindows {
    /// Records join when their timestamps differ by at most `difference`; no grace period.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }

    /// Records join when their timestamps differ by at most `difference`; each side keeps its records for
    /// `2 * difference + grace` of stream time, so records may arrive up to `grace` after the window closes and
    /// still find their partners (left and outer joins emit their unmatched records only after that).
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        let d = ms(difference);
        JoinWindows {
            before_ms: d,
            after_ms: d,
            grace_ms: ms(grace),
        }
    }

    /// Changes how much earlier than a left record a right record may be.
    pub fn before(mut self, before: Duration) -> Self {
        self.before_ms = ms(before);
        self
    }

    /// Changes how much later than a left record a right record may be.
    pub fn after(mut self, after: Duration) -> Self {
        self.after_ms = ms(after);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StreamsError> {
        if self.before_ms + self.after_ms < 0 || self.grace_ms < 0 {
            return Err(StreamsError::InvalidTopology(
                "JoinWindows: before + after must not be negative".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_starts_match_a_brute_force_search() {
        for (size, advance) in [(10, 10), (10, 3), (10, 5), (7, 1), (5, 5)] {
            let w = TimeWindows {
                size_ms: size,
                advance_ms: advance,
                grace_ms: 0,
            };
            for ts in 0..60 {
                let expected: Vec<i64> = (0..=ts)
                    .filter(|s| s % advance == 0 && *s <= ts && ts < s + size)
                    .collect();
                assert_eq!(
                    w.window_starts(ts),
                    expected,
                    "size {size} advance {advance} ts {ts}"
                );
            }
        }
    }
}
