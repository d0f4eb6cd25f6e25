//! `KStream::join` and `KStream::left_join` with a `KTable`: each stream record looks its key up in the table's
//! store as it is processed; table updates alone produce nothing. Against a versioned table the lookup is as of the
//! record's timestamp (KIP-914), and with a grace period records are first buffered and joined in timestamp order
//! once stream time has passed them by the grace period.

use std::marker::PhantomData;
use std::sync::Arc;

use state_store::{
    KeyRange, SerdeError, SerdeErrorKind, SharedSerde, StoreError, TypedKeyValueStore,
    VersionedKeyValueStore,
};
use streams_core::{Data, Headers, Processor, ProcessorContext, Record, StreamsError};

use crate::ops::stream_aggregate::missing_store;

/// How the join reads the table: its current row, or (a versioned table) the row valid at the record's time.
pub(crate) enum TableLookup<K, VT> {
    Latest(TypedKeyValueStore<K, VT>),
    AsOf(VersionedKeyValueStore<K, VT>),
}

/// The grace period of a join (Kafka's `Joined.withGracePeriod`): the buffer store and the serdes records are
/// kept in it with.
pub(crate) struct Grace<K, V> {
    pub buffer_store: Arc<str>,
    pub grace_ms: i64,
    pub key_serde: SharedSerde<K>,
    pub value_serde: SharedSerde<V>,
}

impl<K, V> Clone for Grace<K, V> {
    fn clone(&self) -> Self {
        Grace {
            buffer_store: self.buffer_store.clone(),
            grace_ms: self.grace_ms,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

/// `joiner(stream value, table row or None) -> joined value, or None to drop the record` (an inner join drops
/// records whose key the table lacks; a left join never drops).
///
/// As Kafka's `KStreamKTableJoinProcessor`, a record with a null value, or with a null key (except in a left
/// join, where a null key with a value joins with no row), cannot join: it is dropped and counted in
/// dropped-records. Nullness is the stream's serdes' (`Serde::is_null`); without a known serde a side is never
/// null.
pub(crate) struct StreamTableJoin<K, V, VT, VR, F> {
    pub store_name: Arc<str>,
    pub joiner: Arc<F>,
    pub left_join: bool,
    pub key_serde: Option<SharedSerde<K>>,
    pub value_serde: Option<SharedSerde<V>>,
    /// The table's store is versioned: look rows up as of each record's time.
    pub versioned: bool,
    pub grace: Option<Grace<K, V>>,
    pub table: Option<TableLookup<K, VT>>,
    pub buffer: Option<TypedKeyValueStore<Vec<u8>, Vec<u8>>>,
    pub _p: PhantomData<fn() -> VR>,
}

/// The buffer's bookkeeping entry: its stream time and the next sequence number.
const META: &[u8] = &[];

fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn malformed(message: &str) -> StoreError {
    StoreError::Serde {
        store: "stream-table join buffer".into(),
        source: SerdeError::new("buffered record", SerdeErrorKind::Other, message),
    }
}

/// A buffered record's value: the value's length and bytes, then the headers (count; each key's length and bytes,
/// the value's length or -1 for null and bytes).
fn encode_buffered(value: &[u8], headers: &Headers) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 8);
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for h in headers.iter() {
        out.extend_from_slice(&(h.key.len() as u32).to_be_bytes());
        out.extend_from_slice(h.key.as_bytes());
        match &h.value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
    if data.len() < n {
        return Err(malformed("truncated buffered record"));
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Ok(head)
}

fn take_u32(data: &mut &[u8]) -> Result<u32, StoreError> {
    let b = take(data, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn decode_buffered(mut data: &[u8]) -> Result<(Vec<u8>, Headers), StoreError> {
    let len = take_u32(&mut data)? as usize;
    let value = take(&mut data, len)?.to_vec();
    let n = take_u32(&mut data)?;
    let mut headers = Headers::new();
    for _ in 0..n {
        let klen = take_u32(&mut data)? as usize;
        let key = String::from_utf8(take(&mut data, klen)?.to_vec())
            .map_err(|_| malformed("a header key is not UTF-8"))?;
        let vlen = take_u32(&mut data)? as i32;
        let v = if vlen < 0 {
            None
        } else {
            Some(take(&mut data, vlen as usize)?.to_vec())
        };
        headers.add(key, v);
    }
    Ok((value, headers))
}

impl<K: Data, V: Data, VT: Data, VR: Data, F> StreamTableJoin<K, V, VT, VR, F>
where
    F: Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync + 'static,
{
    fn join(
        &mut self,
        r: Record<K, V>,
        null_key: bool,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        let table = self
            .table
            .as_mut()
            .ok_or_else(|| missing_store("stream-table join"))?;
        // A null key has no row (tables hold no null keys).
        let row = if null_key {
            None
        } else {
            match table {
                TableLookup::Latest(store) => store.get(&r.key)?,
                TableLookup::AsOf(store) => store.get_as_of(&r.key, r.timestamp)?.map(|v| v.value),
            }
        };
        let Some(value) = (self.joiner)(&r.value, row.as_ref()) else {
            return Ok(());
        };
        ctx.forward(Record {
            key: r.key,
            value,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }

    /// Buffers `r` unless it is already older than the buffer's stream time minus the grace period (then it is
    /// returned to be joined at once, as Kafka's `TimeOrderedKeyValueBuffer.put` refuses it); then joins, in
    /// timestamp order, every buffered record the grace period has passed.
    fn buffer_and_evict(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<Option<Record<K, V>>, StreamsError> {
        let grace = self
            .grace
            .clone()
            .ok_or_else(|| missing_store("stream-table join buffer"))?;
        let serde_err = |source: SerdeError| StoreError::Serde {
            store: grace.buffer_store.to_string(),
            source,
        };
        let buffer = self
            .buffer
            .as_mut()
            .ok_or_else(|| missing_store("stream-table join buffer"))?;
        let (mut stream_time, mut seq) = match buffer.get(&META.to_vec())? {
            Some(m) if m.len() == 12 => (
                i64::from_be_bytes(m[..8].try_into().unwrap_or_default()),
                u32::from_be_bytes(m[8..].try_into().unwrap_or_default()),
            ),
            Some(_) => {
                return Err(malformed("the buffer's bookkeeping entry is not 12 bytes").into())
            }
            None => (i64::MIN, 0),
        };
        if stream_time.saturating_sub(grace.grace_ms) > r.timestamp {
            return Ok(Some(r));
        }
        // Kafka's time-first layout: timestamp, key, sequence number (records of one key at one time stay in
        // arrival order).
        let mut key = ts_bytes(r.timestamp).to_vec();
        grace
            .key_serde
            .serialize(&r.key, &mut key)
            .map_err(serde_err)?;
        key.extend_from_slice(&seq.to_be_bytes());
        let mut value = Vec::new();
        grace
            .value_serde
            .serialize(&r.value, &mut value)
            .map_err(serde_err)?;
        buffer.put(&key, &encode_buffered(&value, &r.headers))?;
        seq = (seq + 1) & 0x7FFF_FFFF;
        stream_time = stream_time.max(r.timestamp);
        let mut meta = stream_time.to_be_bytes().to_vec();
        meta.extend_from_slice(&seq.to_be_bytes());
        buffer.put(&META.to_vec(), &meta)?;
        // Every record with timestamp <= stream time - grace, in (timestamp, key, sequence) order.
        let limit = stream_time.saturating_sub(grace.grace_ms);
        let range = KeyRange {
            lower: Some(vec![0]),
            upper: state_store::prefix_upper_bound(&ts_bytes(limit)),
            one_key_prefix: false,
        };
        let due = buffer.scan(&range, false, usize::MAX)?;
        for (k, v) in due {
            if let Some(buffer) = self.buffer.as_mut() {
                buffer.delete(&k)?;
            }
            if k.len() < 12 {
                return Err(malformed("a buffered record's key is shorter than 12 bytes").into());
            }
            let ts = i64::from_be_bytes(k[..8].try_into().unwrap_or_default()) ^ i64::MIN;
            let key = grace
                .key_serde
                .deserialize(&k[8..k.len() - 4])
                .map_err(serde_err)?;
            let (value, headers) = decode_buffered(&v)?;
            let value = grace.value_serde.deserialize(&value).map_err(serde_err)?;
            self.join(
                Record {
                    key,
                    value,
                    timestamp: ts,
                    headers,
                },
                false,
                ctx,
            )?;
        }
        Ok(None)
    }
}

impl<K: Data, V: Data, VT: Data, VR: Data, F> Processor<K, V> for StreamTableJoin<K, V, VT, VR, F>
where
    F: Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = VR;

    fn init(&mut self, ctx: &mut ProcessorContext<K, VR>) -> Result<(), StreamsError> {
        self.table = Some(if self.versioned {
            TableLookup::AsOf(ctx.versioned_key_value_store(&self.store_name)?)
        } else {
            TableLookup::Latest(ctx.key_value_store(&self.store_name)?)
        });
        if let Some(g) = &self.grace {
            self.buffer = Some(ctx.key_value_store(&g.buffer_store)?);
        }
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        let null_key = self.key_serde.as_ref().is_some_and(|s| s.is_null(&r.key));
        let null_value = self
            .value_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&r.value));
        if null_value || (null_key && !self.left_join) {
            ctx.record_dropped("null join key or value in a stream-table join");
            return Ok(());
        }
        // A left join's null-key record has no row to wait for: it joins at once.
        if self.grace.is_none() || null_key {
            return self.join(r, null_key, ctx);
        }
        match self.buffer_and_evict(r, ctx)? {
            Some(late) => self.join(late, false, ctx),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_values_and_headers_roundtrip() {
        let mut headers = Headers::new();
        headers.add("a", Some(b"1".to_vec())).add("b", None);
        let bytes = encode_buffered(b"value", &headers);
        let (v, h) = decode_buffered(&bytes).unwrap();
        assert_eq!((v.as_slice(), h), (&b"value"[..], headers));
        assert!(decode_buffered(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn buffer_keys_order_by_time_then_key() {
        let mut keys = [(5i64, b"b"), (-1, b"z"), (5, b"a"), (i64::MAX, b"a")]
            .iter()
            .map(|(t, k)| {
                let mut v = ts_bytes(*t).to_vec();
                v.extend_from_slice(*k);
                v
            })
            .collect::<Vec<_>>();
        keys.sort();
        let decoded: Vec<(i64, u8)> = keys
            .iter()
            .map(|k| {
                (
                    i64::from_be_bytes(k[..8].try_into().unwrap()) ^ i64::MIN,
                    k[8],
                )
            })
            .collect();
        assert_eq!(
            decoded,
            vec![(-1, b'z'), (5, b'a'), (5, b'b'), (i64::MAX, b'a')]
        );
    }
}
