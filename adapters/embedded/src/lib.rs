//! Embedded default stores in the data directory, no server needed: device
//! profiles in `documents.redb`, alarm rules in `alarm_rules.redb`, readings in `readings.redb` (both redb).

mod error;

pub mod alarm_rules;
pub mod documents;
pub mod readings;

pub use alarm_rules::EmbeddedAlarmRules;
pub use documents::EmbeddedDocuments;
pub use error::EmbeddedError;
pub use readings::{EmbeddedReadings, Retention, RetentionPolicy, Tuning};

use std::path::{Path, PathBuf};

use redb::Database;

/// Opens (or creates) a redb file, creating the data directory if needed.
fn open_database(dir: &Path, file: &str) -> Result<Database, EmbeddedError> {
    std::fs::create_dir_all(dir).map_err(|source| EmbeddedError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path: PathBuf = dir.join(file);
    Database::create(&path).map_err(|source| EmbeddedError::Open { path, source })
}

/// Runs redb's synchronous work on the blocking pool, off the async workers.
async fn blocking<T, F>(work: F) -> Result<T, EmbeddedError>
where
    F: FnOnce() -> Result<T, EmbeddedError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await?
}
