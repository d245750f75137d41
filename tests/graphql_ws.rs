//! End-to-end: subscriptions over WebSocket (`graphql-transport-ws` and the
//! legacy `graphql-ws`), authenticated in `connection_init`.

use std::time::Duration;

use hearth_tests::{ws_connect, ws_next, ws_subscribe, DemoServer};
use serde_json::{json, Value};

const LIVE: &str = "subscription($ids: [ID!]!) { liveValues(deviceIds: $ids) { deviceId point value quality timestamp } }";

/// The code of an operation's error, whether the server reports it as an
/// `error` message or as a `next` carrying errors (async-graphql does the
/// latter for resolver errors).
fn ws_error_code(msg: &Value) -> Option<String> {
    let errors = match msg["type"].as_str() {
        Some("error") => &msg["payload"],
        Some("next") => &msg["payload"]["errors"],
        _ => return None,
    };
    errors[0]["extensions"]["code"].as_str().map(str::to_string)
}

fn bearer(token: &Option<String>) -> Value {
    json!({ "authorization": format!("Bearer {}", token.clone().unwrap_or_default()) })
}

#[tokio::test]
async fn live_values_reach_an_authenticated_subscriber() -> anyhow::Result<()> {
    // Given a running demo and an operator's token
    let server = DemoServer::start().await?;
    let basic = server.login("basic@acme.test").await?;
    let ids = basic.device_ids().await?;
    let device = ids.first().map(|(id, _)| id.clone()).unwrap_or_default();
    // When they subscribe over graphql-transport-ws
    let (mut ws, ack) =
        ws_connect(server.addr(), "graphql-transport-ws", bearer(&basic.token)).await?;
    assert_eq!(
        ack.as_ref().map(|a| a["type"].clone()),
        Some(json!("connection_ack"))
    );
    ws_subscribe(&mut ws, "1", LIVE, json!({ "ids": [device] })).await?;
    // Then polled values of that device arrive
    let mut seen = 0;
    while seen < 3 {
        let msg = ws_next(&mut ws, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        assert_eq!(msg["type"], "next", "{msg}");
        let value = &msg["payload"]["data"]["liveValues"];
        assert_eq!(value["deviceId"], json!(device));
        assert!(value["value"].is_number());
        seen += 1;
    }
    Ok(())
}

#[tokio::test]
async fn a_written_setpoint_shows_up_live() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let basic = server.login("basic@acme.test").await?;
    let device = basic
        .device_ids()
        .await?
        .first()
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    let (mut ws, _) =
        ws_connect(server.addr(), "graphql-transport-ws", bearer(&basic.token)).await?;
    ws_subscribe(&mut ws, "w", LIVE, json!({ "ids": [device] })).await?;
    let write = basic
        .data(
            "mutation($d: ID!) { writeParameter(deviceId: $d, point: \"room_setpoint_comfort\", value: 24.5) { status } }",
            json!({ "d": device }),
        )
        .await?;
    assert_eq!(write["writeParameter"]["status"], "CONFIRMED");
    let mut found = false;
    for _ in 0..200 {
        let Some(msg) = ws_next(&mut ws, Duration::from_secs(10)).await? else {
            break;
        };
        let v = &msg["payload"]["data"]["liveValues"];
        if v["point"] == "room_setpoint_comfort" && v["value"] == 24.5 {
            found = true;
            break;
        }
    }
    assert!(found, "the written value was never published live");
    Ok(())
}

#[tokio::test]
async fn subscriptions_refuse_bad_tokens_and_foreign_devices() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    // A forged token closes the connection instead of acknowledging it.
    let (_, reply) = ws_connect(
        server.addr(),
        "graphql-transport-ws",
        json!({ "authorization": "Bearer forged.token.here" }),
    )
    .await?;
    assert!(
        reply.is_none()
            || reply
                .as_ref()
                .is_some_and(|r| r["type"] != "connection_ack"),
        "{reply:?}"
    );

    // No token: the subscription itself is UNAUTHENTICATED.
    let (mut ws, ack) = ws_connect(server.addr(), "graphql-transport-ws", json!({})).await?;
    assert_eq!(
        ack.map(|a| a["type"].clone()),
        Some(json!("connection_ack"))
    );
    ws_subscribe(&mut ws, "a", LIVE, json!({ "ids": [] })).await?;
    let msg = ws_next(&mut ws, Duration::from_secs(5))
        .await?
        .unwrap_or(Value::Null);
    assert_eq!(
        ws_error_code(&msg).as_deref(),
        Some("UNAUTHENTICATED"),
        "{msg}"
    );

    // Another tenant's device: NOT_FOUND, no events.
    let globex = server.login("admin@globex.test").await?;
    let foreign = globex
        .device_ids()
        .await?
        .first()
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    let acme = server.login("admin@acme.test").await?;
    let (mut ws, _) =
        ws_connect(server.addr(), "graphql-transport-ws", bearer(&acme.token)).await?;
    ws_subscribe(&mut ws, "b", LIVE, json!({ "ids": [foreign] })).await?;
    let msg = ws_next(&mut ws, Duration::from_secs(5))
        .await?
        .unwrap_or(Value::Null);
    assert_eq!(ws_error_code(&msg).as_deref(), Some("NOT_FOUND"), "{msg}");
    assert!(!msg.to_string().contains("Plant"));
    Ok(())
}

#[tokio::test]
async fn an_all_devices_subscription_only_carries_the_callers_tenant() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let globex = server.login("admin@globex.test").await?;
    let globex_ids: Vec<String> = globex
        .device_ids()
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let acme = server.login("admin@acme.test").await?;
    let acme_ids: Vec<String> = acme
        .device_ids()
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let (mut ws, _) =
        ws_connect(server.addr(), "graphql-transport-ws", bearer(&globex.token)).await?;
    ws_subscribe(&mut ws, "all", LIVE, json!({ "ids": [] })).await?;
    for _ in 0..60 {
        let msg = ws_next(&mut ws, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        let id = msg["payload"]["data"]["liveValues"]["deviceId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            globex_ids.contains(&id),
            "event of a device not in globex: {msg}"
        );
        assert!(!acme_ids.contains(&id));
    }
    Ok(())
}

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_works_too() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let device = admin
        .device_ids()
        .await?
        .first()
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    let (mut ws, ack) = ws_connect(server.addr(), "graphql-ws", bearer(&admin.token)).await?;
    assert_eq!(
        ack.map(|a| a["type"].clone()),
        Some(json!("connection_ack"))
    );
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({ "id": "1", "type": "start", "payload": { "query": LIVE, "variables": { "ids": [device] } } })
            .to_string()
            .into(),
    ))
    .await?;
    let msg = ws_next(&mut ws, Duration::from_secs(10))
        .await?
        .unwrap_or(Value::Null);
    assert_eq!(msg["type"], "data", "{msg}");
    assert!(msg["payload"]["data"]["liveValues"]["value"].is_number());
    Ok(())
}
