//! The live bus of a single `hearth` process: latest state in sharded maps,
//! fan-out through one bounded broadcast channel per tenant.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use futures::stream::{BoxStream, StreamExt};
use hearth_domain::model::Reading;
use hearth_domain::ports::{Delivery, DeviceStatus, LiveBus, LiveEvent, WatchInterest};
use hearth_domain::{DeviceId, PointKey, TenantId};
use parking_lot::RwLock;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

/// Shards of the latest-state map. Pollers publish while device listings read
/// `latest` for dozens of devices per request; spreading devices over shards
/// keeps a publish from stalling readers of unrelated devices.
const SHARDS: usize = 32;

/// Events buffered per subscriber before it is reported as lagging.
pub const DEFAULT_CAPACITY: usize = 4096;

/// What the bus remembers about one device.
#[derive(Default)]
struct DeviceState {
    /// Latest value per point, in the order the points were first seen. A
    /// poll publishes its points in the same order every time, so the
    /// reading at position `i` of a batch is almost always `points[i]`'s
    /// point: recording a poll compares keys once per reading instead of
    /// searching a map.
    points: Vec<Reading>,
    /// Position in `points` by key, for readings out of that order.
    index: HashMap<PointKey, usize>,
    /// Positions in `points` ordered by key, so `latest` is deterministic.
    by_key: Vec<usize>,
    status: Option<DeviceStatus>,
}

impl DeviceState {
    /// Keeps `reading` as its point's latest value unless a newer one is
    /// known: a late, older sample (a retried poll, out-of-order delivery)
    /// must not overwrite it; an equal timestamp does replace, which is how
    /// a value is re-published as stale. `hint` is where the point was last
    /// time if it comes in the usual order.
    fn remember(&mut self, reading: &Reading, hint: usize) {
        let slot = match self.points.get(hint) {
            Some(current) if current.point == reading.point => Some(hint),
            _ => self.index.get(&reading.point).copied(),
        };
        match slot.and_then(|i| self.points.get_mut(i)) {
            Some(current) if current.timestamp > reading.timestamp => {}
            // Same device and point: only what changes is copied.
            Some(current) => {
                current.timestamp = reading.timestamp;
                current.value = reading.value;
                current.quality = reading.quality;
            }
            None => {
                let position = self.points.len();
                self.index.insert(reading.point.clone(), position);
                self.points.push(reading.clone());
                let points = &self.points;
                let at = self
                    .by_key
                    .partition_point(|&i| points.get(i).is_some_and(|p| p.point < reading.point));
                self.by_key.insert(at, position);
            }
        }
    }

    fn latest(&self) -> Vec<Reading> {
        self.by_key
            .iter()
            .filter_map(|&i| self.points.get(i))
            .cloned()
            .collect()
    }
}

type Shard = HashMap<(TenantId, DeviceId), DeviceState>;

/// In-process [`LiveBus`].
pub struct InProcessBus {
    shards: Vec<RwLock<Shard>>,
    /// One sender per tenant with at least one live subscriber. Tenants get
    /// separate channels so a subscriber can never receive another tenant's
    /// events, not even to filter them out.
    channels: RwLock<HashMap<TenantId, broadcast::Sender<LiveEvent>>>,
    /// One sender per device with at least one subscriber watching it alone,
    /// so a subscriber of a few devices never handles the rest of the tenant.
    device_channels: RwLock<HashMap<(TenantId, DeviceId), broadcast::Sender<LiveEvent>>>,
    capacity: usize,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A bus buffering `capacity` events per subscriber (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::new())).collect(),
            channels: RwLock::new(HashMap::new()),
            device_channels: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn shard(&self, tenant: TenantId, device: DeviceId) -> &RwLock<Shard> {
        let mut hasher = DefaultHasher::new();
        (tenant, device).hash(&mut hasher);
        &self.shards[(hasher.finish() as usize) % self.shards.len()]
    }

    fn record(&self, event: &LiveEvent) {
        if matches!(event, LiveEvent::Alarm(_)) {
            // An alarm is no latest value or status.
            return;
        }
        let (tenant, device) = (event.tenant_id(), event.device_id());
        let mut shard = self.shard(tenant, device).write();
        let state = shard.entry((tenant, device)).or_default();
        match event {
            LiveEvent::Reading(reading) => state.remember(reading, 0),
            LiveEvent::Readings(batch) => {
                for (i, reading) in batch.readings().iter().enumerate() {
                    state.remember(reading, i);
                }
            }
            LiveEvent::Status(status) => state.status = Some(status.clone()),
            LiveEvent::Alarm(_) => {}
        }
    }

    fn fan_out(&self, event: LiveEvent) {
        let (tenant, device) = (event.tenant_id(), event.device_id());
        send_or_free(&self.device_channels, (tenant, device), || event.clone());
        send_or_free(&self.channels, tenant, || event);
    }

    /// Events buffered per device subscription: a device publishes one event
    /// per poll, so this is minutes of backlog at most.
    fn device_capacity(&self) -> usize {
        (self.capacity / 16).max(16)
    }
}

/// Sends to the channel of `key`, if anyone listens; frees a channel whose
/// last subscriber left. `event` is built only when there is a channel.
fn send_or_free<K: Hash + Eq + Copy>(
    channels: &RwLock<HashMap<K, broadcast::Sender<LiveEvent>>>,
    key: K,
    event: impl FnOnce() -> LiveEvent,
) {
    let unheard = match channels.read().get(&key) {
        Some(sender) => sender.send(event()).is_err(),
        None => false,
    };
    if unheard {
        // Re-check under the write lock, as `subscribe` may have raced us.
        let mut channels = channels.write();
        if channels.get(&key).is_some_and(|s| s.receiver_count() == 0) {
            channels.remove(&key);
        }
    }
}

fn deliveries(receiver: broadcast::Receiver<LiveEvent>) -> BoxStream<'static, Delivery> {
    BroadcastStream::new(receiver)
        .map(|item| match item {
            Ok(event) => Delivery::Event(event),
            Err(BroadcastStreamRecvError::Lagged(n)) => Delivery::Lagged(n),
        })
        .boxed()
}

impl LiveBus for InProcessBus {
    fn publish(&self, event: LiveEvent) {
        self.record(&event);
        self.fan_out(event);
    }

    fn subscribe(&self, tenant: TenantId) -> BoxStream<'static, Delivery> {
        let receiver = {
            let mut channels = self.channels.write();
            let sender = channels
                .entry(tenant)
                .or_insert_with(|| broadcast::channel(self.capacity).0);
            sender.subscribe()
        };
        deliveries(receiver)
    }

    fn subscribe_devices(
        &self,
        tenant: TenantId,
        devices: &[DeviceId],
    ) -> BoxStream<'static, Delivery> {
        let receivers: Vec<_> = {
            let mut channels = self.device_channels.write();
            devices
                .iter()
                .map(|device| {
                    channels
                        .entry((tenant, *device))
                        .or_insert_with(|| broadcast::channel(self.device_capacity()).0)
                        .subscribe()
                })
                .collect()
        };
        futures::stream::select_all(receivers.into_iter().map(deliveries)).boxed()
    }

    fn latest(&self, tenant: TenantId, device: DeviceId) -> Vec<Reading> {
        self.shard(tenant, device)
            .read()
            .get(&(tenant, device))
            .map(DeviceState::latest)
            .unwrap_or_default()
    }

    fn status(&self, tenant: TenantId, device: DeviceId) -> Option<DeviceStatus> {
        self.shard(tenant, device)
            .read()
            .get(&(tenant, device))
            .and_then(|state| state.status.clone())
    }
}

/// Interest is this replica's own device subscriptions: the poller and the
/// watcher share the process.
impl WatchInterest for InProcessBus {
    fn is_watched(&self, tenant: TenantId, device: DeviceId) -> bool {
        self.device_channels
            .read()
            .get(&(tenant, device))
            .is_some_and(|sender| sender.receiver_count() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use hearth_domain::model::Quality;
    use hearth_domain::ports::ReadingBatch;

    fn reading(tenant: TenantId, device: DeviceId, seconds: i64) -> Reading {
        Reading {
            tenant_id: tenant,
            device_id: device,
            point: PointKey::new("flow").expect("valid key"),
            timestamp: Utc::now() + chrono::Duration::seconds(seconds),
            value: seconds as f64,
            quality: Quality::Good,
        }
    }

    #[test]
    fn an_older_reading_does_not_replace_a_newer_latest_value() {
        let bus = InProcessBus::new();
        let (tenant, device) = (TenantId::new(), DeviceId::new());
        let newer = reading(tenant, device, 10);
        bus.publish(LiveEvent::Reading(newer.clone()));
        bus.publish(LiveEvent::Reading(reading(tenant, device, 0)));
        assert_eq!(bus.latest(tenant, device), vec![newer]);
    }

    #[test]
    fn latest_values_follow_batches_in_any_point_order_and_list_by_key() {
        let bus = InProcessBus::new();
        let (tenant, device) = (TenantId::new(), DeviceId::new());
        let at = |key: &str, seconds: i64| Reading {
            point: PointKey::new(key).expect("valid key"),
            ..reading(tenant, device, seconds)
        };
        let batch = |readings: Vec<Reading>| {
            LiveEvent::Readings(ReadingBatch::new(tenant, device, readings).expect("one device"))
        };
        // First poll in address order, the next in another order with a new
        // point and one reading older than what is known.
        bus.publish(batch(vec![at("zeta", 1), at("alpha", 1), at("mid", 1)]));
        bus.publish(batch(vec![
            at("mid", 2),
            at("beta", 2),
            at("zeta", 0),
            at("alpha", 2),
        ]));
        let latest: Vec<(String, f64)> = bus
            .latest(tenant, device)
            .iter()
            .map(|r| (r.point.to_string(), r.value))
            .collect();
        assert_eq!(
            latest,
            vec![
                ("alpha".into(), 2.0),
                ("beta".into(), 2.0),
                ("mid".into(), 2.0),
                ("zeta".into(), 1.0),
            ]
        );
    }

    #[tokio::test]
    async fn a_tenant_channel_is_freed_when_its_last_subscriber_leaves() {
        let bus = InProcessBus::new();
        let (tenant, device) = (TenantId::new(), DeviceId::new());
        let subscription = bus.subscribe(tenant);
        assert_eq!(bus.channels.read().len(), 1);
        drop(subscription);
        bus.publish(LiveEvent::Reading(reading(tenant, device, 0)));
        assert!(
            bus.channels.read().is_empty(),
            "an unheard tenant channel must be dropped"
        );
    }
}
