//! Typed identifiers, so a `TenantId` can never be passed where a `DeviceId` is meant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use uuid::Uuid;

use crate::error::InvalidValue;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random identifier.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|_| InvalidValue::new(stringify!($name), format!("`{}` is not a valid id", crate::error::quoted(s))))
            }
        }
    };
}

uuid_id!(
    /// A customer organisation; the unit of isolation.
    TenantId
);
uuid_id!(
    /// A person who can log in.
    UserId
);
uuid_id!(
    /// One login and every refresh token rotated from it: revoked as a whole
    /// on logout or when a retired refresh token is presented again.
    SessionFamily
);
uuid_id!(
    /// A node in a tenant's area tree (site, building, plant room).
    AreaId
);
uuid_id!(
    /// A field controller.
    DeviceId
);
uuid_id!(
    /// An alarm rule document of a tenant.
    AlarmRuleId
);
uuid_id!(
    /// One occurrence of an alarm: raised once, acknowledged, cleared.
    AlarmId
);

/// Keys are cloned into every reading and every latest-value entry, millions
/// of times a second when a thousand devices are polled. A key of up to 23
/// bytes (every built-in one) is stored inline, so a clone is a plain copy;
/// a shared `Arc<str>` would make every poller thread bump the same reference
/// count for the same key of the same profile.
macro_rules! key_id {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(SmolStr);

        impl $name {
            /// Accepts 1..=max characters of `[A-Za-z0-9_.-]`.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let value = value.into();
                let ok = !value.is_empty()
                    && value.len() <= $max
                    && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                if ok {
                    Ok(Self(SmolStr::new(value)))
                } else {
                    Err(InvalidValue::new(
                        stringify!($name),
                        format!("`{}` must be 1 to {} characters of letters, digits, `_`, `-` or `.`", crate::error::quoted(&value), $max),
                    ))
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

key_id!(
    /// The key of a device profile document, e.g. `ecl-comfort-310`.
    ProfileId,
    64
);
key_id!(
    /// The key of a point within a profile, e.g. `room_setpoint_comfort`.
    PointKey,
    64
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings() {
        let id = DeviceId::new();
        assert_eq!(id.to_string().parse::<DeviceId>().ok(), Some(id));
        assert!("not-a-uuid".parse::<TenantId>().is_err());
    }

    #[test]
    fn keys_refuse_empty_and_odd_characters() {
        assert!(PointKey::new("").is_err());
        assert!(PointKey::new("a b").is_err());
        assert!(PointKey::new("x".repeat(65)).is_err());
        assert!(PointKey::new("room_setpoint.comfort-1").is_ok());
    }
}
