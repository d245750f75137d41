//! Part `login`: successful logins per second through `AuthService::login`
//! (argon2id at the OWASP cost the configuration defaults to, sessions in
//! the embedded SQLite store) with the default throttle, with a throttle
//! that never locks (free failures unlimited: the same bookkeeping, no
//! lock-outs; Hearth has no switch to turn the throttle off), and bare
//! argon2 verification of the same passwords on as many blocking threads as
//! the login path may use. Then a wrong-password storm on a few accounts,
//! from a different address per caller, while the members keep logging in:
//! the `RATE_LIMITED` answers per second and how many password checks the
//! storm caused (counted by a wrapper around the real hasher).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hearth_auth::{Argon2Hasher, OsoAuthorizer};
use hearth_domain::model::{
    DeviceScope, EmailAddress, Membership, PasswordHash, Role, Tenant, TenantSlug, User,
};
use hearth_domain::ports::{Directory, PasswordHasher};
use hearth_domain::services::{AuthService, LoginError, LoginLimits, Services};
use hearth_domain::{TenantId, UserId};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::documents::MemoryDocuments;
use hearth_sql::SqlDirectory;
use tokio::sync::Semaphore;

use crate::{adapters, histogram, load_average, ms_at, record, round_order, Args};

const PASSWORD: &str = "correct horse battery staple";
/// Accounts the storm guesses at.
const VICTIMS: usize = 4;

/// The real hasher, counting the password checks it runs.
struct CountingHasher {
    inner: Argon2Hasher,
    checks: AtomicU64,
}

impl PasswordHasher for CountingHasher {
    fn hash(&self, password: &str) -> Result<PasswordHash, anyhow::Error> {
        self.inner.hash(password)
    }
    fn verify(&self, password: &str, hash: &PasswordHash) -> bool {
        self.checks.fetch_add(1, Ordering::Relaxed);
        self.inner.verify(password, hash)
    }
    fn verify_dummy(&self, password: &str) {
        self.checks.fetch_add(1, Ordering::Relaxed);
        self.inner.verify_dummy(password);
    }
}

#[derive(Clone, Copy)]
enum Side {
    Throttled,
    NeverLocks,
    BareHashing,
}

impl Side {
    const ALL: [Side; 3] = [Side::Throttled, Side::NeverLocks, Side::BareHashing];

    fn name(self) -> &'static str {
        match self {
            Side::Throttled => "login, default throttle",
            Side::NeverLocks => "login, throttle never locks",
            Side::BareHashing => "bare argon2 verify",
        }
    }
}

struct Member {
    email: String,
    hash: PasswordHash,
    address: IpAddr,
}

struct Bench {
    throttled: AuthService,
    never_locks: AuthService,
    hasher: Arc<CountingHasher>,
    /// As many as the login path's hashing permits.
    bare_permits: Arc<Semaphore>,
    members: Vec<Member>,
    _services: [Services; 2],
}

/// What one side's workers did in one round.
#[derive(Default)]
struct Count {
    ok: u64,
    rate_limited: u64,
    other: u64,
}

impl Bench {
    /// One worker's loop on `side` until `stop`: its member logs in (or its
    /// password is verified) again and again.
    async fn worker(
        self: Arc<Self>,
        side: Side,
        w: usize,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<(Count, Histogram<u64>)> {
        let member = &self.members[w];
        let mut count = Count::default();
        let mut latencies = histogram()?;
        while !stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            let outcome = match side {
                Side::Throttled | Side::NeverLocks => {
                    let auth = match side {
                        Side::Throttled => &self.throttled,
                        _ => &self.never_locks,
                    };
                    match auth
                        .login(&member.email, PASSWORD, None, Some(member.address))
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(LoginError::RateLimited { .. }) => Err(true),
                        Err(_) => Err(false),
                    }
                }
                Side::BareHashing => {
                    let _permit = self.bare_permits.acquire().await?;
                    let (hasher, hash) = (self.hasher.clone(), member.hash.clone());
                    let ok =
                        tokio::task::spawn_blocking(move || hasher.verify(PASSWORD, &hash)).await?;
                    if ok {
                        Ok(())
                    } else {
                        Err(false)
                    }
                }
            };
            match outcome {
                Ok(()) => {
                    count.ok += 1;
                    record(&mut latencies, began.elapsed());
                }
                Err(true) => count.rate_limited += 1,
                Err(false) => count.other += 1,
            }
        }
        Ok((count, latencies))
    }

    /// `workers` concurrent workers on `side` for `length`.
    async fn round(
        self: &Arc<Self>,
        side: Side,
        workers: usize,
        length: Duration,
    ) -> anyhow::Result<(Count, Histogram<u64>, Duration)> {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = (0..workers)
            .map(|w| tokio::spawn(self.clone().worker(side, w, stop.clone())))
            .collect();
        tokio::time::sleep(length).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = Count::default();
        let mut latencies = histogram()?;
        for task in tasks {
            let (count, l) = task.await??;
            total.ok += count.ok;
            total.rate_limited += count.rate_limited;
            total.other += count.other;
            latencies.add(&l)?;
        }
        Ok((total, latencies, started.elapsed()))
    }
}

/// Distinct client addresses from a private range.
fn address(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 9, (n / 250) as u8, (n % 250 + 1) as u8))
}

async fn setup(args: &Args, dir: &std::path::Path) -> anyhow::Result<Arc<Bench>> {
    let directory: Arc<dyn Directory> = Arc::new(SqlDirectory::sqlite_in(dir).await?);
    let hasher = Arc::new(CountingHasher {
        inner: Argon2Hasher::new()?,
        checks: AtomicU64::new(0),
    });
    let tenant = Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new("acme")?,
        name: "Acme".into(),
    };
    directory.insert_tenant(&tenant).await?;
    let mut members = Vec::new();
    for n in 0..args.login_workers + VICTIMS {
        let hash = hasher.hash(PASSWORD)?;
        let user = User {
            id: UserId::new(),
            email: EmailAddress::new(&format!("member{n}@acme.test"))?,
            display_name: format!("Member {n}"),
            password_hash: Some(hash.clone()),
            disabled: false,
            tokens_valid_from: None,
        };
        directory.insert_user(&user).await?;
        directory
            .upsert_membership(&Membership {
                user_id: user.id,
                tenant_id: tenant.id,
                role: Role::Basic,
                scope: DeviceScope::All,
            })
            .await?;
        members.push(Member {
            email: user.email.to_string(),
            hash,
            address: address(n),
        });
    }
    let services = |limits: LoginLimits| -> anyhow::Result<Services> {
        Ok(Services::new(
            adapters(
                directory.clone(),
                Arc::new(MemoryDocuments::new()),
                Arc::new(InProcessBus::new()),
                Arc::new(OsoAuthorizer::new()?),
                hasher.clone(),
            )?,
            limits,
        ))
    };
    let defaults = LoginLimits::default();
    let throttled = services(defaults.clone())?;
    let never_locks = services(LoginLimits {
        account_free_failures: u32::MAX,
        address_free_failures: u32::MAX,
        ..defaults.clone()
    })?;
    Ok(Arc::new(Bench {
        throttled: throttled.auth.clone(),
        never_locks: never_locks.auth.clone(),
        hasher,
        bare_permits: Arc::new(Semaphore::new(defaults.hashing_permits.max(1))),
        members,
        _services: [throttled, never_locks],
    }))
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    println!("login: load average before {}", load_average());
    let dir = tempfile::tempdir()?;
    let bench = setup(args, dir.path()).await?;
    let workers = args.login_workers;
    let length = Duration::from_secs_f64(args.login_seconds);
    let defaults = LoginLimits::default();
    println!(
        "login: argon2id OWASP cost (19 MiB, 2 passes, 1 lane), {workers} members logging in \
         concurrently (own account and address each), {} hashing permits, {} rounds x {} s per side",
        defaults.hashing_permits, args.rounds, args.login_seconds
    );
    // Warm-up.
    for side in Side::ALL {
        bench
            .round(side, workers, Duration::from_millis(500))
            .await?;
    }
    let mut totals: Vec<(Count, Histogram<u64>, Duration)> = Vec::new();
    for _ in Side::ALL {
        totals.push((Count::default(), histogram()?, Duration::ZERO));
    }
    for round in 0..args.rounds {
        for s in round_order(Side::ALL.len(), round) {
            let (count, latencies, took) = bench.round(Side::ALL[s], workers, length).await?;
            let total = &mut totals[s];
            total.0.ok += count.ok;
            total.0.rate_limited += count.rate_limited;
            total.0.other += count.other;
            total.1.add(&latencies)?;
            total.2 += took;
        }
    }
    println!(
        "{:<30} {:>9} {:>10} {:>9} {:>9} {:>13}",
        "side", "ok", "per s", "p50 ms", "p99 ms", "refused/other"
    );
    let mut rates = Vec::new();
    for (side, (count, latencies, took)) in Side::ALL.iter().zip(&totals) {
        let rate = count.ok as f64 / took.as_secs_f64();
        rates.push(rate);
        println!(
            "{:<30} {:>9} {:>10.1} {:>9.1} {:>9.1} {:>6}/{}",
            side.name(),
            count.ok,
            rate,
            ms_at(latencies, 0.50),
            ms_at(latencies, 0.99),
            count.rate_limited,
            count.other
        );
        anyhow::ensure!(
            count.rate_limited == 0 && count.other == 0,
            "{}: a right password was refused",
            side.name()
        );
    }
    println!(
        "login: ratio logins/s default throttle / bare argon2 {:.3}, default throttle / never locks {:.3} (aim >= 1/1.2 = 0.833)",
        rates[0] / rates[2],
        rates[0] / rates[1]
    );
    storm(args, &bench, rates[0]).await?;
    println!("login: load average after {}", load_average());
    Ok(())
}

/// Wrong passwords for the victims from `--storm-workers` callers, each on
/// its own address, while the members keep logging in.
async fn storm(args: &Args, bench: &Arc<Bench>, quiet_rate: f64) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let rate_limited = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let checks_before = bench.hasher.checks.load(Ordering::Relaxed);
    let started = Instant::now();
    let attackers: Vec<_> = (0..args.storm_workers)
        .map(|k| {
            let (bench, stop) = (bench.clone(), stop.clone());
            let (rate_limited, refused, other) =
                (rate_limited.clone(), refused.clone(), other.clone());
            tokio::spawn(async move {
                let victim = &bench.members[victim_of(&bench, k)];
                let from = address(10_000 + k);
                while !stop.load(Ordering::Relaxed) {
                    let counter = match bench
                        .throttled
                        .login(&victim.email, "not-the-password", None, Some(from))
                        .await
                    {
                        Err(LoginError::RateLimited { .. }) => &rate_limited,
                        Err(LoginError::InvalidCredentials) => &refused,
                        _ => &other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    // A refusal never waits for anything: without this the
                    // callers would hold the async workers (over HTTP the
                    // socket is the pause).
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let members = tokio::spawn({
        let bench = bench.clone();
        let workers = args.login_workers;
        let length = Duration::from_secs_f64(args.storm_seconds);
        async move { bench.round(Side::Throttled, workers, length).await }
    });
    let (count, latencies, _) = members.await??;
    stop.store(true, Ordering::Relaxed);
    let took = started.elapsed();
    for a in attackers {
        a.await?;
    }
    let checks = bench.hasher.checks.load(Ordering::Relaxed) - checks_before;
    let limited = rate_limited.load(Ordering::Relaxed);
    let wrong = refused.load(Ordering::Relaxed);
    let secs = took.as_secs_f64();
    println!(
        "storm: {} callers (own address each) guessing at {VICTIMS} accounts for {secs:.1} s: \
         {limited} RATE_LIMITED ({:.0}/s), {wrong} UNAUTHENTICATED (each one password check), {} other",
        args.storm_workers,
        limited as f64 / secs,
        other.load(Ordering::Relaxed)
    );
    println!(
        "storm: {checks} password checks in all, {} of them the members' logins: the storm caused {} checks, one per {:.0} refusals",
        count.ok,
        checks.saturating_sub(count.ok),
        limited as f64 / checks.saturating_sub(count.ok).max(1) as f64
    );
    println!(
        "storm: members' logins during the storm {:.1}/s (p50 {:.1} ms, p99 {:.1} ms, {} refused), ratio to before the storm {:.3}",
        count.ok as f64 / secs,
        ms_at(&latencies, 0.50),
        ms_at(&latencies, 0.99),
        count.rate_limited + count.other,
        count.ok as f64 / secs / quiet_rate
    );
    anyhow::ensure!(
        other.load(Ordering::Relaxed) == 0,
        "unexpected login answers"
    );
    Ok(())
}

/// The victim caller `k` guesses at: the accounts after the members'.
fn victim_of(bench: &Bench, k: usize) -> usize {
    bench.members.len() - VICTIMS + k % VICTIMS
}
