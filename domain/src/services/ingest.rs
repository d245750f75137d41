//! Recording what the field layer read: latest values and events on the
//! live bus at once, persistence in batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Hearth;
use crate::ids::{DeviceId, TenantId};
use crate::model::{Quality, Reading};
use crate::ports::{DeviceStatus, LiveEvent, ReadingBatch, ReadingStore};

/// Counters of the batched writer, for tests and the benchmark.
#[derive(Debug, Default)]
pub struct ReadingWriterStats {
    pub persisted: AtomicU64,
    pub dropped: AtomicU64,
    pub batches: AtomicU64,
}

/// Persists readings in batches off the polling path.
#[derive(Clone)]
pub struct ReadingWriter {
    tx: mpsc::Sender<Vec<Reading>>,
    stats: Arc<ReadingWriterStats>,
    stop: Arc<Mutex<Option<StopHandle>>>,
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

    pub fn spawn(store: Arc<dyn ReadingStore>) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let (stop_tx, stop_rx) = oneshot::channel();
        let stats = Arc::new(ReadingWriterStats::default());
        let task = tokio::spawn(Self::run(store, rx, stop_rx, stats.clone()));
        Self {
            tx,
            stats,
            stop: Arc::new(Mutex::new(Some((stop_tx, task)))),
        }
    }

    /// Writes what is queued, stops the writer and waits for it, so the
    /// store can be closed (and reopened) right after.
    pub async fn shutdown(&self) {
        let stop = self.stop.lock().ok().and_then(|mut s| s.take());
        if let Some((tx, task)) = stop {
            let _ = tx.send(());
            let _ = task.await;
        }
    }

    pub fn stats(&self) -> &ReadingWriterStats {
        &self.stats
    }

    /// Queues readings; waits only when the queue is full (back-pressure on
    /// the poller rather than unbounded memory).
    pub async fn write(&self, readings: Vec<Reading>) {
        let n = readings.len() as u64;
        if self.tx.send(readings).await.is_err() {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    async fn run(
        store: Arc<dyn ReadingStore>,
        mut rx: mpsc::Receiver<Vec<Reading>>,
        mut stop: oneshot::Receiver<()>,
        stats: Arc<ReadingWriterStats>,
    ) {
        let mut batch: Vec<Reading> = Vec::new();
        loop {
            let deadline = tokio::time::sleep(Self::MAX_DELAY);
            tokio::pin!(deadline);
            let closed = loop {
                tokio::select! {
                    more = rx.recv() => match more {
                        Some(readings) => {
                            batch.extend(readings);
                            if batch.len() >= Self::MAX_BATCH { break false; }
                        }
                        None => break true,
                    },
                    _ = &mut deadline => break false,
                    _ = &mut stop => {
                        rx.close();
                        while let Ok(readings) = rx.try_recv() {
                            batch.extend(readings);
                        }
                        break true;
                    }
                }
            };
            if !batch.is_empty() {
                Self::flush(&*store, &mut batch, &stats).await;
            }
            if closed {
                return;
            }
        }
    }

    async fn flush(store: &dyn ReadingStore, batch: &mut Vec<Reading>, stats: &ReadingWriterStats) {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=5 {
            match store.append(batch).await {
                Ok(()) => {
                    stats
                        .persisted
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    batch.clear();
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
        batch.clear();
    }
}

impl Hearth {
    pub fn reading_writer(&self) -> &ReadingWriter {
        &self.writer
    }

    /// Records one poll of a device: publishes each reading and queues it for
    /// persistence. Marks the device online if it was not.
    pub async fn record_readings(
        &self,
        tenant: TenantId,
        device: DeviceId,
        readings: Vec<Reading>,
    ) {
        self.record_status(tenant, device, true);
        let mut readings = readings;
        for reading in &mut readings {
            // Stores keep microseconds; publish exactly what will be stored,
            // so a live value can be found again in history by its timestamp.
            reading.timestamp = reading.timestamp.trunc_subsecs(6);
        }
        if let Some(batch) = ReadingBatch::new(tenant, device, readings.clone()) {
            self.ports.live.publish(LiveEvent::Readings(batch));
        }
        self.writer.write(readings).await;
    }

    /// Records a device's reachability. Going offline re-publishes its last
    /// values as `Stale` with their original timestamps. Publishes only on change.
    pub fn record_status(&self, tenant: TenantId, device: DeviceId, online: bool) {
        let previous = self.ports.live.status(tenant, device).map(|s| s.online);
        if previous == Some(online) {
            return;
        }
        self.ports.live.publish(LiveEvent::Status(DeviceStatus {
            tenant_id: tenant,
            device_id: device,
            online,
            at: Utc::now(),
        }));
        if !online {
            let stale = self
                .ports
                .live
                .latest(tenant, device)
                .into_iter()
                .map(|reading| Reading {
                    quality: Quality::Stale,
                    ..reading
                })
                .collect();
            if let Some(batch) = ReadingBatch::new(tenant, device, stale) {
                self.ports.live.publish(LiveEvent::Readings(batch));
            }
        }
    }
}
