//! The world the use-case tests run in: every capability service built by
//! `Services::new` over `hearth-inproc`'s in-memory stores and live bus,
//! the real policy of `hearth-auth` (`hearth.polar`), real argon2id and JWT,
//! and one stand-in field gateway. Seeded through the provisioning use case
//! itself: two tenants with an area tree, devices and a member per role.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use async_trait::async_trait;
use hearth_auth::{Argon2Hasher, JwtTokens, OsoAuthorizer};
use hearth_domain::error::InvalidValue;
use hearth_domain::model::{
    Area, Device, DeviceProfile, DeviceScope, EmailAddress, Endpoint, FieldAddress, Membership,
    PointDefinition, Role, Tenant, TenantSlug, User, WriteLevel,
};
use hearth_domain::ports::{FieldError, FieldGateway, PointReader, PointValue};
use hearth_domain::services::{Adapters, LoginLimits, Services};
use hearth_domain::{
    AreaId, DeviceId, PointKey, Principal, ProfileId, SystemPrincipal, TenantId, UserId,
};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_inproc::readings::MemoryReadings;

/// Every seeded user's password.
pub const PASSWORD: &str = "hearth-test";

/// The built-in profile every seeded device uses.
pub fn profile_id() -> ProfileId {
    ProfileId::new("test-plant").expect("a valid profile id")
}

/// The key of the seeded profile's writable point of `level`.
pub fn point_of(level: WriteLevel) -> PointKey {
    let key = match level {
        WriteLevel::Basic => "comfort",
        WriteLevel::Limited => "schedule",
        WriteLevel::Full => "motor_runtime",
    };
    PointKey::new(key).expect("a valid key")
}

/// A value `point_of(level)` accepts.
pub fn valid_value(level: WriteLevel) -> f64 {
    match level {
        WriteLevel::Basic => 21.5,
        WriteLevel::Limited => 600.0,
        WriteLevel::Full => 90.0,
    }
}

/// The seeded profile's read-only point.
pub fn read_only_point() -> PointKey {
    PointKey::new("outdoor").expect("a valid key")
}

fn point(key: &str, address: u16, writable: Option<WriteLevel>) -> PointDefinition {
    PointDefinition {
        key: PointKey::new(key).expect("a valid key"),
        name: key.into(),
        // The stand-in field's own address scheme: one numbered slot per
        // point. The domain neither knows nor cares.
        address: slot_address(address),
        unit: String::new(),
        writable: writable.is_some(),
        write_level: writable.unwrap_or(WriteLevel::Full),
        min: Some(0.0),
        max: Some(1000.0),
        options: Vec::new(),
        plausible_min: None,
        plausible_max: None,
    }
}

/// A profile owned by nobody (`tenant: None`) or by a tenant, with a
/// read-only point and one writable point per write level.
pub fn profile(id: ProfileId, tenant: Option<TenantId>) -> DeviceProfile {
    DeviceProfile {
        id,
        tenant_id: tenant,
        name: "Test plant".into(),
        poll_interval_ms: 1_000,
        live_poll_interval_ms: None,
        points: vec![
            point("outdoor", 0, None),
            point("comfort", 10, Some(WriteLevel::Basic)),
            point("schedule", 11, Some(WriteLevel::Limited)),
            point("motor_runtime", 12, Some(WriteLevel::Full)),
        ],
    }
}

fn slot_address(slot: u16) -> FieldAddress {
    let mut map = serde_json::Map::new();
    map.insert("slot".into(), serde_json::Value::from(slot));
    FieldAddress(map)
}

fn slot_of(point: &PointDefinition) -> Result<u16, InvalidValue> {
    point
        .address
        .entries()
        .get("slot")
        .and_then(serde_json::Value::as_u64)
        .and_then(|slot| u16::try_from(slot).ok())
        .ok_or_else(|| InvalidValue::new("point address", "the stand-in field needs a slot"))
}

/// A stand-in for the field (a mock, named as such: the use-case tests need
/// no device), speaking the port's terms: each point has a numbered `slot`
/// in its field address; writes are kept and read back; anything never
/// written reads as a fixed 0. It counts writes, so a test can show that a
/// refused write never reached the field.
#[derive(Default)]
pub struct StandInField {
    values: Arc<Mutex<HashMap<(DeviceId, u16), f64>>>,
    writes: Mutex<u64>,
}

impl StandInField {
    /// Writes that reached the field so far.
    pub fn writes(&self) -> u64 {
        *self.writes.lock()
    }

    fn read(values: &Mutex<HashMap<(DeviceId, u16), f64>>, device: DeviceId, slot: u16) -> f64 {
        let values = values.lock();
        values.get(&(device, slot)).copied().unwrap_or(0.0)
    }
}

/// Reads every slot of a profile.
struct StandInReader {
    values: Arc<Mutex<HashMap<(DeviceId, u16), f64>>>,
    device: DeviceId,
    slots: Vec<u16>,
}

#[async_trait]
impl PointReader for StandInReader {
    async fn read(&mut self, out: &mut Vec<PointValue>) -> Result<(), FieldError> {
        out.clear();
        for (point, slot) in self.slots.iter().enumerate() {
            let value = StandInField::read(&self.values, self.device, *slot);
            out.push(PointValue { point, value });
        }
        Ok(())
    }
}

#[async_trait]
impl FieldGateway for StandInField {
    fn check_profile(&self, profile: &DeviceProfile) -> Result<(), InvalidValue> {
        profile
            .points
            .iter()
            .try_for_each(|p| slot_of(p).map(|_| ()))
    }

    fn check_endpoint(&self, _: &Endpoint) -> Result<(), InvalidValue> {
        Ok(())
    }

    fn check_value(&self, _: &PointDefinition, value: f64) -> Result<f64, InvalidValue> {
        Ok(value)
    }

    fn reader(
        &self,
        device: &Device,
        profile: &DeviceProfile,
    ) -> Result<Box<dyn PointReader>, InvalidValue> {
        Ok(Box::new(StandInReader {
            values: self.values.clone(),
            device: device.id,
            slots: profile
                .points
                .iter()
                .map(slot_of)
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn read_point(
        &self,
        device: &Device,
        point: &PointDefinition,
    ) -> Result<f64, FieldError> {
        let slot = slot_of(point).map_err(FieldError::Unaddressable)?;
        Ok(Self::read(&self.values, device.id, slot))
    }

    async fn write_point(
        &self,
        device: &Device,
        point: &PointDefinition,
        value: f64,
    ) -> Result<(), FieldError> {
        let slot = slot_of(point).map_err(FieldError::Unaddressable)?;
        *self.writes.lock() += 1;
        let mut values = self.values.lock();
        values.insert((device.id, slot), value);
        Ok(())
    }
}

/// One seeded tenant: areas `north` (with child `north/sub`) and `south`,
/// one device in each, and a member per role, all scoped to every device.
pub struct TenantWorld {
    pub tenant: Tenant,
    pub north: Area,
    pub north_sub: Area,
    pub south: Area,
    pub north_device: Device,
    pub north_sub_device: Device,
    pub south_device: Device,
    pub members: HashMap<Role, Principal>,
}

impl TenantWorld {
    pub fn member(&self, role: Role) -> Principal {
        self.members
            .get(&role)
            .cloned()
            .expect("every role is seeded")
    }
    pub fn devices(&self) -> [&Device; 3] {
        [
            &self.north_device,
            &self.north_sub_device,
            &self.south_device,
        ]
    }
}

/// The services over in-memory adapters, and what was seeded.
pub struct World {
    pub services: Services,
    pub field: Arc<StandInField>,
    /// The token service the auth use case uses, to issue tokens by hand.
    pub tokens: Arc<JwtTokens>,
    pub acme: TenantWorld,
    pub globex: TenantWorld,
    /// A Full member of acme scoped to the area `north` (and so `north/sub`).
    pub acme_north_full: Principal,
    /// A member of both tenants: Basic in acme, Admin in globex.
    pub guest: Principal,
}

impl World {
    /// The seeded tenant with this id.
    pub fn tenant(&self, id: TenantId) -> &TenantWorld {
        if id == self.globex.tenant.id {
            &self.globex
        } else {
            &self.acme
        }
    }
}

fn principal(user: &User, tenant: TenantId, role: Role, scope: DeviceScope) -> Principal {
    Principal {
        user_id: user.id,
        email: user.email.clone(),
        tenant_id: tenant,
        role,
        scope,
    }
}

pub fn user(email: &str) -> User {
    User {
        id: UserId::new(),
        email: EmailAddress::new(email).expect("a valid email"),
        display_name: email.into(),
        password_hash: None,
        disabled: false,
        tokens_valid_from: None,
    }
}

/// Builds the services and seeds both tenants. Needs a Tokio runtime.
pub async fn world() -> World {
    let field = Arc::new(StandInField::default());
    let tokens = Arc::new(
        JwtTokens::new(&[7u8; 32], chrono::Duration::hours(1)).expect("a valid token setup"),
    );
    let bus = Arc::new(InProcessBus::new());
    let services = Services::new(
        Adapters {
            directory: Arc::new(MemoryDirectory::new()),
            documents: Arc::new(MemoryDocuments::new()),
            readings: Arc::new(MemoryReadings::new()),
            live: bus.clone(),
            watch: bus,
            field: field.clone(),
            authorizer: Arc::new(OsoAuthorizer::new().expect("the policy loads")),
            passwords: Arc::new(Argon2Hasher::fast_for_tests().expect("argon2 is set up")),
            tokens: tokens.clone(),
        },
        LoginLimits::default(),
    );
    let provisioner = SystemPrincipal::provisioner();
    services
        .provisioning
        .put_builtin_profile(&provisioner, &profile(profile_id(), None))
        .await
        .expect("the built-in profile is stored");
    let acme = seed_tenant(&services, "acme").await;
    let globex = seed_tenant(&services, "globex").await;

    let scoped = user("north-full@acme.test");
    let scope = DeviceScope::Restricted {
        areas: vec![acme.north.id],
        devices: Vec::new(),
    };
    let membership = Membership {
        user_id: scoped.id,
        tenant_id: acme.tenant.id,
        role: Role::Full,
        scope: scope.clone(),
    };
    services
        .provisioning
        .create_user(&provisioner, &scoped, PASSWORD, &[membership])
        .await
        .expect("the scoped user is created");
    let acme_north_full = principal(&scoped, acme.tenant.id, Role::Full, scope);

    let guest = user("tech@service.test");
    let memberships = [
        Membership {
            user_id: guest.id,
            tenant_id: acme.tenant.id,
            role: Role::Basic,
            scope: DeviceScope::All,
        },
        Membership {
            user_id: guest.id,
            tenant_id: globex.tenant.id,
            role: Role::Admin,
            scope: DeviceScope::All,
        },
    ];
    services
        .provisioning
        .create_user(&provisioner, &guest, PASSWORD, &memberships)
        .await
        .expect("the guest is created");
    let guest = principal(&guest, acme.tenant.id, Role::Basic, DeviceScope::All);

    World {
        services,
        field,
        tokens,
        acme,
        globex,
        acme_north_full,
        guest,
    }
}

async fn seed_tenant(services: &Services, slug: &str) -> TenantWorld {
    let provisioner = SystemPrincipal::provisioner();
    let p = &services.provisioning;
    let tenant = Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new(slug).expect("a valid slug"),
        name: slug.to_uppercase(),
    };
    p.create_tenant(&provisioner, &tenant)
        .await
        .expect("the tenant is created");
    let area = |name: &str, parent: Option<AreaId>| Area {
        id: AreaId::new(),
        tenant_id: tenant.id,
        parent_id: parent,
        name: name.into(),
    };
    let north = area("north", None);
    let north_sub = area("north/sub", Some(north.id));
    let south = area("south", None);
    for a in [&north, &north_sub, &south] {
        p.create_area(&provisioner, a)
            .await
            .expect("the area is created");
    }
    let device = |name: &str, area: &Area| Device {
        id: DeviceId::new(),
        tenant_id: tenant.id,
        area_id: Some(area.id),
        name: format!("{slug} {name}"),
        profile_id: profile_id(),
        endpoint: Endpoint::new("127.0.0.1", 502, 1).expect("a valid endpoint"),
    };
    let north_device = device("north", &north);
    let north_sub_device = device("north sub", &north_sub);
    let south_device = device("south", &south);
    for d in [&north_device, &north_sub_device, &south_device] {
        p.create_device(&provisioner, d)
            .await
            .expect("the device is created");
    }
    let mut members = HashMap::new();
    for role in Role::ALL {
        let u = user(&format!("{}@{slug}.test", role.as_str().replace('_', "")));
        let membership = Membership {
            user_id: u.id,
            tenant_id: tenant.id,
            role,
            scope: DeviceScope::All,
        };
        p.create_user(&provisioner, &u, PASSWORD, &[membership])
            .await
            .expect("the member is created");
        members.insert(role, principal(&u, tenant.id, role, DeviceScope::All));
    }
    TenantWorld {
        tenant,
        north,
        north_sub,
        south,
        north_device,
        north_sub_device,
        south_device,
        members,
    }
}
