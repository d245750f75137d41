//! Subscriptions: `liveValues` and `deviceStatus`. Over WebSocket they
//! follow the caller's access: a narrowed scope narrows a running stream.

use async_graphql::{Context, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, Stream, StreamExt};
use hearth_domain::model::Reading;
use hearth_domain::services::LiveUpdate;
use hearth_domain::{DeviceId, Principal};
use tokio::sync::watch;

use super::devices::Quality;
use super::error::{coded, from_domain, Code};
use super::{parse_id, principal, services};

#[derive(SimpleObject, Clone)]
pub struct LiveValue {
    pub device_id: ID,
    pub point: String,
    pub value: f64,
    pub quality: Quality,
    pub timestamp: DateTime<Utc>,
}

#[derive(SimpleObject, Clone)]
pub struct DeviceStatusEvent {
    pub device_id: ID,
    pub online: bool,
    pub timestamp: DateTime<Utc>,
}

#[derive(Default)]
pub struct LiveSubscription;

pub(super) fn lagged(n: u64) -> async_graphql::Error {
    coded(
        Code::Lagged,
        format!(
            "{n} updates were dropped because this subscriber fell behind; refetch current values"
        ),
    )
}

fn live_value(r: &Reading) -> LiveValue {
    LiveValue {
        device_id: ID(r.device_id.to_string()),
        point: r.point.to_string(),
        value: r.value,
        quality: r.quality.into(),
        timestamp: r.timestamp,
    }
}

/// The caller's principal each time the transport re-authenticates it and
/// finds it changed (the WebSocket layer puts this into each operation's
/// data); `None` until the first change.
#[derive(Clone)]
pub struct AccessChanges(pub watch::Receiver<Option<Principal>>);

/// The caller's authorized update stream for these devices, narrowed in
/// place when the transport reports an access change.
pub(super) async fn updates(
    ctx: &Context<'_>,
    device_ids: &[ID],
) -> async_graphql::Result<BoxStream<'static, LiveUpdate>> {
    let principal = principal(ctx)?;
    let ids = device_ids
        .iter()
        .map(|id| parse_id::<DeviceId>(id, "device"))
        .collect::<async_graphql::Result<Vec<_>>>()?;
    let changes = match ctx.data_opt::<AccessChanges>() {
        Some(AccessChanges(rx)) => tokio_stream::wrappers::WatchStream::from_changes(rx.clone())
            .filter_map(futures::future::ready)
            .boxed(),
        None => futures::stream::pending().boxed(),
    };
    services(ctx)
        .live
        .subscribe_live_following(principal, &ids, changes)
        .await
        .map_err(from_domain)
}

#[Subscription]
impl LiveSubscription {
    /// Every new value of the given devices (all visible devices when the
    /// list is empty). A subscriber that falls behind gets a `LAGGED` error
    /// item and the stream goes on.
    async fn live_values(
        &self,
        ctx: &Context<'_>,
        device_ids: Vec<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LiveValue>>> {
        Ok(updates(ctx, &device_ids).await?.flat_map(|update| {
            let items: Vec<async_graphql::Result<LiveValue>> = match update {
                LiveUpdate::Reading(r) => vec![Ok(live_value(&r))],
                LiveUpdate::Readings(batch) => batch.iter().map(|r| Ok(live_value(r))).collect(),
                LiveUpdate::Status(_) | LiveUpdate::Alarm(_) => Vec::new(),
                LiveUpdate::Lagged(n) => vec![Err(lagged(n))],
            };
            futures::stream::iter(items)
        }))
    }

    /// Devices going on- and offline (all visible devices when the list is empty).
    async fn device_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] device_ids: Vec<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<DeviceStatusEvent>>> {
        Ok(updates(ctx, &device_ids).await?.filter_map(|update| {
            futures::future::ready(match update {
                LiveUpdate::Status(s) => Some(Ok(DeviceStatusEvent {
                    device_id: ID(s.device_id.to_string()),
                    online: s.online,
                    timestamp: s.at,
                })),
                LiveUpdate::Reading(_) | LiveUpdate::Readings(_) | LiveUpdate::Alarm(_) => None,
                LiveUpdate::Lagged(n) => Some(Err(lagged(n))),
            })
        }))
    }
}
