//! The production stores from the outside: `/readyz` reports each store's
//! state (and is 503 only when serving needs a store that is down), and the
//! demo runs on MariaDB + FerretDB + InfluxDB by config alone.

// Test code: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hearth::app::{self, Config, Running};
use serde_json::Value;
use tokio::net::TcpListener;

/// A TCP "server" that closes every connection at once and counts them:
/// an InfluxDB that is down, and how often it was asked.
async fn dead_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (url, count)
}

async fn start(dir: &std::path::Path, config: Config) -> Running {
    app::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        demo: false,
        sim_base_port: 0,
        ..config
    })
    .await
    .expect("hearth starts")
}

async fn get(running: &Running, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://{}{path}", running.address))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn readyz_reports_embedded_stores_ok() {
    // Given hearth on its embedded stores
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), Config::default()).await;
    // When /readyz is asked
    let (status, body) = get(&running, "/readyz").await;
    // Then it is ready, each store ok
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    for store in ["relational", "documents", "readings"] {
        assert_eq!(body["stores"][store]["adapter"], "embedded", "{body}");
        assert_eq!(body["stores"][store]["state"], "ok", "{body}");
    }
    running.stop().await;
}

#[tokio::test]
async fn influxdb_down_with_a_spool_is_buffering_and_still_ready() {
    // Given InfluxDB down, with the on-disk spool on
    let dir = tempfile::tempdir().unwrap();
    let (url, asked) = dead_server().await;
    let running = start(
        dir.path(),
        Config {
            influxdb: Some(hearth_influxdb::InfluxConfig::new(url, "hearth/autogen")),
            influxdb_spool_bytes: 1 << 20,
            ..Config::default()
        },
    )
    .await;
    let before = asked.load(Ordering::SeqCst);
    // When /readyz is asked by many callers at once
    let answers = futures::future::join_all((0..20).map(|_| get(&running, "/readyz"))).await;
    // Then readings are buffering (nothing lost) and hearth stays ready
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["stores"]["readings"]["adapter"], "influxdb");
        assert_eq!(body["stores"]["readings"]["state"], "buffering", "{body}");
        assert_eq!(body["stores"]["readings"]["spooled_batches"], 0, "{body}");
        assert_eq!(body["stores"]["relational"]["state"], "ok");
    }
    // And the callers shared checks: InfluxDB was not pinged once per call
    let pings = asked.load(Ordering::SeqCst) - before;
    assert!((1..10).contains(&pings), "{pings} pings for 20 calls");
    running.stop().await;
}

#[tokio::test]
async fn influxdb_down_without_a_spool_is_unavailable_and_503_while_healthz_stays_ok() {
    // Given InfluxDB down and no spool (readings would be lost)
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = dead_server().await;
    let running = start(
        dir.path(),
        Config {
            influxdb: Some(hearth_influxdb::InfluxConfig::new(url, "hearth/autogen")),
            influxdb_spool_bytes: 0,
            ..Config::default()
        },
    )
    .await;
    // When /readyz and /healthz are asked
    let (status, body) = get(&running, "/readyz").await;
    let (health, _) = get(&running, "/healthz").await;
    // Then readiness fails naming the store, liveness does not
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["stores"]["readings"]["state"], "unavailable", "{body}");
    assert!(body["stores"]["readings"].get("spooled_batches").is_none());
    assert_eq!(health, 200);
    running.stop().await;
}

/// The server URL in `var`; `None` (noted on stderr) when unset, and a
/// failure under `CI=true`, where `.ci/run` starts every server.
fn server(var: &str, script: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but {var} is not set: .ci/run must start it ({script})"
            );
            eprintln!("the demo on real stores did NOT run: {var} is not set (see {script})");
            None
        }
    }
}

/// `mysql://u:p@h:3306/db?x` with the database replaced by `name`.
fn mysql_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

async fn login(http: &reqwest::Client, addr: std::net::SocketAddr) -> hearth_tests::Client {
    let mut client = hearth_tests::Client {
        http: http.clone(),
        addr,
        token: None,
    };
    let res = client
        .gql(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
            serde_json::json!({ "e": "admin@acme.test", "p": hearth_tests::PASSWORD }),
        )
        .await
        .unwrap();
    client.token = Some(
        res["data"]["login"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login failed: {res}"))
            .to_owned(),
    );
    client
}

/// The next `liveValues` payload of subscription `v`.
async fn next_live(ws: &mut hearth_tests::Ws) -> Value {
    loop {
        let msg = hearth_tests::ws_next(ws, std::time::Duration::from_secs(10))
            .await
            .unwrap()
            .expect("the subscription stays open");
        let v = msg["payload"]["data"]["liveValues"].clone();
        assert!(msg["type"] != "error", "{msg}");
        if !v.is_null() {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_on_mariadb_ferretdb_and_influxdb_by_config_alone() {
    use hearth_domain::contract::proxy::{host_port, Proxy};
    use sea_orm::{ConnectionTrait, Database};
    use std::time::Duration;

    let (Some(mysql), Some(mongo), Some(influx)) = (
        server("HEARTH_TEST_MYSQL_URL", ".ci/mariadb.sh"),
        server("HEARTH_TEST_MONGODB_URL", ".ci/extra.d/20-ferretdb.sh"),
        server("HEARTH_TEST_INFLUXDB_URL", ".ci/extra.d/30-influxdb.sh"),
    ) else {
        return;
    };
    // Given fresh database and bucket names on the three servers, InfluxDB
    // behind a proxy, and a config file naming them
    let name = format!("hearth_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(mysql.as_str()).await.expect("MySQL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE `{name}`"))
        .await
        .expect("create the MySQL test database");
    let influx_proxy = Proxy::start(host_port(&influx)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hearth.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             data_dir = {data:?}\n\
             demo = true\n\
             sim_base_port = 0\n\
             [stores.relational]\nadapter = \"mysql\"\nurl = {mysql:?}\n\
             [stores.documents]\nadapter = \"mongodb\"\nurl = {mongo:?}\ndatabase = {name:?}\n\
             [stores.readings]\nadapter = \"influxdb\"\nurl = \"http://{influx_at}\"\n\
             bucket = \"{name}/autogen\"\n",
            data = dir.path().join("data"),
            mysql = mysql_database(&mysql, &name),
            influx_at = influx_proxy.addr,
        ),
    )
    .unwrap();

    // When `hearth serve --demo` starts from that file alone
    let settings =
        hearth::config::Settings::load(Some(&file), Vec::new(), &Default::default()).unwrap();
    settings.validate().unwrap();
    let running = app::start(settings.resolve())
        .await
        .expect("the demo starts on the three real stores");
    let http = reqwest::Client::new();
    let outcome = async {
        // Then the admin logs in and lists the demo's devices (MariaDB)
        let client = login(&http, running.address).await;
        let devices = client.device_ids().await.unwrap();
        assert!(!devices.is_empty(), "the demo seeded devices");
        let device = devices[0].0.clone();
        // And its profiles are in MongoDB
        let profiles = client
            .data("{ profiles { id } }", serde_json::json!({}))
            .await
            .unwrap();
        assert!(
            profiles["profiles"]
                .as_array()
                .is_some_and(|p| !p.is_empty()),
            "{profiles}"
        );
        // And live values arrive over the subscription
        let token = serde_json::json!({
            "authorization": format!("Bearer {}", client.token.clone().unwrap_or_default())
        });
        let (mut ws, _) = hearth_tests::ws_connect(running.address, "graphql-transport-ws", token)
            .await
            .unwrap();
        hearth_tests::ws_subscribe(
            &mut ws,
            "v",
            "subscription($ids: [ID!]!) { liveValues(deviceIds: $ids) { point value timestamp } }",
            serde_json::json!({ "ids": [device.clone()] }),
        )
        .await
        .unwrap();
        let first = next_live(&mut ws).await;
        // And history finds the readings in InfluxDB
        let history = "query($d: ID!, $p: String!, $f: DateTime!, $t: DateTime!) { history(deviceId: $d, point: $p, from: $f, to: $t, bucketSeconds: 1, aggregate: LAST) { timestamp value } }";
        let start = chrono::DateTime::parse_from_rfc3339(first["timestamp"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        let window = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| serde_json::json!({ "d": device, "p": first["point"], "f": from.to_rfc3339(), "t": to.to_rfc3339() });
        let stored = hearth_tests::eventually(Duration::from_secs(20), || async {
            let h = client
                .data(history, window(start, start + chrono::Duration::seconds(1)))
                .await?;
            Ok(h["history"].as_array().filter(|b| !b.is_empty()).cloned())
        })
        .await
        .expect("the first live value reaches InfluxDB");
        assert_eq!(stored[0]["value"], first["value"]);

        // When InfluxDB is cut off
        influx_proxy.set(false);
        let cut_at = chrono::Utc::now();
        // Then live values keep flowing
        let mut during = Vec::new();
        while during.len() < 3 {
            let v = next_live(&mut ws).await;
            if v["point"] == first["point"] {
                during.push(v);
            }
        }
        // And readings are spooled: hearth stays ready, readings buffering
        let buffering = hearth_tests::eventually(Duration::from_secs(20), || async {
            let (status, body) = get(&running, "/readyz").await;
            Ok((status == 200
                && body["stores"]["readings"]["state"] == "buffering"
                && body["stores"]["readings"]["spooled_batches"].as_u64() > Some(0))
            .then_some(body))
        })
        .await
        .expect("readings are spooled while InfluxDB is away");
        assert_eq!(buffering["stores"]["relational"]["state"], "ok");
        assert_eq!(buffering["stores"]["documents"]["state"], "ok");

        // When InfluxDB is back, the spool is replayed
        influx_proxy.set(true);
        hearth_tests::eventually(Duration::from_secs(30), || async {
            let (_, body) = get(&running, "/readyz").await;
            Ok((body["stores"]["readings"]["state"] == "ok").then_some(()))
        })
        .await
        .expect("the spool empties once InfluxDB is back");
        // Then the values that went live during the cut are in InfluxDB
        for v in &during {
            let at = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap())
                .unwrap()
                .with_timezone(&chrono::Utc);
            assert!(at >= cut_at - chrono::Duration::seconds(2));
            let h = client
                .data(
                    history,
                    window(at, at + chrono::Duration::milliseconds(500)),
                )
                .await
                .unwrap();
            let buckets = h["history"].as_array().cloned().unwrap_or_default();
            assert_eq!(buckets.len(), 1, "reading at {at} after replay: {h}");
            assert_eq!(buckets[0]["value"], v["value"]);
        }
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    running.stop().await;
    // Clean up whatever happened
    let _ = admin
        .execute_unprepared(&format!("DROP DATABASE `{name}`"))
        .await;
    let _ = reqwest::Client::new()
        .post(format!("{}/query", influx.trim_end_matches('/')))
        .form(&[("q", format!("DROP DATABASE \"{name}\""))])
        .send()
        .await;
    if let Ok(client) = mongodb::Client::with_uri_str(&mongo).await {
        let _ = client.database(&name).drop().await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
