//! Records and their metadata.

use std::sync::Arc;

/// One record header: a key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value (`None` is a null header value).
    pub value: Option<Vec<u8>>,
}

/// Record headers, in order; keys may repeat, as in Kafka. Empty headers do not allocate, and take one word in a
/// [`Record`] (most records have none; a record crosses every processor by value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
// The box is the point: a thin pointer (one word, null when empty) instead of a Vec's three words in every record.
#[allow(clippy::box_collection)]
pub struct Headers(Option<Box<Vec<Header>>>);

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Headers(None)
    }
    /// Appends a header.
    pub fn add(&mut self, key: impl Into<String>, value: Option<Vec<u8>>) -> &mut Self {
        self.0.get_or_insert_with(Box::default).push(Header {
            key: key.into(),
            value,
        });
        self
    }
    /// Appends a header, builder style.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.add(key, Some(value.into()));
        self
    }
    /// The value of the last header named `key`.
    pub fn last(&self, key: &str) -> Option<&Header> {
        self.iter().rev().find(|h| h.key == key)
    }
    /// Removes every header named `key`.
    pub fn remove(&mut self, key: &str) {
        if let Some(list) = &mut self.0 {
            list.retain(|h| h.key != key);
            if list.is_empty() {
                self.0 = None;
            }
        }
    }
    /// All headers in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.as_deref().map_or(&[][..], Vec::as_slice).iter()
    }
    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |l| l.len())
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A typed record flowing between processors: key, value, timestamp (ms since the epoch) and headers.
///
/// Where the record came from (topic, partition, offset) is known to the
/// [`ProcessorContext`](crate::ProcessorContext) while it is processed, as
/// [`record_metadata`](crate::ProcessorContext::record_metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in milliseconds since the epoch.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    /// A record without headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record {
            key,
            value,
            timestamp,
            headers: Headers::new(),
        }
    }
    /// The same record with another key.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
    /// The same record with another key and value.
    pub fn with_key_value<K2, V2>(self, key: K2, value: V2) -> Record<K2, V2> {
        Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }
    /// The same record with other headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

/// Where a record was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordMetadata {
    /// Topic (the full name, internal topics included).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// A record as bytes, as read from or written to a topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawRecord {
    /// Key bytes (`None` is a null key).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None` is a null value, a tombstone on compacted topics).
    pub value: Option<Vec<u8>>,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
    /// Offset in its partition, when it was read from one.
    pub offset: i64,
}

/// A record as borrowed bytes, as handed to a task: from a consumer's message without copying, or from a
/// [`RawRecord`].
#[derive(Debug, Clone)]
pub struct RawRecordRef<'a> {
    /// Key bytes (`None` is a null key).
    pub key: Option<&'a [u8]>,
    /// Value bytes (`None` is a null value).
    pub value: Option<&'a [u8]>,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// Headers (owned: most records have none, which costs nothing).
    pub headers: Headers,
    /// Offset in its partition.
    pub offset: i64,
}

impl RawRecord {
    /// A borrowed view (headers are cloned).
    pub fn as_ref(&self) -> RawRecordRef<'_> {
        RawRecordRef {
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            timestamp: self.timestamp,
            headers: self.headers.clone(),
            offset: self.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_take_one_word_and_compare_by_content() {
        assert_eq!(std::mem::size_of::<Headers>(), std::mem::size_of::<usize>());
        let mut h = Headers::new().with("a", "1").with("b", "2").with("a", "3");
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.last("a").and_then(|x| x.value.as_deref()),
            Some(&b"3"[..])
        );
        let keys: Vec<&str> = h.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "a"]);
        h.remove("a");
        assert_eq!(h, Headers::new().with("b", "2"));
        h.remove("b");
        // Emptied headers equal headers that never had any.
        assert!(h.is_empty());
        assert_eq!(h, Headers::new());
        assert_eq!((&h).into_iter().count(), 0);
    }
}
