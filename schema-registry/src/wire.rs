//! The Confluent wire format: a magic byte `0`, the schema id as a 4-byte big-endian unsigned integer, then the
//! payload. Protobuf payloads are preceded by the *message indexes*: the path from the schema's file to the
//! message type, as a count followed by that many indexes, each a zig-zag varint; the common path `[0]` (the first
//! message of the file) is written as the single byte `0`.
//!
//! ```
//! use schema_registry::wire;
//!
//! let mut out = Vec::new();
//! wire::write_header(42, &mut out);
//! out.extend_from_slice(b"payload");
//! assert_eq!(&out[..5], &[0, 0, 0, 0, 42]);
//!
//! let (id, payload) = wire::read_header(&out).unwrap();
//! assert_eq!((id, payload), (42, &b"payload"[..]));
//!
//! // Protobuf: the second message of the file, nested message 3 inside it.
//! let mut indexes = Vec::new();
//! wire::write_message_indexes(&[1, 3], &mut indexes);
//! assert_eq!(indexes, vec![4, 2, 6]); // count 2, then 1 and 3, all zig-zag encoded
//! let (read, rest) = wire::read_message_indexes(&indexes).unwrap();
//! assert_eq!((read, rest.len()), (vec![1, 3], 0));
//! ```

use crate::error::{Error, Result};

/// The first byte of every record in the Confluent wire format.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the header: magic byte and schema id.
pub const HEADER_LEN: usize = 5;

/// Largest message-index array accepted when reading (a nesting depth no real schema reaches).
const MAX_INDEXES: i64 = 100_000;

/// Appends the magic byte and the schema id to `out`.
pub fn write_header(schema_id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Reads the magic byte and the schema id; returns the id and the rest of the data.
pub fn read_header(data: &[u8]) -> Result<(u32, &[u8])> {
    let Some((&magic, rest)) = data.split_first() else {
        return Err(Error::Truncated {
            what: "the wire-format header",
            needed: HEADER_LEN,
            available: 0,
        });
    };
    if magic != MAGIC_BYTE {
        return Err(Error::BadMagicByte { found: magic });
    }
    let Some((id, payload)) = rest.split_first_chunk::<4>() else {
        return Err(Error::Truncated {
            what: "the wire-format header",
            needed: HEADER_LEN,
            available: data.len(),
        });
    };
    Ok((u32::from_be_bytes(*id), payload))
}

/// Appends the Protobuf message-index array for `indexes` (the path from the file to the message type).
///
/// `[0]` (and the empty path, which means the same) is written as the single byte `0`.
pub fn write_message_indexes(indexes: &[i32], out: &mut Vec<u8>) {
    if indexes.is_empty() || indexes == [0] {
        out.push(0);
        return;
    }
    write_zigzag(indexes.len() as i64, out);
    for &index in indexes {
        write_zigzag(i64::from(index), out);
    }
}

/// Reads a Protobuf message-index array; returns the path (`[0]` for the single byte `0`) and the rest.
pub fn read_message_indexes(data: &[u8]) -> Result<(Vec<i32>, &[u8])> {
    let (count, mut rest) = read_zigzag(data)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if !(0..=MAX_INDEXES).contains(&count) {
        return Err(Error::BadMessageIndex {
            indexes: vec![count],
            message: format!("the index count must be between 0 and {MAX_INDEXES}"),
        });
    }
    // Each index takes at least one byte: a count larger than the data is truncation, not an allocation.
    if count as usize > rest.len() {
        return Err(Error::Truncated {
            what: "the Protobuf message indexes",
            needed: count as usize,
            available: rest.len(),
        });
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (index, tail) = read_zigzag(rest)?;
        let index = i32::try_from(index)
            .ok()
            .filter(|i| *i >= 0)
            .ok_or_else(|| Error::BadMessageIndex {
                indexes: vec![index],
                message: "a message index must be between 0 and 2^31-1".into(),
            })?;
        indexes.push(index);
        rest = tail;
    }
    Ok((indexes, rest))
}

fn write_zigzag(value: i64, out: &mut Vec<u8>) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_zigzag(data: &[u8]) -> Result<(i64, &[u8])> {
    let mut value: u64 = 0;
    for (i, &byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Ok((decoded, &data[i + 1..]));
        }
    }
    if data.len() >= 10 {
        return Err(Error::BadMessageIndex {
            indexes: Vec::new(),
            message: "varint longer than 10 bytes".into(),
        });
    }
    Err(Error::Truncated {
        what: "a Protobuf message index varint",
        needed: data.len() + 1,
        available: data.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_errors() {
        let mut out = Vec::new();
        write_header(0x0102_0304, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4]);
        assert_eq!(read_header(&out).unwrap(), (0x0102_0304, &[][..]));
        assert!(matches!(
            read_header(&[1, 0, 0, 0, 1]),
            Err(Error::BadMagicByte { found: 1 })
        ));
        assert!(matches!(
            read_header(&[0, 0, 0]),
            Err(Error::Truncated {
                needed: 5,
                available: 3,
                ..
            })
        ));
        assert!(matches!(
            read_header(&[]),
            Err(Error::Truncated { available: 0, .. })
        ));
    }

    #[test]
    fn message_indexes_like_confluent() {
        let enc = |ix: &[i32]| {
            let mut v = Vec::new();
            write_message_indexes(ix, &mut v);
            v
        };
        assert_eq!(enc(&[0]), [0]);
        assert_eq!(enc(&[]), [0]);
        assert_eq!(enc(&[1]), [2, 2]);
        assert_eq!(enc(&[0, 0]), [4, 0, 0]);
        assert_eq!(enc(&[64]), [2, 0x80, 0x01]);
        for ix in [vec![0], vec![1], vec![2, 5, 0], vec![300, 70000]] {
            let mut data = enc(&ix);
            data.push(0xaa);
            let (read, rest) = read_message_indexes(&data).unwrap();
            assert_eq!(read, ix);
            assert_eq!(rest, [0xaa]);
        }
    }

    #[test]
    fn message_indexes_reject_bad_input() {
        assert!(matches!(
            read_message_indexes(&[]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            read_message_indexes(&[0x80]),
            Err(Error::Truncated { .. })
        ));
        // Count -1.
        assert!(matches!(
            read_message_indexes(&[1]),
            Err(Error::BadMessageIndex { .. })
        ));
        // Count 3, one index present.
        assert!(matches!(
            read_message_indexes(&[6, 2]),
            Err(Error::Truncated { .. })
        ));
        // Index -1.
        assert!(matches!(
            read_message_indexes(&[2, 1]),
            Err(Error::BadMessageIndex { .. })
        ));
        assert!(matches!(
            read_message_indexes(&[0xff; 12]),
            Err(Error::BadMessageIndex { .. })
        ));
    }
}
