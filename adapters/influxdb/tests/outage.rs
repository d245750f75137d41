//! Nothing is lost when InfluxDB goes away mid-stream: a switchable proxy
//! between the store and the real server stands in for the outage (the
//! server itself keeps running for other tests), the store spools what it
//! cannot write and replays it, in order, once the proxy passes again.

// Test code: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use hearth_domain::model::{Aggregate, HistoryBucket, HistoryQuery, Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::{DeviceId, PointKey, TenantId};
use hearth_influxdb::{InfluxReadings, QueryLanguage};

/// The shared switchable proxy, addressed like the store's URL.
struct Proxy {
    url: String,
    inner: hearth_domain::contract::proxy::Proxy,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let inner = hearth_domain::contract::proxy::Proxy::start(
            hearth_domain::contract::proxy::host_port(target),
        )
        .await;
        Proxy {
            url: format!("http://{}", inner.addr),
            inner,
        }
    }

    fn set(&self, up: bool) {
        self.inner.set(up);
    }
}

fn series() -> (TenantId, DeviceId, PointKey) {
    (
        TenantId::new(),
        DeviceId::new(),
        PointKey::new("flow").expect("valid key"),
    )
}

/// `count` readings a second apart from second `first`, all of `value`.
fn batch(s: &(TenantId, DeviceId, PointKey), first: i64, count: i64, value: f64) -> Vec<Reading> {
    let start = Utc
        .with_ymd_and_hms(2026, 2, 1, 0, 0, 0)
        .single()
        .expect("valid");
    (first..first + count)
        .map(|i| Reading {
            tenant_id: s.0,
            device_id: s.1,
            point: s.2.clone(),
            timestamp: start + Duration::seconds(i),
            value,
            quality: Quality::Good,
        })
        .collect()
}

async fn whole(
    store: &InfluxReadings,
    s: &(TenantId, DeviceId, PointKey),
    aggregate: Aggregate,
) -> Vec<f64> {
    let start = Utc
        .with_ymd_and_hms(2026, 2, 1, 0, 0, 0)
        .single()
        .expect("valid");
    let query = HistoryQuery::new(
        s.0,
        s.1,
        s.2.clone(),
        start,
        start + Duration::seconds(10_000),
        10_000,
        aggregate,
    )
    .expect("valid query");
    store
        .history(&query)
        .await
        .expect("history")
        .into_iter()
        .map(|HistoryBucket { value, .. }| value)
        .collect()
}

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("the spool folder")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".lp"))
        .count()
}

#[tokio::test]
async fn an_outage_mid_stream_loses_and_doubles_nothing() {
    let Some(url) = support::server("an_outage_mid_stream_loses_and_doubles_nothing") else {
        return;
    };
    let target = url.clone();
    support::with_database(&url, QueryLanguage::InfluxQl, |direct| async move {
        // Given a spooling store that reaches InfluxDB through a proxy
        let proxy = Proxy::start(&target).await;
        let spool = tempfile::tempdir().expect("a spool folder");
        let mut config = direct.config().clone();
        config.url = proxy.url.clone();
        config.timeout = std::time::Duration::from_secs(5);
        let store = Arc::new(
            InfluxReadings::with_spool(config, spool.path(), 64 << 20).expect("valid config"),
        );
        let s = series();

        // When 30 batches of 100 readings are written and InfluxDB is
        // unreachable during batches 10 to 19
        for i in 0..30 {
            if i == 10 {
                proxy.set(false);
            }
            if i == 20 {
                // Then, during the outage, every append succeeded and the
                // ten batches wait on disk
                assert_eq!(
                    spooled(spool.path()),
                    10,
                    "one spool file per batch in the outage"
                );
                assert_eq!(whole(&direct, &s, Aggregate::Count).await, vec![1_000.0]);
                proxy.set(true);
            }
            store
                .append(&batch(&s, i * 100, 100, i as f64))
                .await
                .unwrap_or_else(|err| panic!("batch {i} must be accepted: {err}"));
        }

        // Then every reading arrived exactly once, with its own value, and
        // the spool is empty
        assert_eq!(spooled(spool.path()), 0, "the spool must be drained");
        assert_eq!(whole(&direct, &s, Aggregate::Count).await, vec![3_000.0]);
        // Mean of 0..30 each 100 times: 14.5, only if none is lost or doubled
        assert_eq!(whole(&direct, &s, Aggregate::Mean).await, vec![14.5]);
        assert_eq!(whole(&direct, &s, Aggregate::Last).await, vec![29.0]);
    })
    .await;
}

#[tokio::test]
async fn a_spool_left_by_a_stopped_hearth_is_replayed_in_order() {
    let Some(url) = support::server("a_spool_left_by_a_stopped_hearth_is_replayed_in_order") else {
        return;
    };
    let target = url.clone();
    support::with_database(&url, QueryLanguage::Flux, |direct| async move {
        let proxy = Proxy::start(&target).await;
        let spool = tempfile::tempdir().expect("a spool folder");
        let mut config = direct.config().clone();
        config.url = proxy.url.clone();
        let s = series();
        {
            // Given two batches for the same timestamps, written in an
            // outage by a Hearth that then stops
            let store = InfluxReadings::with_spool(config.clone(), spool.path(), 64 << 20)
                .expect("valid config");
            proxy.set(false);
            store.append(&batch(&s, 0, 50, 1.0)).await.expect("spooled");
            store.append(&batch(&s, 0, 50, 2.0)).await.expect("spooled");
            assert_eq!(spooled(spool.path()), 2);
        }
        // When a new Hearth starts on the same folder and InfluxDB is back
        proxy.set(true);
        let store =
            InfluxReadings::with_spool(config, spool.path(), 64 << 20).expect("valid config");
        store
            .append(&batch(&s, 50, 50, 3.0))
            .await
            .expect("written");
        // Then both spooled batches were replayed, older first (the second
        // overwrote the first), before the new one
        assert_eq!(spooled(spool.path()), 0);
        assert_eq!(whole(&direct, &s, Aggregate::Count).await, vec![100.0]);
        assert_eq!(whole(&direct, &s, Aggregate::Mean).await, vec![2.5]);
    })
    .await;
}

#[tokio::test]
async fn a_full_spool_refuses_the_batch() {
    // Given a spool of 1 KiB and an InfluxDB that is away
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    drop(listener);
    let spool = tempfile::tempdir().expect("a spool folder");
    let store = InfluxReadings::with_spool(
        hearth_influxdb::InfluxConfig::new(url, "b/rp"),
        spool.path(),
        1024,
    )
    .expect("valid config");
    let s = series();
    // When a small batch and then one beyond the bound are written
    store
        .append(&batch(&s, 0, 2, 1.0))
        .await
        .expect("fits in the spool");
    let refused = store.append(&batch(&s, 2, 20, 1.0)).await;
    // Then the first is kept and the second refused, not half-kept
    assert!(refused.is_err(), "a batch beyond the bound must fail");
    assert_eq!(spooled(spool.path()), 1);
}
