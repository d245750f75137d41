//! Use-case tier, property test: the device scope rule is stated once in
//! Rust (`device_in_scope`, from which the listing's store filter and the
//! live subscription's device set are derived) and once in `hearth.polar`
//! (`in_scope`). Over random area trees, devices and memberships, the
//! listing (against the in-memory directory), a tenant-wide live
//! subscription, the policy's per-device answer and the Rust rule must
//! name exactly the same devices.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use hearth_auth::{Argon2Hasher, JwtTokens, OsoAuthorizer};
use hearth_domain::model::{
    Area, AreaTree, Device, DeviceScope, EmailAddress, Endpoint, Role, Tenant, TenantSlug,
};
use hearth_domain::ports::{
    Action, AreaRepository, Authorizer, DeviceRepository, DeviceStatus, LiveBus, LiveEvent,
    Resource, TenantRepository,
};
use hearth_domain::services::{
    device_in_scope, Adapters, DeviceQuery, LiveUpdate, LoginLimits, Services,
};
use hearth_domain::{AreaId, DeviceId, Principal, ProfileId, TenantId, UserId};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_inproc::readings::MemoryReadings;
use hearth_modbus::{GatewayConfig, ModbusGateway};
use proptest::prelude::*;

/// One generated world: areas as a forest (each area's parent is an
/// earlier area or none), devices in an area or none, and one membership.
#[derive(Debug, Clone)]
struct World {
    /// `parents[i]`: index of area i's parent, always `< i`.
    parents: Vec<Option<usize>>,
    /// Area index of each device.
    device_areas: Vec<Option<usize>>,
    role: Role,
    /// `None`: `DeviceScope::All`; otherwise granted area and device indices.
    restricted: Option<(Vec<usize>, Vec<usize>)>,
}

fn world() -> impl Strategy<Value = World> {
    (0usize..8, 0usize..12).prop_flat_map(|(areas, devices)| {
        let parents = (0..areas)
            .map(|i| {
                if i == 0 {
                    Just(None).boxed()
                } else {
                    proptest::option::of(0..i).boxed()
                }
            })
            .collect::<Vec<_>>();
        let area_choice = move || {
            if areas == 0 {
                Just(None).boxed()
            } else {
                proptest::option::of(0..areas).boxed()
            }
        };
        let device_areas = (0..devices).map(|_| area_choice()).collect::<Vec<_>>();
        let role = prop_oneof![
            Just(Role::Admin),
            Just(Role::Full),
            Just(Role::Limited),
            Just(Role::Basic),
            Just(Role::ReadOnly),
        ];
        let index_set = |n: usize| proptest::collection::vec(0..n.max(1), 0..4);
        let restricted = proptest::option::weighted(0.8, (index_set(areas), index_set(devices)));
        (parents, device_areas, role, restricted).prop_map(
            |(parents, device_areas, role, restricted)| World {
                parents,
                device_areas,
                role,
                restricted,
            },
        )
    })
}

/// What each of the four answers says is in scope.
#[derive(Debug)]
struct Answers {
    rule: BTreeSet<DeviceId>,
    policy: BTreeSet<DeviceId>,
    listing: BTreeSet<DeviceId>,
    subscription: BTreeSet<DeviceId>,
}

async fn answers(w: &World) -> anyhow::Result<Answers> {
    let tenant = Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new("prop")?,
        name: "Prop".into(),
    };
    let directory = Arc::new(MemoryDirectory::new());
    let bus = Arc::new(InProcessBus::new());
    let authorizer = Arc::new(OsoAuthorizer::new()?);
    directory.insert_tenant(&tenant).await?;
    let area_ids: Vec<AreaId> = w.parents.iter().map(|_| AreaId::new()).collect();
    let mut areas = Vec::new();
    for (i, parent) in w.parents.iter().enumerate() {
        let area = Area {
            id: area_ids[i],
            tenant_id: tenant.id,
            parent_id: parent.map(|p| area_ids[p]),
            name: format!("area {i}"),
        };
        directory.insert_area(&area).await?;
        areas.push(area);
    }
    let mut devices = Vec::new();
    for (i, area) in w.device_areas.iter().enumerate() {
        let device = Device {
            id: DeviceId::new(),
            tenant_id: tenant.id,
            area_id: area.map(|a| area_ids[a]),
            name: format!("device {i:02}"),
            profile_id: ProfileId::new("none")?,
            endpoint: Endpoint::new("127.0.0.1", 1502, 1)?,
        };
        directory.insert_device(&device).await?;
        devices.push(device);
    }
    let scope = match &w.restricted {
        None => DeviceScope::All,
        Some((a, d)) => DeviceScope::Restricted {
            areas: a.iter().filter_map(|i| area_ids.get(*i).copied()).collect(),
            devices: d
                .iter()
                .filter_map(|i| devices.get(*i).map(|x| x.id))
                .collect(),
        },
    };
    let principal = Principal {
        user_id: UserId::new(),
        email: EmailAddress::new("someone@prop.test")?,
        tenant_id: tenant.id,
        role: w.role,
        scope: scope.clone(),
    };
    let services = Services::new(
        Adapters {
            directory: directory.clone(),
            documents: Arc::new(MemoryDocuments::new()),
            readings: Arc::new(MemoryReadings::new()),
            live: bus.clone(),
            watch: bus.clone(),
            field: Arc::new(ModbusGateway::new(GatewayConfig::default())),
            authorizer: authorizer.clone(),
            passwords: Arc::new(Argon2Hasher::fast_for_tests()?),
            tokens: Arc::new(JwtTokens::new(&[7u8; 64], chrono::Duration::hours(1))?),
        },
        LoginLimits::default(),
    );

    let tree = AreaTree::new(&areas);
    let path = |d: &Device| d.area_id.map(|a| tree.path(a)).unwrap_or_default();
    let rule = devices
        .iter()
        .filter(|d| device_in_scope(w.role, &scope, d.id, &path(d)))
        .map(|d| d.id)
        .collect();
    let policy = devices
        .iter()
        .filter(|d| {
            let resource = Resource::Device {
                tenant_id: tenant.id,
                device_id: d.id,
                area_path: path(d),
            };
            authorizer
                .authorize(&principal, Action::View, &resource)
                .is_ok()
        })
        .map(|d| d.id)
        .collect();
    let page = services
        .devices
        .list_devices(
            &principal,
            DeviceQuery {
                limit: 200,
                ..DeviceQuery::default()
            },
        )
        .await?;
    let listing = page.items.iter().map(|v| v.device.id).collect();

    // A tenant-wide subscription, then one status event per device: what
    // comes through is what the subscription filter lets through.
    let mut stream = services.live.subscribe_live(&principal, &[]).await?;
    for d in &devices {
        bus.publish(LiveEvent::Status(DeviceStatus {
            tenant_id: tenant.id,
            device_id: d.id,
            online: true,
            at: chrono::Utc::now(),
        }));
    }
    let mut subscription = BTreeSet::new();
    while let Some(Some(update)) = stream.next().now_or_never() {
        match update {
            LiveUpdate::Status(s) => {
                subscription.insert(s.device_id);
            }
            other => anyhow::bail!("unexpected update {other:?}"),
        }
    }
    services.ingest.reading_writer().shutdown().await;
    Ok(Answers {
        rule,
        policy,
        listing,
        subscription,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn listing_subscription_policy_and_rule_agree_on_every_device(w in world()) {
        // Given a random area tree, devices and membership
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // When each of the four is asked which devices are in scope
        let a = rt.block_on(answers(&w)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Then they name the same devices
        prop_assert_eq!(&a.policy, &a.rule, "policy vs Rust rule: {:?}", w);
        prop_assert_eq!(&a.listing, &a.rule, "listing vs Rust rule: {:?}", w);
        prop_assert_eq!(&a.subscription, &a.rule, "subscription vs Rust rule: {:?}", w);
    }
}
