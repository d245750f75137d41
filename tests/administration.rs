//! End-to-end: a tenant admin at work over real HTTP and WebSocket, as a new
//! user of the API would do it. The admin creates a user scoped to one area;
//! that user sees exactly that area's devices, in listings and live; a
//! narrowed scope narrows the running subscription in place (same id, no
//! error, the removed device's values stop once the server has noticed);
//! disabling the user ends it with `UNAUTHENTICATED` and closes the socket.
//! A device the admin creates is polled without waiting for a reload.

use std::collections::BTreeSet;
use std::time::Duration;

use hearth_tests::{
    error_code, eventually, ws_close_code, ws_connect, ws_next, ws_subscribe, Client, DemoServer,
    Ws,
};
use serde_json::{json, Value};

const LIVE: &str = "subscription { liveValues(deviceIds: []) { deviceId point value } }";
const TRANSPORT_WS: &str = "graphql-transport-ws";
const OPERATOR: &str = "operator@acme.test";
const OPERATOR_PASSWORD: &str = "operator-password-1";

/// The id of the area called `name`, from the `areas` query.
async fn area_id(admin: &Client, name: &str) -> anyhow::Result<String> {
    let data = admin
        .data("{ areas { id name parentId } }", json!({}))
        .await?;
    data["areas"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == name)
        .and_then(|a| a["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no area {name}: {data}"))
}

async fn login(server: &DemoServer, email: &str, password: &str) -> anyhow::Result<Client> {
    let mut client = server.client();
    let res = client
        .gql(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
            json!({ "e": email, "p": password }),
        )
        .await?;
    let token = res["data"]["login"]["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("login of {email} failed: {res}"))?;
    client.token = Some(token.to_owned());
    Ok(client)
}

/// Values of operation `id` until `count` arrived; fails on anything else.
async fn values(ws: &mut Ws, id: &str, count: usize) -> anyhow::Result<Vec<Value>> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let msg = ws_next(ws, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        if msg["id"] != id {
            continue;
        }
        anyhow::ensure!(msg["type"] == "next", "not a value: {msg}");
        anyhow::ensure!(msg["payload"]["errors"].is_null(), "an error: {msg}");
        seen.push(msg["payload"]["data"]["liveValues"].clone());
    }
    Ok(seen)
}

/// The first message of `id` that is not a value, and the device ids of
/// the values that came before it.
async fn until_not_a_value(ws: &mut Ws, id: &str) -> anyhow::Result<(Value, BTreeSet<String>)> {
    let mut devices = BTreeSet::new();
    loop {
        let msg = ws_next(ws, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        if msg["id"] != id {
            continue;
        }
        match msg["payload"]["data"]["liveValues"]["deviceId"].as_str() {
            Some(device) if msg["type"] == "next" => {
                devices.insert(device.to_owned());
            }
            _ => return Ok((msg, devices)),
        }
    }
}

/// The device ids of the values of `id` until the server's access-change
/// notice (`ping` with `accessChanged`); fails on anything but a value.
async fn until_access_changed(ws: &mut Ws, id: &str) -> anyhow::Result<BTreeSet<String>> {
    let mut devices = BTreeSet::new();
    loop {
        let msg = ws_next(ws, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        if msg["type"] == "ping" && msg["payload"]["accessChanged"] == true {
            return Ok(devices);
        }
        if msg["id"] != id {
            continue;
        }
        anyhow::ensure!(msg["type"] == "next", "not a value: {msg}");
        anyhow::ensure!(msg["payload"]["errors"].is_null(), "an error: {msg}");
        if let Some(device) = msg["payload"]["data"]["liveValues"]["deviceId"].as_str() {
            devices.insert(device.to_owned());
        }
    }
}

fn device_ids(values: &[Value]) -> BTreeSet<String> {
    values
        .iter()
        .filter_map(|v| v["deviceId"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn an_admin_scopes_a_new_user_who_then_sees_that_area_alone_until_narrowed_or_disabled(
) -> anyhow::Result<()> {
    // Given the demo and acme's admin
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let n1 = area_id(&admin, "Substation N1").await?;

    // When the admin creates a Basic user scoped to the area `Substation N1`
    let created = admin
        .data(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id role scope { allDevices areaIds } } oneTimePassword } }",
            json!({ "i": {
                "email": OPERATOR, "displayName": "Operator", "password": OPERATOR_PASSWORD,
                "role": "BASIC", "scope": { "allDevices": false, "areaIds": [n1] }
            } }),
        )
        .await?;
    let user_id = created["createUser"]["user"]["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no id: {created}"))?
        .to_owned();
    assert_eq!(
        created["createUser"]["user"]["scope"]["areaIds"],
        json!([n1])
    );
    assert!(created["createUser"]["oneTimePassword"].is_null());

    // Then the user lists exactly the area's two devices
    let operator = login(&server, OPERATOR, OPERATOR_PASSWORD).await?;
    let listed = operator.device_ids().await?;
    let names: BTreeSet<&str> = listed.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["N1 domestic hot water", "N1 heating circuit"])
    );
    let n1_devices: BTreeSet<String> = listed.iter().map(|(id, _)| id.clone()).collect();

    // And live, every value they receive is of those devices
    let auth = json!({ "authorization": format!("Bearer {}", operator.token.clone().unwrap_or_default()) });
    let (mut ws, ack) = ws_connect(server.addr(), TRANSPORT_WS, auth).await?;
    assert_eq!(
        ack.map(|m| m["type"].clone()),
        Some(json!("connection_ack"))
    );
    ws_subscribe(&mut ws, "live", LIVE, json!({})).await?;
    let first = values(&mut ws, "live", 20).await?;
    let seen = device_ids(&first);
    assert!(!seen.is_empty() && seen.is_subset(&n1_devices), "{seen:?}");

    // When the admin narrows the scope to one of the two devices
    let kept = listed
        .iter()
        .find(|(_, n)| n == "N1 heating circuit")
        .map(|(id, _)| id.clone())
        .ok_or_else(|| anyhow::anyhow!("no N1 heating circuit"))?;
    admin
        .data(
            "mutation($u: ID!, $s: ScopeInput!) { setMembership(userId: $u, role: BASIC, scope: $s) { id } }",
            json!({ "u": user_id, "s": { "allDevices": false, "deviceIds": [kept] } }),
        )
        .await?;

    // Then the running subscription goes on without an error until the
    // server notices the change and says so on the socket
    let before = until_access_changed(&mut ws, "live").await?;
    assert!(before.is_subset(&n1_devices), "{before:?}");
    // And from then on the same subscription carries the kept device only
    let after = values(&mut ws, "live", 20).await?;
    assert_eq!(device_ids(&after), BTreeSet::from([kept.clone()]));
    // And a new subscription on that socket carries the kept device only
    ws_subscribe(&mut ws, "live2", LIVE, json!({})).await?;
    let again = values(&mut ws, "live2", 10).await?;
    assert_eq!(device_ids(&again), BTreeSet::from([kept.clone()]));
    // And so does the listing over HTTP
    let listed = operator.device_ids().await?;
    assert_eq!(
        listed
            .into_iter()
            .map(|(id, _)| id)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([kept])
    );

    // When the admin disables the user
    let disabled = admin
        .data(
            "mutation($u: ID!) { disableUser(userId: $u) { disabled } }",
            json!({ "u": user_id }),
        )
        .await?;
    assert_eq!(disabled["disableUser"]["disabled"], true);

    // Then the subscription ends with UNAUTHENTICATED and the socket closes
    let (ended, _) = until_not_a_value(&mut ws, "live2").await?;
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{ended}"
    );
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(5)).await?,
        Some(4403)
    );
    // And the token is refused over HTTP, and so is a new login
    let res = operator
        .gql("{ devices(first: 5) { totalCount } }", json!({}))
        .await?;
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    assert!(login(&server, OPERATOR, OPERATOR_PASSWORD).await.is_err());
    Ok(())
}

#[tokio::test]
async fn a_device_the_admin_creates_is_polled_without_waiting_for_a_reload() -> anyhow::Result<()> {
    // Given the demo (its poller reloads every 30 s) and acme's admin
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let hospital = area_id(&admin, "City hospital").await?;
    let sim = server
        .running
        .simulator
        .as_ref()
        .and_then(|s| s.addr(0))
        .ok_or_else(|| anyhow::anyhow!("the demo runs a simulator"))?;

    // When the admin creates a device at a simulated controller's endpoint
    let created = admin
        .data(
            "mutation($i: DeviceInput!) { createDevice(input: $i) { id name area { id } } }",
            json!({ "i": {
                "name": "Hospital annex", "areaId": hospital, "profileId": "ecl-comfort-310",
                "endpoint": { "host": sim.ip().to_string(), "port": sim.port(), "unitId": 1 }
            } }),
        )
        .await?;
    let id = created["createDevice"]["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no id: {created}"))?
        .to_owned();
    assert_eq!(created["createDevice"]["area"]["id"], json!(hospital));

    // Then it goes online within a few seconds (well before the reload)
    let online = eventually(Duration::from_secs(10), || async {
        let data = admin
            .data(
                "query($d: ID!) { device(id: $d) { online } }",
                json!({ "d": id }),
            )
            .await?;
        Ok((data["device"]["online"] == true).then_some(()))
    })
    .await;
    assert!(online.is_ok(), "the new device was not polled: {online:?}");

    // And an endpoint no protocol can use is BAD_USER_INPUT, and a Full
    // member may manage devices but a Basic one may not
    let bad = admin
        .gql(
            "mutation($i: DeviceInput!) { createDevice(input: $i) { id } }",
            json!({ "i": {
                "name": "Broken", "profileId": "ecl-comfort-310",
                "endpoint": { "host": "127.0.0.1", "port": 502, "unitId": 100000 }
            } }),
        )
        .await?;
    assert_eq!(error_code(&bad).as_deref(), Some("BAD_USER_INPUT"), "{bad}");
    let basic = server.login("basic@acme.test").await?;
    let refused = basic
        .gql(
            "mutation($d: ID!) { deleteDevice(id: $d) }",
            json!({ "d": id }),
        )
        .await?;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{refused}"
    );
    let full = server.login("full@acme.test").await?;
    let deleted = full
        .data(
            "mutation($d: ID!) { deleteDevice(id: $d) }",
            json!({ "d": id }),
        )
        .await?;
    assert_eq!(deleted["deleteDevice"], true);
    // And another tenant's admin cannot see the deleted device's tenant's users
    let globex = server.login("admin@globex.test").await?;
    let users = globex
        .data(
            "{ users(first: 50) { totalCount edges { node { email } } } }",
            json!({}),
        )
        .await?;
    let text = users.to_string();
    assert!(!text.contains("acme.test"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_platform_operator_bootstraps_a_fresh_install_with_tenant_create() -> anyhow::Result<()> {
    // Given an empty data directory (no demo)
    let dir = tempfile::tempdir()?;
    let config = hearth::app::Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().to_path_buf(),
        demo: false,
        sim_base_port: 0,
        ..hearth::app::Config::default()
    };

    // When the operator creates a tenant with its first Admin
    let created =
        hearth::app::create_tenant(&config, "initech", "Initech", "boss@initech.test").await?;
    assert_eq!(created.tenant.slug.as_str(), "initech");
    // And tries the same slug again, Then it is refused
    let again = hearth::app::create_tenant(&config, "initech", "Other", "x@initech.test").await;
    assert!(again.is_err());

    // Then, once served, the Admin logs in with the one-time password and
    // administers the tenant through the API
    let running = hearth::app::start(config).await?;
    let mut admin = Client {
        http: reqwest::Client::new(),
        addr: running.address,
        token: None,
    };
    let res = admin
        .gql(
            "mutation($p: String!) { login(email: \"boss@initech.test\", password: $p) { token role tenant { slug } } }",
            json!({ "p": created.one_time_password }),
        )
        .await?;
    assert_eq!(res["data"]["login"]["role"], "ADMIN", "{res}");
    assert_eq!(res["data"]["login"]["tenant"]["slug"], "initech");
    admin.token = res["data"]["login"]["token"].as_str().map(str::to_owned);
    let area = admin
        .data(
            "mutation { createArea(name: \"Plant\") { id parentId } }",
            json!({}),
        )
        .await?;
    assert!(area["createArea"]["parentId"].is_null());
    let users = admin
        .data(
            "{ users(first: 10) { totalCount edges { node { email role } } } }",
            json!({}),
        )
        .await?;
    assert_eq!(users["users"]["totalCount"], 1);
    assert_eq!(users["users"]["edges"][0]["node"]["role"], "ADMIN");
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn logout_ends_the_open_subscription_and_the_token() -> anyhow::Result<()> {
    // Given a Basic member of acme watching live values over WebSocket
    let server = DemoServer::start().await?;
    let basic = server.login("basic@acme.test").await?;
    let auth =
        json!({ "authorization": format!("Bearer {}", basic.token.clone().unwrap_or_default()) });
    let (mut ws, _) = ws_connect(server.addr(), TRANSPORT_WS, auth).await?;
    ws_subscribe(&mut ws, "live", LIVE, json!({})).await?;
    values(&mut ws, "live", 1).await?;

    // When they log out over HTTP
    let out = basic.data("mutation { logout }", json!({})).await?;
    assert_eq!(out["logout"], true);

    // Then the subscription ends with UNAUTHENTICATED and the socket closes
    let (ended, _) = until_not_a_value(&mut ws, "live").await?;
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{ended}"
    );
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(5)).await?,
        Some(4403)
    );
    // And the token is refused, while a new login works at once
    let res = basic.gql("{ me { role } }", json!({})).await?;
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    let again = server.login("basic@acme.test").await?;
    assert!(again.data("{ me { role } }", json!({})).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn a_refresh_token_renews_the_session_once_and_a_copy_ends_it() -> anyhow::Result<()> {
    // Given a member who logged in over HTTP
    let server = DemoServer::start().await?;
    let mut client = server.client();
    let res = client
        .gql(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token refreshToken expiresAt } }",
            json!({ "e": "basic@acme.test", "p": hearth_tests::PASSWORD }),
        )
        .await?;
    let first_refresh = res["data"]["login"]["refreshToken"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no refresh token: {res}"))?
        .to_owned();
    client.token = res["data"]["login"]["token"].as_str().map(str::to_owned);
    assert!(client.data("{ me { role } }", json!({})).await.is_ok());

    // When they exchange the refresh token
    const REFRESH: &str =
        "mutation($t: String!) { refreshToken(token: $t) { token refreshToken role } }";
    let anonymous = server.client();
    let renewed = anonymous
        .data(REFRESH, json!({ "t": first_refresh }))
        .await?;
    let second_refresh = renewed["refreshToken"]["refreshToken"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no new refresh token: {renewed}"))?
        .to_owned();
    // Then a new pair comes back and the new access token works
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(renewed["refreshToken"]["role"], "BASIC");
    let mut renewed_client = server.client();
    renewed_client.token = renewed["refreshToken"]["token"].as_str().map(str::to_owned);
    let me = renewed_client.data("{ me { role } }", json!({})).await?;
    assert_eq!(me["me"]["role"], "BASIC");

    // When the first refresh token is presented again (a stolen copy)
    let reused = anonymous
        .gql(REFRESH, json!({ "t": first_refresh }))
        .await?;
    // Then it is refused, and the whole session ends: the newer refresh
    // token and the access token issued with it are refused too
    assert_eq!(
        error_code(&reused).as_deref(),
        Some("UNAUTHENTICATED"),
        "{reused}"
    );
    let newer = anonymous
        .gql(REFRESH, json!({ "t": second_refresh }))
        .await?;
    assert_eq!(
        error_code(&newer).as_deref(),
        Some("UNAUTHENTICATED"),
        "{newer}"
    );
    let res = renewed_client.gql("{ me { role } }", json!({})).await?;
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    // And logging in again works
    let again = server.login("basic@acme.test").await?;
    assert!(again.data("{ me { role } }", json!({})).await.is_ok());

    // When that member logs out of all sessions
    let other = server.login("basic@acme.test").await?;
    let out = again
        .data("mutation { logout(allSessions: true) }", json!({}))
        .await?;
    assert_eq!(out["logout"], true);
    // Then their other session is refused as well
    let res = other.gql("{ me { role } }", json!({})).await?;
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    Ok(())
}
