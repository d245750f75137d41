use serde::{Deserialize, Serialize};

use crate::error::InvalidValue;
use crate::ids::{AreaId, DeviceId, ProfileId, TenantId};

/// Where a controller answers Modbus TCP.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModbusEndpoint {
    pub host: String,
    pub port: u16,
    /// Unit address 1..=247, or 254 (ECL service address).
    pub unit: u8,
}

impl ModbusEndpoint {
    pub fn new(host: impl Into<String>, port: u16, unit: u8) -> Result<Self, InvalidValue> {
        let host = host.into();
        if host.trim().is_empty() || host.len() > 253 {
            return Err(InvalidValue::new("endpoint", "host must not be empty"));
        }
        if port == 0 {
            return Err(InvalidValue::new("endpoint", "port must not be 0"));
        }
        if !((1..=247).contains(&unit) || unit == 254) {
            return Err(InvalidValue::new(
                "endpoint",
                "unit must be 1 to 247, or 254",
            ));
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
    pub endpoint: ModbusEndpoint,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_refuses_bad_units() {
        assert!(ModbusEndpoint::new("127.0.0.1", 502, 1).is_ok());
        assert!(ModbusEndpoint::new("127.0.0.1", 502, 254).is_ok());
        assert!(ModbusEndpoint::new("127.0.0.1", 502, 0).is_err());
        assert!(ModbusEndpoint::new("127.0.0.1", 502, 250).is_err());
        assert!(ModbusEndpoint::new("", 502, 1).is_err());
    }
}
