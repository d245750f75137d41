//! Benchmark: what access control costs, each figure next to the same
//! operation with the check bypassed, measured side by side in one run
//! (interleaved rounds, alternating order, so the machine's noise hits all
//! sides alike; the figure that matters is the ratio):
//!
//! - `listing`: a scoped user (areas at three levels plus single devices of a
//!   realistic tree) lists the 10,000 devices of their scope through
//!   `DeviceService::list_devices` with the oso policy, on the embedded
//!   SQLite store and on hearth-inproc, against the same use case with an
//!   allow-all authorizer (bench-only stand-in), against the use case's
//!   scope steps alone (areas, tree, filter, repository call) and against
//!   the bare repository call with the same scope filter. Pages of 100, and all
//!   10,000 in pages of the most the use case serves (200).
//! - `fanout`: one live value fanned out to 1,000 subscribers of mixed
//!   scopes (all devices, areas, single devices, out of scope) through
//!   `LiveService::subscribe_live` and its scope filter, against the same
//!   bus subscriptions read without the filter, and against 1,000 plain
//!   tenant subscriptions (nobody scoped).
//! - `login`: successful logins/s through `AuthService::login` (argon2id at
//!   the configured OWASP cost, SQLite sessions) with the default throttle,
//!   with a throttle that never locks, and bare argon2 verification of the
//!   same password on the same number of blocking threads; then a
//!   wrong-password storm on locked accounts: `RATE_LIMITED` answers/s and
//!   how many of them hashed anything.
//!
//! The load average is printed before and after each part: the machine may
//! be shared, and only the ratios are comparable between runs.
//!
//! `cargo bench -p hearth-tests --bench authz_cost [-- --parts listing,fanout,login --stores sqlite,inproc
//!   --seconds S --rounds R --subscribers N --login-workers N --storm-seconds S]`

// Benchmark code: a failed setup step stops the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fanout;
mod listing;
mod login;
mod tree;

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use hearth_auth::JwtTokens;
use hearth_domain::ports::{
    Authorizer, Directory, DocumentStore, LiveBus, NoWatchInterest, PasswordHasher,
};
use hearth_domain::services::Adapters;
use hearth_inproc::readings::MemoryReadings;
use hearth_modbus::{GatewayConfig, ModbusGateway};

/// The same allocator as the `hearth` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Latencies are recorded in µs from 1 µs to an hour (longer ones count as
/// an hour): a fixed range, since `saturating_record` clamps rather than grows.
const HOUR_MICROS: u64 = 3_600_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Listing,
    Fanout,
    Login,
}

/// The relational stores the listing runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Inproc,
}

/// What access control costs (see the module docs).
#[derive(Parser)]
pub struct Args {
    /// Which parts to run.
    #[arg(long, value_delimiter = ',', default_value = "listing,fanout,login")]
    parts: Vec<Part>,
    /// Stores of the listing part.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,inproc")]
    stores: Vec<StoreKind>,
    /// Seconds per side per round (listing and fan-out).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Interleaved rounds per side.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Live subscribers in the fan-out.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Fan-out sides to measure (0: use case, 1: same channels without
    /// filter, 2: all on the tenant channel), e.g. one at a time to profile.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    fanout_sides: Vec<usize>,
    /// Concurrent logins (each its own account and client address).
    #[arg(long, default_value_t = 8)]
    login_workers: usize,
    /// Seconds per login side per round.
    #[arg(long, default_value_t = 4.0)]
    login_seconds: f64,
    /// Length of the wrong-password storm.
    #[arg(long, default_value_t = 3.0)]
    storm_seconds: f64,
    /// Concurrent wrong-password callers in the storm.
    #[arg(long, default_value_t = 64)]
    storm_workers: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The 1, 5 and 15 minute load averages, as the kernel reports them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// An empty latency histogram in microseconds, three significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, HOUR_MICROS, 3)?)
}

pub fn record(histogram: &mut Histogram<u64>, d: Duration) {
    histogram.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
}

/// A quantile of a microsecond histogram, in milliseconds.
pub fn ms_at(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1e3
}

/// The ports of one side: the stores and bus it was seeded in, and the
/// authorizer under test. Nothing here polls or writes history.
pub fn adapters(
    directory: Arc<dyn Directory>,
    documents: Arc<dyn DocumentStore>,
    live: Arc<dyn LiveBus>,
    authorizer: Arc<dyn Authorizer>,
    passwords: Arc<dyn PasswordHasher>,
) -> anyhow::Result<Adapters> {
    Ok(Adapters {
        directory,
        documents,
        readings: Arc::new(MemoryReadings::new()),
        live,
        watch: Arc::new(NoWatchInterest),
        field: Arc::new(ModbusGateway::new(GatewayConfig::default())),
        authorizer,
        passwords,
        tokens: Arc::new(JwtTokens::new(&[7u8; 64], chrono::Duration::minutes(15))?),
    })
}

/// The order of `sides` sides in round `round`: rotated each round, so drift
/// over the run favours none of them.
pub fn round_order(sides: usize, round: usize) -> Vec<usize> {
    (0..sides).map(|i| (i + round) % sides).collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "authz_cost: {cores} cores, {} rounds, load average at start {}",
        args.rounds,
        load_average()
    );
    for part in &args.parts {
        println!();
        match part {
            Part::Listing => listing::run(&args).await?,
            Part::Fanout => fanout::run(&args).await?,
            Part::Login => login::run(&args).await?,
        }
    }
    println!("\nload average at end {}", load_average());
    Ok(())
}
