//! The error type of this crate.

use std::fmt;

/// What went wrong while turning a value into bytes or bytes into a value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SerdeErrorKind {
    /// The bytes have the wrong length for a fixed-width type.
    InvalidLength {
        /// Bytes the type needs.
        expected: usize,
        /// Bytes that were given.
        actual: usize,
    },
    /// The bytes are not valid UTF-8.
    InvalidUtf8,
    /// A null (absent) key or value reached a serde that cannot represent null.
    UnexpectedNull,
    /// JSON could not be encoded or decoded.
    Json,
    /// Any other failure, described by the message.
    Other,
}

/// An error raised by a [`Serde`](crate::serde::Serde): which type, what kind of failure, and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerdeError {
    /// The Rust type being encoded or decoded.
    pub type_name: &'static str,
    /// The kind of failure.
    pub kind: SerdeErrorKind,
    /// A human-readable description.
    pub message: String,
}

impl SerdeError {
    /// Creates an error for `type_name` of the given kind.
    pub fn new(type_name: &'static str, kind: SerdeErrorKind, message: impl Into<String>) -> Self {
        SerdeError {
            type_name,
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for SerdeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot (de)serialize {}: {}",
            self.type_name, self.message
        )
    }
}

impl std::error::Error for SerdeError {}

/// Errors of the state stores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A key or value could not be (de)serialized by the store's serdes.
    #[error("store '{store}': {source}")]
    Serde {
        /// The store.
        store: String,
        /// The underlying error.
        #[source]
        source: SerdeError,
    },
    /// RocksDB reported an error.
    #[error("store '{store}': RocksDB error: {message}")]
    RocksDb {
        /// The store.
        store: String,
        /// RocksDB's message.
        message: String,
    },
    /// A filesystem operation failed.
    #[error("store '{store}': I/O error on {path}: {source}")]
    Io {
        /// The store.
        store: String,
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The changelog hook refused a write.
    #[error("store '{store}': changelog write failed: {message}")]
    Changelog {
        /// The store.
        store: String,
        /// What the hook reported.
        message: String,
    },
    /// A thread panicked while holding the store's lock; the store's content is suspect.
    #[error("store '{store}' is poisoned: a thread panicked while writing to it")]
    Poisoned {
        /// The store.
        store: String,
    },
    /// A window or session before the epoch: windowed stores order windows by their start's bytes, which only
    /// works for times >= 0 (Kafka rejects negative record timestamps too).
    #[error(
        "store '{store}': window time {time} is negative; windowed stores keep times >= 0 only"
    )]
    NegativeWindowTime {
        /// The store.
        store: String,
        /// The offending time.
        time: i64,
    },
    /// The store's files are held open by another process or thread (RocksDB's `LOCK` file): not a sign of
    /// damage, so the store must not be wiped; the holder has to close it first.
    #[error("store '{store}': {path} is in use by another process or thread")]
    Locked {
        /// The store.
        store: String,
        /// The store's directory.
        path: String,
    },
    /// The store's files are damaged (RocksDB reported corruption while opening them). A store with a changelog
    /// is rebuilt from it; one without has lost its data.
    #[error("store '{store}': the files in {path} are corrupt: {message}")]
    Corrupt {
        /// The store.
        store: String,
        /// The store's directory.
        path: String,
        /// RocksDB's message.
        message: String,
    },
    /// The store was used after it was closed.
    #[error("store '{store}' is closed")]
    Closed {
        /// The store.
        store: String,
    },
}
