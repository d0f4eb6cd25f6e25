//! Subject name strategies: under which subject a topic's key or value schema is registered.
//!
//! ```
//! use schema_registry::SubjectNameStrategy;
//!
//! let s = SubjectNameStrategy::TopicName;
//! assert_eq!(s.subject("orders", false, None).unwrap(), "orders-value");
//! assert_eq!(s.subject("orders", true, None).unwrap(), "orders-key");
//!
//! let s = SubjectNameStrategy::RecordName;
//! assert_eq!(s.subject("orders", false, Some("shop.Order")).unwrap(), "shop.Order");
//!
//! let s = SubjectNameStrategy::TopicRecordName;
//! assert_eq!(s.subject("orders", false, Some("shop.Order")).unwrap(), "orders-shop.Order");
//! ```

use crate::error::{Error, Result};

/// Confluent's subject name strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SubjectNameStrategy {
    /// `<topic>-key` or `<topic>-value` (Confluent's `TopicNameStrategy`, the default): one schema lineage per
    /// topic.
    #[default]
    TopicName,
    /// The fully-qualified record name (`RecordNameStrategy`): Avro's namespace and name, Protobuf's full message
    /// name, a JSON Schema's `title`. Several record types may share a topic.
    RecordName,
    /// `<topic>-<fully-qualified record name>` (`TopicRecordNameStrategy`).
    TopicRecordName,
}

impl SubjectNameStrategy {
    /// Parses a strategy from a short name (`TopicNameStrategy`, `topic_name`, ...) or Confluent's Java class name
    /// (`io.confluent.kafka.serializers.subject.TopicNameStrategy`). `key` names the configuration key in errors.
    pub fn parse(key: &str, value: &str) -> Result<Self> {
        let short = value.trim().rsplit('.').next().unwrap_or_default();
        match short.to_ascii_lowercase().replace('_', "").as_str() {
            "topicnamestrategy" | "topicname" | "topic" => Ok(SubjectNameStrategy::TopicName),
            "recordnamestrategy" | "recordname" | "record" => Ok(SubjectNameStrategy::RecordName),
            "topicrecordnamestrategy" | "topicrecordname" | "topicrecord" => {
                Ok(SubjectNameStrategy::TopicRecordName)
            }
            _ => Err(Error::Config {
                key: key.into(),
                message: format!(
                    "unknown subject name strategy '{value}'; use TopicNameStrategy, RecordNameStrategy or \
                     TopicRecordNameStrategy"
                ),
            }),
        }
    }

    /// The subject for `topic`'s key (`is_key`) or value, given the record's fully-qualified name (needed by the
    /// record strategies only).
    pub fn subject(&self, topic: &str, is_key: bool, record_name: Option<&str>) -> Result<String> {
        let record = || {
            record_name
                .filter(|name| !name.is_empty())
                .ok_or_else(|| Error::Config {
                    key: if is_key {
                        "key.subject.name.strategy".into()
                    } else {
                        "value.subject.name.strategy".into()
                    },
                    message: format!(
                        "{self:?} needs a record name, but the schema has none (an Avro record, a Protobuf \
                         message or a JSON Schema with a title)"
                    ),
                })
        };
        match self {
            SubjectNameStrategy::TopicName => {
                Ok(format!("{topic}-{}", if is_key { "key" } else { "value" }))
            }
            SubjectNameStrategy::RecordName => Ok(record()?.to_string()),
            SubjectNameStrategy::TopicRecordName => Ok(format!("{topic}-{}", record()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_class_and_short_names() {
        for (v, s) in [
            (
                "io.confluent.kafka.serializers.subject.TopicNameStrategy",
                SubjectNameStrategy::TopicName,
            ),
            ("RecordNameStrategy", SubjectNameStrategy::RecordName),
            ("topic_record_name", SubjectNameStrategy::TopicRecordName),
        ] {
            assert_eq!(SubjectNameStrategy::parse("k", v).unwrap(), s);
        }
    }

    #[test]
    fn record_strategies_need_a_name() {
        let err = SubjectNameStrategy::RecordName
            .subject("t", false, None)
            .unwrap_err();
        assert!(
            matches!(err, Error::Config { ref key, .. } if key == "value.subject.name.strategy")
        );
    }
}
