//! Benchmark: rows per second written into MySQL/MariaDB (and SQLite)
//! through [`SqlDirectory`]'s port methods against the bare `sqlx` client
//! (the driver under SeaORM) inserting the same rows, in the same run, as a
//! ratio.
//!
//! - "users": a user with one membership. Hearth: `insert_user_with_memberships`
//!   (SeaORM: BEGIN, INSERT user, membership upsert, COMMIT). Bare: the same
//!   two statements with bound parameters in one `sqlx` transaction.
//! - "audit": one entry each. Hearth: `append_audit` of a confirmed write
//!   with the service's coalescing window (a confirmed entry is never
//!   coalesced, so one INSERT). Bare: the same INSERT, autocommit.
//!
//! One task writes, one row (transaction) in flight, as a request does. Each
//! side writes into its own freshly migrated database in every round (a
//! `hearth_test_…` database on the server, a temp file for SQLite), rounds
//! interleaved with alternating order. After each round both databases are
//! read back through the port and must hold the same users, memberships and
//! audit entries. The load average is printed: the machine may be shared, only
//! the ratios are meaningful.
//!
//! `HEARTH_TEST_MYSQL_URL=mysql://… cargo bench -p hearth-sql --bench
//!   write_throughput [-- --users N --audit N --rounds R]`
//! (`eval "$(bash .ci/mariadb.sh)"` sets the URL; without it only SQLite runs
//! and the bench exits with status 2.)

// Test code: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use hearth_domain::model::{
    AuditEntry, AuditOutcome, DeviceScope, EmailAddress, Membership, PasswordHash, Role, Tenant,
    TenantSlug, User,
};
use hearth_domain::ports::{AuditFilter, AuditLog, TenantRepository, UserRepository};
use hearth_domain::{AreaId, DeviceId, PointKey, TenantId, UserId};
use hearth_sql::SqlDirectory;
use sea_orm::sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// The service's window (`AuditTrail::COALESCE_WINDOW`).
const COALESCE_WINDOW: chrono::Duration = chrono::Duration::hours(1);
const VAR: &str = "HEARTH_TEST_MYSQL_URL";

struct Args {
    users: usize,
    audit: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut args = Args {
        users: 1_000,
        audit: 1_000,
        rounds: 4,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` adds `--bench`; anything not ours is ignored.
    for pair in raw.windows(2) {
        let target = match pair[0].as_str() {
            "--users" => &mut args.users,
            "--audit" => &mut args.audit,
            "--rounds" => &mut args.rounds,
            _ => continue,
        };
        let Ok(n) = pair[1].parse() else {
            eprintln!("{} needs a number, not {}", pair[0], pair[1]);
            std::process::exit(2);
        };
        *target = n;
    }
    args
}

/// What every round writes on both sides.
struct Fixture {
    tenant: Tenant,
    users: Vec<(User, Membership)>,
    audit: Vec<AuditEntry>,
}

fn fixture(args: &Args) -> Fixture {
    let tenant = Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new("bench").expect("valid slug"),
        name: "Bench".into(),
    };
    // A real argon2id PHC string's length: the column carries it on every row.
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                Q2n0xAxxv3TdU9m1bq6a1o0sR9wPpC4b8wJ3vZl0rGk";
    let users = (0..args.users)
        .map(|i| {
            let user = User {
                id: UserId::new(),
                email: EmailAddress::new(&format!("bench.user{i}@example.com"))
                    .expect("valid email"),
                display_name: format!("Bench User {i}"),
                password_hash: Some(PasswordHash::from_phc(hash)),
                disabled: false,
                tokens_valid_from: None,
            };
            let membership = Membership {
                user_id: user.id,
                tenant_id: tenant.id,
                role: Role::Limited,
                scope: DeviceScope::Restricted {
                    areas: vec![AreaId::new(), AreaId::new()],
                    devices: vec![DeviceId::new()],
                },
            };
            (user, membership)
        })
        .collect::<Vec<_>>();
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid");
    let point = PointKey::new("room_setpoint_comfort").expect("valid key");
    let audit = (0..args.audit)
        .map(|i| {
            let at = start + chrono::Duration::milliseconds(i as i64);
            AuditEntry {
                tenant_id: tenant.id,
                at,
                actor: users
                    .get(i % users.len().max(1))
                    .map_or_else(UserId::new, |u| u.0.id),
                action: "write_parameter".into(),
                device_id: Some(DeviceId::new()),
                point: Some(point.clone()),
                old_value: Some(20.5),
                new_value: Some(21.0 + (i % 10) as f64 * 0.5),
                outcome: AuditOutcome::Confirmed,
                detail: String::new(),
                count: 1,
                last_at: at,
            }
        })
        .collect();
    Fixture {
        tenant,
        users,
        audit,
    }
}

/// Time spent writing the users (with memberships) and the audit entries.
#[derive(Default, Clone, Copy)]
struct Times {
    users: Duration,
    audit: Duration,
}

impl std::ops::AddAssign for Times {
    fn add_assign(&mut self, other: Self) {
        self.users += other.users;
        self.audit += other.audit;
    }
}

async fn hearth_side(directory: &SqlDirectory, f: &Fixture) -> Times {
    let started = Instant::now();
    for (user, membership) in &f.users {
        directory
            .insert_user_with_memberships(user, std::slice::from_ref(membership))
            .await
            .expect("insert_user_with_memberships");
    }
    let users = started.elapsed();
    let started = Instant::now();
    for entry in &f.audit {
        directory
            .append_audit(entry, COALESCE_WINDOW)
            .await
            .expect("append_audit");
    }
    Times {
        users,
        audit: started.elapsed(),
    }
}

/// The bare side for one `sqlx` pool type; `$upsert` is the dialect's
/// membership upsert clause, the one SeaORM emits for Hearth.
macro_rules! bare_side {
    ($name:ident, $pool:ty, $upsert:literal) => {
        async fn $name(pool: &$pool, f: &Fixture) -> Times {
            use sea_orm::sqlx;
            let insert_user = "INSERT INTO users (id, email, display_name, password_hash, \
                               disabled, tokens_valid_from) VALUES (?, ?, ?, ?, ?, ?)";
            let upsert_membership = concat!(
                "INSERT INTO memberships (user_id, tenant_id, role, scope) VALUES (?, ?, ?, ?) ",
                $upsert
            );
            let started = Instant::now();
            for (user, m) in &f.users {
                // The same conversions a bare client needs: ids as text,
                // the scope as JSON, timestamps as microseconds.
                let mut txn = pool.begin().await.expect("begin");
                sqlx::query(insert_user)
                    .bind(user.id.to_string())
                    .bind(user.email.as_str())
                    .bind(&user.display_name)
                    .bind(user.password_hash.as_ref().map(PasswordHash::as_phc))
                    .bind(user.disabled)
                    .bind(user.tokens_valid_from.map(|t| t.timestamp_micros()))
                    .execute(&mut *txn)
                    .await
                    .expect("bare user insert");
                sqlx::query(upsert_membership)
                    .bind(m.user_id.to_string())
                    .bind(m.tenant_id.to_string())
                    .bind(m.role.as_str())
                    .bind(serde_json::to_string(&m.scope).expect("scope as JSON"))
                    .execute(&mut *txn)
                    .await
                    .expect("bare membership upsert");
                txn.commit().await.expect("commit");
            }
            let users = started.elapsed();
            let insert_audit = "INSERT INTO audit_log (tenant_id, at, actor, action, device_id, \
                                point, old_value, new_value, outcome, detail, count, last_at) \
                                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
            let started = Instant::now();
            for e in &f.audit {
                sqlx::query(insert_audit)
                    .bind(e.tenant_id.to_string())
                    .bind(e.at.timestamp_micros())
                    .bind(e.actor.to_string())
                    .bind(&e.action)
                    .bind(e.device_id.map(|d| d.to_string()))
                    .bind(e.point.as_ref().map(PointKey::as_str))
                    .bind(e.old_value)
                    .bind(e.new_value)
                    .bind(e.outcome.as_str())
                    .bind(&e.detail)
                    .bind(i64::try_from(e.count).expect("count fits"))
                    .bind(e.last_at.timestamp_micros())
                    .execute(pool)
                    .await
                    .expect("bare audit insert");
            }
            Times {
                users,
                audit: started.elapsed(),
            }
        }
    };
}

bare_side!(
    bare_mysql,
    MySqlPool,
    "ON DUPLICATE KEY UPDATE role = VALUES(role), scope = VALUES(scope)"
);
bare_side!(
    bare_sqlite,
    SqlitePool,
    "ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role, scope = excluded.scope"
);

/// Where rounds get their fresh databases.
enum Backend {
    /// `admin` creates and drops `hearth_test_bench_…` next to `url`'s database.
    MySql {
        url: String,
        admin: DatabaseConnection,
    },
    Sqlite,
}

/// One side's fresh database, removed by [`Backend::remove`].
struct Fresh {
    url: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn label(&self) -> &'static str {
        match self {
            Backend::MySql { .. } => "MySQL/MariaDB",
            Backend::Sqlite => "SQLite (temp dir, WAL)",
        }
    }

    async fn fresh(&self, side: &str) -> Fresh {
        match self {
            Backend::MySql { url, admin } => {
                // The test user may create `hearth_test%` databases only.
                let name = format!("hearth_test_bench_{side}_{}", uuid::Uuid::new_v4().simple());
                admin
                    .execute_unprepared(&format!(
                        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
                    ))
                    .await
                    .expect("create a bench database (needs CREATE on hearth_test%)");
                Fresh {
                    url: with_database(url, &name),
                    name,
                    _dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                Fresh {
                    url: SqlDirectory::sqlite_url(dir.path()).expect("sqlite url"),
                    name: side.to_owned(),
                    _dir: Some(dir),
                }
            }
        }
    }

    async fn remove(&self, fresh: Fresh) {
        if let Backend::MySql { admin, .. } = self {
            admin
                .execute_unprepared(&format!("DROP DATABASE `{}`", fresh.name))
                .await
                .expect("drop the bench database");
        }
    }

    /// Runs the bare side on its own `sqlx` pool, opened with the options
    /// `SqlDirectory` gives its pool (WAL, NORMAL sync, foreign keys on
    /// SQLite), so the two differ only in what runs on the connection.
    async fn bare(&self, url: &str, f: &Fixture) -> Times {
        match self {
            Backend::MySql { .. } => {
                let pool = MySqlPoolOptions::new()
                    .max_connections(10)
                    .min_connections(1)
                    .connect(url)
                    .await
                    .expect("bare MySQL pool");
                let times = bare_mysql(&pool, f).await;
                pool.close().await;
                times
            }
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .expect("sqlite url")
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .min_connections(1)
                    .connect_with(options)
                    .await
                    .expect("bare SQLite pool");
                let times = bare_sqlite(&pool, f).await;
                pool.close().await;
                times
            }
        }
    }
}

/// `mysql://u:p@h:3306/db?x` with the database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// Both databases must hold the same rows, as the port reads them back.
async fn assert_same_rows(hearth: &SqlDirectory, bare: &SqlDirectory, f: &Fixture) {
    for (user, membership) in &f.users {
        for (side, dir) in [("hearth", hearth), ("bare", bare)] {
            let stored = dir.user(user.id).await.expect("read a user");
            assert_eq!(stored.as_ref(), Some(user), "{side}: user {}", user.id);
            let memberships = dir.memberships_of(user.id).await.expect("memberships");
            assert_eq!(
                memberships,
                std::slice::from_ref(membership),
                "{side}: memberships"
            );
        }
    }
    let limit = f.audit.len() as u64 + 1;
    let filter = AuditFilter::default();
    let mut logs = Vec::new();
    for dir in [hearth, bare] {
        let records = dir
            .audit(f.tenant.id, &filter, None, limit)
            .await
            .expect("read the audit log");
        logs.push(records.into_iter().map(|r| r.entry).collect::<Vec<_>>());
    }
    assert_eq!(logs[0].len(), f.audit.len(), "hearth: audit entries");
    assert_eq!(logs[0], logs[1], "hearth and bare audit logs differ");
}

fn rate(rows: usize, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn print_line(label: &str, args: &Args, hearth: Times, bare: Times) {
    println!(
        "{label}: users {:>7.0}/s hearth, {:>7.0}/s bare, ratio {:.2} | \
         audit {:>7.0}/s hearth, {:>7.0}/s bare, ratio {:.2}",
        rate(args.users, hearth.users),
        rate(args.users, bare.users),
        bare.users.as_secs_f64() / hearth.users.as_secs_f64(),
        rate(args.audit, hearth.audit),
        rate(args.audit, bare.audit),
        bare.audit.as_secs_f64() / hearth.audit.as_secs_f64(),
    );
}

async fn run(backend: &Backend, args: &Args) {
    println!(
        "{}: {} users with one membership each, {} audit entries, {} rounds; load average {}",
        backend.label(),
        args.users,
        args.audit,
        args.rounds,
        load_average()
    );
    let (mut hearth_total, mut bare_total) = (Times::default(), Times::default());
    for round in 1..=args.rounds {
        // Fresh ids every round: nothing a side wrote before can help it.
        let f = fixture(args);
        let (hearth_db, bare_db) = (backend.fresh("h").await, backend.fresh("b").await);
        // Migrated and given the tenant outside the timing, alike for both.
        let hearth_dir = SqlDirectory::connect(&hearth_db.url)
            .await
            .expect("hearth side connects and migrates");
        let bare_dir = SqlDirectory::connect(&bare_db.url)
            .await
            .expect("bare side's schema migrates");
        for dir in [&hearth_dir, &bare_dir] {
            dir.insert_tenant(&f.tenant).await.expect("tenant");
        }
        // Alternate which side goes first, so neither always meets a server
        // still flushing the other's writes.
        let (hearth, bare) = if round % 2 == 1 {
            let h = hearth_side(&hearth_dir, &f).await;
            (h, backend.bare(&bare_db.url, &f).await)
        } else {
            let b = backend.bare(&bare_db.url, &f).await;
            (hearth_side(&hearth_dir, &f).await, b)
        };
        assert_same_rows(&hearth_dir, &bare_dir, &f).await;
        print_line(&format!("  round {round}"), args, hearth, bare);
        hearth_total += hearth;
        bare_total += bare;
        drop((hearth_dir, bare_dir));
        backend.remove(hearth_db).await;
        backend.remove(bare_db).await;
    }
    let totals = Args {
        users: args.users * args.rounds,
        audit: args.audit * args.rounds,
        rounds: args.rounds,
    };
    print_line("  total  ", &totals, hearth_total, bare_total);
    println!(
        "  (ratio = hearth/bare rows per second; load average after {})",
        load_average()
    );
}

#[tokio::main]
async fn main() {
    let args = args();
    let url = std::env::var(VAR).ok();
    if url.is_none() {
        eprintln!(
            "{VAR} is not set: only SQLite runs; start MariaDB with \
             `eval \"$(bash .ci/mariadb.sh)\"` for the MySQL figure"
        );
    }
    if let Some(url) = &url {
        let admin = Database::connect(url.as_str()).await.unwrap_or_else(|err| {
            eprintln!("cannot connect to {VAR}: {err}");
            std::process::exit(2);
        });
        run(
            &Backend::MySql {
                url: url.clone(),
                admin,
            },
            &args,
        )
        .await;
    }
    run(&Backend::Sqlite, &args).await;
    if url.is_none() {
        eprintln!("MySQL did NOT run: {VAR} is not set");
        std::process::exit(2);
    }
}
