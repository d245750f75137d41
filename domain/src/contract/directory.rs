//! Contract suite for the relational repositories: every implementation
//! (in-memory, SQLite, MySQL) must pass [`directory_contract`] unchanged.
//! Each check takes the one repository it is about ([`TenantRepository`],
//! [`UserRepository`], [`AreaRepository`], [`DeviceRepository`],
//! [`AuditLog`]); only the checks that need rows of another aggregate
//! (memberships need tenants and users; audit pages need tenants) take the
//! whole [`Directory`].
//!
//! Beyond the promises written on the trait, the suite pins down the details
//! callers rely on and the implementations agree on:
//! - tenant slugs are unique (`Conflict`), like emails and device names;
//! - re-upserting a membership keeps its place in "oldest first";
//! - audit entries with equal timestamps come back last-appended first;
//! - a device or area may not reference another tenant's area (an error, not
//!   `Conflict`), and `set_password` on an unknown user is an error;
//! - device names order byte-wise (code point order), not case-insensitively;
//! - timestamps are kept to the microsecond (SQL stores integer microseconds);
//! - an identity link needs the user's membership in its tenant (an error
//!   otherwise), is re-pointed by linking again, matches issuer and subject
//!   exactly, and goes with the membership.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;
use crate::ids::{AreaId, DeviceId, PointKey, ProfileId, SessionFamily, TenantId, UserId};
use crate::model::{
    Area, AuditEntry, AuditOutcome, Device, DeviceScope, EmailAddress, Endpoint, Membership,
    PasswordHash, RecoveryCodeHash, RefreshSession, RefreshTokenHash, Role, Tenant, TenantSlug,
    TwoFactorEnrolment, User,
};
use crate::ports::{
    AreaRepository, AuditCursor, AuditFilter, AuditLog, AuditRecord, DeviceFilter,
    DeviceRepository, Directory, Page, TenantRepository, UserRepository,
};

/// Runs every check against `dir`, which must be empty. Panics on the first
/// broken promise, naming it.
pub async fn directory_contract(dir: &dyn Directory) {
    let world = World::seed(dir).await;
    tenants(dir, &world).await;
    users(dir, &world).await;
    memberships(dir, &world).await;
    areas(dir, &world).await;
    device_round_trip_and_conflicts(dir, &world).await;
    device_isolation(dir, &world).await;
    device_filters(dir, &world).await;
    device_search(dir, &world).await;
    device_pagination(dir, &world).await;
    audit(dir, &world).await;
    identity_links(dir, &world).await;
    administration(dir, &world).await;
    sessions(dir, &world).await;
    two_factor(dir, &world).await;
    platform_operators(dir).await;
}

/// Two tenants with areas and devices, shared by the checks below.
struct World {
    acme: Tenant,
    globex: Tenant,
    /// acme: `site` > `plant room`, and `office`.
    site: Area,
    plant_room: Area,
    office: Area,
    /// globex's only area.
    globex_site: Area,
    /// acme's devices, by name: see [`World::seed`].
    acme_devices: Vec<Device>,
    globex_devices: Vec<Device>,
}

/// Names of acme's devices and the area each lives in (index into
/// `[site, plant_room, office]`, or none). Mixed case on purpose: names order
/// byte-wise (`"PumpXA" < "Pump_A" < "boiler…"`), and LIKE metacharacters
/// (`%`, `_`, `!`, `\`) that a SQL store must escape.
const ACME_DEVICES: [(&str, Option<usize>); 8] = [
    ("Substation North", Some(0)),
    ("Boiler House 1", Some(1)),
    ("boiler house 2", Some(1)),
    ("Air Handler", Some(2)),
    ("Pump_A", None),
    ("PumpXA", Some(0)),
    ("Mixer 100%", None),
    ("Valve !1 \\ back", Some(2)),
];

fn tenant(id: u128, slug: &str, name: &str) -> Tenant {
    Tenant {
        id: TenantId::from_uuid(Uuid::from_u128(id)),
        slug: TenantSlug::new(slug).expect("contract: valid slug"),
        name: name.to_string(),
    }
}

fn area(tenant: &Tenant, parent: Option<&Area>, name: &str) -> Area {
    Area {
        id: AreaId::new(),
        tenant_id: tenant.id,
        parent_id: parent.map(|p| p.id),
        name: name.to_string(),
    }
}

fn device(tenant: &Tenant, area: Option<&Area>, name: &str, unit: u8) -> Device {
    // Units beyond a byte (a device instance of another protocol) must survive too.
    let unit = u32::from(unit) * 16_411;
    Device {
        id: DeviceId::new(),
        tenant_id: tenant.id,
        area_id: area.map(|a| a.id),
        name: name.to_string(),
        profile_id: ProfileId::new("ecl-comfort-310").expect("contract: valid profile id"),
        endpoint: Endpoint::new("127.0.0.1", 15020 + (unit % 1000) as u16, unit)
            .expect("contract: valid endpoint"),
    }
}

fn user(email: &str, name: &str, hash: Option<&str>) -> User {
    User {
        id: UserId::new(),
        email: EmailAddress::new(email).expect("contract: valid email"),
        display_name: name.to_string(),
        password_hash: hash.map(PasswordHash::from_phc),
        disabled: false,
        tokens_valid_from: None,
    }
}

/// The writes the admin use cases need: a tenant's members, disabling and
/// deleting users, renaming, moving and deleting areas and devices, each
/// within one tenant only. Runs last: it changes the world.
async fn administration(dir: &dyn Directory, w: &World) {
    let member = |u: &User, t: &Tenant, role| Membership {
        user_id: u.id,
        tenant_id: t.id,
        role,
        scope: DeviceScope::All,
    };
    let ann = user("ann@admin.test", "Ann", None);
    let ben = user("ben@admin.test", "Ben", None);
    for u in [&ann, &ben] {
        dir.insert_user(u).await.expect("contract: insert_user");
    }
    for m in [
        member(&ann, &w.acme, Role::Admin),
        member(&ben, &w.acme, Role::Basic),
        member(&ben, &w.globex, Role::Full),
    ] {
        dir.upsert_membership(&m).await.expect("contract: upsert");
    }
    let in_acme = dir
        .memberships_in(w.acme.id)
        .await
        .expect("memberships_in() failed");
    assert!(
        in_acme.iter().all(|m| m.tenant_id == w.acme.id),
        "memberships_in(tenant) must return that tenant's memberships only"
    );
    let ids: Vec<UserId> = in_acme.iter().map(|m| m.user_id).collect();
    let (a, b) = (
        ids.iter().position(|u| *u == ann.id),
        ids.iter().position(|u| *u == ben.id),
    );
    assert!(
        matches!((a, b), (Some(a), Some(b)) if a < b),
        "memberships_in(tenant) must list every member, oldest first: {ids:?}"
    );

    assert_eq!(dir.set_disabled(ben.id, true).await.ok(), Some(true));
    let stored = dir.user(ben.id).await.expect("user() failed");
    assert!(
        stored.is_some_and(|u| u.disabled),
        "set_disabled(true) must stick"
    );
    assert_eq!(dir.set_disabled(ben.id, false).await.ok(), Some(true));
    let stored = dir.user(ben.id).await.expect("user() failed");
    assert!(
        stored.is_some_and(|u| !u.disabled),
        "set_disabled(false) must stick"
    );
    assert_eq!(
        dir.set_disabled(UserId::new(), true).await.ok(),
        Some(false),
        "set_disabled on an unknown user must answer false"
    );

    let logout = at(1_800_000_000, 123_456);
    assert_eq!(dir.revoke_tokens(ben.id, logout).await.ok(), Some(true));
    let stored = dir.user(ben.id).await.expect("user() failed");
    assert_eq!(
        stored.and_then(|u| u.tokens_valid_from),
        Some(logout),
        "revoke_tokens must keep the instant to the microsecond"
    );
    assert_eq!(
        dir.revoke_tokens(UserId::new(), logout).await.ok(),
        Some(false)
    );

    assert_eq!(dir.delete_user(ben.id).await.ok(), Some(true));
    assert!(dir.user(ben.id).await.expect("user() failed").is_none());
    assert!(
        dir.memberships_of(ben.id)
            .await
            .expect("memberships_of() failed")
            .is_empty(),
        "a deleted user's memberships go with them"
    );
    assert_eq!(dir.delete_user(ben.id).await.ok(), Some(false));
    dir.insert_user(&user("ben@admin.test", "Ben again", None))
        .await
        .expect("a deleted user's email must be free again");

    // Areas: rename and move within the tenant; another tenant's id is unknown.
    let leaf = area(&w.acme, Some(&w.site), "Leaf");
    dir.insert_area(&leaf).await.expect("contract: insert_area");
    let moved = Area {
        name: "Moved leaf".into(),
        parent_id: Some(w.office.id),
        ..leaf.clone()
    };
    assert_eq!(dir.update_area(&moved).await.ok(), Some(true));
    let stored = dir.areas(w.acme.id).await.expect("areas() failed");
    assert!(
        stored.contains(&moved),
        "update_area must store name and parent"
    );
    let smuggled = Area {
        tenant_id: w.globex.id,
        ..moved.clone()
    };
    assert_eq!(
        dir.update_area(&smuggled).await.ok(),
        Some(false),
        "update_area must not touch another tenant's area"
    );
    let foreign_parent = Area {
        parent_id: Some(w.globex_site.id),
        ..moved.clone()
    };
    assert!(
        dir.update_area(&foreign_parent).await.is_err(),
        "a parent of another tenant must be refused"
    );
    assert_eq!(
        dir.delete_area(w.globex.id, leaf.id).await.ok(),
        Some(false)
    );
    assert_eq!(dir.delete_area(w.acme.id, leaf.id).await.ok(), Some(true));
    assert!(!dir
        .areas(w.acme.id)
        .await
        .expect("areas() failed")
        .iter()
        .any(|a| a.id == leaf.id));

    // Devices: replace within the tenant, conflicts on names, delete.
    let d = device(&w.acme, Some(&w.site), "Admin device", 9);
    dir.insert_device(&d)
        .await
        .expect("contract: insert_device");
    let changed = Device {
        name: "Admin device renamed".into(),
        area_id: Some(w.office.id),
        endpoint: Endpoint::new("10.0.0.9", 1502, 70_000).expect("contract: valid endpoint"),
        ..d.clone()
    };
    assert_eq!(dir.update_device(&changed).await.ok(), Some(true));
    assert_eq!(
        dir.device(w.acme.id, d.id).await.expect("device() failed"),
        Some(changed.clone()),
        "update_device must store every field"
    );
    let taken = Device {
        name: w.acme_devices[0].name.clone(),
        ..changed.clone()
    };
    assert!(
        is_conflict(&dir.update_device(&taken).await),
        "renaming a device to a taken name must be Conflict"
    );
    assert_eq!(
        dir.device(w.acme.id, d.id).await.expect("device() failed"),
        Some(changed.clone()),
        "a refused update must change nothing"
    );
    let smuggled = Device {
        tenant_id: w.globex.id,
        area_id: None,
        ..changed.clone()
    };
    assert_eq!(dir.update_device(&smuggled).await.ok(), Some(false));
    assert_eq!(dir.delete_device(w.globex.id, d.id).await.ok(), Some(false));
    assert_eq!(dir.delete_device(w.acme.id, d.id).await.ok(), Some(true));
    assert!(dir
        .device(w.acme.id, d.id)
        .await
        .expect("device() failed")
        .is_none());
}

/// A timestamp with whole microseconds, which every store keeps exactly.
/// Refresh tokens: stored by hash, retired once, revoked per family or
/// per user, and gone with their user.
async fn sessions(dir: &dyn Directory, w: &World) {
    let cam = user("cam@sessions.test", "Cam", None);
    let dee = user("dee@sessions.test", "Dee", None);
    for u in [&cam, &dee] {
        dir.insert_user(u).await.expect("contract: insert_user");
    }
    let now = at(1_800_000_000, 654_321);
    let session = |token: &str, u: &User, family: SessionFamily| RefreshSession {
        token_hash: RefreshTokenHash::of(token),
        family,
        user_id: u.id,
        tenant_id: w.acme.id,
        issued_at: now,
        expires_at: at(1_800_086_400, 1),
        retired: false,
    };
    let (first, second) = (SessionFamily::new(), SessionFamily::new());
    let a = session("token-a", &cam, first);
    dir.insert_session(&a)
        .await
        .expect("contract: insert_session");
    assert!(
        matches!(dir.insert_session(&a).await, Err(StoreError::Conflict(_))),
        "insert_session must return Conflict for a stored hash"
    );
    assert_eq!(
        dir.session(&a.token_hash).await.expect("session() failed"),
        Some(a.clone()),
        "a session must read back as stored, times to the microsecond"
    );
    assert!(dir
        .session(&RefreshTokenHash::of("unknown"))
        .await
        .expect("session() failed")
        .is_none());
    assert!(dir
        .family_active(first, now)
        .await
        .expect("family_active() failed"));

    // Retired exactly once; a family whose only token is retired is over.
    assert_eq!(dir.retire_session(&a.token_hash).await.ok(), Some(true));
    assert_eq!(
        dir.retire_session(&a.token_hash).await.ok(),
        Some(false),
        "retiring a retired token must answer false"
    );
    let stored = dir.session(&a.token_hash).await.expect("session() failed");
    assert!(stored.is_some_and(|s| s.retired), "retired must stick");
    assert!(!dir
        .family_active(first, now)
        .await
        .expect("family_active() failed"));
    let b = session("token-b", &cam, first);
    dir.insert_session(&b)
        .await
        .expect("contract: insert_session");
    assert!(dir
        .family_active(first, now)
        .await
        .expect("family_active() failed"));
    assert!(
        !dir.family_active(first, b.expires_at)
            .await
            .expect("family_active() failed"),
        "an expired token keeps no family active"
    );

    // Revoking one family leaves the user's other family and other users.
    let c = session("token-c", &cam, second);
    let d = session("token-d", &dee, SessionFamily::new());
    for s in [&c, &d] {
        dir.insert_session(s)
            .await
            .expect("contract: insert_session");
    }
    assert_eq!(dir.revoke_family(first).await.ok(), Some(2));
    assert!(dir
        .session(&b.token_hash)
        .await
        .expect("session()")
        .is_none());
    assert!(dir
        .session(&c.token_hash)
        .await
        .expect("session()")
        .is_some());
    assert_eq!(dir.revoke_user_sessions(cam.id).await.ok(), Some(1));
    assert!(dir
        .session(&c.token_hash)
        .await
        .expect("session()")
        .is_none());
    assert!(dir
        .session(&d.token_hash)
        .await
        .expect("session()")
        .is_some());

    // A deleted user's sessions go with them.
    assert_eq!(dir.delete_user(dee.id).await.ok(), Some(true));
    assert!(
        dir.session(&d.token_hash)
            .await
            .expect("session()")
            .is_none(),
        "a deleted user's sessions go with them"
    );
}

/// Two-factor enrolments: replaced whole, confirmed once, each step and
/// recovery code used once, gone with their user; the tenant requirement
/// per tenant.
async fn two_factor(dir: &dyn Directory, w: &World) {
    let eve = user("eve@two-factor.test", "Eve", None);
    let fay = user("fay@two-factor.test", "Fay", None);
    for u in [&eve, &fay] {
        dir.insert_user(u).await.expect("contract: insert_user");
    }
    let codes = |u: &User, n: usize| -> Vec<RecoveryCodeHash> {
        (0..n)
            .filter_map(|_| RecoveryCodeHash::of(u.id, &RecoveryCodeHash::generate_code()))
            .collect()
    };
    let first = TwoFactorEnrolment {
        user_id: eve.id,
        sealed_secret: "v1:sealed-one".into(),
        confirmed: false,
        last_step: None,
        recovery_codes: codes(&eve, 3),
    };
    assert_eq!(dir.two_factor(eve.id).await.ok(), Some(None));
    dir.put_two_factor(&first)
        .await
        .expect("contract: put_two_factor");
    let read = dir.two_factor(eve.id).await.expect("two_factor()");
    let sorted = |e: Option<TwoFactorEnrolment>| {
        e.map(|mut e| {
            e.recovery_codes.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            e
        })
    };
    assert_eq!(
        sorted(read),
        sorted(Some(first.clone())),
        "an enrolment reads back as stored"
    );
    assert!(
        dir.put_two_factor(&TwoFactorEnrolment {
            user_id: UserId::new(),
            ..first.clone()
        })
        .await
        .is_err(),
        "an enrolment of an unknown user is an error"
    );

    // Replacing drops the old secret and codes.
    let second = TwoFactorEnrolment {
        sealed_secret: "v1:sealed-two".into(),
        recovery_codes: codes(&eve, 2),
        ..first.clone()
    };
    dir.put_two_factor(&second)
        .await
        .expect("contract: put_two_factor");
    let read = dir
        .two_factor(eve.id)
        .await
        .expect("two_factor()")
        .expect("contract: enrolment");
    assert_eq!(read.sealed_secret, "v1:sealed-two");
    assert_eq!(read.recovery_codes.len(), 2, "old recovery codes are gone");
    assert_eq!(
        dir.use_recovery_code(eve.id, &first.recovery_codes[0])
            .await
            .ok(),
        Some(false),
        "a replaced recovery code no longer works"
    );

    // Steps: none before confirmation, then only later ones, once each.
    assert_eq!(dir.use_totp_step(eve.id, 100).await.ok(), Some(false));
    assert_eq!(dir.confirm_two_factor(eve.id, 100).await.ok(), Some(true));
    assert_eq!(
        dir.confirm_two_factor(eve.id, 101).await.ok(),
        Some(false),
        "confirming twice answers false"
    );
    assert_eq!(dir.use_totp_step(eve.id, 100).await.ok(), Some(false));
    assert_eq!(dir.use_totp_step(eve.id, 99).await.ok(), Some(false));
    assert_eq!(dir.use_totp_step(eve.id, 101).await.ok(), Some(true));
    assert_eq!(
        dir.use_totp_step(eve.id, 101).await.ok(),
        Some(false),
        "a step works once"
    );
    let read = dir
        .two_factor(eve.id)
        .await
        .expect("two_factor()")
        .expect("contract: enrolment");
    assert!(read.confirmed);
    assert_eq!(read.last_step, Some(101));

    // Recovery codes: once each, and only the owner's.
    let code = second.recovery_codes[0].clone();
    assert_eq!(dir.use_recovery_code(fay.id, &code).await.ok(), Some(false));
    assert_eq!(dir.use_recovery_code(eve.id, &code).await.ok(), Some(true));
    assert_eq!(dir.use_recovery_code(eve.id, &code).await.ok(), Some(false));
    let left = dir
        .two_factor(eve.id)
        .await
        .expect("two_factor()")
        .map(|e| e.recovery_codes);
    assert_eq!(left, Some(vec![second.recovery_codes[1].clone()]));

    // Deleting, and going with the user.
    assert_eq!(dir.delete_two_factor(fay.id).await.ok(), Some(false));
    dir.put_two_factor(&TwoFactorEnrolment {
        user_id: fay.id,
        recovery_codes: codes(&fay, 1),
        ..first.clone()
    })
    .await
    .expect("contract: put_two_factor");
    assert_eq!(dir.delete_two_factor(eve.id).await.ok(), Some(true));
    assert_eq!(dir.two_factor(eve.id).await.ok(), Some(None));
    assert_eq!(dir.delete_user(fay.id).await.ok(), Some(true));
    assert_eq!(
        dir.two_factor(fay.id).await.ok(),
        Some(None),
        "an enrolment goes with its user"
    );

    // The requirement is per tenant.
    assert_eq!(dir.two_factor_required(w.acme.id).await.ok(), Some(false));
    assert_eq!(
        dir.set_two_factor_required(w.acme.id, true).await.ok(),
        Some(true)
    );
    assert_eq!(
        dir.set_two_factor_required(w.acme.id, true).await.ok(),
        Some(true),
        "setting it again is fine"
    );
    assert_eq!(dir.two_factor_required(w.acme.id).await.ok(), Some(true));
    assert_eq!(dir.two_factor_required(w.globex.id).await.ok(), Some(false));
    assert_eq!(
        dir.set_two_factor_required(TenantId::new(), true)
            .await
            .ok(),
        Some(false),
        "an unknown tenant answers false"
    );
    assert_eq!(
        dir.set_two_factor_required(w.acme.id, false).await.ok(),
        Some(true)
    );
    assert_eq!(dir.two_factor_required(w.acme.id).await.ok(), Some(false));
}

/// Platform operator grants: once each, revocable, gone with their user,
/// and only for existing users.
async fn platform_operators(dir: &dyn Directory) {
    let gus = user("gus@platform.test", "Gus", None);
    let hal = user("hal@platform.test", "Hal", None);
    for u in [&gus, &hal] {
        dir.insert_user(u).await.expect("contract: insert_user");
    }
    assert_eq!(dir.is_operator(gus.id).await.ok(), Some(false));
    assert_eq!(dir.grant_operator(gus.id).await.ok(), Some(true));
    assert_eq!(
        dir.grant_operator(gus.id).await.ok(),
        Some(false),
        "granting twice answers false"
    );
    assert_eq!(dir.is_operator(gus.id).await.ok(), Some(true));
    assert_eq!(dir.is_operator(hal.id).await.ok(), Some(false));
    assert!(
        dir.grant_operator(UserId::new()).await.is_err(),
        "granting an unknown user is an error"
    );
    assert_eq!(dir.revoke_operator(hal.id).await.ok(), Some(false));
    assert_eq!(dir.revoke_operator(gus.id).await.ok(), Some(true));
    assert_eq!(dir.is_operator(gus.id).await.ok(), Some(false));
    assert_eq!(dir.grant_operator(hal.id).await.ok(), Some(true));
    assert_eq!(dir.delete_user(hal.id).await.ok(), Some(true));
    assert_eq!(
        dir.is_operator(hal.id).await.ok(),
        Some(false),
        "a grant goes with its user"
    );
}

fn at(secs: i64, micros: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, micros * 1_000).expect("contract: valid timestamp")
}

fn names(devices: &[Device]) -> Vec<&str> {
    devices.iter().map(|d| d.name.as_str()).collect()
}

fn is_conflict<T: std::fmt::Debug>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict(_)))
}

impl World {
    async fn seed(dir: &dyn Directory) -> World {
        // Ids chosen so id order differs from insertion order.
        let acme = tenant(
            0xffff_0000_0000_4000_8000_0000_0000_0001,
            "acme",
            "Acme Heating",
        );
        let globex = tenant(
            0x0000_0000_0000_4000_8000_0000_0000_0002,
            "globex",
            "Globex Energy",
        );
        for t in [&acme, &globex] {
            dir.insert_tenant(t).await.unwrap_or_else(|e| {
                panic!(
                    "insert_tenant({}) failed on an empty store: {e}",
                    t.slug.as_str()
                )
            });
        }

        let site = area(&acme, None, "Site");
        let plant_room = area(&acme, Some(&site), "Plant room");
        let office = area(&acme, None, "Office");
        let globex_site = area(&globex, None, "Globex site");
        for a in [&site, &plant_room, &office, &globex_site] {
            dir.insert_area(a)
                .await
                .unwrap_or_else(|e| panic!("insert_area({}) failed: {e}", a.name));
        }

        let acme_areas = [&site, &plant_room, &office];
        let mut acme_devices = Vec::new();
        for (unit, (name, area_index)) in (1u8..).zip(ACME_DEVICES) {
            let d = device(&acme, area_index.map(|i| acme_areas[i]), name, unit);
            dir.insert_device(&d)
                .await
                .unwrap_or_else(|e| panic!("insert_device({name}) failed: {e}"));
            acme_devices.push(d);
        }
        // Same names as acme's on purpose: names are unique per tenant only,
        // and every acme search below would also match these.
        let mut globex_devices = Vec::new();
        for (unit, name) in (1u8..).zip(["Boiler House 1", "Pump_A", "Globex only"]) {
            let d = device(&globex, Some(&globex_site), name, unit);
            dir.insert_device(&d).await.unwrap_or_else(|e| {
                panic!("insert_device({name}) in a second tenant failed; names must be unique per tenant only: {e}")
            });
            globex_devices.push(d);
        }

        World {
            acme,
            globex,
            site,
            plant_room,
            office,
            globex_site,
            acme_devices,
            globex_devices,
        }
    }

    fn acme(&self, name: &str) -> &Device {
        self.acme_devices
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("contract bug: no acme device {name}"))
    }

    /// acme's devices matching `keep`, in the promised order (name, then id).
    fn acme_sorted(&self, keep: impl Fn(&Device) -> bool) -> Vec<Device> {
        let mut out: Vec<Device> = self
            .acme_devices
            .iter()
            .filter(|d| keep(d))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out
    }
}

async fn tenants(dir: &dyn TenantRepository, w: &World) {
    for t in [&w.acme, &w.globex] {
        let by_id = dir.tenant(t.id).await.expect("tenant() failed");
        assert_eq!(
            by_id.as_ref(),
            Some(t),
            "tenant(id) must return the inserted tenant"
        );
        let by_slug = dir
            .tenant_by_slug(t.slug.as_str())
            .await
            .expect("tenant_by_slug() failed");
        assert_eq!(
            by_slug.as_ref(),
            Some(t),
            "tenant_by_slug must return the inserted tenant"
        );
    }
    assert_eq!(
        dir.tenant(TenantId::new()).await.expect("tenant() failed"),
        None,
        "unknown tenant id must be None"
    );
    assert_eq!(
        dir.tenant_by_slug("nobody")
            .await
            .expect("tenant_by_slug() failed"),
        None,
        "unknown slug must be None"
    );

    let same_slug = Tenant {
        id: TenantId::new(),
        ..tenant(1, "acme", "Another Acme")
    };
    assert!(
        is_conflict(&dir.insert_tenant(&same_slug).await),
        "a second tenant with slug `acme` must be refused with Conflict"
    );
    let same_id = Tenant {
        slug: TenantSlug::new("acme-two").expect("contract: valid slug"),
        ..w.acme.clone()
    };
    assert!(
        is_conflict(&dir.insert_tenant(&same_id).await),
        "inserting a tenant id twice must be refused with Conflict"
    );
    assert_eq!(
        dir.tenant(w.acme.id)
            .await
            .expect("tenant() failed")
            .as_ref(),
        Some(&w.acme),
        "a refused insert must not change the stored tenant"
    );
}

async fn users(dir: &dyn UserRepository, _w: &World) {
    let alice = user(
        "alice@acme.test",
        "Alice",
        Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
    );
    let bob = user("bob@acme.test", "Bob", None);
    for u in [&alice, &bob] {
        dir.insert_user(u)
            .await
            .unwrap_or_else(|e| panic!("insert_user({}) failed: {e}", u.email));
    }
    for u in [&alice, &bob] {
        assert_eq!(
            dir.user(u.id).await.expect("user() failed").as_ref(),
            Some(u),
            "user(id) round trip"
        );
        assert_eq!(
            dir.user_by_email(&u.email)
                .await
                .expect("user_by_email() failed")
                .as_ref(),
            Some(u),
            "user_by_email round trip"
        );
    }
    assert_eq!(
        dir.user(UserId::new()).await.expect("user() failed"),
        None,
        "unknown user id must be None"
    );
    let nobody = EmailAddress::new("nobody@acme.test").expect("contract: valid email");
    assert_eq!(
        dir.user_by_email(&nobody)
            .await
            .expect("user_by_email() failed"),
        None,
        "unknown email must be None"
    );

    // EmailAddress lower-cases, so this is the same address as alice's.
    let impostor = user("ALICE@acme.test", "Not Alice", None);
    let result = dir.insert_user(&impostor).await;
    assert!(
        is_conflict(&result),
        "duplicate email must be Conflict, got {result:?}"
    );
    assert_eq!(
        dir.user(impostor.id).await.expect("user() failed"),
        None,
        "a refused user must not be stored"
    );
    assert_eq!(
        dir.user_by_email(&alice.email)
            .await
            .expect("user_by_email() failed")
            .as_ref(),
        Some(&alice),
        "a refused duplicate must not replace the original user"
    );
    let same_id = User {
        email: EmailAddress::new("alice2@acme.test").expect("contract: valid email"),
        ..alice.clone()
    };
    assert!(
        is_conflict(&dir.insert_user(&same_id).await),
        "inserting a user id twice must be Conflict"
    );

    let new_hash = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3aGFzaA");
    dir.set_password(bob.id, &new_hash)
        .await
        .expect("set_password() failed");
    let bob_now = dir
        .user(bob.id)
        .await
        .expect("user() failed")
        .expect("bob must still exist");
    assert_eq!(
        bob_now.password_hash.as_ref(),
        Some(&new_hash),
        "set_password must store the new hash"
    );
    assert_eq!(
        dir.user(alice.id).await.expect("user() failed").as_ref(),
        Some(&alice),
        "set_password must not touch other users"
    );
    assert!(
        dir.set_password(UserId::new(), &new_hash).await.is_err(),
        "set_password on an unknown user must be an error"
    );
}

async fn memberships(dir: &dyn Directory, w: &World) {
    let tech = user("tech@service.test", "Technician", None);
    dir.insert_user(&tech)
        .await
        .expect("insert_user(tech) failed");
    let third = tenant(
        0x8888_0000_0000_4000_8000_0000_0000_0003,
        "initech",
        "Initech",
    );
    dir.insert_tenant(&third)
        .await
        .expect("insert_tenant(initech) failed");

    let m_acme = Membership {
        user_id: tech.id,
        tenant_id: w.acme.id,
        role: Role::Limited,
        scope: DeviceScope::Restricted {
            areas: vec![w.site.id, w.office.id],
            devices: vec![w.acme("Pump_A").id],
        },
    };
    // Inserted in an order that is neither id order nor slug order.
    let m_globex = Membership {
        user_id: tech.id,
        tenant_id: w.globex.id,
        role: Role::ReadOnly,
        scope: DeviceScope::All,
    };
    let m_third = Membership {
        user_id: tech.id,
        tenant_id: third.id,
        role: Role::Admin,
        scope: DeviceScope::All,
    };
    for m in [&m_acme, &m_globex, &m_third] {
        dir.upsert_membership(m)
            .await
            .expect("upsert_membership() failed");
    }
    assert_eq!(
        dir.memberships_of(tech.id)
            .await
            .expect("memberships_of() failed"),
        vec![m_acme.clone(), m_globex.clone(), m_third.clone()],
        "memberships_of must return every membership, oldest first, with role and scope intact"
    );

    // Replacing changes role and scope but not the membership's age.
    let m_acme2 = Membership {
        role: Role::Full,
        scope: DeviceScope::Restricted {
            areas: vec![],
            devices: vec![w.acme("Air Handler").id],
        },
        ..m_acme.clone()
    };
    dir.upsert_membership(&m_acme2)
        .await
        .expect("upsert_membership() (replace) failed");
    assert_eq!(
        dir.memberships_of(tech.id)
            .await
            .expect("memberships_of() failed"),
        vec![m_acme2.clone(), m_globex.clone(), m_third.clone()],
        "upsert of an existing (user, tenant) must replace it in place, keeping it oldest"
    );
    assert_eq!(
        dir.membership(tech.id, w.acme.id)
            .await
            .expect("membership() failed"),
        Some(m_acme2),
        "membership(user, tenant) must return the replaced membership"
    );
    assert_eq!(
        dir.membership(tech.id, w.globex.id)
            .await
            .expect("membership() failed"),
        Some(m_globex.clone()),
        "membership(user, tenant) must be per tenant"
    );

    // Removing one membership leaves the others, in order, and only once.
    assert!(
        dir.remove_membership(tech.id, w.globex.id)
            .await
            .expect("remove_membership() failed"),
        "remove_membership must report an existing membership as removed"
    );
    assert!(
        !dir.remove_membership(tech.id, w.globex.id)
            .await
            .expect("remove_membership() (again) failed"),
        "remove_membership of a missing membership must report false"
    );
    assert_eq!(
        dir.membership(tech.id, w.globex.id)
            .await
            .expect("membership() failed"),
        None,
        "a removed membership must be gone"
    );
    let left = dir
        .memberships_of(tech.id)
        .await
        .expect("memberships_of() failed");
    assert_eq!(
        left.iter().map(|m| m.tenant_id).collect::<Vec<_>>(),
        vec![w.acme.id, m_third.tenant_id],
        "removing a membership must keep the others in order"
    );
    dir.upsert_membership(&m_globex)
        .await
        .expect("upsert_membership() (re-add) failed");

    let stranger = user("stranger@acme.test", "Stranger", None);
    dir.insert_user(&stranger)
        .await
        .expect("insert_user(stranger) failed");
    assert_eq!(
        dir.membership(stranger.id, w.acme.id)
            .await
            .expect("membership() failed"),
        None,
        "a user without membership must get None"
    );
    assert!(
        dir.memberships_of(stranger.id)
            .await
            .expect("memberships_of() failed")
            .is_empty(),
        "a user without memberships must get an empty list"
    );
}

async fn areas(dir: &dyn AreaRepository, w: &World) {
    let mut acme = dir.areas(w.acme.id).await.expect("areas() failed");
    acme.sort_by_key(|a| a.id);
    let mut expected = vec![w.site.clone(), w.plant_room.clone(), w.office.clone()];
    expected.sort_by_key(|a| a.id);
    assert_eq!(
        acme, expected,
        "areas(tenant) must return exactly the tenant's areas, parents intact"
    );
    assert_eq!(
        dir.areas(w.globex.id).await.expect("areas() failed"),
        vec![w.globex_site.clone()],
        "areas(tenant) must not return another tenant's areas"
    );
    assert!(
        dir.areas(TenantId::new())
            .await
            .expect("areas() failed")
            .is_empty(),
        "unknown tenant has no areas"
    );

    let dup = Area {
        name: "Duplicate".into(),
        ..w.office.clone()
    };
    assert!(
        is_conflict(&dir.insert_area(&dup).await),
        "inserting an area id twice must be Conflict"
    );

    let foreign_parent = area(&w.acme, Some(&w.globex_site), "Smuggled");
    assert!(
        dir.insert_area(&foreign_parent).await.is_err(),
        "an area whose parent belongs to another tenant must be refused"
    );
    assert!(
        !dir.areas(w.acme.id)
            .await
            .expect("areas() failed")
            .iter()
            .any(|a| a.id == foreign_parent.id),
        "a refused area must not be stored"
    );
}

async fn device_round_trip_and_conflicts(dir: &dyn DeviceRepository, w: &World) {
    for d in w.acme_devices.iter().chain(&w.globex_devices) {
        assert_eq!(
            dir.device(d.tenant_id, d.id)
                .await
                .expect("device() failed")
                .as_ref(),
            Some(d),
            "device(tenant, id) must round-trip every field of {}",
            d.name
        );
    }
    assert_eq!(
        dir.device(w.acme.id, DeviceId::new())
            .await
            .expect("device() failed"),
        None,
        "unknown device id must be None"
    );

    let dup = device(&w.acme, None, "Boiler House 1", 9);
    let result = dir.insert_device(&dup).await;
    assert!(
        is_conflict(&result),
        "duplicate device name in one tenant must be Conflict, got {result:?}"
    );
    assert_eq!(
        dir.device(w.acme.id, dup.id)
            .await
            .expect("device() failed"),
        None,
        "a refused device must not be stored"
    );
    let same_id = Device {
        name: "Fresh name".into(),
        ..w.acme("Air Handler").clone()
    };
    assert!(
        is_conflict(&dir.insert_device(&same_id).await),
        "inserting a device id twice must be Conflict"
    );

    let smuggled = device(&w.acme, Some(&w.globex_site), "Smuggled", 9);
    let result = dir.insert_device(&smuggled).await;
    assert!(
        result.is_err() && !is_conflict(&result),
        "a device in another tenant's area must be refused (not as Conflict), got {result:?}"
    );

    let mut all = dir.all_devices().await.expect("all_devices() failed");
    all.sort_by_key(|d| d.id);
    let mut expected: Vec<Device> = w
        .acme_devices
        .iter()
        .chain(&w.globex_devices)
        .cloned()
        .collect();
    expected.sort_by_key(|d| d.id);
    assert_eq!(
        all, expected,
        "all_devices must return every device of every tenant, and only stored ones"
    );
}

async fn device_isolation(dir: &dyn DeviceRepository, w: &World) {
    let theirs = &w.globex_devices[0];
    assert_eq!(
        dir.device(w.acme.id, theirs.id)
            .await
            .expect("device() failed"),
        None,
        "device(A, id of B's device) must be None"
    );
    let ours = w.acme("Air Handler");
    assert_eq!(
        dir.device(w.globex.id, ours.id)
            .await
            .expect("device() failed"),
        None,
        "device(B, id of A's device) must be None"
    );

    // Every way of naming globex's devices from acme must come back empty of them.
    let globex_ids: Vec<DeviceId> = w.globex_devices.iter().map(|d| d.id).collect();
    let filters = [
        DeviceFilter::default(),
        DeviceFilter {
            areas: Some(vec![w.globex_site.id]),
            also_devices: globex_ids.clone(),
            search: None,
        },
        DeviceFilter {
            areas: None,
            also_devices: globex_ids.clone(),
            search: Some("Globex".into()),
        },
        DeviceFilter {
            areas: Some(vec![]),
            also_devices: globex_ids.clone(),
            search: None,
        },
    ];
    for filter in &filters {
        let page = dir
            .devices(w.acme.id, filter, 0, 100)
            .await
            .expect("devices() failed");
        assert!(
            page.items.iter().all(|d| d.tenant_id == w.acme.id),
            "devices(A, {filter:?}) returned another tenant's device"
        );
        let expected = page.items.len() as u64;
        assert_eq!(
            page.total, expected,
            "devices(A, {filter:?}) total must count only A's matches"
        );
    }
    let none = dir
        .devices(w.acme.id, &filters[3], 0, 100)
        .await
        .expect("devices() failed");
    assert_eq!(
        none,
        Page {
            items: vec![],
            total: 0
        },
        "B's areas and devices must match nothing for A"
    );
    let globex = dir
        .devices(w.globex.id, &DeviceFilter::default(), 0, 100)
        .await
        .expect("devices() failed");
    assert_eq!(globex.total, 3, "devices(B) must count only B's devices");
    assert!(
        globex.items.iter().all(|d| d.tenant_id == w.globex.id),
        "devices(B) returned A's device"
    );
    let unknown = dir
        .devices(TenantId::new(), &DeviceFilter::default(), 0, 100)
        .await
        .expect("devices() failed");
    assert_eq!(
        unknown,
        Page {
            items: vec![],
            total: 0
        },
        "an unknown tenant has no devices"
    );
}

async fn device_filters(dir: &dyn DeviceRepository, w: &World) {
    let list = |filter: DeviceFilter| async move {
        dir.devices(w.acme.id, &filter, 0, 100)
            .await
            .unwrap_or_else(|e| panic!("devices() failed for {filter:?}: {e}"))
    };

    let all = list(DeviceFilter::default()).await;
    let expected = w.acme_sorted(|_| true);
    assert_eq!(
        all.items, expected,
        "no filter: every device of the tenant, including those without area, by name"
    );
    assert_eq!(all.total, expected.len() as u64, "no filter: total");

    // Only the listed areas; the store does not expand subtrees (the use case does).
    let site_only = list(DeviceFilter {
        areas: Some(vec![w.site.id]),
        ..DeviceFilter::default()
    })
    .await;
    let expected = w.acme_sorted(|d| d.area_id == Some(w.site.id));
    assert_eq!(
        names(&site_only.items),
        names(&expected),
        "areas = [site] must return exactly site's devices"
    );
    assert_eq!(
        site_only.total,
        expected.len() as u64,
        "areas = [site]: total"
    );

    let two_areas = list(DeviceFilter {
        areas: Some(vec![w.plant_room.id, w.office.id]),
        ..DeviceFilter::default()
    })
    .await;
    let expected =
        w.acme_sorted(|d| d.area_id == Some(w.plant_room.id) || d.area_id == Some(w.office.id));
    assert_eq!(
        names(&two_areas.items),
        names(&expected),
        "areas = [plant room, office]"
    );

    let pump = w.acme("Pump_A").id;
    let air = w.acme("Air Handler").id;
    let with_extra = list(DeviceFilter {
        areas: Some(vec![w.plant_room.id]),
        also_devices: vec![pump, air],
        search: None,
    })
    .await;
    let expected =
        w.acme_sorted(|d| d.area_id == Some(w.plant_room.id) || d.id == pump || d.id == air);
    assert_eq!(
        names(&with_extra.items),
        names(&expected),
        "also_devices must be added to the area matches (including devices without area)"
    );
    assert_eq!(
        with_extra.total,
        expected.len() as u64,
        "areas + also_devices: total"
    );

    let only_devices = list(DeviceFilter {
        areas: Some(vec![]),
        also_devices: vec![pump],
        search: None,
    })
    .await;
    assert_eq!(
        names(&only_devices.items),
        vec!["Pump_A"],
        "areas = [] with also_devices: only those devices"
    );

    let nothing = list(DeviceFilter {
        areas: Some(vec![]),
        also_devices: vec![],
        search: None,
    })
    .await;
    assert_eq!(
        nothing,
        Page {
            items: vec![],
            total: 0
        },
        "areas = [] and no devices: nothing"
    );

    let scoped_search = list(DeviceFilter {
        areas: Some(vec![w.plant_room.id]),
        also_devices: vec![pump],
        search: Some("pump".into()),
    })
    .await;
    assert_eq!(
        names(&scoped_search.items),
        vec!["Pump_A"],
        "search must narrow the scope, never widen it"
    );
}

async fn device_search(dir: &dyn DeviceRepository, w: &World) {
    let search = |needle: &'static str| async move {
        let filter = DeviceFilter {
            search: Some(needle.to_string()),
            ..DeviceFilter::default()
        };
        dir.devices(w.acme.id, &filter, 0, 100)
            .await
            .unwrap_or_else(|e| panic!("devices() failed for search {needle:?}: {e}"))
    };
    let cases: [(&str, &[&str]); 9] = [
        ("BOILER", &["Boiler House 1", "boiler house 2"]),
        ("house 1", &["Boiler House 1"]),
        ("oUsE", &["Boiler House 1", "boiler house 2"]),
        // `_` and `%` are LIKE wildcards: they must match only themselves.
        ("_", &["Pump_A"]),
        ("p_a", &["Pump_A"]),
        ("%", &["Mixer 100%"]),
        ("0%", &["Mixer 100%"]),
        ("!1 \\", &["Valve !1 \\ back"]),
        ("no such device", &[]),
    ];
    for (needle, expected) in cases {
        let page = search(needle).await;
        assert_eq!(
            names(&page.items),
            expected.to_vec(),
            "search {needle:?} must be a case-insensitive substring match"
        );
        assert_eq!(
            page.total,
            expected.len() as u64,
            "search {needle:?}: total"
        );
    }
}

async fn device_pagination(dir: &dyn DeviceRepository, w: &World) {
    let all = w.acme_sorted(|_| true);
    let total = all.len() as u64;
    let filter = DeviceFilter::default();
    let mut walked = Vec::new();
    let mut offset = 0;
    while offset < total {
        let page = dir
            .devices(w.acme.id, &filter, offset, 3)
            .await
            .expect("devices() failed");
        assert_eq!(
            page.total, total,
            "total must count all matches, not the page (offset {offset})"
        );
        assert!(
            page.items.len() <= 3,
            "a page must hold at most `limit` items"
        );
        offset += 3;
        walked.extend(page.items);
    }
    assert_eq!(
        walked, all,
        "walking pages must visit every device once, ordered by name then id"
    );

    let middle = dir
        .devices(w.acme.id, &filter, 2, 2)
        .await
        .expect("devices() failed");
    assert_eq!(
        middle.items,
        all[2..4].to_vec(),
        "offset 2, limit 2 must skip the first two"
    );
    let past = dir
        .devices(w.acme.id, &filter, total + 5, 10)
        .await
        .expect("devices() failed");
    assert_eq!(
        past,
        Page {
            items: vec![],
            total
        },
        "an offset past the end: no items, same total"
    );
    let zero = dir
        .devices(w.acme.id, &filter, 0, 0)
        .await
        .expect("devices() failed");
    assert_eq!(
        zero,
        Page {
            items: vec![],
            total
        },
        "limit 0: no items, same total"
    );

    let searched = dir
        .devices(
            w.acme.id,
            &DeviceFilter {
                search: Some("boiler".into()),
                ..DeviceFilter::default()
            },
            1,
            1,
        )
        .await
        .expect("devices() failed");
    assert_eq!(
        names(&searched.items),
        vec!["boiler house 2"],
        "pagination applies after search"
    );
    assert_eq!(searched.total, 2, "total counts the search's matches");
}

/// The window the audit checks coalesce within.
fn hour() -> chrono::Duration {
    chrono::Duration::hours(1)
}

/// A fresh tenant of its own, so each audit check starts from an empty log.
async fn audit_tenant(dir: &dyn Directory, id: u128, slug: &str) -> Tenant {
    let t = tenant(id, slug, slug);
    dir.insert_tenant(&t)
        .await
        .unwrap_or_else(|e| panic!("insert_tenant({slug}) failed: {e}"));
    t
}

fn audit_entry(
    tenant: &Tenant,
    actor: UserId,
    device: Option<DeviceId>,
    when: DateTime<Utc>,
    outcome: AuditOutcome,
    detail: &str,
) -> AuditEntry {
    AuditEntry {
        tenant_id: tenant.id,
        at: when,
        actor,
        action: "write_parameter".into(),
        device_id: device,
        point: device
            .map(|_| PointKey::new("room_setpoint_comfort").expect("contract: valid point key")),
        old_value: None,
        new_value: Some(21.0),
        outcome,
        detail: detail.to_string(),
        count: 1,
        last_at: when,
    }
}

async fn list(
    dir: &dyn AuditLog,
    tenant: &Tenant,
    filter: &AuditFilter,
    after: Option<AuditCursor>,
    limit: u64,
) -> Vec<AuditRecord> {
    dir.audit(tenant.id, filter, after, limit)
        .await
        .unwrap_or_else(|e| panic!("audit({filter:?}, {after:?}, {limit}) failed: {e}"))
}

fn entries(records: &[AuditRecord]) -> Vec<AuditEntry> {
    records.iter().map(|r| r.entry.clone()).collect()
}

fn details(records: &[AuditRecord]) -> Vec<&str> {
    records.iter().map(|r| r.entry.detail.as_str()).collect()
}

async fn append(dir: &dyn AuditLog, entry: &AuditEntry, window: chrono::Duration) {
    dir.append_audit(entry, window)
        .await
        .unwrap_or_else(|err| panic!("append_audit({}) failed: {err}", entry.detail));
}

async fn audit(dir: &dyn Directory, w: &World) {
    audit_order(dir, w).await;
    audit_pages(dir).await;
    audit_filters(dir).await;
    audit_coalescing(dir).await;
}

async fn audit_order(dir: &dyn AuditLog, w: &World) {
    let actor = UserId::new();
    let point = PointKey::new("room_setpoint_comfort").expect("contract: valid point key");
    let entry = |tenant: &Tenant, when: DateTime<Utc>, detail: &str| AuditEntry {
        device_id: None,
        point: None,
        new_value: None,
        outcome: AuditOutcome::Refused,
        ..audit_entry(tenant, actor, None, when, AuditOutcome::Refused, detail)
    };
    let full = AuditEntry {
        device_id: Some(w.acme("Boiler House 1").id),
        point: Some(point),
        old_value: Some(21.5),
        new_value: Some(-3.25),
        outcome: AuditOutcome::Confirmed,
        // As if imported from a coalesced run: stored as given.
        count: 3,
        last_at: at(1_700_000_250, 7),
        ..entry(&w.acme, at(1_700_000_200, 123_456), "read back 22.5 °C")
    };
    let first = entry(&w.acme, at(1_700_000_100, 1), "first");
    let tie_a = entry(&w.acme, at(1_700_000_300, 0), "tie appended first");
    let tie_b = entry(&w.acme, at(1_700_000_300, 0), "tie appended second");
    let theirs = AuditEntry {
        device_id: Some(w.globex_devices[0].id),
        ..entry(&w.globex, at(1_700_000_999, 0), "globex")
    };
    // Appended out of time order: the log orders by `at`, not by arrival.
    // No coalescing here (zero window), whatever the outcomes.
    for e in [&full, &theirs, &first, &tie_a, &tie_b] {
        append(dir, e, chrono::Duration::zero()).await;
    }

    let all = AuditFilter::default();
    let acme = list(dir, &w.acme, &all, None, 10).await;
    assert_eq!(
        entries(&acme),
        vec![tie_b.clone(), tie_a.clone(), full.clone(), first.clone()],
        "audit must return the tenant's entries newest first (ties: last appended first), every field intact"
    );
    for r in &acme {
        assert_eq!(
            r.cursor.at, r.entry.at,
            "a record's cursor is at its entry's `at`"
        );
    }
    assert!(
        acme.windows(2).all(|p| p[0].cursor > p[1].cursor),
        "cursors must strictly decrease along the listing: {:?}",
        acme.iter().map(|r| r.cursor).collect::<Vec<_>>()
    );
    assert_eq!(
        entries(&list(dir, &w.acme, &all, None, 2).await),
        vec![tie_b, tie_a],
        "audit limit must keep the newest"
    );
    assert!(
        list(dir, &w.acme, &all, None, 0).await.is_empty(),
        "audit limit 0: nothing"
    );
    assert_eq!(
        entries(&list(dir, &w.globex, &all, None, 10).await),
        vec![theirs],
        "audit(B) must return only B's entries"
    );
    assert!(
        dir.audit(TenantId::new(), &all, None, 10)
            .await
            .expect("audit() failed")
            .is_empty(),
        "an unknown tenant has no audit entries"
    );
}

async fn audit_pages(dir: &dyn Directory) {
    let t = audit_tenant(
        dir,
        0x0a0d_0000_0000_4000_8000_0000_0000_0001,
        "audit-pages",
    )
    .await;
    let actor = UserId::new();
    // Seven entries, three of them at one instant, appended out of order.
    let seconds = [5, 1, 3, 3, 7, 3, 2];
    for (i, s) in seconds.iter().enumerate() {
        let e = audit_entry(
            &t,
            actor,
            None,
            at(1_700_100_000 + s, 0),
            AuditOutcome::Confirmed,
            &format!("e{i}"),
        );
        append(dir, &e, hour()).await;
    }
    let all = AuditFilter::default();
    let whole = list(dir, &t, &all, None, 100).await;
    assert_eq!(
        details(&whole),
        vec!["e4", "e0", "e5", "e3", "e2", "e6", "e1"],
        "newest first, ties last appended first"
    );
    for size in [1, 2, 3] {
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let page = list(dir, &t, &all, after, size).await;
            assert!(page.len() as u64 <= size, "a page holds at most `limit`");
            let Some(last) = page.last() else { break };
            after = Some(last.cursor);
            walked.extend(page);
        }
        assert_eq!(
            walked, whole,
            "walking pages of {size} with `after` must visit every entry once, in order"
        );
    }
    // A cursor stays valid after newer entries arrive: the rest is the same.
    let after = whole[2].cursor;
    let newer = audit_entry(
        &t,
        actor,
        None,
        at(1_700_100_100, 0),
        AuditOutcome::Confirmed,
        "newer",
    );
    append(dir, &newer, hour()).await;
    assert_eq!(
        list(dir, &t, &all, Some(after), 100).await,
        whole[3..].to_vec(),
        "entries appended later must not shift a page that continues after a cursor"
    );
    let beyond = AuditCursor {
        at: at(1_600_000_000, 0),
        seq: 0,
    };
    assert!(
        list(dir, &t, &all, Some(beyond), 100).await.is_empty(),
        "nothing is older than a cursor before every entry"
    );
}

async fn audit_filters(dir: &dyn Directory) {
    let t = audit_tenant(
        dir,
        0x0a0d_0000_0000_4000_8000_0000_0000_0002,
        "audit-filters",
    )
    .await;
    let other = audit_tenant(
        dir,
        0x0a0d_0000_0000_4000_8000_0000_0000_0003,
        "audit-filters-b",
    )
    .await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let (d1, d2, d3) = (DeviceId::new(), DeviceId::new(), DeviceId::new());
    let t0 = 1_700_200_000;
    let e = |actor, device, s: i64, detail: &str| {
        audit_entry(
            &t,
            actor,
            device,
            at(t0 + s, 0),
            AuditOutcome::Confirmed,
            detail,
        )
    };
    // "long" began at +10 and was last seen at +50 (a coalesced run).
    let long = AuditEntry {
        count: 4,
        last_at: at(t0 + 50, 0),
        ..e(bob, Some(d2), 10, "long")
    };
    let log = [
        e(alice, Some(d1), 0, "a-d1"),
        long,
        e(alice, None, 20, "a-tenant"),
        e(bob, Some(d3), 30, "b-d3"),
        e(alice, Some(d2), 40, "a-d2"),
    ];
    for entry in &log {
        append(dir, entry, chrono::Duration::zero()).await;
    }
    // The other tenant's entries name the same devices and actors.
    for entry in &log {
        let theirs = AuditEntry {
            tenant_id: other.id,
            detail: format!("other {}", entry.detail),
            ..entry.clone()
        };
        append(dir, &theirs, chrono::Duration::zero()).await;
    }
    let t = &t;
    let check = |filter: AuditFilter, expected: &'static [&'static str], why: &'static str| async move {
        let got = list(dir, t, &filter, None, 100).await;
        assert_eq!(details(&got), expected.to_vec(), "{why}: {filter:?}");
    };
    check(
        AuditFilter::default(),
        &["a-d2", "b-d3", "a-tenant", "long", "a-d1"],
        "no filter",
    )
    .await;
    check(
        AuditFilter {
            devices: Some(vec![d1, d2]),
            ..AuditFilter::default()
        },
        &["a-d2", "long", "a-d1"],
        "devices: only entries about them, never tenant-level ones",
    )
    .await;
    check(
        AuditFilter {
            devices: Some(vec![]),
            ..AuditFilter::default()
        },
        &[],
        "devices = []: nothing, not even tenant-level entries",
    )
    .await;
    check(
        AuditFilter {
            actor: Some(alice),
            ..AuditFilter::default()
        },
        &["a-d2", "a-tenant", "a-d1"],
        "actor",
    )
    .await;
    check(
        AuditFilter {
            actor: Some(UserId::new()),
            ..AuditFilter::default()
        },
        &[],
        "an unknown actor",
    )
    .await;
    check(
        AuditFilter {
            from: Some(at(t0 + 35, 0)),
            ..AuditFilter::default()
        },
        &["a-d2", "long"],
        "from: entries still active at or after it (`last_at >= from`)",
    )
    .await;
    check(
        AuditFilter {
            to: Some(at(t0 + 20, 0)),
            ..AuditFilter::default()
        },
        &["long", "a-d1"],
        "to: entries begun before it (`at < to`)",
    )
    .await;
    check(
        AuditFilter {
            devices: Some(vec![d2, d3]),
            actor: Some(bob),
            from: Some(at(t0 + 30, 0)),
            to: Some(at(t0 + 31, 0)),
        },
        &["b-d3", "long"],
        "filters combine",
    )
    .await;
    // Filters and cursors together: the page after "b-d3" among d1/d2/d3.
    let scoped = AuditFilter {
        devices: Some(vec![d1, d2, d3]),
        ..AuditFilter::default()
    };
    let first = list(dir, t, &scoped, None, 2).await;
    assert_eq!(details(&first), vec!["a-d2", "b-d3"]);
    let rest = list(dir, t, &scoped, first.last().map(|r| r.cursor), 2).await;
    assert_eq!(
        details(&rest),
        vec!["long", "a-d1"],
        "a filtered listing continues after a cursor"
    );
    // Tenant isolation whatever the filter names.
    for filter in [
        AuditFilter::default(),
        scoped,
        AuditFilter {
            actor: Some(alice),
            ..AuditFilter::default()
        },
    ] {
        let got = list(dir, t, &filter, None, 100).await;
        assert!(
            got.iter().all(|r| r.entry.tenant_id == t.id),
            "audit(A, {filter:?}) returned another tenant's entry"
        );
    }
}

async fn audit_coalescing(dir: &dyn Directory) {
    let t = audit_tenant(
        dir,
        0x0a0d_0000_0000_4000_8000_0000_0000_0004,
        "audit-coalesce",
    )
    .await;
    let other = audit_tenant(
        dir,
        0x0a0d_0000_0000_4000_8000_0000_0000_0005,
        "audit-coalesce-b",
    )
    .await;
    let (mallory, alice) = (UserId::new(), UserId::new());
    let device = DeviceId::new();
    let t0 = 1_700_300_000;
    let refused = |actor, s: i64, micros: u32, detail: &str| {
        audit_entry(
            &t,
            actor,
            Some(device),
            at(t0 + s, micros),
            AuditOutcome::Refused,
            detail,
        )
    };
    let all = AuditFilter::default();

    // A real entry first, then a flood of identical refusals.
    let real = audit_entry(
        &t,
        alice,
        Some(device),
        at(t0, 0),
        AuditOutcome::Confirmed,
        "real",
    );
    append(dir, &real, hour()).await;
    let first = refused(mallory, 1, 0, "refused 0");
    append(dir, &first, hour()).await;
    let position = list(dir, &t, &all, None, 1).await[0].cursor;
    for i in 1..100u32 {
        let mut next = refused(mallory, 1 + i64::from(i), 0, &format!("refused {i}"));
        next.new_value = Some(f64::from(i));
        next.old_value = Some(0.5);
        append(dir, &next, hour()).await;
    }
    let log = list(dir, &t, &all, None, 10).await;
    assert_eq!(
        log.len(),
        2,
        "100 identical refusals within the window must be one entry: {:?}",
        details(&log)
    );
    let run = &log[0];
    assert_eq!(run.cursor, position, "coalescing must not move the entry");
    assert_eq!(
        run.entry,
        AuditEntry {
            count: 100,
            last_at: at(t0 + 100, 0),
            new_value: Some(99.0),
            old_value: Some(0.5),
            detail: "refused 99".into(),
            ..first.clone()
        },
        "a coalesced entry keeps its `at` and counts the attempts, with the last one's values and detail"
    );
    assert_eq!(
        log[1].entry, real,
        "the real entry is untouched and still listed"
    );

    // An entry's own count adds up, and an earlier `last_at` does not go back.
    let late_arrival = AuditEntry {
        count: 5,
        ..refused(mallory, 50, 0, "late arrival")
    };
    append(dir, &late_arrival, hour()).await;
    let run = &list(dir, &t, &all, None, 1).await[0].entry;
    assert_eq!(
        (run.count, run.last_at),
        (105, at(t0 + 100, 0)),
        "count += entry.count; last_at is the later one"
    );

    // What does not coalesce: another point, actor, action, tenant; another outcome; a zero window.
    let other_point = AuditEntry {
        point: Some(PointKey::new("heat_curve_slope").expect("contract: valid point key")),
        ..refused(mallory, 200, 0, "other point")
    };
    let other_actor = refused(alice, 201, 0, "other actor");
    let other_action = AuditEntry {
        action: "put_profile".into(),
        ..refused(mallory, 202, 0, "other action")
    };
    let confirmed = AuditEntry {
        outcome: AuditOutcome::Confirmed,
        ..refused(mallory, 203, 0, "confirmed")
    };
    let in_other_tenant = AuditEntry {
        tenant_id: other.id,
        ..refused(mallory, 204, 0, "other tenant")
    };
    for e in [
        &other_point,
        &other_actor,
        &other_action,
        &confirmed,
        &in_other_tenant,
    ] {
        append(dir, e, hour()).await;
    }
    let zero_window = refused(mallory, 205, 0, "zero window");
    append(dir, &zero_window, chrono::Duration::zero()).await;
    let log = list(dir, &t, &all, None, 100).await;
    assert_eq!(
        details(&log),
        vec![
            "zero window",
            "confirmed",
            "other action",
            "other actor",
            "other point",
            "late arrival",
            "real"
        ],
        "only identical refusals coalesce, and never across tenants or with a zero window"
    );
    assert_eq!(
        details(&list(dir, &other, &all, None, 100).await),
        vec!["other tenant"],
        "a refusal in another tenant is that tenant's own entry"
    );

    // The latest refusal of the key absorbs: here the zero-window one, not the run.
    append(dir, &refused(mallory, 206, 0, "joins the latest"), hour()).await;
    let latest = &list(dir, &t, &all, None, 1).await[0].entry;
    assert_eq!(
        (latest.detail.as_str(), latest.count),
        ("joins the latest", 2)
    );

    // The window runs from the entry's first attempt: just inside, then just outside.
    let start = at(t0 + 205, 0);
    let inside = AuditEntry {
        at: start + hour() - chrono::Duration::microseconds(1),
        last_at: start + hour() - chrono::Duration::microseconds(1),
        ..refused(mallory, 0, 0, "inside")
    };
    append(dir, &inside, hour()).await;
    let outside = AuditEntry {
        at: start + hour(),
        last_at: start + hour(),
        ..refused(mallory, 0, 0, "outside")
    };
    append(dir, &outside, hour()).await;
    let log = list(dir, &t, &all, None, 2).await;
    assert_eq!(
        details(&log),
        vec!["outside", "inside"],
        "a refusal a whole window after the first starts a new entry"
    );
    assert_eq!((log[0].entry.count, log[1].entry.count), (1, 3));
    assert_eq!(
        log[1].entry.at, start,
        "the absorbing entry keeps its first `at`"
    );

    // Tenant-level refusals (no device, no point) coalesce too.
    let tenant_level = |s: i64, detail: &str| AuditEntry {
        action: "put_profile".into(),
        ..audit_entry(
            &t,
            alice,
            None,
            at(t0 + 10_000 + s, 0),
            AuditOutcome::Refused,
            detail,
        )
    };
    for s in 0..3 {
        append(dir, &tenant_level(s, "profile refused"), hour()).await;
    }
    let top = &list(dir, &t, &all, None, 1).await[0].entry;
    assert_eq!(
        (top.device_id, top.count),
        (None, 3),
        "tenant-level refusals coalesce like device ones"
    );
}

async fn identity_links(dir: &dyn Directory, w: &World) {
    let issuer = "https://idp.example";
    let alice = user("alice@links.test", "Alice", None);
    let bob = user("bob@links.test", "Bob", None);
    for u in [&alice, &bob] {
        dir.insert_user(u).await.expect("insert_user failed");
        dir.upsert_membership(&Membership {
            user_id: u.id,
            tenant_id: w.acme.id,
            role: Role::Basic,
            scope: DeviceScope::All,
        })
        .await
        .expect("upsert_membership failed");
    }

    // Linked in acme: found in acme only, by exact issuer and subject.
    dir.link_identity(w.acme.id, issuer, "sub-1", alice.id)
        .await
        .expect("link_identity failed");
    assert_eq!(
        dir.linked_user(w.acme.id, issuer, "sub-1")
            .await
            .expect("linked_user"),
        Some(alice.id),
        "linked_user must find the link"
    );
    for (tenant, iss, sub) in [
        (w.globex.id, issuer, "sub-1"),
        (w.acme.id, "https://IDP.example", "sub-1"),
        (w.acme.id, issuer, "SUB-1"),
        (w.acme.id, issuer, "sub-"),
    ] {
        assert_eq!(
            dir.linked_user(tenant, iss, sub)
                .await
                .expect("linked_user"),
            None,
            "linked_user must match tenant, issuer and subject exactly: {iss} {sub}"
        );
    }

    // Linking again re-points the link.
    dir.link_identity(w.acme.id, issuer, "sub-1", bob.id)
        .await
        .expect("re-linking failed");
    assert_eq!(
        dir.linked_user(w.acme.id, issuer, "sub-1")
            .await
            .expect("linked_user"),
        Some(bob.id),
        "link_identity must re-point an existing link"
    );

    // No membership in globex: no link there.
    assert!(
        dir.link_identity(w.globex.id, issuer, "sub-2", alice.id)
            .await
            .is_err(),
        "link_identity must refuse a user who is not a member of the tenant"
    );

    // The link goes with the membership.
    dir.remove_membership(bob.id, w.acme.id)
        .await
        .expect("remove_membership failed");
    assert_eq!(
        dir.linked_user(w.acme.id, issuer, "sub-1")
            .await
            .expect("linked_user"),
        None,
        "a link must not outlive the membership it points at"
    );
}
