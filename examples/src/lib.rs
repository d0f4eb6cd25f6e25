//! The topologies of the example applications, shared by their binaries and by the integration tests.
#![warn(missing_docs)]

pub mod checkout;
pub mod cli;
pub mod clickstream;
pub mod pizza;
pub mod us_shareholders;
pub mod word_count;
