//! Part `fanout`: one live value of one device published on the in-process
//! bus and delivered to 1,000 subscribers of mixed scopes. Three sides, each
//! on a bus of its own so that they never share a delivery:
//! - "use case": `LiveService::subscribe_live` with the oso policy, which
//!   picks the bus channels from the caller's scope (the tenant channel for
//!   unscoped members, one device channel per device in scope otherwise)
//!   and passes every delivery through its scope filter;
//! - "bus, same channels, no filter": the very subscriptions the use case
//!   opens, taken from the bus directly, read without the filter;
//! - "bus, all on the tenant channel": nobody scoped, every subscriber gets
//!   every value (what fan-out would cost without device scopes at all).
//!
//! Each subscriber checks every value it gets against the scope rule; a
//! value outside its scope stops the bench.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::stream::{BoxStream, StreamExt};
use hearth_auth::{Argon2Hasher, OsoAuthorizer};
use hearth_domain::model::{AreaTree, Device, DeviceScope, Quality, Reading, Role};
use hearth_domain::ports::{Delivery, Directory, LiveBus, LiveEvent};
use hearth_domain::services::{covers_tenant, device_in_scope, LiveUpdate, LoginLimits, Services};
use hearth_domain::{DeviceId, PointKey, Principal, TenantId};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use tokio::sync::Notify;

use crate::tree::Tree;
use crate::{adapters, histogram, load_average, ms_at, record, round_order, Args};

/// Devices per district: 125 districts, 1,000 devices.
const PER_DISTRICT: usize = 8;

/// One subscriber: who it is and what it opens.
struct Subscriber {
    principal: Principal,
    /// The device list it subscribes with (empty: its whole scope).
    watch: Vec<DeviceId>,
    /// Devices whose values it may get; `None`: every device.
    allowed: Option<Arc<HashSet<DeviceId>>>,
    /// Whether the published device's values reach it.
    receives: bool,
    kind: &'static str,
}

/// A mix of scopes, in tenths: 2/10 Admins, 1/10 Full on all devices,
/// 3/10 scoped to areas at every level (the root area, which covers all
/// devices but through the scope's area grant, included) (some with a second area elsewhere),
/// 2/10 scoped to single devices (one with an area too), and 2/10 out of
/// scope: the region next door, or the sibling district plus single devices.
/// Every second Admin and district member subscribes with an explicit device
/// list (an operator's device page) instead of their whole scope.
fn subscribers(tree: &Tree, n: usize, published: DeviceId) -> anyhow::Result<Vec<Subscriber>> {
    let area_tree = AreaTree::new(&tree.areas);
    let elsewhere = |k: usize| tree.in_district(4, k % 5, 4)[k % 8].id;
    let roles = [Role::Full, Role::Limited, Role::Basic, Role::ReadOnly];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let odd = (i / 10) % 2 == 1;
        let role = roles[(i / 10) % roles.len()];
        let restricted = |areas, devices| DeviceScope::Restricted { areas, devices };
        let (kind, role, scope, watch) = match i % 10 {
            0 | 1 => (
                "admin",
                Role::Admin,
                DeviceScope::All,
                if odd && i % 10 == 0 {
                    vec![published, elsewhere(i), elsewhere(i + 1)]
                } else {
                    Vec::new()
                },
            ),
            2 => (
                "full, all devices",
                Role::Full,
                DeviceScope::All,
                Vec::new(),
            ),
            3 => (
                if odd { "area: root" } else { "area: region" },
                role,
                restricted(
                    vec![if odd { tree.root } else { tree.region(0) }],
                    Vec::new(),
                ),
                Vec::new(),
            ),
            4 => (
                "area: city + district",
                role,
                restricted(vec![tree.city(0, 0), tree.district(2, 1, 1)], Vec::new()),
                Vec::new(),
            ),
            5 => (
                "area: district",
                role,
                restricted(vec![tree.district(0, 0, 0)], Vec::new()),
                if odd { vec![published] } else { Vec::new() },
            ),
            6 => (
                "single devices",
                role,
                restricted(Vec::new(), vec![published, elsewhere(i), elsewhere(i + 3)]),
                Vec::new(),
            ),
            7 => (
                "area + single device",
                role,
                restricted(vec![tree.district(1, 0, 0)], vec![published]),
                Vec::new(),
            ),
            8 => (
                "out of scope: region",
                role,
                restricted(vec![tree.region(1)], Vec::new()),
                Vec::new(),
            ),
            _ => (
                "out of scope: sibling",
                role,
                restricted(
                    vec![tree.district(0, 0, 1)],
                    vec![elsewhere(i), elsewhere(i + 2)],
                ),
                Vec::new(),
            ),
        };
        let in_scope = |d: &Device| {
            let path = d.area_id.map(|a| area_tree.path(a)).unwrap_or_default();
            device_in_scope(role, &scope, d.id, &path)
        };
        let mut allowed: HashSet<DeviceId> = tree
            .devices
            .iter()
            .filter(|d| in_scope(d))
            .map(|d| d.id)
            .collect();
        if !watch.is_empty() {
            allowed.retain(|d| watch.contains(d));
        }
        let receives = allowed.contains(&published);
        let unlimited = watch.is_empty() && covers_tenant(role, &scope);
        out.push(Subscriber {
            principal: tree.principal(i, role, scope)?,
            watch,
            allowed: (!unlimited).then(|| Arc::new(allowed)),
            receives,
            kind,
        });
    }
    Ok(out)
}

/// Deliveries counted across one side's subscribers.
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    /// `received` after the current publish has reached everyone.
    target: AtomicU64,
    /// Values outside the receiving subscriber's scope.
    leaked: AtomicU64,
    done: Notify,
}

/// One side: its bus, its subscriber tasks and their progress.
struct Side {
    name: &'static str,
    bus: Arc<InProcessBus>,
    per_publish: u64,
    progress: Arc<Progress>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Kept alive: the services' background writers belong to them.
    _services: Option<Services>,
}

impl Side {
    fn spawn(
        &mut self,
        stream: BoxStream<'static, Option<Reading>>,
        allowed: Option<Arc<HashSet<DeviceId>>>,
    ) {
        let progress = self.progress.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut stream = stream;
            while let Some(item) = stream.next().await {
                let Some(reading) = item else { continue };
                if allowed
                    .as_ref()
                    .is_some_and(|a| !a.contains(&reading.device_id))
                {
                    progress.leaked.fetch_add(1, Ordering::Relaxed);
                }
                let n = progress.received.fetch_add(1, Ordering::AcqRel) + 1;
                if n == progress.target.load(Ordering::Acquire) {
                    progress.done.notify_one();
                }
            }
        }));
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn use_case_reading(update: LiveUpdate) -> Option<Reading> {
    match update {
        LiveUpdate::Reading(r) => Some(r),
        _ => None,
    }
}

fn bus_reading(delivery: Delivery) -> Option<Reading> {
    match delivery {
        Delivery::Event(LiveEvent::Reading(r)) => Some(r),
        _ => None,
    }
}

/// What the use case subscribes `s` to, taken from the bus directly.
fn same_channels(
    bus: &InProcessBus,
    tenant: TenantId,
    s: &Subscriber,
) -> BoxStream<'static, Delivery> {
    match &s.allowed {
        None => bus.subscribe(tenant),
        Some(allowed) => {
            let ids: Vec<DeviceId> = allowed.iter().copied().collect();
            bus.subscribe_devices(tenant, &ids)
        }
    }
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    println!("fanout: load average before {}", load_average());
    let tree = Tree::new(PER_DISTRICT)?;
    let published = tree.in_district(0, 0, 0)[0].id;
    let tenant = tree.tenant.id;
    let subscribers = subscribers(&tree, args.subscribers, published)?;
    let reaching = subscribers.iter().filter(|s| s.receives).count() as u64;

    let directory: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
    let documents = Arc::new(MemoryDocuments::new());
    let seeded = Arc::new(InProcessBus::new());
    tree.seed(directory.as_ref(), documents.as_ref(), seeded.as_ref())
        .await?;
    let mut sides = Vec::new();
    for name in [
        "use case (scope filter)",
        "bus, same channels, no filter",
        "bus, all on tenant channel",
    ] {
        sides.push(Side {
            name,
            bus: Arc::new(InProcessBus::new()),
            per_publish: if sides.len() == 2 {
                subscribers.len() as u64
            } else {
                reaching
            },
            progress: Arc::default(),
            tasks: Vec::new(),
            _services: None,
        });
    }
    let opening = Instant::now();
    let services = Services::new(
        adapters(
            directory,
            documents,
            sides[0].bus.clone(),
            Arc::new(OsoAuthorizer::new()?),
            Arc::new(Argon2Hasher::fast_for_tests()?),
        )?,
        LoginLimits::default(),
    );
    let mut receivers = 0usize;
    for s in &subscribers {
        let stream = services
            .live
            .subscribe_live(&s.principal, &s.watch)
            .await
            .with_context(|| format!("subscribing a {} member", s.kind))?;
        sides[0].spawn(stream.map(use_case_reading).boxed(), s.allowed.clone());
        receivers += s.allowed.as_ref().map_or(1, |a| a.len());
    }
    let use_case_opening = opening.elapsed();
    sides[0]._services = Some(services);
    for s in &subscribers {
        let stream = same_channels(&sides[1].bus, tenant, s);
        sides[1].spawn(stream.map(bus_reading).boxed(), s.allowed.clone());
        let stream = sides[2].bus.subscribe(tenant);
        sides[2].spawn(stream.map(bus_reading).boxed(), None);
    }
    let mut kinds: Vec<(&str, usize, bool)> = Vec::new();
    for s in &subscribers {
        match kinds.iter_mut().find(|(k, _, _)| *k == s.kind) {
            Some((_, n, _)) => *n += 1,
            None => kinds.push((s.kind, 1, s.receives)),
        }
    }
    println!(
        "fanout: {} devices, {} subscribers ({}), {reaching} of them in scope of the published device; \
         {receivers} bus receivers; opening them through the use case took {:.2} s; \
         {} rounds x {} s per side, one value published at a time, each until all got it",
        tree.devices.len(),
        subscribers.len(),
        kinds
            .iter()
            .map(|(k, n, r)| format!("{n} {k}{}", if *r { "" } else { " (not reached)" }))
            .collect::<Vec<_>>()
            .join(", "),
        use_case_opening.as_secs_f64(),
        args.rounds,
        args.seconds
    );

    let point = PointKey::new("flow_temperature")?;
    let budget = Duration::from_secs_f64(args.seconds);
    let mut latencies = Vec::new();
    let mut busy = vec![Duration::ZERO; sides.len()];
    let mut published_values = vec![0u64; sides.len()];
    for _ in &sides {
        latencies.push(histogram()?);
    }
    let mut value = 0u64;
    // Round 0 is a warm-up, not counted.
    for round in 0..=args.rounds {
        for i in round_order(sides.len(), round) {
            if !args.fanout_sides.contains(&i) {
                continue;
            }
            let side = &sides[i];
            let round_budget = if round == 0 {
                Duration::from_millis(300)
            } else {
                budget
            };
            let started = Instant::now();
            while started.elapsed() < round_budget {
                value += 1;
                let target = side.progress.received.load(Ordering::Acquire) + side.per_publish;
                side.progress.target.store(target, Ordering::Release);
                let began = Instant::now();
                side.bus.publish(LiveEvent::Reading(Reading {
                    tenant_id: tenant,
                    device_id: published,
                    point: point.clone(),
                    timestamp: chrono::Utc::now(),
                    value: value as f64,
                    quality: Quality::Good,
                }));
                tokio::time::timeout(Duration::from_secs(10), side.progress.done.notified())
                    .await
                    .with_context(|| {
                        format!(
                            "{}: {} of {target} deliveries after 10 s",
                            side.name,
                            side.progress.received.load(Ordering::Acquire)
                        )
                    })?;
                let took = began.elapsed();
                if round > 0 {
                    record(&mut latencies[i], took);
                    busy[i] += took;
                    published_values[i] += 1;
                }
            }
        }
    }
    println!(
        "{:<30} {:>9} {:>10} {:>14} {:>13} {:>13}",
        "side", "values", "per value", "deliveries/s", "ns/delivery", "p50/p99 ms"
    );
    let mut per_delivery = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        let deliveries = published_values[i] * side.per_publish;
        let ns = busy[i].as_secs_f64() * 1e9 / deliveries.max(1) as f64;
        per_delivery.push(ns);
        println!(
            "{:<30} {:>9} {:>10} {:>14.0} {:>13.0} {:>6.3}/{:.3}",
            side.name,
            published_values[i],
            side.per_publish,
            1e9 / ns,
            ns,
            ms_at(&latencies[i], 0.50),
            ms_at(&latencies[i], 0.99),
        );
        let leaked = side.progress.leaked.load(Ordering::Relaxed);
        anyhow::ensure!(
            leaked == 0,
            "{}: {leaked} values outside a scope",
            side.name
        );
    }
    if args.fanout_sides.len() < sides.len() {
        return Ok(());
    }
    println!(
        "fanout: ratio per delivery use case / same channels without filter {:.3} (aim <= 1.2); \
         use case / all on tenant channel {:.3}; p99 use case / no filter {:.3}",
        per_delivery[0] / per_delivery[1],
        per_delivery[0] / per_delivery[2],
        ms_at(&latencies[0], 0.99) / ms_at(&latencies[1], 0.99),
    );
    println!("fanout: no subscriber got a value outside its scope");
    println!("fanout: load average after {}", load_average());
    Ok(())
}
