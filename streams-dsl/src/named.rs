//! `Named`: a name of your choosing for an operator's processor (Kafka Streams' `Named`).

use streams_core::StreamsError;

use crate::builder::BuilderInner;

/// Names the processor an operator adds, in place of a generated `PREFIX-<n>` name: the name shows in the
/// topology description, and names what derives from it (the repartition topic of
/// [`KStream::to_table_named`](crate::KStream::to_table_named), say). As in Kafka Streams, a name is 1 to 249
/// characters among ASCII letters, digits, `.`, `_` and `-`; another name is reported by
/// [`StreamsBuilder::build`](crate::StreamsBuilder::build).
///
/// ```
/// # use streams_dsl::*;
/// let builder = StreamsBuilder::new();
/// builder.stream::<String, String>("in", Consumed::new())
///     .to_table_named(Named::as_name("latest-by-key"), Materialized::new());
/// let topology = builder.build().unwrap();
/// assert!(topology.describe().to_string().contains("Processor: latest-by-key"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub(crate) name: String,
}

impl Named {
    /// The name `name`.
    pub fn as_name(name: impl Into<String>) -> Self {
        Named { name: name.into() }
    }

    /// The name, checked; a generated one (recording the error) when it is not valid.
    pub(crate) fn resolve(&self, b: &mut BuilderInner, prefix: &str) -> String {
        let valid = !self.name.is_empty()
            && self.name.len() <= 249
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid {
            self.name.clone()
        } else {
            b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                "Named::as_name({:?}): a name is 1 to 249 characters among ASCII letters, digits, '.', '_' and '-'",
                self.name
            ))));
            b.name(prefix)
        }
    }
}

/// The processor name: `named`'s, or a generated `<prefix><n>`.
pub(crate) fn processor_name(b: &mut BuilderInner, named: Option<&Named>, prefix: &str) -> String {
    match named {
        Some(n) => n.resolve(b, prefix),
        None => b.name(prefix),
    }
}
