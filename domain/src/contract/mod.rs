//! Contract suites every port implementation must pass (feature `contract`).
//!
//! Each suite is an async function taking a fresh, empty implementation and
//! panicking with a clear message on the first broken promise. Adapter crates
//! call them from their tests, once per implementation (embedded and real).

pub mod directory;
pub mod documents;
pub mod live;
pub mod readings;
