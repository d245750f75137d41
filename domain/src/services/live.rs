//! Live value subscriptions.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, BoxStream, Stream, StreamExt};

use super::access::{covers_tenant, DeviceAccess};
use crate::error::{DomainError, InvalidValue};
use crate::ids::{DeviceId, TenantId, UserId};
use crate::model::Reading;
use crate::ports::{Action, AlarmEvent, Delivery, DeviceStatus, LiveBus, LiveEvent};
use crate::principal::Principal;

/// What a live subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveUpdate {
    Reading(Reading),
    /// The readings of one poll of one device, shared by all subscribers.
    Readings(Arc<[Reading]>),
    Status(DeviceStatus),
    /// An alarm transition of a device the subscription carries.
    Alarm(AlarmEvent),
    /// The subscriber fell behind; this many updates were dropped for it.
    Lagged(u64),
}

/// Which of the tenant's devices a subscription carries.
enum Watch {
    Tenant,
    Devices(HashSet<DeviceId>),
}

impl Watch {
    /// What both carry.
    fn intersect(&self, other: Watch) -> Watch {
        match (self, other) {
            (Watch::Tenant, other) => other,
            (Watch::Devices(mine), Watch::Tenant) => Watch::Devices(mine.clone()),
            (Watch::Devices(mine), Watch::Devices(theirs)) => {
                Watch::Devices(mine.intersection(&theirs).copied().collect())
            }
        }
    }

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
        self.subscribe_live_following(principal, devices, stream::pending().boxed())
            .await
    }

    /// As [`Self::subscribe_live`], and the subscription follows the caller's
    /// access as it changes: each principal from `changes` (the same user in
    /// the same tenant, re-authenticated) narrows what is delivered to the
    /// devices it may still view, without ending the stream. A change never
    /// widens a subscription beyond what it was opened for. While the new
    /// access cannot be worked out (a store fails), nothing is delivered and
    /// the next event tries again: in doubt, deny.
    pub async fn subscribe_live_following(
        &self,
        principal: &Principal,
        devices: &[DeviceId],
        changes: BoxStream<'static, Principal>,
    ) -> Result<BoxStream<'static, LiveUpdate>, DomainError> {
        if devices.len() > Self::MAX_SUBSCRIBED_DEVICES {
            return Err(InvalidValue::new(
                "deviceIds",
                format!("at most {} devices", Self::MAX_SUBSCRIBED_DEVICES),
            )
            .into());
        }
        let watch = self.watch(principal, devices, true).await?;
        let tenant = principal.tenant_id;
        let deliveries = match &watch {
            Watch::Tenant => self.live.subscribe(tenant),
            Watch::Devices(set) => {
                let ids: Vec<DeviceId> = set.iter().copied().collect();
                self.live.subscribe_devices(tenant, &ids)
            }
        };
        Ok(Following {
            changes,
            deliveries,
            tenant,
            user: principal.user_id,
            follow: Follow {
                service: self.clone(),
                opened: devices.to_vec(),
                watch,
                pending: None,
            },
            refreshing: None,
            held: None,
            changes_done: false,
            deliveries_done: false,
        }
        .boxed())
    }

    /// The devices a subscription by `principal` to `devices` may carry.
    /// `opening` refuses unseen devices (`NotFound`); on a change they are
    /// dropped instead.
    async fn watch(
        &self,
        principal: &Principal,
        devices: &[DeviceId],
        opening: bool,
    ) -> Result<Watch, DomainError> {
        if devices.is_empty() {
            self.access.policy.require_tenant(principal, Action::View)?;
            // The same rule the listing filter is derived from.
            if covers_tenant(principal.role, &principal.scope) {
                // Every device of the tenant, present and future: the tenant's
                // channel already carries nothing else.
                Ok(Watch::Tenant)
            } else {
                Ok(Watch::Devices(
                    self.access.devices_in_scope(principal).await?,
                ))
            }
        } else {
            let mut allowed = HashSet::new();
            for id in devices {
                match self.access.visible_device(principal, *id).await {
                    Ok(_) => {
                        allowed.insert(*id);
                    }
                    Err(DomainError::NotFound(_) | DomainError::Forbidden(_)) if !opening => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(Watch::Devices(allowed))
        }
    }
}

/// A re-check of the caller's access, running.
type Refresh = BoxFuture<'static, Result<Watch, DomainError>>;

/// A live subscription that follows access changes, as one hand-written
/// stream: every delivery passes through here, so it is polled directly,
/// with no future built per item (as `stream::unfold` would) and no
/// combinator layers between the bus and the scope check.
struct Following {
    changes: BoxStream<'static, Principal>,
    deliveries: BoxStream<'static, Delivery>,
    tenant: TenantId,
    user: UserId,
    follow: Follow,
    /// The re-check of `follow.pending`, while it runs; nothing is
    /// delivered meanwhile.
    refreshing: Option<Refresh>,
    /// A delivery that arrived while the access was unknown, passed once
    /// the re-check it started is done.
    held: Option<Delivery>,
    changes_done: bool,
    deliveries_done: bool,
}

impl Stream for Following {
    type Item = LiveUpdate;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LiveUpdate>> {
        // Every field is Unpin (boxed streams and futures).
        let this = self.get_mut();
        loop {
            if let Some(refresh) = this.refreshing.as_mut() {
                let result = std::task::ready!(refresh.poll_unpin(cx));
                this.refreshing = None;
                this.follow.apply(result);
            }
            if let Some(delivery) = this.held.take() {
                if let Some(update) = this.follow.pass(this.tenant, delivery) {
                    return Poll::Ready(Some(update));
                }
                continue;
            }
            // Access changes are taken before any delivery that is ready at
            // the same time, so nothing leaves under a scope that has been
            // replaced.
            if !this.changes_done {
                match this.changes.poll_next_unpin(cx) {
                    Poll::Ready(Some(now)) => {
                        // Another tenant's principal can only be a wiring
                        // mistake; it must not steer this subscription.
                        if now.tenant_id == this.tenant && now.user_id == this.user {
                            this.follow.pending = Some(now);
                            this.refreshing = this.follow.refresh();
                        }
                        continue;
                    }
                    Poll::Ready(None) => this.changes_done = true,
                    Poll::Pending => {}
                }
            }
            if this.deliveries_done {
                // As a merge of the two: over when both are.
                return if this.changes_done {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            }
            match this.deliveries.poll_next_unpin(cx) {
                Poll::Ready(Some(delivery)) => {
                    if this.follow.pending.is_some() {
                        // The last re-check failed: try again first.
                        this.held = Some(delivery);
                        this.refreshing = this.follow.refresh();
                        continue;
                    }
                    if let Some(update) = this.follow.pass(this.tenant, delivery) {
                        return Poll::Ready(Some(update));
                    }
                }
                Poll::Ready(None) => this.deliveries_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The moving part of a subscription that follows access changes.
struct Follow {
    service: LiveService,
    /// The device list the subscription was opened with (empty: its scope).
    opened: Vec<DeviceId>,
    watch: Watch,
    /// A principal whose access is not yet applied (a store failed).
    pending: Option<Principal>,
}

impl Follow {
    /// The re-check of the pending principal: what it may view.
    fn refresh(&self) -> Option<Refresh> {
        let principal = self.pending.clone()?;
        let (service, opened) = (self.service.clone(), self.opened.clone());
        Some(async move { service.watch(&principal, &opened, false).await }.boxed())
    }

    /// Applies a re-check's outcome, intersected with what the
    /// subscription already carries (a change never widens it).
    fn apply(&mut self, result: Result<Watch, DomainError>) {
        let narrowed = match result {
            Ok(now) => self.watch.intersect(now),
            Err(DomainError::Forbidden(_) | DomainError::NotFound(_)) => {
                Watch::Devices(HashSet::new())
            }
            Err(err) => {
                tracing::warn!(error = %err, "Could not re-check a live subscription's scope; delivering nothing until it can.");
                return;
            }
        };
        self.watch = narrowed;
        self.pending = None;
    }

    /// The update for a delivery this subscription carries now, if any.
    fn pass(&self, tenant: TenantId, delivery: Delivery) -> Option<LiveUpdate> {
        if self.pending.is_some() {
            // The current access is unknown: deliver nothing.
            return match delivery {
                Delivery::Lagged(n) => Some(LiveUpdate::Lagged(n)),
                Delivery::Event(_) => None,
            };
        }
        match delivery {
            Delivery::Event(event)
                if event.tenant_id() == tenant && self.watch.covers(event.device_id()) =>
            {
                Some(match event {
                    LiveEvent::Reading(r) => LiveUpdate::Reading(r),
                    LiveEvent::Readings(batch) => LiveUpdate::Readings(batch.readings().clone()),
                    LiveEvent::Status(s) => LiveUpdate::Status(s),
                    LiveEvent::Alarm(a) => LiveUpdate::Alarm(a),
                })
            }
            Delivery::Event(_) => None,
            Delivery::Lagged(n) => Some(LiveUpdate::Lagged(n)),
        }
    }
}
