//! Where a point lives in a Modbus device and how its registers become an
//! engineering value: the Modbus section of a profile's points, kept in each
//! point's [`FieldAddress`] (`register`, `address`, `data_type`,
//! `word_order`, `scale`, `offset`), which the domain stores but never reads.

use hearth_domain::error::InvalidValue;
use hearth_domain::model::{DeviceProfile, FieldAddress, PointDefinition};
use serde::{Deserialize, Serialize};

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

/// A point's Modbus address and coding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusPoint {
    pub register: RegisterKind,
    pub address: u16,
    pub data_type: DataType,
    #[serde(default)]
    pub word_order: WordOrder,
    #[serde(default)]
    pub scale: Scale,
    #[serde(default)]
    pub offset: f64,
}

impl ModbusPoint {
    /// The Modbus section of `point`, or why it has none this adapter can
    /// use: missing or unknown keys, wrong types, a register range past the
    /// last register.
    pub fn of(point: &PointDefinition) -> Result<Self, InvalidValue> {
        let map = point.address.entries().clone();
        let parsed: Self = serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            InvalidValue::new(
                "point address",
                format!("point `{}`: not a Modbus address ({e})", point.key),
            )
        })?;
        if u32::from(parsed.address) + u32::from(parsed.data_type.words()) > 65_536 {
            return Err(InvalidValue::new(
                "point address",
                format!("point `{}` runs past the last register", point.key),
            ));
        }
        if !parsed.offset.is_finite() {
            return Err(InvalidValue::new(
                "point address",
                format!("point `{}`: offset must be a finite number", point.key),
            ));
        }
        if point.writable && parsed.register == RegisterKind::Input {
            return Err(InvalidValue::new(
                "point address",
                format!("input register point `{}` cannot be writable", point.key),
            ));
        }
        Ok(parsed)
    }

    /// The section as stored in a point's field address.
    pub fn to_address(&self) -> FieldAddress {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => FieldAddress(map),
            // A struct of plain fields always serialises to an object.
            _ => FieldAddress::default(),
        }
    }

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

    /// Raw registers for an engineering value, refusing anything not
    /// representable at the point's scale or outside its type's range. (The
    /// point's own range and options are the domain's check.)
    pub fn encode(&self, value: f64) -> Result<Vec<u16>, InvalidValue> {
        if !value.is_finite() {
            return Err(InvalidValue::new("value", "must be a finite number"));
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

/// The Modbus section of every point of a profile, in the profile's point
/// order.
pub fn modbus_points(profile: &DeviceProfile) -> Result<Vec<ModbusPoint>, InvalidValue> {
    profile.points.iter().map(ModbusPoint::of).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_domain::model::WriteLevel;
    use hearth_domain::PointKey;

    fn point(data_type: DataType, scale: f64) -> ModbusPoint {
        ModbusPoint {
            register: RegisterKind::Holding,
            address: 10,
            data_type,
            word_order: WordOrder::HighFirst,
            scale: Scale::new(scale).expect("valid scale"),
            offset: 0.0,
        }
    }

    fn definition(address: serde_json::Value, writable: bool) -> PointDefinition {
        PointDefinition {
            key: PointKey::new("p").expect("valid key"),
            name: "p".into(),
            address: match address {
                serde_json::Value::Object(map) => FieldAddress(map),
                _ => FieldAddress::default(),
            },
            unit: String::new(),
            writable,
            write_level: WriteLevel::Basic,
            min: None,
            max: None,
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
        assert_eq!(p.encode(65_537.0).expect("fits"), vec![1, 1]);
        p.word_order = WordOrder::LowFirst;
        assert_eq!(p.decode(&[2, 1]).expect("two words"), 65_538.0);
        let f = point(DataType::F32, 1.0);
        let words = f.encode(21.5).expect("fits");
        assert_eq!(f.decode(&words).expect("two words"), 21.5);
    }

    #[test]
    fn unrepresentable_values_are_refused() {
        let p = point(DataType::I16, 0.1);
        assert!(p.encode(21.55).is_err(), "finer than the resolution");
        assert!(p.encode(f64::NAN).is_err());
        assert!(p.encode(3_276.8).is_err(), "past i16 at this scale");
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

    #[test]
    fn the_modbus_section_is_read_from_the_field_address_and_checked() {
        // Given points with a good, a misspelt, a too-wide and a writable input address
        let good = definition(
            serde_json::json!({"register": "holding", "address": 11_186, "data_type": "i16", "scale": 0.1}),
            true,
        );
        let misspelt = definition(
            serde_json::json!({"register": "holding", "adress": 1, "data_type": "u16"}),
            false,
        );
        let past_end = definition(
            serde_json::json!({"register": "holding", "address": 65_535, "data_type": "u32"}),
            false,
        );
        let writable_input = definition(
            serde_json::json!({"register": "input", "address": 1, "data_type": "u16"}),
            true,
        );
        // Then only the good one parses, and it writes back the same section
        let parsed = ModbusPoint::of(&good).expect("a Modbus address");
        assert_eq!((parsed.address, parsed.scale.get()), (11_186, 0.1));
        assert_eq!(
            ModbusPoint::of(&definition(
                serde_json::Value::Object(parsed.to_address().0),
                true
            ))
            .ok(),
            Some(parsed)
        );
        assert!(
            ModbusPoint::of(&misspelt).is_err(),
            "unknown keys are refused"
        );
        assert!(ModbusPoint::of(&past_end).is_err());
        assert!(ModbusPoint::of(&writable_input).is_err());
    }
}
