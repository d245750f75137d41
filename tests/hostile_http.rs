//! End-to-end: hostile input against a running demo. Each attack must get a
//! typed refusal (HTTP status and `extensions.code`), cost the server next
//! to nothing, and leave it serving normal queries.
//!
//! The server runs in this process, so this process's resident memory is
//! the server's; the tests run one at a time so that one test's server
//! does not show up in another's memory measurement.

use std::time::Duration;

use hearth_tests::{error_code, ws_connect, ws_next, ws_subscribe, Client, DemoServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard};

/// One test at a time (see the module comment).
static SERIAL: Mutex<()> = Mutex::const_new(());

async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// F0 spreads F1 twice, F1 spreads F2 twice, …: `2^levels` copies of `leaf`
/// from a document of about 40 bytes a level.
fn nested_fragments(operation: &str, on: &str, levels: usize, leaf: &str) -> String {
    let mut query = format!("{operation} {{ ...F0 }}");
    for i in 0..levels {
        query.push_str(&format!(
            " fragment F{i} on {on} {{ ...F{n} ...F{n} }}",
            n = i + 1
        ));
    }
    query.push_str(&format!(" fragment F{levels} on {on} {{ {leaf} }}"));
    query
}

/// The test process's resident memory in bytes (Linux), or 0 elsewhere.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Fails unless the server still answers a normal query for `client`.
async fn still_serves(client: &Client) -> anyhow::Result<()> {
    let data = client
        .data("{ devices(first: 1) { totalCount } }", json!({}))
        .await?;
    assert!(
        data["devices"]["totalCount"].as_u64().unwrap_or(0) > 0,
        "{data}"
    );
    Ok(())
}

/// Sends raw bytes on a fresh connection and reads the whole answer
/// (the server closes the connection after a refusal).
async fn raw_exchange(addr: std::net::SocketAddr, head: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(head.as_bytes()).await?;
    read_response(&mut stream).await
}

/// Reads one HTTP/1.1 response with a `Content-Length`, tolerating a
/// connection the server closes or resets right after it.
async fn read_response(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await?;
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&received);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= length {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&received).into_owned())
}

/// Status code and JSON body of a raw HTTP response.
fn parse_response(raw: &str) -> (u16, Value) {
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn nested_fragments_are_refused_before_they_run() -> anyhow::Result<()> {
    let _serial = serial().await;
    // Given a demo and an anonymous client
    let server = DemoServer::start().await?;
    let anonymous = server.client();
    for levels in [22, 30] {
        // When it sends fragments that each spread the next one twice
        let query = nested_fragments("query", "Query", levels, "__typename");
        assert!(query.len() < 1_500, "{} bytes", query.len());
        let res = anonymous.gql(&query, json!({})).await?;
        // Then the document is refused for its expanded size, naming the numbers
        assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{res}");
        let message = res["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("expands to {} fields", 1u64 << levels))
                && message.contains("limit of 5000"),
            "{message}"
        );
        assert!(res["data"].is_null(), "{res}");
    }
    // And a cycle of fragments is refused too
    let cycle = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
    let res = anonymous.gql(cycle, json!({})).await?;
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{res}");
    // And the server still serves
    still_serves(&server.login("admin@acme.test").await?).await
}

#[tokio::test]
async fn nested_fragments_are_refused_over_websocket_too() -> anyhow::Result<()> {
    let _serial = serial().await;
    // Given a demo and an authenticated WebSocket
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let token = admin.token.clone().unwrap_or_default();
    let (mut ws, ack) = ws_connect(
        server.addr(),
        "graphql-transport-ws",
        json!({ "authorization": format!("Bearer {token}") }),
    )
    .await?;
    assert_eq!(
        ack.map(|a| a["type"].clone()),
        Some(json!("connection_ack"))
    );
    // When it subscribes with 30 levels of doubling fragments
    let query = nested_fragments(
        "subscription",
        "Subscription",
        30,
        "deviceStatus { online }",
    );
    ws_subscribe(&mut ws, "attack", &query, json!({})).await?;
    // Then the operation is refused with BAD_USER_INPUT
    let msg = ws_next(&mut ws, Duration::from_secs(10))
        .await?
        .unwrap_or(Value::Null);
    let errors = match msg["type"].as_str() {
        Some("error") => &msg["payload"],
        _ => &msg["payload"]["errors"],
    };
    assert_eq!(
        errors[0]["extensions"]["code"].as_str(),
        Some("BAD_USER_INPUT"),
        "{msg}"
    );
    // And the server still serves
    still_serves(&admin).await
}

#[tokio::test]
async fn oversized_bodies_get_413_before_they_are_read() -> anyhow::Result<()> {
    let _serial = serial().await;
    // Given a demo
    let server = DemoServer::start().await?;
    // When a client announces a 20 MB body and sends none of it
    let raw = raw_exchange(
        server.addr(),
        "POST /graphql HTTP/1.1\r\nhost: hearth\r\ncontent-type: application/json\r\ncontent-length: 20971520\r\n\r\n",
    )
    .await?;
    // Then it is answered at once with 413 and a coded GraphQL error
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 413, "{raw}");
    assert_eq!(
        error_code(&body).as_deref(),
        Some("BAD_USER_INPUT"),
        "{raw}"
    );

    // When a chunked body without a declared length grows past the limit
    let mut stream = TcpStream::connect(server.addr()).await?;
    stream
        .write_all(b"POST /graphql HTTP/1.1\r\nhost: hearth\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        .await?;
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        // At most 4 MB; the server stops reading after 1 MB.
        for _ in 0..64 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        writer
    });
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    while !String::from_utf8_lossy(&received).contains("}]}") {
        match tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buf)).await? {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    writing.abort();
    // Then it is cut off with 413 as well
    let raw = String::from_utf8_lossy(&received).into_owned();
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 413, "{raw}");
    assert_eq!(
        error_code(&body).as_deref(),
        Some("BAD_USER_INPUT"),
        "{raw}"
    );

    // When a GET query string is longer than its limit, or even longer than
    // a URI may be (too long for the HTTP client library, so written by hand)
    for (kb, coded) in [(40, true), (200, false)] {
        let raw = raw_exchange(
            server.addr(),
            &format!(
                "GET /graphql?query=%7B__typename%7D&variables={} HTTP/1.1\r\nhost: hearth\r\n\r\n",
                "a".repeat(kb * 1024)
            ),
        )
        .await?;
        // Then it is refused with 414, with a coded error when it reached Hearth
        let (status, body) = parse_response(&raw);
        assert_eq!(status, 414, "{raw:.300}");
        if coded {
            assert_eq!(
                error_code(&body).as_deref(),
                Some("BAD_USER_INPUT"),
                "{raw:.300}"
            );
        }
    }
    // And normal GET queries, GraphiQL and POSTs still work
    let res = server
        .http
        .get(format!("{}?query=%7B__typename%7D", server.client().url()))
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(res["data"]["__typename"], "Query");
    still_serves(&server.login("admin@acme.test").await?).await
}

#[tokio::test]
async fn a_request_runs_at_most_one_login() -> anyhow::Result<()> {
    let _serial = serial().await;
    // Given a demo and an anonymous client
    let server = DemoServer::start().await?;
    let anonymous = server.client();
    let login = r#"login(email: "admin@acme.test", password: "wrong") { token }"#;
    // When it sends 1,000 aliased logins in one request
    let thousand: String = (0..1_000).map(|i| format!(" l{i}: {login}")).collect();
    let res = anonymous
        .gql(&format!("mutation {{{thousand} }}"), json!({}))
        .await?;
    // Then the request is refused before any password is checked
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{res}");
    assert_eq!(res["errors"].as_array().map(Vec::len), Some(1), "{res}");
    assert!(res["data"].is_null(), "{res}");
    // When it sends just two, or two through a fragment
    for query in [
        format!("mutation {{ a: {login} b: {login} }}"),
        format!("mutation {{ a: {login} ...L }} fragment L on Mutation {{ b: {login} }}"),
    ] {
        let res = anonymous.gql(&query, json!({})).await?;
        // Then those are refused too, naming the rule
        assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{res}");
        let message = res["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`login` appears more than once"),
            "{message}"
        );
    }
    // And one login per request still works
    still_serves(&server.login("admin@acme.test").await?).await
}

#[tokio::test]
async fn errors_never_echo_unbounded_input() -> anyhow::Result<()> {
    let _serial = serial().await;
    // Given a demo and a logged-in client
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let huge = "a".repeat(1024 * 1024 - 1024);
    // When it sends a 1 MB device id, point key and field name (the
    // field name as long as a query may be)
    let id = admin
        .gql(
            "query($id: ID!) { device(id: $id) { id } }",
            json!({ "id": huge }),
        )
        .await?;
    let device = admin.device_ids().await?;
    let device = device.first().map(|(id, _)| id.clone()).unwrap_or_default();
    let point = admin
        .gql(
            "query($d: ID!, $p: String!) { history(deviceId: $d, point: $p, from: \"2026-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\") { value } }",
            json!({ "d": device, "p": huge }),
        )
        .await?;
    let field = admin
        .gql(&format!("{{ {} }}", "b".repeat(60 * 1024)), json!({}))
        .await?;
    // And a 1 MB tenant selector
    let tenant = admin
        .gql(
            "mutation($t: ID!) { switchTenant(tenantId: $t) { token } }",
            json!({ "t": huge }),
        )
        .await?;
    // Then each is a coded error of bounded size
    for (res, code) in [
        (&id, "BAD_USER_INPUT"),
        (&point, "BAD_USER_INPUT"),
        (&field, "BAD_USER_INPUT"),
        (&tenant, "FORBIDDEN"),
    ] {
        assert_eq!(error_code(res).as_deref(), Some(code), "{res:.300}");
        assert!(
            res.to_string().len() < 2_000,
            "{} bytes",
            res.to_string().len()
        );
    }
    // And the server still serves
    still_serves(&admin).await
}

#[tokio::test]
async fn attacks_leave_memory_flat() -> anyhow::Result<()> {
    let _serial = serial().await;
    // Given a demo that has served a normal query and a login
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    still_serves(&admin).await?;
    let before = resident_bytes();
    // When every attack is sent, several times
    let anonymous = server.client();
    let fragments = nested_fragments("query", "Query", 30, "__typename");
    let logins: String = (0..1_000)
        .map(|i| format!(r#" l{i}: login(email: "x@y.z", password: "p") {{ token }}"#))
        .collect();
    for _ in 0..5 {
        let res = anonymous.gql(&fragments, json!({})).await?;
        assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{res}");
        let res = anonymous
            .gql(&format!("mutation {{{logins} }}"), json!({}))
            .await?;
        assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{res}");
        let raw = raw_exchange(
            server.addr(),
            "POST /graphql HTTP/1.1\r\nhost: hearth\r\ncontent-length: 20971520\r\n\r\n",
        )
        .await?;
        assert_eq!(parse_response(&raw).0, 413, "{raw}");
    }
    // Then the process (server included) has grown by less than 100 MB
    let after = resident_bytes();
    let grown = after.saturating_sub(before);
    eprintln!(
        "Resident memory before the attacks {} MB, after {} MB.",
        before / (1024 * 1024),
        after / (1024 * 1024)
    );
    assert!(
        grown < 100 * 1024 * 1024,
        "resident memory grew by {} MB ({} -> {} MB)",
        grown / (1024 * 1024),
        before / (1024 * 1024),
        after / (1024 * 1024)
    );
    // And the server still serves
    still_serves(&admin).await
}
