//! Modbus point sections and register words → the Modbus adapter's read
//! planning and reply decoding (`plan_reads`, `ReadBlock::decoded`,
//! `ModbusPoint::decode`), the path every poll of every device takes with
//! whatever a device (or a profile a tenant wrote) hands it; `encode`, which
//! guards writes; and the section's round trip through a point's field
//! address (`ModbusPoint::of`), which every stored profile takes.
//!
//! Input layout, so seeds can be written by hand: byte 0 even → the
//! built-in ECL Comfort 310 profile, odd → arbitrary point definitions
//! (then a gap); then 8 bytes of a value to encode; the rest is the reply,
//! big-endian 16-bit words as on the wire.

#![no_main]

use hearth_domain::model::{PointDefinition, WriteLevel};
use hearth_domain::PointKey;
use hearth_modbus::blocks::{plan_reads, DEFAULT_MAX_GAP, MAX_BLOCK_REGISTERS};
use hearth_modbus::point::modbus_points;
use hearth_modbus::{DataType, ModbusPoint, RegisterKind, Scale, WordOrder};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Point {
    input_register: bool,
    address: u16,
    data_type: u8,
    low_word_first: bool,
    scale: f64,
    offset: f64,
    min: Option<f64>,
    max: Option<f64>,
    plausible_min: Option<f64>,
    plausible_max: Option<f64>,
    options: Vec<(f64, bool)>,
}

fn section(p: &Point) -> Option<ModbusPoint> {
    let data_type = match p.data_type % 5 {
        0 => DataType::U16,
        1 => DataType::I16,
        2 => DataType::U32,
        3 => DataType::I32,
        _ => DataType::F32,
    };
    Some(ModbusPoint {
        register: if p.input_register {
            RegisterKind::Input
        } else {
            RegisterKind::Holding
        },
        address: p.address,
        data_type,
        word_order: if p.low_word_first {
            WordOrder::LowFirst
        } else {
            WordOrder::HighFirst
        },
        // Profiles refuse a zero or non-finite scale; so does this.
        scale: Scale::new(p.scale).ok()?,
        offset: p.offset,
    })
}

/// The point as a profile stores it, with the section in its field address.
fn definition(i: usize, p: &Point, section: &ModbusPoint) -> Option<PointDefinition> {
    Some(PointDefinition {
        key: PointKey::new(format!("p{i}")).ok()?,
        name: format!("point {i}"),
        address: section.to_address(),
        unit: String::new(),
        writable: !p.input_register,
        write_level: WriteLevel::Full,
        min: p.min,
        max: p.max,
        options: p
            .options
            .iter()
            .take(8)
            .map(|(value, _)| hearth_domain::model::PointOption {
                value: *value,
                label: format!("{value}"),
            })
            .collect(),
        plausible_min: p.plausible_min,
        plausible_max: p.plausible_max,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    let (points, max_gap) = if mode % 2 == 0 {
        let Ok(points) = modbus_points(&hearth_modbus::ecl_comfort_310()) else {
            panic!("the built-in profile has Modbus addresses");
        };
        (points, DEFAULT_MAX_GAP)
    } else {
        let specs: Vec<Point> = u.arbitrary().unwrap_or_default();
        let mut points = Vec::new();
        for (i, spec) in specs.iter().take(256).enumerate() {
            let Some(section) = section(spec) else {
                continue;
            };
            // Stored and read back, the section is what was stored, or refused.
            if let Some(def) = definition(i, spec, &section) {
                match ModbusPoint::of(&def) {
                    Ok(read) => assert!(
                        read == section || read.offset.is_nan(),
                        "{read:?} != {section:?}"
                    ),
                    Err(_) => continue,
                }
                let _ = def.quality_of(spec.plausible_min.unwrap_or(0.0));
                let _ = def.check_value(spec.min.unwrap_or(0.0));
            }
            points.push(section);
        }
        (points, u.arbitrary::<u16>().unwrap_or(0))
    };
    let value = f64::from_le_bytes(
        u.bytes(8)
            .ok()
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 8]),
    );
    // The reply: as many words as the device chose to send.
    let words: Vec<u16> = u
        .take_rest()
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]))
        .collect();
    let blocks = plan_reads(&points, max_gap);

    // Every point is planned into exactly one block that covers it.
    let mut planned = vec![0u32; points.len()];
    for block in &blocks {
        assert!(
            block.count >= 1 && block.count <= MAX_BLOCK_REGISTERS,
            "{block:?}"
        );
        for &i in &block.points {
            planned[i] += 1;
            let p = &points[i];
            assert_eq!(p.register, block.kind);
            let start = u32::from(p.address);
            let end = start + u32::from(p.data_type.words());
            assert!(start >= u32::from(block.address), "{block:?} {p:?}");
            assert!(
                end <= u32::from(block.address) + u32::from(block.count),
                "{block:?} {p:?}"
            );
        }
        let _ = block.bridges_gap(&points);
        let _ = block.split(&points);

        // A reply of any length: points it covers decode, the others are
        // reported per point.
        let words = &words;
        for (i, decoded) in block.decoded(&points, words) {
            let p = &points[i];
            let covered = usize::from(p.address - block.address) + usize::from(p.data_type.words())
                <= words.len();
            assert_eq!(decoded.is_ok(), covered, "{p:?} {words:?} {decoded:?}");
        }
        assert_eq!(block.decode(&points, words).len(), block.points.len());
    }
    assert!(planned.iter().all(|&n| n == 1), "{planned:?}");

    // What encode accepts decodes again (the write path reads back).
    for p in points
        .iter()
        .filter(|p| p.register == RegisterKind::Holding)
    {
        if let Ok(words) = p.encode(value) {
            assert_eq!(words.len(), usize::from(p.data_type.words()));
            assert!(p.decode(&words).is_ok());
        }
    }
});
