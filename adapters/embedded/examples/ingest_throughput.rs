//! Rough ingest throughput of `EmbeddedReadings` against a bare redb batched
//! insert of the same samples: `cargo run --release -p hearth-embedded --example ingest_throughput`.

// Benchmark code: a failed setup step stops the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use hearth_domain::model::{Aggregate, HistoryQuery, Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::{DeviceId, PointKey, TenantId};
use hearth_embedded::EmbeddedReadings;
use redb::{Database, TableDefinition};

const TOTAL: usize = 1_000_000;
const BATCH: usize = 10_000;
const TENANTS: usize = 2;
const DEVICES_PER_TENANT: usize = 50;
const POINTS: usize = 10;

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .ok_or("bad date")?;
    let tenants: Vec<TenantId> = (0..TENANTS).map(|_| TenantId::new()).collect();
    let devices: Vec<(TenantId, DeviceId)> = tenants
        .iter()
        .flat_map(|t| (0..DEVICES_PER_TENANT).map(move |_| (*t, DeviceId::new())))
        .collect();
    let points: Vec<PointKey> = (0..POINTS)
        .map(|p| PointKey::new(format!("point_{p}")))
        .collect::<Result<_, _>>()?;
    let series = devices.len() * POINTS;

    // Polls in the order a poller produces them: every series once per second.
    let readings: Vec<Reading> = (0..TOTAL)
        .map(|i| {
            let (tenant, device) = devices[(i / POINTS) % devices.len()];
            Reading {
                tenant_id: tenant,
                device_id: device,
                point: points[i % POINTS].clone(),
                timestamp: start + Duration::seconds((i / series) as i64),
                value: i as f64 * 0.01,
                quality: Quality::Good,
            }
        })
        .collect();

    let dir = tempfile::tempdir()?;
    let store = EmbeddedReadings::open(dir.path())?;
    let began = Instant::now();
    for batch in readings.chunks(BATCH) {
        store.append(batch).await?;
    }
    let store_secs = began.elapsed().as_secs_f64();

    let (tenant, device) = devices[0];
    let query = HistoryQuery::new(
        tenant,
        device,
        points[0].clone(),
        start,
        start + Duration::seconds((TOTAL / series) as i64),
        60,
        Aggregate::Mean,
    )?;
    let began = Instant::now();
    let buckets = store.history(&query).await?;
    let history_ms = began.elapsed().as_secs_f64() * 1e3;

    // The same samples, already reduced to (series id, µs) keys, straight into redb.
    const SAMPLES: TableDefinition<(u64, i64), (f64, u8)> = TableDefinition::new("samples");
    let bare_dir = tempfile::tempdir()?;
    let db = Database::create(bare_dir.path().join("bare.redb"))?;
    let rows: Vec<((u64, i64), (f64, u8))> = readings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                ((i % series) as u64, r.timestamp.timestamp_micros()),
                (r.value, 0u8),
            )
        })
        .collect();
    let began = Instant::now();
    for batch in rows.chunks(BATCH) {
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(SAMPLES)?;
            for (key, value) in batch {
                table.insert(key, value)?;
            }
        }
        txn.commit()?;
    }
    let bare_secs = began.elapsed().as_secs_f64();

    println!("{TOTAL} readings, {series} series, batches of {BATCH}");
    println!(
        "EmbeddedReadings::append : {:>10.0} readings/s ({store_secs:.2} s)",
        TOTAL as f64 / store_secs
    );
    println!(
        "bare redb batched insert : {:>10.0} readings/s ({bare_secs:.2} s)",
        TOTAL as f64 / bare_secs
    );
    println!(
        "history of one series ({} samples, 60 s MEAN buckets): {} buckets in {history_ms:.1} ms",
        TOTAL / series,
        buckets.len()
    );
    Ok(())
}
