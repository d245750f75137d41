//! Relational [`Directory`](hearth_domain::ports::Directory) on SeaORM: SQLite
//! for the embedded default, MySQL/MariaDB in production, one set of
//! migrations for both. The same connection serves the `AlarmStore`
//! (alarm occurrences are relational, DESIGN.md).
//!
//! SeaORM entities are private; rows become domain types at the boundary and
//! a row the domain refuses is reported as a backend error, never passed on.

mod alarms;
mod directory;
mod entity;
mod error;
mod migration;

pub use directory::SqlDirectory;
