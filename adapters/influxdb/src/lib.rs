//! [`ReadingStore`](hearth_domain::ports::ReadingStore) on InfluxDB: batched
//! line-protocol writes to `/api/v2/write`, history read back through Flux
//! (`/api/v2/query`) or InfluxQL (v1 `/query`), as the config chooses.
//!
//! Speaks plain HTTP and parses every answer itself, so no server reply can
//! panic Hearth; every failure is a `StoreError::Backend`.

mod config;
mod error;
mod flux;
mod influxql;
mod line_protocol;
mod spool;
mod store;

pub use config::{InfluxConfig, QueryLanguage, Token};
pub use error::InfluxError;
pub use line_protocol::{encode_batch, MEASUREMENT};
pub use store::InfluxReadings;
