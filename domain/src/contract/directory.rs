//! Contract suite for the [`Directory`] port: every implementation (in-memory,
//! SQLite, MySQL) must pass [`directory_contract`] unchanged.
//!
//! Beyond the promises written on the trait, the suite pins down the details
//! callers rely on and the implementations agree on:
//! - tenant slugs are unique (`Conflict`), like emails and device names;
//! - re-upserting a membership keeps its place in "oldest first";
//! - audit entries with equal timestamps come back last-appended first;
//! - a device or area may not reference another tenant's area (an error, not
//!   `Conflict`), and `set_password` on an unknown user is an error;
//! - device names order byte-wise (code point order), not case-insensitively;
//! - timestamps are kept to the microsecond (SQL stores integer microseconds).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;
use crate::ids::{AreaId, DeviceId, PointKey, ProfileId, TenantId, UserId};
use crate::model::{
    Area, AuditEntry, AuditOutcome, Device, DeviceScope, EmailAddress, Membership, ModbusEndpoint,
    PasswordHash, Role, Tenant, TenantSlug, User,
};
use crate::ports::{DeviceFilter, Directory, Page};

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
    Device {
        id: DeviceId::new(),
        tenant_id: tenant.id,
        area_id: area.map(|a| a.id),
        name: name.to_string(),
        profile_id: ProfileId::new("ecl-comfort-310").expect("contract: valid profile id"),
        endpoint: ModbusEndpoint::new("127.0.0.1", 15020 + u16::from(unit), unit)
            .expect("contract: valid endpoint"),
    }
}

fn user(email: &str, name: &str, hash: Option<&str>) -> User {
    User {
        id: UserId::new(),
        email: EmailAddress::new(email).expect("contract: valid email"),
        display_name: name.to_string(),
        password_hash: hash.map(PasswordHash::from_phc),
    }
}

/// A timestamp with whole microseconds, which every store keeps exactly.
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

async fn tenants(dir: &dyn Directory, w: &World) {
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

async fn users(dir: &dyn Directory, _w: &World) {
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

async fn areas(dir: &dyn Directory, w: &World) {
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

async fn device_round_trip_and_conflicts(dir: &dyn Directory, w: &World) {
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

async fn device_isolation(dir: &dyn Directory, w: &World) {
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

async fn device_filters(dir: &dyn Directory, w: &World) {
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

async fn device_search(dir: &dyn Directory, w: &World) {
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

async fn device_pagination(dir: &dyn Directory, w: &World) {
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

async fn audit(dir: &dyn Directory, w: &World) {
    let actor = UserId::new();
    let point = PointKey::new("room_setpoint_comfort").expect("contract: valid point key");
    let entry = |tenant: &Tenant, when: DateTime<Utc>, detail: &str| AuditEntry {
        tenant_id: tenant.id,
        at: when,
        actor,
        action: "write_parameter".into(),
        device_id: None,
        point: None,
        old_value: None,
        new_value: None,
        outcome: AuditOutcome::Refused,
        detail: detail.to_string(),
    };
    let full = AuditEntry {
        device_id: Some(w.acme("Boiler House 1").id),
        point: Some(point),
        old_value: Some(21.5),
        new_value: Some(-3.25),
        outcome: AuditOutcome::Confirmed,
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
    for e in [&full, &theirs, &first, &tie_a, &tie_b] {
        dir.append_audit(e)
            .await
            .unwrap_or_else(|err| panic!("append_audit({}) failed: {err}", e.detail));
    }

    let acme = dir.audit(w.acme.id, 10).await.expect("audit() failed");
    assert_eq!(
        acme,
        vec![tie_b.clone(), tie_a.clone(), full.clone(), first.clone()],
        "audit must return the tenant's entries newest first (ties: last appended first), every field intact"
    );
    assert_eq!(
        dir.audit(w.acme.id, 2).await.expect("audit() failed"),
        vec![tie_b, tie_a],
        "audit limit must keep the newest"
    );
    assert!(
        dir.audit(w.acme.id, 0)
            .await
            .expect("audit() failed")
            .is_empty(),
        "audit limit 0: nothing"
    );
    assert_eq!(
        dir.audit(w.globex.id, 10).await.expect("audit() failed"),
        vec![theirs],
        "audit(B) must return only B's entries"
    );
    assert!(
        dir.audit(TenantId::new(), 10)
            .await
            .expect("audit() failed")
            .is_empty(),
        "an unknown tenant has no audit entries"
    );
}
