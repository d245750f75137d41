//! Benchmark: block reads per second that Hearth's poll path sustains against
//! 1,000 simulated controllers, as a ratio to a bare tokio-modbus read loop.
//!
//! - "hearth": one task per device runs [`DevicePoller::poll_once`] flat out,
//!   the very function the poller's scheduler calls at every tick: block
//!   reads through the shared [`ModbusGateway`] (link cache, per-device lock,
//!   timeouts), decoding per profile, and `IngestService::record_readings`, which
//!   publishes every reading on an [`InProcessBus`] and queues it on the
//!   batched `ReadingWriter`. Persistence is excluded: the writer's store is
//!   [`DiscardingReadingStore`], which drops every batch. The bus has no
//!   subscribers (fan-out is measured by `hearth-tests`' `live_latency`).
//! - "hearth read_once" (diagnostic): the same without recording, to show
//!   how the cost splits between the gateway and the live bus.
//! - "bare": one task per device with its own plain tokio-modbus context
//!   (`TcpStream::connect` + `set_nodelay` + `client::tcp::attach_slave`, as
//!   the gateway does) looping `read_holding_registers` /
//!   `read_input_registers` over the same blocks, no decoding, no bus.
//!
//! Both run against the same simulators (in this process, on loopback), with
//! the same concurrency, in interleaved rounds of the same run; the figure
//! that matters is the ratio. Two scenarios:
//! - "schedule": a profile of the 70 schedule registers (3109..=3178) as
//!   70 u16 points, planned as one block of 70 registers. That is the widest
//!   block the simulated ECL serves (it refuses unknown registers, so a
//!   123-register block is not possible against it).
//! - "ecl-comfort-310": the built-in profile's real plan, 4 blocks, 14 points.
//!
//! Runs with mimalloc, the allocator of the `hearth` binary.
//!
//! Needs about 5 file descriptors per device (listener, two ends of two
//! connections); it stops with a message if `ulimit -n` is too low.
//!
//! `cargo bench -p hearth-modbus --bench poller_throughput [-- --devices N --seconds S --rounds R
//!   --scenario schedule|ecl-comfort-310 --sides poll_once,bare,read_once]`

// Benchmark code: a failed setup step stops the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::{Parser, ValueEnum};
use hearth_domain::model::{
    Device, DeviceProfile, Endpoint, HistoryBucket, HistoryQuery, PasswordHash, PointDefinition,
    Reading, Tenant, TenantSlug, WriteLevel,
};
use hearth_domain::ports::{
    DeviceRepository, DocumentStore, PasswordHasher, ReadingStore, TenantRepository, TokenClaims,
    TokenError, TokenService,
};
use hearth_domain::services::{Adapters, DevicePoller, IngestService, LoginLimits, Services};
use hearth_domain::{DeviceId, PointKey, ProfileId, StoreError, SystemPrincipal, TenantId, UserId};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_modbus::blocks::{plan_reads, ReadBlock};
use hearth_modbus::point::modbus_points;
use hearth_modbus::simulator::{plant, SIMULATED_UNIT};
use hearth_modbus::{
    ecl_comfort_310, DataType, GatewayConfig, ModbusGateway, ModbusPoint, RegisterKind, Scale,
    Simulator, WordOrder,
};
use tokio::net::TcpStream;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::Slave;

/// The same allocator as the `hearth` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The persistence stand-in: accepts and forgets every batch, so the
/// benchmark measures the poll path up to the store and nothing of it.
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

/// Ports the poll path never touches; anything that does reach them is refused.
struct NotUsed;

impl PasswordHasher for NotUsed {
    fn hash(&self, _: &str) -> Result<PasswordHash, anyhow::Error> {
        Err(anyhow::anyhow!("not used by the benchmark"))
    }
    fn verify(&self, _: &str, _: &PasswordHash) -> bool {
        false
    }
    fn verify_dummy(&self, _: &str) {}
}

impl TokenService for NotUsed {
    fn issue(
        &self,
        _: UserId,
        _: TenantId,
        _: Option<hearth_domain::SessionFamily>,
    ) -> Result<(String, TokenClaims), anyhow::Error> {
        Err(anyhow::anyhow!("not used by the benchmark"))
    }
    fn verify(&self, _: &str) -> Result<TokenClaims, TokenError> {
        Err(TokenError::Invalid)
    }
}

/// Block reads per second of the poll path against bare tokio-modbus.
#[derive(Parser)]
struct Args {
    /// Simulated controllers.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Seconds per side per round.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Interleaved rounds per side.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only this scenario (default: both).
    #[arg(long, value_enum)]
    scenario: Option<Scenario>,
    /// Only these sides, comma-separated (to profile one side alone).
    #[arg(long, value_enum, value_delimiter = ',')]
    sides: Vec<SideName>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Scenario {
    #[value(name = "schedule")]
    Schedule,
    #[value(name = "ecl-comfort-310")]
    EclComfort310,
}

/// The sides in the order of `SIDES` in [`scenario`].
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum SideName {
    #[value(name = "poll_once")]
    PollOnce,
    #[value(name = "bare")]
    Bare,
    #[value(name = "read_once")]
    ReadOnce,
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

/// The 70 schedule registers as u16 points: one block of 70 registers.
fn schedule_profile() -> Result<DeviceProfile, Failure> {
    let registers = 7 * plant::SCHEDULE_REGISTERS_PER_DAY;
    let points = (0..registers)
        .map(|i| {
            Ok(PointDefinition {
                key: PointKey::new(format!("schedule_{i}"))?,
                name: format!("Schedule register {i}"),
                address: ModbusPoint {
                    register: RegisterKind::Holding,
                    address: plant::SCHEDULE_START + i,
                    data_type: DataType::U16,
                    word_order: WordOrder::HighFirst,
                    scale: Scale::new(1.0)?,
                    offset: 0.0,
                }
                .to_address(),
                unit: "HHMM".into(),
                writable: false,
                write_level: WriteLevel::Full,
                min: None,
                max: None,
                options: Vec::new(),
                plausible_min: None,
                plausible_max: None,
            })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(DeviceProfile {
        id: ProfileId::new("bench-schedule")?,
        tenant_id: None,
        name: "ECL schedule registers".into(),
        poll_interval_ms: 1_000,
        live_poll_interval_ms: None,
        points,
    })
}

/// The ingest use case over in-memory stores and the real policy (the
/// poller's targets come from it), and the stores, for seeding.
fn hearth(
    gateway: Arc<ModbusGateway>,
) -> Result<(IngestService, Arc<MemoryDirectory>, Arc<MemoryDocuments>), Failure> {
    let bus = Arc::new(InProcessBus::new());
    let directory = Arc::new(MemoryDirectory::new());
    let documents = Arc::new(MemoryDocuments::new());
    let services = Services::new(
        Adapters {
            directory: directory.clone(),
            documents: documents.clone(),
            readings: Arc::new(DiscardingReadingStore),
            live: bus.clone(),
            watch: bus,
            field: gateway,
            authorizer: Arc::new(
                hearth_auth::OsoAuthorizer::new().map_err(|e| format!("policy: {e}"))?,
            ),
            passwords: Arc::new(NotUsed),
            tokens: Arc::new(NotUsed),
        },
        LoginLimits::default(),
    );
    Ok((services.ingest, directory, documents))
}

#[derive(Default, Clone, Copy)]
struct Tally {
    reads: u64,
    readings: u64,
    errors: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.reads += other.reads;
        self.readings += other.readings;
        self.errors += other.errors;
    }
}

/// One side's state for one scenario, kept across rounds (connections stay open).
struct HearthSide {
    /// Block reads one poll makes (the planned ones: these scenarios serve
    /// every block, so no block is split).
    blocks_per_poll: u64,
    hearth: IngestService,
    pollers: Vec<DevicePoller>,
}

struct BareSide {
    blocks: Vec<(RegisterKind, u16, u16)>,
    contexts: Vec<Context>,
}

/// `record: false` stops after decoding (`read_once`), to show how the cost
/// splits between the gateway and recording.
async fn hearth_round(side: &mut HearthSide, seconds: f64, record: bool) -> Result<Tally, Failure> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(side.pollers.len());
    let blocks = side.blocks_per_poll;
    for mut poller in side.pollers.drain(..) {
        let hearth = side.hearth.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let polled = if record {
                    poller.poll_once(&hearth).await
                } else {
                    poller
                        .read_once()
                        .await
                        .map(|readings| std::hint::black_box(readings).len())
                };
                match polled {
                    Ok(readings) => {
                        tally.reads += blocks;
                        tally.readings += readings as u64;
                    }
                    Err(_) => tally.errors += 1,
                }
            }
            (poller, tally)
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let (poller, tally) = task.await?;
        side.pollers.push(poller);
        total.add(tally);
    }
    Ok(total)
}

async fn bare_round(side: &mut BareSide, seconds: f64) -> Result<Tally, Failure> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(side.contexts.len());
    for mut context in side.contexts.drain(..) {
        let blocks = side.blocks.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                for &(kind, address, count) in &blocks {
                    let answer = match kind {
                        RegisterKind::Holding => {
                            context.read_holding_registers(address, count).await
                        }
                        RegisterKind::Input => context.read_input_registers(address, count).await,
                    };
                    match answer {
                        Ok(Ok(words)) if words.len() == usize::from(count) => {
                            std::hint::black_box(words);
                            tally.reads += 1;
                        }
                        _ => tally.errors += 1,
                    }
                }
            }
            (context, tally)
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let (context, tally) = task.await?;
        side.contexts.push(context);
        total.add(tally);
    }
    Ok(total)
}

async fn connect_bare(addr: SocketAddr) -> Result<Context, Failure> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(tokio_modbus::client::tcp::attach_slave(
        stream,
        Slave(SIMULATED_UNIT),
    ))
}

fn describe(blocks: &[ReadBlock]) -> String {
    blocks
        .iter()
        .map(|b| {
            let kind = match b.kind {
                RegisterKind::Holding => "H",
                RegisterKind::Input => "I",
            };
            format!("{kind}{}+{}", b.address, b.count)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs one scenario: both sides against every simulated device.
async fn scenario(
    name: &str,
    profile: DeviceProfile,
    sim: &Simulator,
    gateway: &Arc<ModbusGateway>,
    seconds: f64,
    rounds: usize,
    chosen: &[SideName],
) -> Result<(), Failure> {
    let (ingest, directory, documents) = hearth(gateway.clone())?;
    let tenant = Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new(format!("bench-{name}"))?,
        name: format!("Bench {name}"),
    };
    directory.insert_tenant(&tenant).await?;
    documents.put_profile(&profile).await?;
    // The bare side reads exactly the blocks our reader plans.
    let planned = plan_reads(
        &modbus_points(&profile).map_err(|e| format!("profile: {e}"))?,
        gateway.config().max_gap,
    );
    let mut ours = HearthSide {
        hearth: ingest.clone(),
        pollers: Vec::with_capacity(sim.devices().len()),
        blocks_per_poll: planned.len() as u64,
    };
    let mut bare = BareSide {
        blocks: Vec::new(),
        contexts: Vec::with_capacity(sim.devices().len()),
    };
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
        if bare.blocks.is_empty() {
            bare.blocks = planned
                .iter()
                .map(|b| (b.kind, b.address, b.count))
                .collect();
        }
        bare.contexts.push(connect_bare(simulated.addr).await?);
    }
    // What the poller system principal may poll, as the running poller gets it.
    for target in ingest.poll_targets(&SystemPrincipal::poller()).await? {
        let poller = DevicePoller::new(&**gateway, target).map_err(|e| format!("profile: {e}"))?;
        ours.pollers.push(poller);
    }
    let plan = describe(&planned);
    let registers: u32 = bare.blocks.iter().map(|b| u32::from(b.2)).sum();
    println!(
        "\nscenario {name}: {} points per poll, {} block reads per poll ({plan}), {registers} registers",
        profile.points.len(),
        bare.blocks.len(),
    );

    // Warm-up: the gateway opens its connections, both sides fill caches.
    hearth_round(&mut ours, 1.0, true).await?;
    bare_round(&mut bare, 1.0).await?;

    const SIDES: [&str; 3] = ["hearth poll_once", "bare tokio-modbus", "hearth read_once"];
    // `--sides poll_once,bare` runs only those (to profile one side alone).
    let runs = |side: usize| {
        let name = [SideName::PollOnce, SideName::Bare, SideName::ReadOnce][side];
        chosen.is_empty() || chosen.contains(&name)
    };
    let mut totals = [Tally::default(); 3];
    for r in 0..rounds {
        // Rotate which side goes first, so drift over time favours none.
        for step in 0..SIDES.len() {
            let side = (step + r) % SIDES.len();
            if !runs(side) {
                continue;
            }
            let t = match side {
                0 => hearth_round(&mut ours, seconds, true).await?,
                1 => bare_round(&mut bare, seconds).await?,
                _ => hearth_round(&mut ours, seconds, false).await?,
            };
            println!(
                "  round {r} {:<18} {:>9.0} reads/s",
                SIDES[side],
                t.reads as f64 / seconds
            );
            totals[side].add(t);
        }
    }
    let secs = seconds * rounds as f64;
    let rate = |i: usize| totals[i].reads as f64 / secs;
    let ratio = |i: usize| {
        if rate(1) > 0.0 {
            rate(i) / rate(1)
        } else {
            0.0
        }
    };
    println!(
        "  hearth poll_once  (read, decode, publish): {:>9.0} block reads/s  {:>9.0} readings/s  ({} failed polls)",
        rate(0),
        totals[0].readings as f64 / secs,
        totals[0].errors
    );
    println!(
        "  bare tokio-modbus (read only)            : {:>9.0} block reads/s  ({} failed reads)",
        rate(1),
        totals[1].errors
    );
    println!(
        "  hearth read_once  (read, decode; no bus) : {:>9.0} block reads/s  ({} failed polls)",
        rate(2),
        totals[2].errors
    );
    println!(
        "  ratio hearth poll_once / bare: {:.2}   (read_once / bare: {:.2})",
        ratio(0),
        ratio(2)
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let (devices, seconds, rounds) = (args.devices, args.seconds, args.rounds);

    let needed = devices as u64 * 5 + 256;
    match open_files_limit() {
        Some(limit) if limit < needed => {
            return Err(format!(
                "{devices} devices need about {needed} open files but the limit is {limit}: \
                 run `ulimit -n {needed}` (or pass --devices) and try again"
            )
            .into())
        }
        _ => {}
    }
    let sim = Simulator::start(devices, 0, IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await
        .map_err(|e| format!("cannot start {devices} simulated devices: {e}"))?;
    // Generous timeouts: a request queued behind a thousand others on two
    // cores must not be mistaken for an unreachable device.
    let gateway = Arc::new(ModbusGateway::new(GatewayConfig {
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(600),
        ..GatewayConfig::default()
    }));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "poller throughput: {devices} simulated devices in-process on loopback, \
         one task per device per side, {rounds} rounds x {seconds} s per side, {cores} cores"
    );
    let wanted = |scenario: Scenario| args.scenario.is_none_or(|only| only == scenario);
    if wanted(Scenario::Schedule) {
        scenario(
            "schedule",
            schedule_profile()?,
            &sim,
            &gateway,
            seconds,
            rounds,
            &args.sides,
        )
        .await?;
    }
    if wanted(Scenario::EclComfort310) {
        scenario(
            "ecl-comfort-310",
            ecl_comfort_310(),
            &sim,
            &gateway,
            seconds,
            rounds,
            &args.sides,
        )
        .await?;
    }
    Ok(())
}
