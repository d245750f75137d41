//! Which devices a caller may see: the one Rust statement of the device
//! scope rule ([`device_in_scope`], which `hearth.polar`'s `in_scope` states
//! for the policy), the store filter derived from it, and the device access
//! every device-facing service shares.

use std::collections::HashSet;
use std::sync::Arc;

use super::Policy;
use crate::error::DomainError;
use crate::ids::{AreaId, DeviceId, ProfileId, TenantId};
use crate::model::{Area, AreaTree, Device, DeviceProfile, DeviceScope, Role};
use crate::ports::{
    Action, AreaRepository, DeviceFilter, DeviceRepository, DocumentStore, Page, Resource,
};
use crate::principal::Principal;

/// Whether a membership's scope covers every device of the tenant, present
/// and future (`unscoped` in the policy).
pub fn covers_tenant(role: Role, scope: &DeviceScope) -> bool {
    role == Role::Admin || *scope == DeviceScope::All
}

/// Whether a restricted scope's area grants cover a device whose area and
/// its ancestors are `area_path` (an area grant covers its subtree).
fn areas_cover(scope: &DeviceScope, area_path: &[AreaId]) -> bool {
    match scope {
        DeviceScope::All => true,
        DeviceScope::Restricted { areas, .. } => area_path.iter().any(|a| areas.contains(a)),
    }
}

/// The device scope rule: is `device`, in the area with ancestry
/// `area_path` (nearest first, empty for none), in the scope of a membership
/// with `role` and `scope`? `hearth.polar`'s `in_scope` says the same for
/// the policy; a property test checks the two agree on random trees.
pub fn device_in_scope(
    role: Role,
    scope: &DeviceScope,
    device: DeviceId,
    area_path: &[AreaId],
) -> bool {
    match scope {
        _ if covers_tenant(role, scope) => true,
        DeviceScope::All => true,
        DeviceScope::Restricted { devices, .. } => {
            devices.contains(&device) || areas_cover(scope, area_path)
        }
    }
}

/// The store filter equivalent of [`device_in_scope`] over the tenant's
/// areas: a device passes when a grant names it or when the rule holds for
/// its area's path, so the area list is the rule asked once per area.
pub fn scope_filter(role: Role, scope: &DeviceScope, tree: &AreaTree) -> DeviceFilter {
    match scope {
        _ if covers_tenant(role, scope) => DeviceFilter::default(),
        DeviceScope::All => DeviceFilter::default(),
        DeviceScope::Restricted { devices, .. } => DeviceFilter {
            areas: Some(
                tree.ids()
                    .filter(|a| areas_cover(scope, &tree.path(*a)))
                    .collect(),
            ),
            also_devices: devices.clone(),
            search: None,
        },
    }
}

/// The policy resource for a device, with its area ancestry.
pub(crate) fn device_resource(device: &Device, tree: &AreaTree) -> Resource {
    Resource::Device {
        tenant_id: device.tenant_id,
        device_id: device.id,
        area_path: device.area_id.map(|a| tree.path(a)).unwrap_or_default(),
    }
}

/// Device reads with the caller's scope applied, shared by the services
/// that act on devices.
#[derive(Clone)]
pub(crate) struct DeviceAccess {
    areas: Arc<dyn AreaRepository>,
    devices: Arc<dyn DeviceRepository>,
    documents: Arc<dyn DocumentStore>,
    pub(crate) policy: Policy,
}

impl DeviceAccess {
    pub(crate) fn new(
        areas: Arc<dyn AreaRepository>,
        devices: Arc<dyn DeviceRepository>,
        documents: Arc<dyn DocumentStore>,
        policy: Policy,
    ) -> Self {
        Self {
            areas,
            devices,
            documents,
            policy,
        }
    }

    pub(crate) async fn areas(&self, tenant: TenantId) -> Result<Vec<Area>, DomainError> {
        Ok(self.areas.areas(tenant).await?)
    }

    /// A device of the tenant, whatever the caller's scope: for use cases
    /// that checked the policy themselves, and internal jobs.
    pub(crate) async fn device(
        &self,
        tenant: TenantId,
        id: DeviceId,
    ) -> Result<Option<Device>, DomainError> {
        Ok(self.devices.device(tenant, id).await?)
    }

    /// A profile as the tenant sees it (built-ins and its own only).
    pub(crate) async fn profile(
        &self,
        tenant: TenantId,
        id: &ProfileId,
    ) -> Result<Option<DeviceProfile>, DomainError> {
        Ok(self.documents.profile(tenant, id).await?)
    }

    /// A page of the tenant's devices through `filter`, which the caller
    /// built from [`scope_filter`].
    pub(crate) async fn page(
        &self,
        tenant: TenantId,
        filter: &DeviceFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Device>, DomainError> {
        Ok(self.devices.devices(tenant, filter, offset, limit).await?)
    }

    /// Loads a device the caller may view, with the tenant's areas; `NotFound`
    /// when it does not exist in the caller's tenant or lies outside their
    /// scope (the two are indistinguishable).
    pub(crate) async fn visible_device(
        &self,
        principal: &Principal,
        id: DeviceId,
    ) -> Result<(Device, Vec<Area>), DomainError> {
        let not_found = || DomainError::NotFound("device".into());
        let device = self
            .devices
            .device(principal.tenant_id, id)
            .await?
            .ok_or_else(not_found)?;
        let areas = self.areas.areas(principal.tenant_id).await?;
        let resource = device_resource(&device, &AreaTree::new(&areas));
        self.policy
            .authorize(principal, Action::View, &resource)
            .map_err(|_| not_found())?;
        Ok((device, areas))
    }

    /// Ids of every device in a caller's scope (after the policy allowed
    /// them to view the tenant's devices at all).
    pub(crate) async fn devices_in_scope(
        &self,
        principal: &Principal,
    ) -> Result<HashSet<DeviceId>, DomainError> {
        self.policy.require_tenant(principal, Action::View)?;
        let areas = self.areas.areas(principal.tenant_id).await?;
        let filter = scope_filter(principal.role, &principal.scope, &AreaTree::new(&areas));
        let mut allowed = HashSet::new();
        let mut offset = 0;
        loop {
            let page = self
                .page(principal.tenant_id, &filter, offset, Self::SCAN_PAGE)
                .await?;
            let n = page.items.len() as u64;
            allowed.extend(page.items.into_iter().map(|d| d.id));
            offset += n;
            if n == 0 || offset >= page.total {
                return Ok(allowed);
            }
        }
    }

    /// Devices read per store call while collecting a scope.
    const SCAN_PAGE: u64 = 200;

    /// Every device of every tenant: for internal jobs only, after the
    /// policy allowed them.
    pub(crate) async fn all_devices(&self) -> Result<Vec<Device>, DomainError> {
        Ok(self.devices.all_devices().await?)
    }
}
