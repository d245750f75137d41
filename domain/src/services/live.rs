//! Live value subscriptions.

use std::collections::HashSet;

use futures::stream::{BoxStream, StreamExt};

use super::Hearth;
use crate::error::{DomainError, InvalidValue};
use crate::ids::DeviceId;
use crate::model::Reading;
use crate::ports::{Delivery, DeviceStatus, LiveEvent};
use crate::principal::Principal;

/// What a live subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveUpdate {
    Reading(Reading),
    Status(DeviceStatus),
    /// The subscriber fell behind; this many updates were dropped for it.
    Lagged(u64),
}

impl Hearth {
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
        let mut allowed = HashSet::new();
        if devices.is_empty() {
            let mut offset = 0;
            loop {
                let page = self
                    .list_devices(
                        principal,
                        super::DeviceQuery {
                            offset,
                            limit: Self::MAX_PAGE,
                            ..Default::default()
                        },
                    )
                    .await?;
                let n = page.items.len() as u64;
                allowed.extend(page.items.into_iter().map(|d| d.device.id));
                offset += n;
                if n == 0 || offset >= page.total {
                    break;
                }
            }
        } else {
            for id in devices {
                self.visible_device(principal, *id).await?;
                allowed.insert(*id);
            }
        }
        let tenant = principal.tenant_id;
        let stream = self
            .ports
            .live
            .subscribe(tenant)
            .filter_map(move |delivery| {
                let update = match delivery {
                    Delivery::Event(event)
                        if event.tenant_id() == tenant && allowed.contains(&event.device_id()) =>
                    {
                        Some(match event {
                            LiveEvent::Reading(r) => LiveUpdate::Reading(r),
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
