//! Shared test fixtures: simulated controllers on loopback, devices pointing
//! at them, and in-memory stand-ins for the storage ports so the poller can
//! run against the real ingest use case without any database.

// Test support: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use hearth_auth::OsoAuthorizer;
use hearth_domain::model::{
    Area, AuditEntry, Device, DeviceProfile, EmailAddress, HistoryBucket, HistoryQuery, Membership,
    ModbusEndpoint, PasswordHash, Reading, Tenant, User,
};
use hearth_domain::ports::{
    AreaRepository, AuditCursor, AuditFilter, AuditLog, AuditRecord, Delivery, DeviceFilter,
    DeviceRepository, DeviceStatus, DocumentStore, LiveBus, LiveEvent, Page, PasswordHasher,
    ReadingStore, TenantRepository, TokenClaims, TokenError, TokenService, UserRepository,
};
use hearth_domain::services::{Adapters, IngestService, LoginLimits, Services};
use hearth_domain::{DeviceId, PointKey, ProfileId, StoreError, TenantId, UserId};
use hearth_modbus::{GatewayConfig, ModbusGateway, Simulator};

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Simulated controllers on ephemeral loopback ports.
pub async fn simulator(count: usize) -> Simulator {
    Simulator::start(count, 0, LOOPBACK)
        .await
        .expect("loopback ports can be bound")
}

/// A device of a fresh tenant pointing at simulated controller `index`.
pub fn device_for(sim: &Simulator, index: usize, profile: &ProfileId) -> Device {
    let addr = sim.addr(index).expect("the simulator has this device");
    Device {
        id: DeviceId::new(),
        tenant_id: TenantId::new(),
        area_id: None,
        name: format!("ECL {index}"),
        profile_id: profile.clone(),
        endpoint: ModbusEndpoint::new(addr.ip().to_string(), addr.port(), 1)
            .expect("valid endpoint"),
    }
}

/// A gateway with short timeouts so fault tests finish quickly.
pub fn gateway() -> ModbusGateway {
    ModbusGateway::new(GatewayConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(60),
    })
}

/// Waits until `check` holds. The deadline only stops a hung test; it is
/// far above how long anything should take and nothing asserts on timing.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------ port stand-ins

fn unused<T>() -> Result<T, StoreError> {
    Err(StoreError::Backend(anyhow::anyhow!(
        "not used by the poller tests"
    )))
}

#[derive(Default)]
pub struct MemoryDirectory {
    pub devices: Mutex<Vec<Device>>,
}

#[async_trait]
impl TenantRepository for MemoryDirectory {
    async fn insert_tenant(&self, _: &Tenant) -> Result<(), StoreError> {
        unused()
    }
    async fn tenant(&self, _: TenantId) -> Result<Option<Tenant>, StoreError> {
        unused()
    }
    async fn tenant_by_slug(&self, _: &str) -> Result<Option<Tenant>, StoreError> {
        unused()
    }
}

#[async_trait]
impl UserRepository for MemoryDirectory {
    async fn insert_user(&self, _: &User) -> Result<(), StoreError> {
        unused()
    }
    async fn user(&self, _: UserId) -> Result<Option<User>, StoreError> {
        unused()
    }
    async fn user_by_email(&self, _: &EmailAddress) -> Result<Option<User>, StoreError> {
        unused()
    }
    async fn set_password(&self, _: UserId, _: &PasswordHash) -> Result<(), StoreError> {
        unused()
    }
    async fn upsert_membership(&self, _: &Membership) -> Result<(), StoreError> {
        unused()
    }
    async fn memberships_of(&self, _: UserId) -> Result<Vec<Membership>, StoreError> {
        unused()
    }
    async fn membership(&self, _: UserId, _: TenantId) -> Result<Option<Membership>, StoreError> {
        unused()
    }
    async fn remove_membership(&self, _: UserId, _: TenantId) -> Result<bool, StoreError> {
        unused()
    }
}

#[async_trait]
impl AreaRepository for MemoryDirectory {
    async fn insert_area(&self, _: &Area) -> Result<(), StoreError> {
        unused()
    }
    /// No areas: the poller asks for them to place each device in the
    /// policy's terms, and the stand-in's devices have none.
    async fn areas(&self, _: TenantId) -> Result<Vec<Area>, StoreError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl DeviceRepository for MemoryDirectory {
    async fn insert_device(&self, device: &Device) -> Result<(), StoreError> {
        self.devices.lock().expect("lock").push(device.clone());
        Ok(())
    }
    async fn device(&self, tenant: TenantId, id: DeviceId) -> Result<Option<Device>, StoreError> {
        let devices = self.devices.lock().expect("lock");
        Ok(devices
            .iter()
            .find(|d| d.id == id && d.tenant_id == tenant)
            .cloned())
    }
    async fn devices(
        &self,
        _: TenantId,
        _: &DeviceFilter,
        _: u64,
        _: u64,
    ) -> Result<Page<Device>, StoreError> {
        unused()
    }
    async fn all_devices(&self) -> Result<Vec<Device>, StoreError> {
        Ok(self.devices.lock().expect("lock").clone())
    }
}

#[async_trait]
impl AuditLog for MemoryDirectory {
    async fn append_audit(&self, _: &AuditEntry, _: chrono::Duration) -> Result<(), StoreError> {
        Ok(())
    }
    async fn audit(
        &self,
        _: TenantId,
        _: &AuditFilter,
        _: Option<AuditCursor>,
        _: u64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        unused()
    }
}

#[derive(Default)]
pub struct MemoryDocuments {
    pub profiles: Mutex<HashMap<ProfileId, DeviceProfile>>,
}

#[async_trait]
impl DocumentStore for MemoryDocuments {
    async fn put_profile(&self, profile: &DeviceProfile) -> Result<(), StoreError> {
        self.profiles
            .lock()
            .expect("lock")
            .insert(profile.id.clone(), profile.clone());
        Ok(())
    }
    async fn profile(
        &self,
        tenant: TenantId,
        id: &ProfileId,
    ) -> Result<Option<DeviceProfile>, StoreError> {
        Ok(self
            .profiles
            .lock()
            .expect("lock")
            .get(id)
            .filter(|p| p.tenant_id.is_none() || p.tenant_id == Some(tenant))
            .cloned())
    }
    async fn profiles(&self, _: TenantId) -> Result<Vec<DeviceProfile>, StoreError> {
        unused()
    }
}

#[derive(Default)]
pub struct MemoryReadings {
    pub stored: Mutex<Vec<Reading>>,
}

#[async_trait]
impl ReadingStore for MemoryReadings {
    async fn append(&self, batch: &[Reading]) -> Result<(), StoreError> {
        self.stored.lock().expect("lock").extend_from_slice(batch);
        Ok(())
    }
    async fn history(&self, _: &HistoryQuery) -> Result<Vec<HistoryBucket>, StoreError> {
        Ok(Vec::new())
    }
}

/// Keeps the latest reading per point and the latest status per device;
/// which devices are watched is set by the test.
#[derive(Default)]
pub struct MemoryLive {
    latest: Mutex<HashMap<(DeviceId, PointKey), Reading>>,
    status: Mutex<HashMap<DeviceId, DeviceStatus>>,
    watched: Mutex<HashSet<DeviceId>>,
}

impl MemoryLive {
    pub fn watch(&self, device: DeviceId, watched: bool) {
        let mut set = self.watched.lock().expect("lock");
        if watched {
            set.insert(device);
        } else {
            set.remove(&device);
        }
    }
    pub fn online(&self, device: DeviceId) -> Option<bool> {
        self.status
            .lock()
            .expect("lock")
            .get(&device)
            .map(|s| s.online)
    }
    pub fn point(&self, device: DeviceId, point: &str) -> Option<Reading> {
        let key = (device, PointKey::new(point).expect("valid key"));
        self.latest.lock().expect("lock").get(&key).cloned()
    }
    pub fn points_of(&self, device: DeviceId) -> Vec<Reading> {
        let latest = self.latest.lock().expect("lock");
        latest
            .values()
            .filter(|r| r.device_id == device)
            .cloned()
            .collect()
    }
}

impl LiveBus for MemoryLive {
    fn publish(&self, event: LiveEvent) {
        match event {
            LiveEvent::Reading(r) => {
                self.latest
                    .lock()
                    .expect("lock")
                    .insert((r.device_id, r.point.clone()), r);
            }
            LiveEvent::Readings(batch) => {
                let mut latest = self.latest.lock().expect("lock");
                for r in batch.readings().iter() {
                    latest.insert((r.device_id, r.point.clone()), r.clone());
                }
            }
            LiveEvent::Status(s) => {
                self.status.lock().expect("lock").insert(s.device_id, s);
            }
        }
    }
    fn subscribe(&self, _: TenantId) -> BoxStream<'static, Delivery> {
        futures::stream::empty().boxed()
    }
    fn latest(&self, tenant: TenantId, device: DeviceId) -> Vec<Reading> {
        self.points_of(device)
            .into_iter()
            .filter(|r| r.tenant_id == tenant)
            .collect()
    }
    fn is_watched(&self, _: TenantId, device: DeviceId) -> bool {
        self.watched.lock().expect("lock").contains(&device)
    }
    fn status(&self, tenant: TenantId, device: DeviceId) -> Option<DeviceStatus> {
        let status = self.status.lock().expect("lock");
        status
            .get(&device)
            .filter(|s| s.tenant_id == tenant)
            .cloned()
    }
}

struct DenyAll;

impl PasswordHasher for DenyAll {
    fn hash(&self, _: &str) -> Result<PasswordHash, anyhow::Error> {
        Err(anyhow::anyhow!("not used"))
    }
    fn verify(&self, _: &str, _: &PasswordHash) -> bool {
        false
    }
    fn verify_dummy(&self, _: &str) {}
}

impl TokenService for DenyAll {
    fn issue(&self, _: UserId, _: TenantId) -> Result<(String, TokenClaims), anyhow::Error> {
        Err(anyhow::anyhow!("not used"))
    }
    fn verify(&self, _: &str) -> Result<TokenClaims, TokenError> {
        Err(TokenError::Invalid)
    }
}

/// The ingest use case over in-memory stores, the real policy and the given
/// gateway, plus handles on the stores the tests look into.
pub struct TestHearth {
    pub ingest: IngestService,
    pub directory: Arc<MemoryDirectory>,
    pub documents: Arc<MemoryDocuments>,
    pub live: Arc<MemoryLive>,
    pub readings: Arc<MemoryReadings>,
}

pub fn hearth(gateway: Arc<ModbusGateway>) -> TestHearth {
    let directory = Arc::new(MemoryDirectory::default());
    let documents = Arc::new(MemoryDocuments::default());
    let live = Arc::new(MemoryLive::default());
    let readings = Arc::new(MemoryReadings::default());
    let services = Services::new(
        Adapters {
            directory: directory.clone(),
            documents: documents.clone(),
            readings: readings.clone(),
            live: live.clone(),
            field: gateway,
            // The real policy: the poller reads its devices as a system principal.
            authorizer: Arc::new(OsoAuthorizer::new().expect("the policy loads")),
            passwords: Arc::new(DenyAll),
            tokens: Arc::new(DenyAll),
        },
        LoginLimits::default(),
    );
    TestHearth {
        ingest: services.ingest,
        directory,
        documents,
        live,
        readings,
    }
}
