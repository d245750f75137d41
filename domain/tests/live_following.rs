//! Use-case tier: a live subscription that follows its caller's access
//! (`LiveService::subscribe_live_following`) narrows in place, ignores a
//! principal of another tenant, and delivers nothing once no device is left.
//! Everything here is ready at once (in-memory stores, the in-process bus),
//! so "nothing delivered" is "nothing ready", without waiting for a clock.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::Utc;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use hearth_domain::model::{Device, DeviceScope, Quality, Reading, Role};
use hearth_domain::services::{LiveUpdate, PollTarget};
use hearth_domain::{DeviceId, Principal, SystemPrincipal};
use support::{read_only_point, world, World};

async fn publish(w: &World, targets: &[PollTarget], device: &Device, value: f64) {
    let reading = Reading {
        tenant_id: device.tenant_id,
        device_id: device.id,
        point: read_only_point(),
        timestamp: Utc::now(),
        value,
        quality: Quality::Good,
    };
    let target = targets
        .iter()
        .find(|t| t.device().id == device.id)
        .expect("every device is a poll target");
    w.services
        .ingest
        .record_readings(target, vec![reading])
        .await;
}

/// The devices of the readings ready on `stream` now, in order (status
/// changes skipped).
fn ready_readings(stream: &mut BoxStream<'static, LiveUpdate>) -> Vec<DeviceId> {
    let mut devices = Vec::new();
    while let Some(Some(update)) = stream.next().now_or_never() {
        match update {
            LiveUpdate::Readings(batch) => devices.extend(batch.iter().map(|r| r.device_id)),
            LiveUpdate::Reading(r) => devices.push(r.device_id),
            LiveUpdate::Status(_) | LiveUpdate::Alarm(_) | LiveUpdate::Lagged(_) => {}
        }
    }
    devices
}

#[tokio::test]
async fn a_following_subscription_narrows_in_place_and_ignores_other_tenants_principals() {
    // Given acme's Full member watching every device, with access changes
    // fed by hand
    let w = world().await;
    let full = w.acme.member(Role::Full);
    let (changes, feed) = futures::channel::mpsc::unbounded::<Principal>();
    let mut stream = w
        .services
        .live
        .subscribe_live_following(&full, &[], feed.boxed())
        .await
        .expect("a member may watch their scope");
    let targets = w
        .services
        .ingest
        .poll_targets(&SystemPrincipal::poller())
        .await
        .expect("the poller gets its targets");
    let (north, south) = (&w.acme.north_device, &w.acme.south_device);
    publish(&w, &targets, north, 1.0).await;
    assert_eq!(ready_readings(&mut stream), vec![north.id]);

    // When the same user shows up as a member of globex with no scope at all
    let elsewhere = Principal {
        tenant_id: w.globex.tenant.id,
        scope: DeviceScope::Restricted {
            areas: Vec::new(),
            devices: Vec::new(),
        },
        ..full.clone()
    };
    changes.unbounded_send(elsewhere).unwrap();
    publish(&w, &targets, south, 2.0).await;

    // Then that principal does not steer acme's subscription
    assert_eq!(ready_readings(&mut stream), vec![south.id]);

    // When acme narrows the member to `south`, and both devices report
    changes
        .unbounded_send(Principal {
            scope: DeviceScope::Restricted {
                areas: vec![w.acme.south.id],
                devices: Vec::new(),
            },
            ..full.clone()
        })
        .unwrap();
    publish(&w, &targets, north, 3.0).await;
    publish(&w, &targets, south, 4.0).await;

    // Then the same stream carries south alone
    assert_eq!(ready_readings(&mut stream), vec![south.id]);

    // When a change would widen it again to every device
    changes.unbounded_send(full.clone()).unwrap();
    publish(&w, &targets, north, 5.0).await;
    publish(&w, &targets, south, 6.0).await;

    // Then it stays narrowed: a change never widens a subscription
    assert_eq!(ready_readings(&mut stream), vec![south.id]);

    // When the member is left with no device at all
    changes
        .unbounded_send(Principal {
            scope: DeviceScope::Restricted {
                areas: Vec::new(),
                devices: Vec::new(),
            },
            ..full.clone()
        })
        .unwrap();
    publish(&w, &targets, south, 7.0).await;

    // Then nothing is delivered, and the stream stays open
    assert_eq!(ready_readings(&mut stream), Vec::<DeviceId>::new());
    drop(changes);
    publish(&w, &targets, north, 8.0).await;
    assert!(
        stream.next().now_or_never().is_none(),
        "the stream neither delivers nor ends"
    );
}
