//! Shared test fixtures: simulated controllers on loopback, devices pointing
//! at them, and the real ingest use case over `hearth-inproc`'s in-memory
//! stores and live bus, so the poller runs without any database.

// Test support: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use hearth_auth::{Argon2Hasher, JwtTokens, OsoAuthorizer};
use hearth_domain::model::{
    Device, DeviceScope, EmailAddress, Endpoint, Reading, Role, Tenant, TenantSlug,
};
use hearth_domain::ports::{DeviceRepository, LiveBus, TenantRepository};
use hearth_domain::services::{
    Adapters, IngestService, LiveService, LiveUpdate, LoginLimits, Services,
};
use hearth_domain::{DeviceId, Principal, ProfileId, TenantId, UserId};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_inproc::readings::MemoryReadings;
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
        endpoint: Endpoint::new(addr.ip().to_string(), addr.port(), 1).expect("valid endpoint"),
    }
}

/// A gateway with short timeouts so fault tests finish quickly.
pub fn gateway() -> ModbusGateway {
    ModbusGateway::new(GatewayConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(60),
        ..GatewayConfig::default()
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

// ------------------------------------------------------------ the use cases

/// The ingest and live use cases over `hearth-inproc`'s stores and bus, the
/// real policy and the given gateway, plus handles on the stores the tests
/// look into.
pub struct TestHearth {
    pub ingest: IngestService,
    pub live_values: LiveService,
    pub directory: Arc<MemoryDirectory>,
    pub documents: Arc<MemoryDocuments>,
    pub live: Arc<InProcessBus>,
    pub readings: Arc<MemoryReadings>,
}

pub fn hearth(gateway: Arc<ModbusGateway>) -> TestHearth {
    let directory = Arc::new(MemoryDirectory::new());
    let documents = Arc::new(MemoryDocuments::new());
    let live = Arc::new(InProcessBus::new());
    let readings = Arc::new(MemoryReadings::new());
    let services = Services::new(
        Adapters {
            directory: directory.clone(),
            documents: documents.clone(),
            readings: readings.clone(),
            live: live.clone(),
            watch: live.clone(),
            field: gateway,
            // The real policy: the poller reads its devices as a system principal.
            authorizer: Arc::new(OsoAuthorizer::new().expect("the policy loads")),
            // Nobody logs in here; the real adapters cost nothing unused.
            passwords: Arc::new(Argon2Hasher::fast_for_tests().expect("argon2 is set up")),
            tokens: Arc::new(
                JwtTokens::new(&[7u8; 32], chrono::Duration::hours(1)).expect("tokens are set up"),
            ),
        },
        LoginLimits::default(),
    );
    TestHearth {
        ingest: services.ingest,
        live_values: services.live,
        directory,
        documents,
        live,
        readings,
    }
}

impl TestHearth {
    /// Adds a device to the directory, with its tenant the first time
    /// (`device_for` gives every device a fresh tenant).
    pub async fn add_device(&self, device: &Device) {
        let known = self
            .directory
            .tenant(device.tenant_id)
            .await
            .expect("the directory answers");
        if known.is_none() {
            let id = device.tenant_id.to_string();
            let tenant = Tenant {
                id: device.tenant_id,
                slug: TenantSlug::new(format!("t-{}", &id[..8])).expect("a valid slug"),
                name: format!("Tenant of {}", device.name),
            };
            self.directory
                .insert_tenant(&tenant)
                .await
                .expect("the tenant is stored");
        }
        self.directory
            .insert_device(device)
            .await
            .expect("the device is stored");
    }

    /// The latest reading of each point of `device`.
    pub fn points_of(&self, device: &Device) -> Vec<Reading> {
        self.live.latest(device.tenant_id, device.id)
    }

    /// The latest reading of one point of `device`.
    pub fn point(&self, device: &Device, point: &str) -> Option<Reading> {
        self.points_of(device)
            .into_iter()
            .find(|r| r.point.as_str() == point)
    }

    /// Whether `device` was last seen online; `None` before its first poll.
    pub fn online(&self, device: &Device) -> Option<bool> {
        self.live
            .status(device.tenant_id, device.id)
            .map(|s| s.online)
    }

    /// Watches `device` live the way a subscriber does, through the live
    /// use case, as an admin of its tenant; dropping the stream stops it.
    pub async fn watch(&self, device: &Device) -> BoxStream<'static, LiveUpdate> {
        let admin = Principal {
            user_id: UserId::new(),
            email: EmailAddress::new("watcher@hearth.test").expect("a valid email"),
            tenant_id: device.tenant_id,
            role: Role::Admin,
            scope: DeviceScope::All,
        };
        self.live_values
            .subscribe_live(&admin, &[device.id])
            .await
            .expect("an admin may watch a device of their tenant")
    }
}
