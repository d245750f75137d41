//! Benchmark: readings persisted per second through the real ingest path,
//! `ReadingWriter` (the batching writer every `record_readings` feeds) ->
//! `EmbeddedReadings::append` (redb), against a bare batched redb insert of
//! the same rows into the same engine, in interleaved rounds of one run.
//!
//! The readings are what 1,000 polled ECL controllers (14 points each)
//! produce: one `Vec` of 14 readings per device per poll, a second apart,
//! handed to `ReadingWriter::write` one poll at a time as the poller does.
//! A round writes `--polls` polls of every device, then shuts the writer
//! down, which flushes what is queued; the time is first write to flush done.
//!
//! The bare baseline is what the embedded store does at its core and nothing
//! else: the same rows, already reduced to `(series id, timestamp µs) ->
//! (value, quality)` outside the timing, inserted with redb's defaults
//! (durable commits) in write transactions of 10,000 rows, the writer's
//! batch size. Two variants: rows in arrival order, and each batch sorted by
//! key first (sort timed), which is what `EmbeddedReadings` does to turn
//! scattered B-tree inserts into sequential ones. Every store keeps growing
//! across rounds, the same for all sides. Warm-up rounds (not counted) let
//! the embedded store create its 14,000 series first.
//!
//! `cargo bench -p hearth-tests --bench persist_throughput [-- --devices N --polls P --rounds R]`

// Benchmark code: a failed setup step stops the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Parser;
use hearth_domain::model::{Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::services::ReadingWriter;
use hearth_domain::{DeviceId, PointKey, TenantId};
use hearth_embedded::EmbeddedReadings;
use hearth_modbus::ecl_comfort_310;
use redb::{Database, TableDefinition};

/// The same allocator as the `hearth` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The embedded store's own layout, so the baseline does the same B-tree work.
const SAMPLES: TableDefinition<(u64, i64), (f64, u8)> = TableDefinition::new("samples");
/// Rows per bare write transaction: `ReadingWriter`'s batch size.
const BATCH: usize = ReadingWriter::MAX_BATCH;

type Row = ((u64, i64), (f64, u8));

/// Readings persisted per second, writer against bare redb (see the module docs).
#[derive(Parser)]
struct Args {
    /// Simulated controllers, 14 points each.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Polls of every device per round.
    #[arg(long, default_value_t = 50)]
    polls: usize,
    /// Interleaved rounds per side.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The polls of one round: for each poll `p` (second `first_second + p`),
/// one `Vec` per device with a reading of every point.
struct Workload {
    tenant: TenantId,
    devices: Vec<DeviceId>,
    points: Vec<PointKey>,
    start: DateTime<Utc>,
}

impl Workload {
    fn polls(&self, first_second: i64, polls: usize) -> Vec<Vec<Reading>> {
        let mut out = Vec::with_capacity(polls * self.devices.len());
        for p in 0..polls {
            let timestamp = self.start + Duration::seconds(first_second + p as i64);
            for (d, device) in self.devices.iter().enumerate() {
                out.push(
                    self.points
                        .iter()
                        .enumerate()
                        .map(|(k, point)| Reading {
                            tenant_id: self.tenant,
                            device_id: *device,
                            point: point.clone(),
                            timestamp,
                            value: (d * 31 + k * 7 + p) as f64 * 0.01,
                            quality: Quality::Good,
                        })
                        .collect(),
                );
            }
        }
        out
    }

    /// The same readings as bare rows, series numbered by (device, point).
    fn rows(&self, polls: &[Vec<Reading>]) -> Vec<Row> {
        let per_device = self.points.len();
        polls
            .iter()
            .enumerate()
            .flat_map(|(i, poll)| {
                let device = i % self.devices.len();
                poll.iter().enumerate().map(move |(k, r)| {
                    (
                        (
                            (device * per_device + k) as u64,
                            r.timestamp.timestamp_micros(),
                        ),
                        (r.value, r.quality.as_u8()),
                    )
                })
            })
            .collect()
    }
}

/// One round through the real path; returns seconds.
async fn writer_round(
    store: &Arc<dyn ReadingStore>,
    polls: Vec<Vec<Reading>>,
) -> anyhow::Result<f64> {
    let total: u64 = polls.iter().map(|p| p.len() as u64).sum();
    let writer = ReadingWriter::spawn(store.clone());
    let began = Instant::now();
    for poll in polls {
        writer.write(&poll).await;
    }
    writer.shutdown().await;
    let secs = began.elapsed().as_secs_f64();
    let stats = writer.stats();
    let (persisted, dropped) = (
        stats.persisted.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed),
    );
    anyhow::ensure!(
        persisted == total && dropped == 0,
        "the writer persisted {persisted} and dropped {dropped} of {total} readings"
    );
    Ok(secs)
}

/// One round of bare batched inserts; returns seconds.
async fn bare_round(db: &Arc<Database>, rows: Vec<Row>, sorted: bool) -> anyhow::Result<f64> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let began = Instant::now();
        let mut rows = rows;
        for batch in rows.chunks_mut(BATCH) {
            if sorted {
                batch.sort_by_key(|(key, _)| *key);
            }
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(SAMPLES)?;
                for (key, value) in batch.iter() {
                    table.insert(key, value)?;
                }
            }
            txn.commit()?;
        }
        Ok(began.elapsed().as_secs_f64())
    })
    .await?
}

fn bare_db(dir: &Path, name: &str) -> anyhow::Result<Arc<Database>> {
    let db = Database::create(dir.join(name)).with_context(|| format!("create {name}"))?;
    let txn = db.begin_write()?;
    txn.open_table(SAMPLES)?;
    txn.commit()?;
    Ok(Arc::new(db))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let Args {
        devices,
        polls,
        rounds,
        ..
    } = Args::parse();
    let warmup_polls = 5;

    let points: Vec<PointKey> = ecl_comfort_310()
        .points
        .into_iter()
        .map(|p| p.key)
        .collect();
    let workload = Workload {
        tenant: TenantId::new(),
        devices: (0..devices).map(|_| DeviceId::new()).collect(),
        points,
        start: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .context("bad start date")?,
    };
    let per_round = polls * devices * workload.points.len();

    let dir = tempfile::tempdir()?;
    let embedded_dir = dir.path().join("embedded");
    let store: Arc<dyn ReadingStore> = Arc::new(EmbeddedReadings::open(&embedded_dir)?);
    let arrival = bare_db(dir.path(), "bare-arrival.redb")?;
    let sorted = bare_db(dir.path(), "bare-sorted.redb")?;

    // Warm-up: series creation, file growth, allocator.
    let warm = workload.polls(0, warmup_polls);
    let warm_rows = workload.rows(&warm);
    writer_round(&store, warm).await?;
    bare_round(&arrival, warm_rows.clone(), false).await?;
    bare_round(&sorted, warm_rows, true).await?;

    let names = [
        "ReadingWriter -> EmbeddedReadings",
        "bare redb, arrival order",
        "bare redb, sorted batches",
    ];
    let mut secs = [0.0f64; 3];
    for r in 0..rounds {
        let first_second = (warmup_polls + r * polls) as i64;
        let readings = workload.polls(first_second, polls);
        let rows = workload.rows(&readings);
        // Rotate the order so drift over time favours no side.
        let mut readings = Some(readings);
        for step in 0..3 {
            let side = (step + r) % 3;
            let took = match side {
                0 => writer_round(&store, readings.take().unwrap_or_default()).await?,
                1 => bare_round(&arrival, rows.clone(), false).await?,
                _ => bare_round(&sorted, rows.clone(), true).await?,
            };
            println!(
                "  round {r} {:<34} {:>9.0} readings/s",
                names[side],
                per_round as f64 / took
            );
            secs[side] += took;
        }
    }

    let total = (per_round * rounds) as f64;
    println!(
        "persist throughput: {devices} devices x {} points, {polls} polls per round ({per_round} readings), \
         {rounds} rounds, bare transactions of {BATCH} rows",
        workload.points.len()
    );
    for (name, s) in names.iter().zip(secs) {
        println!("{name:<34} {:>9.0} readings/s", total / s);
    }
    let rate = |i: usize| total / secs[i];
    println!(
        "ratio writer / bare arrival order: {:.2}",
        rate(0) / rate(1)
    );
    println!(
        "ratio writer / bare sorted batches: {:.2}",
        rate(0) / rate(2)
    );
    Ok(())
}
