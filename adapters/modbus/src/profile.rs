//! The built-in profile of the Danfoss ECL Comfort 310 (circuit 1), built on
//! the community register map in DESIGN.md and matching the simulator.
//! Addresses not given by DESIGN (mode, schedule, motor runtime) are
//! unverified against a real controller.

use hearth_domain::model::{DeviceProfile, PointDefinition, PointOption, WriteLevel};
use hearth_domain::{PointKey, ProfileId};

use crate::point::{DataType, ModbusPoint, RegisterKind, Scale, WordOrder};
use crate::simulator::plant;

/// Id of [`ecl_comfort_310`].
pub const ECL_COMFORT_310: &str = "ecl-comfort-310";

struct Spec {
    key: &'static str,
    name: &'static str,
    register: RegisterKind,
    address: u16,
    data_type: DataType,
    scale: f64,
    unit: &'static str,
    write: Option<(WriteLevel, f64, f64)>,
}

/// The ECL Comfort 310 profile: six sensors, room setpoints, heat curve,
/// mode, Monday's first comfort period and the valve motor runtime.
pub fn ecl_comfort_310() -> DeviceProfile {
    use DataType::{I16, U16};
    use RegisterKind::{Holding, Input};
    use WriteLevel::{Basic, Full, Limited};
    let sensor = |key, name, address| Spec {
        key,
        name,
        register: Input,
        address,
        data_type: I16,
        scale: 0.01,
        unit: "°C",
        write: None,
    };
    let specs = [
        sensor(
            "outdoor_temp",
            "Outdoor temperature (S1)",
            plant::S1_OUTDOOR,
        ),
        sensor("room_temp", "Room temperature (S2)", plant::S2_ROOM),
        sensor("flow_temp", "Flow temperature (S3)", plant::S3_FLOW),
        sensor("return_temp", "Return temperature (S4)", plant::S4_RETURN),
        sensor(
            "primary_supply_temp",
            "Primary supply temperature (S5)",
            plant::S5_PRIMARY,
        ),
        sensor(
            "tank_temp",
            "Hot-water tank temperature (S6)",
            plant::S6_TANK,
        ),
        Spec {
            key: "room_setpoint_comfort",
            name: "Room setpoint, comfort",
            register: Holding,
            address: plant::ROOM_SETPOINT_COMFORT,
            data_type: U16,
            scale: 0.1,
            unit: "°C",
            write: Some((Basic, 10.0, 30.0)),
        },
        Spec {
            key: "room_setpoint_saving",
            name: "Room setpoint, saving",
            register: Holding,
            address: plant::ROOM_SETPOINT_SAVING,
            data_type: U16,
            scale: 0.1,
            unit: "°C",
            write: Some((Basic, 10.0, 30.0)),
        },
        Spec {
            key: "heat_curve_slope",
            name: "Heat curve slope",
            register: Holding,
            address: plant::HEAT_CURVE_SLOPE,
            data_type: U16,
            scale: 0.1,
            unit: "",
            write: Some((Limited, 0.1, 4.0)),
        },
        Spec {
            key: "parallel_displacement",
            name: "Heat curve parallel displacement",
            register: Holding,
            address: plant::PARALLEL_DISPLACEMENT,
            data_type: I16,
            scale: 1.0,
            unit: "K",
            write: Some((Limited, -9.0, 9.0)),
        },
        Spec {
            key: "mode",
            name: "Mode (0 schedule, 1 comfort, 2 saving, 3 frost protection)",
            register: Holding,
            address: plant::MODE,
            data_type: U16,
            scale: 1.0,
            unit: "",
            write: Some((Limited, 0.0, 3.0)),
        },
        Spec {
            key: "schedule_mon_start",
            name: "Monday comfort period 1 start (HHMM)",
            register: Holding,
            address: plant::SCHEDULE_START,
            data_type: U16,
            scale: 1.0,
            unit: "HHMM",
            write: Some((Limited, 0.0, 2400.0)),
        },
        Spec {
            key: "schedule_mon_stop",
            name: "Monday comfort period 1 stop (HHMM)",
            register: Holding,
            address: plant::SCHEDULE_START + 1,
            data_type: U16,
            scale: 1.0,
            unit: "HHMM",
            write: Some((Limited, 0.0, 2400.0)),
        },
        Spec {
            key: "motor_runtime",
            name: "Valve motor runtime",
            register: Holding,
            address: plant::MOTOR_RUNTIME,
            data_type: U16,
            scale: 1.0,
            unit: "s",
            write: Some((Full, 5.0, 250.0)),
        },
    ];
    DeviceProfile {
        id: profile_id(ECL_COMFORT_310),
        tenant_id: None,
        name: "Danfoss ECL Comfort 310, circuit 1".into(),
        poll_interval_ms: 1_000,
        // Four requests every 250 ms while an operator has the device open:
        // changes show within a quarter second, one request at a time.
        live_poll_interval_ms: Some(250),
        points: specs
            .into_iter()
            .map(|spec| with_semantics(point(&spec), spec.register))
            .collect(),
    }
}

/// Sensor plausibility and mode names, which the register table alone
/// does not say.
fn with_semantics(mut point: PointDefinition, register: RegisterKind) -> PointDefinition {
    if register == RegisterKind::Input {
        // ECL sensors read 192 °C when open and far below -50 °C when shorted.
        point.plausible_min = Some(-60.0);
        point.plausible_max = Some(150.0);
    }
    if point.key.as_str() == "mode" {
        point.options = [
            (0.0, "schedule"),
            (1.0, "comfort"),
            (2.0, "saving"),
            (3.0, "frost protection"),
        ]
        .into_iter()
        .map(|(value, label)| PointOption {
            value,
            label: label.into(),
        })
        .collect();
    }
    point
}

// Built-in scales are non-zero constants (the tests prove it).
#[allow(clippy::expect_used)]
fn point(spec: &Spec) -> PointDefinition {
    let modbus = ModbusPoint {
        register: spec.register,
        address: spec.address,
        data_type: spec.data_type,
        word_order: WordOrder::HighFirst,
        scale: Scale::new(spec.scale).expect("built-in scales are non-zero"),
        offset: 0.0,
    };
    PointDefinition {
        key: point_key(spec.key),
        name: spec.name.into(),
        address: modbus.to_address(),
        unit: spec.unit.into(),
        writable: spec.write.is_some(),
        write_level: spec.write.map_or(WriteLevel::Full, |w| w.0),
        min: spec.write.map(|w| w.1),
        max: spec.write.map(|w| w.2),
        options: Vec::new(),
        plausible_min: None,
        plausible_max: None,
    }
}

// Keys and ids here are constants satisfying the key rules (the tests
// prove it); no outside data reaches these `expect`s.
#[allow(clippy::expect_used)]
fn point_key(key: &str) -> PointKey {
    PointKey::new(key).expect("built-in point keys are valid")
}

#[allow(clippy::expect_used)]
fn profile_id(id: &str) -> ProfileId {
    ProfileId::new(id).expect("built-in profile ids are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{plan_reads, DEFAULT_MAX_GAP};
    use crate::point::modbus_points;

    #[test]
    fn profile_is_valid_and_consistent() {
        let profile = ecl_comfort_310();
        profile.validate().expect("the built-in profile is valid");
        modbus_points(&profile).expect("every point has a Modbus address");
        assert_eq!(profile.id.as_str(), ECL_COMFORT_310);
        assert_eq!(profile.tenant_id, None);
        assert_eq!(profile.poll_interval_ms, 1_000);
        assert_eq!(profile.points.len(), 14);
        let level = |key: &str| {
            profile
                .point(&PointKey::new(key).expect("valid key"))
                .map(|p| (p.writable, p.write_level))
        };
        assert_eq!(level("outdoor_temp").map(|l| l.0), Some(false));
        assert_eq!(
            level("room_setpoint_comfort"),
            Some((true, WriteLevel::Basic))
        );
        assert_eq!(level("heat_curve_slope"), Some((true, WriteLevel::Limited)));
        assert_eq!(level("mode"), Some((true, WriteLevel::Limited)));
        assert_eq!(level("motor_runtime"), Some((true, WriteLevel::Full)));
    }

    #[test]
    fn profile_polls_in_four_reads() {
        let profile = ecl_comfort_310();
        let points = modbus_points(&profile).expect("Modbus addresses");
        let blocks = plan_reads(&points, DEFAULT_MAX_GAP);
        assert_eq!(blocks.len(), 4, "{blocks:?}");
    }
}
