//! Benchmark: the GraphQL device list (50 devices x 10 points, authenticated,
//! over HTTP) served from the embedded stores with the oso policy on, against
//! the same schema and router over in-memory ports with the policy bypassed.
//! Both servers run in this process and are measured in interleaved rounds of
//! the same run, so the machine's noise hits both alike; the figure that
//! matters is the ratio.
//!
//! `cargo bench -p hearth-tests --bench device_list [-- --seconds S --concurrency C --rounds R]`

// Benchmark code: a failed setup step stops the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use hdrhistogram::Histogram;
use hearth::api::build_schema;
use hearth_auth::{Argon2Hasher, JwtTokens, OsoAuthorizer};
use hearth_domain::model::{
    Device, DeviceProfile, DeviceScope, EmailAddress, Endpoint, Membership, PointDefinition,
    Quality, Reading, Role, Tenant, TenantSlug, User, WriteLevel,
};
use hearth_domain::ports::{LiveEvent, NoWatchInterest};
use hearth_domain::services::{Adapters, LoginLimits, Services};
use hearth_domain::{DeviceId, PointKey, ProfileId, TenantId, UserId};
use hearth_embedded::{EmbeddedDocuments, EmbeddedReadings};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_inproc::readings::MemoryReadings;
use hearth_modbus::{
    DataType, GatewayConfig, ModbusGateway, ModbusPoint, RegisterKind, Scale, WordOrder,
};
use hearth_sql::SqlDirectory;
use hearth_tests::AllowAllAuthorizer;
use serde_json::json;

/// The same allocator as the `hearth` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Latencies are recorded in µs from 1 µs to an hour (longer ones count as
/// an hour): a fixed range, since `saturating_record` clamps rather than grows.
const HOUR_MICROS: u64 = 3_600_000_000;

const DEVICES: usize = 50;
const POINTS: usize = 10;
const PASSWORD: &str = "bench-password";
const QUERY: &str =
    "{ devices(first: 50) { totalCount edges { node { id name online area { id name }
    points { key name value unit quality updatedAt writable writeLevel min max } } } } }";

struct Side {
    name: &'static str,
    addr: SocketAddr,
    token: String,
    _services: Services,
}

fn profile() -> anyhow::Result<DeviceProfile> {
    let points = (0..POINTS)
        .map(|i| {
            Ok(PointDefinition {
                key: PointKey::new(format!("point_{i}"))?,
                name: format!("Point {i}"),
                address: ModbusPoint {
                    register: if i < 5 {
                        RegisterKind::Input
                    } else {
                        RegisterKind::Holding
                    },
                    address: 100 + i as u16,
                    data_type: DataType::I16,
                    word_order: WordOrder::HighFirst,
                    scale: Scale::new(0.1)?,
                    offset: 0.0,
                }
                .to_address(),
                unit: "°C".into(),
                writable: i >= 5,
                write_level: WriteLevel::Basic,
                min: Some(0.0),
                max: Some(100.0),
                options: Vec::new(),
                plausible_min: None,
                plausible_max: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(DeviceProfile {
        id: ProfileId::new("bench-profile")?,
        tenant_id: None,
        name: "Bench".into(),
        poll_interval_ms: 1000,
        live_poll_interval_ms: None,
        points,
    })
}

async fn side(name: &'static str, adapters: Adapters) -> anyhow::Result<Side> {
    // The bench seeds through the adapters it built itself, before the
    // services take them over.
    let p = Adapters {
        directory: adapters.directory.clone(),
        documents: adapters.documents.clone(),
        readings: adapters.readings.clone(),
        live: adapters.live.clone(),
        watch: adapters.watch.clone(),
        field: adapters.field.clone(),
        authorizer: adapters.authorizer.clone(),
        passwords: adapters.passwords.clone(),
        tokens: adapters.tokens.clone(),
    };
    let services = Services::new(adapters, LoginLimits::default());
    let tenant = Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new("bench")?,
        name: "Bench".into(),
    };
    p.directory.insert_tenant(&tenant).await?;
    let profile = profile()?;
    p.documents.put_profile(&profile).await?;
    let user = User {
        id: UserId::new(),
        email: EmailAddress::new("admin@bench.test")?,
        display_name: "Admin".into(),
        password_hash: Some(p.passwords.hash(PASSWORD)?),
        disabled: false,
        tokens_valid_from: None,
    };
    p.directory.insert_user(&user).await?;
    p.directory
        .upsert_membership(&Membership {
            user_id: user.id,
            tenant_id: tenant.id,
            role: Role::Admin,
            scope: DeviceScope::All,
        })
        .await?;
    for d in 0..DEVICES {
        let device = Device {
            id: DeviceId::new(),
            tenant_id: tenant.id,
            area_id: None,
            name: format!("Device {d:03}"),
            profile_id: profile.id.clone(),
            endpoint: Endpoint::new("127.0.0.1", 1502, 1)?,
        };
        p.directory.insert_device(&device).await?;
        for point in &profile.points {
            p.live.publish(LiveEvent::Reading(Reading {
                tenant_id: tenant.id,
                device_id: device.id,
                point: point.key.clone(),
                timestamp: chrono::Utc::now(),
                value: 21.5,
                quality: Quality::Good,
            }));
        }
    }
    let session = services
        .auth
        .login("admin@bench.test", PASSWORD, None, None)
        .await?;
    let router = hearth::server::router(
        build_schema(services.clone()).finish(),
        services.auth.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = hearth::server::serve(listener, router).await;
    });
    Ok(Side {
        name,
        addr,
        token: session.token,
        _services: services,
    })
}

/// Runs `concurrency` clients against one side for `seconds`; returns latencies.
async fn round(side: &Side, concurrency: usize, seconds: f64) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let url = format!("http://{}/graphql", side.addr);
    let body = serde_json::to_vec(&json!({ "query": QUERY }))?;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (url, body, token) = (url.clone(), body.clone(), side.token.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                let res = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                let bytes = res.bytes().await?;
                latencies.push(start.elapsed());
                anyhow::ensure!(
                    bytes.len() > 10_000 && !bytes.starts_with(b"{\"errors\""),
                    "bad response"
                );
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    Ok(all)
}

/// The GraphQL device list, embedded stores and policy against memory and bypass.
#[derive(Parser)]
struct Args {
    /// Seconds per side per round.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent HTTP clients per side.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Interleaved rounds per side.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Request latencies in microseconds, to three significant digits.
fn latencies(samples: &[Duration]) -> anyhow::Result<Histogram<u64>> {
    let mut histogram = Histogram::new_with_bounds(1, HOUR_MICROS, 3)?;
    for d in samples {
        histogram.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
    Ok(histogram)
}

fn ms_at(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1e3
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let Args {
        seconds,
        concurrency,
        rounds,
        ..
    } = Args::parse();
    let dir = tempfile::tempdir()?;
    let tokens = || JwtTokens::new(&[7u8; 64], chrono::Duration::hours(1));
    let gateway = Arc::new(ModbusGateway::new(GatewayConfig::default()));
    let embedded = Adapters {
        directory: Arc::new(
            SqlDirectory::sqlite_in(dir.path())
                .await
                .context("sqlite")?,
        ),
        documents: Arc::new(EmbeddedDocuments::open(dir.path())?),
        readings: Arc::new(EmbeddedReadings::open(dir.path())?),
        live: Arc::new(InProcessBus::new()),
        // Nothing polls here, so nobody needs to know who watches.
        watch: Arc::new(NoWatchInterest),
        field: gateway.clone(),
        authorizer: Arc::new(OsoAuthorizer::new()?),
        passwords: Arc::new(Argon2Hasher::fast_for_tests()?),
        tokens: Arc::new(tokens()?),
    };
    let memory = Adapters {
        directory: Arc::new(MemoryDirectory::new()),
        documents: Arc::new(MemoryDocuments::new()),
        readings: Arc::new(MemoryReadings::new()),
        live: Arc::new(InProcessBus::new()),
        // Nothing polls here, so nobody needs to know who watches.
        watch: Arc::new(NoWatchInterest),
        field: gateway,
        authorizer: Arc::new(AllowAllAuthorizer),
        passwords: Arc::new(Argon2Hasher::fast_for_tests()?),
        tokens: Arc::new(tokens()?),
    };
    let sides = [
        side("embedded+policy", embedded).await?,
        side("memory+bypass", memory).await?,
    ];
    // Warm up both (connection pools, caches, allocator).
    for s in &sides {
        round(s, concurrency, 1.0).await?;
    }
    let mut results: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new()];
    for r in 0..rounds {
        // Alternate which side goes first, so drift over time favours neither.
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            results[i].extend(round(&sides[i], concurrency, seconds).await?);
        }
    }
    let total_secs = seconds * rounds as f64;
    let mut throughput = [0.0; 2];
    println!("device list, {DEVICES} devices x {POINTS} points, {concurrency} clients, {rounds} rounds x {seconds} s per side");
    let histograms = [latencies(&results[0])?, latencies(&results[1])?];
    for (i, (s, lat)) in sides.iter().zip(&histograms).enumerate() {
        throughput[i] = lat.len() as f64 / total_secs;
        println!(
            "{:<16} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} requests)",
            s.name,
            throughput[i],
            ms_at(lat, 0.50),
            ms_at(lat, 0.99),
            lat.len()
        );
    }
    let p99 = |i: usize| ms_at(&histograms[i], 0.99);
    println!(
        "throughput ratio embedded+policy / memory+bypass: {:.2}",
        throughput[0] / throughput[1]
    );
    println!(
        "p99 ratio memory+bypass / embedded+policy: {:.2}",
        p99(1) / p99(0)
    );
    Ok(())
}
