//! Benchmark: readings per second written into InfluxDB through
//! [`InfluxReadings::append`] against a bare client posting the same
//! readings as line protocol, in the same run, as a ratio.
//!
//! - "hearth": `append` per batch (encoding, escaping checks, the request,
//!   status handling), one batch in flight, as the ingest writer calls it.
//! - "bare": per batch, the lines written with one `format!` each and posted
//!   with a plain `reqwest::Client` to the same `/api/v2/write` endpoint.
//!
//! Each side writes into its own fresh database in every round (no side
//! overwrites the other's points), rounds interleaved; the server is the
//! one named by `HEARTH_TEST_INFLUXDB_URL` (`.ci/extra.d/30-influxdb.sh`).
//!
//! `HEARTH_TEST_INFLUXDB_URL=http://127.0.0.1:8086 cargo bench -p hearth-influxdb
//!   --bench write_throughput [-- --readings N --batch B --rounds R]`

// Test code: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use hearth_domain::model::{Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::{DeviceId, PointKey, TenantId};
use hearth_influxdb::{InfluxConfig, InfluxReadings};

struct Args {
    readings: usize,
    batch: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut args = Args {
        readings: 200_000,
        batch: 5_000,
        rounds: 3,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` adds `--bench`; anything not ours is ignored.
    for pair in raw.windows(2) {
        let target = match pair[0].as_str() {
            "--readings" => &mut args.readings,
            "--batch" => &mut args.batch,
            "--rounds" => &mut args.rounds,
            _ => continue,
        };
        *target = pair[1]
            .parse()
            .unwrap_or_else(|_| panic!("{} needs a number, not {}", pair[0], pair[1]));
    }
    args
}

/// 100 devices × 20 points of one tenant, one reading each per second.
fn readings(count: usize) -> Vec<Reading> {
    let tenant = TenantId::new();
    let devices: Vec<DeviceId> = (0..100).map(|_| DeviceId::new()).collect();
    let points: Vec<PointKey> = (0..20)
        .map(|i| PointKey::new(format!("point_{i}")).expect("valid key"))
        .collect();
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid");
    (0..count)
        .map(|i| Reading {
            tenant_id: tenant,
            device_id: devices[i % devices.len()],
            point: points[(i / devices.len()) % points.len()].clone(),
            timestamp: start
                + chrono::Duration::seconds((i / (devices.len() * points.len())) as i64),
            value: i as f64 * 0.1,
            quality: Quality::Good,
        })
        .collect()
}

async fn admin(client: &reqwest::Client, url: &str, statement: &str) {
    let response = client
        .post(format!("{url}/query"))
        .form(&[("q", statement)])
        .send()
        .await
        .unwrap_or_else(|err| panic!("{statement}: {err}"));
    assert!(
        response.status().is_success(),
        "{statement}: {}",
        response.status()
    );
}

async fn hearth_side(url: &str, database: &str, batches: &[&[Reading]]) -> Duration {
    let store = InfluxReadings::new(InfluxConfig::new(url, format!("{database}/autogen")))
        .expect("valid config");
    let started = Instant::now();
    for batch in batches {
        store.append(batch).await.expect("append");
    }
    started.elapsed()
}

async fn bare_side(
    client: &reqwest::Client,
    url: &str,
    database: &str,
    batches: &[&[Reading]],
) -> Duration {
    let endpoint = format!("{url}/api/v2/write?bucket={database}/autogen&precision=us");
    let started = Instant::now();
    for batch in batches {
        let mut body = String::new();
        for r in *batch {
            let _ = writeln!(
                body,
                "readings,device={},point={},tenant={} quality={}i,value={} {}",
                r.device_id,
                r.point,
                r.tenant_id,
                r.quality.as_u8(),
                r.value,
                r.timestamp.timestamp_micros()
            );
        }
        let response = client
            .post(&endpoint)
            .body(body)
            .send()
            .await
            .expect("bare write");
        let status = response.status();
        assert!(
            status == reqwest::StatusCode::NO_CONTENT,
            "bare write: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
    started.elapsed()
}

fn rate(readings: usize, elapsed: Duration) -> f64 {
    readings as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let Ok(url) = std::env::var("HEARTH_TEST_INFLUXDB_URL") else {
        eprintln!(
            "HEARTH_TEST_INFLUXDB_URL is not set: start InfluxDB with .ci/extra.d/30-influxdb.sh"
        );
        std::process::exit(2);
    };
    let url = url.trim_end_matches('/').to_owned();
    let args = args();
    let data = readings(args.readings);
    let batches: Vec<&[Reading]> = data.chunks(args.batch.max(1)).collect();
    let client = reqwest::Client::new();
    println!(
        "{} readings in batches of {}, {} rounds, server {url}",
        args.readings, args.batch, args.rounds
    );
    let (mut hearth_total, mut bare_total) = (Duration::ZERO, Duration::ZERO);
    for round in 1..=args.rounds {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let (hearth_db, bare_db) = (format!("bench_hearth_{run}"), format!("bench_bare_{run}"));
        admin(&client, &url, &format!("CREATE DATABASE \"{hearth_db}\"")).await;
        admin(&client, &url, &format!("CREATE DATABASE \"{bare_db}\"")).await;
        // Alternate which side goes first, so neither always meets a
        // server still compacting the other's writes.
        let (hearth, bare) = if round % 2 == 1 {
            let h = hearth_side(&url, &hearth_db, &batches).await;
            (h, bare_side(&client, &url, &bare_db, &batches).await)
        } else {
            let b = bare_side(&client, &url, &bare_db, &batches).await;
            (hearth_side(&url, &hearth_db, &batches).await, b)
        };
        println!(
            "round {round}: hearth {:>9.0} readings/s, bare {:>9.0} readings/s, ratio {:.2}",
            rate(args.readings, hearth),
            rate(args.readings, bare),
            bare.as_secs_f64() / hearth.as_secs_f64()
        );
        hearth_total += hearth;
        bare_total += bare;
        admin(&client, &url, &format!("DROP DATABASE \"{hearth_db}\"")).await;
        admin(&client, &url, &format!("DROP DATABASE \"{bare_db}\"")).await;
    }
    let total = args.readings * args.rounds;
    println!(
        "total: hearth {:.0} readings/s, bare {:.0} readings/s, hearth/bare ratio {:.2}",
        rate(total, hearth_total),
        rate(total, bare_total),
        bare_total.as_secs_f64() / hearth_total.as_secs_f64()
    );
}
