//! The adapter's errors and their mapping onto the port's `StoreError`:
//! unique violations become `Conflict`, a server that cannot be reached
//! (refused, reset, timed out, no pooled connection) `Unavailable`, everything
//! else `Backend` with context.

use hearth_domain::StoreError;
use sea_orm::{sqlx, ConnAcquireErr, DbErr, RuntimeErr, SqlErr};
use thiserror::Error;

/// What can go wrong inside the adapter, before it reaches the port.
#[derive(Debug, Error)]
pub(crate) enum SqlError {
    #[error("{context}")]
    Db {
        context: &'static str,
        #[source]
        source: DbErr,
    },
    /// A stored row the domain refuses: corrupted or written by something else.
    #[error("row {id} of `{table}` is invalid: {reason}")]
    InvalidRow {
        table: &'static str,
        id: String,
        reason: String,
    },
    /// A write that matched no row (e.g. the password of an unknown user).
    #[error("{0}")]
    NotFound(&'static str),
}

impl From<SqlError> for StoreError {
    fn from(err: SqlError) -> Self {
        let outage = matches!(&err, SqlError::Db { source, .. } if is_outage(source));
        if outage {
            StoreError::Unavailable(anyhow::Error::new(err))
        } else {
            StoreError::Backend(anyhow::Error::new(err))
        }
    }
}

/// Whether `err` says the server could not be reached rather than that it
/// refused the statement: the use case may succeed when retried later.
pub(crate) fn is_outage(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            true
        }
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => is_sqlx_outage(e),
        // sea-orm reports some connection failures as text only.
        DbErr::Conn(RuntimeErr::Internal(_)) => true,
        _ => false,
    }
}

fn is_sqlx_outage(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // MySQL's own "server has gone away" / "lost connection" /
        // "too many connections" / shutdown in progress.
        sqlx::Error::Database(e) => matches!(
            e.code().as_deref(),
            Some("2006" | "2013" | "1040" | "1053" | "08S01")
        ),
        // The connection closed under a statement: sqlx reports the half
        // read packet as a protocol error.
        sqlx::Error::Protocol(message) => {
            message.contains("closed") || message.contains("unexpected end")
        }
        _ => false,
    }
}

/// Wraps a database error with what the adapter was doing.
pub(crate) fn backend(context: &'static str) -> impl FnOnce(DbErr) -> StoreError {
    move |source| SqlError::Db { context, source }.into()
}

/// Like [`backend`], but a unique violation is the caller's `Conflict`,
/// described by `conflict` (client-safe: no table or index names).
pub(crate) fn on_insert(
    context: &'static str,
    conflict: impl FnOnce() -> String,
) -> impl FnOnce(DbErr) -> StoreError {
    move |source| match source.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Conflict(conflict()),
        _ => SqlError::Db { context, source }.into(),
    }
}

pub(crate) fn invalid_row(table: &'static str, id: &str, reason: impl ToString) -> StoreError {
    SqlError::InvalidRow {
        table,
        id: id.to_owned(),
        reason: reason.to_string(),
    }
    .into()
}
