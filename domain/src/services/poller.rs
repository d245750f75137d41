//! The poller, an internal job of the ingest use case: polls every device
//! the poller system principal may read, each on its own task at its
//! profile's interval (faster while somebody watches it), and records what it
//! reads through [`IngestService`]; an unreachable device is marked offline
//! and retried with capped, jittered exponential backoff.
//!
//! It speaks points through the [`FieldGateway`] port, never a protocol: the
//! gateway's [`PointReader`] keeps each device's request plan. Writes from the
//! API go through the same gateway, whose per-device lock makes a write wait
//! for at most one poll request, never for a whole poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{SubsecRound, Utc};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id as TaskId, JoinSet};
use tokio::time::Instant;

use super::{IngestService, PollTarget};
use crate::error::{DomainError, InvalidValue};
use crate::ids::{DeviceId, ProfileId};
use crate::model::{Device, DeviceProfile, Reading};
use crate::ports::{FieldError, FieldGateway, PointReader, PointValue};
use crate::principal::SystemPrincipal;

/// Tuning of the poller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerConfig {
    /// Devices start within this (and within one poll interval) of each other,
    /// so a thousand devices do not all hit the network in the same instant.
    pub max_start_offset: Duration,
    /// Longest wait between attempts on an unreachable device (before
    /// jitter).
    pub backoff_cap: Duration,
    /// Devices and profiles are re-read this often, so devices added and
    /// profiles changed elsewhere (another replica, `putProfile`) are polled
    /// without a restart. `None`: only on `PollerHandle::reload`.
    pub reload_every: Option<Duration>,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            max_start_offset: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(10),
            reload_every: Some(Duration::from_secs(30)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PollerError {
    #[error("could not load devices: {0}")]
    Load(#[from] DomainError),
    #[error("the poller has stopped")]
    Stopped,
}

enum Command {
    Reload(oneshot::Sender<Result<usize, DomainError>>),
    Stop,
}

/// Starts polling.
pub struct Poller;

impl Poller {
    /// Loads every device and its profile (retrying while the stores fail)
    /// and polls each on its own task. Must be called inside a Tokio runtime.
    pub fn spawn(ingest: IngestService, gateway: Arc<dyn FieldGateway>) -> PollerHandle {
        Self::spawn_with(ingest, gateway, PollerConfig::default())
    }

    pub fn spawn_with(
        ingest: IngestService,
        gateway: Arc<dyn FieldGateway>,
        config: PollerConfig,
    ) -> PollerHandle {
        let (commands, rx) = mpsc::channel(8);
        let polled = Arc::new(AtomicUsize::new(0));
        let supervisor = Supervisor {
            ingest,
            gateway,
            config,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            task_devices: HashMap::new(),
            polled: polled.clone(),
        };
        let task = tokio::spawn(supervisor.run(rx));
        PollerHandle {
            commands,
            task: Some(task),
            polled,
        }
    }
}

/// Controls a running poller. Dropping it stops every polling task too.
#[derive(Debug)]
pub struct PollerHandle {
    commands: mpsc::Sender<Command>,
    task: Option<tokio::task::JoinHandle<()>>,
    polled: Arc<AtomicUsize>,
}

impl PollerHandle {
    /// Reloads devices and profiles: starts new devices, stops removed ones,
    /// restarts changed ones. Returns how many devices are polled now.
    pub async fn reload(&self) -> Result<usize, PollerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Reload(reply))
            .await
            .map_err(|_| PollerError::Stopped)?;
        Ok(answer.await.map_err(|_| PollerError::Stopped)??)
    }

    /// How many devices are being polled.
    pub fn polled_devices(&self) -> usize {
        self.polled.load(Ordering::SeqCst)
    }

    /// Stops every polling task and waits until they are gone.
    pub async fn stop(mut self) {
        // A closed channel means the supervisor is already ending.
        let _ = self.commands.send(Command::Stop).await;
        if let Some(task) = self.task.take() {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "Poller supervisor ended abnormally.");
            }
        }
    }
}

/// What a running device task was started with, to spot changes on reload.
struct Running {
    target: PollTarget,
    abort: tokio::task::AbortHandle,
}

struct Supervisor {
    ingest: IngestService,
    gateway: Arc<dyn FieldGateway>,
    config: PollerConfig,
    tasks: JoinSet<()>,
    running: HashMap<DeviceId, Running>,
    task_devices: HashMap<TaskId, DeviceId>,
    polled: Arc<AtomicUsize>,
}

impl Supervisor {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut loaded = false;
        let mut retry = Duration::from_secs(1);
        let reload_every = self.config.reload_every;
        let mut reload_tick =
            tokio::time::interval(reload_every.unwrap_or(Duration::from_secs(3600)));
        reload_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reload_tick.reset();
        let device_changes = self.ingest.device_changes();
        loop {
            if !loaded {
                match self.reload().await {
                    Ok(count) => {
                        loaded = true;
                        tracing::info!(devices = count, "Polling started.");
                    }
                    Err(err) => {
                        tracing::error!(error = %err, retry_in_ms = retry.as_millis() as u64, "Could not load devices to poll.")
                    }
                }
            }
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Reload(reply)) => {
                        let result = self.reload().await;
                        loaded |= result.is_ok();
                        // The caller may have given up waiting; nothing to do then.
                        let _ = reply.send(result);
                    }
                    Some(Command::Stop) | None => break,
                },
                Some(ended) = self.tasks.join_next_with_id() => self.reap(ended),
                // An admin changed a device: pick it up now, not at the next tick.
                () = device_changes.notified(), if loaded => {
                    if let Err(err) = self.reload().await {
                        tracing::warn!(error = %err, "Could not reload changed devices; keeping the current ones.");
                    }
                }
                () = tokio::time::sleep(retry), if !loaded => {
                    retry = (retry * 2).min(Duration::from_secs(30));
                }
                _ = reload_tick.tick(), if loaded && reload_every.is_some() => {
                    if let Err(err) = self.reload().await {
                        tracing::warn!(error = %err, "Could not reload devices to poll; keeping the current ones.");
                    }
                }
            }
        }
        self.tasks.shutdown().await;
        self.polled.store(0, Ordering::SeqCst);
        tracing::info!("Polling stopped.");
    }

    /// A device task only ends by abort or panic; forget it so a reload restarts it.
    fn reap(&mut self, ended: Result<(TaskId, ()), tokio::task::JoinError>) {
        let id = match &ended {
            Ok((id, ())) => *id,
            Err(err) => err.id(),
        };
        if let Err(err) = &ended {
            if err.is_panic() {
                tracing::error!(error = %err, "A device polling task panicked.");
            }
        }
        if let Some(device) = self.task_devices.remove(&id) {
            if self
                .running
                .get(&device)
                .is_some_and(|r| r.abort.id() == id)
            {
                self.running.remove(&device);
            }
        }
        self.polled.store(self.running.len(), Ordering::SeqCst);
    }

    async fn reload(&mut self) -> Result<usize, DomainError> {
        // As the poller system principal: the policy decides which devices
        // it may read, and profiles come scoped to each device's tenant.
        let targets = self.ingest.poll_targets(&SystemPrincipal::poller()).await?;
        let mut valid: HashMap<ProfileId, bool> = HashMap::new();
        let mut wanted: HashMap<DeviceId, PollTarget> = HashMap::new();
        for target in targets {
            let usable = target.profile.as_ref().is_some_and(|p| {
                let checked = || p.validate().and_then(|()| self.gateway.check_profile(p));
                *valid.entry(p.id.clone()).or_insert_with(|| match checked() {
                    Ok(()) => true,
                    Err(err) => {
                        tracing::warn!(profile = %p.id, error = %err, "Profile is invalid; its devices are not polled.");
                        false
                    }
                })
            });
            let device = &target.device;
            if usable {
                wanted.insert(device.id, target);
            } else {
                tracing::warn!(device = %device.id, profile = %device.profile_id, "Device has no usable profile; not polling it.")
            }
        }

        let stale: Vec<DeviceId> = self
            .running
            .iter()
            .filter(|(id, r)| wanted.get(id).is_none_or(|target| *target != r.target))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(running) = self.running.remove(&id) {
                running.abort.abort();
            }
        }
        for (id, target) in wanted {
            if self.running.contains_key(&id) {
                continue;
            }
            let poller = match DevicePoller::new(&*self.gateway, target.clone()) {
                Ok(poller) => poller,
                Err(err) => {
                    tracing::warn!(device = %id, error = %err, "The field gateway cannot read this device; not polling it.");
                    continue;
                }
            };
            let task = DeviceTask {
                ingest: self.ingest.clone(),
                poller,
                config: self.config.clone(),
            };
            let abort = self.tasks.spawn(task.run());
            self.task_devices.insert(abort.id(), id);
            self.running.insert(id, Running { target, abort });
        }
        self.polled.store(self.running.len(), Ordering::SeqCst);
        Ok(self.running.len())
    }
}

/// Polls one device forever: the schedule (start offset, fixed rate,
/// backoff) around [`DevicePoller::poll_once`].
struct DeviceTask {
    ingest: IngestService,
    poller: DevicePoller,
    config: PollerConfig,
}

impl DeviceTask {
    fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.poller.profile.poll_interval_ms))
    }

    /// The profile's live interval, if it has one.
    fn live_interval(&self) -> Option<Duration> {
        self.poller
            .profile
            .live_poll_interval_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
    }

    fn is_watched(&self) -> bool {
        self.ingest.is_watched(&self.poller.target)
    }

    /// Exponential from the poll interval (doubling), capped, with jitter
    /// (up to the delay again) so that devices behind one failed link do not
    /// retry in lockstep. Never runs out: a device is retried until it answers.
    fn backoff(&self) -> impl Iterator<Item = Duration> {
        let interval = self.interval();
        ExponentialBuilder::default()
            .with_min_delay(interval)
            .with_max_delay(self.config.backoff_cap.max(interval))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    async fn run(mut self) {
        let interval = self.interval();
        let spread = interval.min(self.config.max_start_offset);
        let offset = spread.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
        tokio::time::sleep(offset).await;

        let id = self.poller.target.device.id;
        let mut failures: u32 = 0;
        let mut backoff = self.backoff();
        loop {
            let started = Instant::now();
            match self.poller.poll_once(&self.ingest).await {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!(device = %id, failures, "Device answers again.");
                        backoff = self.backoff();
                    }
                    failures = 0;
                    // Fixed rate from the start of the poll, without catching up.
                    self.wait_for_next_poll(started).await;
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(device = %id, error = %err, "Device did not answer a poll; marking it offline.");
                    } else {
                        tracing::debug!(device = %id, error = %err, failures, "Device still does not answer.");
                    }
                    self.ingest.record_status(&self.poller.target, false);
                    let delay = backoff.next().unwrap_or(self.config.backoff_cap);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Sleeps until the next poll is due: one poll interval after `started`,
    /// or one live interval after it while somebody watches the device. The
    /// watch is looked at every live interval, so a device that gets watched
    /// mid-interval is polled fast within one live interval, not after a
    /// whole poll interval.
    async fn wait_for_next_poll(&self, started: Instant) {
        let regular = started + self.interval();
        let Some(live) = self.live_interval() else {
            tokio::time::sleep_until(regular).await;
            return;
        };
        let mut next = started + live;
        while next < regular {
            tokio::time::sleep_until(next).await;
            if self.is_watched() {
                return;
            }
            next += live;
        }
        tokio::time::sleep_until(regular).await;
    }
}

/// One poll of one device, without any schedule: what the poller's device
/// task does at every tick, public so that a benchmark (or a "read now"
/// command) can drive exactly the same path as fast as it likes.
///
/// It keeps the gateway's reader of the device between polls, and with it
/// whatever plan the protocol needs.
pub struct DevicePoller {
    reader: Box<dyn PointReader>,
    /// What the poller system principal was allowed to poll.
    target: PollTarget,
    /// The target's profile (a target without one is never polled).
    profile: DeviceProfile,
    values: Vec<PointValue>,
}

impl DevicePoller {
    /// A poller of a target [`IngestService::poll_targets`] gave out, or
    /// why it cannot be polled (no profile; the gateway cannot read it).
    pub fn new(gateway: &dyn FieldGateway, target: PollTarget) -> Result<Self, InvalidValue> {
        let profile = target
            .profile
            .clone()
            .ok_or_else(|| InvalidValue::new("device", "has no profile to poll it by"))?;
        let reader = gateway.reader(&target.device, &profile)?;
        Ok(Self {
            reader,
            values: Vec::with_capacity(profile.points.len()),
            target,
            profile,
        })
    }

    pub fn device(&self) -> &Device {
        &self.target.device
    }

    /// Reads the device and records what it read through the ingest use
    /// case (live bus at once, persistence batched). Returns how many
    /// readings were recorded. On error nothing is recorded; marking the
    /// device offline is left to the caller, which knows whether this was
    /// the first failure.
    pub async fn poll_once(&mut self, ingest: &IngestService) -> Result<usize, FieldError> {
        let readings = self.read_once().await?;
        let count = readings.len();
        ingest.record_readings(&self.target, readings).await;
        Ok(count)
    }

    /// Reads every point the device serves, as readings stamped with one
    /// timestamp. Implausible values (an open sensor's 192 °C) are kept but
    /// marked `Bad`.
    pub async fn read_once(&mut self) -> Result<Vec<Reading>, FieldError> {
        self.reader.read(&mut self.values).await?;
        // Stores keep microseconds; a live value must be found again in
        // history by its timestamp.
        let timestamp = Utc::now().trunc_subsecs(6);
        let (tenant_id, device_id) = (self.target.device.tenant_id, self.target.device.id);
        let points = &self.profile.points;
        Ok(self
            .values
            .iter()
            .filter_map(|v| points.get(v.point).map(|p| (p, v.value)))
            .map(|(definition, value)| Reading {
                tenant_id,
                device_id,
                point: definition.key.clone(),
                timestamp,
                value,
                quality: definition.quality_of(value),
            })
            .collect())
    }
}
