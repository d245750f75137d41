//! The embedded stores' error; details go to logs through `StoreError::Backend`.

use std::path::PathBuf;

use hearth_domain::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is locked by another process, corrupt, or not a redb file.
    #[error(
        "cannot open {path} (in use by another process, corrupt, or not a redb database): {source}"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// Boxed: `redb::Error` is large and would bloat every `Result`.
    #[error("embedded database error: {0}")]
    Database(Box<redb::Error>),
    /// A stored profile no longer parses (written by an incompatible version,
    /// or edited by hand).
    #[error("stored profile `{id}` is unreadable: {source}")]
    CorruptProfile {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode profile `{id}`: {source}")]
    EncodeProfile {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

// redb has one error type per operation; all of them mean "the database
// failed", so they funnel into `redb::Error`.
macro_rules! from_redb {
    ($($error:ty),+) => {$(
        impl From<$error> for EmbeddedError {
            fn from(err: $error) -> Self {
                EmbeddedError::Database(Box::new(err.into()))
            }
        }
    )+};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<EmbeddedError> for StoreError {
    fn from(err: EmbeddedError) -> Self {
        StoreError::Backend(err.into())
    }
}
