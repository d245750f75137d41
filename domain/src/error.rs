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

/// Most characters of client input an error message quotes: a message must
/// not grow with its input (a 1 MB id must not give a 1 MB error).
pub const MAX_QUOTED_CHARS: usize = 40;

/// `input` as an error message may quote it: whole when short, else its
/// first [`MAX_QUOTED_CHARS`] characters and `…`.
pub fn quoted(input: &str) -> String {
    match input.char_indices().nth(MAX_QUOTED_CHARS) {
        None => input.to_owned(),
        Some((cut, _)) => format!("{}…", &input[..cut]),
    }
}

/// What every storage port returns on failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A unique constraint was violated (duplicate email, duplicate name...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The record a change names does not exist (for this tenant), where a
    /// port's contract says so (e.g. acknowledging a missing alarm).
    #[error("{0} not found")]
    NotFound(String),
    /// The store cannot be reached now (connection refused or reset, a
    /// timeout, no pooled connection): the use case did not happen and may
    /// be retried. Details are for logs, never for clients.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    /// The backend failed; details are for logs, never for clients.
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

/// The error of every read-side use case and of admin operations.
///
/// Drivers map these one-to-one onto their own error codes
/// (`FORBIDDEN`, `NOT_FOUND`, `BAD_USER_INPUT`, `CONFLICT`, `UNAVAILABLE`,
/// `INTERNAL`).
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
    /// A store the use case needs is down; nothing was changed, retry later.
    #[error("a store is unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<StoreError> for DomainError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => DomainError::Conflict(what),
            StoreError::NotFound(what) => DomainError::NotFound(what),
            StoreError::Unavailable(err) => DomainError::Unavailable(err),
            StoreError::Backend(err) => DomainError::Internal(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_input_is_bounded_and_cut_on_a_character_boundary() {
        // Given a short input, a long one, and a long one of multi-byte characters
        let long = "x".repeat(1_000_000);
        let wide = "ä".repeat(100);
        // Then short input is quoted whole, long input is cut with an ellipsis
        assert_eq!(quoted("abc"), "abc");
        assert_eq!(quoted(&long).chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(quoted(&long).ends_with('…'));
        assert_eq!(quoted(&wide), format!("{}…", "ä".repeat(MAX_QUOTED_CHARS)));
    }
}
