//! What a foreign-key join sends through its two internal topics, and the keys of its subscription store.
//!
//! The left side writes typed values (it knows `K` and `KO`); the right side reads and answers with raw bytes, so
//! it never decodes the left key or re-encodes the right value. Both ends share one wire format per topic, generic
//! over the type of the trailing payload: `Vec<u8>` with the identity serde on one end, the real type on the other.

use state_store::{Serde, SerdeError, SerdeErrorKind, SharedSerde};

/// The 128-bit FNV-1a hash of a serialized left value: a response is applied only when the left row still hashes
/// to what the subscription carried. Fixed by this file, so every instance and version of the application agrees.
pub(crate) fn value_hash(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

/// What the right side does with a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Instruction {
    /// Register the left key under the foreign key and answer with the right value, or with none.
    Subscribe = 1,
    /// Register, and answer only when the right row exists (a new inner-join row has no result to take back).
    SubscribeIfPresent = 2,
    /// Forget the left key under this foreign key; no answer.
    Unsubscribe = 3,
}

impl Instruction {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Instruction::Subscribe),
            2 => Some(Instruction::SubscribeIfPresent),
            3 => Some(Instruction::Unsubscribe),
            _ => None,
        }
    }
}

/// A subscription record, keyed by the foreign key. `key` is the left key (typed on the left, bytes on the right).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription<K> {
    pub instruction: Instruction,
    /// Hash of the left value that subscribed (0 for an unsubscription).
    pub hash: u128,
    /// The left task's partition, where the response must go.
    pub partition: i32,
    pub key: K,
}

/// A response record, keyed by the left key: the hash it answers and the right value (`None`: no right row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response<VO> {
    /// `None` only for the left side's own answers about a deleted left row.
    pub hash: Option<u128>,
    pub partition: i32,
    pub value: Option<VO>,
}

const VERSION: u8 = 0;

fn malformed(what: &'static str, message: &str) -> SerdeError {
    SerdeError::new(what, SerdeErrorKind::Other, message)
}

fn header(data: &[u8], len: usize, what: &'static str) -> Result<(), SerdeError> {
    if data.len() < len {
        return Err(malformed(what, "record shorter than its header"));
    }
    if data[0] != VERSION {
        return Err(malformed(
            what,
            &format!("unknown format version {}", data[0]),
        ));
    }
    Ok(())
}

fn read_u128(b: &[u8]) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    u128::from_be_bytes(a)
}

fn read_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// `[version][instruction][hash: 16][partition: 4][left key]`.
pub(crate) struct SubscriptionSerde<K> {
    pub key: SharedSerde<K>,
}

const SUB_HEADER: usize = 1 + 1 + 16 + 4;

impl<K: 'static> Serde<Subscription<K>> for SubscriptionSerde<K> {
    fn serialize(&self, s: &Subscription<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.push(VERSION);
        out.push(s.instruction as u8);
        out.extend_from_slice(&s.hash.to_be_bytes());
        out.extend_from_slice(&s.partition.to_be_bytes());
        self.key.serialize(&s.key, out)
    }

    fn deserialize(&self, data: &[u8]) -> Result<Subscription<K>, SerdeError> {
        const WHAT: &str = "foreign-key join subscription";
        header(data, SUB_HEADER, WHAT)?;
        let instruction = Instruction::from_byte(data[1])
            .ok_or_else(|| malformed(WHAT, &format!("unknown instruction {}", data[1])))?;
        Ok(Subscription {
            instruction,
            hash: read_u128(&data[2..]),
            partition: read_i32(&data[18..]),
            key: self.key.deserialize(&data[SUB_HEADER..])?,
        })
    }
}

/// `[version][flags: 1 = hash, 2 = value][hash: 16][partition: 4][right value]`.
pub(crate) struct ResponseSerde<VO> {
    pub value: SharedSerde<VO>,
}

const RESP_HEADER: usize = 1 + 1 + 16 + 4;

impl<VO: 'static> Serde<Response<VO>> for ResponseSerde<VO> {
    fn serialize(&self, r: &Response<VO>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.push(VERSION);
        out.push(u8::from(r.hash.is_some()) | (u8::from(r.value.is_some()) << 1));
        out.extend_from_slice(&r.hash.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&r.partition.to_be_bytes());
        match &r.value {
            Some(v) => self.value.serialize(v, out),
            None => Ok(()),
        }
    }

    fn deserialize(&self, data: &[u8]) -> Result<Response<VO>, SerdeError> {
        const WHAT: &str = "foreign-key join response";
        header(data, RESP_HEADER, WHAT)?;
        let flags = data[1];
        if flags & !3 != 0 {
            return Err(malformed(WHAT, &format!("unknown flags {flags:#x}")));
        }
        let value = if flags & 2 != 0 {
            Some(self.value.deserialize(&data[RESP_HEADER..])?)
        } else {
            None
        };
        Ok(Response {
            hash: (flags & 1 != 0).then(|| read_u128(&data[2..])),
            partition: read_i32(&data[18..]),
            value,
        })
    }
}

/// The subscription store's key: `[foreign key length: u32][foreign key][left key]`. The length prefix makes
/// every left key subscribed to one foreign key a contiguous range, found by a prefix scan.
pub(crate) fn subscription_prefix(foreign_key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(foreign_key.len() as u32).to_be_bytes());
    out.extend_from_slice(foreign_key);
}

/// The subscription store's value: `[hash: 16][partition: 4]`.
pub(crate) fn encode_subscriber(hash: u128, partition: i32) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&hash.to_be_bytes());
    v.extend_from_slice(&partition.to_be_bytes());
    v
}

/// Reads a subscription store value back.
pub(crate) fn decode_subscriber(b: &[u8]) -> Option<(u128, i32)> {
    (b.len() == 20).then(|| (read_u128(b), read_i32(&b[16..])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_store::Serdes;
    use std::sync::Arc;

    #[test]
    fn subscriptions_and_responses_round_trip_between_typed_and_byte_ends() {
        let typed = SubscriptionSerde {
            key: Arc::new(Serdes::string()),
        };
        let raw = SubscriptionSerde::<Vec<u8>> {
            key: Arc::new(Serdes::bytes()),
        };
        let s = Subscription {
            instruction: Instruction::SubscribeIfPresent,
            hash: value_hash(b"v"),
            partition: 3,
            key: "left".to_string(),
        };
        let mut buf = Vec::new();
        typed.serialize(&s, &mut buf).unwrap();
        assert_eq!(typed.deserialize(&buf).unwrap(), s);
        assert_eq!(raw.deserialize(&buf).unwrap().key, b"left".to_vec());

        let typed = ResponseSerde {
            value: Arc::new(Serdes::i64()),
        };
        for r in [
            Response {
                hash: Some(7),
                partition: 1,
                value: Some(-5i64),
            },
            Response {
                hash: None,
                partition: 0,
                value: None,
            },
        ] {
            buf.clear();
            typed.serialize(&r, &mut buf).unwrap();
            assert_eq!(typed.deserialize(&buf).unwrap(), r);
        }
        assert!(typed.deserialize(&[0, 1]).is_err());
        assert!(typed.deserialize(&[9; RESP_HEADER]).is_err());
    }

    #[test]
    fn hash_tells_values_apart() {
        assert_ne!(value_hash(b""), value_hash(b"\0"));
        assert_ne!(value_hash(b"ab"), value_hash(b"ba"));
        assert_eq!(value_hash(b"same"), value_hash(b"same"));
    }
}
