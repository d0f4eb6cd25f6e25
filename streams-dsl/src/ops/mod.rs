//! The processors behind the DSL's operators, one per file.

pub(crate) mod branch;
pub(crate) mod filter;
pub(crate) mod flat_map;
pub(crate) mod map;
pub(crate) mod passthrough;
pub(crate) mod peek;
pub(crate) mod session_aggregate;
pub(crate) mod sliding_aggregate;
pub(crate) mod stream_aggregate;
pub(crate) mod stream_join;
pub(crate) mod stream_table_join;
pub(crate) mod suppress;
pub(crate) mod table_aggregate;
pub(crate) mod table_filter;
pub(crate) mod table_group_by;
pub(crate) mod table_map_values;
pub(crate) mod table_materialize;
pub(crate) mod table_source;
pub(crate) mod table_table_join;
pub(crate) mod table_to_stream;
pub(crate) mod window_aggregate;
