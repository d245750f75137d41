//! Alarm evaluation as an internal job: follows every tenant's live stream on
//! its own task, feeds the [`AlarmEngine`], ticks it every second, and hands
//! the transitions to a second task that stores, publishes and announces them
//! (through [`AlarmOutlet`], i.e. the alarm service). Ingest never waits for
//! it: the bus never blocks on subscribers, and a fall behind (`Lagged`) is
//! answered by re-reading the latest values, not by slowing the bus.
//!
//! Rules are reloaded when the outlet signals a change; devices and areas are
//! re-read periodically and as soon as a device the index does not know
//! reports (a device created since). Open alarms are read back at start so a
//! restart neither raises them again nor forgets them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{SelectAll, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::alarm_eval::{AlarmEngine, DeviceIndex, Transition};
use crate::error::DomainError;
use crate::ids::{AlarmId, AlarmRuleId, DeviceId, PointKey, TenantId};
use crate::model::{Alarm, AlarmRule};
use crate::ports::{Delivery, LiveBus, LiveEvent};

/// Where the evaluator gets rules and open alarms and puts transitions: the
/// alarm service in production, a recorder in tests.
#[async_trait]
pub trait AlarmOutlet: Send + Sync + 'static {
    /// Every tenant's rules.
    async fn all_rules(&self) -> Result<Vec<AlarmRule>, DomainError>;
    /// Every tenant's active alarms.
    async fn active_alarms(&self) -> Result<Vec<Alarm>, DomainError>;
    /// Sees a new value whenever rules change.
    fn rule_changes(&self) -> watch::Receiver<u64>;
    /// Raises (stores, publishes, announces) and returns the alarm; the
    /// active one when it exists already.
    #[allow(clippy::too_many_arguments)]
    async fn raise(
        &self,
        rule: &AlarmRule,
        device: DeviceId,
        point: Option<PointKey>,
        value: Option<f64>,
        at: DateTime<Utc>,
        message: String,
    ) -> Result<Alarm, DomainError>;
    /// Clears an active alarm.
    async fn clear(
        &self,
        tenant: TenantId,
        id: AlarmId,
        at: DateTime<Utc>,
        value: Option<f64>,
    ) -> Result<(), DomainError>;
}

/// Every device of every tenant with its area path.
#[async_trait]
pub trait DeviceSource: Send + Sync + 'static {
    async fn device_index(&self) -> Result<DeviceIndex, DomainError>;
}

#[async_trait]
impl DeviceSource for super::access::DeviceAccess {
    async fn device_index(&self) -> Result<DeviceIndex, DomainError> {
        let devices = self.all_devices().await?;
        let tenants: HashSet<TenantId> = devices.iter().map(|d| d.tenant_id).collect();
        let mut areas = Vec::new();
        for tenant in tenants {
            areas.extend(self.areas(tenant).await?);
        }
        Ok(DeviceIndex::new(&devices, &areas))
    }
}

/// Tuning of the evaluator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmEvaluatorConfig {
    /// How often time-based conditions are checked.
    pub tick: Duration,
    /// How often devices and areas are re-read (moves, deletions).
    pub reload_devices_every: Duration,
}

impl Default for AlarmEvaluatorConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            reload_devices_every: Duration::from_secs(30),
        }
    }
}

/// Counters of a running evaluator.
#[derive(Debug, Default)]
pub struct AlarmEvaluatorStats {
    /// Rule checks made by the engine.
    pub checks: AtomicU64,
    /// Readings fed to the engine.
    pub readings: AtomicU64,
    pub raised: AtomicU64,
    pub cleared: AtomicU64,
    /// Times the evaluator fell behind the bus and resynchronised.
    pub resyncs: AtomicU64,
    /// Transitions the outlet refused (logged).
    pub failures: AtomicU64,
    /// Set once rules, devices and open alarms are loaded and subscribed.
    pub ready: AtomicU64,
}

/// A running evaluator; dropping it does not stop it, [`Self::stop`] does.
pub struct AlarmEvaluatorHandle {
    stats: Arc<AlarmEvaluatorStats>,
    evaluator: JoinHandle<()>,
    applier: JoinHandle<()>,
}

impl AlarmEvaluatorHandle {
    pub fn stats(&self) -> &Arc<AlarmEvaluatorStats> {
        &self.stats
    }

    /// Whether the initial load is done (the live stream is followed).
    pub fn is_ready(&self) -> bool {
        self.stats.ready.load(Ordering::Acquire) > 0
    }

    /// Stops both tasks and waits until they are gone (so the stores they
    /// hold are released). Transitions not yet applied are dropped; open
    /// alarms are in the store and are picked up by the next start.
    pub async fn stop(self) {
        self.evaluator.abort();
        self.applier.abort();
        let _ = self.evaluator.await;
        let _ = self.applier.await;
    }
}

/// Starts alarm evaluation.
pub struct AlarmEvaluator;

impl AlarmEvaluator {
    /// Must be called inside a Tokio runtime.
    pub fn spawn(
        outlet: Arc<dyn AlarmOutlet>,
        devices: Arc<dyn DeviceSource>,
        live: Arc<dyn LiveBus>,
        config: AlarmEvaluatorConfig,
    ) -> AlarmEvaluatorHandle {
        let stats = Arc::new(AlarmEvaluatorStats::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let applier = tokio::spawn(apply(outlet.clone(), rx, stats.clone()));
        let evaluator = tokio::spawn(evaluate(outlet, devices, live, config, tx, stats.clone()));
        AlarmEvaluatorHandle {
            stats,
            evaluator,
            applier,
        }
    }
}

/// What the applier is told: the open alarms at start, then transitions with
/// the rule they belong to.
enum Work {
    Seed(Vec<Alarm>),
    Apply(Transition, Option<Arc<AlarmRule>>),
}

/// Retries `load` with capped backoff until it succeeds.
async fn until_loaded<T, F, Fut>(what: &str, mut load: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DomainError>>,
{
    let mut wait = Duration::from_millis(200);
    loop {
        match load().await {
            Ok(value) => return value,
            Err(err) => {
                tracing::warn!(error = %err, what, "Alarm evaluation could not load; retrying.");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

type TenantStream = futures::stream::BoxStream<'static, (TenantId, Delivery)>;

fn follow(live: &dyn LiveBus, tenant: TenantId) -> TenantStream {
    live.subscribe(tenant).map(move |d| (tenant, d)).boxed()
}

async fn evaluate(
    outlet: Arc<dyn AlarmOutlet>,
    devices: Arc<dyn DeviceSource>,
    live: Arc<dyn LiveBus>,
    config: AlarmEvaluatorConfig,
    tx: mpsc::UnboundedSender<Work>,
    stats: Arc<AlarmEvaluatorStats>,
) {
    let mut rule_changes = outlet.rule_changes();
    rule_changes.mark_unchanged();
    let rules = until_loaded("alarm rules", || outlet.all_rules()).await;
    let index = until_loaded("devices", || devices.device_index()).await;
    let open = until_loaded("active alarms", || outlet.active_alarms()).await;
    let mut engine = AlarmEngine::new(rules, index);
    let mut streams: SelectAll<TenantStream> = SelectAll::new();
    let mut followed: HashSet<TenantId> = HashSet::new();
    follow_new_tenants(&engine, &*live, &mut streams, &mut followed);
    let now = Utc::now();
    let orphans = engine.seed_active(&open, now);
    let _ = tx.send(Work::Seed(open));
    send(&engine, &tx, orphans);
    // Values published before we subscribed are still current: start from them.
    resync(&mut engine, &*live, None, &tx, &stats);
    stats.ready.store(1, Ordering::Release);

    let mut tick = tokio::time::interval(config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut reload = tokio::time::interval(config.reload_devices_every);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reload.reset();
    // A device unknown to the index reloads it, at most once per second.
    let mut unknown_reload_after: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            delivery = streams.next(), if !streams.is_empty() => {
                let Some((tenant, delivery)) = delivery else { continue };
                match delivery {
                    Delivery::Event(LiveEvent::Readings(batch)) => {
                        let (device, readings) = match batch.readings().first() {
                            Some(first) => (first.device_id, batch.readings().clone()),
                            None => continue,
                        };
                        if engine.devices().get(device).is_none() {
                            unknown_reload_after.get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_secs(1));
                        }
                        stats.readings.fetch_add(readings.len() as u64, Ordering::Relaxed);
                        let out = engine.on_readings(tenant, device, &readings);
                        send(&engine, &tx, out);
                    }
                    Delivery::Event(LiveEvent::Reading(reading)) => {
                        stats.readings.fetch_add(1, Ordering::Relaxed);
                        let out = engine.on_readings(tenant, reading.device_id, std::slice::from_ref(&reading));
                        send(&engine, &tx, out);
                    }
                    Delivery::Event(LiveEvent::Status(status)) => {
                        let out = engine.on_status(&status);
                        send(&engine, &tx, out);
                    }
                    Delivery::Event(_) => {}
                    Delivery::Lagged(missed) => {
                        stats.resyncs.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%tenant, missed, "Alarm evaluation fell behind the live stream; resynchronising from the latest values.");
                        resync(&mut engine, &*live, Some(tenant), &tx, &stats);
                    }
                }
                stats.checks.store(engine.checks(), Ordering::Relaxed);
            }
            _ = tick.tick() => {
                let out = engine.tick(Utc::now());
                send(&engine, &tx, out);
                stats.checks.store(engine.checks(), Ordering::Relaxed);
                if unknown_reload_after.is_some_and(|at| at <= tokio::time::Instant::now()) {
                    unknown_reload_after = None;
                    reload_devices(&mut engine, &*devices, &*live, &mut streams, &mut followed, &tx).await;
                }
            }
            _ = reload.tick() => {
                reload_devices(&mut engine, &*devices, &*live, &mut streams, &mut followed, &tx).await;
            }
            changed = rule_changes.changed() => {
                if changed.is_err() {
                    // The outlet is gone (shutting down): keep evaluating
                    // with the rules we have, never spinning on the error.
                    rule_changes = watch::channel(0).1;
                    continue;
                }
                rule_changes.mark_unchanged();
                let rules = until_loaded("alarm rules", || outlet.all_rules()).await;
                let out = engine.set_rules(rules, Utc::now());
                send(&engine, &tx, out);
                tracing::debug!(rules = engine.rule_count(), "Alarm rules reloaded.");
            }
        }
    }
}

fn follow_new_tenants(
    engine: &AlarmEngine,
    live: &dyn LiveBus,
    streams: &mut SelectAll<TenantStream>,
    followed: &mut HashSet<TenantId>,
) {
    let tenants: HashSet<TenantId> = engine.devices().tenants().collect();
    for tenant in tenants {
        if followed.insert(tenant) {
            streams.push(follow(live, tenant));
        }
    }
}

async fn reload_devices(
    engine: &mut AlarmEngine,
    devices: &dyn DeviceSource,
    live: &dyn LiveBus,
    streams: &mut SelectAll<TenantStream>,
    followed: &mut HashSet<TenantId>,
    tx: &mpsc::UnboundedSender<Work>,
) {
    match devices.device_index().await {
        Ok(index) => {
            let known: HashSet<DeviceId> = engine.devices().ids().collect();
            let out = engine.set_devices(index, Utc::now());
            send(engine, tx, out);
            follow_new_tenants(engine, live, streams, followed);
            // New devices may have reported before we knew them.
            let fresh: Vec<(TenantId, DeviceId)> = engine
                .devices()
                .entries()
                .filter(|(id, _)| !known.contains(id))
                .map(|(id, info)| (info.tenant_id, id))
                .collect();
            for (tenant, device) in fresh {
                let latest = live.latest(tenant, device);
                let out = engine.on_readings(tenant, device, &latest);
                send(engine, tx, out);
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "Alarm evaluation could not reload devices; keeping the ones it has.")
        }
    }
}

/// Feeds the latest value of every point (of one tenant, or all) and each
/// device's status: what was missed while behind is at least as current.
fn resync(
    engine: &mut AlarmEngine,
    live: &dyn LiveBus,
    tenant: Option<TenantId>,
    tx: &mpsc::UnboundedSender<Work>,
    stats: &AlarmEvaluatorStats,
) {
    let devices: Vec<(TenantId, DeviceId)> = engine
        .devices()
        .entries()
        .filter(|(_, info)| tenant.is_none_or(|t| t == info.tenant_id))
        .map(|(id, info)| (info.tenant_id, id))
        .collect();
    for (tenant, device) in devices {
        if let Some(status) = live.status(tenant, device) {
            let out = engine.on_status(&status);
            send(engine, tx, out);
        }
        let latest = live.latest(tenant, device);
        stats
            .readings
            .fetch_add(latest.len() as u64, Ordering::Relaxed);
        let out = engine.on_readings(tenant, device, &latest);
        send(engine, tx, out);
    }
}

fn send(engine: &AlarmEngine, tx: &mpsc::UnboundedSender<Work>, out: Vec<Transition>) {
    for transition in out {
        let rule = engine.rule(transition.rule()).cloned().map(Arc::new);
        // The applier only stops when the runtime does.
        let _ = tx.send(Work::Apply(transition, rule));
    }
}

/// Applies transitions one after another, in order, remembering which alarm
/// is open for each (rule, device).
async fn apply(
    outlet: Arc<dyn AlarmOutlet>,
    mut rx: mpsc::UnboundedReceiver<Work>,
    stats: Arc<AlarmEvaluatorStats>,
) {
    let mut open: HashMap<(AlarmRuleId, DeviceId), (TenantId, AlarmId)> = HashMap::new();
    while let Some(work) = rx.recv().await {
        match work {
            Work::Seed(alarms) => {
                for alarm in alarms.into_iter().filter(|a| a.state.is_active()) {
                    open.insert(
                        (alarm.rule_id, alarm.device_id),
                        (alarm.tenant_id, alarm.id),
                    );
                }
            }
            Work::Apply(
                Transition::Raise {
                    rule: rule_id,
                    device,
                    point,
                    value,
                    at,
                    message,
                    ..
                },
                rule,
            ) => {
                let Some(rule) = rule else {
                    continue;
                };
                match outlet.raise(&rule, device, point, value, at, message).await {
                    Ok(alarm) => {
                        stats.raised.fetch_add(1, Ordering::Relaxed);
                        open.insert((rule_id, device), (alarm.tenant_id, alarm.id));
                    }
                    Err(err) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %err, rule = %rule_id, %device, "Could not raise an alarm.");
                    }
                }
            }
            Work::Apply(
                Transition::Clear {
                    rule,
                    device,
                    at,
                    value,
                    ..
                },
                _,
            ) => {
                let Some((tenant, id)) = open.remove(&(rule, device)) else {
                    continue;
                };
                match outlet.clear(tenant, id, at, value).await {
                    Ok(()) => {
                        stats.cleared.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(DomainError::Conflict(_)) => {
                        // Already cleared (by another replica or before a
                        // restart): nothing left to do.
                    }
                    Err(err) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %err, %rule, %device, "Could not clear an alarm.");
                    }
                }
            }
        }
    }
}

#[async_trait]
impl AlarmOutlet for super::AlarmService {
    async fn all_rules(&self) -> Result<Vec<AlarmRule>, DomainError> {
        super::AlarmService::all_rules(self).await
    }
    async fn active_alarms(&self) -> Result<Vec<Alarm>, DomainError> {
        super::AlarmService::active_alarms(self).await
    }
    fn rule_changes(&self) -> watch::Receiver<u64> {
        super::AlarmService::rule_changes(self)
    }
    async fn raise(
        &self,
        rule: &AlarmRule,
        device: DeviceId,
        point: Option<PointKey>,
        value: Option<f64>,
        at: DateTime<Utc>,
        message: String,
    ) -> Result<Alarm, DomainError> {
        super::AlarmService::raise(self, rule, device, point, value, at, message).await
    }
    async fn clear(
        &self,
        tenant: TenantId,
        id: AlarmId,
        at: DateTime<Utc>,
        value: Option<f64>,
    ) -> Result<(), DomainError> {
        super::AlarmService::clear(self, tenant, id, at, value)
            .await
            .map(|_| ())
    }
}
