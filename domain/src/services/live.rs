//! Live value subscriptions.

use std::collections::HashSet;
use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt};

use super::access::{covers_tenant, DeviceAccess};
use crate::error::{DomainError, InvalidValue};
use crate::ids::DeviceId;
use crate::model::Reading;
use crate::ports::{Action, Delivery, DeviceStatus, LiveBus, LiveEvent};
use crate::principal::Principal;

/// What a live subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveUpdate {
    Reading(Reading),
    /// The readings of one poll of one device, shared by all subscribers.
    Readings(Arc<[Reading]>),
    Status(DeviceStatus),
    /// The subscriber fell behind; this many updates were dropped for it.
    Lagged(u64),
}

/// Which of the tenant's devices a subscription carries.
enum Watch {
    Tenant,
    Devices(HashSet<DeviceId>),
}

impl Watch {
    fn covers(&self, device: DeviceId) -> bool {
        match self {
            Watch::Tenant => true,
            Watch::Devices(set) => set.contains(&device),
        }
    }
}

/// Live value subscriptions.
#[derive(Clone)]
pub struct LiveService {
    access: DeviceAccess,
    live: Arc<dyn LiveBus>,
}

impl LiveService {
    pub(crate) fn new(access: DeviceAccess, live: Arc<dyn LiveBus>) -> Self {
        Self { access, live }
    }

    /// Most devices one subscription may watch.
    pub const MAX_SUBSCRIBED_DEVICES: usize = 1000;

    /// Changes of the given devices, each of which the caller must be able to
    /// view (otherwise `NotFound`, as for a read). An empty list means every
    /// device in the caller's scope at subscription time.
    pub async fn subscribe_live(
        &self,
        principal: &Principal,
        devices: &[DeviceId],
    ) -> Result<BoxStream<'static, LiveUpdate>, DomainError> {
        if devices.len() > Self::MAX_SUBSCRIBED_DEVICES {
            return Err(InvalidValue::new(
                "deviceIds",
                format!("at most {} devices", Self::MAX_SUBSCRIBED_DEVICES),
            )
            .into());
        }
        let watch = if devices.is_empty() {
            self.access.policy.require_tenant(principal, Action::View)?;
            // The same rule the listing filter is derived from.
            if covers_tenant(principal.role, &principal.scope) {
                // Every device of the tenant, present and future: the tenant's
                // channel already carries nothing else.
                Watch::Tenant
            } else {
                Watch::Devices(self.access.devices_in_scope(principal).await?)
            }
        } else {
            let mut allowed = HashSet::new();
            for id in devices {
                self.access.visible_device(principal, *id).await?;
                allowed.insert(*id);
            }
            Watch::Devices(allowed)
        };
        let tenant = principal.tenant_id;
        let deliveries = match &watch {
            Watch::Tenant => self.live.subscribe(tenant),
            Watch::Devices(set) => {
                let ids: Vec<DeviceId> = set.iter().copied().collect();
                self.live.subscribe_devices(tenant, &ids)
            }
        };
        // The filter stays even where the bus routes per device: what leaves
        // here is checked against what the caller was authorized for.
        let stream = deliveries.filter_map(move |delivery| {
            let update = match delivery {
                Delivery::Event(event)
                    if event.tenant_id() == tenant && watch.covers(event.device_id()) =>
                {
                    Some(match event {
                        LiveEvent::Reading(r) => LiveUpdate::Reading(r),
                        LiveEvent::Readings(batch) => {
                            LiveUpdate::Readings(batch.readings().clone())
                        }
                        LiveEvent::Status(s) => LiveUpdate::Status(s),
                    })
                }
                Delivery::Event(_) => None,
                Delivery::Lagged(n) => Some(LiveUpdate::Lagged(n)),
            };
            futures::future::ready(update)
        });
        Ok(stream.boxed())
    }
}
