//! The readings contract against a real InfluxDB (`HEARTH_TEST_INFLUXDB_URL`),
//! once per query language, each in its own database; plus how the store
//! behaves when the server is gone or answers nonsense.

// Test code: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;

use chrono::{TimeZone, Utc};
use hearth_domain::contract::readings::readings_contract;
use hearth_domain::model::{Aggregate, HistoryQuery, Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::{DeviceId, PointKey, TenantId};
use hearth_influxdb::{InfluxConfig, InfluxReadings, QueryLanguage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn contract(test: &str, language: QueryLanguage) {
    let Some(url) = support::server(test) else {
        return;
    };
    support::with_database(&url, language, |store| async move {
        readings_contract(&store).await;
    })
    .await;
    let _ = writeln!(std::io::stderr(), "{test} ran against {url}");
}

#[tokio::test]
async fn flux_passes_the_readings_contract() {
    contract("flux_passes_the_readings_contract", QueryLanguage::Flux).await;
}

#[tokio::test]
async fn influxql_passes_the_readings_contract() {
    contract(
        "influxql_passes_the_readings_contract",
        QueryLanguage::InfluxQl,
    )
    .await;
}

fn sample() -> (Reading, HistoryQuery) {
    let from = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid");
    let reading = Reading {
        tenant_id: TenantId::new(),
        device_id: DeviceId::new(),
        point: PointKey::new("flow").expect("valid key"),
        timestamp: from,
        value: 1.0,
        quality: Quality::Good,
    };
    let query = HistoryQuery::new(
        reading.tenant_id,
        reading.device_id,
        reading.point.clone(),
        from,
        from + chrono::Duration::seconds(60),
        30,
        Aggregate::Mean,
    )
    .expect("valid query");
    (reading, query)
}

#[tokio::test]
async fn a_missing_database_is_a_backend_error_in_both_languages() {
    let Some(url) = support::server("a_missing_database_is_a_backend_error_in_both_languages")
    else {
        return;
    };
    for language in [QueryLanguage::Flux, QueryLanguage::InfluxQl] {
        // Given a store on a database that does not exist
        let mut config = InfluxConfig::new(&url, "hearth_test_never_created/autogen");
        config.query_language = language;
        let store = InfluxReadings::new(config).expect("valid config");
        let (reading, query) = sample();
        // Then writes and reads fail as errors, not panics or empty answers
        assert!(
            store.append(&[reading]).await.is_err(),
            "{language:?} write"
        );
        assert!(store.history(&query).await.is_err(), "{language:?} read");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_backend_error() {
    // Given a store pointed at a port nobody listens on
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    drop(listener);
    let store = InfluxReadings::new(InfluxConfig::new(
        format!("http://127.0.0.1:{port}"),
        "b/rp",
    ))
    .expect("valid config");
    let (reading, query) = sample();
    // Then every call fails with an error
    assert!(store.ping().await.is_err());
    assert!(store.append(&[reading]).await.is_err());
    assert!(store.history(&query).await.is_err());
}

/// Answers every request on a local port with `body` and status 200, to
/// stand in for a proxy or a server that answers nonsense.
async fn nonsense_server(body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 8192];
            let _ = socket.read(&mut request).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn nonsense_answers_are_errors_not_panics() {
    for body in [
        "",
        "<html>gateway</html>",
        ",result,table,_start,value\r\n,_result,0,2026-01-01T00:00:00Z,\r\n,_result,0,x,1\r\n",
        "{\"results\":[{\"series\":[{\"values\":[[\"x\",null],[1]]}]}]}",
    ] {
        // Given a server that answers 200 with `body` to everything
        let url = nonsense_server(body).await;
        for language in [QueryLanguage::Flux, QueryLanguage::InfluxQl] {
            let mut config = InfluxConfig::new(&url, "b/rp");
            config.query_language = language;
            let store = InfluxReadings::new(config).expect("valid config");
            let (_, query) = sample();
            // When history is read
            let outcome = store.history(&query).await;
            // Then it is an error (an empty body is a valid empty Flux
            // answer, but not valid InfluxQL JSON)
            match (language, body) {
                (QueryLanguage::Flux, "") => {
                    assert!(outcome.expect("an empty CSV is no buckets").is_empty())
                }
                _ => assert!(outcome.is_err(), "{language:?} accepted {body:?}"),
            }
        }
    }
}

#[tokio::test]
async fn on_1x_the_database_is_created_when_missing_and_again_is_harmless() {
    let Some(url) = support::server("on_1x_the_database_is_created_when_missing") else {
        return;
    };
    // Given a store on a database that does not exist yet (the CI server is 1.8)
    let name = format!("hearth_test_{}", uuid::Uuid::new_v4().simple());
    let store = InfluxReadings::new(InfluxConfig::new(&url, format!("{name}/autogen")))
        .expect("valid config");
    let (reading, mut query) = sample();
    query.aggregate = Aggregate::Last;
    // When the database is ensured twice
    let first = store.ensure_database().await;
    let second = store.ensure_database().await;
    // Then both name it, and readings can be written and read back
    let written = store.append(&[reading]).await;
    let read = store.history(&query).await;
    support::admin(&url, &format!("DROP DATABASE \"{name}\"")).await;
    assert_eq!(first.expect("created"), Some(name.clone()));
    assert_eq!(second.expect("again"), Some(name));
    written.expect("written");
    let buckets = read.expect("read");
    assert_eq!(buckets.len(), 1, "{buckets:?}");
    assert_eq!(buckets[0].value, 1.0);
}
