//! The metadata committed with each input partition's offset: the partition time (the highest record timestamp
//! processed from the partition), so that stream time survives a restart or a move to another instance. Without
//! it a restarted task would start from stream time -1, accept records its windows had already closed for, and a
//! suppression could emit a second "final" result.
//!
//! The encoding is Kafka Streams' (version 2): base64 of one version byte, the partition time as a big-endian
//! 64-bit integer, then processor metadata (none here). Version 1 (no processor metadata) is read too, so an
//! application moved from Kafka Streams keeps its stream time, and Kafka Streams reads what is committed here.

const VERSION: u8 = 2;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The metadata string for a partition time.
pub(crate) fn encode(partition_time: i64) -> String {
    let mut bytes = Vec::with_capacity(9);
    bytes.push(VERSION);
    bytes.extend_from_slice(&partition_time.to_be_bytes());
    base64_encode(&bytes)
}

/// The partition time in committed metadata; `None` for empty, foreign or unreadable metadata (logged).
pub(crate) fn decode(metadata: &str) -> Option<i64> {
    if metadata.is_empty() {
        return None;
    }
    let bytes = base64_decode(metadata);
    match bytes.as_deref() {
        Some([1 | 2, time @ ..]) if time.len() >= 8 => {
            let mut t = [0u8; 8];
            t.copy_from_slice(&time[..8]);
            Some(i64::from_be_bytes(t))
        }
        _ => {
            tracing::warn!(
                metadata,
                "committed offset metadata is not a partition time; stream time starts unknown"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_times_round_trip() {
        for t in [-1, 0, 1, 1_700_000_000_123, i64::MAX, i64::MIN] {
            assert_eq!(decode(&encode(t)), Some(t));
        }
    }

    #[test]
    fn the_encoding_is_kafka_streams_version_2() {
        // Version byte 2, then 1000 as a big-endian long: 02 00 00 00 00 00 00 03 e8, in standard base64.
        assert_eq!(encode(1000), "AgAAAAAAAAPo");
        // Version 1 (older Kafka Streams) carries the time alone.
        assert_eq!(decode("AQAAAAAAAAPo"), Some(1000));
        // Version 2 followed by processor metadata (one entry): the time is still read.
        let mut bytes = vec![2u8];
        bytes.extend_from_slice(&77i64.to_be_bytes());
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.push(b'k');
        bytes.extend_from_slice(&5i64.to_be_bytes());
        assert_eq!(decode(&base64_encode(&bytes)), Some(77));
    }

    #[test]
    fn foreign_metadata_is_ignored() {
        assert_eq!(decode(""), None);
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(&base64_encode(&[9, 1, 2])), None);
        assert_eq!(decode(&base64_encode(b"\x02short")), None);
    }
}
