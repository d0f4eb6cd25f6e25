//! Windowed `count` / `reduce` / `aggregate` over tumbling and hopping windows.

use std::sync::Arc;

use state_store::{
    SharedSerde, TimestampedSerde, ValueAndTimestamp, Window, WindowStore, Windowed,
};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::emit_final::EmitFinal;
use crate::ops::flush_listener::CacheListener;
use crate::ops::stream_aggregate::{change, missing_store};
use crate::windows::TimeWindows;

/// How often (in stream time) a windowed store deletes what fell out of retention: Kafka Streams' segment
/// interval, half the retention but at least a minute.
pub(crate) fn expiry_interval(retention_ms: i64) -> i64 {
    (retention_ms / 2).max(60_000)
}

/// `fold(key, value, previous aggregate or None) -> new aggregate`, per window the record falls in.
pub(crate) struct WindowAggregate<K, V, VA, F> {
    pub store_name: Arc<str>,
    pub windows: TimeWindows,
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
    pub starts: Vec<i64>,
    /// `Some` with `emit_strategy(on_window_close)`: updates are not forwarded, final results are.
    pub emit_final: Option<EmitFinal>,
    pub _p: std::marker::PhantomData<fn(V)>,
}

impl<K: Data, V: Data, VA: Data, F> Processor<K, V> for WindowAggregate<K, V, VA, F>
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
            self.windows.size_ms,
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
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("windowed aggregate"))?;
        let emit = self
            .emit
            .as_mut()
            .ok_or_else(|| missing_store("windowed aggregate"))?;
        let ts = r.timestamp;
        if ts < 0 {
            ctx.record_dropped("negative timestamp in a windowed aggregation");
            return Ok(());
        }
        self.observed = self.observed.max(ts).max(ctx.stream_time());
        store.observe_stream_time(self.observed);
        let close = self.observed.saturating_sub(self.windows.grace_ms);
        self.starts.clear();
        let starts = &mut self.starts;
        self.windows.for_each_start(ts, |s| starts.push(s));
        for &start in &self.starts {
            let end = start.saturating_add(self.windows.size_ms);
            if end <= close {
                ctx.record_dropped("record later than its window's grace period");
                continue;
            }
            let prev = store.fetch(&r.key, start)?;
            // A window's aggregate is as recent as the latest record in it (Kafka's KStreamWindowAggregate).
            let timestamp = prev.as_ref().map_or(ts, |p| p.timestamp.max(ts));
            let prev = prev.map(ValueAndTimestamp::into_value);
            let old = if self.send_old && !emit.caching() {
                prev.clone()
            } else {
                None
            };
            let row = ValueAndTimestamp::new((self.fold)(&r.key, &r.value, prev), timestamp);
            if emit.caching() {
                // The cache forwards the update when it flushes or evicts it.
                emit.set_context(ctx, timestamp, r.headers.clone())?;
                store.put(&r.key, start, Some(&row))?;
                emit.finish(ctx, &change)?;
                continue;
            }
            store.put(&r.key, start, Some(&row))?;
            if self.emit_final.is_some() {
                continue;
            }
            ctx.forward(Record {
                key: Windowed::new(r.key.clone(), Window::new(start, end)),
                value: Change::new(Some(row.into_value()), old),
                timestamp,
                headers: r.headers.clone(),
            })?;
        }
        if let Some(emit) = self.emit_final.as_mut() {
            emit.emit(
                store,
                &self.windows,
                &self.key_serde,
                close,
                &r.headers,
                ctx,
            )?;
        }
        if self.observed - self.last_expiry >= expiry_interval(self.retention_ms) {
            store.expire(self.observed)?;
            self.last_expiry = self.observed;
        }
        Ok(())
    }
}
