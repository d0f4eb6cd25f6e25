//! Windowed `count` / `reduce` / `aggregate` over sliding windows.
//!
//! As Kafka Streams' `KStreamSlidingWindowAggregate`, the store holds only window aggregates, each stamped with
//! the latest record in it. A window exists for each distinct record time `t` (the window `[t - d, t]` that
//! record ends, its "left" window) and for the time just after it (`[t + 1, t + 1 + d]`, its "right" window) when
//! a later record falls in that one. An arriving record folds itself onto every existing window containing it,
//! then creates its own left window (from the previous record's aggregate when that record is within `d`), its
//! right window (from the aggregate of the first window to its right), and the previous record's right window.
//! Aggregates are therefore built in arrival order, so a late record is folded last, as in Kafka. Records in the
//! first time difference after the epoch all share the window `[0, d]`, since windows do not start before 0.

use std::collections::HashSet;
use std::sync::Arc;

use state_store::{
    SharedSerde, TimestampedSerde, ValueAndTimestamp, Window, WindowStore, Windowed,
};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::emit_final::SlidingEmitFinal;
use crate::ops::flush_listener::CacheListener;
use crate::ops::stream_aggregate::change;
use crate::ops::stream_aggregate::missing_store;
use crate::ops::window_aggregate::expiry_interval;
use crate::windows::SlidingWindows;

pub(crate) struct SlidingAggregate<K, V, VA, F> {
    pub store_name: Arc<str>,
    pub windows: SlidingWindows,
    pub retention_ms: i64,
    pub key_serde: SharedSerde<K>,
    pub value_serde: SharedSerde<VA>,
    pub fold: Arc<F>,
    pub send_old: bool,
    pub store: Option<WindowStore<K, ValueAndTimestamp<VA>>>,
    /// The store cache's flush listener, which forwards the updates while the store is cached (Kafka's
    /// CachingWindowStore).
    pub emit: Option<CacheListener<Windowed<K>, ValueAndTimestamp<VA>>>,
    pub observed: i64,
    pub last_expiry: i64,
    /// `Some` with `emit_strategy(on_window_close)`: updates are not forwarded, final results are.
    pub emit_final: Option<SlidingEmitFinal>,
    pub _p: std::marker::PhantomData<fn(V)>,
}

/// What one arriving record found among the existing windows of its key.
struct Found<VA> {
    /// Starts of the windows seen.
    starts: HashSet<i64>,
    /// The aggregate the record's left window starts from: that of the latest window ending before the record.
    left_agg: Option<ValueAndTimestamp<VA>>,
    /// The aggregate its right window takes: that of the window just right of it containing later records.
    right_agg: Option<ValueAndTimestamp<VA>>,
    left_exists: bool,
    right_exists: bool,
    /// The latest record before this one (whose right window may have to be created).
    previous: Option<i64>,
}

impl<VA> Found<VA> {
    fn new() -> Self {
        Found {
            starts: HashSet::new(),
            left_agg: None,
            right_agg: None,
            left_exists: false,
            right_exists: false,
            previous: None,
        }
    }
}

impl<K: Data, V: Data, VA: Data, F> SlidingAggregate<K, V, VA, F>
where
    F: Fn(&K, &V, Option<VA>) -> VA + Send + Sync + 'static,
{
    /// Folds the record onto window `window` holding `current` (`None`: a window being created, which starts
    /// from the aggregation's initializer), stores it and forwards the update with `current` as the old value,
    /// unless the window has closed.
    fn update_and_forward(
        &mut self,
        window: Window,
        current: Option<ValueAndTimestamp<VA>>,
        r: &Record<K, V>,
        close: i64,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        if window.end < close {
            ctx.record_dropped("record later than its window's grace period");
            return Ok(());
        }
        let (old, timestamp) = match current {
            Some(c) => {
                let t = c.timestamp.max(r.timestamp);
                (Some(c.value), t)
            }
            None => (None, r.timestamp),
        };
        let new = (self.fold)(&r.key, &r.value, old.clone());
        self.put_and_forward(window, ValueAndTimestamp::new(new, timestamp), old, r, ctx)
    }

    fn put_and_forward(
        &mut self,
        window: Window,
        row: ValueAndTimestamp<VA>,
        old: Option<VA>,
        r: &Record<K, V>,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let (Some(store), Some(emit)) = (self.store.as_mut(), self.emit.as_mut()) else {
            return Err(missing_store("sliding-window aggregate"));
        };
        if emit.caching() && store.retains(window.start) {
            // The cache forwards the update when it flushes or evicts it.
            emit.set_context(ctx, row.timestamp, r.headers.clone())?;
            return Ok(store.put(&r.key, window.start, Some(&row))?);
        }
        // Forwarded at once: without a cache, or (in the cached order) a window already beyond retention, never
        // stored but forwarded by Kafka's cache.
        emit.finish(ctx, &change)?;
        store.put(&r.key, window.start, Some(&row))?;
        if self.emit_final.is_some() {
            return Ok(());
        }
        let timestamp = row.timestamp;
        ctx.forward(Record {
            key: Windowed::new(r.key.clone(), window),
            value: Change::new(Some(row.value), old.filter(|_| self.send_old)),
            timestamp,
            headers: r.headers.clone(),
        })
    }

    fn window_at(&self, start: i64) -> Window {
        Window::new(start, start + self.windows.difference_ms)
    }

    /// The windows of the record's key starting in `[from, ts + 1]`, by start.
    fn nearby(
        &mut self,
        key: &K,
        from: i64,
        ts: i64,
    ) -> Result<Vec<(i64, ValueAndTimestamp<VA>)>, StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("sliding-window aggregate"))?;
        Ok(store.fetch_range(key, from.max(0), ts + 1)?)
    }

    /// A record at or after the first time difference: walks the windows near it from the latest back, as
    /// Kafka does with a backward-capable store.
    fn process_regular(
        &mut self,
        r: &Record<K, V>,
        close: i64,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let (ts, d) = (r.timestamp, self.windows.difference_ms);
        let mut found = Found::new();
        for (start, agg) in self.nearby(&r.key, ts - 2 * d, ts)?.into_iter().rev() {
            found.starts.insert(start);
            let end = start + d;
            if start == ts + 1 {
                found.right_exists = true;
            } else if end > ts {
                if found.right_agg.is_none() {
                    found.right_agg = Some(agg.clone());
                }
                self.update_and_forward(self.window_at(start), Some(agg), r, close, ctx)?;
            } else if end == ts {
                found.left_exists = true;
                let latest = agg.timestamp;
                self.update_and_forward(self.window_at(start), Some(agg), r, close, ctx)?;
                if latest >= ts {
                    // A record at this time came before: every window this one needs exists already.
                    return Ok(());
                }
                found.previous = Some(latest);
            } else {
                found.previous = Some(agg.timestamp);
                found.left_agg = Some(agg);
                break;
            }
        }
        self.create_windows(r, close, found, ctx)
    }

    /// A record in the first time difference: it belongs to the shared window `[0, d]`.
    fn process_early(
        &mut self,
        r: &Record<K, V>,
        close: i64,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let ts = r.timestamp;
        let mut found = Found::new();
        let mut combined = None;
        for (start, agg) in self.nearby(&r.key, 0, ts)? {
            found.starts.insert(start);
            if start == 0 {
                if agg.timestamp < ts {
                    found.previous = Some(agg.timestamp);
                }
                combined = Some(agg);
            } else if start <= ts {
                found.right_agg = Some(agg.clone());
                self.update_and_forward(self.window_at(start), Some(agg), r, close, ctx)?;
            } else {
                found.right_exists = true; // start == ts + 1
            }
        }
        // With no right window found, the records of the combined window after this one make its right window.
        if found.right_agg.is_none() {
            found.right_agg = combined.clone().filter(|c| c.timestamp > ts);
        }
        self.create_right_window(r, &found, ctx)?;
        if let Some(prev) = found.previous {
            if !found.starts.contains(&(prev + 1)) {
                self.update_and_forward(self.window_at(prev + 1), None, r, close, ctx)?;
            }
        }
        self.update_and_forward(self.window_at(0), combined, r, close, ctx)
    }

    fn create_windows(
        &mut self,
        r: &Record<K, V>,
        close: i64,
        mut found: Found<VA>,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let (ts, d) = (r.timestamp, self.windows.difference_ms);
        // The previous record's right window, when it does not exist yet and this record falls in it.
        if let Some(prev) = found.previous {
            let start = prev + 1;
            if !found.starts.contains(&start) && start + d >= ts {
                self.update_and_forward(self.window_at(start), None, r, close, ctx)?;
            }
        }
        if !found.left_exists {
            // The left window starts from the previous record's aggregate when that record is in it.
            let from = match (found.previous, found.left_agg.take()) {
                (Some(prev), Some(agg)) if ts - d <= prev => {
                    Some(ValueAndTimestamp::new(agg.value, ts))
                }
                _ => None,
            };
            self.update_and_forward(self.window_at(ts - d), from, r, close, ctx)?;
        }
        self.create_right_window(r, &found, ctx)
    }

    /// This record's right window, holding the aggregate of the later records found, unless it exists already
    /// or no later record is near.
    fn create_right_window(
        &mut self,
        r: &Record<K, V>,
        found: &Found<VA>,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        if found.right_exists {
            return Ok(());
        }
        match found.right_agg.as_ref() {
            Some(agg) if agg.timestamp > r.timestamp => {
                let window = self.window_at(r.timestamp + 1);
                self.put_and_forward(window, agg.clone(), None, r, ctx)
            }
            _ => Ok(()),
        }
    }
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
        let typed = ctx.key_value_store::<Windowed<K>, ValueAndTimestamp<VA>>(&self.store_name)?;
        // With emit-on-window-close nothing is forwarded from the cache (updates are not forwarded at all).
        self.emit = Some(CacheListener::register(
            typed.bytes(),
            typed.key_serde().clone(),
            Arc::new(TimestampedSerde::new(self.value_serde.clone())),
            self.send_old,
            self.emit_final.is_none(),
        )?);
        self.store = Some(WindowStore::new(
            typed.bytes().clone(),
            self.key_serde.clone(),
            Arc::new(TimestampedSerde::new(self.value_serde.clone())),
            self.windows.difference_ms,
            self.retention_ms,
        ));
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
            Some(emit) => emit.flush(ctx, &change),
            None => Ok(()),
        }
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let ts = r.timestamp;
        if ts < 0 {
            ctx.record_dropped("negative timestamp in a windowed aggregation");
            return Ok(());
        }
        let d = self.windows.difference_ms;
        self.observed = self.observed.max(ts).max(ctx.stream_time());
        self.store
            .as_mut()
            .ok_or_else(|| missing_store("sliding-window aggregate"))?
            .observe_stream_time(self.observed);
        let close = self.observed.saturating_sub(self.windows.grace_ms);
        if ts + d < close {
            ctx.record_dropped("record later than its window's grace period");
            return Ok(());
        }
        if ts < d {
            self.process_early(&r, close, ctx)?;
        } else {
            self.process_regular(&r, close, ctx)?;
        }
        if let Some(emit) = self.emit.as_mut() {
            emit.finish(ctx, &change)?;
        }
        let Some(store) = self.store.as_mut() else {
            return Err(missing_store("sliding-window aggregate"));
        };
        if let Some(emit) = self.emit_final.as_mut() {
            let (w, ks) = (&self.windows, &self.key_serde);
            emit.emit(store, w, ks, close, &r.headers, ctx)?;
        }
        if self.observed - self.last_expiry >= expiry_interval(self.retention_ms) {
            // A sliding window includes its end: with final results it closes one ms after it leaves retention.
            store.expire(self.observed - i64::from(self.emit_final.is_some()))?;
            self.last_expiry = self.observed;
        }
        Ok(())
    }
}
