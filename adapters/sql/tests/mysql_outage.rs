//! MySQL/MariaDB going away mid-way: a switchable TCP proxy between the
//! directory and the real server (`HEARTH_TEST_MYSQL_URL`) is cut while users
//! are being created with several memberships each. Every failure must be
//! `StoreError::Unavailable` (the GraphQL edge's `UNAVAILABLE`), and once the
//! server is reachable again no user may exist without all its memberships:
//! a creation is one transaction, never half applied.

// Test code: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hearth_domain::contract::proxy::{host_port, through, Proxy};
use hearth_domain::model::{DeviceScope, EmailAddress, Membership, Role, Tenant, TenantSlug, User};
use hearth_domain::ports::{TenantRepository, UserRepository};
use hearth_domain::{StoreError, TenantId, UserId};
use hearth_sql::SqlDirectory;
use sea_orm::{ConnectionTrait, Database, Statement};

const VAR: &str = "HEARTH_TEST_MYSQL_URL";
/// Memberships each created user gets: one row for the user, three for these.
const MEMBERSHIPS: usize = 3;
/// Creations that succeed before the proxy is cut.
const BEFORE_CUT: usize = 40;
const WRITERS: usize = 6;

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

fn new_user(n: usize) -> User {
    User {
        id: UserId::new(),
        email: EmailAddress::new(&format!(
            "user{n}-{}@outage.test",
            uuid::Uuid::new_v4().simple()
        ))
        .expect("valid email"),
        display_name: format!("User {n}"),
        password_hash: None,
        disabled: false,
        tokens_valid_from: None,
    }
}

fn memberships_of(user: &User, tenants: &[Tenant]) -> Vec<Membership> {
    tenants
        .iter()
        .map(|t| Membership {
            user_id: user.id,
            tenant_id: t.id,
            role: Role::ReadOnly,
            scope: DeviceScope::All,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_mid_way_is_unavailable_and_leaves_no_half_created_user() {
    let Ok(url) = std::env::var(VAR) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {VAR} is not set: .ci/run must start MariaDB (.ci/mariadb.sh)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "mysql outage test did NOT run: {VAR} is not set (see .ci/mariadb.sh)"
        );
        return;
    };
    // Given a fresh database reached through a proxy, and three tenants
    let name = format!("hearth_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(url.as_str())
        .await
        .expect("connect to MySQL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE `{name}`"))
        .await
        .expect("create a fresh test database");
    let direct = with_database(&url, &name);
    let proxy = Proxy::start(host_port(&url)).await;
    let store = Arc::new(
        SqlDirectory::connect_with_pool(&through(&direct, &proxy.addr), 4)
            .await
            .expect("connects and migrates through the proxy"),
    );
    let tenants: Vec<Tenant> = (0..MEMBERSHIPS)
        .map(|i| Tenant {
            id: TenantId::new(),
            slug: TenantSlug::new(format!("outage-{i}")).expect("valid slug"),
            name: format!("Outage {i}"),
        })
        .collect();
    for t in &tenants {
        store.insert_tenant(t).await.expect("insert a tenant");
    }
    let tenants = Arc::new(tenants);

    // When writers create users (each with three memberships) and the proxy
    // is cut after BEFORE_CUT of them succeeded, while others are in flight
    let created = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, tenants, created) = (store.clone(), tenants.clone(), created.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                for n in 0.. {
                    let user = new_user(w * 100_000 + n);
                    let memberships = memberships_of(&user, &tenants);
                    match store
                        .insert_user_with_memberships(&user, &memberships)
                        .await
                    {
                        Ok(()) => {
                            created.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            errors.push(e);
                            // Two failures each: one may be mid-transaction,
                            // the next one meets the cut at connect.
                            if errors.len() == 2 {
                                break;
                            }
                        }
                    }
                }
                errors
            })
        })
        .collect();
    while created.load(Ordering::SeqCst) < BEFORE_CUT {
        tokio::task::yield_now().await;
    }
    proxy.set(false);
    let mut errors = Vec::new();
    for w in writers {
        errors.extend(w.await.expect("writer finished"));
    }

    // Then every failure during the cut is Unavailable, none Backend
    assert_eq!(errors.len(), WRITERS * 2);
    for e in &errors {
        assert!(
            matches!(e, StoreError::Unavailable(_)),
            "a failure while the server is unreachable must be Unavailable, got {e:?}"
        );
    }

    // And when the server is reachable again, the store works again and no
    // user exists without all its memberships
    proxy.set(true);
    let late = new_user(999_999);
    let mut retried = Err(StoreError::Backend(anyhow::anyhow!("not tried")));
    for _ in 0..50 {
        retried = store
            .insert_user_with_memberships(&late, &memberships_of(&late, &tenants))
            .await;
        if retried.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    retried.expect("the store recovers once the server is back");
    let check = Database::connect(direct.as_str())
        .await
        .expect("direct connection");
    let rows = check
        .query_all(Statement::from_string(
            check.get_database_backend(),
            "SELECT u.id, COUNT(m.user_id) AS n FROM users u \
             LEFT JOIN memberships m ON m.user_id = u.id GROUP BY u.id",
        ))
        .await
        .expect("count memberships per user");
    let created = created.load(Ordering::SeqCst);
    assert!(
        rows.len() > created,
        "every reported creation plus the late one is stored ({} rows, {created} + 1 reported)",
        rows.len()
    );
    for row in &rows {
        let n: i64 = row.try_get("", "n").expect("a count");
        assert_eq!(
            n, MEMBERSHIPS as i64,
            "a user exists with {n} of its {MEMBERSHIPS} memberships: half applied"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "mysql outage: {created} created before/during the cut, {} users stored, errors: {}",
        rows.len(),
        errors
            .iter()
            .map(|e| format!("{e:#}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );

    admin
        .execute_unprepared(&format!("DROP DATABASE `{name}`"))
        .await
        .expect("drop the test database");
}
