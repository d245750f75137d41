//! Use-case tier: the alarm evaluator follows the in-process live bus on its
//! own tasks and applies what the engine decides through its outlet (here a
//! recorder that keeps open alarms like a store): raise and clear, a restart
//! that neither re-raises nor forgets, falling behind the bus, rule changes.
//! Waits are for events with generous deadlines, never for a clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hearth_domain::model::{
    Alarm, AlarmCondition, AlarmRule, AlarmState, AlarmTarget, Device, Endpoint,
    NotificationSettings, Quality, Reading, Severity, ThresholdDirection,
};
use hearth_domain::ports::{LiveBus, LiveEvent, ReadingBatch};
use hearth_domain::services::{
    AlarmEvaluator, AlarmEvaluatorConfig, AlarmEvaluatorHandle, AlarmOutlet, DeviceIndex,
    DeviceSource,
};
use hearth_domain::{AlarmId, AlarmRuleId, DeviceId, DomainError, PointKey, ProfileId, TenantId};
use hearth_inproc::bus::InProcessBus;
use parking_lot::Mutex;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq)]
enum Logged {
    Raise(AlarmRuleId, DeviceId, Option<f64>),
    Clear(AlarmId),
}

struct Recorder {
    rules: Mutex<Vec<AlarmRule>>,
    active: Mutex<Vec<Alarm>>,
    log: Mutex<Vec<Logged>>,
    changes: watch::Sender<u64>,
}

impl Recorder {
    fn new(rules: Vec<AlarmRule>, active: Vec<Alarm>) -> Arc<Self> {
        Arc::new(Self {
            rules: Mutex::new(rules),
            active: Mutex::new(active),
            log: Mutex::new(Vec::new()),
            changes: watch::channel(0).0,
        })
    }
    fn log(&self) -> Vec<Logged> {
        self.log.lock().clone()
    }
    fn set_rules(&self, rules: Vec<AlarmRule>) {
        *self.rules.lock() = rules;
        self.changes.send_modify(|g| *g += 1);
    }
}

#[async_trait]
impl AlarmOutlet for Recorder {
    async fn all_rules(&self) -> Result<Vec<AlarmRule>, DomainError> {
        Ok(self.rules.lock().clone())
    }
    async fn active_alarms(&self) -> Result<Vec<Alarm>, DomainError> {
        Ok(self.active.lock().clone())
    }
    fn rule_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
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
        let alarm = Alarm {
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
        };
        self.active.lock().push(alarm.clone());
        self.log.lock().push(Logged::Raise(rule.id, device, value));
        Ok(alarm)
    }
    async fn clear(
        &self,
        _tenant: TenantId,
        id: AlarmId,
        _at: DateTime<Utc>,
        _value: Option<f64>,
    ) -> Result<(), DomainError> {
        let mut active = self.active.lock();
        let before = active.len();
        active.retain(|a| a.id != id);
        if active.len() == before {
            return Err(DomainError::Conflict("already cleared".into()));
        }
        self.log.lock().push(Logged::Clear(id));
        Ok(())
    }
}

struct Devices(Mutex<Vec<Device>>);

#[async_trait]
impl DeviceSource for Devices {
    async fn device_index(&self) -> Result<DeviceIndex, DomainError> {
        Ok(DeviceIndex::new(&self.0.lock(), &[]))
    }
}

fn device(tenant: TenantId) -> Device {
    Device {
        id: DeviceId::new(),
        tenant_id: tenant,
        area_id: None,
        name: "ECL".into(),
        profile_id: ProfileId::new("ecl").unwrap(),
        endpoint: Endpoint::new("127.0.0.1", 502, 1).unwrap(),
    }
}

fn flow_above(tenant: TenantId, limit: f64) -> AlarmRule {
    AlarmRule {
        id: AlarmRuleId::new(),
        tenant_id: tenant,
        name: "Flow too hot".into(),
        enabled: true,
        severity: Severity::Major,
        target: AlarmTarget::Tenant,
        condition: AlarmCondition::Threshold {
            point: PointKey::new("flow_temp").unwrap(),
            direction: ThresholdDirection::Above,
            limit,
            hysteresis: 0.0,
            on_delay: Duration::ZERO,
            off_delay: Duration::ZERO,
        },
        schedule: None,
        notifications: NotificationSettings::default(),
        version: 1,
        updated_at: Utc::now(),
    }
}

fn publish(bus: &InProcessBus, d: &Device, value: f64) {
    let reading = Reading {
        tenant_id: d.tenant_id,
        device_id: d.id,
        point: PointKey::new("flow_temp").unwrap(),
        timestamp: Utc::now(),
        value,
        quality: Quality::Good,
    };
    bus.publish(LiveEvent::Readings(
        ReadingBatch::new(d.tenant_id, d.id, vec![reading]).unwrap(),
    ));
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn start(
    recorder: &Arc<Recorder>,
    devices: Vec<Device>,
    bus: &Arc<InProcessBus>,
) -> AlarmEvaluatorHandle {
    AlarmEvaluator::spawn(
        recorder.clone(),
        Arc::new(Devices(Mutex::new(devices))),
        bus.clone(),
        AlarmEvaluatorConfig {
            tick: Duration::from_millis(50),
            reload_devices_every: Duration::from_secs(3600),
        },
    )
}

#[tokio::test]
async fn readings_on_the_bus_raise_and_clear_through_the_outlet() {
    let tenant = TenantId::new();
    let other = TenantId::new();
    let (d, foreign) = (device(tenant), device(other));
    let rule = flow_above(tenant, 90.0);
    let recorder = Recorder::new(vec![rule.clone()], vec![]);
    let bus = Arc::new(InProcessBus::new());
    let handle = start(&recorder, vec![d.clone(), foreign.clone()], &bus);
    until("ready", || handle.is_ready()).await;

    // Given a hot reading of another tenant's device: nothing.
    publish(&bus, &foreign, 120.0);
    publish(&bus, &d, 80.0);
    until("both readings", || {
        handle
            .stats()
            .readings
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    })
    .await;
    assert!(recorder.log().is_empty());
    // When the own device runs hot, then it is raised once.
    publish(&bus, &d, 95.0);
    publish(&bus, &d, 96.0);
    until("the raise", || !recorder.log().is_empty()).await;
    // And when it is back, the same alarm is cleared.
    publish(&bus, &d, 85.0);
    until("the clear", || recorder.log().len() >= 2).await;
    let log = recorder.log();
    assert_eq!(log[0], Logged::Raise(rule.id, d.id, Some(95.0)));
    let raised = recorder.active.lock().is_empty();
    assert!(raised, "the raised alarm was cleared");
    assert!(matches!(log[1], Logged::Clear(_)));
    assert_eq!(log.len(), 2);
    handle.stop().await;
}

#[tokio::test]
async fn a_restart_neither_raises_open_alarms_again_nor_forgets_them() {
    let tenant = TenantId::new();
    let d = device(tenant);
    let rule = flow_above(tenant, 90.0);
    let recorder = Recorder::new(vec![rule.clone()], vec![]);
    let bus = Arc::new(InProcessBus::new());
    let first = start(&recorder, vec![d.clone()], &bus);
    until("ready", || first.is_ready()).await;
    publish(&bus, &d, 95.0);
    until("the raise", || recorder.log().len() == 1).await;
    let open = recorder.active.lock()[0].clone();
    first.stop().await;

    // Given a new evaluator over the same store (the bus keeps the latest
    // value, 95: still hot).
    let second = start(&recorder, vec![d.clone()], &bus);
    until("ready", || second.is_ready()).await;
    publish(&bus, &d, 97.0);
    until("the reading", || {
        second
            .stats()
            .readings
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    })
    .await;
    assert_eq!(recorder.log().len(), 1, "not raised again");
    // When the value is back, then the alarm from before the restart clears.
    publish(&bus, &d, 80.0);
    until("the clear", || recorder.log().len() == 2).await;
    assert_eq!(recorder.log()[1], Logged::Clear(open.id));
    second.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn falling_behind_the_bus_resynchronises_from_the_latest_values() {
    let tenant = TenantId::new();
    let d = device(tenant);
    let rule = flow_above(tenant, 90.0);
    let recorder = Recorder::new(vec![rule.clone()], vec![]);
    // A tiny buffer, and a publisher that never yields: the evaluator lags.
    let bus = Arc::new(InProcessBus::with_capacity(4));
    let handle = start(&recorder, vec![d.clone()], &bus);
    until("ready", || handle.is_ready()).await;
    for i in 0..1_000 {
        publish(&bus, &d, 50.0 + f64::from(i % 10));
    }
    publish(&bus, &d, 99.0);
    until("the raise", || !recorder.log().is_empty()).await;
    assert_eq!(
        recorder.log(),
        vec![Logged::Raise(rule.id, d.id, Some(99.0))]
    );
    assert!(
        handle
            .stats()
            .resyncs
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    handle.stop().await;
}

#[tokio::test]
async fn a_deleted_rule_clears_its_alarms_and_a_new_one_is_evaluated() {
    let tenant = TenantId::new();
    let d = device(tenant);
    let rule = flow_above(tenant, 90.0);
    let recorder = Recorder::new(vec![rule.clone()], vec![]);
    let bus = Arc::new(InProcessBus::new());
    let handle = start(&recorder, vec![d.clone()], &bus);
    until("ready", || handle.is_ready()).await;
    publish(&bus, &d, 95.0);
    until("the raise", || recorder.log().len() == 1).await;

    let stricter = flow_above(tenant, 60.0);
    recorder.set_rules(vec![stricter.clone()]);
    until("the clear", || recorder.log().len() >= 2).await;
    assert!(matches!(recorder.log()[1], Logged::Clear(_)));
    publish(&bus, &d, 70.0);
    until("the new rule's raise", || recorder.log().len() == 3).await;
    assert_eq!(
        recorder.log()[2],
        Logged::Raise(stricter.id, d.id, Some(70.0))
    );
    handle.stop().await;
}
