use std::fmt;

use crate::error::InvalidValue;
use crate::ids::UserId;

/// A lower-cased email address with one `@` and a non-empty local part and domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn new(value: &str) -> Result<Self, InvalidValue> {
        let value = value.trim().to_lowercase();
        let valid = value.len() <= 254
            && matches!(value.split_once('@'), Some((local, domain))
                if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                   && !domain.starts_with('.') && !domain.ends_with('.'))
            && !value.chars().any(char::is_whitespace);
        if valid {
            Ok(Self(value))
        } else {
            Err(InvalidValue::new("email", "not a valid email address"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An opaque PHC-format password hash. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn from_phc(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: EmailAddress,
    pub display_name: String,
    pub password_hash: Option<PasswordHash>,
    /// A disabled user cannot log in, and their tokens stop working.
    pub disabled: bool,
    /// Tokens issued before this instant are refused (set by `logout`).
    pub tokens_valid_from: Option<chrono::DateTime<chrono::Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_validated() {
        assert_eq!(
            EmailAddress::new(" Admin@Acme.Test ").map(|e| e.to_string()),
            Ok("admin@acme.test".to_string())
        );
        for bad in ["", "a", "@x.y", "a@", "a@b", "a b@c.d", "a@@c.d", "a@.c"] {
            assert!(EmailAddress::new(bad).is_err(), "{bad} accepted");
        }
    }
}
