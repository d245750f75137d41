//! Recording what the field layer read: latest values and events on the
//! live bus at once, persistence in batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use parking_lot::Mutex;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::access::{device_resource, DeviceAccess};
use crate::error::DomainError;
use crate::ids::{ProfileId, TenantId};
use crate::model::{AreaTree, Device, DeviceProfile, Quality, Reading};
use crate::ports::{
    DeviceStatus, LiveBus, LiveEvent, ReadingBatch, ReadingStore, SystemAction, WatchInterest,
};
use crate::principal::SystemPrincipal;

/// Counters of the batched writer, for tests and the benchmark.
#[derive(Debug, Default)]
pub struct ReadingWriterStats {
    pub persisted: AtomicU64,
    pub dropped: AtomicU64,
    pub batches: AtomicU64,
}

/// Persists readings in batches off the polling path.
///
/// Pollers copy each poll into a shared queue under a short lock: no
/// channel message and no task wake-up per poll. The writer task wakes when
/// a full batch is queued or [`Self::MAX_DELAY`] has passed, swaps the queue
/// for its empty spare and stores it. Both vectors keep their capacity, so
/// steady polling allocates nothing here.
#[derive(Clone)]
pub struct ReadingWriter {
    shared: Arc<Shared>,
    stop: Arc<Mutex<Option<StopHandle>>>,
}

/// What pollers and the writer task share.
struct Shared {
    intake: Mutex<Intake>,
    /// Wakes the writer: a full batch is queued.
    full: Notify,
    /// Wakes pollers waiting for room in the queue.
    drained: Notify,
    stats: ReadingWriterStats,
}

#[derive(Default)]
struct Intake {
    queued: Vec<Reading>,
    /// Set by `shutdown`: later writes are counted as dropped.
    closed: bool,
}

/// Signals the writer task to flush and stop, and waits for it.
type StopHandle = (oneshot::Sender<()>, JoinHandle<()>);

impl ReadingWriter {
    /// Batches of at most this many readings per store call. Large batches
    /// matter for the embedded store: each batch rewrites one B-tree page per
    /// series it touches, so more readings per series per batch means fewer
    /// pages written per reading.
    pub const MAX_BATCH: usize = 50_000;
    /// A batch waits at most this long before it is written: history lags
    /// live values by at most this (plus the write), and a crash loses at
    /// most this much of what was not yet stored.
    pub const MAX_DELAY: Duration = Duration::from_millis(1000);
    /// Readings queued before `write` waits for the store: back-pressure on
    /// the pollers rather than unbounded memory when the store is slow.
    pub const MAX_QUEUED: usize = 4 * Self::MAX_BATCH;

    pub fn spawn(store: Arc<dyn ReadingStore>) -> Self {
        let (stop_tx, stop_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            intake: Mutex::new(Intake::default()),
            full: Notify::new(),
            drained: Notify::new(),
            stats: ReadingWriterStats::default(),
        });
        let task = tokio::spawn(Self::run(store, shared.clone(), stop_rx));
        Self {
            shared,
            stop: Arc::new(Mutex::new(Some((stop_tx, task)))),
        }
    }

    /// Writes what is queued, stops the writer and waits for it, so the
    /// store can be closed (and reopened) right after.
    pub async fn shutdown(&self) {
        let stop = self.stop.lock().take();
        if let Some((tx, task)) = stop {
            let _ = tx.send(());
            let _ = task.await;
        }
    }

    pub fn stats(&self) -> &ReadingWriterStats {
        &self.shared.stats
    }

    /// Queues readings; waits only while [`Self::MAX_QUEUED`] readings are
    /// already queued.
    pub async fn write(&self, readings: &[Reading]) {
        while !self.try_queue(readings) {
            // Registered before looking again, so a drain between the look
            // and the wait still wakes us.
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.try_queue(readings) {
                return;
            }
            drained.await;
        }
    }

    /// Queues `readings` (or counts them dropped after shutdown); `false`
    /// when the queue is full.
    fn try_queue(&self, readings: &[Reading]) -> bool {
        let mut intake = self.shared.intake.lock();
        if intake.closed {
            self.shared
                .stats
                .dropped
                .fetch_add(readings.len() as u64, Ordering::Relaxed);
            return true;
        }
        if intake.queued.len() >= Self::MAX_QUEUED {
            return false;
        }
        let before = intake.queued.len();
        intake.queued.extend_from_slice(readings);
        // Once, when the queue first holds a full batch.
        if before < Self::MAX_BATCH && intake.queued.len() >= Self::MAX_BATCH {
            self.shared.full.notify_one();
        }
        true
    }

    async fn run(
        store: Arc<dyn ReadingStore>,
        shared: Arc<Shared>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut batch: Vec<Reading> = Vec::new();
        let mut stopping = false;
        while !stopping {
            tokio::select! {
                () = shared.full.notified() => {}
                () = tokio::time::sleep(Self::MAX_DELAY) => {}
                _ = &mut stop => stopping = true,
            }
            {
                let mut intake = shared.intake.lock();
                intake.closed |= stopping;
                // `batch` is empty (flushed or dropped below) with its capacity.
                std::mem::swap(&mut intake.queued, &mut batch);
            }
            shared.drained.notify_waiters();
            for chunk in batch.chunks(Self::MAX_BATCH) {
                Self::flush(&*store, chunk, &shared.stats).await;
            }
            batch.clear();
        }
    }

    async fn flush(store: &dyn ReadingStore, batch: &[Reading], stats: &ReadingWriterStats) {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=5 {
            match store.append(batch).await {
                Ok(()) => {
                    stats
                        .persisted
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, attempt, readings = batch.len(), "Persisting readings failed; retrying.");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        tracing::error!(
            readings = batch.len(),
            "Persisting readings failed five times; dropping the batch."
        );
        stats
            .dropped
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

/// A device to poll, with the profile it is polled by (`None` when its
/// profile is missing: the poller says so and leaves it alone). Only
/// [`IngestService::poll_targets`] makes them, after the policy allowed the
/// system principal to read the device, so recording readings for a target
/// is recording them for a device somebody was allowed to poll.
#[derive(Debug, Clone, PartialEq)]
pub struct PollTarget {
    pub(crate) device: Device,
    pub(crate) profile: Option<DeviceProfile>,
}

impl PollTarget {
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn profile(&self) -> Option<&DeviceProfile> {
        self.profile.as_ref()
    }
}

/// The field layer's way in: which devices to poll, and recording what was
/// read (latest values and events at once, persistence in batches).
#[derive(Clone)]
pub struct IngestService {
    access: DeviceAccess,
    live: Arc<dyn LiveBus>,
    watch: Arc<dyn WatchInterest>,
    writer: ReadingWriter,
    /// Signalled by the admin use cases when a device is created, changed or
    /// deleted; the poller's supervisor reloads on it.
    device_changes: Arc<tokio::sync::Notify>,
}

impl IngestService {
    pub(crate) fn new(
        access: DeviceAccess,
        live: Arc<dyn LiveBus>,
        watch: Arc<dyn WatchInterest>,
        writer: ReadingWriter,
        device_changes: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            access,
            live,
            watch,
            writer,
            device_changes,
        }
    }

    /// The signal of changed devices, for the poller's supervisor.
    pub(crate) fn device_changes(&self) -> Arc<tokio::sync::Notify> {
        self.device_changes.clone()
    }

    pub fn reading_writer(&self) -> &ReadingWriter {
        &self.writer
    }

    /// Every device of every tenant the policy lets `system` read the
    /// endpoint of (`read_endpoints`), each with its tenant-scoped profile.
    /// A device the policy refuses is left out and logged.
    pub async fn poll_targets(
        &self,
        system: &SystemPrincipal,
    ) -> Result<Vec<PollTarget>, DomainError> {
        let devices = self.access.all_devices().await?;
        let mut trees: HashMap<TenantId, AreaTree> = HashMap::new();
        let mut profiles: HashMap<(TenantId, ProfileId), Option<DeviceProfile>> = HashMap::new();
        let mut targets = Vec::with_capacity(devices.len());
        for device in devices {
            let tree = match trees.entry(device.tenant_id) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => {
                    new.insert(AreaTree::new(&self.access.areas(device.tenant_id).await?))
                }
            };
            let resource = device_resource(&device, tree);
            if let Err(err) =
                self.access
                    .policy
                    .authorize_system(system, SystemAction::ReadEndpoints, &resource)
            {
                tracing::warn!(device = %device.id, error = %err, "Not allowed to read this device's endpoint; not polling it.");
                continue;
            }
            let key = (device.tenant_id, device.profile_id.clone());
            let profile = match profiles.get(&key) {
                Some(found) => found.clone(),
                None => {
                    let found = self
                        .access
                        .profile(device.tenant_id, &device.profile_id)
                        .await?;
                    profiles.insert(key, found.clone());
                    found
                }
            };
            targets.push(PollTarget { device, profile });
        }
        Ok(targets)
    }

    /// Whether somebody watches the target's device live, so it may be
    /// polled at its profile's live interval (see [`WatchInterest`]).
    pub fn is_watched(&self, target: &PollTarget) -> bool {
        self.watch
            .is_watched(target.device.tenant_id, target.device.id)
    }

    /// Records one poll of a device: publishes each reading and queues it for
    /// persistence. Marks the device online if it was not.
    /// Readings of another device than the target's are dropped (and said
    /// so): they could file values under the wrong tenant.
    pub async fn record_readings(&self, target: &PollTarget, readings: Vec<Reading>) {
        let (tenant, device) = (target.device.tenant_id, target.device.id);
        self.record_status(target, true);
        let mut readings = readings;
        // Stores keep microseconds; publish exactly what will be stored, so
        // a live value can be found again in history by its timestamp. (The
        // poller truncates already; this keeps every other caller honest.)
        for reading in readings
            .iter_mut()
            .filter(|r| r.timestamp.timestamp_subsec_nanos() % 1_000 != 0)
        {
            reading.timestamp = reading.timestamp.trunc_subsecs(6);
        }
        let count = readings.len();
        let Some(batch) = ReadingBatch::new(tenant, device, readings) else {
            if count > 0 {
                // A caller bug; storing them could file readings under the
                // wrong tenant, so they are dropped and said so.
                tracing::error!(%tenant, %device, count, "Readings of another device were recorded for this one; dropping them.");
            }
            return;
        };
        let published = batch.clone();
        self.live.publish(LiveEvent::Readings(published));
        self.writer.write(batch.readings()).await;
    }

    /// Records a device's reachability. Going offline re-publishes its last
    /// values as `Stale` with their original timestamps. Publishes only on change.
    pub fn record_status(&self, target: &PollTarget, online: bool) {
        let (tenant, device) = (target.device.tenant_id, target.device.id);
        let previous = self.live.status(tenant, device).map(|s| s.online);
        if previous == Some(online) {
            return;
        }
        self.live.publish(LiveEvent::Status(DeviceStatus {
            tenant_id: tenant,
            device_id: device,
            online,
            at: Utc::now(),
        }));
        if !online {
            let stale = self
                .live
                .latest(tenant, device)
                .into_iter()
                .map(|reading| Reading {
                    quality: Quality::Stale,
                    ..reading
                })
                .collect();
            if let Some(batch) = ReadingBatch::new(tenant, device, stale) {
                self.live.publish(LiveEvent::Readings(batch));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreError;
    use crate::ids::{DeviceId, PointKey};
    use crate::model::{HistoryBucket, HistoryQuery};
    use async_trait::async_trait;
    use futures::FutureExt;
    use tokio::sync::Semaphore;

    /// A store stand-in that records batch sizes and, while its gate is
    /// closed, holds every append (a slow disk).
    struct GatedStore {
        gate: Semaphore,
        entered: Notify,
        batches: Mutex<Vec<usize>>,
    }

    impl GatedStore {
        fn new(open: bool) -> Arc<Self> {
            Arc::new(Self {
                gate: Semaphore::new(if open { Semaphore::MAX_PERMITS } else { 0 }),
                entered: Notify::new(),
                batches: Mutex::new(Vec::new()),
            })
        }
        fn batches(&self) -> Vec<usize> {
            self.batches.lock().clone()
        }
    }

    #[async_trait]
    impl ReadingStore for GatedStore {
        async fn append(&self, batch: &[Reading]) -> Result<(), StoreError> {
            self.entered.notify_one();
            let _pass = self
                .gate
                .acquire()
                .await
                .map_err(|e| StoreError::Backend(e.into()))?;
            self.batches.lock().push(batch.len());
            Ok(())
        }
        async fn history(&self, _: &HistoryQuery) -> Result<Vec<HistoryBucket>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn poll(readings: usize) -> Vec<Reading> {
        let (tenant_id, device_id) = (TenantId::new(), DeviceId::new());
        let timestamp = Utc::now().trunc_subsecs(6);
        (0..readings)
            .map(|i| Reading {
                tenant_id,
                device_id,
                point: PointKey::new(format!("p{i}")).expect("valid key"),
                timestamp,
                value: i as f64,
                quality: Quality::Good,
            })
            .collect()
    }

    #[tokio::test]
    async fn shutdown_stores_everything_queued_in_batches_no_larger_than_max_batch() {
        // Given a writer on a store that keeps up
        let store = GatedStore::new(true);
        let writer = ReadingWriter::spawn(store.clone());
        let poll = poll(10_000);

        // When 12 polls of 10,000 readings are queued and the writer stops
        for _ in 0..12 {
            writer.write(&poll).await;
        }
        writer.shutdown().await;

        // Then all 120,000 are stored, in batches of at most MAX_BATCH
        let batches = store.batches();
        assert_eq!(batches.iter().sum::<usize>(), 120_000);
        assert!(batches.iter().all(|&b| b <= ReadingWriter::MAX_BATCH));
        assert_eq!(writer.stats().persisted.load(Ordering::Relaxed), 120_000);
        // And what comes after the stop is counted as dropped, not lost silently
        writer.write(&poll).await;
        assert_eq!(writer.stats().dropped.load(Ordering::Relaxed), 10_000);
    }

    #[tokio::test]
    async fn a_full_queue_holds_writers_back_until_the_store_catches_up() {
        // Given a store that holds its first append, with a full batch in it
        let store = GatedStore::new(false);
        let writer = ReadingWriter::spawn(store.clone());
        let poll = poll(10_000);
        let entered = store.entered.notified();
        for _ in 0..ReadingWriter::MAX_BATCH / 10_000 {
            writer.write(&poll).await;
        }
        entered.await;

        // When the queue fills up to MAX_QUEUED behind it
        for _ in 0..ReadingWriter::MAX_QUEUED / 10_000 {
            writer.write(&poll).await;
        }

        // Then one more write has to wait
        assert!(
            writer.write(&poll).now_or_never().is_none(),
            "a write into a full queue must wait for the store"
        );
        // And once the store catches up it goes through, and nothing is lost
        store.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        writer.write(&poll).await;
        writer.shutdown().await;
        let expected = (ReadingWriter::MAX_BATCH + ReadingWriter::MAX_QUEUED + 10_000) as u64;
        assert_eq!(writer.stats().persisted.load(Ordering::Relaxed), expected);
        assert_eq!(writer.stats().dropped.load(Ordering::Relaxed), 0);
    }
}
