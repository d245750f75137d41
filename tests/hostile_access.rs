//! End-to-end: hostile callers get typed refusals and the server keeps
//! serving. The audit log stays within the caller's scope and cannot be
//! flooded, tenant-wide management needs an unscoped membership, and wrong
//! passwords are throttled (per account and per address) without hashing.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt};
use hearth_auth::{Argon2Hasher, JwtTokens, OsoAuthorizer};
use hearth_domain::model::{
    DeviceScope, EmailAddress, Membership, PasswordHash, Role, Tenant, TenantSlug, User,
};
use hearth_domain::ports::{NoWatchInterest, PasswordHasher, TenantRepository, UserRepository};
use hearth_domain::services::{Adapters, LoginError, LoginLimits, Services};
use hearth_domain::{TenantId, UserId};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_inproc::readings::MemoryReadings;
use hearth_modbus::{GatewayConfig, ModbusGateway};
use hearth_tests::{error_code, Client, DemoServer, PASSWORD};
use parking_lot::Mutex;
use serde_json::{json, Value};

const COMFORT: &str = "room_setpoint_comfort";

const WRITE: &str = "mutation($d: ID!, $p: String!, $v: Float!) {
  writeParameter(deviceId: $d, point: $p, value: $v) { status } }";

const AUDIT: &str =
    "query($first: Int, $after: String, $device: ID, $actor: ID, $from: DateTime, $to: DateTime) {
  auditLog(first: $first, after: $after, deviceId: $device, actorId: $actor, from: $from, to: $to) {
    pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node { at lastAt count actorId action deviceId point outcome detail } } } }";

const PUT_PROFILE: &str = "mutation($p: DeviceProfileInput!) { putProfile(input: $p) { id } }";

const LOGIN: &str =
    "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }";

fn profile(id: &str) -> Value {
    json!({ "id": id, "name": "AHU", "points": [
        { "key": "supply_temp", "name": "Supply air", "register": "INPUT", "address": 1, "dataType": "I16", "scale": 0.1, "unit": "°C" }
    ]})
}

/// The audit entries of a listing, in order.
fn nodes(data: &Value) -> Vec<Value> {
    data["auditLog"]["edges"]
        .as_array()
        .map(|edges| edges.iter().map(|e| e["node"].clone()).collect())
        .unwrap_or_default()
}

async fn user_id(client: &Client) -> anyhow::Result<String> {
    let me = client.data("{ me { user { id } } }", json!({})).await?;
    Ok(me["me"]["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Ids of the visible devices whose name starts with `prefix`.
async fn devices_named(client: &Client, prefix: &str) -> anyhow::Result<Vec<String>> {
    Ok(client
        .device_ids()
        .await?
        .into_iter()
        .filter(|(_, name)| name.starts_with(prefix))
        .map(|(id, _)| id)
        .collect())
}

#[tokio::test]
async fn a_scoped_guest_reads_only_audit_entries_of_devices_in_scope() -> anyhow::Result<()> {
    // Given the demo, where the technician is Full in acme's North district only
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let full = server.login("full@acme.test").await?;
    let tech = server.login("tech@service.test").await?;
    let north: HashSet<String> = tech
        .device_ids()
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(north.len(), 4, "the guest sees the four North devices");
    let hospital = devices_named(&admin, "Hospital").await?[0].clone();
    let n1 = devices_named(&tech, "N1").await?[0].clone();

    // And entries about a hospital device, a North device, and the tenant as a whole
    let written = admin
        .data(WRITE, json!({ "d": hospital, "p": COMFORT, "v": 21.5 }))
        .await?;
    assert_eq!(written["writeParameter"]["status"], "CONFIRMED");
    let written = tech
        .data(WRITE, json!({ "d": n1, "p": COMFORT, "v": 22.0 }))
        .await?;
    assert_eq!(written["writeParameter"]["status"], "CONFIRMED");
    admin
        .data(PUT_PROFILE, json!({ "p": profile("acme.audit-check") }))
        .await?;
    let refused = tech
        .gql(PUT_PROFILE, json!({ "p": profile("acme.guest-profile") }))
        .await?;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{refused}"
    );

    // When the guest reads the audit log
    let seen = nodes(&tech.data(AUDIT, json!({})).await?);
    // Then only the North device's entry is there: no hospital, no tenant-level entries
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["deviceId"], n1.as_str());
    assert!(seen
        .iter()
        .all(|e| e["deviceId"].as_str().is_some_and(|d| north.contains(d))));
    // And asking for the hospital device by id is NOT_FOUND, like any unseen device
    let res = tech.gql(AUDIT, json!({ "device": hospital })).await?;
    assert_eq!(error_code(&res).as_deref(), Some("NOT_FOUND"), "{res}");

    // When unscoped members read it, Then they see everything, tenant-level entries included
    for (who, client) in [("admin", &admin), ("full", &full)] {
        let all = nodes(&client.data(AUDIT, json!({})).await?);
        assert_eq!(all.len(), 4, "{who}: {all:?}");
        let tenant_level: Vec<&Value> = all.iter().filter(|e| e["deviceId"].is_null()).collect();
        assert_eq!(
            tenant_level.len(),
            2,
            "{who}: the stored and the refused profile"
        );
        assert!(tenant_level.iter().all(|e| e["action"] == "put_profile"));
    }

    // And the filters narrow it: by actor, by device, by time
    let tech_id = user_id(&tech).await?;
    let by_tech = nodes(&admin.data(AUDIT, json!({ "actor": tech_id })).await?);
    let outcomes: Vec<&str> = by_tech
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, vec!["refused", "confirmed"], "{by_tech:?}");
    let by_device = nodes(&admin.data(AUDIT, json!({ "device": hospital })).await?);
    assert_eq!(by_device.len(), 1);
    assert_eq!(by_device[0]["deviceId"], hospital.as_str());
    let past = nodes(
        &admin
            .data(AUDIT, json!({ "to": "2020-01-01T00:00:00Z" }))
            .await?,
    );
    assert!(past.is_empty(), "{past:?}");
    let future = nodes(
        &admin
            .data(AUDIT, json!({ "from": "2999-01-01T00:00:00Z" }))
            .await?,
    );
    assert!(future.is_empty(), "{future:?}");
    let res = admin
        .gql(
            AUDIT,
            json!({ "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z" }),
        )
        .await?;
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"));

    // And pages follow the cursor without overlap
    let page1 = admin.data(AUDIT, json!({ "first": 3 })).await?;
    assert_eq!(page1["auditLog"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(page1["auditLog"]["pageInfo"]["hasPreviousPage"], false);
    let after = page1["auditLog"]["pageInfo"]["endCursor"].clone();
    let page2 = admin
        .data(AUDIT, json!({ "first": 3, "after": after }))
        .await?;
    assert_eq!(page2["auditLog"]["pageInfo"]["hasNextPage"], false);
    let mut walked = nodes(&page1);
    walked.extend(nodes(&page2));
    assert_eq!(walked, nodes(&admin.data(AUDIT, json!({})).await?));
    for bad in ["nonsense", "12:-1", ""] {
        let res = admin.gql(AUDIT, json!({ "after": bad })).await?;
        assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{bad}");
    }
    Ok(())
}

#[tokio::test]
async fn a_flood_of_refused_writes_is_one_counted_entry() -> anyhow::Result<()> {
    // Given two real writes in the log
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let basic = server.login("basic@acme.test").await?;
    let readonly = server.login("readonly@acme.test").await?;
    let device = devices_named(&admin, "N2").await?[0].clone();
    for (client, value) in [(&basic, 21.0), (&admin, 22.5)] {
        let res = client
            .data(WRITE, json!({ "d": device, "p": COMFORT, "v": value }))
            .await?;
        assert_eq!(res["writeParameter"]["status"], "CONFIRMED");
    }

    // When a Read-only user sends 1,000 refused writes (the first alone, then eight at a time)
    let attempt = |i: u32| {
        let readonly = readonly.clone();
        let device = device.clone();
        async move {
            let res = readonly
                .gql(
                    WRITE,
                    json!({ "d": device, "p": COMFORT, "v": 15.0 + f64::from(i % 10) }),
                )
                .await?;
            anyhow::Ok(error_code(&res))
        }
    };
    assert_eq!(attempt(0).await?.as_deref(), Some("FORBIDDEN"));
    let codes: Vec<anyhow::Result<Option<String>>> = stream::iter(1..1000)
        .map(attempt)
        .buffer_unordered(8)
        .collect()
        .await;
    for code in codes {
        assert_eq!(code?.as_deref(), Some("FORBIDDEN"));
    }

    // Then the first page holds one refused entry counting all 1,000, and both real writes
    let log = admin.data(AUDIT, json!({ "first": 10 })).await?;
    let entries = nodes(&log);
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(log["auditLog"]["pageInfo"]["hasNextPage"], false);
    let flood = &entries[0];
    assert_eq!(flood["outcome"], "refused");
    assert_eq!(flood["count"], 1000);
    assert_eq!(flood["actorId"], user_id(&readonly).await?.as_str());
    let first_at = chrono::DateTime::parse_from_rfc3339(flood["at"].as_str().unwrap_or(""))?;
    let last_at = chrono::DateTime::parse_from_rfc3339(flood["lastAt"].as_str().unwrap_or(""))?;
    assert!(last_at >= first_at, "{flood}");
    let real: Vec<(&str, f64)> = entries[1..]
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap_or(""),
                e["count"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert_eq!(real, vec![("confirmed", 1.0), ("confirmed", 1.0)]);
    // And none of the refused writes reached a controller
    assert_eq!(server.running.simulated_write_requests(), 2);
    Ok(())
}

#[tokio::test]
async fn tenant_wide_management_needs_an_unscoped_membership() -> anyhow::Result<()> {
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let full = server.login("full@acme.test").await?;
    let tech = server.login("tech@service.test").await?;
    // Given a Full guest scoped to the North district, when it stores a profile
    let res = tech
        .gql(PUT_PROFILE, json!({ "p": profile("acme.guest-ahu") }))
        .await?;
    // Then it is FORBIDDEN and nothing is stored
    assert_eq!(error_code(&res).as_deref(), Some("FORBIDDEN"), "{res}");
    let listed = admin.data("{ profiles { id } }", json!({})).await?;
    assert!(!listed.to_string().contains("acme.guest-ahu"), "{listed}");
    // While an unscoped Full member may
    let stored = full
        .data(PUT_PROFILE, json!({ "p": profile("acme.full-ahu") }))
        .await?;
    assert_eq!(stored["putProfile"]["id"], "acme.full-ahu");
    // And the guest still manages what is in its scope (it writes a North device)
    let north = devices_named(&tech, "N1").await?[0].clone();
    let res = tech
        .data(WRITE, json!({ "d": north, "p": COMFORT, "v": 21.0 }))
        .await?;
    assert_eq!(res["writeParameter"]["status"], "CONFIRMED");
    Ok(())
}

#[tokio::test]
async fn repeated_wrong_passwords_are_rate_limited_per_account_and_per_address(
) -> anyhow::Result<()> {
    // Given lock-outs far longer than the test (no race with their end)
    let server = DemoServer::start_with_login_limits(LoginLimits {
        account_free_failures: 3,
        address_free_failures: 8,
        first_lockout: Duration::from_secs(600),
        max_lockout: Duration::from_secs(900),
        ..LoginLimits::default()
    })
    .await?;
    let admin = server.login("admin@acme.test").await?;
    let anon = server.client();
    let login = |email: &'static str, password: &'static str| {
        let anon = anon.clone();
        async move { anon.gql(LOGIN, json!({ "e": email, "p": password })).await }
    };

    // When the technician's password is guessed wrong three times, and a fourth
    for _ in 0..4 {
        let res = login("tech@service.test", "wrong").await?;
        assert_eq!(
            error_code(&res).as_deref(),
            Some("UNAUTHENTICATED"),
            "{res}"
        );
    }
    // Then the next attempt is RATE_LIMITED with a whole number of seconds to wait
    let res = login("tech@service.test", "wrong").await?;
    assert_eq!(error_code(&res).as_deref(), Some("RATE_LIMITED"), "{res}");
    let retry = res["errors"][0]["extensions"]["retryAfter"].as_u64();
    assert!(retry.is_some_and(|s| (1..=600).contains(&s)), "{res}");
    assert!(res["data"].is_null() || res["data"]["login"].is_null());
    // And the right password during the lock-out is refused as well
    let res = login("tech@service.test", PASSWORD).await?;
    assert_eq!(error_code(&res).as_deref(), Some("RATE_LIMITED"), "{res}");
    // But other accounts still log in from the same address
    server.login("basic@acme.test").await?;

    // When wrong passwords for many accounts come from one address (4 so far + 4 free, then one more)
    for email in ["a@x.test", "b@x.test", "c@x.test", "d@x.test", "e@x.test"] {
        let res = login(email, "wrong").await?;
        assert_eq!(
            error_code(&res).as_deref(),
            Some("UNAUTHENTICATED"),
            "{email}: {res}"
        );
    }
    // Then that address is locked out, even for a right password of an untouched account
    let res = login("readonly@acme.test", PASSWORD).await?;
    assert_eq!(error_code(&res).as_deref(), Some("RATE_LIMITED"), "{res}");
    assert!(res["errors"][0]["extensions"]["retryAfter"].as_u64() >= Some(1));

    // And the server keeps serving tokens issued before
    let me = admin.data("{ me { role } }", json!({})).await?;
    assert_eq!(me["me"]["role"], "ADMIN");
    Ok(())
}

/// Counts password checks and where they ran; delegates to real argon2.
struct Watched {
    inner: Argon2Hasher,
    checks: AtomicUsize,
    threads: Mutex<HashSet<std::thread::ThreadId>>,
}

impl Watched {
    fn seen(&self) {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.threads.lock().insert(std::thread::current().id());
    }
}

impl PasswordHasher for Watched {
    fn hash(&self, password: &str) -> Result<PasswordHash, anyhow::Error> {
        self.inner.hash(password)
    }
    fn verify(&self, password: &str, hash: &PasswordHash) -> bool {
        self.seen();
        self.inner.verify(password, hash)
    }
    fn verify_dummy(&self, password: &str) {
        self.seen();
        self.inner.verify_dummy(password);
    }
}

/// A use-case tier check: the same application, in-memory stores.
#[tokio::test(flavor = "current_thread")]
async fn locked_out_logins_are_refused_without_hashing_and_off_the_async_thread(
) -> anyhow::Result<()> {
    // Given one user and a hasher that counts its checks
    let hasher = Arc::new(Watched {
        inner: Argon2Hasher::fast_for_tests()?,
        checks: AtomicUsize::new(0),
        threads: Mutex::default(),
    });
    let directory = Arc::new(MemoryDirectory::new());
    let hearth = Services::new(
        Adapters {
            directory: directory.clone(),
            documents: Arc::new(MemoryDocuments::new()),
            readings: Arc::new(MemoryReadings::new()),
            live: Arc::new(InProcessBus::new()),
            // Nothing polls here, so nobody needs to know who watches.
            watch: Arc::new(NoWatchInterest),
            field: Arc::new(ModbusGateway::new(GatewayConfig::default())),
            authorizer: Arc::new(OsoAuthorizer::new()?),
            passwords: hasher.clone(),
            tokens: Arc::new(JwtTokens::new(&[7u8; 64], chrono::Duration::hours(1))?),
        },
        LoginLimits {
            first_lockout: Duration::from_secs(3600),
            ..LoginLimits::default()
        },
    );
    let tenant = Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new("acme")?,
        name: "Acme".into(),
    };
    directory.insert_tenant(&tenant).await?;
    let user = User {
        id: UserId::new(),
        email: EmailAddress::new("ann@acme.test")?,
        display_name: "Ann".into(),
        password_hash: Some(hearth.auth.hash_password("right").await?),
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
    let client = Some("192.0.2.1".parse()?);

    // When the password is guessed wrong 5 (free) + 1 times
    for _ in 0..6 {
        let err = hearth
            .auth
            .login("ann@acme.test", "wrong", None, client)
            .await
            .err();
        assert!(
            matches!(err, Some(LoginError::InvalidCredentials)),
            "{err:?}"
        );
    }
    assert_eq!(hasher.checks.load(Ordering::SeqCst), 6);
    // Then 100 more attempts, the right password among them, are refused unchecked
    for i in 0..100 {
        let password = if i == 50 { "right" } else { "wrong" };
        let err = hearth
            .auth
            .login("ann@acme.test", password, None, client)
            .await
            .err();
        assert!(
            matches!(err, Some(LoginError::RateLimited { retry_after }) if retry_after > Duration::ZERO),
            "{err:?}"
        );
    }
    assert_eq!(
        hasher.checks.load(Ordering::SeqCst),
        6,
        "no hashing during a lock-out"
    );

    // And a burst of 50 concurrent guesses at another account hashes at most its free failures + 1
    let before = hasher.checks.load(Ordering::SeqCst);
    let other = Some("192.0.2.2".parse()?);
    let outcomes: Vec<_> = stream::iter(0..50)
        .map(|_| hearth.auth.login("bob@acme.test", "guess", None, other))
        .buffer_unordered(50)
        .collect()
        .await;
    let hashed = hasher.checks.load(Ordering::SeqCst) - before;
    assert!(
        (1..=6).contains(&hashed),
        "{hashed} checks for 50 concurrent guesses"
    );
    let limited = outcomes
        .iter()
        .filter(|o| matches!(o, Err(LoginError::RateLimited { .. })))
        .count();
    assert_eq!(
        limited,
        50 - hashed,
        "every guess not checked was rate limited"
    );

    // And every check ran on the blocking pool, never on this (the only async) thread
    let threads = hasher.threads.lock().clone();
    assert!(!threads.is_empty());
    assert!(
        !threads.contains(&std::thread::current().id()),
        "{threads:?}"
    );
    Ok(())
}
