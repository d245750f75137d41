//! End-to-end: the field layer seen through GraphQL — devices going offline
//! and back, confirmed writes moving the simulated plant, enumerated points,
//! profiles managed by admins, and slow live subscribers.

use std::time::Duration;

use futures::StreamExt;
use hearth_domain::model::{Quality, Reading};
use hearth_domain::services::LiveUpdate;
use hearth_domain::{DeviceId, PointKey, SystemPrincipal};
use hearth_modbus::simulator::{DeviceHandle, Fault};
use hearth_tests::{error_code, eventually, ws_connect, ws_next, ws_subscribe, Client, DemoServer};
use serde_json::{json, Value};

const DEVICE: &str = "query($id: ID!) { device(id: $id) { online points { key value valueLabel options { value label } quality updatedAt } } }";

/// The simulated controller behind a device of the demo.
async fn controller(server: &DemoServer, device: &str) -> anyhow::Result<DeviceHandle> {
    let id: DeviceId = device.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    // What the poller is given: the devices its system principal may read.
    let targets = server
        .running
        .services
        .ingest
        .poll_targets(&SystemPrincipal::poller())
        .await?;
    let port = targets
        .iter()
        .find(|t| t.device().id == id)
        .map(|t| t.device().endpoint.port)
        .ok_or_else(|| anyhow::anyhow!("no such device"))?;
    let sim = server
        .running
        .simulator
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no simulator"))?;
    sim.devices()
        .iter()
        .find(|d| d.addr.port() == port)
        .map(|d| d.handle.clone())
        .ok_or_else(|| anyhow::anyhow!("no controller on port {port}"))
}

fn point<'a>(device: &'a Value, key: &str) -> &'a Value {
    device["device"]["points"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["key"] == key))
        .unwrap_or(&Value::Null)
}

async fn first_device(client: &Client) -> anyhow::Result<String> {
    Ok(client
        .device_ids()
        .await?
        .first()
        .map(|(id, _)| id.clone())
        .unwrap_or_default())
}

#[tokio::test]
async fn a_silent_device_goes_offline_with_stale_values_and_comes_back() -> anyhow::Result<()> {
    // Given a polled device and a deviceStatus subscriber
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let device = first_device(&admin).await?;
    let online = eventually(Duration::from_secs(15), || async {
        let d = admin.data(DEVICE, json!({ "id": device })).await?;
        Ok(
            (d["device"]["online"] == true && point(&d, "outdoor_temp")["quality"] == "GOOD")
                .then_some(d),
        )
    })
    .await?;
    let token =
        json!({ "authorization": format!("Bearer {}", admin.token.clone().unwrap_or_default()) });
    let (mut ws, _) = ws_connect(server.addr(), "graphql-transport-ws", token).await?;
    ws_subscribe(
        &mut ws,
        "s",
        "subscription($ids: [ID!]!) { deviceStatus(deviceIds: $ids) { deviceId online timestamp } }",
        json!({ "ids": [device] }),
    )
    .await?;

    // When its controller stops answering
    let handle = controller(&server, &device).await?;
    handle.set_fault(Fault::NoAnswer);

    // Then subscribers hear it went offline
    let event = ws_next(&mut ws, Duration::from_secs(15))
        .await?
        .unwrap_or(Value::Null);
    assert_eq!(
        event["payload"]["data"]["deviceStatus"]["online"], false,
        "{event}"
    );
    // And its values turn STALE, keeping the time they were last read
    let offline = admin.data(DEVICE, json!({ "id": device })).await?;
    assert_eq!(offline["device"]["online"], false);
    let outdoor = point(&offline, "outdoor_temp");
    assert_eq!(outdoor["quality"], "STALE");
    let read_at = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["updatedAt"].as_str().unwrap_or_default()).ok()
    };
    let stale_at = read_at(outdoor);
    assert!(stale_at >= read_at(point(&online, "outdoor_temp")));
    // ... and are not silently refreshed while it stays silent
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = admin.data(DEVICE, json!({ "id": device })).await?;
    assert_eq!(read_at(point(&later, "outdoor_temp")), stale_at);
    assert_eq!(point(&later, "outdoor_temp")["quality"], "STALE");

    // When it answers again, it is back online with fresh values
    handle.set_fault(Fault::None);
    let event = ws_next(&mut ws, Duration::from_secs(20))
        .await?
        .unwrap_or(Value::Null);
    assert_eq!(
        event["payload"]["data"]["deviceStatus"]["online"], true,
        "{event}"
    );
    eventually(Duration::from_secs(15), || async {
        let d = admin.data(DEVICE, json!({ "id": device })).await?;
        let fresh = point(&d, "outdoor_temp")["quality"] == "GOOD"
            && read_at(point(&d, "outdoor_temp")) > stale_at;
        Ok(fresh.then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_confirmed_setpoint_write_moves_the_plant() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    // The comfort setpoint only applies in comfort periods; the plant's
    // schedule follows the wall clock, so hold the controller in comfort mode
    // first, or the test would pass by day and fail by night.
    let basic = server.login("limited@acme.test").await?;
    let device = first_device(&basic).await?;
    let comfort = basic
        .data(
            "mutation($d: ID!) { writeParameter(deviceId: $d, point: \"mode\", value: 1) { status } }",
            json!({ "d": device }),
        )
        .await?;
    assert_eq!(comfort["writeParameter"]["status"], "CONFIRMED");
    let flow = |d: &Value| point(d, "flow_temp")["value"].as_f64();
    let before = eventually(Duration::from_secs(15), || async {
        Ok(flow(&basic.data(DEVICE, json!({ "id": device })).await?))
    })
    .await?;
    // Lower the comfort setpoint to the bottom of its range, then raise it to the top:
    // the flow temperature must follow upwards.
    let write = "mutation($d: ID!, $v: Float!) { writeParameter(deviceId: $d, point: \"room_setpoint_comfort\", value: $v) { status } }";
    let low = basic.data(write, json!({ "d": device, "v": 10.0 })).await?;
    assert_eq!(low["writeParameter"]["status"], "CONFIRMED");
    let lowest = eventually(Duration::from_secs(20), || async {
        let f = flow(&basic.data(DEVICE, json!({ "id": device })).await?);
        Ok(f.filter(|f| *f < before - 1.0))
    })
    .await?;
    let high = basic.data(write, json!({ "d": device, "v": 30.0 })).await?;
    assert_eq!(high["writeParameter"]["status"], "CONFIRMED");
    eventually(Duration::from_secs(20), || async {
        let f = flow(&basic.data(DEVICE, json!({ "id": device })).await?);
        Ok(f.filter(|f| *f > lowest + 2.0))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn enumerated_points_carry_labels_and_refuse_other_values() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let limited = server.login("limited@acme.test").await?;
    let device = first_device(&limited).await?;
    let mode = eventually(Duration::from_secs(15), || async {
        let d = limited.data(DEVICE, json!({ "id": device })).await?;
        let m = point(&d, "mode").clone();
        Ok(m["valueLabel"].is_string().then_some(m))
    })
    .await?;
    assert_eq!(mode["options"].as_array().map(Vec::len), Some(4));
    let write = "mutation($d: ID!, $v: Float!) { writeParameter(deviceId: $d, point: \"mode\", value: $v) { status value } }";
    let ok = limited
        .data(write, json!({ "d": device, "v": 2.0 }))
        .await?;
    assert_eq!(ok["writeParameter"]["status"], "CONFIRMED");
    let res = limited.gql(write, json!({ "d": device, "v": 1.5 })).await?;
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"));
    let d = limited.data(DEVICE, json!({ "id": device })).await?;
    assert_eq!(point(&d, "mode")["valueLabel"], "saving");
    Ok(())
}

#[tokio::test]
async fn admins_add_profiles_that_stay_within_their_tenant() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let put = "mutation($p: DeviceProfileInput!) { putProfile(input: $p) { id builtIn livePollIntervalMs points { key options { label } } } }";
    let profile = |id: &str| {
        json!({ "id": id, "name": "AHU 2000", "pollIntervalMs": 2000, "livePollIntervalMs": 500, "points": [
            { "key": "supply_temp", "name": "Supply air", "register": "INPUT", "address": 1, "dataType": "I16", "scale": 0.1, "unit": "°C" },
            { "key": "fan_mode", "name": "Fan", "register": "HOLDING", "address": 10, "dataType": "U16", "writable": true,
              "writeLevel": "BASIC", "min": 0, "max": 2, "options": [{ "value": 0, "label": "off" }, { "value": 1, "label": "low" }, { "value": 2, "label": "high" }] }
        ]})
    };
    // Given an admin, when they add a profile in their namespace, then it is stored as theirs
    let res = admin
        .data(put, json!({ "p": profile("acme.ahu-2000") }))
        .await?;
    assert_eq!(res["putProfile"]["builtIn"], false);
    assert_eq!(res["putProfile"]["livePollIntervalMs"], 500);
    assert_eq!(
        res["putProfile"]["points"][1]["options"][2]["label"],
        "high"
    );
    let listed = admin
        .data("{ profiles { id builtIn livePollIntervalMs } }", json!({}))
        .await?;
    let ids: Vec<&str> = listed["profiles"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        ids.contains(&"acme.ahu-2000") && ids.contains(&"ecl-comfort-310"),
        "{ids:?}"
    );
    let built_in = listed["profiles"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["id"] == "ecl-comfort-310"))
        .map(|p| p["livePollIntervalMs"].clone());
    assert_eq!(built_in, Some(json!(250)), "{listed}");

    // Other tenants never see it, nor can they write into acme's namespace
    let globex = server.login("admin@globex.test").await?;
    let listed = globex.data("{ profiles { id } }", json!({})).await?;
    assert!(!listed.to_string().contains("acme.ahu-2000"));
    let res = globex
        .gql(put, json!({ "p": profile("acme.ahu-2000") }))
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{res}");
    // Built-ins cannot be replaced, invalid profiles are refused, and Basic may not manage profiles
    let res = admin
        .gql(put, json!({ "p": profile("ecl-comfort-310") }))
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"));
    let mut empty = profile("acme.empty");
    empty["points"] = json!([]);
    let res = admin.gql(put, json!({ "p": empty })).await?;
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"));
    for live in [json!(20), json!(5000), json!(-1)] {
        // Faster than 50 ms, slower than the poll interval, negative
        let mut too_fast = profile("acme.fast");
        too_fast["livePollIntervalMs"] = live;
        let res = admin.gql(put, json!({ "p": too_fast })).await?;
        assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{res}");
    }
    let mut writable_input = profile("acme.bad");
    writable_input["points"][0]["writable"] = json!(true);
    let res = admin.gql(put, json!({ "p": writable_input })).await?;
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"));
    let basic = server.login("basic@acme.test").await?;
    let res = basic
        .gql(put, json!({ "p": profile("acme.other") }))
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("FORBIDDEN"));
    Ok(())
}

#[tokio::test]
async fn a_slow_subscriber_does_not_delay_a_fast_one() -> anyhow::Result<()> {
    // Given two live subscribers of the same device, one of which never reads
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let device = first_device(&admin).await?;
    let services = &server.running.services;
    let principal = services
        .auth
        .authenticate(admin.token.as_deref().unwrap_or_default())
        .await?;
    let id: DeviceId = device.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut slow = services.live.subscribe_live(&principal, &[id]).await?;
    let mut fast = services.live.subscribe_live(&principal, &[id]).await?;
    let marker = PointKey::new("bench_marker")?;

    // When a burst far larger than any subscriber's buffer is published
    const BURST: usize = 20_000;
    let publisher = {
        // Through the ingest use case, as the poller records what it reads.
        let ingest = services.ingest.clone();
        let target = ingest
            .poll_targets(&SystemPrincipal::poller())
            .await?
            .into_iter()
            .find(|t| t.device().id == id)
            .ok_or_else(|| anyhow::anyhow!("the poller may poll the device"))?;
        let (tenant, marker) = (principal.tenant_id, marker.clone());
        tokio::spawn(async move {
            for i in 0..BURST {
                let reading = Reading {
                    tenant_id: tenant,
                    device_id: id,
                    point: marker.clone(),
                    timestamp: chrono::Utc::now(),
                    value: i as f64,
                    quality: Quality::Good,
                };
                ingest.record_readings(&target, vec![reading]).await;
                // Yield often enough that a subscriber which keeps reading never
                // falls 4,096 events behind on this single-threaded runtime.
                if i % 32 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };

    // Then the fast one receives every marker in order
    let mut next_expected = 0.0;
    while next_expected < BURST as f64 {
        let update = tokio::time::timeout(Duration::from_secs(30), fast.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("fast stream ended"))?;
        let markers: Vec<f64> = match &update {
            LiveUpdate::Reading(r) if r.point == marker => vec![r.value],
            LiveUpdate::Readings(batch) => batch
                .iter()
                .filter(|r| r.point == marker)
                .map(|r| r.value)
                .collect(),
            _ => Vec::new(),
        };
        for value in markers {
            assert_eq!(
                value, next_expected,
                "the fast subscriber missed or reordered updates"
            );
            next_expected += 1.0;
        }
        if let LiveUpdate::Lagged(n) = update {
            panic!("the fast subscriber lagged by {n}");
        }
    }
    publisher.await?;
    // And the slow one is told it fell behind instead of holding anyone up
    let first = tokio::time::timeout(Duration::from_secs(5), slow.next()).await?;
    assert!(
        matches!(first, Some(LiveUpdate::Lagged(n)) if n > 0),
        "{first:?}"
    );
    Ok(())
}

#[tokio::test]
async fn one_polled_value_travels_from_poll_to_live_to_history() -> anyhow::Result<()> {
    // Given a live subscriber of one device
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let device = first_device(&admin).await?;
    let token =
        json!({ "authorization": format!("Bearer {}", admin.token.clone().unwrap_or_default()) });
    let (mut ws, _) = ws_connect(server.addr(), "graphql-transport-ws", token).await?;
    ws_subscribe(
        &mut ws,
        "v",
        "subscription($ids: [ID!]!) { liveValues(deviceIds: $ids) { point value quality timestamp } }",
        json!({ "ids": [device] }),
    )
    .await?;
    // When the poller reads the outdoor temperature, the subscriber sees it
    let live = loop {
        let msg = ws_next(&mut ws, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        let v = msg["payload"]["data"]["liveValues"].clone();
        if v["point"] == "outdoor_temp" {
            break v;
        }
    };
    assert_eq!(live["quality"], "GOOD");
    let at = chrono::DateTime::parse_from_rfc3339(live["timestamp"].as_str().unwrap_or_default())?;
    // Then history holds exactly that reading at that instant
    let query = "query($d: ID!, $f: DateTime!, $t: DateTime!) { history(deviceId: $d, point: \"outdoor_temp\", from: $f, to: $t, bucketSeconds: 1, aggregate: LAST) { timestamp value } }";
    let vars = json!({ "d": device, "f": at.to_rfc3339(), "t": (at + chrono::Duration::milliseconds(500)).to_rfc3339() });
    let stored = eventually(Duration::from_secs(10), || async {
        let h = admin.data(query, vars.clone()).await?;
        Ok(h["history"].as_array().filter(|b| !b.is_empty()).cloned())
    })
    .await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["value"], live["value"]);
    Ok(())
}
