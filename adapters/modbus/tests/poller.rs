//! The poller against simulated controllers over real Modbus TCP, recording
//! through the real `IngestService` whose stores are in memory.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use hearth_domain::model::{Device, DeviceProfile, PointDefinition, Quality, WriteLevel};
use hearth_domain::ports::DocumentStore;
use hearth_domain::services::{Poller, PollerConfig, PollerHandle};
use hearth_domain::{PointKey, ProfileId};
use hearth_modbus::simulator::plant;
use hearth_modbus::{
    ecl_comfort_310, DataType, Fault, ModbusGateway, ModbusPoint, RegisterKind, Scale, Simulator,
    WordOrder,
};
use support::{device_for, eventually, gateway, hearth, simulator, TestHearth};

/// The ECL profile, polled fast so the tests need not wait long.
fn fast_profile() -> DeviceProfile {
    DeviceProfile {
        id: ProfileId::new("ecl-fast").expect("valid id"),
        poll_interval_ms: 200,
        live_poll_interval_ms: None,
        ..ecl_comfort_310()
    }
}

fn fast_config() -> PollerConfig {
    PollerConfig {
        max_start_offset: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(500),
        ..PollerConfig::default()
    }
}

/// Two simulated controllers, both in the directory with `profile`.
async fn two_devices(
    profile: &DeviceProfile,
) -> (Simulator, Arc<ModbusGateway>, TestHearth, [Device; 2]) {
    let sim = simulator(2).await;
    let gw = Arc::new(gateway());
    let t = hearth(gw.clone());
    t.documents.put_profile(profile).await.expect("stored");
    let devices = [
        device_for(&sim, 0, &profile.id),
        device_for(&sim, 1, &profile.id),
    ];
    for d in &devices {
        t.add_device(d).await;
    }
    (sim, gw, t, devices)
}

#[tokio::test]
async fn polls_every_device_and_marks_unreachable_ones_stale() {
    // Given two simulated controllers registered as devices
    let profile = fast_profile();
    let (sim, gw, t, devices) = two_devices(&profile).await;

    // When the poller runs
    let poller = Poller::spawn_with(t.ingest.clone(), gw.clone(), fast_config());

    // Then every point of both devices gets a good reading and they are online
    for d in &devices {
        eventually("all points read", || async {
            let points = t.points_of(d);
            points.len() == profile.points.len()
                && points.iter().all(|r| r.quality == Quality::Good)
        })
        .await;
        assert_eq!(t.online(d), Some(true));
    }
    assert_eq!(poller.polled_devices(), 2);
    eventually("readings are persisted", || async {
        t.readings.len() >= 2 * profile.points.len()
    })
    .await;

    // When the first controller stops answering
    let faulty = sim.handle(0).expect("device 0");
    faulty.set_fault(Fault::NoAnswer);

    // Then it goes offline with stale values, while the other stays online
    eventually("device 0 goes offline", || async {
        t.online(&devices[0]) == Some(false)
    })
    .await;
    let stale = t.points_of(&devices[0]);
    assert_eq!(stale.len(), profile.points.len());
    assert!(stale.iter().all(|r| r.quality == Quality::Stale));
    assert_eq!(t.online(&devices[1]), Some(true));

    // When it answers again, it comes back online with good values
    faulty.set_fault(Fault::None);
    eventually("device 0 comes back", || async {
        t.online(&devices[0]) == Some(true)
            && t.points_of(&devices[0])
                .iter()
                .all(|r| r.quality == Quality::Good)
    })
    .await;

    poller.stop().await;
}

/// Two simulated controllers, only the first in the directory, and a poller
/// (with `config`) that is already polling it.
async fn polling_one_of_two(
    config: PollerConfig,
) -> (Simulator, TestHearth, DeviceProfile, Device, PollerHandle) {
    let sim = simulator(2).await;
    let gw = Arc::new(gateway());
    let t = hearth(gw.clone());
    let profile = fast_profile();
    t.documents.put_profile(&profile).await.expect("stored");
    let first = device_for(&sim, 0, &profile.id);
    t.add_device(&first).await;
    let poller = Poller::spawn_with(t.ingest.clone(), gw, config);
    eventually("the first device is polled", || async {
        t.online(&first) == Some(true)
    })
    .await;
    (sim, t, profile, first, poller)
}

#[tokio::test]
async fn devices_added_later_are_picked_up_without_an_explicit_reload() {
    // Given a poller that re-reads the directory every 200 ms
    let config = PollerConfig {
        reload_every: Some(Duration::from_millis(200)),
        ..fast_config()
    };
    let (sim, t, profile, _first, poller) = polling_one_of_two(config).await;
    // When another device is added to the directory, and nobody calls reload
    let second = device_for(&sim, 1, &profile.id);
    t.add_device(&second).await;
    // Then it is polled too
    eventually("the second device is polled", || async {
        t.online(&second) == Some(true)
    })
    .await;
    assert_eq!(poller.polled_devices(), 2);
    poller.stop().await;
}

#[tokio::test]
async fn reload_starts_new_and_stops_removed_devices() {
    // Given a poller over one device
    let (sim, t, profile, first, poller) = polling_one_of_two(fast_config()).await;

    // When a device is added and the poller reloads
    let second = device_for(&sim, 1, &profile.id);
    t.add_device(&second).await;
    assert_eq!(poller.reload().await.expect("reloaded"), 2);

    // Then it is polled too
    eventually("the second device is polled", || async {
        t.online(&second) == Some(true)
    })
    .await;

    // When the first is removed and the poller reloads, it is no longer polled
    assert!(t.directory.remove_device(first.tenant_id, first.id));
    assert_eq!(poller.reload().await.expect("reloaded"), 1);
    let handle = sim.handle(0).expect("device 0");
    // Let any request already on the wire finish before sampling the count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = handle.requests();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        handle.requests(),
        requests,
        "a removed device is not polled"
    );

    poller.stop().await;
}

#[tokio::test]
async fn a_block_the_device_refuses_is_split_and_bad_points_skipped() {
    // Given a profile with a point at a register the controller does not have,
    // close enough to others to be read in the same block
    let sim = simulator(1).await;
    let gw = Arc::new(gateway());
    let t = hearth(gw.clone());
    let mut profile = fast_profile();
    profile.points.push(PointDefinition {
        key: PointKey::new("bogus").expect("valid key"),
        name: "Not on this controller".into(),
        address: ModbusPoint {
            register: RegisterKind::Holding,
            address: plant::NEUTRAL_ZONE + 2,
            data_type: DataType::U16,
            word_order: WordOrder::HighFirst,
            scale: Scale::default(),
            offset: 0.0,
        }
        .to_address(),
        unit: String::new(),
        writable: false,
        write_level: WriteLevel::Full,
        min: None,
        max: None,
        options: Vec::new(),
        plausible_min: None,
        plausible_max: None,
    });
    profile.validate().expect("valid profile");
    t.documents.put_profile(&profile).await.expect("stored");
    let device = device_for(&sim, 0, &profile.id);
    t.add_device(&device).await;

    // When polled
    let poller = Poller::spawn_with(t.ingest.clone(), gw.clone(), fast_config());

    // Then every other point is read and the device is online
    eventually("all good points read", || async {
        t.points_of(&device).len() == profile.points.len() - 1
    })
    .await;
    assert_eq!(t.online(&device), Some(true));
    assert!(t.point(&device, "bogus").is_none());
    assert!(t.point(&device, "motor_runtime").is_some());

    poller.stop().await;
}

#[tokio::test]
async fn writes_interleave_with_polling_one_request_at_a_time() {
    // Given a slow controller being polled
    let sim = simulator(1).await;
    let handle = sim.handle(0).expect("device 0");
    let gw = Arc::new(gateway());
    let t = hearth(gw.clone());
    let profile = fast_profile();
    t.documents.put_profile(&profile).await.expect("stored");
    let device = device_for(&sim, 0, &profile.id);
    t.add_device(&device).await;
    let poller = Poller::spawn_with(t.ingest.clone(), gw.clone(), fast_config());
    eventually("polled", || async { t.online(&device) == Some(true) }).await;
    handle.set_fault(Fault::Slow(Duration::from_millis(50)));

    // When writes come in between polls
    for value in [220u16, 230, 240] {
        gw.write_registers(&device, plant::ROOM_SETPOINT_COMFORT, &[value])
            .await
            .expect("the write goes through between poll requests");
        assert_eq!(handle.holding(plant::ROOM_SETPOINT_COMFORT), Some(value));
    }

    // Then the controller never saw two requests at once
    assert_eq!(handle.max_concurrent_requests(), 1);
    poller.stop().await;
}

#[tokio::test]
async fn a_watched_device_is_polled_at_its_live_interval() {
    // Given two devices whose profile polls hourly, or every 50 ms while watched
    let profile = DeviceProfile {
        id: ProfileId::new("ecl-watchable").expect("valid id"),
        poll_interval_ms: 3_600_000,
        live_poll_interval_ms: Some(50),
        ..ecl_comfort_310()
    };
    let (sim, gw, t, devices) = two_devices(&profile).await;
    let poller = Poller::spawn_with(t.ingest.clone(), gw, fast_config());
    for d in &devices {
        eventually("the first poll", || async { t.online(d) == Some(true) }).await;
    }
    let marker = |device: &Device| {
        t.point(device, "schedule_mon_start")
            .map(|r| (r.value, r.timestamp))
    };
    let before = marker(&devices[1]);

    // When both controllers' registers change and somebody watches the first
    for i in 0..2 {
        let handle = sim.handle(i).expect("simulated device");
        assert!(
            handle.set_holding(plant::SCHEDULE_START, 1234),
            "the simulator serves the schedule registers"
        );
    }
    let watching = t.watch(&devices[0]).await;

    // Then the watched one is polled again and shows the change at once
    eventually("the watched device shows the change", || async {
        marker(&devices[0]).map(|(value, _)| value) == Some(1234.0)
    })
    .await;
    // And the other one waits for its hourly poll
    assert_eq!(
        marker(&devices[1]),
        before,
        "an unwatched device must not be polled before its interval"
    );

    // When nobody watches any more (and a poll already under way has ended)
    drop(watching);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let settled = marker(&devices[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Then it is back to hourly polling
    assert_eq!(
        marker(&devices[0]),
        settled,
        "a device nobody watches any more must fall back to its poll interval"
    );
    poller.stop().await;
}
