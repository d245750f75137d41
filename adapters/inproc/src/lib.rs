//! In-process adapters: the live bus of a single `hearth` process, and
//! in-memory stores used by use-case tests and as the benchmark baseline.

pub mod alarms;
pub mod bus;
pub mod directory;
pub mod documents;
pub mod readings;
