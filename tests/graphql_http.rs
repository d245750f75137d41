//! End-to-end: every use case through GraphQL over HTTP against a running
//! demo (embedded stores, oso policy, simulated controllers over Modbus TCP).

use std::time::Duration;

use hearth_tests::{error_code, eventually, DemoServer};
use serde_json::{json, Value};

/// Point keys of the built-in ECL Comfort 310 profile.
const COMFORT: &str = "room_setpoint_comfort";
const OUTDOOR: &str = "outdoor_temp";
const SLOPE: &str = "heat_curve_slope";

const DEVICES: &str = "query($first: Int, $after: String, $area: ID, $search: String) {
  devices(first: $first, after: $after, areaId: $area, search: $search) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id name online area { id name }
      points { key name value unit quality updatedAt writable writeLevel min max } } }
  } }";

const WRITE: &str = "mutation($d: ID!, $p: String!, $v: Float!) {
  writeParameter(deviceId: $d, point: $p, value: $v) { status value previousValue confirmedAt } }";

async fn first_device(client: &hearth_tests::Client) -> anyhow::Result<String> {
    let ids = client.device_ids().await?;
    Ok(ids.first().map(|(id, _)| id.clone()).unwrap_or_default())
}

#[tokio::test]
async fn login_issues_a_token_and_me_tells_who_and_where() -> anyhow::Result<()> {
    // Given the demo
    let server = DemoServer::start().await?;
    // When the guest technician logs in without naming a tenant
    let tech = server.login("tech@service.test").await?;
    let me = tech
        .data(
            "{ me { user { email } tenant { slug } role memberships { tenant { slug } role } } }",
            json!({}),
        )
        .await?;
    // Then the token is bound to their first membership and lists both
    assert_eq!(me["me"]["user"]["email"], "tech@service.test");
    assert_eq!(me["me"]["tenant"]["slug"], "acme");
    assert_eq!(me["me"]["role"], "FULL");
    let slugs: Vec<&str> = me["me"]["memberships"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["tenant"]["slug"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(slugs, vec!["acme", "globex"]);

    // When they switch tenant, the new token is bound to globex with that role
    let switched = tech
        .data(
            "mutation { switchTenant(tenantId: \"globex\") { token tenant { slug } role } }",
            json!({}),
        )
        .await?;
    assert_eq!(switched["switchTenant"]["tenant"]["slug"], "globex");
    assert_eq!(switched["switchTenant"]["role"], "LIMITED");
    let mut globex = tech.clone();
    globex.token = switched["switchTenant"]["token"]
        .as_str()
        .map(str::to_string);
    let me = globex.data("{ me { tenant { slug } } }", json!({})).await?;
    assert_eq!(me["me"]["tenant"]["slug"], "globex");

    // And a user cannot switch into a tenant they do not belong to
    let basic = server.login("basic@acme.test").await?;
    let res = basic
        .gql(
            "mutation { switchTenant(tenantId: \"globex\") { token } }",
            json!({}),
        )
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("FORBIDDEN"));
    Ok(())
}

#[tokio::test]
async fn bad_credentials_and_tokens_are_unauthenticated() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let anon = server.client();
    let login = "mutation($e: String!, $p: String!, $t: ID) { login(email: $e, password: $p, tenantId: $t) { token } }";
    for (email, password, tenant) in [
        ("admin@acme.test", "wrong", None),
        ("nobody@acme.test", "hearth-demo", None),
        ("not an email", "hearth-demo", None),
        ("admin@acme.test", "hearth-demo", Some("globex")),
        ("admin@acme.test", "hearth-demo", Some("no-such-tenant")),
    ] {
        let res = anon
            .gql(login, json!({ "e": email, "p": password, "t": tenant }))
            .await?;
        assert_eq!(
            error_code(&res).as_deref(),
            Some("UNAUTHENTICATED"),
            "{email}/{tenant:?}: {res}"
        );
        assert!(res["data"].is_null() || res["data"]["login"].is_null());
    }
    // Missing token
    let res = anon.gql("{ me { role } }", json!({})).await?;
    assert_eq!(error_code(&res).as_deref(), Some("UNAUTHENTICATED"));
    // Forged token: a valid token with its signature altered
    let admin = server.login("admin@acme.test").await?;
    let mut forged = admin.clone();
    let token = admin.token.clone().unwrap_or_default();
    let (head, sig) = token.rsplit_once('.').unwrap_or((&token, ""));
    let flipped: String = sig.chars().rev().collect();
    forged.token = Some(format!("{head}.{flipped}"));
    let res = forged.gql("{ me { role } }", json!({})).await?;
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    forged.token = Some("garbage".into());
    let res = forged.gql("{ devices { totalCount } }", json!({})).await?;
    assert_eq!(error_code(&res).as_deref(), Some("UNAUTHENTICATED"));
    // And the server keeps serving the real token
    assert_eq!(
        admin.data("{ me { role } }", json!({})).await?["me"]["role"],
        "ADMIN"
    );
    Ok(())
}

#[tokio::test]
async fn devices_are_a_relay_connection_with_live_points() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    // The poller fills values within a few seconds of start.
    let page = eventually(Duration::from_secs(15), || async {
        let data = admin.data(DEVICES, json!({ "first": 4 })).await?;
        let filled = data["devices"]["edges"][0]["node"]["points"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["value"].is_number()));
        Ok(filled.then_some(data))
    })
    .await?;
    let conn = &page["devices"];
    assert_eq!(conn["totalCount"], 6, "acme has six devices");
    assert_eq!(conn["edges"].as_array().map(Vec::len), Some(4));
    assert_eq!(conn["pageInfo"]["hasNextPage"], true);
    let node = &conn["edges"][0]["node"];
    assert_eq!(node["online"], true);
    let points = node["points"].as_array().cloned().unwrap_or_default();
    let outdoor = points
        .iter()
        .find(|p| p["key"] == OUTDOOR)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(outdoor["unit"], "°C");
    assert_eq!(outdoor["quality"], "GOOD");
    assert_eq!(outdoor["writable"], false);
    let comfort = points
        .iter()
        .find(|p| p["key"] == COMFORT)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(comfort["writable"], true);
    assert_eq!(comfort["writeLevel"], "BASIC");

    // The second page continues after the cursor, without overlap.
    let after = conn["pageInfo"]["endCursor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let next = admin
        .data(DEVICES, json!({ "first": 4, "after": after }))
        .await?;
    let names = |v: &Value| -> Vec<String> {
        v["devices"]["edges"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|e| e["node"]["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (first_names, next_names) = (names(&page), names(&next));
    assert_eq!(next_names.len(), 2);
    assert!(next_names.iter().all(|n| !first_names.contains(n)));
    assert_eq!(next["devices"]["pageInfo"]["hasNextPage"], false);

    // Search and area filters.
    let found = admin.data(DEVICES, json!({ "search": "hospital" })).await?;
    assert_eq!(found["devices"]["totalCount"], 2);
    let area = found["devices"]["edges"][0]["node"]["area"]["id"].clone();
    let in_area = admin.data(DEVICES, json!({ "area": area })).await?;
    assert_eq!(in_area["devices"]["totalCount"], 2);

    // One device by id.
    let id = conn["edges"][0]["node"]["id"].clone();
    let one = admin
        .data(
            "query($id: ID!) { device(id: $id) { id name points { key } } }",
            json!({ "id": id }),
        )
        .await?;
    assert_eq!(one["device"]["id"], id);
    Ok(())
}

#[tokio::test]
async fn device_scope_limits_what_a_guest_sees() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let tech = server.login("tech@service.test").await?;
    // The technician's acme membership covers the North district only.
    let visible = tech.device_ids().await?;
    assert_eq!(visible.len(), 4, "{visible:?}");
    assert!(visible.iter().all(|(_, name)| name.starts_with('N')));
    // A hospital device exists but is NOT_FOUND for them.
    let hospital = admin.data(DEVICES, json!({ "search": "hospital" })).await?;
    let id = hospital["devices"]["edges"][0]["node"]["id"].clone();
    let res = tech
        .gql(
            "query($id: ID!) { device(id: $id) { name } }",
            json!({ "id": id }),
        )
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("NOT_FOUND"));
    Ok(())
}

#[tokio::test]
async fn another_tenants_devices_are_invisible() -> anyhow::Result<()> {
    // Given a globex device
    let server = DemoServer::start().await?;
    let globex = server.login("admin@globex.test").await?;
    let globex_device = first_device(&globex).await?;
    assert_eq!(globex.device_ids().await?.len(), 3);
    let acme = server.login("admin@acme.test").await?;
    // When acme's admin asks for it by id, reads its history, writes it or subscribes
    let res = acme
        .gql(
            "query($id: ID!) { device(id: $id) { name } }",
            json!({ "id": globex_device }),
        )
        .await?;
    // Then it does not exist for them, and nothing of it leaks
    assert_eq!(error_code(&res).as_deref(), Some("NOT_FOUND"), "{res}");
    assert!(!res.to_string().contains("Plant"), "leaked: {res}");
    let res = acme
        .gql(
            "query($id: ID!) { history(deviceId: $id, point: \"outdoor_temp\", from: \"2026-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\") { value } }",
            json!({ "id": globex_device }),
        )
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("NOT_FOUND"));
    let res = acme
        .gql(
            WRITE,
            json!({ "d": globex_device, "p": COMFORT, "v": 21.0 }),
        )
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("NOT_FOUND"));
    // And listings never include it
    let ids = acme.device_ids().await?;
    assert!(ids.iter().all(|(id, _)| id != &globex_device));
    assert_eq!(ids.len(), 6);
    Ok(())
}

#[tokio::test]
async fn history_returns_buckets_of_polled_values() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let device = first_device(&admin).await?;
    let from = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let query = "query($d: ID!, $from: DateTime!, $to: DateTime!, $agg: Aggregate!) {
        history(deviceId: $d, point: \"outdoor_temp\", from: $from, to: $to, bucketSeconds: 600, aggregate: $agg) { timestamp value } }";
    // Polled values are persisted in batches within a second or so.
    let counted = eventually(Duration::from_secs(20), || async {
        let to = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
        let data = admin
            .data(
                query,
                json!({ "d": device, "from": from, "to": to, "agg": "COUNT" }),
            )
            .await?;
        let count = data["history"][0]["value"].as_f64().unwrap_or(0.0);
        Ok((count >= 2.0).then_some(count))
    })
    .await?;
    assert!(counted >= 2.0);
    let to = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let mean = admin
        .data(
            query,
            json!({ "d": device, "from": from, "to": to, "agg": "MEAN" }),
        )
        .await?;
    let value = mean["history"][0]["value"].as_f64().unwrap_or(f64::NAN);
    assert!(
        (-40.0..50.0).contains(&value),
        "plausible outdoor mean, got {value}"
    );
    let (min, max) = (
        admin
            .data(
                query,
                json!({ "d": device, "from": from, "to": to, "agg": "MIN" }),
            )
            .await?,
        admin
            .data(
                query,
                json!({ "d": device, "from": from, "to": to, "agg": "MAX" }),
            )
            .await?,
    );
    assert!(min["history"][0]["value"].as_f64() <= max["history"][0]["value"].as_f64());

    // Bad ranges are BAD_USER_INPUT.
    for (f, t, b) in [
        ("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", 60),
        ("2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z", 1),
        ("yesterday", "2026-01-01T00:00:00Z", 60),
    ] {
        let res = admin
            .gql(
                "query($d: ID!, $f: DateTime!, $t: DateTime!, $b: Int!) { history(deviceId: $d, point: \"outdoor_temp\", from: $f, to: $t, bucketSeconds: $b) { value } }",
                json!({ "d": device, "f": f, "t": t, "b": b }),
            )
            .await?;
        assert_eq!(
            error_code(&res).as_deref(),
            Some("BAD_USER_INPUT"),
            "{f}..{t}/{b}: {res}"
        );
    }
    let res = admin
        .gql(
            "query($d: ID!) { history(deviceId: $d, point: \"no_such_point\", from: \"2026-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\") { value } }",
            json!({ "d": device }),
        )
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("NOT_FOUND"));
    Ok(())
}

#[tokio::test]
async fn write_parameter_is_confirmed_by_read_back_and_audited() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let basic = server.login("basic@acme.test").await?;
    let device = first_device(&basic).await?;
    // When a Basic user writes a comfort setpoint within range
    let res = basic
        .data(WRITE, json!({ "d": device, "p": COMFORT, "v": 23.5 }))
        .await?;
    // Then the device confirms it by read-back
    let w = &res["writeParameter"];
    assert_eq!(w["status"], "CONFIRMED", "{res}");
    assert_eq!(w["value"], 23.5);
    assert!(w["previousValue"].is_number());
    assert!(w["confirmedAt"].is_string());
    // And the next read shows it
    let one = basic
        .data(
            "query($id: ID!) { device(id: $id) { points { key value } } }",
            json!({ "id": device }),
        )
        .await?;
    let value = one["device"]["points"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["key"] == COMFORT))
        .map(|p| p["value"].clone());
    assert_eq!(value, Some(json!(23.5)));
    // And the attempt is in the audit log, readable by Admin
    let admin = server.login("admin@acme.test").await?;
    let audit = admin
        .data(
            "{ auditLog(first: 10) { edges { node { point newValue outcome actorId count } } } }",
            json!({}),
        )
        .await?;
    let newest = &audit["auditLog"]["edges"][0]["node"];
    assert_eq!(newest["point"], COMFORT);
    assert_eq!(newest["newValue"], 23.5);
    assert_eq!(newest["outcome"], "confirmed");
    assert_eq!(newest["count"], 1);
    // The deprecated `limit` still works
    let old_style = admin
        .data("{ auditLog(limit: 1) { nodes { outcome } } }", json!({}))
        .await?;
    assert_eq!(old_style["auditLog"]["nodes"][0]["outcome"], "confirmed");
    // But not by Basic
    let res = basic
        .gql("{ auditLog { nodes { outcome } } }", json!({}))
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("FORBIDDEN"));
    Ok(())
}

#[tokio::test]
async fn refused_writes_never_change_anything() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let basic = server.login("basic@acme.test").await?;
    let readonly = server.login("readonly@acme.test").await?;
    let device = first_device(&basic).await?;
    let cases = [
        (&readonly, COMFORT, json!(21.0), "FORBIDDEN"),
        (&basic, SLOPE, json!(1.2), "FORBIDDEN"),
        (&basic, COMFORT, json!(99.0), "BAD_USER_INPUT"),
        (&basic, COMFORT, json!(21.55), "BAD_USER_INPUT"),
        (&basic, OUTDOOR, json!(10.0), "BAD_USER_INPUT"),
        (&basic, "no_such_point", json!(1.0), "NOT_FOUND"),
        (&basic, "bad key!", json!(1.0), "BAD_USER_INPUT"),
    ];
    for (client, point, value, code) in cases {
        let res = client
            .gql(WRITE, json!({ "d": device, "p": point, "v": value }))
            .await?;
        assert_eq!(
            error_code(&res).as_deref(),
            Some(code),
            "{point}={value}: {res}"
        );
    }
    let res = basic
        .gql(WRITE, json!({ "d": "not-an-id", "p": COMFORT, "v": 21.0 }))
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"));
    let res = basic
        .gql(
            WRITE,
            json!({ "d": uuid::Uuid::new_v4().to_string(), "p": COMFORT, "v": 21.0 }),
        )
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("NOT_FOUND"));
    // None of them reached a simulated controller.
    assert!(server.running.simulator.is_some());
    assert_eq!(server.running.simulated_write_requests(), 0);
    Ok(())
}

#[tokio::test]
async fn malformed_and_abusive_queries_get_typed_errors() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    for query in [
        "{ devices { ",                          // syntax
        "{ nope }",                              // unknown field
        "{ devices(first: 100000) { totalCount } }", // out of range
        "query { __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } } } }",
    ] {
        let res = admin.gql(query, json!({})).await?;
        assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{query}: {res}");
    }
    // Not JSON at all.
    let res = admin
        .http
        .post(admin.url())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert!(res.status().is_client_error());
    // GET queries work, and a browser gets GraphiQL.
    let res = admin
        .http
        .get(format!("{}?query=%7B__typename%7D", admin.url()))
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(res["data"]["__typename"], "Query");
    let page = admin
        .http
        .get(admin.url())
        .header("accept", "text/html")
        .send()
        .await?
        .text()
        .await?;
    assert!(page.to_lowercase().contains("graphiql"));
    // And the server still serves.
    assert_eq!(
        admin.data("{ me { role } }", json!({})).await?["me"]["role"],
        "ADMIN"
    );
    Ok(())
}
