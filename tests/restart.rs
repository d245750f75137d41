//! End-to-end: data survives a restart of `hearth` on the same data directory.

use std::time::Duration;

use hearth_tests::{eventually, start_in, Client, PASSWORD};
use serde_json::json;

async fn login(client: &mut Client, email: &str) -> anyhow::Result<()> {
    let res = client
        .data(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
            json!({ "e": email, "p": PASSWORD }),
        )
        .await?;
    client.token = res["login"]["token"].as_str().map(str::to_string);
    Ok(())
}

#[tokio::test]
async fn users_devices_writes_and_readings_survive_a_restart() -> anyhow::Result<()> {
    // Given a demo that ran long enough to persist readings and one audited write
    let dir = tempfile::tempdir()?;
    let first = start_in(dir.path(), true).await?;
    let mut client = Client {
        http: reqwest::Client::new(),
        addr: first.address,
        token: None,
    };
    login(&mut client, "basic@acme.test").await?;
    let device = client
        .device_ids()
        .await?
        .first()
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    let write = client
        .data(
            "mutation($d: ID!) { writeParameter(deviceId: $d, point: \"room_setpoint_comfort\", value: 22.5) { status } }",
            json!({ "d": device }),
        )
        .await?;
    assert_eq!(write["writeParameter"]["status"], "CONFIRMED");
    let from = (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    let history = "query($d: ID!, $from: DateTime!, $to: DateTime!) { history(deviceId: $d, point: \"outdoor_temp\", from: $from, to: $to, bucketSeconds: 3600, aggregate: COUNT) { value } }";
    let to = || (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let before = eventually(Duration::from_secs(20), || async {
        let data = client
            .data(history, json!({ "d": device, "from": from, "to": to() }))
            .await?;
        let n = data["history"][0]["value"].as_f64().unwrap_or(0.0);
        Ok((n >= 2.0).then_some(n))
    })
    .await?;

    // When hearth stops and starts again on the same directory, without the demo
    first.stop().await;
    let second = start_in(dir.path(), false).await?;
    let mut client = Client {
        http: reqwest::Client::new(),
        addr: second.address,
        token: None,
    };

    // Then users log in, devices are listed, and readings and the audit log remain
    login(&mut client, "basic@acme.test").await?;
    assert_eq!(client.device_ids().await?.len(), 6);
    let data = client
        .data(history, json!({ "d": device, "from": from, "to": to() }))
        .await?;
    assert!(data["history"][0]["value"].as_f64().unwrap_or(0.0) >= before);
    login(&mut client, "admin@acme.test").await?;
    let audit = client
        .data("{ auditLog { nodes { newValue outcome } } }", json!({}))
        .await?;
    assert_eq!(audit["auditLog"]["nodes"][0]["newValue"], 22.5);
    second.stop().await;
    Ok(())
}
