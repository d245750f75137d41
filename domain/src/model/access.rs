use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::InvalidValue;
use crate::ids::{AreaId, DeviceId, TenantId, UserId};

/// A membership's role within one tenant (DESIGN.md, "Access model").
/// What each role may do is decided by the policy, not by this type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Full,
    Limited,
    Basic,
    ReadOnly,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Full,
        Role::Limited,
        Role::Basic,
        Role::ReadOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Full => "full",
            Role::Limited => "limited",
            Role::Basic => "basic",
            Role::ReadOnly => "read_only",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                InvalidValue::new(
                    "role",
                    format!("unknown role `{}`", crate::error::quoted(s)),
                )
            })
    }
}

/// How dangerous a write is; the policy maps it to the roles allowed to do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteLevel {
    /// Comfort setpoints.
    Basic,
    /// Schedules, heat curve, mode.
    Limited,
    /// Commissioning: PI parameters, motor runtime, limits.
    Full,
}

impl WriteLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteLevel::Basic => "basic",
            WriteLevel::Limited => "limited",
            WriteLevel::Full => "full",
        }
    }
}

impl FromStr for WriteLevel {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "basic" => Ok(WriteLevel::Basic),
            "limited" => Ok(WriteLevel::Limited),
            "full" => Ok(WriteLevel::Full),
            _ => Err(InvalidValue::new(
                "write level",
                format!("unknown write level `{}`", crate::error::quoted(s)),
            )),
        }
    }
}

/// Which devices of the tenant a membership covers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceScope {
    /// Every device of the tenant.
    #[default]
    All,
    /// The listed areas (with their whole subtree) and single devices.
    Restricted {
        areas: Vec<AreaId>,
        devices: Vec<DeviceId>,
    },
}

/// A user's access to one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub role: Role,
    pub scope: DeviceScope,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
