//! Alarm evaluation over the live stream: 10,000 rules (device, area and
//! tenant targets; thresholds, rate of change, stale, consumption) on 1,000
//! devices of 10 tenants, 14 points each. One run, side by side:
//!
//! 1. the engine alone replaying polls (rule checks/s, no bus, no tasks);
//! 2. ingest's live half (publishing each poll's batch to the in-process
//!    bus, as `IngestService::record_readings` does) for a fixed time,
//!    without an evaluator;
//! 3. the same with the evaluator following every tenant: batches/s again
//!    (ratio to 2) and the evaluator's rule checks/s over the stream.
//!
//! Phases 2 and 3 run twice: paced at `ALARM_BENCH_RATE` batches/s
//! (default 20,000, i.e. 280,000 readings/s: 1,000 controllers polled 20
//! times a second) and flooded (as fast as the publisher can go, far beyond
//! any poller; the evaluator then falls behind and resyncs).
//!
//! `cargo bench -p hearth-domain --bench alarm_eval` (release);
//! `ALARM_BENCH_SECS` sets each live phase's length (default 5).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hearth_domain::model::{
    Alarm, AlarmCondition, AlarmRule, AlarmState, AlarmTarget, Area, Device, Endpoint,
    NotificationSettings, Quality, Reading, Severity, ThresholdDirection,
};
use hearth_domain::ports::{LiveBus, LiveEvent, ReadingBatch};
use hearth_domain::services::{
    AlarmEngine, AlarmEvaluator, AlarmEvaluatorConfig, AlarmOutlet, DeviceIndex, DeviceSource,
};
use hearth_domain::{
    AlarmId, AlarmRuleId, AreaId, DeviceId, DomainError, PointKey, ProfileId, TenantId,
};
use hearth_inproc::bus::InProcessBus;
use tokio::sync::watch;

const TENANTS: usize = 10;
const AREAS_PER_TENANT: usize = 10;
const DEVICES_PER_AREA: usize = 10;
const POINTS: usize = 14;

struct Plant {
    devices: Vec<Device>,
    areas: Vec<Area>,
    rules: Vec<AlarmRule>,
    points: Vec<PointKey>,
}

fn rule(tenant: TenantId, target: AlarmTarget, i: usize, point: &PointKey) -> AlarmRule {
    let condition = match i % 10 {
        0 => AlarmCondition::RateOfChange {
            point: point.clone(),
            max_change: 1_000.0,
            over: Duration::from_secs(60),
        },
        1 => AlarmCondition::Stale {
            point: point.clone(),
            after: Duration::from_secs(3_600),
        },
        2 => AlarmCondition::Consumption {
            point: point.clone(),
            max_increase: 1e9,
            window_start_minute: 0,
        },
        n => AlarmCondition::Threshold {
            point: point.clone(),
            direction: if n % 2 == 0 {
                ThresholdDirection::Above
            } else {
                ThresholdDirection::Below
            },
            limit: if n % 2 == 0 { 500.0 } else { -500.0 },
            hysteresis: 1.0,
            on_delay: Duration::from_secs(10),
            off_delay: Duration::ZERO,
        },
    };
    AlarmRule {
        id: AlarmRuleId::new(),
        tenant_id: tenant,
        name: format!("rule {i}"),
        enabled: true,
        severity: Severity::Minor,
        target,
        condition,
        schedule: None,
        notifications: NotificationSettings::default(),
        version: 1,
        updated_at: Utc::now(),
    }
}

/// Per tenant 1,000 rules: 7 per device (700), 20 per area (200), 100 for
/// the whole tenant: 127 checks per 14-point poll.
fn plant() -> Plant {
    let points: Vec<PointKey> = (0..POINTS)
        .map(|p| PointKey::new(format!("p{p}")).unwrap())
        .collect();
    let (mut devices, mut areas, mut rules) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..TENANTS {
        let tenant = TenantId::new();
        for a in 0..AREAS_PER_TENANT {
            let area = Area {
                id: AreaId::new(),
                tenant_id: tenant,
                parent_id: None,
                name: format!("area {a}"),
            };
            for r in 0..20 {
                rules.push(rule(
                    tenant,
                    AlarmTarget::Area(area.id),
                    rules.len(),
                    &points[r % POINTS],
                ));
            }
            for d in 0..DEVICES_PER_AREA {
                let device = Device {
                    id: DeviceId::new(),
                    tenant_id: tenant,
                    area_id: Some(area.id),
                    name: format!("ecl {a}-{d}"),
                    profile_id: ProfileId::new("ecl").unwrap(),
                    endpoint: Endpoint::new("127.0.0.1", 502, 1).unwrap(),
                };
                for r in 0..7 {
                    rules.push(rule(
                        tenant,
                        AlarmTarget::Device(device.id),
                        rules.len(),
                        &points[(d + r) % POINTS],
                    ));
                }
                devices.push(device);
            }
            areas.push(area);
        }
        for r in 0..100 {
            rules.push(rule(
                tenant,
                AlarmTarget::Tenant,
                rules.len(),
                &points[r % POINTS],
            ));
        }
    }
    Plant {
        devices,
        areas,
        rules,
        points,
    }
}

fn poll(d: &Device, points: &[PointKey], at: DateTime<Utc>, step: u64) -> Vec<Reading> {
    points
        .iter()
        .enumerate()
        .map(|(i, p)| Reading {
            tenant_id: d.tenant_id,
            device_id: d.id,
            point: p.clone(),
            timestamp: at,
            value: 20.0 + ((step as usize + i) % 17) as f64 * 0.1,
            quality: Quality::Good,
        })
        .collect()
}

struct Outlet(Vec<AlarmRule>, watch::Sender<u64>);

#[async_trait]
impl AlarmOutlet for Outlet {
    async fn all_rules(&self) -> Result<Vec<AlarmRule>, DomainError> {
        Ok(self.0.clone())
    }
    async fn active_alarms(&self) -> Result<Vec<Alarm>, DomainError> {
        Ok(Vec::new())
    }
    fn rule_changes(&self) -> watch::Receiver<u64> {
        self.1.subscribe()
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
        Ok(Alarm {
            id: AlarmId::new(),
            tenant_id: rule.tenant_id,
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            severity: rule.severity,
            device_id: device,
            point,
            state: AlarmState::Raised,
            message,
            value,
            raised_at: at,
            acknowledgement: None,
            cleared_at: None,
        })
    }
    async fn clear(
        &self,
        _: TenantId,
        _: AlarmId,
        _: DateTime<Utc>,
        _: Option<f64>,
    ) -> Result<(), DomainError> {
        Ok(())
    }
}

struct Devices(DeviceIndex);

#[async_trait]
impl DeviceSource for Devices {
    async fn device_index(&self) -> Result<DeviceIndex, DomainError> {
        Ok(self.0.clone())
    }
}

/// Publishes polls of every device round-robin for `secs`, yielding every
/// 100 batches as poller tasks would, at most `rate` batches/s when given;
/// returns batches published and the seconds it took.
async fn ingest(
    bus: &InProcessBus,
    plant: &Plant,
    secs: f64,
    step0: u64,
    rate: Option<f64>,
) -> (u64, f64) {
    let start = Instant::now();
    let mut batches = 0u64;
    let mut step = step0;
    while start.elapsed().as_secs_f64() < secs {
        step += 1;
        let at = Utc::now();
        for d in &plant.devices {
            let batch =
                ReadingBatch::new(d.tenant_id, d.id, poll(d, &plant.points, at, step)).unwrap();
            bus.publish(LiveEvent::Readings(batch));
            batches += 1;
            if batches.is_multiple_of(100) {
                tokio::task::yield_now().await;
            }
        }
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(batches as f64 / rate);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    (batches, start.elapsed().as_secs_f64())
}

fn main() {
    let secs: f64 = std::env::var("ALARM_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let plant = plant();
    let index = DeviceIndex::new(&plant.devices, &plant.areas);
    println!(
        "alarm_eval: {} rules, {} devices, {} tenants, {} points per poll",
        plant.rules.len(),
        plant.devices.len(),
        TENANTS,
        POINTS
    );

    // 1. The engine alone.
    let mut engine = AlarmEngine::new(plant.rules.clone(), index.clone());
    let t0 = Utc::now();
    let polls: Vec<Vec<Reading>> = (0..50u64)
        .flat_map(|s| {
            let at = t0 + chrono::Duration::seconds(s as i64);
            plant.devices.iter().map(move |d| (d, at, s))
        })
        .map(|(d, at, s)| poll(d, &plant.points, at, s))
        .collect();
    let start = Instant::now();
    let mut transitions = 0usize;
    for readings in &polls {
        let (t, d) = (readings[0].tenant_id, readings[0].device_id);
        transitions += engine.on_readings(t, d, readings).len();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let readings = polls.len() * POINTS;
    println!(
        "engine alone: {} rule checks in {:.3} s = {:.0} checks/s ({:.0} readings/s, {:.1} checks per reading, {} transitions)",
        engine.checks(),
        elapsed,
        engine.checks() as f64 / elapsed,
        readings as f64 / elapsed,
        engine.checks() as f64 / readings as f64,
        transitions
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // 2. Ingest without an evaluator.
        let bus = Arc::new(InProcessBus::new());
        let paced: f64 = std::env::var("ALARM_BENCH_RATE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000.0);
        let (bare_paced, bare_paced_secs) = ingest(&bus, &plant, secs, 0, Some(paced)).await;
        let bare_paced_rate = bare_paced as f64 / bare_paced_secs;
        println!(
            "paced ingest ({paced:.0} batches/s offered) without evaluator: {bare_paced_rate:.0} batches/s ({:.0} readings/s)",
            bare_paced_rate * POINTS as f64
        );
        let (bare, bare_secs) = ingest(&bus, &plant, secs, 100_000, None).await;
        let bare_rate = bare as f64 / bare_secs;
        println!(
            "flood ingest without evaluator: {bare} batches in {bare_secs:.2} s = {bare_rate:.0} batches/s ({:.0} readings/s)",
            bare_rate * POINTS as f64
        );

        // 3. With the evaluator following every tenant.
        let outlet = Arc::new(Outlet(plant.rules.clone(), watch::channel(0).0));
        let handle = AlarmEvaluator::spawn(
            outlet,
            Arc::new(Devices(index.clone())),
            bus.clone(),
            AlarmEvaluatorConfig::default(),
        );
        while !handle.is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = handle.stats().clone();
        let (checks0, readings0) = (
            stats.checks.load(Ordering::Relaxed),
            stats.readings.load(Ordering::Relaxed),
        );
        let start = Instant::now();
        let (with_paced, with_paced_secs) =
            ingest(&bus, &plant, secs, 200_000, Some(paced)).await;
        let with_paced_rate = with_paced as f64 / with_paced_secs;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let paced_secs = start.elapsed().as_secs_f64();
        let paced_checks = stats.checks.load(Ordering::Relaxed) - checks0;
        let paced_evaluated = stats.readings.load(Ordering::Relaxed) - readings0;
        println!(
            "paced ingest with evaluator: {with_paced_rate:.0} batches/s, {:.3}x without; evaluator {:.0} checks/s, {paced_evaluated} of {} readings evaluated, {} resyncs",
            with_paced_rate / bare_paced_rate,
            paced_checks as f64 / paced_secs,
            with_paced * POINTS as u64,
            stats.resyncs.load(Ordering::Relaxed)
        );
        let (checks0, readings0) = (
            stats.checks.load(Ordering::Relaxed),
            stats.readings.load(Ordering::Relaxed),
        );
        let start = Instant::now();
        let (with, with_secs) = ingest(&bus, &plant, secs, 1_000_000, None).await;
        let with_rate = with as f64 / with_secs;
        // Let the evaluator finish what is buffered before counting.
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = stats.readings.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        let eval_secs = start.elapsed().as_secs_f64() - 0.1;
        let checks = stats.checks.load(Ordering::Relaxed) - checks0;
        let evaluated = stats.readings.load(Ordering::Relaxed) - readings0;
        println!(
            "flood ingest with evaluator: {with} batches in {with_secs:.2} s = {with_rate:.0} batches/s ({:.0} readings/s), {:.3}x without",
            with_rate * POINTS as f64,
            with_rate / bare_rate
        );
        println!(
            "evaluator over the live stream: {checks} rule checks in {eval_secs:.2} s = {:.0} checks/s; {evaluated} of {} readings evaluated, {} resyncs after lag, {} raised",
            checks as f64 / eval_secs,
            with * POINTS as u64,
            stats.resyncs.load(Ordering::Relaxed),
            stats.raised.load(Ordering::Relaxed)
        );
        handle.stop().await;
    });
}
