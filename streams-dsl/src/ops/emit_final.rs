//! `emit_strategy(EmitStrategy::on_window_close())` for time-windowed aggregations: the final result of each
//! window, read from the aggregation's store once the window closes, with no suppression buffer (Kafka Streams'
//! `AbstractKStreamTimeWindowAggregateProcessor.maybeForwardFinalResult` and `KStreamWindowAggregate`'s emit
//! range, KIP-825).

use state_store::{SharedSerde, ValueAndTimestamp, WindowStore, Windowed};
use streams_core::{Data, Headers, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::windows::{SlidingWindows, TimeWindows};

/// The state of final-result emission of one windowed aggregation.
pub(crate) struct EmitFinal {
    /// The window-close time (stream time minus grace) up to which final results were emitted; `None` before the
    /// first emission.
    pub last_emit_close: Option<i64>,
}

/// The windows `store` holds starting from `lower` to `upper`, in the order they are emitted: by window start,
/// then key bytes.
fn held_in_emit_order<K: Data, S: 'static>(
    store: &WindowStore<K, S>,
    key_serde: &SharedSerde<K>,
    lower: i64,
    upper: i64,
) -> Result<Vec<(Windowed<K>, S)>, StreamsError> {
    let mut rows = Vec::new();
    for (k, v) in store.fetch_all_held(lower, upper)? {
        let mut kb = Vec::new();
        key_serde.serialize(&k.key, &mut kb).map_err(|e| {
            StreamsError::from(state_store::StoreError::Serde {
                store: store.name().to_string(),
                source: e,
            })
        })?;
        rows.push((k.window.start, kb, k, v));
    }
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(rows.into_iter().map(|(_, _, k, v)| (k, v)).collect())
}

fn starts(windows: &TimeWindows, t: i64) -> Vec<i64> {
    let mut v = Vec::new();
    windows.for_each_start(t, |s| v.push(s));
    v
}

impl EmitFinal {
    /// After a restart: the close time of the last emission is not persisted (Kafka keeps it in the task's
    /// committed processor metadata), so it is inferred from the store. The latest window start held is at most
    /// the stream time of the previous run, and final results were emitted up to that stream time minus grace:
    /// every window ending by (latest start - grace) was emitted already. Windows that closed after that point
    /// in the previous run (less than one advance of them) are emitted again.
    pub(crate) fn recover<K: Data, VA: Data>(
        &mut self,
        store: &WindowStore<K, ValueAndTimestamp<VA>>,
        windows: &TimeWindows,
    ) -> Result<(), StreamsError> {
        let latest = store
            .fetch_all_held(i64::MIN, i64::MAX)?
            .iter()
            .map(|(k, _)| k.window.start)
            .max();
        self.last_emit_close = latest
            .map(|s| s.saturating_sub(windows.grace_ms))
            .filter(|close| close.saturating_sub(windows.size_ms) >= 0);
        Ok(())
    }

    /// Forwards the result of every window closed since the last emission (end <= `close`), ordered by window
    /// start then key bytes, each stamped with its aggregate's timestamp and carrying `headers` (the record that
    /// closed it), as Kafka's time-ordered emit-final store yields them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn emit<K: Data, VA: Data>(
        &mut self,
        store: &WindowStore<K, ValueAndTimestamp<VA>>,
        windows: &TimeWindows,
        key_serde: &SharedSerde<K>,
        close: i64,
        headers: &Headers,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        // Only once the close time progresses.
        if self.last_emit_close.is_some_and(|last| last >= close) {
            return Ok(());
        }
        let upper = close.saturating_sub(windows.size_ms);
        if upper < 0 {
            return Ok(()); // no window has closed yet
        }
        let lower = match self.last_emit_close {
            None => 0,
            Some(last) => {
                let lower = (last - windows.size_ms).max(0) + 1;
                // No new window closed: the windows of the range's two ends are the same.
                if starts(windows, upper) == starts(windows, lower - 1) {
                    return Ok(());
                }
                lower
            }
        };
        for (key, v) in held_in_emit_order(store, key_serde, lower, upper)? {
            ctx.forward(Record {
                key,
                value: Change::new(Some(v.value), None),
                timestamp: v.timestamp,
                headers: headers.clone(),
            })?;
        }
        self.last_emit_close = Some(close);
        Ok(())
    }
}

/// Final-result emission for sliding windows (Kafka Streams' `KStreamSlidingWindowAggregate` emit range:
/// windows include their end, so one closes once its end is before the close time).
pub(crate) struct SlidingEmitFinal {
    /// As [`EmitFinal::last_emit_close`].
    pub last_emit_close: Option<i64>,
}

impl SlidingEmitFinal {
    /// After a restart, as [`EmitFinal::recover`]: the latest window start held is at most the previous run's
    /// stream time.
    pub(crate) fn recover<K: Data, VA: Data>(
        &mut self,
        store: &WindowStore<K, ValueAndTimestamp<VA>>,
        windows: &SlidingWindows,
    ) -> Result<(), StreamsError> {
        let latest = store
            .fetch_all_held(i64::MIN, i64::MAX)?
            .iter()
            .map(|(k, _)| k.window.start)
            .max();
        self.last_emit_close = latest
            .map(|s| s.saturating_sub(windows.grace_ms))
            .filter(|close| close - windows.difference_ms > 0);
        Ok(())
    }

    /// Forwards every window whose end is before `close` and was not emitted yet, ordered by start then key
    /// bytes, stamped with the latest record in it.
    pub(crate) fn emit<K: Data, VA: Data>(
        &mut self,
        store: &WindowStore<K, ValueAndTimestamp<VA>>,
        windows: &SlidingWindows,
        key_serde: &SharedSerde<K>,
        close: i64,
        headers: &Headers,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        if self.last_emit_close.is_some_and(|last| last >= close) {
            return Ok(());
        }
        let d = windows.difference_ms;
        let upper = close.saturating_sub(d).saturating_sub(1);
        if upper < 0 {
            return Ok(());
        }
        let lower = self.last_emit_close.map_or(0, |last| (last - d).max(0));
        for (key, v) in held_in_emit_order(store, key_serde, lower, upper)? {
            ctx.forward(Record {
                key,
                value: Change::new(Some(v.value), None),
                timestamp: v.timestamp,
                headers: headers.clone(),
            })?;
        }
        self.last_emit_close = Some(close);
        Ok(())
    }
}
