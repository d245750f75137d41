//! Part `listing`: a scoped user lists the 10,000 devices of their scope
//! (of 12,500 in the tenant), through the use case with the oso policy,
//! through the same use case with the allow-all stand-in, through the
//! use case's scope steps alone (areas read, tree built, filter derived,
//! repository called), and through the bare repository call with the same
//! scope filter. The use case also builds each device's view (point
//! definitions with latest values from the bus): the difference between
//! the allow-all side and the scope steps is that, not access control.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use hearth_auth::{Argon2Hasher, OsoAuthorizer};
use hearth_domain::model::{AreaTree, DeviceScope, Role};
use hearth_domain::ports::{Authorizer, DeviceFilter, Directory, DocumentStore, LiveBus};
use hearth_domain::services::{
    device_in_scope, scope_filter, DeviceQuery, DeviceService, LoginLimits, Services,
};
use hearth_domain::{DeviceId, Principal};
use hearth_embedded::EmbeddedDocuments;
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_sql::SqlDirectory;
use hearth_tests::AllowAllAuthorizer;

use crate::tree::{Tree, FANOUT};
use crate::{adapters, histogram, load_average, ms_at, record, round_order, Args, StoreKind};

/// Devices per district: 125 districts, 12,500 devices.
const PER_DISTRICT: usize = 100;
/// What the scoped user sees (see [`scope`]).
const IN_SCOPE: u64 = 10_000;
const PAGE: u64 = 100;

/// Three whole regions (7,500 devices), four cities of the fourth region
/// (2,000), four districts of its fifth city (400), and four single devices
/// in each district of the fifth region (100): 11 area grants at three
/// levels and 100 device grants, 10,000 devices.
fn scope(tree: &Tree) -> DeviceScope {
    let mut areas: Vec<_> = (0..3).map(|r| tree.region(r)).collect();
    areas.extend((0..4).map(|c| tree.city(3, c)));
    areas.extend((0..4).map(|d| tree.district(3, 4, d)));
    let devices = (0..FANOUT)
        .flat_map(|c| (0..FANOUT).map(move |d| (c, d)))
        .flat_map(|(c, d)| tree.in_district(4, c, d)[..4].iter().map(|dev| dev.id))
        .collect();
    DeviceScope::Restricted { areas, devices }
}

#[derive(Clone, Copy)]
enum Side {
    Policy,
    AllowAll,
    /// The use case's access steps without the policy and the views: the
    /// tenant's areas read, the tree built, the scope filter derived, then
    /// the repository call.
    ScopeAndRepository,
    Repository,
}

impl Side {
    const ALL: [Side; 4] = [
        Side::Policy,
        Side::AllowAll,
        Side::ScopeAndRepository,
        Side::Repository,
    ];

    fn name(self) -> &'static str {
        match self {
            Side::Policy => "use case + oso policy",
            Side::AllowAll => "use case + allow-all",
            Side::ScopeAndRepository => "areas+filter+repository",
            Side::Repository => "repository, same filter",
        }
    }
}

#[derive(Clone, Copy)]
enum Workload {
    /// One page of 100, walking the 100 pages in turn.
    Page,
    /// All 10,000, in pages of the most the use case serves.
    All,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Page => "page of 100",
            Workload::All => "all 10,000",
        }
    }
}

/// One store with both services over it.
struct Store {
    name: &'static str,
    directory: Arc<dyn Directory>,
    with_policy: DeviceService,
    allow_all: DeviceService,
    /// Kept alive: the services' background writers belong to them.
    _services: [Services; 2],
}

impl Store {
    async fn new(
        name: &'static str,
        directory: Arc<dyn Directory>,
        documents: Arc<dyn DocumentStore>,
        tree: &Tree,
    ) -> anyhow::Result<Self> {
        let live: Arc<dyn LiveBus> = Arc::new(InProcessBus::new());
        let seeding = Instant::now();
        tree.seed(directory.as_ref(), documents.as_ref(), live.as_ref())
            .await
            .with_context(|| format!("seeding {name}"))?;
        println!(
            "  {name}: seeded in {:.1} s",
            seeding.elapsed().as_secs_f64()
        );
        let services = |authorizer: Arc<dyn Authorizer>| -> anyhow::Result<Services> {
            Ok(Services::new(
                adapters(
                    directory.clone(),
                    documents.clone(),
                    live.clone(),
                    authorizer,
                    Arc::new(Argon2Hasher::fast_for_tests()?),
                )?,
                LoginLimits::default(),
            ))
        };
        let with_policy = services(Arc::new(OsoAuthorizer::new()?))?;
        let allow_all = services(Arc::new(AllowAllAuthorizer))?;
        Ok(Self {
            name,
            directory: directory.clone(),
            with_policy: with_policy.devices.clone(),
            allow_all: allow_all.devices.clone(),
            _services: [with_policy, allow_all],
        })
    }

    /// One call of `side`: the ids listed and the total it reported.
    async fn list(
        &self,
        side: Side,
        principal: &Principal,
        filter: &DeviceFilter,
        offset: u64,
        limit: u64,
    ) -> anyhow::Result<(Vec<DeviceId>, u64)> {
        let query = DeviceQuery {
            offset,
            limit,
            ..DeviceQuery::default()
        };
        Ok(match side {
            Side::Policy | Side::AllowAll => {
                let service = match side {
                    Side::Policy => &self.with_policy,
                    _ => &self.allow_all,
                };
                let page = service.list_devices(principal, query).await?;
                (page.items.iter().map(|v| v.device.id).collect(), page.total)
            }
            Side::ScopeAndRepository => {
                let areas = self.directory.areas(principal.tenant_id).await?;
                let filter = scope_filter(principal.role, &principal.scope, &AreaTree::new(&areas));
                let page = self
                    .directory
                    .devices(principal.tenant_id, &filter, offset, limit)
                    .await?;
                (page.items.iter().map(|d| d.id).collect(), page.total)
            }
            Side::Repository => {
                let page = self
                    .directory
                    .devices(principal.tenant_id, filter, offset, limit)
                    .await?;
                (page.items.iter().map(|d| d.id).collect(), page.total)
            }
        })
    }

    /// One operation of `workload`, `i`-th of its round; the devices listed.
    async fn op(
        &self,
        side: Side,
        workload: Workload,
        i: u64,
        principal: &Principal,
        filter: &DeviceFilter,
    ) -> anyhow::Result<Vec<DeviceId>> {
        match workload {
            Workload::Page => {
                let offset = (i % (IN_SCOPE / PAGE)) * PAGE;
                let (ids, total) = self.list(side, principal, filter, offset, PAGE).await?;
                anyhow::ensure!(total == IN_SCOPE && ids.len() as u64 == PAGE, "short page");
                Ok(ids)
            }
            Workload::All => {
                let mut all = Vec::with_capacity(IN_SCOPE as usize);
                let mut offset = 0;
                while offset < IN_SCOPE {
                    let (ids, _) = self
                        .list(side, principal, filter, offset, DeviceService::MAX_PAGE)
                        .await?;
                    anyhow::ensure!(!ids.is_empty(), "empty page at {offset}");
                    offset += ids.len() as u64;
                    all.extend(ids);
                }
                Ok(all)
            }
        }
    }
}

/// Latencies and busy time of one (store, workload, side).
struct Tally {
    latencies: Histogram<u64>,
    busy: Duration,
}

impl Tally {
    fn mean_ms(&self) -> f64 {
        self.busy.as_secs_f64() * 1e3 / self.latencies.len().max(1) as f64
    }
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    println!("listing: load average before {}", load_average());
    let tree = Tree::new(PER_DISTRICT)?;
    let scope = scope(&tree);
    let principal = tree.principal(0, Role::Limited, scope.clone())?;
    let area_tree = AreaTree::new(&tree.areas);
    let filter = scope_filter(principal.role, &principal.scope, &area_tree);
    let expected: HashSet<DeviceId> = tree
        .devices
        .iter()
        .filter(|d| {
            let path = d.area_id.map(|a| area_tree.path(a)).unwrap_or_default();
            device_in_scope(principal.role, &principal.scope, d.id, &path)
        })
        .map(|d| d.id)
        .collect();
    anyhow::ensure!(
        expected.len() as u64 == IN_SCOPE,
        "the scope covers {} devices",
        expected.len()
    );
    let dir = tempfile::tempdir()?;
    let mut stores = Vec::new();
    if args.stores.contains(&StoreKind::Sqlite) {
        stores.push(
            Store::new(
                "sqlite",
                Arc::new(SqlDirectory::sqlite_in(dir.path()).await?),
                Arc::new(EmbeddedDocuments::open(dir.path())?),
                &tree,
            )
            .await?,
        );
    }
    if args.stores.contains(&StoreKind::Inproc) {
        stores.push(
            Store::new(
                "inproc",
                Arc::new(MemoryDirectory::new()),
                Arc::new(MemoryDocuments::new()),
                &tree,
            )
            .await?,
        );
    }
    // Every side lists exactly the devices the scope rule allows.
    for store in &stores {
        for side in Side::ALL {
            let listed = store
                .op(side, Workload::All, 0, &principal, &filter)
                .await?;
            let listed_set: HashSet<DeviceId> = listed.iter().copied().collect();
            anyhow::ensure!(
                listed.len() == listed_set.len() && listed_set == expected,
                "{} / {} lists other devices than the scope allows",
                store.name,
                side.name()
            );
        }
    }
    let DeviceScope::Restricted { areas, devices } = &scope else {
        anyhow::bail!("the bench user must be scoped");
    };
    println!(
        "listing: {} devices in {} areas (4 levels); a Limited member scoped to {} areas \
         (3 regions, 4 cities, 4 districts: {} areas with their subtrees) + {} single devices \
         = {IN_SCOPE} devices; sequential calls, {} rounds x {} s per side",
        tree.devices.len(),
        tree.areas.len(),
        areas.len(),
        filter.areas.as_ref().map_or(0, Vec::len),
        devices.len(),
        args.rounds,
        args.seconds
    );
    println!(
        "{:<7} {:<12} {:<24} {:>9} {:>11} {:>9} {:>9} {:>9}",
        "store", "workload", "side", "ops/s", "devices/s", "mean ms", "p50 ms", "p99 ms"
    );
    let budget = Duration::from_secs_f64(args.seconds);
    for store in &stores {
        for workload in [Workload::Page, Workload::All] {
            let mut tallies: Vec<Tally> = Side::ALL
                .iter()
                .map(|_| {
                    Ok(Tally {
                        latencies: histogram()?,
                        busy: Duration::ZERO,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            // Warm-up: caches, connection pool, allocator.
            for side in Side::ALL {
                store.op(side, workload, 0, &principal, &filter).await?;
            }
            for round in 0..args.rounds {
                for s in round_order(Side::ALL.len(), round) {
                    let side = Side::ALL[s];
                    let started = Instant::now();
                    let mut i = 0;
                    while i == 0 || started.elapsed() < budget {
                        let began = Instant::now();
                        black_box(store.op(side, workload, i, &principal, &filter).await?);
                        let took = began.elapsed();
                        record(&mut tallies[s].latencies, took);
                        tallies[s].busy += took;
                        i += 1;
                    }
                }
            }
            let per_op = match workload {
                Workload::Page => PAGE,
                Workload::All => IN_SCOPE,
            } as f64;
            for (side, t) in Side::ALL.iter().zip(&tallies) {
                let ops = 1e3 / t.mean_ms();
                println!(
                    "{:<7} {:<12} {:<24} {:>9.1} {:>11.0} {:>9.3} {:>9.3} {:>9.3}",
                    store.name,
                    workload.name(),
                    side.name(),
                    ops,
                    ops * per_op,
                    t.mean_ms(),
                    ms_at(&t.latencies, 0.50),
                    ms_at(&t.latencies, 0.99),
                );
            }
            let ratio = |a: usize, b: usize| tallies[a].mean_ms() / tallies[b].mean_ms();
            let p99 = |a: usize, b: usize| {
                ms_at(&tallies[a].latencies, 0.99) / ms_at(&tallies[b].latencies, 0.99)
            };
            println!(
                "{:<7} {:<12} ratios (mean time, aim <= 1.2): oso/allow-all {:.3} (p99 {:.3}); \
                 areas+filter / repository {:.3}; oso/repository {:.3} (p99 {:.3}), of which views (allow-all / areas+filter) {:.3}",
                store.name,
                workload.name(),
                ratio(0, 1),
                p99(0, 1),
                ratio(2, 3),
                ratio(0, 3),
                p99(0, 3),
                ratio(1, 2),
            );
        }
    }
    println!("listing: load average after {}", load_average());
    Ok(())
}
