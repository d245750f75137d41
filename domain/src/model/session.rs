//! Refresh tokens: one row per token issued, grouped by the login (family)
//! they were rotated from. Only a hash of the token is ever stored.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::ids::{SessionFamily, TenantId, UserId};

/// One refresh token as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshSession {
    /// [`RefreshTokenHash`] of the token.
    pub token_hash: RefreshTokenHash,
    pub family: SessionFamily,
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Rotated already: presenting it again means it was copied.
    pub retired: bool,
}

/// The lowercase hex SHA-256 of a refresh token. The tokens are 256 random
/// bits, so a fast hash is enough: nobody can guess one from its hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefreshTokenHash(String);

impl RefreshTokenHash {
    pub fn of(token: &str) -> Self {
        Self(hex::encode(Sha256::digest(token.as_bytes())))
    }

    /// A hash read back from a store (64 hex digits), or `None`.
    pub fn from_stored(hash: &str) -> Option<Self> {
        (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(hash.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
