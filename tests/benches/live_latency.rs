//! Benchmark: end-to-end latency from a register change in a simulated
//! controller to its receipt by live subscribers, p50/p99.
//!
//! Everything is real except the persistence store and the transport to the
//! subscriber: 1,000 simulated ECL controllers on loopback, the real
//! [`Poller`] (scheduler, gateway, decoding, `record_readings`), the
//! [`InProcessBus`], and 1,000 subscribers that each call
//! `LiveService::subscribe_live` with an Admin [`Principal`] of the one tenant
//! (empty device list: every device in scope), through the oso policy, over
//! an in-memory directory. Not through the GraphQL WebSocket: a thousand
//! WebSocket clients each receiving every event of the tenant as JSON would
//! measure serialisation and the client more than the live path. Readings
//! are discarded instead of persisted unless `--persist` is given (then the
//! embedded redb store takes them, competing for the same cores).
//!
//! The profile is the built-in ECL Comfort 310 with its poll interval set by
//! `--interval-ms` (default 1000 ms, as built in) and its live interval, the
//! interval of devices somebody watches through a device subscription, by
//! `--live-interval-ms` (default 50 ms; built in: 250 ms; 0: none). With
//! `--watch K` the subscribers watch devices and those are polled at the live
//! interval; with `--watch 0` they watch the whole tenant, which watches no
//! device in particular, so every device is polled at `--interval-ms`.
//! A marker task writes a fresh value every `--mark-every-ms` into the
//! holding register of `schedule_mon_start` (3109) of the next device, round
//! robin, straight into the simulator (`DeviceHandle::set_holding`), and
//! notes the instant. Each subscriber notes the instant it first receives
//! that value. Reported:
//! - change -> receipt: write to receipt. Includes the wait for the device's
//!   next poll, uniform over one interval, so its p99 cannot be below about
//!   0.99 x the (live) poll interval whatever the rest costs.
//! - poll -> receipt: the reading's timestamp (taken when the poll starts)
//!   to receipt; the cost of reading, decoding, publishing and fan-out.
//! - markers a subscriber never received (it lagged and the bus dropped
//!   events for it) and the number of `Lagged` notices.
//!
//! `cargo bench -p hearth-tests --bench live_latency [-- --devices N --subscribers N
//!   --interval-ms MS --live-interval-ms MS --mark-every-ms MS --seconds S --watch K --persist]`

// Benchmark code: a failed setup step stops the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use hearth_auth::{Argon2Hasher, JwtTokens, OsoAuthorizer};
use hearth_domain::model::{
    Device, DeviceScope, EmailAddress, Endpoint, HistoryBucket, HistoryQuery, Membership, Reading,
    Role, Tenant, TenantSlug, User,
};
use hearth_domain::ports::{Directory, DocumentStore, ReadingStore};
use hearth_domain::services::{Adapters, LiveUpdate, LoginLimits, Poller, PollerConfig, Services};
use hearth_domain::{DeviceId, PointKey, Principal, StoreError, TenantId, UserId};
use hearth_embedded::EmbeddedReadings;
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_modbus::simulator::{plant, SIMULATED_UNIT};
use hearth_modbus::{ecl_comfort_310, GatewayConfig, ModbusGateway, Simulator};

/// The same allocator as the `hearth` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Latencies are recorded in µs from 1 µs to an hour (longer ones count as
/// an hour): a fixed range, since `saturating_record` clamps rather than grows.
const HOUR_MICROS: u64 = 3_600_000_000;

/// Marker values start here, far above any valid HHMM the register holds.
const MARK_BASE: u16 = 10_000;
const MARKER_POINT: &str = "schedule_mon_start";

/// The persistence stand-in unless `--persist`: accepts and forgets.
struct DiscardingReadingStore;

#[async_trait]
impl ReadingStore for DiscardingReadingStore {
    async fn append(&self, _batch: &[Reading]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn history(&self, _: &HistoryQuery) -> Result<Vec<HistoryBucket>, StoreError> {
        Ok(Vec::new())
    }
}

/// Change-to-receipt latency of live values (see the module docs).
#[derive(Parser)]
struct Args {
    /// Simulated controllers.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Live subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// The profile's poll interval.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u32,
    /// The profile's live poll interval (0: none).
    #[arg(long, default_value_t = 50)]
    live_interval_ms: u32,
    /// Time between two markers.
    #[arg(long, default_value_t = 10.0)]
    mark_every_ms: f64,
    /// How long markers are written.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Devices each subscriber watches (0: the whole tenant).
    #[arg(long, default_value_t = 0)]
    watch: usize,
    /// Persist readings in the embedded redb store instead of discarding them.
    #[arg(long)]
    persist: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Latencies in microseconds, to three significant digits.
fn latencies() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, HOUR_MICROS, 3)?)
}

fn record(histogram: &mut Histogram<u64>, d: Duration) {
    histogram.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1e3
}

/// One marker as a subscriber first saw it.
struct Receipt {
    device: DeviceId,
    value: u16,
    at: Instant,
    /// Poll start to receipt, wall clock.
    since_poll: Duration,
}

#[derive(Default)]
struct SubscriberLog {
    receipts: Vec<Receipt>,
    lagged_notices: u64,
    lagged_events: u64,
}

/// The soft limit on open files, from `/proc/self/limits` (Linux only).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (devices, subscribers, interval_ms, seconds) = (
        args.devices,
        args.subscribers,
        args.interval_ms,
        args.seconds,
    );
    // 0: no live interval (devices always polled every --interval-ms).
    let live_interval_ms = Some(args.live_interval_ms).filter(|ms| *ms > 0);
    let mark_every = Duration::from_secs_f64(args.mark_every_ms / 1e3);
    // 0: every subscriber watches the whole tenant (an empty device list);
    // K: subscriber i watches devices i*K .. i*K+K-1 (mod devices), like an
    // operator's screen showing a few plants.
    let watch = args.watch;
    let persist = args.persist;
    let interval = Duration::from_millis(u64::from(interval_ms));

    let needed = devices as u64 * 3 + 256;
    if let Some(limit) = open_files_limit().filter(|l| *l < needed) {
        anyhow::bail!(
            "{devices} devices need about {needed} open files but the limit is {limit}: \
             run `ulimit -n {needed}` (or pass --devices) and try again"
        );
    }
    let sim = Simulator::start(devices, 0, IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await
        .with_context(|| format!("cannot start {devices} simulated devices"))?;

    let dir = tempfile::tempdir()?;
    let readings: Arc<dyn ReadingStore> = if persist {
        Arc::new(EmbeddedReadings::open(dir.path())?)
    } else {
        Arc::new(DiscardingReadingStore)
    };
    let gateway = Arc::new(ModbusGateway::new(GatewayConfig::default()));
    // The bench seeds through the stores it built itself; the services
    // take them over for everything else.
    let directory: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
    let documents: Arc<dyn DocumentStore> = Arc::new(MemoryDocuments::new());
    let bus = Arc::new(InProcessBus::new());
    let hearth = Services::new(
        Adapters {
            directory: directory.clone(),
            documents: documents.clone(),
            readings,
            live: bus.clone(),
            watch: bus,
            field: gateway.clone(),
            authorizer: Arc::new(OsoAuthorizer::new()?),
            passwords: Arc::new(Argon2Hasher::fast_for_tests()?),
            tokens: Arc::new(JwtTokens::new(&[7u8; 64], chrono::Duration::hours(1))?),
        },
        LoginLimits::default(),
    );

    let tenant = Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new("bench")?,
        name: "Bench".into(),
    };
    directory.insert_tenant(&tenant).await?;
    let profile = hearth_domain::model::DeviceProfile {
        poll_interval_ms: interval_ms,
        live_poll_interval_ms: live_interval_ms,
        ..ecl_comfort_310()
    };
    // The poller skips devices of an invalid profile; say why instead.
    profile.validate().with_context(|| {
        format!("--interval-ms {interval_ms} --live-interval-ms {live_interval_ms:?} make the profile invalid")
    })?;
    documents.put_profile(&profile).await?;
    let user = User {
        id: UserId::new(),
        email: EmailAddress::new("operator@bench.test")?,
        display_name: "Operator".into(),
        password_hash: None,
        disabled: false,
        tokens_valid_from: None,
    };
    directory.insert_user(&user).await?;
    let membership = Membership {
        user_id: user.id,
        tenant_id: tenant.id,
        role: Role::Admin,
        scope: DeviceScope::All,
    };
    directory.upsert_membership(&membership).await?;
    let mut ids = Vec::with_capacity(devices);
    for (i, simulated) in sim.devices().iter().enumerate() {
        let device = Device {
            id: DeviceId::new(),
            tenant_id: tenant.id,
            area_id: None,
            name: format!("ECL {i:04}"),
            profile_id: profile.id.clone(),
            endpoint: Endpoint::new(
                simulated.addr.ip().to_string(),
                simulated.addr.port(),
                u32::from(SIMULATED_UNIT),
            )?,
        };
        directory.insert_device(&device).await?;
        ids.push(device.id);
    }
    let principal = Principal {
        user_id: user.id,
        email: user.email.clone(),
        tenant_id: tenant.id,
        role: membership.role,
        scope: membership.scope.clone(),
    };

    // Subscribers first, so none misses the first polls.
    let marker = PointKey::new(MARKER_POINT)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(subscribers);
    let mut watchers: HashMap<DeviceId, usize> = HashMap::new();
    for s in 0..subscribers {
        let watched: Vec<DeviceId> = (0..watch)
            .filter_map(|k| ids.get((s * watch + k) % devices).copied())
            .collect();
        for d in &watched {
            *watchers.entry(*d).or_default() += 1;
        }
        let mut stream = hearth.live.subscribe_live(&principal, &watched).await?;
        let (marker, stop) = (marker.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut log = SubscriberLog::default();
            let mut last: HashMap<DeviceId, u16> = HashMap::new();
            // Events flow every poll interval, so the flag is seen promptly.
            while let Some(update) = stream.next().await {
                let batch: Vec<Reading> = match update {
                    LiveUpdate::Reading(r) => vec![r],
                    LiveUpdate::Readings(batch) => batch
                        .iter()
                        .filter(|r| r.point == marker)
                        .cloned()
                        .collect(),
                    LiveUpdate::Lagged(n) => {
                        log.lagged_notices += 1;
                        log.lagged_events += n;
                        Vec::new()
                    }
                    LiveUpdate::Status(_) | LiveUpdate::Alarm(_) => Vec::new(),
                };
                for r in batch {
                    if r.point == marker && r.value >= f64::from(MARK_BASE) {
                        let value = r.value as u16;
                        if last.insert(r.device_id, value) != Some(value) {
                            let since_poll =
                                (Utc::now() - r.timestamp).to_std().unwrap_or_default();
                            log.receipts.push(Receipt {
                                device: r.device_id,
                                value,
                                at: Instant::now(),
                                since_poll,
                            });
                        }
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            log
        }));
    }

    let poller = Poller::spawn_with(
        hearth.ingest.clone(),
        gateway,
        PollerConfig {
            max_start_offset: interval,
            ..PollerConfig::default()
        },
    );
    // Let every device be polled a few times and the subscribers settle.
    tokio::time::sleep(interval * 5 + Duration::from_secs(1)).await;

    anyhow::ensure!(
        poller.polled_devices() == devices,
        "only {} of {devices} devices are polled",
        poller.polled_devices()
    );

    // Mark: one device at a time, round robin, a fresh value each time.
    let handles: Vec<_> = sim.devices().iter().map(|d| d.handle.clone()).collect();
    let mut writes: HashMap<(DeviceId, u16), (Instant, DateTime<Utc>)> = HashMap::new();
    let marking_until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tick = tokio::time::interval(mark_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_value = MARK_BASE;
    let mut i = 0usize;
    while Instant::now() < marking_until && next_value < u16::MAX {
        tick.tick().await;
        let (Some(handle), Some(device)) = (handles.get(i % devices), ids.get(i % devices)) else {
            break;
        };
        let now = (Instant::now(), Utc::now());
        anyhow::ensure!(
            handle.set_holding(plant::SCHEDULE_START, next_value),
            "the simulator has no register {}",
            plant::SCHEDULE_START
        );
        writes.insert((*device, next_value), now);
        next_value += 1;
        i += 1;
    }
    // Every marker gets at least two polls' time to arrive.
    tokio::time::sleep(interval * 3 + Duration::from_millis(500)).await;
    let polled_devices = poller.polled_devices();
    stop.store(true, Ordering::Relaxed);
    // Events keep flowing until the poller stops, so every subscriber sees the flag.
    tokio::time::sleep(interval * 2).await;
    poller.stop().await;

    let mut change_to_receipt = latencies()?;
    let mut poll_to_receipt = latencies()?;
    let (mut lagged_notices, mut lagged_events, mut lagging_subscribers) = (0u64, 0u64, 0usize);
    let mut received = 0usize;
    for task in tasks {
        // A subscriber still waiting after the poller stopped gets no more
        // events; give up on it rather than hang.
        let log = match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(joined) => joined?,
            Err(_) => continue,
        };
        lagged_notices += log.lagged_notices;
        lagged_events += log.lagged_events;
        if log.lagged_notices > 0 {
            lagging_subscribers += 1;
        }
        for receipt in log.receipts {
            if let Some((written, _)) = writes.get(&(receipt.device, receipt.value)) {
                received += 1;
                record(
                    &mut change_to_receipt,
                    receipt.at.saturating_duration_since(*written),
                );
                record(&mut poll_to_receipt, receipt.since_poll);
            }
        }
    }
    let expected: usize = if watch == 0 {
        writes.len() * subscribers
    } else {
        writes
            .keys()
            .map(|(d, _)| watchers.get(d).copied().unwrap_or(0))
            .sum()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Devices a device subscription names are polled at the live interval.
    let effective_ms = match live_interval_ms {
        Some(live) if watch > 0 => live,
        _ => interval_ms,
    };
    println!(
        "live latency: {devices} devices ({polled_devices} polled), {subscribers} subscribers via LiveService::subscribe_live \
         watching {}, poll interval {interval_ms} ms (live {live_interval_ms:?} ms; watched devices polled every {effective_ms} ms), {} markers ({:.0} ms apart) over {seconds} s, persistence {}, {cores} cores",
        if watch == 0 { "every device".to_string() } else { format!("{watch} devices each") },
        writes.len(),
        mark_every.as_secs_f64() * 1e3,
        if persist { "embedded redb" } else { "discarded" }
    );
    println!(
        "live events: {:.0}/s published, {:.0}/s delivered if nobody lags",
        devices as f64 * profile.points.len() as f64 * 1e3 / f64::from(effective_ms.max(1)),
        devices as f64 * profile.points.len() as f64 * 1e3 / f64::from(effective_ms.max(1))
            * if watch == 0 {
                subscribers as f64
            } else {
                (subscribers * watch) as f64 / devices as f64
            }
    );
    for (name, samples) in [
        ("change -> receipt", &change_to_receipt),
        ("poll   -> receipt", &poll_to_receipt),
    ] {
        println!(
            "{name}: p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  ({} samples)",
            ms(samples.value_at_quantile(0.50)),
            ms(samples.value_at_quantile(0.99)),
            ms(samples.max()),
            samples.len()
        );
    }
    println!(
        "received {received} of {expected} marker deliveries ({:.1} %); {lagging_subscribers} subscribers lagged, \
         {lagged_notices} Lagged notices, {lagged_events} events dropped",
        if expected > 0 {
            received as f64 * 100.0 / expected as f64
        } else {
            0.0
        }
    );
    Ok(())
}
