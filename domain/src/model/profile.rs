use serde::{Deserialize, Serialize};

use crate::error::InvalidValue;
use crate::ids::{PointKey, ProfileId, TenantId};
use crate::model::access::WriteLevel;
use crate::model::reading::Quality;

/// Where a point lives on its device, in the field adapter's own terms
/// (register tables, addresses, data types, word order, scale and
/// offset). Stored inline in the point's document, next to the fields the
/// domain knows; the domain keeps and hands it on but never reads it, so a
/// new protocol needs no change here. The field gateway checks it
/// ([`FieldGateway::check_profile`]) before a profile is stored.
///
/// [`FieldGateway::check_profile`]: crate::ports::FieldGateway::check_profile
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldAddress(pub serde_json::Map<String, serde_json::Value>);

impl FieldAddress {
    /// The address's entries, for the adapter that understands them.
    pub fn entries(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }
}

/// One value a device exposes: where it lives and how to read and write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointDefinition {
    pub key: PointKey,
    pub name: String,
    /// Where the point lives on the device (the protocol's own fields).
    #[serde(flatten)]
    pub address: FieldAddress,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub writable: bool,
    #[serde(default = "default_write_level")]
    pub write_level: WriteLevel,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// Named values of an enumerated point (a mode); when present, writes
    /// must pick one of them.
    #[serde(default)]
    pub options: Vec<PointOption>,
    /// Readings outside `[plausible_min, plausible_max]` are not physical
    /// values but fault codes (an open ECL sensor reads 192 °C) and get
    /// quality `Bad`.
    #[serde(default)]
    pub plausible_min: Option<f64>,
    #[serde(default)]
    pub plausible_max: Option<f64>,
}

/// One named value of an enumerated point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointOption {
    pub value: f64,
    pub label: String,
}

fn default_write_level() -> WriteLevel {
    WriteLevel::Full
}

impl PointDefinition {
    /// The quality of a freshly read value: `Bad` when it is implausible.
    pub fn quality_of(&self, value: f64) -> Quality {
        let below = self.plausible_min.is_some_and(|min| value < min);
        let above = self.plausible_max.is_some_and(|max| value > max);
        if below || above || !value.is_finite() {
            Quality::Bad
        } else {
            Quality::Good
        }
    }

    /// The label of `value` for enumerated points.
    pub fn label_of(&self, value: f64) -> Option<&str> {
        self.options
            .iter()
            .find(|o| o.value == value)
            .map(|o| o.label.as_str())
    }

    /// Refuses a value the point's definition does not allow: not a finite
    /// number, not one of its options, or outside `[min, max]`. Whether the
    /// device can represent it (resolution, value width) is the field
    /// gateway's check ([`FieldGateway::check_value`]).
    ///
    /// [`FieldGateway::check_value`]: crate::ports::FieldGateway::check_value
    pub fn check_value(&self, value: f64) -> Result<(), InvalidValue> {
        if !value.is_finite() {
            return Err(InvalidValue::new("value", "must be a finite number"));
        }
        if !self.options.is_empty() && self.label_of(value).is_none() {
            let allowed: Vec<String> = self
                .options
                .iter()
                .map(|o| format!("{} ({})", o.value, o.label))
                .collect();
            return Err(InvalidValue::new(
                "value",
                format!("{value} is not one of {}", allowed.join(", ")),
            ));
        }
        if let Some(min) = self.min {
            if value < min {
                return Err(InvalidValue::new(
                    "value",
                    format!("{value} is below the minimum {min}"),
                ));
            }
        }
        if let Some(max) = self.max {
            if value > max {
                return Err(InvalidValue::new(
                    "value",
                    format!("{value} is above the maximum {max}"),
                ));
            }
        }
        Ok(())
    }
}

/// The points of a controller model and how often to poll them. Stored as
/// a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    pub id: ProfileId,
    /// `None` for built-in profiles every tenant may use.
    pub tenant_id: Option<TenantId>,
    pub name: String,
    /// How often the poller reads the device, in milliseconds.
    pub poll_interval_ms: u32,
    /// How often it reads the device while somebody watches that device's
    /// live values (a subscription naming it), so an operator looking at a
    /// plant sees changes within a fraction of a second while the rest of
    /// the fleet is polled at the gentler `poll_interval_ms`. `None`: always
    /// `poll_interval_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_poll_interval_ms: Option<u32>,
    pub points: Vec<PointDefinition>,
}

impl DeviceProfile {
    /// The fastest a watched device may be polled. One request in flight per
    /// link still holds, so a slow device is simply polled as fast as it answers.
    pub const MIN_LIVE_POLL_INTERVAL_MS: u32 = 50;

    /// Checks the invariants a profile must hold before it is stored.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if self.points.is_empty() {
            return Err(InvalidValue::new(
                "profile",
                "must define at least one point",
            ));
        }
        if !(100..=3_600_000).contains(&self.poll_interval_ms) {
            return Err(InvalidValue::new(
                "profile",
                "poll interval must be 100 ms to 1 h",
            ));
        }
        if let Some(live) = self.live_poll_interval_ms {
            if !(Self::MIN_LIVE_POLL_INTERVAL_MS..=self.poll_interval_ms).contains(&live) {
                return Err(InvalidValue::new(
                    "profile",
                    format!(
                        "live poll interval must be {} ms to the poll interval ({} ms)",
                        Self::MIN_LIVE_POLL_INTERVAL_MS,
                        self.poll_interval_ms
                    ),
                ));
            }
        }
        let mut keys = std::collections::HashSet::new();
        for point in &self.points {
            if !keys.insert(point.key.as_str()) {
                return Err(InvalidValue::new(
                    "profile",
                    format!("point `{}` is defined twice", point.key),
                ));
            }
            if let (Some(min), Some(max)) = (point.min, point.max) {
                if min > max {
                    return Err(InvalidValue::new(
                        "profile",
                        format!("point `{}` has min above max", point.key),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn point(&self, key: &PointKey) -> Option<&PointDefinition> {
        self.points.iter().find(|p| &p.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point() -> PointDefinition {
        PointDefinition {
            key: PointKey::new("p").expect("valid key"),
            name: "p".into(),
            address: FieldAddress::default(),
            unit: "°C".into(),
            writable: true,
            write_level: WriteLevel::Basic,
            min: Some(-50.0),
            max: Some(150.0),
            options: Vec::new(),
            plausible_min: None,
            plausible_max: Some(120.0),
        }
    }

    #[test]
    fn values_outside_the_definition_are_refused() {
        let p = point();
        assert!(p.check_value(21.5).is_ok());
        assert!(p.check_value(150.1).is_err());
        assert!(p.check_value(-50.1).is_err());
        assert!(p.check_value(f64::NAN).is_err());
        let mut mode = point();
        mode.options = vec![PointOption {
            value: 1.0,
            label: "comfort".into(),
        }];
        assert!(mode.check_value(1.0).is_ok());
        assert!(mode.check_value(2.0).is_err());
    }

    #[test]
    fn implausible_readings_are_bad() {
        let p = point();
        assert_eq!(p.quality_of(21.5), Quality::Good);
        assert_eq!(p.quality_of(192.0), Quality::Bad);
        assert_eq!(p.quality_of(f64::INFINITY), Quality::Bad);
    }

    #[test]
    fn the_field_address_is_kept_inline_and_unread() {
        // Given a stored point with protocol fields next to the domain's
        let json =
            r#"{"key":"p","name":"p","table":"holding","address":10,"scale":0.1,"writable":true}"#;
        // When it is read and written again
        let p: PointDefinition = serde_json::from_str(json).expect("a point");
        let again = serde_json::to_value(&p).expect("serialises");
        // Then the protocol fields survive untouched, inline
        assert_eq!(p.address.entries().len(), 3);
        assert_eq!(again["table"], "holding");
        assert_eq!(again["scale"], 0.1);
        assert!(p.writable);
    }
}
