//! The block engine behind `EmbeddedReadings`: sealed and compacted data
//! still meets the contract, rollups give the numbers a raw scan gives, a
//! crash before sealing loses nothing acknowledged, retention drops only
//! what is past each tenant's horizon, and simulator data stays small.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use hearth_domain::contract::readings::readings_contract;
use hearth_domain::model::{aggregate_sorted, Aggregate, HistoryQuery, Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::{DeviceId, PointKey, TenantId};
use hearth_embedded::{EmbeddedReadings, Retention, RetentionPolicy, Tuning};

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

fn tiny_checkpoints() -> Tuning {
    Tuning {
        checkpoint_readings: 2,
        ..Tuning::default()
    }
}

struct Series {
    tenant: TenantId,
    device: DeviceId,
    point: PointKey,
}

impl Series {
    fn new(tenant: TenantId) -> Self {
        Self {
            tenant,
            device: DeviceId::new(),
            point: PointKey::new("flow").expect("valid key"),
        }
    }
    fn at(&self, seconds: i64, value: f64, quality: Quality) -> Reading {
        Reading {
            tenant_id: self.tenant,
            device_id: self.device,
            point: self.point.clone(),
            timestamp: base() + Duration::seconds(seconds),
            value,
            quality,
        }
    }
    fn query(&self, from_s: i64, to_s: i64, bucket: i64, aggregate: Aggregate) -> HistoryQuery {
        HistoryQuery::new(
            self.tenant,
            self.device,
            self.point.clone(),
            base() + Duration::seconds(from_s),
            base() + Duration::seconds(to_s),
            bucket,
            aggregate,
        )
        .expect("valid query")
    }
}

/// A deterministic 0.01-step random walk (no RNG crate needed for a test).
fn walk(seed: u64, n: usize, start: f64) -> Vec<f64> {
    let mut state = seed;
    let mut raw = (start * 100.0).round() as i64;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            raw += ((state >> 33) % 3) as i64 - 1;
            raw as f64 * 0.01
        })
        .collect()
}

#[tokio::test]
async fn sealed_and_compacted_blocks_pass_the_readings_contract() {
    // Given a store that seals its heads after every batch
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store = EmbeddedReadings::open_with(dir.path(), tiny_checkpoints()).expect("open");
    // When the contract runs against it, then every promise holds
    readings_contract(&store).await;
}

#[tokio::test]
async fn rollups_give_the_numbers_a_raw_scan_gives() {
    // Given three days of one-minute readings with faults, sealed in many
    // small blocks, and a late overwrite of an hour that was already compacted
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store = EmbeddedReadings::open_with(
        dir.path(),
        Tuning {
            checkpoint_readings: 500,
            ..Tuning::default()
        },
    )
    .expect("open");
    let s = Series::new(TenantId::new());
    let minutes = 3 * 1_440;
    let values = walk(7, minutes, 20.0);
    let mut readings: Vec<Reading> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let quality = if i % 97 == 0 {
                Quality::Bad
            } else {
                Quality::Good
            };
            s.at(i as i64 * 60, *v, quality)
        })
        .collect();
    for batch in readings.chunks(100) {
        store.append(batch).await.expect("append");
    }
    let late = s.at(600, 99.5, Quality::Good);
    store
        .append(std::slice::from_ref(&late))
        .await
        .expect("late append");
    readings[10] = late;
    store.flush().await.expect("flush");
    let reference = |q: &HistoryQuery| {
        aggregate_sorted(
            q,
            readings.iter().map(|r| (r.timestamp, r.value, r.quality)),
        )
    };

    for aggregate in [
        Aggregate::Mean,
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::Last,
        Aggregate::Count,
    ] {
        for (from, to, bucket) in [
            (0, 3 * 86_400, 3_600),     // hour rollups
            (0, 3 * 86_400, 86_400),    // day rollups
            (900, 86_400 + 1_234, 900), // 15 min rollups, raw tail
            (60, 7_230, 120),           // 1 min rollups, raw tail
            (1, 86_400, 3_600),         // unaligned: raw scan
        ] {
            // When history is asked for aligned and unaligned buckets
            let q = s.query(from, to, bucket, aggregate);
            let got = store.history(&q).await.expect("history");
            let want = reference(&q);
            // Then the buckets are those of a plain fold over the readings
            assert_eq!(got.len(), want.len(), "{aggregate:?} {from}..{to}/{bucket}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.timestamp, w.timestamp);
                assert!(
                    (g.value - w.value).abs() <= 1e-9 * w.value.abs().max(1.0),
                    "{aggregate:?} {from}..{to}/{bucket} at {}: {} vs {}",
                    g.timestamp,
                    g.value,
                    w.value
                );
            }
        }
    }
}

#[tokio::test]
async fn acknowledged_batches_survive_a_crash_before_sealing() {
    // Given batches acknowledged but never sealed (the default checkpoint is
    // far away) and a store dropped without flushing, as a crash would
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let s = Series::new(TenantId::new());
    {
        let store = EmbeddedReadings::open(dir.path()).expect("open");
        store
            .append(&[s.at(0, 1.0, Quality::Good), s.at(1, 2.0, Quality::Good)])
            .await
            .expect("append");
        store
            .append(&[s.at(1, 5.0, Quality::Good)])
            .await
            .expect("overwrite");
    }
    // When the store is opened again
    let store = EmbeddedReadings::open(dir.path()).expect("reopen");
    // Then the WAL brought every reading back, the overwrite still winning
    let got = store
        .history(&s.query(0, 60, 60, Aggregate::Mean))
        .await
        .expect("history");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, 3.0);
    // And after sealing and another reopen nothing is counted twice
    store.flush().await.expect("flush");
    drop(store);
    let store = EmbeddedReadings::open(dir.path()).expect("reopen");
    let count = store
        .history(&s.query(0, 60, 60, Aggregate::Count))
        .await
        .expect("history");
    assert_eq!(count[0].value, 2.0);
}

#[tokio::test]
async fn retention_drops_whole_chunks_past_each_tenants_horizon() {
    // Given two tenants with ten days of hourly data, one keeping raw
    // readings for two days and hour rollups for five, the other for ever
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let short = TenantId::new();
    let retention = Retention {
        default: RetentionPolicy::default(),
        tenants: [(
            short,
            RetentionPolicy {
                raw_days: Some(2),
                rollup_days: [Some(2), Some(2), Some(5), None],
            },
        )]
        .into_iter()
        .collect(),
    };
    let store = EmbeddedReadings::open_with(
        dir.path(),
        Tuning {
            retention,
            ..Tuning::default()
        },
    )
    .expect("open");
    let a = Series::new(short);
    let b = Series::new(TenantId::new());
    let days = 10;
    for s in [&a, &b] {
        let batch: Vec<Reading> = (0..days * 24)
            .map(|h| s.at(h * 3_600 + 30, h as f64, Quality::Good))
            .collect();
        store.append(&batch).await.expect("append");
    }
    // When retention runs at the end of the tenth day
    let now = base() + Duration::days(days);
    store.enforce_retention(now).await.expect("retention");

    // Then the short tenant's raw readings older than two days are gone
    let raw_count = |s: &Series| s.query(1, days * 86_400, 86_400, Aggregate::Count);
    let a_raw: f64 = store
        .history(&raw_count(&a))
        .await
        .expect("history")
        .iter()
        .map(|b| b.value)
        .sum();
    assert_eq!(a_raw, 48.0, "two days of hourly readings are kept raw");
    // And its hour rollups reach back five days, not further
    let hourly = store
        .history(&a.query(0, days * 86_400, 3_600, Aggregate::Count))
        .await
        .expect("history");
    assert_eq!(hourly.len(), 5 * 24);
    assert_eq!(hourly[0].timestamp, now - Duration::days(5));
    // And the other tenant lost nothing
    let b_raw: f64 = store
        .history(&raw_count(&b))
        .await
        .expect("history")
        .iter()
        .map(|b| b.value)
        .sum();
    assert_eq!(b_raw, (days * 24) as f64);
}

#[tokio::test]
async fn simulator_shaped_data_takes_at_most_four_bytes_a_reading() {
    // Given 10 devices x 14 points x 1,000 s: random walks in 0.01 °C steps,
    // constant setpoints, all Good
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store = EmbeddedReadings::open(dir.path()).expect("open");
    let tenant = TenantId::new();
    let mut total = 0u64;
    for d in 0..10u64 {
        let device = DeviceId::new();
        let mut batch = Vec::new();
        for p in 0..14u64 {
            let point = PointKey::new(format!("p{p}")).expect("valid key");
            let values = if p < 8 {
                walk(d * 100 + p, 1_000, 20.0 + p as f64)
            } else {
                vec![21.5; 1_000]
            };
            for (t, v) in values.into_iter().enumerate() {
                batch.push(Reading {
                    tenant_id: tenant,
                    device_id: device,
                    point: point.clone(),
                    timestamp: base() + Duration::seconds(t as i64),
                    value: v,
                    quality: Quality::Good,
                });
            }
        }
        total += batch.len() as u64;
        store.append(&batch).await.expect("append");
    }
    // When everything is sealed and compacted
    store.flush().await.expect("flush");
    let (bytes, readings) = store.stored_size().await.expect("size");
    // Then every reading is there, in at most 4 bytes each
    assert_eq!(readings, total);
    let per_reading = bytes as f64 / readings as f64;
    assert!(per_reading <= 4.0, "{per_reading:.2} bytes per reading");
}
