use serde::{Deserialize, Serialize};

use crate::error::InvalidValue;
use crate::ids::TenantId;

/// A short, URL-safe, lowercase tenant handle such as `acme`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        let ok = (2..=40).contains(&value.len())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(value))
        } else {
            Err(InvalidValue::new(
                "tenant slug",
                "2 to 40 characters of lowercase letters, digits and `-`",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub name: String,
}
