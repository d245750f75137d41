//! A fresh InfluxDB database per test on the server named by
//! `HEARTH_TEST_INFLUXDB_URL` (`.ci/extra.d/30-influxdb.sh` starts one), so
//! tests never see each other's readings.

use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use hearth_influxdb::{InfluxConfig, InfluxReadings, QueryLanguage};

pub const VAR: &str = "HEARTH_TEST_INFLUXDB_URL";

/// The server's URL; `None` (with a note on stderr) when it is not set,
/// and a failure under `CI=true`, where the server is part of the run.
pub fn server(test: &str) -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but {VAR} is not set: .ci/run must start InfluxDB (.ci/extra.d/30-influxdb.sh)"
            );
            // Straight to stderr: libtest captures `println!` of passing
            // tests, and a skipped integration test must be visible.
            let _ = writeln!(
                std::io::stderr(),
                "{test} did NOT run: {VAR} is not set (see .ci/extra.d/30-influxdb.sh)"
            );
            None
        }
    }
}

/// Runs an InfluxQL statement on the v1 endpoint (database admin only).
pub async fn admin(url: &str, statement: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/query", url.trim_end_matches('/')))
        .form(&[("q", statement)])
        .send()
        .await
        .unwrap_or_else(|err| panic!("{statement}: {err}"));
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        status.is_success() && !body.contains("\"error\""),
        "{statement}: {status} {body}"
    );
}

/// Creates `hearth_test_<uuid>`, runs `test` with a store on its
/// `autogen` bucket in `language`, and drops the database even when the
/// test panics (the panic is then resumed).
pub async fn with_database<F, Fut>(url: &str, language: QueryLanguage, test: F)
where
    F: FnOnce(InfluxReadings) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = format!("hearth_test_{}", uuid::Uuid::new_v4().simple());
    admin(url, &format!("CREATE DATABASE \"{name}\"")).await;
    let mut config = InfluxConfig::new(url, format!("{name}/autogen"));
    config.query_language = language;
    let store = InfluxReadings::new(config).expect("a valid test config");
    store.ping().await.expect("the test server answers /ping");
    let outcome = AssertUnwindSafe(test(store)).catch_unwind().await;
    admin(url, &format!("DROP DATABASE \"{name}\"")).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
