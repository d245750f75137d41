//! Errors shared across use cases, and the error contract of the storage ports.

use thiserror::Error;

/// A value that a constructor refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("invalid {what}: {reason}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub reason: String,
}

impl InvalidValue {
    pub fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }
}

/// What every storage port returns on failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A unique constraint was violated (duplicate email, duplicate name...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend failed; details are for logs, never for clients.
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

/// The error of every read-side use case and of admin operations.
///
/// Drivers map these one-to-one onto their own error codes
/// (`FORBIDDEN`, `NOT_FOUND`, `BAD_USER_INPUT`, `CONFLICT`, `INTERNAL`).
#[derive(Debug, Error)]
pub enum DomainError {
    /// The caller is not authenticated (no, expired or forged credentials).
    #[error("authentication required")]
    Unauthenticated,
    /// The caller may see the resource but not do this to it.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The resource does not exist *for this caller*: other tenants' and
    /// out-of-scope resources are reported exactly like missing ones.
    #[error("{0} not found")]
    NotFound(String),
    /// The input is malformed or out of range.
    #[error(transparent)]
    InvalidInput(#[from] InvalidValue),
    /// The field device did not answer.
    #[error("device unreachable: {0}")]
    DeviceUnreachable(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<StoreError> for DomainError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => DomainError::Conflict(what),
            StoreError::Backend(err) => DomainError::Internal(err),
        }
    }
}
