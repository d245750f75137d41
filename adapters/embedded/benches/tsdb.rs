//! Benchmarks of the embedded time-series engine, each printing figures
//! measured side by side in one run:
//!
//! 1. Ingest rounds over a growing store: 1,000 devices x 14 points polled
//!    every 10 s, one batch of 50,000 readings at a time (the
//!    `ReadingWriter`'s batch). A round is one hour of data (360 polls, 5.04 M
//!    readings), so every round seals the same number of checkpoints (five:
//!    the checkpoint is set to a fifth of a round) and compacts one closed
//!    hour; a warm-up round (not counted) fills the first hour. Default 4
//!    counted rounds: 20 M readings, ten times `persist_throughput`'s store.
//!    Prints readings/s per round and last / first, next to the previous
//!    layout (one redb row per reading, sorted batches) over the same rounds
//!    unless `--no-baseline`.
//! 2. Bytes per stored reading on simulator-shaped data: 100 devices x 14
//!    points x 1,000 s, 0.01 °C random walks, constant setpoints, integer
//!    quality; compressed bytes (blocks + rollups) and the file after compaction.
//! 3. History: 30 days of 1-minute data of one series into 720 hourly
//!    buckets from rollups vs a raw scan of the same rows.
//!
//! `cargo bench -p hearth-embedded --bench tsdb [-- --rounds R --polls P --no-baseline]`

// Benchmark code: a failed setup step stops the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use hearth_domain::model::{Aggregate, HistoryQuery, Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::{DeviceId, PointKey, TenantId};
use hearth_embedded::{EmbeddedReadings, Tuning};
use redb::{Database, TableDefinition};

/// The previous layout: `(series id, µs) -> (value, quality)`, one row each.
const SAMPLES: TableDefinition<(u64, i64), (f64, u8)> = TableDefinition::new("samples");
const BATCH: usize = 50_000;
const POINTS: usize = 14;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// Random walk in 0.01 steps from a seeded LCG: the same data every run.
struct Walk {
    state: u64,
    raw: i64,
}

impl Walk {
    fn new(seed: u64, start: f64) -> Self {
        Self {
            state: seed.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(3),
            raw: (start * 100.0).round() as i64,
        }
    }
    fn next(&mut self) -> f64 {
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.raw += ((self.state >> 33) % 3) as i64 - 1;
        self.raw as f64 * 0.01
    }
}

/// Simulator-shaped devices: points 0..8 walk, 8..14 are constant setpoints.
struct Plant {
    tenant: TenantId,
    devices: Vec<DeviceId>,
    points: Vec<PointKey>,
    walks: Vec<Walk>,
}

impl Plant {
    fn new(devices: usize) -> Self {
        Self {
            tenant: TenantId::new(),
            devices: (0..devices).map(|_| DeviceId::new()).collect(),
            points: (0..POINTS)
                .map(|p| PointKey::new(format!("p{p}")).expect("valid key"))
                .collect(),
            walks: (0..devices * POINTS)
                .map(|i| Walk::new(i as u64, 20.0 + (i % POINTS) as f64))
                .collect(),
        }
    }
    /// Every device polled once at second `t`, in poll order.
    fn poll(&mut self, t: i64, out: &mut Vec<Reading>) {
        let timestamp = start() + Duration::seconds(t);
        for (d, device) in self.devices.iter().enumerate() {
            for (p, point) in self.points.iter().enumerate() {
                let value = if p < 8 {
                    self.walks[d * POINTS + p].next()
                } else {
                    21.5
                };
                out.push(Reading {
                    tenant_id: self.tenant,
                    device_id: *device,
                    point: point.clone(),
                    timestamp,
                    value,
                    quality: Quality::Good,
                });
            }
        }
    }
}

async fn ingest_rounds(rounds: usize, polls: usize, interval: usize, baseline: bool) {
    let devices = 1_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let per_round = devices * POINTS * polls;
    let store = EmbeddedReadings::open_with(
        &dir.path().join("engine"),
        Tuning {
            checkpoint_readings: per_round / 5,
            ..Tuning::default()
        },
    )
    .expect("open");
    let bare = baseline.then(|| {
        let db = Database::create(dir.path().join("rows.redb")).expect("bare db");
        let txn = db.begin_write().expect("txn");
        txn.open_table(SAMPLES).expect("table");
        txn.commit().expect("commit");
        db
    });
    let mut plant = Plant::new(devices);
    let mut engine_rates = Vec::new();
    let mut bare_rates = Vec::new();
    for round in 0..=rounds {
        let mut readings = Vec::with_capacity(per_round);
        for p in 0..polls {
            plant.poll(((round * polls + p) * interval) as i64, &mut readings);
        }
        let began = Instant::now();
        for batch in readings.chunks(BATCH) {
            store.append(batch).await.expect("append");
        }
        let engine = per_round as f64 / began.elapsed().as_secs_f64();
        engine_rates.push(engine);
        let mut line = format!("  round {round:>2}  engine {engine:>9.0} readings/s");
        if let Some(db) = &bare {
            // Same rows, already reduced to (series id, µs) outside the timing.
            let rows: Vec<((u64, i64), (f64, u8))> = readings
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        (
                            (i % (devices * POINTS)) as u64,
                            r.timestamp.timestamp_micros(),
                        ),
                        (r.value, 0u8),
                    )
                })
                .collect();
            let began = Instant::now();
            for batch in rows.chunks(BATCH) {
                let mut batch = batch.to_vec();
                batch.sort_by_key(|(k, _)| *k);
                let txn = db.begin_write().expect("txn");
                {
                    let mut table = txn.open_table(SAMPLES).expect("table");
                    for (k, v) in &batch {
                        table.insert(k, v).expect("insert");
                    }
                }
                txn.commit().expect("commit");
            }
            let rate = per_round as f64 / began.elapsed().as_secs_f64();
            bare_rates.push(rate);
            line.push_str(&format!("  | row per reading {rate:>9.0} readings/s"));
        }
        if round == 0 {
            line.push_str("  (warm-up, not counted)");
            engine_rates.clear();
            bare_rates.clear();
        }
        println!("{line}");
    }
    let total = per_round * rounds;
    let mean = |r: &[f64]| r.len() as f64 / r.iter().map(|x| 1.0 / x).sum::<f64>();
    println!(
        "ingest: {devices} devices x {POINTS} points every {interval} s, {rounds} rounds of {polls} polls ({per_round} readings each, {total} counted), batches of {BATCH}"
    );
    let first = engine_rates[0];
    let rounds = engine_rates.len();
    let last = engine_rates[rounds - 1];
    println!(
        "engine: {:.0} readings/s overall, first round {first:.0}, last {last:.0}, last/first {:.2}",
        mean(&engine_rates),
        last / first
    );
    if !bare_rates.is_empty() {
        println!(
            "row per reading: {:.0} readings/s overall, first round {:.0}, last {:.0}, last/first {:.2}",
            mean(&bare_rates),
            bare_rates[0],
            bare_rates[rounds - 1],
            bare_rates[rounds - 1] / bare_rates[0]
        );
        println!(
            "ratio engine / row per reading, last round: {:.2}",
            last / bare_rates[rounds - 1]
        );
    }
}

async fn bytes_per_reading() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = EmbeddedReadings::open(dir.path()).expect("open");
    let mut plant = Plant::new(100);
    let mut readings = Vec::new();
    for t in 0..1_000 {
        plant.poll(t, &mut readings);
    }
    for batch in readings.chunks(BATCH) {
        store.append(batch).await.expect("append");
    }
    store.flush().await.expect("flush");
    let (bytes, stored) = store.stored_size().await.expect("size");
    let compacted = store.compact_file().expect("compact");
    let file = std::fs::metadata(dir.path().join("readings.redb"))
        .expect("file")
        .len();
    let (allocated, data, metadata, fragmented) = store.file_stats().expect("stats");
    println!(
        "redb accounting: {allocated} bytes in allocated pages, {data} stored, {metadata} B-tree metadata, {fragmented} fragmented"
    );
    println!(
        "size: {stored} readings (100 devices x {POINTS} points x 1,000 s): {:.2} bytes/reading in blocks+rollups, \
         file {file} bytes = {:.2} bytes/reading (compacted: {compacted})",
        bytes as f64 / stored as f64,
        file as f64 / stored as f64
    );
}

async fn history_rollups_vs_raw() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedReadings::open(dir.path()).expect("open");
    let tenant = TenantId::new();
    let device = DeviceId::new();
    let point = PointKey::new("flow").expect("valid key");
    let minutes = 30 * 1_440;
    let mut walk = Walk::new(42, 55.0);
    let readings: Vec<Reading> = (0..minutes)
        .map(|m| Reading {
            tenant_id: tenant,
            device_id: device,
            point: point.clone(),
            timestamp: start() + Duration::minutes(m),
            value: walk.next(),
            quality: Quality::Good,
        })
        .collect();
    for batch in readings.chunks(BATCH) {
        store.append(batch).await.expect("append");
    }
    store.flush().await.expect("flush");
    let query = HistoryQuery::new(
        tenant,
        device,
        point,
        start(),
        start() + Duration::days(30),
        3_600,
        Aggregate::Mean,
    )
    .expect("query");
    let runs = 51;
    // Interleaved so drift favours neither side; medians so a burst of
    // load from elsewhere on the machine does not decide the ratio.
    let (mut rollup_ms, mut raw_ms) = (Vec::new(), Vec::new());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let began = Instant::now();
        a = store.history(&query).await.expect("history");
        rollup_ms.push(began.elapsed().as_secs_f64() * 1e3);
        let began = Instant::now();
        b = store.history_raw(&query).await.expect("raw history");
        raw_ms.push(began.elapsed().as_secs_f64() * 1e3);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (rollup, raw) = (median(rollup_ms), median(raw_ms));
    assert_eq!(a.len(), 720);
    assert_eq!(a, b, "rollups and the raw scan must agree");
    println!(
        "history: 30 days x 1-minute data ({minutes} rows) -> {} buckets, median of {runs}: rollups {rollup:.3} ms, raw scan {raw:.3} ms, ratio rollups/raw {:.3}",
        a.len(),
        rollup / raw
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rounds = arg("--rounds", 4);
    let polls = arg("--polls", 360);
    let interval = arg("--interval", 10);
    let baseline = !std::env::args().any(|a| a == "--no-baseline");
    history_rollups_vs_raw().await;
    bytes_per_reading().await;
    ingest_rounds(rounds, polls, interval, baseline).await;
}
