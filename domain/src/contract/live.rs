//! Contract suite for the `live` port: latest values and statuses, tenant
//! isolation of subscriptions, and per-subscriber lag.

use std::cell::Cell;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use futures::stream::{BoxStream, StreamExt};

use crate::ids::{DeviceId, PointKey, TenantId};
use crate::model::{Quality, Reading};
use crate::ports::{Delivery, DeviceStatus, LiveBus, LiveEvent, ReadingBatch, WatchInterest};

/// How long a subscriber waits for an event that must arrive.
const PATIENCE: Duration = Duration::from_secs(10);

/// Events published while one subscriber is never polled. Must exceed the
/// per-subscriber buffer of every implementation, so that subscriber lags.
const FLOOD: u64 = 50_000;

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid fixed date")
}

fn reading(tenant: TenantId, device: DeviceId, point: &str, millis: i64, value: f64) -> Reading {
    Reading {
        tenant_id: tenant,
        device_id: device,
        point: PointKey::new(point).expect("contract point keys are valid"),
        timestamp: base() + chrono::Duration::milliseconds(millis),
        value,
        quality: Quality::Good,
    }
}

fn status(tenant: TenantId, device: DeviceId, online: bool, seconds: i64) -> DeviceStatus {
    DeviceStatus {
        tenant_id: tenant,
        device_id: device,
        online,
        at: base() + chrono::Duration::seconds(seconds),
    }
}

async fn next(stream: &mut BoxStream<'static, Delivery>, who: &str) -> Delivery {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("{who}: the subscription ended while events were expected"),
        Err(_) => panic!("{who}: no event within {PATIENCE:?}"),
    }
}

async fn expect_event(
    stream: &mut BoxStream<'static, Delivery>,
    who: &str,
    expected: &LiveEvent,
    why: &str,
) {
    let got = next(stream, who).await;
    assert_eq!(got, Delivery::Event(expected.clone()), "{who}: {why}");
}

fn sorted_by_point(mut readings: Vec<Reading>) -> Vec<Reading> {
    readings.sort_by(|a, b| a.point.cmp(&b.point));
    readings
}

/// Checks every promise of [`LiveBus`] against an empty bus.
/// Runs every check; `bus` is also asked who is watching (a bus that knows
/// its subscriptions is the natural [`WatchInterest`]).
pub async fn live_contract<B: LiveBus + WatchInterest>(bus: &B) {
    a_batch_is_one_event_and_updates_every_latest_value(bus).await;
    a_device_subscription_carries_only_its_devices(bus).await;
    a_device_subscription_marks_its_devices_watched(bus).await;
    let tenant_a = TenantId::new();
    let tenant_b = TenantId::new();
    let tenant_c = TenantId::new();
    // The same device id under two tenants: state and events must still be
    // kept apart by tenant.
    let device = DeviceId::new();
    let other_device = DeviceId::new();

    // Given an empty bus
    assert!(
        bus.latest(tenant_a, device).is_empty(),
        "an empty bus must have no latest values"
    );
    assert_eq!(
        bus.status(tenant_a, device),
        None,
        "an empty bus must have no status"
    );

    // When tenants A and B subscribe and events of both are published, interleaved
    let mut sub_a = bus.subscribe(tenant_a);
    let mut sub_b = bus.subscribe(tenant_b);
    let b_flow = LiveEvent::Reading(reading(tenant_b, device, "flow", 0, 70.0));
    let a_flow = LiveEvent::Reading(reading(tenant_a, device, "flow", 0, 55.0));
    let b_status = LiveEvent::Status(status(tenant_b, device, false, 0));
    let a_status = LiveEvent::Status(status(tenant_a, device, true, 0));
    let a_room = LiveEvent::Reading(reading(tenant_a, device, "room", 0, 21.5));
    let b_marker = LiveEvent::Reading(reading(tenant_b, other_device, "marker", 0, 1.0));
    for event in [&b_flow, &a_flow, &b_status, &a_status, &a_room, &b_marker] {
        bus.publish(event.clone());
    }

    // Then each subscriber receives its own tenant's events only, in order
    expect_event(
        &mut sub_a,
        "subscriber of A",
        &a_flow,
        "must skip B's events and see A's first reading",
    )
    .await;
    expect_event(
        &mut sub_a,
        "subscriber of A",
        &a_status,
        "must never see B's status",
    )
    .await;
    expect_event(
        &mut sub_a,
        "subscriber of A",
        &a_room,
        "must see A's events in publish order",
    )
    .await;
    expect_event(
        &mut sub_b,
        "subscriber of B",
        &b_flow,
        "must see B's first reading",
    )
    .await;
    expect_event(
        &mut sub_b,
        "subscriber of B",
        &b_status,
        "must never see A's events",
    )
    .await;
    expect_event(
        &mut sub_b,
        "subscriber of B",
        &b_marker,
        "must never see A's events",
    )
    .await;
    let a_marker = LiveEvent::Reading(reading(tenant_a, other_device, "marker", 0, 2.0));
    bus.publish(a_marker.clone());
    expect_event(
        &mut sub_a,
        "subscriber of A",
        &a_marker,
        "must never see B's events",
    )
    .await;

    // And latest values and statuses are kept per tenant and device
    let latest_a = sorted_by_point(bus.latest(tenant_a, device));
    assert_eq!(
        latest_a,
        vec![
            reading(tenant_a, device, "flow", 0, 55.0),
            reading(tenant_a, device, "room", 0, 21.5)
        ],
        "latest(A, device) must hold one reading per point of A's device, and nothing of B's"
    );
    assert_eq!(
        bus.latest(tenant_b, device),
        vec![reading(tenant_b, device, "flow", 0, 70.0)],
        "latest(B, device) must hold B's reading only, though A uses the same device id"
    );
    assert_eq!(
        bus.status(tenant_a, device),
        Some(status(tenant_a, device, true, 0)),
        "status(A) must be A's"
    );
    assert_eq!(
        bus.status(tenant_b, device),
        Some(status(tenant_b, device, false, 0)),
        "status(B) must be B's"
    );
    assert_eq!(
        bus.status(tenant_a, other_device),
        None,
        "a device that only published readings has no status yet"
    );
    assert!(
        bus.latest(tenant_c, device).is_empty() && bus.status(tenant_c, device).is_none(),
        "a third tenant must see nothing of A's or B's device"
    );

    // When newer values and a status change are published, and a value is
    // re-published as stale with its original timestamp (device went offline)
    bus.publish(LiveEvent::Reading(reading(
        tenant_a, device, "flow", 1_000, 56.0,
    )));
    bus.publish(LiveEvent::Status(status(tenant_a, device, false, 2)));
    let mut stale_room = reading(tenant_a, device, "room", 0, 21.5);
    stale_room.quality = Quality::Stale;
    bus.publish(LiveEvent::Reading(stale_room.clone()));

    // Then they replace the previous latest state
    assert_eq!(
        sorted_by_point(bus.latest(tenant_a, device)),
        vec![reading(tenant_a, device, "flow", 1_000, 56.0), stale_room],
        "a newer reading, or the same reading re-published as stale, must replace the latest value of its point"
    );
    assert_eq!(
        bus.status(tenant_a, device),
        Some(status(tenant_a, device, false, 2)),
        "a new status must replace the old one"
    );

    // And a tenant without subscribers still has its latest state recorded
    bus.publish(LiveEvent::Reading(reading(
        tenant_c, device, "flow", 0, 40.0,
    )));
    assert_eq!(
        bus.latest(tenant_c, device),
        vec![reading(tenant_c, device, "flow", 0, 40.0)],
        "publish must record latest values even when nobody subscribes"
    );

    // When someone subscribes late
    let mut late = bus.subscribe(tenant_a);
    let a_after = LiveEvent::Reading(reading(tenant_a, device, "flow", 3_000, 57.0));
    bus.publish(a_after.clone());

    // Then it sees events from then on only
    expect_event(
        &mut late,
        "late subscriber of A",
        &a_after,
        "must start with events published after subscribing",
    )
    .await;
    // Only the two subscribers below take part in the flood.
    drop(late);
    drop(sub_a);
    drop(sub_b);

    // When a flood of events is published while one subscriber never polls
    // (the publisher waits only for the fast subscriber)
    let mut slow = bus.subscribe(tenant_a);
    let mut fast = bus.subscribe(tenant_a);
    let flood =
        |i: u64| LiveEvent::Reading(reading(tenant_a, other_device, "flood", i as i64, i as f64));
    let fast_seen = Cell::new(0u64);
    let consumer = async {
        while fast_seen.get() < FLOOD {
            let expected = flood(fast_seen.get());
            match next(&mut fast, "fast subscriber").await {
                Delivery::Event(event) => {
                    assert_eq!(
                        event, expected,
                        "the fast subscriber must receive every event, in order"
                    );
                    fast_seen.set(fast_seen.get() + 1);
                }
                Delivery::Lagged(n) => {
                    panic!("the fast subscriber lagged by {n} although it kept up: a slow subscriber slowed it down")
                }
            }
        }
    };
    let publisher = async {
        let deadline = Instant::now() + PATIENCE * 6;
        for i in 0..FLOOD {
            bus.publish(flood(i));
            if i % 256 == 255 || i + 1 == FLOOD {
                let mut spins = 0u32;
                while fast_seen.get() <= i {
                    assert!(
                        Instant::now() < deadline,
                        "the fast subscriber stopped receiving at {}",
                        fast_seen.get()
                    );
                    spins += 1;
                    if spins < 100 {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }
    };
    futures::join!(consumer, publisher);

    // Then the slow subscriber is told how many events it lost, and the ones
    // it still gets are the newest, in order
    let mut lost = 0u64;
    let mut received = Vec::new();
    while lost + (received.len() as u64) < FLOOD {
        match next(&mut slow, "slow subscriber").await {
            Delivery::Lagged(n) => lost += n,
            Delivery::Event(LiveEvent::Reading(r)) => received.push(r.value as u64),
            Delivery::Event(other) => panic!("slow subscriber: unexpected event {other:?}"),
        }
    }
    assert!(
        lost > 0,
        "a subscriber that never polled during {FLOOD} events must get Delivery::Lagged"
    );
    assert_eq!(
        lost + received.len() as u64,
        FLOOD,
        "Lagged(n) must count exactly the events dropped for the slow subscriber"
    );
    let expected_tail: Vec<u64> = (FLOOD - received.len() as u64..FLOOD).collect();
    assert_eq!(
        received, expected_tail,
        "after lagging, the slow subscriber must continue with the newest events in order"
    );

    // And the bus keeps serving it afterwards
    let after_flood = LiveEvent::Reading(reading(tenant_a, device, "flow", 9_000, 58.0));
    bus.publish(after_flood.clone());
    expect_event(
        &mut slow,
        "slow subscriber",
        &after_flood,
        "must keep receiving after catching up",
    )
    .await;
    expect_event(
        &mut fast,
        "fast subscriber",
        &after_flood,
        "must keep receiving after the flood",
    )
    .await;
}

/// A batch of one poll's readings reaches a subscriber as one event, and
/// each of its readings becomes its point's latest value.
async fn a_batch_is_one_event_and_updates_every_latest_value(bus: &dyn LiveBus) {
    let (tenant, device) = (TenantId::new(), DeviceId::new());
    let mut sub = bus.subscribe(tenant);
    let readings = vec![
        reading(tenant, device, "flow", 0, 55.0),
        reading(tenant, device, "return", 0, 40.0),
    ];
    let batch = ReadingBatch::new(tenant, device, readings.clone())
        .expect("one device's readings form a batch");
    let event = LiveEvent::Readings(batch);
    bus.publish(event.clone());
    expect_event(
        &mut sub,
        "batch subscriber",
        &event,
        "a batch must arrive whole, as one event",
    )
    .await;
    assert_eq!(
        sorted_by_point(bus.latest(tenant, device)),
        sorted_by_point(readings),
        "every reading of a batch must become its point's latest value"
    );
    let other = DeviceId::new();
    assert!(
        ReadingBatch::new(tenant, other, vec![reading(tenant, device, "flow", 0, 1.0)]).is_none(),
        "a batch may not mix devices"
    );
}

/// `subscribe_devices` delivers the listed devices' events of that tenant
/// and nothing else — not other devices, not the same device id elsewhere.
async fn a_device_subscription_carries_only_its_devices(bus: &dyn LiveBus) {
    let (tenant, other_tenant) = (TenantId::new(), TenantId::new());
    let (watched, unwatched) = (DeviceId::new(), DeviceId::new());
    let mut sub = bus.subscribe_devices(tenant, &[watched]);
    bus.publish(LiveEvent::Reading(reading(
        tenant, unwatched, "flow", 0, 1.0,
    )));
    bus.publish(LiveEvent::Reading(reading(
        other_tenant,
        watched,
        "flow",
        0,
        2.0,
    )));
    let wanted = LiveEvent::Reading(reading(tenant, watched, "flow", 0, 3.0));
    bus.publish(wanted.clone());
    expect_event(
        &mut sub,
        "device subscriber",
        &wanted,
        "only the watched device of the subscribed tenant may be delivered",
    )
    .await;
    let status = LiveEvent::Status(status(tenant, watched, false, 1));
    bus.publish(status.clone());
    expect_event(
        &mut sub,
        "device subscriber",
        &status,
        "statuses of a watched device are delivered too",
    )
    .await;
}

/// `is_watched` follows device subscriptions: on while one is open, for
/// exactly its devices in its tenant, off when the last is dropped; a
/// tenant-wide subscription does not count.
async fn a_device_subscription_marks_its_devices_watched<B: LiveBus + WatchInterest>(bus: &B) {
    let (tenant, other_tenant) = (TenantId::new(), TenantId::new());
    let (device, other_device) = (DeviceId::new(), DeviceId::new());
    assert!(
        !bus.is_watched(tenant, device),
        "nobody watches a device on an empty bus"
    );
    let everything = bus.subscribe(tenant);
    assert!(
        !bus.is_watched(tenant, device),
        "a tenant-wide subscription must not count as watching every device"
    );
    let first = bus.subscribe_devices(tenant, &[device]);
    let second = bus.subscribe_devices(tenant, &[device]);
    assert!(
        bus.is_watched(tenant, device),
        "a device subscription watches its device"
    );
    assert!(
        !bus.is_watched(tenant, other_device),
        "only the devices a subscription names are watched"
    );
    assert!(
        !bus.is_watched(other_tenant, device),
        "the same device id in another tenant is not watched"
    );
    drop(first);
    assert!(
        bus.is_watched(tenant, device),
        "still watched while one device subscription is open"
    );
    drop(second);
    assert!(
        !bus.is_watched(tenant, device),
        "no longer watched once its last device subscription is dropped"
    );
    drop(everything);
}
