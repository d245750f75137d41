//! The gateway against simulated ECL controllers over real Modbus TCP on
//! loopback: reads, confirmed writes, exceptions, faults and recovery.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use hearth_domain::model::PointDefinition;
use hearth_domain::ports::{FieldError, FieldGateway};
use hearth_domain::PointKey;
use hearth_modbus::blocks::{plan_reads, DEFAULT_MAX_GAP};
use hearth_modbus::point::modbus_points;
use hearth_modbus::simulator::plant;
use hearth_modbus::{
    ecl_comfort_310, exception_code, Fault, GatewayConfig, ModbusGateway, ModbusPoint, RegisterKind,
};
use support::{device_for, eventually, gateway, simulator};

fn definition(key: &str) -> PointDefinition {
    ecl_comfort_310()
        .point(&PointKey::new(key).expect("valid key"))
        .cloned()
        .expect("the profile has this point")
}

/// The Modbus section of a point of the ECL profile.
fn point(key: &str) -> ModbusPoint {
    ModbusPoint::of(&definition(key)).expect("a Modbus address")
}

/// Reads a point through the port, as the control use case does.
async fn read_point(gw: &ModbusGateway, device: &hearth_domain::model::Device, key: &str) -> f64 {
    gw.read_point(device, &definition(key))
        .await
        .expect("the simulator answers")
}

#[tokio::test]
async fn reads_every_profile_point_decoded() {
    // Given a simulated controller and the ECL profile
    let sim = simulator(1).await;
    let profile = ecl_comfort_310();
    let device = device_for(&sim, 0, &profile.id);
    let gw = gateway();

    // When every planned block is read
    let mut values = HashMap::new();
    let points = modbus_points(&profile).expect("Modbus addresses");
    for block in plan_reads(&points, DEFAULT_MAX_GAP) {
        let words = gw
            .read_registers(&device, block.kind, block.address, block.count)
            .await
            .expect("the simulator serves every planned block");
        assert_eq!(words.len(), usize::from(block.count));
        for (index, value) in block.decode(&points, &words) {
            let key = profile.points[index].key.to_string();
            values.insert(key, value.expect("decodes"));
        }
    }

    // Then every point has a plausible value
    assert_eq!(values.len(), profile.points.len());
    let plant = sim.handle(0).expect("device 0").plant();
    assert!((values["outdoor_temp"] - plant.outdoor).abs() < 0.5);
    assert!(values["flow_temp"] > values["return_temp"]);
    assert!(values["return_temp"] > values["room_temp"]);
    assert_eq!(values["room_setpoint_comfort"], 21.0);
    assert_eq!(values["room_setpoint_saving"], 17.0);
    assert_eq!(values["heat_curve_slope"], 1.0);
    assert_eq!(values["motor_runtime"], 30.0);
    assert_eq!(values["schedule_mon_start"], 600.0);
}

#[tokio::test]
async fn single_register_write_is_echoed_and_reads_back() {
    // Given
    let sim = simulator(1).await;
    let handle = sim.handle(0).expect("device 0");
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();
    let p = point("room_setpoint_comfort");
    let words = p.encode(22.5).expect("within the point's range");

    // When
    gw.write_registers(&device, p.address, &words)
        .await
        .expect("FC06 accepted");

    // Then
    assert_eq!(
        read_point(&gw, &device, "room_setpoint_comfort").await,
        22.5
    );
    assert_eq!(handle.holding(plant::ROOM_SETPOINT_COMFORT), Some(225));
    assert_eq!(handle.write_requests(), 1);
}

#[tokio::test]
async fn multi_register_write_uses_fc16_and_reads_back() {
    let sim = simulator(1).await;
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();

    gw.write_registers(&device, plant::ROOM_SETPOINT_COMFORT, &[230, 180])
        .await
        .expect("FC16 accepted");

    let words = gw
        .read_registers(
            &device,
            RegisterKind::Holding,
            plant::ROOM_SETPOINT_COMFORT,
            2,
        )
        .await
        .expect("readable");
    assert_eq!(words, vec![230, 180]);
}

#[tokio::test]
async fn out_of_range_write_is_refused_with_exception_3_and_not_applied() {
    // Given a comfort setpoint of 21.0 °C
    let sim = simulator(1).await;
    let handle = sim.handle(0).expect("device 0");
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();

    // When 40.0 °C goes on the wire (the controller allows at most 30.0)
    let err = gw
        .write_registers(&device, plant::ROOM_SETPOINT_COMFORT, &[400])
        .await
        .expect_err("out of the controller's range");

    // Then it is refused and nothing changed
    assert!(exception_code(&err) == Some(3), "{err:?}");
    assert_eq!(handle.holding(plant::ROOM_SETPOINT_COMFORT), Some(210));
    assert_eq!(
        read_point(&gw, &device, "room_setpoint_comfort").await,
        21.0
    );

    // And an FC16 with one bad word changes none of them
    let err = gw
        .write_registers(&device, plant::ROOM_SETPOINT_COMFORT, &[220, 999])
        .await
        .expect_err("second word out of range");
    assert!(exception_code(&err) == Some(3), "{err:?}");
    assert_eq!(handle.holding(plant::ROOM_SETPOINT_COMFORT), Some(210));
}

#[tokio::test]
async fn unknown_registers_get_exception_2() {
    let sim = simulator(1).await;
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();

    let holding = gw
        .read_registers(&device, RegisterKind::Holding, 11_000, 1)
        .await;
    let input = gw
        .read_registers(&device, RegisterKind::Input, 10_205, 2)
        .await;
    let write = gw.write_registers(&device, 11_000, &[1]).await;

    for result in [holding.map(|_| ()), input.map(|_| ()), write] {
        assert!(
            result.as_ref().err().and_then(exception_code) == Some(2),
            "{result:?}"
        );
    }
    // An exception leaves the connection usable.
    assert_eq!(read_point(&gw, &device, "heat_curve_slope").await, 1.0);
}

#[tokio::test]
async fn impossible_requests_are_refused_before_the_wire() {
    let sim = simulator(1).await;
    let handle = sim.handle(0).expect("device 0");
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();

    let zero = gw
        .read_registers(&device, RegisterKind::Input, plant::S1_OUTDOOR, 0)
        .await;
    let too_many = gw
        .read_registers(&device, RegisterKind::Holding, 0, 124)
        .await;
    let empty_write = gw.write_registers(&device, plant::MODE, &[]).await;
    let long_write = gw.write_registers(&device, 0, &[0; 124]).await;

    for result in [
        zero.map(|_| ()),
        too_many.map(|_| ()),
        empty_write,
        long_write,
    ] {
        assert!(matches!(result, Err(FieldError::Protocol(_))), "{result:?}");
    }
    assert_eq!(handle.requests(), 0);
}

#[tokio::test]
async fn a_write_refused_by_the_profile_never_reaches_the_wire() {
    // Given
    let sim = simulator(1).await;
    let handle = sim.handle(0).expect("device 0");
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();
    let def = definition("room_setpoint_comfort");

    // When the value is validated against the point's definition and then
    // the gateway's check first, as the write use case does (above the
    // maximum, below the minimum, finer than the 0.1 resolution)
    for value in [35.0, 9.9, 21.55] {
        let checked = def
            .check_value(value)
            .and_then(|()| gw.check_value(&def, value));
        assert!(checked.is_err(), "{value} must be refused");
        if checked.is_ok() {
            gw.write_point(&device, &def, value)
                .await
                .expect("accepted");
        }
    }
    // And the gateway refuses an unrepresentable value itself, unsent
    let unsent = gw.write_point(&device, &def, 21.55).await;
    assert!(
        matches!(unsent, Err(FieldError::Unaddressable(_))),
        "{unsent:?}"
    );

    // Then the controller never saw a write request
    assert_eq!(handle.write_requests(), 0);

    // And a valid one is counted exactly once, and held as checked
    assert_eq!(gw.check_value(&def, 23.0).ok(), Some(23.0));
    gw.write_point(&device, &def, 23.0).await.expect("accepted");
    assert_eq!(handle.write_requests(), 1);
}

#[tokio::test]
async fn no_answer_is_unreachable_and_recovers_when_cleared() {
    // Given a device that stops answering
    let sim = simulator(1).await;
    let handle = sim.handle(0).expect("device 0");
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();
    assert_eq!(read_point(&gw, &device, "heat_curve_slope").await, 1.0);
    handle.set_fault(Fault::NoAnswer);

    // When read, it times out as unreachable
    let err = gw
        .read_registers(&device, RegisterKind::Holding, plant::HEAT_CURVE_SLOPE, 1)
        .await
        .expect_err("no answer");
    assert!(matches!(err, FieldError::Unreachable(_)), "{err:?}");

    // Then once the fault clears the next call reconnects and succeeds
    handle.set_fault(Fault::None);
    assert_eq!(read_point(&gw, &device, "heat_curve_slope").await, 1.0);
}

#[tokio::test]
async fn dropped_connections_are_unreachable_and_reopened() {
    let sim = simulator(1).await;
    let handle = sim.handle(0).expect("device 0");
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();
    assert_eq!(read_point(&gw, &device, "mode").await, 0.0);

    handle.set_fault(Fault::DropConnection);
    let err = gw
        .read_registers(&device, RegisterKind::Holding, plant::MODE, 1)
        .await
        .expect_err("connection dropped");
    assert!(matches!(err, FieldError::Unreachable(_)), "{err:?}");

    handle.set_fault(Fault::None);
    assert_eq!(read_point(&gw, &device, "mode").await, 0.0);

    // A connection the device closed while idle is replaced transparently on read.
    handle.drop_connections();
    assert_eq!(read_point(&gw, &device, "mode").await, 0.0);
}

#[tokio::test]
async fn injected_exceptions_are_reported_with_their_code() {
    let sim = simulator(1).await;
    let handle = sim.handle(0).expect("device 0");
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();

    handle.set_fault(Fault::Exception(4));
    let err = gw
        .read_registers(&device, RegisterKind::Input, plant::S1_OUTDOOR, 6)
        .await
        .expect_err("injected failure");
    assert!(exception_code(&err) == Some(4), "{err:?}");
}

#[tokio::test]
async fn a_slow_device_sees_one_request_at_a_time() {
    // Given a slow device
    let sim = simulator(1).await;
    let handle = sim.handle(0).expect("device 0");
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();
    handle.set_fault(Fault::Slow(Duration::from_millis(30)));

    // When many callers read and write at once
    let reads =
        (0..6).map(|_| gw.read_registers(&device, RegisterKind::Input, plant::S1_OUTDOOR, 6));
    let results = futures::future::join_all(reads).await;
    let write = gw.write_registers(&device, plant::MODE, &[1]);
    let read = gw.read_registers(&device, RegisterKind::Holding, plant::MODE, 1);
    let (write, read) = tokio::join!(write, read);

    // Then all succeed and the device never had two requests in flight
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(write.is_ok(), "{write:?}");
    assert!(read.is_ok(), "{read:?}");
    assert_eq!(handle.max_concurrent_requests(), 1);
}

#[tokio::test]
async fn a_wrong_unit_address_is_unreachable() {
    let sim = simulator(1).await;
    let mut device = device_for(&sim, 0, &ecl_comfort_310().id);
    device.endpoint.unit = 7;
    let err = gateway()
        .read_registers(&device, RegisterKind::Holding, plant::MODE, 1)
        .await
        .expect_err("the controller ignores other units");
    assert!(matches!(err, FieldError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let sim = simulator(1).await;
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    drop(sim);
    let err = gateway()
        .read_registers(&device, RegisterKind::Holding, plant::MODE, 1)
        .await
        .expect_err("nothing listens any more");
    assert!(matches!(err, FieldError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let sim = simulator(1).await;
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = ModbusGateway::new(GatewayConfig {
        idle_timeout: Duration::from_millis(200),
        ..GatewayConfig::default()
    });
    assert_eq!(read_point(&gw, &device, "mode").await, 0.0);
    assert_eq!(gw.open_connections(), 1);

    eventually("the idle connection is closed", || async {
        gw.open_connections() == 0
    })
    .await;
    assert_eq!(read_point(&gw, &device, "mode").await, 0.0);
}

#[tokio::test]
async fn a_setpoint_write_moves_the_plant() {
    // Given a controller held in comfort mode, and its flow and room temperatures
    let sim = simulator(1).await;
    let device = device_for(&sim, 0, &ecl_comfort_310().id);
    let gw = gateway();
    gw.write_registers(&device, plant::MODE, &[1])
        .await
        .expect("mode accepted");
    let flow_before = read_point(&gw, &device, "flow_temp").await;
    let room_before = read_point(&gw, &device, "room_temp").await;

    // When the comfort setpoint is raised by 5 K
    let p = point("room_setpoint_comfort");
    gw.write_registers(&device, p.address, &p.encode(26.0).expect("valid"))
        .await
        .expect("setpoint accepted");

    // Then flow and room temperatures rise
    eventually("the flow temperature rises", || async {
        read_point(&gw, &device, "flow_temp").await > flow_before + 1.0
    })
    .await;
    eventually("the room temperature rises", || async {
        read_point(&gw, &device, "room_temp").await > room_before + 0.05
    })
    .await;

    // And lowering it well below makes the flow fall again
    let flow_high = read_point(&gw, &device, "flow_temp").await;
    gw.write_registers(&device, p.address, &p.encode(15.0).expect("valid"))
        .await
        .expect("setpoint accepted");
    eventually("the flow temperature falls", || async {
        read_point(&gw, &device, "flow_temp").await < flow_high - 1.0
    })
    .await;
}
