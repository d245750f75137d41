//! The adapter's errors and their mapping onto the port's `StoreError`:
//! unique violations become `Conflict`, everything else `Backend` with context.

use hearth_domain::StoreError;
use sea_orm::{DbErr, SqlErr};
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
        StoreError::Backend(anyhow::Error::new(err))
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
