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
    let pings = asked.load(Ordering::SeqCst);
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
