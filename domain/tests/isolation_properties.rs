//! Use-case tier, property test (issue 9, "Proof"): over random tenants,
//! area trees (up to 6 levels), devices and members of every role with
//! random grants (all devices, area subtrees, single devices, and grants
//! naming another tenant's objects), the use cases answer exactly what
//! DESIGN.md's access model says. The expectation is computed here from
//! the generated world alone, never from the services' own scope code:
//!
//! - a listing holds exactly the member's devices in scope, never another
//!   tenant's, and its count says no more;
//! - a listing filtered by an area the member may see holds exactly the
//!   in-scope devices below it; any other area (outside the scope, of
//!   another tenant, or unknown) is `NotFound`, like one that does not exist;
//! - reading, history, live subscription and writes of a device are allowed
//!   exactly in scope (writes also by the role's write level), `NotFound`
//!   outside it or in another tenant, `Forbidden` for a role without the
//!   capability;
//! - `areas` lists exactly the granted subtrees (all for members covering
//!   the tenant); tenant-wide management (renaming an area) needs Admin or
//!   Full covering the tenant, and another tenant's area is `NotFound`.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use futures::StreamExt;
use hearth_auth::{Argon2Hasher, JwtTokens, OsoAuthorizer};
use hearth_domain::model::{
    Aggregate, Area, Device, DeviceScope, EmailAddress, Endpoint, Role, Tenant, TenantSlug,
    WriteLevel,
};
use hearth_domain::services::{Adapters, DeviceQuery, LoginLimits, Services};
use hearth_domain::{AreaId, DeviceId, DomainError, Principal, SystemPrincipal, TenantId, UserId};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_inproc::readings::MemoryReadings;
use proptest::prelude::*;
use support::{point_of, profile, profile_id, read_only_point, valid_value, StandInField};

/// Deepest area tree DESIGN.md's admin API allows.
const MAX_DEPTH: usize = 6;

/// One generated tenant: `parents[i]` is area i's parent (an earlier area),
/// `device_areas[j]` device j's area.
#[derive(Debug, Clone)]
struct TenantSpec {
    parents: Vec<Option<usize>>,
    device_areas: Vec<Option<usize>>,
}

/// An object of the generated world: (tenant index, area or device index).
type Ref = (usize, usize);

/// A grant of a member: areas and devices named by [`Ref`], so a grant may
/// name another tenant's objects (which must give nothing).
#[derive(Debug, Clone)]
struct MemberSpec {
    tenant: usize,
    role: Role,
    /// `None`: all devices.
    grants: Option<(Vec<Ref>, Vec<Ref>)>,
}

#[derive(Debug, Clone)]
struct WorldSpec {
    tenants: Vec<TenantSpec>,
    members: Vec<MemberSpec>,
}

fn tenant_spec() -> impl Strategy<Value = TenantSpec> {
    (0usize..9, 0usize..9).prop_flat_map(|(areas, devices)| {
        let parents = (0..areas)
            .map(|i| {
                if i == 0 {
                    Just(None).boxed()
                } else {
                    proptest::option::weighted(0.8, 0..i).boxed()
                }
            })
            .collect::<Vec<_>>();
        let device_areas = (0..devices)
            .map(move |_| {
                if areas == 0 {
                    Just(None).boxed()
                } else {
                    proptest::option::weighted(0.85, 0..areas).boxed()
                }
            })
            .collect::<Vec<_>>();
        (parents, device_areas).prop_map(|(parents, device_areas)| TenantSpec {
            parents: capped(parents),
            device_areas,
        })
    })
}

/// Moves an area whose parent is already at the deepest level to the top.
fn capped(mut parents: Vec<Option<usize>>) -> Vec<Option<usize>> {
    for i in 0..parents.len() {
        if let Some(p) = parents[i] {
            if depth(&parents, p) >= MAX_DEPTH {
                parents[i] = None;
            }
        }
    }
    parents
}

/// Levels from the top down to area `i` (a top-level area is level 1).
fn depth(parents: &[Option<usize>], i: usize) -> usize {
    let mut d = 1;
    let mut at = i;
    while let Some(p) = parents[at] {
        d += 1;
        at = p;
    }
    d
}

fn role() -> impl Strategy<Value = Role> {
    proptest::sample::select(Role::ALL.to_vec())
}

fn world_spec() -> impl Strategy<Value = WorldSpec> {
    proptest::collection::vec(tenant_spec(), 2..=3).prop_flat_map(|tenants| {
        let n = tenants.len();
        let member = (
            0..n,
            role(),
            any::<bool>(),
            proptest::collection::vec((0..n, 0usize..9, any::<bool>()), 0..5),
        )
            .prop_map(|(tenant, role, all, picks)| {
                let grants = (!all).then(|| {
                    let (mut areas, mut devices) = (Vec::new(), Vec::new());
                    for (t, i, area) in picks {
                        if area {
                            areas.push((t, i));
                        } else {
                            devices.push((t, i));
                        }
                    }
                    (areas, devices)
                });
                MemberSpec {
                    tenant,
                    role,
                    grants,
                }
            });
        (Just(tenants), proptest::collection::vec(member, 1..5))
            .prop_map(|(tenants, members)| WorldSpec { tenants, members })
    })
}

/// What was stored for one tenant.
struct Built {
    tenant: TenantId,
    areas: Vec<AreaId>,
    devices: Vec<DeviceId>,
}

/// The real policy, loaded once for all cases (it holds no state).
fn policy() -> Arc<OsoAuthorizer> {
    static POLICY: std::sync::OnceLock<Arc<OsoAuthorizer>> = std::sync::OnceLock::new();
    POLICY
        .get_or_init(|| Arc::new(OsoAuthorizer::new().expect("the policy loads")))
        .clone()
}

/// The services over the in-memory adapters and the real policy; the
/// built-in profile stored.
async fn services() -> (Services, Arc<StandInField>) {
    let field = Arc::new(StandInField::default());
    let bus = Arc::new(InProcessBus::new());
    let services = Services::new(
        Adapters {
            directory: Arc::new(MemoryDirectory::new()),
            documents: Arc::new(MemoryDocuments::new()),
            readings: Arc::new(MemoryReadings::new()),
            live: bus.clone(),
            watch: bus,
            field: field.clone(),
            authorizer: policy(),
            passwords: Arc::new(Argon2Hasher::fast_for_tests().expect("argon2 is set up")),
            tokens: Arc::new(
                JwtTokens::new(&[7u8; 32], Duration::hours(1)).expect("a valid token setup"),
            ),
        },
        LoginLimits::default(),
    );
    services
        .provisioning
        .put_builtin_profile(
            &SystemPrincipal::provisioner(),
            &profile(profile_id(), None),
        )
        .await
        .expect("the built-in profile is stored");
    (services, field)
}

async fn build(services: &Services, spec: &WorldSpec) -> Vec<Built> {
    let system = SystemPrincipal::provisioner();
    let p = &services.provisioning;
    let mut built = Vec::new();
    for (t, tenant_spec) in spec.tenants.iter().enumerate() {
        let tenant = Tenant {
            id: TenantId::new(),
            slug: TenantSlug::new(format!("tenant{t}")).expect("a valid slug"),
            name: format!("Tenant {t}"),
        };
        p.create_tenant(&system, &tenant).await.expect("the tenant");
        let mut areas: Vec<AreaId> = Vec::new();
        for (i, parent) in tenant_spec.parents.iter().enumerate() {
            let area = Area {
                id: AreaId::new(),
                tenant_id: tenant.id,
                parent_id: parent.map(|p| areas[p]),
                name: format!("t{t} area {i}"),
            };
            p.create_area(&system, &area).await.expect("the area");
            areas.push(area.id);
        }
        let mut devices = Vec::new();
        for (j, area) in tenant_spec.device_areas.iter().enumerate() {
            let device = Device {
                id: DeviceId::new(),
                tenant_id: tenant.id,
                area_id: area.map(|a| areas[a]),
                name: format!("t{t} device {j}"),
                profile_id: profile_id(),
                endpoint: Endpoint::new("127.0.0.1", 502, 1).expect("an endpoint"),
            };
            p.create_device(&system, &device).await.expect("the device");
            devices.push(device.id);
        }
        built.push(Built {
            tenant: tenant.id,
            areas,
            devices,
        });
    }
    built
}

/// A member as the use cases see it (a `Principal`), with grants resolved
/// to ids; a grant naming an object that was not generated is dropped.
fn principal(spec: &MemberSpec, built: &[Built], n: usize) -> Principal {
    let scope = match &spec.grants {
        None => DeviceScope::All,
        Some((areas, devices)) => DeviceScope::Restricted {
            areas: areas
                .iter()
                .filter_map(|(t, i)| built[*t].areas.get(*i).copied())
                .collect(),
            devices: devices
                .iter()
                .filter_map(|(t, i)| built[*t].devices.get(*i).copied())
                .collect(),
        },
    };
    Principal {
        user_id: UserId::new(),
        email: EmailAddress::new(&format!("member{n}@example.test")).expect("an email"),
        tenant_id: built[spec.tenant].tenant,
        role: spec.role,
        scope,
    }
}

/// The expectation, from the generated world alone.
struct Expected {
    /// Areas of the member's tenant the member may see, by index.
    areas: BTreeSet<usize>,
    /// Devices of the member's tenant in scope, by index.
    devices: BTreeSet<usize>,
    covers_tenant: bool,
}

/// Whether `a` is `ancestor` or lies below it.
fn below(parents: &[Option<usize>], a: usize, ancestor: usize) -> bool {
    let mut at = Some(a);
    while let Some(i) = at {
        if i == ancestor {
            return true;
        }
        at = parents[i];
    }
    false
}

fn expected(spec: &WorldSpec, member: &MemberSpec) -> Expected {
    let own = &spec.tenants[member.tenant];
    let all_areas: BTreeSet<usize> = (0..own.parents.len()).collect();
    let all_devices: BTreeSet<usize> = (0..own.device_areas.len()).collect();
    let covers_tenant = member.role == Role::Admin || member.grants.is_none();
    if covers_tenant {
        return Expected {
            areas: all_areas,
            devices: all_devices,
            covers_tenant,
        };
    }
    let (area_grants, device_grants) = member.grants.clone().unwrap_or_default();
    // Grants naming another tenant's objects give nothing.
    let granted_areas: Vec<usize> = area_grants
        .iter()
        .filter(|(t, i)| *t == member.tenant && *i < own.parents.len())
        .map(|(_, i)| *i)
        .collect();
    let granted_devices: BTreeSet<usize> = device_grants
        .iter()
        .filter(|(t, _)| *t == member.tenant)
        .map(|(_, i)| *i)
        .collect();
    let areas: BTreeSet<usize> = all_areas
        .into_iter()
        .filter(|a| granted_areas.iter().any(|g| below(&own.parents, *a, *g)))
        .collect();
    let devices = all_devices
        .into_iter()
        .filter(|d| {
            granted_devices.contains(d) || own.device_areas[*d].is_some_and(|a| areas.contains(&a))
        })
        .collect();
    Expected {
        areas,
        devices,
        covers_tenant,
    }
}

fn is_not_found<T>(r: &Result<T, DomainError>) -> bool {
    matches!(r, Err(DomainError::NotFound(_)))
}

fn is_forbidden<T>(r: &Result<T, DomainError>) -> bool {
    matches!(r, Err(DomainError::Forbidden(_)))
}

fn write_level_allowed(role: Role, level: WriteLevel) -> bool {
    // DESIGN.md's table, the write rows.
    match level {
        WriteLevel::Basic => role != Role::ReadOnly,
        WriteLevel::Limited => matches!(role, Role::Admin | Role::Full | Role::Limited),
        WriteLevel::Full => matches!(role, Role::Admin | Role::Full),
    }
}

fn query(area: Option<AreaId>) -> DeviceQuery {
    DeviceQuery {
        area,
        search: None,
        offset: 0,
        limit: 200,
    }
}

/// Every invariant for one world; `Err` names the first broken one.
async fn check(spec: WorldSpec) -> Result<(), TestCaseError> {
    let (services, _field) = services().await;
    let built = build(&services, &spec).await;
    for (n, member) in spec.members.iter().enumerate() {
        let p = principal(member, &built, n);
        let want = expected(&spec, member);
        let own = &built[member.tenant];
        let own_spec = &spec.tenants[member.tenant];
        let ids = |set: &BTreeSet<usize>| -> BTreeSet<DeviceId> {
            set.iter().map(|i| own.devices[*i]).collect()
        };

        // The listing: exactly the devices in scope, and a count to match.
        let page = services
            .devices
            .list_devices(&p, query(None))
            .await
            .map_err(|e| TestCaseError::fail(format!("listing refused: {e}")))?;
        let listed: BTreeSet<DeviceId> = page.items.iter().map(|v| v.device.id).collect();
        prop_assert!(page.items.iter().all(|v| v.device.tenant_id == own.tenant));
        prop_assert_eq!(&listed, &ids(&want.devices), "member {:?}", member);
        prop_assert_eq!(page.total, want.devices.len() as u64);

        // Filtered by each area of every tenant, and by an unknown one.
        // Every area of the own tenant; of the others the first (the policy
        // path is the same for all of them, and each call costs a decision).
        for (t, b) in built.iter().enumerate() {
            let sampled = if t == member.tenant { b.areas.len() } else { 1 };
            for (i, area) in b.areas.iter().enumerate().take(sampled) {
                let res = services.devices.list_devices(&p, query(Some(*area))).await;
                if t == member.tenant && want.areas.contains(&i) {
                    let page = res.map_err(|e| {
                        TestCaseError::fail(format!("filter by visible area {i} refused: {e}"))
                    })?;
                    let got: BTreeSet<DeviceId> = page.items.iter().map(|v| v.device.id).collect();
                    let below_area: BTreeSet<usize> = want
                        .devices
                        .iter()
                        .copied()
                        .filter(|d| {
                            own_spec.device_areas[*d]
                                .is_some_and(|a| below(&own_spec.parents, a, i))
                        })
                        .collect();
                    prop_assert_eq!(&got, &ids(&below_area), "area {} of {:?}", i, member);
                    prop_assert_eq!(page.total, below_area.len() as u64);
                } else {
                    prop_assert!(
                        is_not_found(&res),
                        "filter by area {}/{} (own tenant {}) gave {:?} to {:?}",
                        t,
                        i,
                        member.tenant,
                        res.map(|p| p.total),
                        member
                    );
                }
            }
        }
        let unknown = services
            .devices
            .list_devices(&p, query(Some(AreaId::new())))
            .await;
        prop_assert!(is_not_found(&unknown));

        // `areas`: exactly the visible ones.
        let areas: BTreeSet<AreaId> = services
            .admin
            .areas(&p)
            .await
            .map_err(|e| TestCaseError::fail(format!("areas refused: {e}")))?
            .into_iter()
            .map(|a| a.id)
            .collect();
        let want_areas: BTreeSet<AreaId> = want.areas.iter().map(|i| own.areas[*i]).collect();
        prop_assert_eq!(areas, want_areas);

        // Every device of every tenant, one by one.
        // The own tenant's devices, the first of each other tenant, an unknown one.
        let all: Vec<DeviceId> = built
            .iter()
            .enumerate()
            .flat_map(|(t, b)| {
                let sampled = if t == member.tenant {
                    b.devices.len()
                } else {
                    1
                };
                b.devices.iter().copied().take(sampled).collect::<Vec<_>>()
            })
            .collect();
        let live_none = services
            .live
            .subscribe_live_following(&p, &[], futures::stream::pending().boxed())
            .await;
        prop_assert!(live_none.is_ok());
        let mut turn = n;
        for id in all.iter().copied().chain([DeviceId::new()]) {
            let visible = built.iter().position(|b| b.devices.contains(&id)) == Some(member.tenant)
                && want.devices.iter().any(|i| own.devices[*i] == id);
            let read = services.devices.device(&p, id).await;
            let history = services
                .history
                .history(
                    &p,
                    id,
                    read_only_point(),
                    Utc::now() - Duration::hours(1),
                    Utc::now(),
                    300,
                    Aggregate::Mean,
                )
                .await;
            let live = services
                .live
                .subscribe_live_following(&p, &[id], futures::stream::pending().boxed())
                .await;
            if visible {
                let view = read.map_err(|e| TestCaseError::fail(format!("read refused: {e}")))?;
                prop_assert_eq!(view.device.tenant_id, own.tenant);
                prop_assert!(history.is_ok(), "history refused in scope");
                prop_assert!(live.is_ok(), "live refused in scope");
            } else {
                prop_assert!(
                    is_not_found(&read),
                    "read of {} gave {:?}",
                    id,
                    read.map(|v| v.device.name)
                );
                prop_assert!(is_not_found(&history));
                prop_assert!(is_not_found(&live));
            }
            // One write level per device, taking turns (each policy decision
            // costs; over the cases every role meets every level).
            const LEVELS: [WriteLevel; 3] =
                [WriteLevel::Basic, WriteLevel::Limited, WriteLevel::Full];
            turn += 1;
            for level in [LEVELS[turn % 3]] {
                let res = services
                    .control
                    .write_parameter(&p, id, point_of(level), valid_value(level))
                    .await;
                match (visible, write_level_allowed(member.role, level)) {
                    (true, true) => prop_assert!(
                        res.is_ok(),
                        "write {:?} refused in scope: {:?}",
                        level,
                        res.err()
                    ),
                    (true, false) => {
                        prop_assert!(is_forbidden(&res), "write {:?} by {:?}", level, member.role)
                    }
                    (false, _) => prop_assert!(
                        is_not_found(&res),
                        "write of an unseen device gave {:?}",
                        res.map(|o| o.status)
                    ),
                }
            }
        }

        // Tenant-wide management: renaming an area.
        let manages = matches!(member.role, Role::Admin | Role::Full) && want.covers_tenant;
        for (t, b) in built.iter().enumerate() {
            let sampled = if t == member.tenant { b.areas.len() } else { 1 };
            for area in b.areas.iter().take(sampled) {
                let res = services.admin.rename_area(&p, *area, "renamed").await;
                match (manages, t == member.tenant) {
                    (true, true) => prop_assert!(res.is_ok(), "rename refused: {:?}", res.err()),
                    (true, false) => prop_assert!(is_not_found(&res)),
                    (false, _) => prop_assert!(is_forbidden(&res)),
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn use_cases_answer_exactly_the_generated_scope_and_nothing_of_another_tenant(spec in world_spec()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(check(spec))?;
    }
}

/// Regression: a listing filtered by an area of the caller's own tenant
/// that lies outside their scope used to answer an empty page, telling the
/// area exists; it is now `NotFound`, as for an area that does not.
#[tokio::test]
async fn a_listing_filtered_by_an_area_outside_the_scope_is_not_found_like_an_unknown_area() {
    // Given a tenant with areas `north` and `south`, one device each, and a
    // member scoped to `north`
    let spec = WorldSpec {
        tenants: vec![
            TenantSpec {
                parents: vec![None, None],
                device_areas: vec![Some(0), Some(1)],
            },
            TenantSpec {
                parents: vec![None],
                device_areas: vec![Some(0)],
            },
        ],
        members: vec![],
    };
    let (services, _field) = services().await;
    let built = build(&services, &spec).await;
    let member = MemberSpec {
        tenant: 0,
        role: Role::Full,
        grants: Some((vec![(0, 0)], vec![])),
    };
    let p = principal(&member, &built, 0);
    // When the member filters by `south`, by another tenant's area and by an unknown one
    let south = services
        .devices
        .list_devices(&p, query(Some(built[0].areas[1])))
        .await;
    let foreign = services
        .devices
        .list_devices(&p, query(Some(built[1].areas[0])))
        .await;
    let unknown = services
        .devices
        .list_devices(&p, query(Some(AreaId::new())))
        .await;
    // Then all three are the same NotFound
    assert!(is_not_found(&south), "{:?}", south.map(|p| p.total));
    assert!(is_not_found(&foreign));
    assert!(is_not_found(&unknown));
    // And `north` lists its device
    let north = services
        .devices
        .list_devices(&p, query(Some(built[0].areas[0])))
        .await
        .expect("the own area");
    assert_eq!(north.total, 1);
    assert_eq!(north.items[0].device.id, built[0].devices[0]);
}
