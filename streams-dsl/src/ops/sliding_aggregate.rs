//! Windowed `count` / `reduce` / `aggregate` over sliding windows.
//!
//! Each task keeps, per key, the records of the last two time differences (plus grace) in a buffer store; an
//! arriving record recomputes every window it changes from the records inside it. That costs a pass over the
//! window's records per window touched, and keeps the result exact for any aggregator and any arrival order
//! within the grace period.

use std::collections::BTreeSet;
use std::sync::Arc;

use state_store::{SharedSerde, Window, WindowStore, Windowed};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::emit_final::SlidingEmitFinal;
use crate::ops::flush_listener::CacheListener;
use crate::ops::stream_aggregate::missing_store;
use crate::ops::window_aggregate::expiry_interval;
use crate::windows::SlidingWindows;

pub(crate) struct SlidingAggregate<K, V, VA, F> {
    pub store_name: Arc<str>,
    pub buffer_name: Arc<str>,
    pub windows: SlidingWindows,
    pub retention_ms: i64,
    pub key_serde: SharedSerde<K>,
    pub input_serde: SharedSerde<V>,
    pub value_serde: SharedSerde<VA>,
    pub fold: Arc<F>,
    pub send_old: bool,
    pub store: Option<WindowStore<K, VA>>,
    pub buffer: Option<WindowStore<K, V>>,
    /// The store cache's flush listener, which forwards the updates while the store is cached (Kafka's
    /// CachingWindowStore).
    pub emit: Option<CacheListener<Windowed<K>, VA>>,
    pub observed: i64,
    pub last_expiry: i64,
    /// `Some` with `emit_strategy(on_window_close)`: updates are not forwarded, final results are.
    pub emit_final: Option<SlidingEmitFinal>,
}

/// How long the record buffer keeps records: every window a record can still be in, or define, is at most two
/// time differences away from it, and may be updated for a grace period after it ends.
/// The start of the window a record at `t` ends: `t - d`, except that records in the first time difference
/// after the epoch share the window `[0, d]` (windows do not start before 0).
pub(crate) fn left_start(t: i64, d: i64) -> i64 {
    (t - d).max(0)
}

pub(crate) fn buffer_retention(w: &SlidingWindows) -> i64 {
    2 * w.difference_ms + w.grace_ms + 2
}

impl<K: Data, V: Data, VA: Data, F> Processor<K, V> for SlidingAggregate<K, V, VA, F>
where
    F: Fn(&K, &V, Option<VA>) -> VA + Send + Sync + 'static,
{
    type KOut = Windowed<K>;
    type VOut = Change<VA>;

    fn init(
        &mut self,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let d = self.windows.difference_ms;
        let typed = ctx.key_value_store::<Windowed<K>, VA>(&self.store_name)?;
        // With emit-on-window-close nothing is forwarded from the cache (updates are not forwarded at all).
        self.emit = Some(CacheListener::register(
            typed.bytes(),
            typed.key_serde().clone(),
            self.value_serde.clone(),
            self.send_old,
            self.emit_final.is_none(),
        )?);
        self.store = Some(WindowStore::new(
            typed.bytes().clone(),
            self.key_serde.clone(),
            self.value_serde.clone(),
            d,
            self.retention_ms,
        ));
        let typed = ctx.key_value_store::<Windowed<K>, V>(&self.buffer_name)?;
        self.buffer = Some(
            WindowStore::new(
                typed.bytes().clone(),
                self.key_serde.clone(),
                self.input_serde.clone(),
                0,
                buffer_retention(&self.windows),
            )
            .retaining_duplicates(),
        );
        if let (Some(emit), Some(store)) = (self.emit_final.as_mut(), self.store.as_ref()) {
            emit.recover(store, &self.windows)?;
        }
        Ok(())
    }

    fn flush(
        &mut self,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        match self.emit.as_mut() {
            Some(emit) => emit.flush(ctx, &|k, new, old| (k, Change::new(new, old))),
            None => Ok(()),
        }
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let (Some(store), Some(buffer), Some(emit)) = (
            self.store.as_mut(),
            self.buffer.as_mut(),
            self.emit.as_mut(),
        ) else {
            return Err(missing_store("sliding-window aggregate"));
        };
        let ts = r.timestamp;
        if ts < 0 {
            ctx.record_dropped("negative timestamp in a windowed aggregation");
            return Ok(());
        }
        let d = self.windows.difference_ms;
        self.observed = self.observed.max(ts).max(ctx.stream_time());
        store.observe_stream_time(self.observed);
        buffer.observe_stream_time(self.observed);
        let close = self.observed.saturating_sub(self.windows.grace_ms);
        if ts + 1 + d <= close {
            ctx.record_dropped("record later than its window's grace period");
            return Ok(());
        }
        buffer.put(&r.key, ts, Some(&r.value))?;
        // Records that can be in, or decide the existence of, a window containing `ts` or starting after it.
        let records = buffer.fetch_range(&r.key, ts - d - 1, ts + d + 1)?;
        let mut starts = BTreeSet::new();
        let mut later_within = false;
        for &(t, _) in &records {
            if (ts..=ts + d).contains(&t) {
                starts.insert(left_start(t, d)); // the window ending at t contains ts
            }
            if (ts - d - 1..ts).contains(&t) {
                starts.insert(t + 1); // the window just after t contains ts, so it is not empty
            }
            if t > ts && t <= ts + 1 + d {
                later_within = true;
            }
        }
        if later_within {
            starts.insert(ts + 1); // the window just after the new record
        }
        for start in starts {
            let end = start + d;
            // Open while its (inclusive) end is not before the close time (Kafka's updateWindowAndForward).
            if end < close {
                continue;
            }
            let mut agg = None;
            let mut max_ts = i64::MIN;
            for (t, v) in &records {
                if (start..=end).contains(t) {
                    agg = Some((self.fold)(&r.key, v, agg));
                    max_ts = max_ts.max(*t);
                }
            }
            let Some(new) = agg else { continue };
            let prev = store.fetch(&r.key, start)?;
            if start == ts + 1 && prev.is_some() {
                continue; // existed already (a record at the same time made it); the new record is not in it
            }
            if emit.caching() && store.retains(start) {
                // The cache forwards the update when it flushes or evicts it.
                emit.set_context(ctx, max_ts, r.headers.clone())?;
                store.put(&r.key, start, Some(&new))?;
                continue;
            }
            // Forwarded at once: without a cache, or (in the cached order) a window already beyond retention,
            // never stored but forwarded by Kafka's cache.
            emit.finish(ctx, &|k, new, old| (k, Change::new(new, old)))?;
            store.put(&r.key, start, Some(&new))?;
            if self.emit_final.is_some() {
                continue;
            }
            let old = prev.filter(|_| self.send_old);
            ctx.forward(Record {
                key: Windowed::new(r.key.clone(), Window::new(start, end)),
                value: Change::new(Some(new), old),
                timestamp: max_ts,
                headers: r.headers.clone(),
            })?;
        }
        emit.finish(ctx, &|k, new, old| (k, Change::new(new, old)))?;
        if let Some(emit) = self.emit_final.as_mut() {
            let (w, ks) = (&self.windows, &self.key_serde);
            emit.emit(store, buffer, w, ks, close, &r.headers, ctx)?;
        }
        if self.observed - self.last_expiry >= expiry_interval(self.retention_ms) {
            // A sliding window includes its end: with final results it closes one ms after it leaves retention.
            store.expire(self.observed - i64::from(self.emit_final.is_some()))?;
            buffer.expire(self.observed)?;
            self.last_expiry = self.observed;
        }
        Ok(())
    }
}
