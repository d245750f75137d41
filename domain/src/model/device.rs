use serde::{Deserialize, Serialize};

use crate::error::InvalidValue;
use crate::ids::{AreaId, DeviceId, ProfileId, TenantId};

/// Where a controller answers on the network: a host, a port, and the unit
/// (station) behind that endpoint. What a valid unit is belongs to the
/// protocol (a unit id of one byte, or a device instance), so the
/// field gateway checks it ([`FieldGateway::check_endpoint`]); this type only
/// holds what every protocol needs.
///
/// [`FieldGateway::check_endpoint`]: crate::ports::FieldGateway::check_endpoint
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub unit: u32,
}

impl Endpoint {
    /// Longest host name DNS allows.
    pub const MAX_HOST_LEN: usize = 253;

    pub fn new(host: impl Into<String>, port: u16, unit: u32) -> Result<Self, InvalidValue> {
        let host = host.into();
        if host.trim().is_empty() {
            return Err(InvalidValue::new("endpoint", "host must not be empty"));
        }
        if host.len() > Self::MAX_HOST_LEN {
            return Err(InvalidValue::new(
                "endpoint",
                "host must be at most 253 characters",
            ));
        }
        if port == 0 {
            return Err(InvalidValue::new("endpoint", "port must not be 0"));
        }
        Ok(Self { host, port, unit })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub tenant_id: TenantId,
    pub area_id: Option<AreaId>,
    pub name: String,
    pub profile_id: ProfileId,
    pub endpoint: Endpoint,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_refuses_what_no_protocol_can_use() {
        assert!(Endpoint::new("127.0.0.1", 502, 1).is_ok());
        assert!(Endpoint::new("", 502, 1).is_err());
        assert!(Endpoint::new("  ", 502, 1).is_err());
        assert!(Endpoint::new("127.0.0.1", 0, 1).is_err());
        assert!(Endpoint::new("h".repeat(254), 502, 1).is_err());
    }
}
