//! Listing and reading devices with their points' latest values.

use std::collections::HashMap;
use std::sync::Arc;

use super::access::{area_in_scope, scope_filter, DeviceAccess};
use crate::error::{DomainError, InvalidValue};
use crate::ids::{AreaId, DeviceId, ProfileId, TenantId};
use crate::model::{Area, AreaTree, Device, DeviceProfile, PointDefinition, Reading};
use crate::ports::{Action, LiveBus};
use crate::principal::Principal;

/// A point definition with its latest value, if any was read yet.
#[derive(Debug, Clone)]
pub struct PointView {
    pub definition: PointDefinition,
    pub latest: Option<Reading>,
}

#[derive(Debug, Clone)]
pub struct DeviceView {
    pub device: Device,
    pub area: Option<Area>,
    /// `None` until the device was polled once.
    pub online: Option<bool>,
    pub points: Vec<PointView>,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceQuery {
    pub area: Option<AreaId>,
    pub search: Option<String>,
    pub offset: u64,
    pub limit: u64,
}

#[derive(Debug, Clone)]
pub struct DevicePage {
    pub items: Vec<DeviceView>,
    pub total: u64,
    pub offset: u64,
}

/// Listing and reading devices.
#[derive(Clone)]
pub struct DeviceService {
    access: DeviceAccess,
    live: Arc<dyn LiveBus>,
}

impl DeviceService {
    pub(crate) fn new(access: DeviceAccess, live: Arc<dyn LiveBus>) -> Self {
        Self { access, live }
    }

    /// Most devices one page may hold.
    pub const MAX_PAGE: u64 = 200;

    /// Devices of the caller's tenant within their scope. The policy decides
    /// whether the caller may view the tenant's devices at all; the scope is
    /// then pushed down to the store as a filter, so one policy decision
    /// serves the whole page instead of one per device.
    pub async fn list_devices(
        &self,
        principal: &Principal,
        query: DeviceQuery,
    ) -> Result<DevicePage, DomainError> {
        self.access.policy.require_tenant(principal, Action::View)?;
        if query.limit == 0 || query.limit > Self::MAX_PAGE {
            return Err(
                InvalidValue::new("first", format!("must be 1 to {}", Self::MAX_PAGE)).into(),
            );
        }
        if query.search.as_ref().is_some_and(|s| s.len() > 200) {
            return Err(InvalidValue::new("search", "at most 200 characters").into());
        }
        let areas = self.access.areas(principal.tenant_id).await?;
        let tree = AreaTree::new(&areas);
        let mut filter = scope_filter(principal.role, &principal.scope, &tree);
        filter.search = query.search.filter(|s| !s.trim().is_empty());
        if let Some(area) = query.area {
            // An area outside the caller's scope is answered as one that
            // does not exist: an empty page would tell that it does.
            if !area_in_scope(principal.role, &principal.scope, &tree, area) {
                return Err(DomainError::NotFound("area".into()));
            }
            let wanted = tree.subtree(&[area]);
            filter.areas = Some(match filter.areas.take() {
                None => wanted.into_iter().collect(),
                Some(allowed) => allowed.into_iter().filter(|a| wanted.contains(a)).collect(),
            });
            filter.also_devices.clear();
        }
        let page = self
            .access
            .page(principal.tenant_id, &filter, query.offset, query.limit)
            .await?;
        let by_id: HashMap<AreaId, Area> = areas.into_iter().map(|a| (a.id, a)).collect();
        let mut profiles = ProfileCache::default();
        let mut items = Vec::with_capacity(page.items.len());
        for device in page.items {
            let profile = profiles
                .get(&self.access, device.tenant_id, &device.profile_id)
                .await?;
            items.push(self.view(device, &by_id, profile.as_ref()));
        }
        Ok(DevicePage {
            items,
            total: page.total,
            offset: query.offset,
        })
    }

    /// One device, or `NotFound` if it does not exist in the caller's tenant
    /// or lies outside their scope (the two are indistinguishable).
    pub async fn device(
        &self,
        principal: &Principal,
        id: DeviceId,
    ) -> Result<DeviceView, DomainError> {
        let (device, areas) = self.access.visible_device(principal, id).await?;
        let by_id: HashMap<AreaId, Area> = areas.into_iter().map(|a| (a.id, a)).collect();
        let profile = self
            .access
            .profile(device.tenant_id, &device.profile_id)
            .await?;
        Ok(self.view(device, &by_id, profile.as_ref()))
    }

    fn view(
        &self,
        device: Device,
        areas: &HashMap<AreaId, Area>,
        profile: Option<&DeviceProfile>,
    ) -> DeviceView {
        let mut latest: HashMap<_, _> = self
            .live
            .latest(device.tenant_id, device.id)
            .into_iter()
            .map(|r| (r.point.clone(), r))
            .collect();
        let points = profile
            .map(|p| {
                p.points
                    .iter()
                    .map(|def| PointView {
                        latest: latest.remove(&def.key),
                        definition: def.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let online = self
            .live
            .status(device.tenant_id, device.id)
            .map(|s| s.online);
        DeviceView {
            area: device.area_id.and_then(|a| areas.get(&a).cloned()),
            online,
            points,
            device,
        }
    }
}

/// Loads each profile once per request.
#[derive(Default)]
struct ProfileCache(HashMap<ProfileId, Option<DeviceProfile>>);

impl ProfileCache {
    async fn get(
        &mut self,
        access: &DeviceAccess,
        tenant: TenantId,
        id: &ProfileId,
    ) -> Result<Option<DeviceProfile>, DomainError> {
        if let Some(found) = self.0.get(id) {
            return Ok(found.clone());
        }
        let profile = access.profile(tenant, id).await?;
        self.0.insert(id.clone(), profile.clone());
        Ok(profile)
    }
}
