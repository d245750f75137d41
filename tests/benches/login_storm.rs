//! Benchmark: does a storm of wrong logins disturb the device poller?
//!
//! Starts the real demo (`hearth` in-process: SQLite, embedded stores, oso,
//! OWASP-cost argon2id, nine simulated controllers over Modbus TCP on
//! loopback) with its default login limits, and counts the readings the
//! poller publishes on the live bus, per device poll. Two phases of the same
//! length, back to back:
//! - quiet: nothing but the poller (and a probe, below);
//! - storm: `--clients` HTTP clients, each bound to its own loopback source
//!   address (127.0.0.2, 127.0.0.3, ...: separate per-address throttles),
//!   each sending `--concurrency` wrong logins at a time without pause,
//!   alternating a real account (`admin@acme.test`) and a fresh unknown
//!   email per request (a new account key every time: only the per-address
//!   throttle and the hashing queue hold those back).
//!
//! Reported per phase: readings/s, polls, the longest gap between two polls
//! of one device, and the latency of a probe query (`me`, every 100 ms, with
//! a token taken before the storm) that shows whether the async workers stay
//! free. Then the ratio storm/quiet of readings/s (the baseline is the quiet
//! phase of the same run) and the login answers by code.
//!
//! `cargo bench -p hearth-tests --bench login_storm [-- --seconds S --clients N --concurrency C]`

// Benchmark code: a failed setup step stops the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use hearth_domain::services::LiveUpdate;
use hearth_domain::DeviceId;
use hearth_tests::{error_code, DemoServer};
use parking_lot::Mutex;
use serde_json::json;

/// The same allocator as the `hearth` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Latencies are recorded in µs from 1 µs to an hour (longer ones count as
/// an hour): a fixed range, since `saturating_record` clamps rather than grows.
const HOUR_MICROS: u64 = 3_600_000_000;

const LOGIN: &str =
    "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }";

/// A storm of wrong logins against the demo's poller (see the module docs).
#[derive(Parser)]
struct Args {
    /// Length of each phase, quiet and storm.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Storm clients, each on its own loopback address.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=253))]
    clients: u8,
    /// Wrong logins in flight per client.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One poll of one device, as seen on the bus.
struct Poll {
    at: Instant,
    device: DeviceId,
    readings: usize,
}

/// Login answers by `extensions.code`.
#[derive(Default)]
struct Answers {
    unauthenticated: AtomicU64,
    rate_limited: AtomicU64,
    other_code: AtomicU64,
    transport_error: AtomicU64,
}

struct Phase {
    name: &'static str,
    start: Instant,
    end: Instant,
}

struct PhaseReport {
    readings_per_s: f64,
    polls: usize,
    max_gap: Duration,
    /// Probe latencies in microseconds.
    probe: Histogram<u64>,
}

fn report(
    phase: &Phase,
    polls: &[Poll],
    probes: &[(Instant, Duration)],
) -> anyhow::Result<PhaseReport> {
    let within = |at: Instant| at >= phase.start && at < phase.end;
    let in_phase: Vec<&Poll> = polls.iter().filter(|p| within(p.at)).collect();
    let readings: usize = in_phase.iter().map(|p| p.readings).sum();
    let secs = (phase.end - phase.start).as_secs_f64();
    // Gaps between consecutive polls of a device, the later one in the phase.
    let mut last: HashMap<DeviceId, Instant> = HashMap::new();
    let mut max_gap = Duration::ZERO;
    for poll in polls {
        if let Some(previous) = last.insert(poll.device, poll.at) {
            if within(poll.at) {
                max_gap = max_gap.max(poll.at - previous);
            }
        }
    }
    let mut probe = Histogram::new_with_bounds(1, HOUR_MICROS, 3)?;
    for (_, d) in probes.iter().filter(|(at, _)| within(*at)) {
        probe.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
    Ok(PhaseReport {
        readings_per_s: readings as f64 / secs,
        polls: in_phase.len(),
        max_gap,
        probe,
    })
}

/// One storm client: wrong logins from its own source address until `stop`.
async fn storm_client(
    index: usize,
    concurrency: usize,
    url: String,
    stop: Arc<AtomicBool>,
    answers: Arc<Answers>,
) -> anyhow::Result<()> {
    let octets = u8::try_from(2 + index).context("at most 253 clients")?;
    let http = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, octets)))
        .timeout(Duration::from_secs(60))
        .build()?;
    let workers = (0..concurrency).map(|worker| {
        let (http, url, stop, answers) = (http.clone(), url.clone(), stop.clone(), answers.clone());
        async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let email = if n.is_multiple_of(2) {
                    "admin@acme.test".to_string()
                } else {
                    format!("storm-{index}-{worker}-{n}@nowhere.test")
                };
                let body =
                    json!({ "query": LOGIN, "variables": { "e": email, "p": "not-the-password" } });
                let answer = match http.post(&url).json(&body).send().await {
                    Ok(res) => res.json::<serde_json::Value>().await.ok(),
                    Err(_) => None,
                };
                let counter = match answer.as_ref().and_then(error_code).as_deref() {
                    Some("UNAUTHENTICATED") => &answers.unauthenticated,
                    Some("RATE_LIMITED") => &answers.rate_limited,
                    Some(_) => &answers.other_code,
                    None if answer.is_some() => &answers.other_code,
                    None => &answers.transport_error,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    futures::future::join_all(workers).await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seconds = args.seconds.max(1.0);
    let clients = usize::from(args.clients);
    let concurrency = usize::from(args.concurrency);
    let phase_length = Duration::from_secs_f64(seconds);

    let server = DemoServer::start().await?;
    let services = server.running.services.clone();
    let mut streams = Vec::new();
    // Each tenant's admin sees every device of it: together, the whole demo.
    for admin in ["admin@acme.test", "admin@globex.test"] {
        let token = server
            .login(admin)
            .await?
            .token
            .with_context(|| format!("{admin} logs in"))?;
        let principal = services.auth.authenticate(&token).await?;
        streams.push(services.live.subscribe_live(&principal, &[]).await?);
    }
    let polls: Arc<Mutex<Vec<Poll>>> = Arc::default();
    let collector = tokio::spawn({
        let polls = polls.clone();
        let mut deliveries = futures::stream::select_all(streams);
        async move {
            while let Some(delivery) = deliveries.next().await {
                let (device, readings) = match delivery {
                    LiveUpdate::Readings(batch) => match batch.first() {
                        Some(first) => (first.device_id, batch.len()),
                        None => continue,
                    },
                    LiveUpdate::Reading(r) => (r.device_id, 1),
                    _ => continue,
                };
                polls.lock().push(Poll {
                    at: Instant::now(),
                    device,
                    readings,
                });
            }
        }
    });

    // A probe with a token taken before the storm (logins may be refused later).
    let probe_client = server.login("admin@acme.test").await?;
    let probes: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let probing = Arc::new(AtomicBool::new(true));
    let probe = tokio::spawn({
        let (probes, probing) = (probes.clone(), probing.clone());
        async move {
            while probing.load(Ordering::Relaxed) {
                let began = Instant::now();
                let ok = probe_client
                    .data("{ me { role } }", json!({}))
                    .await
                    .is_ok();
                if ok {
                    probes.lock().push((began, began.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    // Warm-up: every device connected and polled a few times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet = Phase {
        name: "quiet",
        start: Instant::now(),
        end: Instant::now() + phase_length,
    };
    tokio::time::sleep_until(quiet.end.into()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Answers::default());
    let url = format!("http://{}/graphql", server.addr());
    let storm_start = Instant::now();
    let storm: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(storm_client(
                i,
                concurrency,
                url.clone(),
                stop.clone(),
                answers.clone(),
            ))
        })
        .collect();
    let storm_phase = Phase {
        name: "storm",
        start: storm_start,
        end: storm_start + phase_length,
    };
    tokio::time::sleep_until(storm_phase.end.into()).await;
    stop.store(true, Ordering::Relaxed);
    probing.store(false, Ordering::Relaxed);
    for client in storm {
        client.await??;
    }
    let drained = storm_start.elapsed();
    let _ = probe.await;
    collector.abort();

    let polls = std::mem::take(&mut *polls.lock());
    let probes = probes.lock().clone();
    let devices = polls
        .iter()
        .map(|p| p.device)
        .collect::<std::collections::HashSet<_>>();
    println!(
        "login_storm: {} devices polled; storm: {clients} clients (own loopback addresses) x {concurrency} concurrent wrong logins; {seconds} s per phase",
        devices.len()
    );
    let mut rates = Vec::new();
    for phase in [&quiet, &storm_phase] {
        let r = report(phase, &polls, &probes)?;
        println!(
            "{:>5}: {:8.1} readings/s, {:4} polls, longest gap between polls of a device {:6.3} s, probe `me` p50 {:7.2} ms max {:8.2} ms ({} probes)",
            phase.name,
            r.readings_per_s,
            r.polls,
            r.max_gap.as_secs_f64(),
            r.probe.value_at_quantile(0.50) as f64 / 1e3,
            r.probe.max() as f64 / 1e3,
            r.probe.len(),
        );
        rates.push(r.readings_per_s);
    }
    let ratio = if rates[0] > 0.0 {
        rates[1] / rates[0]
    } else {
        f64::NAN
    };
    println!("ratio storm/quiet (readings/s): {ratio:.3}");
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let total = load(&answers.unauthenticated)
        + load(&answers.rate_limited)
        + load(&answers.other_code)
        + load(&answers.transport_error);
    println!(
        "login answers ({total} in {:.1} s, storm drained): UNAUTHENTICATED {} (each one password check), RATE_LIMITED {}, other codes {}, transport errors {}",
        drained.as_secs_f64(),
        load(&answers.unauthenticated),
        load(&answers.rate_limited),
        load(&answers.other_code),
        load(&answers.transport_error),
    );
    server.running.stop().await;
    Ok(())
}
