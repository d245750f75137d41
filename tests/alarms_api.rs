//! End to end over HTTP and WebSocket: alarm rules managed by Admin and
//! refused to Limited, an alarm raised through the service (the evaluator's
//! call), listed, acknowledged by Basic but not by Read-only, delivered on
//! `alarmEvents`, and invisible to another tenant.

// Test code: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use hearth_domain::{DeviceId, PointKey};
use hearth_tests::{error_code, ws_connect, ws_next, ws_subscribe, DemoServer};
use serde_json::json;

const PUT: &str = "mutation($input: PutAlarmRuleInput!) { putAlarmRule(input: $input) { id version name severity target { deviceId areaId tenant } condition { threshold { point limit direction } } notifications { webhook { url } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_rules_and_the_alarm_lifecycle_over_the_api() {
    // Given the demo, acme's admin and one of acme's devices
    let server = DemoServer::start().await.unwrap();
    let admin = server.login("admin@acme.test").await.unwrap();
    let (device_id, _) = admin.device_ids().await.unwrap().remove(0);
    let input = json!({
        "name": "Flow too hot",
        "severity": "MAJOR",
        "target": { "deviceId": device_id },
        "condition": { "threshold": {
            "point": "flow_temp", "direction": "ABOVE", "limit": 90.0,
            "hysteresis": 2.0, "onDelaySeconds": 60, "offDelaySeconds": 0 } },
        "notifications": { "recipients": [{ "email": "ops@acme.test", "language": "DA" }],
            "delaySeconds": 0, "notifyOnClear": true,
            "webhook": { "url": "https://hooks.acme.test/x", "secret": "0123456789abcdef-secret" } }
    });

    // When Limited puts a rule, Then it is FORBIDDEN
    let limited = server.login("limited@acme.test").await.unwrap();
    let refused = limited.gql(PUT, json!({ "input": input })).await.unwrap();
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{refused}"
    );

    // When the admin puts it, Then it is stored at version 1, the secret not shown
    let put = admin.data(PUT, json!({ "input": input })).await.unwrap();
    let rule = &put["putAlarmRule"];
    assert_eq!(rule["version"], 1, "{put}");
    assert_eq!(rule["target"]["deviceId"], device_id);
    assert_eq!(rule["condition"]["threshold"]["limit"], 90.0);
    assert!(!put.to_string().contains("0123456789abcdef-secret"));
    let listed = admin
        .data("{ alarmRules { id name } }", json!({}))
        .await
        .unwrap();
    assert_eq!(listed["alarmRules"][0]["id"], rule["id"]);

    // And a Basic member subscribed to alarmEvents over WebSocket
    let basic = server.login("basic@acme.test").await.unwrap();
    let token = basic.token.clone().unwrap();
    let (mut ws, ack) = ws_connect(
        server.addr(),
        "graphql-transport-ws",
        json!({ "authorization": format!("Bearer {token}") }),
    )
    .await
    .unwrap();
    assert_eq!(ack.unwrap()["type"], "connection_ack");
    ws_subscribe(
        &mut ws,
        "a",
        "subscription { alarmEvents { transition alarm { id state severity deviceId point message raisedAt } } }",
        json!({}),
    )
    .await
    .unwrap();

    // When the evaluator's side raises an alarm of the rule (repeated on
    // fresh points until the subscription, set up concurrently, sees one)
    let alarms = server.running.services.alarms().unwrap().clone();
    let stored = alarms.all_rules().await.unwrap();
    let domain_rule = stored
        .iter()
        .find(|r| r.id.to_string() == rule["id"].as_str().unwrap())
        .unwrap()
        .clone();
    let device: DeviceId = device_id.parse().unwrap();
    let mut event = None;
    for attempt in 0..50 {
        let raised = alarms
            .raise(
                &domain_rule,
                device,
                Some(PointKey::new(format!("flow_temp_{attempt}")).unwrap()),
                Some(91.5),
                Utc::now(),
                "flow_temp above 90 for 60 s".into(),
            )
            .await
            .unwrap();
        if let Ok(Some(msg)) = ws_next(&mut ws, Duration::from_millis(200)).await {
            event = Some((raised, msg));
            break;
        }
    }
    let (_, msg) = event.expect("alarmEvents delivered a raise");
    let delivered = &msg["payload"]["data"]["alarmEvents"];
    assert_eq!(delivered["transition"], "RAISED", "{msg}");
    assert_eq!(delivered["alarm"]["state"], "RAISED");
    assert_eq!(delivered["alarm"]["deviceId"], device_id);
    let alarm_id = delivered["alarm"]["id"].as_str().unwrap().to_owned();

    // Then it is listed, newest first, for anyone in scope
    let readonly = server.login("readonly@acme.test").await.unwrap();
    let page = readonly
        .data(
            "query($d: ID) { alarms(deviceId: $d, state: [RAISED], first: 100) { totalCount edges { node { id state ruleName } } } }",
            json!({ "d": device_id }),
        )
        .await
        .unwrap();
    let ids: Vec<&str> = page["alarms"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["node"]["id"].as_str())
        .collect();
    assert!(ids.contains(&alarm_id.as_str()), "{page}");

    // When Read-only acknowledges, Then FORBIDDEN
    const ACK: &str = "mutation($id: ID!) { acknowledgeAlarm(id: $id, comment: \"on it\") { id state acknowledgement { comment } } }";
    let refused = readonly.gql(ACK, json!({ "id": alarm_id })).await.unwrap();
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{refused}"
    );

    // When Basic acknowledges, Then it is acknowledged and the event arrives
    let acked = basic.data(ACK, json!({ "id": alarm_id })).await.unwrap();
    assert_eq!(acked["acknowledgeAlarm"]["state"], "ACKNOWLEDGED");
    assert_eq!(
        acked["acknowledgeAlarm"]["acknowledgement"]["comment"],
        "on it"
    );
    let mut saw_ack = false;
    for _ in 0..100 {
        let Some(msg) = ws_next(&mut ws, Duration::from_secs(5)).await.unwrap() else {
            break;
        };
        let e = &msg["payload"]["data"]["alarmEvents"];
        if e["transition"] == "ACKNOWLEDGED" && e["alarm"]["id"] == alarm_id.as_str() {
            saw_ack = true;
            break;
        }
    }
    assert!(saw_ack, "alarmEvents delivered the acknowledgement");

    // And another tenant sees none of it
    let globex = server.login("admin@globex.test").await.unwrap();
    let theirs = globex
        .data(
            "{ alarms(first: 10) { totalCount } alarmRules { id } }",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(theirs["alarms"]["totalCount"], 0, "{theirs}");
    assert_eq!(theirs["alarmRules"], json!([]));
    let foreign = globex.gql(ACK, json!({ "id": alarm_id })).await.unwrap();
    assert_eq!(
        error_code(&foreign).as_deref(),
        Some("NOT_FOUND"),
        "{foreign}"
    );
    let foreign_device = globex
        .gql(
            "query($d: ID) { alarms(deviceId: $d) { totalCount } }",
            json!({ "d": device_id }),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&foreign_device).as_deref(), Some("NOT_FOUND"));
    server.running.stop().await;
}
