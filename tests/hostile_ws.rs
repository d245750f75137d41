//! End-to-end: the WebSocket endpoint against clients that misbehave or
//! outlive their rights — sockets that never initialise, duplicate and
//! oversized ids, too many operations or connections, oversized messages,
//! dead peers, expired tokens, removed memberships and changed roles. Each
//! gets the protocol's close code or a typed error, and the server keeps
//! serving.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hearth::ws::WsLimits;
use hearth_domain::ids::{TenantId, UserId};
use hearth_domain::model::{DeviceScope, Membership, Role};
use hearth_domain::ports::TokenService;
use hearth_domain::SystemPrincipal;
use hearth_tests::{
    error_code, ws_close_code, ws_connect, ws_next, ws_open, ws_subscribe, Client, DemoServer, Ws,
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const LIVE: &str =
    "subscription($ids: [ID!]!) { liveValues(deviceIds: $ids) { deviceId point value } }";
const TRANSPORT_WS: &str = "graphql-transport-ws";
const LEGACY_WS: &str = "graphql-ws";

fn bearer(token: &Option<String>) -> Value {
    json!({ "authorization": format!("Bearer {}", token.clone().unwrap_or_default()) })
}

/// The code of an operation's error, sent as `error` or as `next` with errors.
fn op_error_code(msg: &Value) -> Option<String> {
    let errors = match msg["type"].as_str() {
        Some("error") if msg["payload"].is_array() => &msg["payload"][0],
        Some("error") => &msg["payload"],
        Some("next") | Some("data") => &msg["payload"]["errors"][0],
        _ => return None,
    };
    errors["extensions"]["code"].as_str().map(str::to_string)
}

async fn first_device(client: &Client) -> anyhow::Result<String> {
    client
        .device_ids()
        .await?
        .first()
        .map(|(id, _)| id.clone())
        .ok_or_else(|| anyhow::anyhow!("no devices"))
}

async fn who(client: &Client) -> anyhow::Result<(UserId, TenantId)> {
    let me = client
        .data("{ me { user { id } tenant { id } } }", json!({}))
        .await?;
    let user = me["me"]["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    let tenant = me["me"]["tenant"]["id"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    Ok((user, tenant))
}

/// The server still answers a normal query after an attack.
async fn still_serves(server: &DemoServer) -> anyhow::Result<()> {
    let basic = server.login("basic@acme.test").await?;
    let data = basic
        .data("{ devices(first: 1) { totalCount } }", json!({}))
        .await?;
    assert!(data["devices"]["totalCount"].as_u64().unwrap_or(0) > 0);
    Ok(())
}

/// Waits for the next message of operation `id` that is not a value.
async fn next_non_value(ws: &mut Ws, id: &str, wait: Duration) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = ws_next(ws, left)
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        if msg["id"] != id {
            continue;
        }
        if msg["type"] == "next" && msg["payload"].get("errors").is_none() {
            continue;
        }
        return Ok(msg);
    }
}

fn fast_limits() -> WsLimits {
    WsLimits {
        init_timeout: Duration::from_secs(1),
        keepalive_interval: Duration::from_millis(500),
        peer_timeout: Duration::from_secs(3),
        max_subscriptions: 3,
        max_connections_per_user: 2,
        max_pending_handshakes: 4,
        ..WsLimits::default()
    }
}

#[tokio::test]
async fn a_socket_that_never_initialises_is_closed_with_4408() -> anyhow::Result<()> {
    // Given a server that allows one second for connection_init
    let server = DemoServer::start_with(fast_limits()).await?;
    // When a client connects and says nothing
    let mut ws = ws_open(server.addr(), TRANSPORT_WS).await?;
    // Then the server closes it with 4408
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(10)).await?,
        Some(4408)
    );
    still_serves(&server).await
}

#[tokio::test]
async fn handshakes_in_progress_are_bounded() -> anyhow::Result<()> {
    // Given a server that holds at most four uninitialised sockets
    let server = DemoServer::start_with(WsLimits {
        max_pending_handshakes: 4,
        ..WsLimits::default()
    })
    .await?;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(ws_open(server.addr(), TRANSPORT_WS).await?);
    }
    // When a fifth client tries to upgrade
    let fifth = ws_open(server.addr(), TRANSPORT_WS).await;
    // Then the upgrade is refused with 503 ...
    let err = fifth.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("503"), "expected a 503 refusal, got: {err}");
    // ... and once one of them initialises, its slot is free again
    let basic = server.login("basic@acme.test").await?;
    if let Some(ws) = idle.first_mut() {
        ws_init(ws, bearer(&basic.token)).await?;
        let ack = ws_next(ws, Duration::from_secs(5)).await?;
        assert_eq!(
            ack.map(|a| a["type"].clone()),
            Some(json!("connection_ack"))
        );
    }
    let mut freed = None;
    for _ in 0..20 {
        match ws_open(server.addr(), TRANSPORT_WS).await {
            Ok(ws) => {
                freed = Some(ws);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(
        freed.is_some(),
        "an initialised socket must free its handshake slot"
    );
    still_serves(&server).await
}

#[tokio::test]
async fn a_duplicate_operation_id_closes_with_4409() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let basic = server.login("basic@acme.test").await?;
    let device = first_device(&basic).await?;
    let (mut ws, _) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&basic.token)).await?;
    // Given a running subscription "a"
    ws_subscribe(&mut ws, "a", LIVE, json!({ "ids": [device] })).await?;
    let first = ws_next(&mut ws, Duration::from_secs(10)).await?;
    assert_eq!(first.map(|m| m["type"].clone()), Some(json!("next")));
    // When the client subscribes again with the same id
    ws_subscribe(&mut ws, "a", LIVE, json!({ "ids": [device] })).await?;
    // Then the connection is closed with 4409
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(10)).await?,
        Some(4409)
    );
    still_serves(&server).await
}

#[tokio::test]
async fn an_id_may_be_reused_after_its_operation_completed() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let basic = server.login("basic@acme.test").await?;
    let (mut ws, _) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&basic.token)).await?;
    for _ in 0..3 {
        // Given a query that completes
        ws_subscribe(&mut ws, "q", "{ me { role } }", json!({})).await?;
        let next = ws_next(&mut ws, Duration::from_secs(5)).await?;
        assert_eq!(
            next.as_ref()
                .map(|m| m["payload"]["data"]["me"]["role"].clone()),
            Some(json!("BASIC"))
        );
        let complete = ws_next(&mut ws, Duration::from_secs(5)).await?;
        // Then its id is free again (no 4409 on the next round)
        assert_eq!(complete.map(|m| m["type"].clone()), Some(json!("complete")));
    }
    Ok(())
}

#[tokio::test]
async fn an_oversized_id_closes_with_4400_without_echoing_it() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let basic = server.login("basic@acme.test").await?;
    let (mut ws, _) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&basic.token)).await?;
    // When a client sends a 100 KB operation id
    let id = "x".repeat(100_000);
    ws_subscribe(&mut ws, &id, "{ me { role } }", json!({})).await?;
    // Then the socket is closed with 4400 and nothing echoes the id
    let mut echoed = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(Message::Text(text))) => echoed = echoed.max(text.len()),
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => break None,
        }
    };
    assert_eq!(code, Some(4400));
    assert!(echoed < 1_000, "a message of {echoed} bytes came back");
    still_serves(&server).await
}

#[tokio::test]
async fn operations_per_connection_are_bounded() -> anyhow::Result<()> {
    // Given a server that runs at most three operations per connection
    let server = DemoServer::start_with(fast_limits()).await?;
    let basic = server.login("basic@acme.test").await?;
    let device = first_device(&basic).await?;
    let (mut ws, _) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&basic.token)).await?;
    for id in ["1", "2", "3"] {
        ws_subscribe(&mut ws, id, LIVE, json!({ "ids": [device] })).await?;
    }
    // When a fourth subscription is started
    ws_subscribe(&mut ws, "4", LIVE, json!({ "ids": [device] })).await?;
    // Then it gets a RATE_LIMITED error, and the three others keep flowing
    let refused = next_non_value(&mut ws, "4", Duration::from_secs(10)).await?;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(op_error_code(&refused).as_deref(), Some("RATE_LIMITED"));
    let mut ids = std::collections::HashSet::new();
    while ids.len() < 3 {
        let msg = ws_next(&mut ws, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        assert_eq!(msg["type"], "next", "{msg}");
        ids.insert(msg["id"].as_str().unwrap_or_default().to_string());
    }
    assert!(!ids.contains("4"));
    // And once one completes, a new one may start
    ws.send(Message::Text(
        json!({ "type": "complete", "id": "1" }).to_string().into(),
    ))
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws_subscribe(&mut ws, "5", LIVE, json!({ "ids": [device] })).await?;
    let mut five = false;
    for _ in 0..200 {
        let Some(msg) = ws_next(&mut ws, Duration::from_secs(10)).await? else {
            break;
        };
        assert_ne!(msg["type"], "error", "{msg}");
        if msg["id"] == "5" && msg["type"] == "next" {
            five = true;
            break;
        }
    }
    assert!(
        five,
        "a subscription started after a completed one must run"
    );
    Ok(())
}

#[tokio::test]
async fn connections_per_user_are_bounded() -> anyhow::Result<()> {
    // Given a server that allows two connections per user
    let server = DemoServer::start_with(fast_limits()).await?;
    let basic = server.login("basic@acme.test").await?;
    let (_a, ack_a) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&basic.token)).await?;
    let (b, ack_b) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&basic.token)).await?;
    assert_eq!(
        ack_a.map(|a| a["type"].clone()),
        Some(json!("connection_ack"))
    );
    assert_eq!(
        ack_b.map(|a| a["type"].clone()),
        Some(json!("connection_ack"))
    );
    // When the same user opens a third
    let mut c = ws_open(server.addr(), TRANSPORT_WS).await?;
    ws_init(&mut c, bearer(&basic.token)).await?;
    // Then it is closed with 4429, while another user still connects
    assert_eq!(
        ws_close_code(&mut c, Duration::from_secs(10)).await?,
        Some(4429)
    );
    let full = server.login("full@acme.test").await?;
    let (_f, ack_f) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&full.token)).await?;
    assert_eq!(
        ack_f.map(|a| a["type"].clone()),
        Some(json!("connection_ack"))
    );
    // And closing one of the user's connections frees a slot
    drop(b);
    let mut admitted = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_d, ack) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&basic.token)).await?;
        if ack.map(|a| a["type"] == "connection_ack").unwrap_or(false) {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "a closed connection must give its slot back");
    Ok(())
}

#[tokio::test]
async fn an_invalid_token_in_connection_init_closes_with_4403() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    // When a client initialises with a forged token
    let mut ws = ws_open(server.addr(), TRANSPORT_WS).await?;
    ws_init(&mut ws, json!({ "authorization": "Bearer not-a-token" })).await?;
    // Then the socket is closed with 4403
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(5)).await?,
        Some(4403)
    );
    still_serves(&server).await
}

#[tokio::test]
async fn an_oversized_message_closes_the_socket_and_the_server_serves_on() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let basic = server.login("basic@acme.test").await?;
    let (mut ws, _) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&basic.token)).await?;
    // When a client sends a 1 MB message (the limit is 256 KB)
    let padding = "x".repeat(1024 * 1024);
    let _ = ws
        .send(Message::Text(
            json!({ "id": "big", "type": "subscribe", "payload": { "query": "{ me { role } }", "variables": { "pad": padding } } })
                .to_string()
                .into(),
        ))
        .await;
    // Then the socket is closed (1009, message too big) without an answer to it ...
    let mut answered = false;
    let mut code = None;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        match msg {
            Ok(Message::Text(text)) if text.contains("\"big\"") => answered = true,
            Ok(Message::Close(frame)) => {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
            Err(_) => break,
            _ => {}
        }
    }
    assert!(!answered, "an oversized message must not be executed");
    assert!(matches!(code, Some(1009) | None), "closed with {code:?}");
    // ... and the server goes on serving
    still_serves(&server).await
}

#[tokio::test]
async fn a_silent_subscriber_stays_connected_through_keepalives() -> anyhow::Result<()> {
    // Given pings every 0.5 s and peers dropped after 3 s of silence
    let server = DemoServer::start_with(fast_limits()).await?;
    let basic = server.login("basic@acme.test").await?;
    let device = first_device(&basic).await?;
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let (mut ws, _) = ws_connect(server.addr(), protocol, bearer(&basic.token)).await?;
        let start = if protocol == TRANSPORT_WS {
            "subscribe"
        } else {
            "start"
        };
        ws.send(Message::Text(
            json!({ "id": "s", "type": start, "payload": { "query": LIVE, "variables": { "ids": [device] } } })
                .to_string()
                .into(),
        ))
        .await?;
        // When the client only reads for 5 s (its library answers ping frames,
        // it sends no protocol message at all)
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        let (mut values, mut keepalives) = (0, 0);
        while tokio::time::Instant::now() < until {
            match tokio::time::timeout_at(until, ws.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let msg: Value = serde_json::from_str(&text)?;
                    match msg["type"].as_str() {
                        Some("ping") | Some("ka") => keepalives += 1,
                        Some("next") | Some("data") => values += 1,
                        _ => panic!("unexpected message on {protocol}: {msg}"),
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    panic!("{protocol}: a healthy silent subscriber was closed: {frame:?}")
                }
                Ok(Some(Ok(_))) => {}
                Ok(None) | Ok(Some(Err(_))) => panic!("{protocol}: the connection ended"),
            }
        }
        // Then it was kept alive by the server's keepalives and still receives values
        assert!(keepalives >= 2, "{protocol}: {keepalives} keepalives");
        assert!(values > 0, "{protocol}: no values");
    }
    Ok(())
}

#[tokio::test]
async fn a_dead_peer_is_dropped() -> anyhow::Result<()> {
    // Given a subscriber whose process stops reading (so it answers no ping)
    let server = DemoServer::start_with(fast_limits()).await?;
    let basic = server.login("basic@acme.test").await?;
    let (mut ws, _) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&basic.token)).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Then the server has closed it after 3 s without an answer: reading now
    // finds the close frame (1001), or, when the client's late pong hits the
    // closed socket first, the end of the connection
    let code = ws_close_code(&mut ws, Duration::from_secs(2)).await?;
    assert!(matches!(code, Some(1001) | None), "closed with {code:?}");
    still_serves(&server).await
}

#[tokio::test]
async fn an_expired_token_ends_live_streams_and_the_connection() -> anyhow::Result<()> {
    // Given a subscriber whose token expires two seconds after it subscribed
    let server = DemoServer::start().await?;
    let basic = server.login("basic@acme.test").await?;
    let device = first_device(&basic).await?;
    let (user, tenant) = who(&basic).await?;
    let secret = hearth_auth::load_or_create_secret(server.data_dir.path())?;
    let short = hearth_auth::JwtTokens::new(&secret, chrono::Duration::seconds(2))?;
    let (token, _) = short.issue(user, tenant, None)?;
    let (mut ws, _) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&Some(token))).await?;
    ws_subscribe(&mut ws, "live", LIVE, json!({ "ids": [device] })).await?;
    // When the token expires
    // Then the stream ends with UNAUTHENTICATED and the socket closes with 4403
    let ended = next_non_value(&mut ws, "live", Duration::from_secs(10)).await?;
    assert_eq!(
        op_error_code(&ended).as_deref(),
        Some("UNAUTHENTICATED"),
        "{ended}"
    );
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(5)).await?,
        Some(4403)
    );
    still_serves(&server).await
}

#[tokio::test]
async fn a_removed_membership_ends_streams_and_refuses_writes() -> anyhow::Result<()> {
    // Given the guest technician subscribed to a globex device over WebSocket
    let server = DemoServer::start().await?;
    let tech = server.login_to("tech@service.test", Some("globex")).await?;
    let device = first_device(&tech).await?;
    let (user, tenant) = who(&tech).await?;
    let (mut ws, _) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&tech.token)).await?;
    ws_subscribe(&mut ws, "live", LIVE, json!({ "ids": [device] })).await?;
    let first = ws_next(&mut ws, Duration::from_secs(10)).await?;
    assert_eq!(first.map(|m| m["type"].clone()), Some(json!("next")));
    // When globex removes the membership
    let provisioning = &server.running.services.provisioning;
    assert!(
        provisioning
            .remove_membership(&SystemPrincipal::provisioner(), user, tenant)
            .await?
    );
    // Then the stream ends with UNAUTHENTICATED and the socket closes with 4403
    let ended = next_non_value(&mut ws, "live", Duration::from_secs(10)).await?;
    assert_eq!(
        op_error_code(&ended).as_deref(),
        Some("UNAUTHENTICATED"),
        "{ended}"
    );
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(5)).await?,
        Some(4403)
    );
    // And the same token no longer writes over HTTP or a new socket
    let writes_before = server.running.simulated_write_requests();
    let res = tech
        .gql(
            "mutation($d: ID!) { writeParameter(deviceId: $d, point: \"room_setpoint_comfort\", value: 21) { status } }",
            json!({ "d": device }),
        )
        .await?;
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    let mut again = ws_open(server.addr(), TRANSPORT_WS).await?;
    ws_init(&mut again, bearer(&tech.token)).await?;
    assert_eq!(
        ws_close_code(&mut again, Duration::from_secs(5)).await?,
        Some(4403)
    );
    assert_eq!(server.running.simulated_write_requests(), writes_before);
    still_serves(&server).await
}

#[tokio::test]
async fn a_changed_role_keeps_running_streams_and_applies_at_once() -> anyhow::Result<()> {
    // Given an operator subscribed over WebSocket
    let server = DemoServer::start().await?;
    let limited = server.login("limited@acme.test").await?;
    let device = first_device(&limited).await?;
    let (user, tenant) = who(&limited).await?;
    let (mut ws, _) = ws_connect(server.addr(), TRANSPORT_WS, bearer(&limited.token)).await?;
    ws_subscribe(&mut ws, "live", LIVE, json!({ "ids": [device] })).await?;
    let first = ws_next(&mut ws, Duration::from_secs(10)).await?;
    assert_eq!(first.map(|m| m["type"].clone()), Some(json!("next")));
    // When an admin makes them Read-only
    // (The demo's limited@acme covers every device; only the role changes.)
    let membership = Membership {
        user_id: user,
        tenant_id: tenant,
        role: Role::ReadOnly,
        scope: DeviceScope::All,
    };
    server
        .running
        .services
        .provisioning
        .set_membership(&SystemPrincipal::provisioner(), &membership)
        .await?;
    // Then the server says the access changed, without an error on the stream
    loop {
        let msg = ws_next(&mut ws, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        if msg["type"] == "ping" && msg["payload"]["accessChanged"] == true {
            break;
        }
        assert!(
            msg["id"] != "live" || (msg["type"] == "next" && msg["payload"]["errors"].is_null()),
            "{msg}"
        );
    }
    // And the running stream goes on (a Read-only member still sees the device)
    let next = next_after(&mut ws, "live").await?;
    assert_eq!(next["type"], "next", "{next}");
    assert!(next["payload"]["errors"].is_null(), "{next}");
    // And on the same connection the new role applies at once
    ws_subscribe(&mut ws, "me", "{ me { role } }", json!({})).await?;
    let me = next_after(&mut ws, "me").await?;
    assert_eq!(me["payload"]["data"]["me"]["role"], "READ_ONLY", "{me}");
    Ok(())
}

/// Sends `connection_init` without reading the answer.
async fn ws_init(ws: &mut Ws, payload: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(
        json!({ "type": "connection_init", "payload": payload })
            .to_string()
            .into(),
    ))
    .await?;
    Ok(())
}

/// The next message of operation `id`, values included.
async fn next_after(ws: &mut Ws, id: &str) -> anyhow::Result<Value> {
    loop {
        let msg = ws_next(ws, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        if msg["id"] == id {
            return Ok(msg);
        }
    }
}
