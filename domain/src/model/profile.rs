use serde::{Deserialize, Serialize};

use crate::error::InvalidValue;
use crate::ids::{PointKey, ProfileId, TenantId};
use crate::model::access::WriteLevel;
use crate::model::reading::Quality;

/// Which Modbus table a point lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    /// Read with FC03, written with FC06/FC16.
    Holding,
    /// Read-only, FC04.
    Input,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl DataType {
    /// Number of 16-bit registers the type occupies.
    pub fn words(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
        }
    }
}

/// Order of the two registers of a 32-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// Most significant word first (Modbus convention).
    #[default]
    HighFirst,
    LowFirst,
}

/// A multiplier from raw register value to engineering value; never zero or non-finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Scale {
    value: f64,
    /// Decimals of `value` (0.01 has 2), worked out once here rather than at
    /// every one of the millions of decodes a second.
    decimals: u8,
}

impl Scale {
    pub fn new(value: f64) -> Result<Self, InvalidValue> {
        if value.is_finite() && value != 0.0 {
            Ok(Self {
                value,
                decimals: decimals_of(value),
            })
        } else {
            Err(InvalidValue::new("scale", "must be finite and non-zero"))
        }
    }
    pub fn get(self) -> f64 {
        self.value
    }
    /// How many decimals a value scaled by this has (at most 9).
    pub fn decimals(self) -> u8 {
        self.decimals
    }
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            value: 1.0,
            decimals: 0,
        }
    }
}

impl TryFrom<f64> for Scale {
    type Error = InvalidValue;
    fn try_from(value: f64) -> Result<Self, Self::Error> {
        Scale::new(value)
    }
}

impl From<Scale> for f64 {
    fn from(value: Scale) -> Self {
        value.value
    }
}

/// One value a device exposes: where it lives and how to read and write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointDefinition {
    pub key: PointKey,
    pub name: String,
    pub register: RegisterKind,
    pub address: u16,
    pub data_type: DataType,
    #[serde(default)]
    pub word_order: WordOrder,
    #[serde(default)]
    pub scale: Scale,
    #[serde(default)]
    pub offset: f64,
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
    /// Engineering value from the point's raw registers (`words.len()` must be
    /// `data_type.words()`).
    pub fn decode(&self, words: &[u16]) -> Result<f64, InvalidValue> {
        if words.len() != usize::from(self.data_type.words()) {
            return Err(InvalidValue::new(
                "registers",
                "wrong number of registers for the data type",
            ));
        }
        let wide = || -> u32 {
            let (hi, lo) = match self.word_order {
                WordOrder::HighFirst => (words[0], words[1]),
                WordOrder::LowFirst => (words[1], words[0]),
            };
            (u32::from(hi) << 16) | u32::from(lo)
        };
        let raw = match self.data_type {
            DataType::U16 => f64::from(words[0]),
            DataType::I16 => f64::from(words[0] as i16),
            DataType::U32 => f64::from(wide()),
            DataType::I32 => f64::from(wide() as i32),
            DataType::F32 => f64::from(f32::from_bits(wide())),
        };
        let value = raw * self.scale.get() + self.offset;
        if self.data_type == DataType::F32 {
            return Ok(value);
        }
        // 7960 x 0.01 is 79.60000000000001 in binary floating point; an
        // integer register scaled by 0.01 has exactly two decimals.
        let offset_decimals = if self.offset == 0.0 {
            0
        } else {
            decimals_of(self.offset)
        };
        let decimals = self.scale.decimals().max(offset_decimals);
        if decimals == 0 {
            // Integers times an integral scale plus an integral offset: exact.
            return Ok(value);
        }
        let factor = 10f64.powi(i32::from(decimals));
        Ok((value * factor).round() / factor)
    }

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

    /// Raw registers for an engineering value, refusing anything out of the
    /// point's range, not representable at its scale, or out of the type's range.
    pub fn encode(&self, value: f64) -> Result<Vec<u16>, InvalidValue> {
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
        let raw = (value - self.offset) / self.scale.get();
        if self.data_type == DataType::F32 {
            let bits = (raw as f32).to_bits();
            return Ok(self.split(bits));
        }
        let rounded = raw.round();
        if (raw - rounded).abs() > 1e-6 * rounded.abs().max(1.0) {
            return Err(InvalidValue::new(
                "value",
                format!(
                    "{value} is not a multiple of the point's resolution {}",
                    self.scale.get()
                ),
            ));
        }
        let out_of_type = || {
            InvalidValue::new(
                "value",
                format!("{value} does not fit the point's register"),
            )
        };
        match self.data_type {
            DataType::U16 if (0.0..=f64::from(u16::MAX)).contains(&rounded) => {
                Ok(vec![rounded as u16])
            }
            DataType::I16 if (f64::from(i16::MIN)..=f64::from(i16::MAX)).contains(&rounded) => {
                Ok(vec![(rounded as i16) as u16])
            }
            DataType::U32 if (0.0..=f64::from(u32::MAX)).contains(&rounded) => {
                Ok(self.split(rounded as u32))
            }
            DataType::I32 if (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&rounded) => {
                Ok(self.split((rounded as i32) as u32))
            }
            _ => Err(out_of_type()),
        }
    }

    fn split(&self, value: u32) -> Vec<u16> {
        let hi = (value >> 16) as u16;
        let lo = (value & 0xFFFF) as u16;
        match self.word_order {
            WordOrder::HighFirst => vec![hi, lo],
            WordOrder::LowFirst => vec![lo, hi],
        }
    }
}

/// Decimal places needed to write `x` exactly (at most 9).
fn decimals_of(x: f64) -> u8 {
    (0..9u8)
        .find(|&d| {
            let scaled = x * 10f64.powi(i32::from(d));
            (scaled - scaled.round()).abs() < 1e-9 * scaled.abs().max(1.0)
        })
        .unwrap_or(9)
}

/// A register map for a controller model. Stored as a document.
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
            if point.writable && point.register == RegisterKind::Input {
                return Err(InvalidValue::new(
                    "profile",
                    format!("input register point `{}` cannot be writable", point.key),
                ));
            }
            if u32::from(point.address) + u32::from(point.data_type.words()) > 65_536 {
                return Err(InvalidValue::new(
                    "profile",
                    format!("point `{}` runs past the last register", point.key),
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

    fn point(data_type: DataType, scale: f64) -> PointDefinition {
        PointDefinition {
            key: PointKey::new("p").expect("valid key"),
            name: "p".into(),
            register: RegisterKind::Holding,
            address: 10,
            data_type,
            word_order: WordOrder::HighFirst,
            scale: Scale::new(scale).expect("valid scale"),
            offset: 0.0,
            unit: "°C".into(),
            writable: true,
            write_level: WriteLevel::Basic,
            min: Some(-50.0),
            max: Some(150.0),
            options: Vec::new(),
            plausible_min: None,
            plausible_max: None,
        }
    }

    #[test]
    fn signed_scaled_values_round_trip() {
        let p = point(DataType::I16, 0.1);
        let words = p.encode(-12.3).expect("in range");
        assert_eq!(words, vec![(-123i16) as u16]);
        assert!((p.decode(&words).expect("one word") + 12.3).abs() < 1e-9);
    }

    #[test]
    fn thirty_two_bit_values_respect_word_order() {
        let mut p = point(DataType::U32, 1.0);
        p.max = None;
        assert_eq!(p.encode(65_537.0).expect("fits"), vec![1, 1]);
        p.word_order = WordOrder::LowFirst;
        assert_eq!(p.decode(&[2, 1]).expect("two words"), 65_538.0);
        let f = point(DataType::F32, 1.0);
        let words = f.encode(21.5).expect("fits");
        assert_eq!(f.decode(&words).expect("two words"), 21.5);
    }

    #[test]
    fn out_of_range_and_unrepresentable_values_are_refused() {
        let p = point(DataType::I16, 0.1);
        assert!(p.encode(150.1).is_err());
        assert!(p.encode(-50.1).is_err());
        assert!(p.encode(21.55).is_err());
        assert!(p.encode(f64::NAN).is_err());
        let u = point(DataType::U16, 1.0);
        assert!(u.encode(-1.0).is_err());
    }

    #[test]
    fn decoded_values_have_the_resolution_of_their_scale() {
        let p = point(DataType::I16, 0.01);
        assert_eq!(p.decode(&[7960]).expect("one word"), 79.6);
        assert_eq!(p.decode(&[(-1234i16) as u16]).expect("one word"), -12.34);
    }

    #[test]
    fn zero_scale_is_unrepresentable() {
        assert!(Scale::new(0.0).is_err());
        assert!(serde_json::from_str::<Scale>("0.0").is_err());
    }
}
