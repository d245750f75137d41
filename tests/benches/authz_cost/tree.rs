//! A district-heating tenant as a utility would lay it out: one root area,
//! five regions, five cities per region, five districts per city, and the
//! same number of substations (devices) in every district; seeded through
//! the ports before the services take them over.

use chrono::Utc;
use hearth_domain::model::{
    Area, Device, DeviceProfile, DeviceScope, EmailAddress, Endpoint, Quality, Reading, Role,
    Tenant, TenantSlug,
};
use hearth_domain::ports::{Directory, DocumentStore, LiveBus, LiveEvent, ReadingBatch};
use hearth_domain::{AreaId, DeviceId, Principal, TenantId, UserId};

/// Children of every area above the districts.
pub const FANOUT: usize = 5;
/// Districts in the tree (root, regions, cities, districts).
pub const DISTRICTS: usize = FANOUT * FANOUT * FANOUT;

pub struct Tree {
    pub tenant: Tenant,
    /// Parents before children.
    pub areas: Vec<Area>,
    pub root: AreaId,
    regions: Vec<AreaId>,
    cities: Vec<AreaId>,
    districts: Vec<AreaId>,
    /// District by district, `per_district` each.
    pub devices: Vec<Device>,
    per_district: usize,
    pub profile: DeviceProfile,
}

impl Tree {
    pub fn new(per_district: usize) -> anyhow::Result<Self> {
        let tenant = Tenant {
            id: TenantId::new(),
            slug: TenantSlug::new("heat")?,
            name: "District Heat".into(),
        };
        let profile = hearth_modbus::ecl_comfort_310();
        let mut areas = Vec::new();
        let mut area = |name: String, parent: Option<AreaId>| {
            let a = Area {
                id: AreaId::new(),
                tenant_id: tenant.id,
                parent_id: parent,
                name,
            };
            let id = a.id;
            areas.push(a);
            id
        };
        let root = area("District Heat".into(), None);
        let regions: Vec<AreaId> = (0..FANOUT)
            .map(|r| area(format!("Region {r}"), Some(root)))
            .collect();
        let cities: Vec<AreaId> = (0..FANOUT * FANOUT)
            .map(|i| {
                area(
                    format!("City {}.{}", i / FANOUT, i % FANOUT),
                    Some(regions[i / FANOUT]),
                )
            })
            .collect();
        let districts: Vec<AreaId> = (0..DISTRICTS)
            .map(|i| {
                area(
                    format!("District {}.{}.{}", i / 25, i / FANOUT % FANOUT, i % FANOUT),
                    Some(cities[i / FANOUT]),
                )
            })
            .collect();
        let mut devices = Vec::with_capacity(DISTRICTS * per_district);
        for (k, district) in districts.iter().enumerate() {
            for j in 0..per_district {
                let n = devices.len();
                devices.push(Device {
                    id: DeviceId::new(),
                    tenant_id: tenant.id,
                    area_id: Some(*district),
                    name: format!("Substation {k:03}-{j:03}"),
                    profile_id: profile.id.clone(),
                    endpoint: Endpoint::new(
                        format!("10.{}.{}.{}", n / 65_536, n / 256 % 256, n % 256),
                        502,
                        1,
                    )?,
                });
            }
        }
        Ok(Self {
            tenant,
            areas,
            root,
            regions,
            cities,
            districts,
            devices,
            per_district,
            profile,
        })
    }

    pub fn region(&self, r: usize) -> AreaId {
        self.regions[r]
    }

    pub fn city(&self, r: usize, c: usize) -> AreaId {
        self.cities[r * FANOUT + c]
    }

    pub fn district(&self, r: usize, c: usize, d: usize) -> AreaId {
        self.districts[(r * FANOUT + c) * FANOUT + d]
    }

    /// The devices of one district.
    pub fn in_district(&self, r: usize, c: usize, d: usize) -> &[Device] {
        let k = (r * FANOUT + c) * FANOUT + d;
        &self.devices[k * self.per_district..(k + 1) * self.per_district]
    }

    /// Writes the tenant, its areas, devices and profile into the stores,
    /// and one poll's readings of every device onto the bus (a listing
    /// shows latest values).
    pub async fn seed(
        &self,
        directory: &dyn Directory,
        documents: &dyn DocumentStore,
        live: &dyn LiveBus,
    ) -> anyhow::Result<()> {
        directory.insert_tenant(&self.tenant).await?;
        for area in &self.areas {
            directory.insert_area(area).await?;
        }
        documents.put_profile(&self.profile).await?;
        let now = Utc::now();
        for device in &self.devices {
            directory.insert_device(device).await?;
            let readings = self
                .profile
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| Reading {
                    tenant_id: self.tenant.id,
                    device_id: device.id,
                    point: p.key.clone(),
                    timestamp: now,
                    value: i as f64,
                    quality: Quality::Good,
                })
                .collect();
            let batch = ReadingBatch::new(self.tenant.id, device.id, readings)
                .ok_or_else(|| anyhow::anyhow!("the profile has no points"))?;
            live.publish(LiveEvent::Readings(batch));
        }
        Ok(())
    }

    /// A member of the tenant acting with `role` and `scope`.
    pub fn principal(&self, n: usize, role: Role, scope: DeviceScope) -> anyhow::Result<Principal> {
        Ok(Principal {
            user_id: UserId::new(),
            email: EmailAddress::new(&format!("member{n}@heat.test"))?,
            tenant_id: self.tenant.id,
            role,
            scope,
        })
    }
}
