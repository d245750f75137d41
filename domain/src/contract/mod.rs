//! Contract suites every port implementation must pass (feature `contract`).
//!
//! Each suite is an async function taking a fresh, empty implementation and
//! panicking with a clear message on the first broken promise. Adapter crates
//! call them from their tests, once per implementation (embedded and real).

// Contract suites are test code: a panic with its message is how a broken promise fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod alarm_rules;
pub mod alarms;
pub mod directory;
pub mod documents;
pub mod live;
pub mod proxy;
pub mod readings;
