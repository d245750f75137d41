//! Each rule type raised and cleared, delays, hysteresis, schedules, rule
//! and device changes, and restart seeding, on a replayed timeline.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc, Weekday};

use super::*;
use crate::ids::{AlarmId, ProfileId};
use crate::model::{
    AlarmState, Endpoint, NotificationSettings, ScheduleWindow, Severity, WeeklySchedule,
};

fn t0() -> DateTime<Utc> {
    // Wednesday 2026-12-02 12:00:00 UTC.
    Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0)
        .single()
        .unwrap()
}

fn at(s: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(s)
}

fn key(k: &str) -> PointKey {
    PointKey::new(k).unwrap()
}

struct World {
    tenant: TenantId,
    other_tenant: TenantId,
    root: Area,
    child: Area,
    dev: Device,
    dev2: Device,
    foreign: Device,
}

fn device(tenant: TenantId, area: Option<AreaId>, name: &str) -> Device {
    Device {
        id: DeviceId::new(),
        tenant_id: tenant,
        area_id: area,
        name: name.into(),
        profile_id: ProfileId::new("ecl").unwrap(),
        endpoint: Endpoint::new("127.0.0.1", 502, 1).unwrap(),
    }
}

fn world() -> World {
    let tenant = TenantId::new();
    let other_tenant = TenantId::new();
    let root = Area {
        id: AreaId::new(),
        tenant_id: tenant,
        parent_id: None,
        name: "Site".into(),
    };
    let child = Area {
        id: AreaId::new(),
        tenant_id: tenant,
        parent_id: Some(root.id),
        name: "Boiler room".into(),
    };
    let dev = device(tenant, Some(child.id), "ECL 1");
    let dev2 = device(tenant, None, "ECL 2");
    let foreign = device(other_tenant, None, "Globex ECL");
    World {
        tenant,
        other_tenant,
        root,
        child,
        dev,
        dev2,
        foreign,
    }
}

impl World {
    fn index(&self) -> DeviceIndex {
        DeviceIndex::new(
            &[self.dev.clone(), self.dev2.clone(), self.foreign.clone()],
            &[self.root.clone(), self.child.clone()],
        )
    }
    fn rule(&self, target: AlarmTarget, condition: AlarmCondition) -> AlarmRule {
        AlarmRule {
            id: AlarmRuleId::new(),
            tenant_id: self.tenant,
            name: "rule".into(),
            enabled: true,
            severity: Severity::Major,
            target,
            condition,
            schedule: None,
            notifications: NotificationSettings::default(),
            version: 1,
            updated_at: t0(),
        }
    }
    fn engine(&self, rules: Vec<AlarmRule>) -> AlarmEngine {
        AlarmEngine::new(rules, self.index())
    }
}

fn reading(d: &Device, point: &str, s: i64, value: f64) -> Reading {
    Reading {
        tenant_id: d.tenant_id,
        device_id: d.id,
        point: key(point),
        timestamp: at(s),
        value,
        quality: Quality::Good,
    }
}

fn feed(e: &mut AlarmEngine, d: &Device, point: &str, s: i64, value: f64) -> Vec<Transition> {
    e.on_readings(d.tenant_id, d.id, &[reading(d, point, s, value)])
}

fn above(limit: f64, hysteresis: f64, on: u64, off: u64) -> AlarmCondition {
    AlarmCondition::Threshold {
        point: key("flow_temp"),
        direction: ThresholdDirection::Above,
        limit,
        hysteresis,
        on_delay: Duration::from_secs(on),
        off_delay: Duration::from_secs(off),
    }
}

fn raises(ts: &[Transition]) -> usize {
    ts.iter().filter(|t| t.is_raise()).count()
}
fn clears(ts: &[Transition]) -> usize {
    ts.iter().filter(|t| !t.is_raise()).count()
}

fn active_alarm(rule: &AlarmRule, device: &Device, raised: i64) -> Alarm {
    Alarm {
        id: AlarmId::new(),
        tenant_id: rule.tenant_id,
        rule_id: rule.id,
        rule_name: rule.name.clone(),
        severity: rule.severity,
        device_id: device.id,
        point: rule.condition.point().cloned(),
        state: AlarmState::Acknowledged,
        message: "before the restart".into(),
        value: None,
        raised_at: at(raised),
        acknowledgement: None,
        cleared_at: None,
    }
}

#[test]
fn threshold_raises_beyond_and_clears_below_the_hysteresis_band() {
    let w = world();
    let rule = w.rule(AlarmTarget::Device(w.dev.id), above(90.0, 2.0, 0, 0));
    let mut e = w.engine(vec![rule.clone()]);
    assert!(feed(&mut e, &w.dev, "flow_temp", 0, 89.0).is_empty());
    let t = feed(&mut e, &w.dev, "flow_temp", 1, 91.5);
    assert_eq!(t.len(), 1);
    match &t[0] {
        Transition::Raise {
            rule: r,
            device,
            point,
            value,
            at: when,
            message,
            ..
        } => {
            assert_eq!(*r, rule.id);
            assert_eq!(*device, w.dev.id);
            assert_eq!(point.as_ref(), Some(&key("flow_temp")));
            assert_eq!(*value, Some(91.5));
            assert_eq!(*when, at(1));
            assert_eq!(message, "flow_temp above 90");
        }
        other => panic!("expected a raise, got {other:?}"),
    }
    // Still beyond: not raised twice. Within the band (88 < v ≤ 90): stays.
    assert!(feed(&mut e, &w.dev, "flow_temp", 2, 95.0).is_empty());
    assert!(feed(&mut e, &w.dev, "flow_temp", 3, 89.0).is_empty());
    assert!(e.is_raised(rule.id, w.dev.id));
    let t = feed(&mut e, &w.dev, "flow_temp", 4, 88.0);
    assert_eq!(clears(&t), 1);
    assert!(!e.is_raised(rule.id, w.dev.id));
    // Raised again after clearing.
    assert_eq!(raises(&feed(&mut e, &w.dev, "flow_temp", 5, 90.5)), 1);
}

#[test]
fn threshold_below_mirrors_above() {
    let w = world();
    let cond = AlarmCondition::Threshold {
        point: key("room_temp"),
        direction: ThresholdDirection::Below,
        limit: 18.0,
        hysteresis: 1.0,
        on_delay: Duration::ZERO,
        off_delay: Duration::ZERO,
    };
    let mut e = w.engine(vec![w.rule(AlarmTarget::Device(w.dev.id), cond)]);
    assert!(feed(&mut e, &w.dev, "room_temp", 0, 18.0).is_empty());
    assert_eq!(raises(&feed(&mut e, &w.dev, "room_temp", 1, 17.9)), 1);
    assert!(feed(&mut e, &w.dev, "room_temp", 2, 18.9).is_empty());
    assert_eq!(clears(&feed(&mut e, &w.dev, "room_temp", 3, 19.0)), 1);
}

#[test]
fn on_delay_needs_the_condition_throughout_and_ends_on_a_tick() {
    let w = world();
    let mut e = w.engine(vec![
        w.rule(AlarmTarget::Device(w.dev.id), above(90.0, 0.0, 60, 0))
    ]);
    assert!(feed(&mut e, &w.dev, "flow_temp", 0, 95.0).is_empty());
    assert!(feed(&mut e, &w.dev, "flow_temp", 30, 95.0).is_empty());
    // A dip restarts the delay.
    assert!(feed(&mut e, &w.dev, "flow_temp", 40, 85.0).is_empty());
    assert!(feed(&mut e, &w.dev, "flow_temp", 50, 95.0).is_empty());
    assert!(e.tick(at(100)).is_empty(), "only 50 s beyond since the dip");
    let t = e.tick(at(110));
    assert_eq!(raises(&t), 1, "the on-delay ended without a new reading");
    match &t[0] {
        Transition::Raise { value, message, .. } => {
            assert_eq!(*value, Some(95.0));
            assert_eq!(message, "flow_temp above 90 for 60 s");
        }
        other => panic!("expected a raise, got {other:?}"),
    }
    assert!(e.tick(at(200)).is_empty());
}

#[test]
fn off_delay_needs_the_value_back_throughout() {
    let w = world();
    let mut e = w.engine(vec![
        w.rule(AlarmTarget::Device(w.dev.id), above(90.0, 0.0, 0, 30))
    ]);
    assert_eq!(raises(&feed(&mut e, &w.dev, "flow_temp", 0, 95.0)), 1);
    assert!(feed(&mut e, &w.dev, "flow_temp", 10, 80.0).is_empty());
    assert!(feed(&mut e, &w.dev, "flow_temp", 20, 92.0).is_empty());
    assert!(feed(&mut e, &w.dev, "flow_temp", 25, 80.0).is_empty());
    assert!(e.tick(at(50)).is_empty(), "25 s back since the relapse");
    assert_eq!(clears(&e.tick(at(55))), 1);
}

#[test]
fn bad_and_stale_readings_neither_raise_nor_clear() {
    let w = world();
    let mut e = w.engine(vec![
        w.rule(AlarmTarget::Device(w.dev.id), above(90.0, 0.0, 0, 0))
    ]);
    let mut open_sensor = reading(&w.dev, "flow_temp", 0, 192.0);
    open_sensor.quality = Quality::Bad;
    assert!(e.on_readings(w.tenant, w.dev.id, &[open_sensor]).is_empty());
    assert_eq!(raises(&feed(&mut e, &w.dev, "flow_temp", 1, 95.0)), 1);
    let mut stale = reading(&w.dev, "flow_temp", 2, 50.0);
    stale.quality = Quality::Stale;
    assert!(e.on_readings(w.tenant, w.dev.id, &[stale]).is_empty());
    assert!(e.is_raised(e.rules[0].rule.id, w.dev.id));
}

#[test]
fn area_and_tenant_targets_reach_the_right_devices_only() {
    let w = world();
    let area_rule = w.rule(AlarmTarget::Area(w.root.id), above(90.0, 0.0, 0, 0));
    let tenant_rule = w.rule(AlarmTarget::Tenant, above(100.0, 0.0, 0, 0));
    let mut e = w.engine(vec![area_rule.clone(), tenant_rule.clone()]);
    // dev sits in child (below root): both rules.
    assert_eq!(raises(&feed(&mut e, &w.dev, "flow_temp", 0, 101.0)), 2);
    // dev2 has no area: only the tenant rule.
    let t = feed(&mut e, &w.dev2, "flow_temp", 0, 101.0);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].rule(), tenant_rule.id);
    // Another tenant's device matches none, even with the same point.
    assert!(feed(&mut e, &w.foreign, "flow_temp", 0, 500.0).is_empty());
    // A reading claiming the wrong tenant is ignored.
    let mut forged = reading(&w.dev2, "flow_temp", 1, 50.0);
    forged.tenant_id = w.other_tenant;
    assert!(e
        .on_readings(w.other_tenant, w.dev2.id, &[forged])
        .is_empty());
    // Only rules of the reading's point are checked.
    let before = e.checks();
    feed(&mut e, &w.dev, "return_temp", 2, 101.0);
    assert_eq!(e.checks(), before);
}

#[test]
fn offline_raises_after_the_silence_and_clears_on_a_sign_of_life() {
    let w = world();
    let rule = w.rule(
        AlarmTarget::Device(w.dev.id),
        AlarmCondition::Offline {
            after: Duration::from_secs(60),
        },
    );
    let mut e = w.engine(vec![rule.clone()]);
    assert!(feed(&mut e, &w.dev, "flow_temp", 0, 50.0).is_empty());
    assert!(e
        .on_status(&DeviceStatus {
            tenant_id: w.tenant,
            device_id: w.dev.id,
            online: false,
            at: at(10),
        })
        .is_empty());
    assert!(e.tick(at(59)).is_empty());
    let t = e.tick(at(60));
    assert_eq!(raises(&t), 1);
    assert_eq!(t[0].device(), w.dev.id);
    assert!(e.tick(at(120)).is_empty(), "raised once");
    let t = e.on_status(&DeviceStatus {
        tenant_id: w.tenant,
        device_id: w.dev.id,
        online: true,
        at: at(130),
    });
    assert_eq!(clears(&t), 1);
    assert!(e.tick(at(150)).is_empty());
    assert_eq!(raises(&e.tick(at(190))), 1, "silent again since 130");
    assert_eq!(clears(&feed(&mut e, &w.dev, "flow_temp", 191, 50.0)), 1);
}

#[test]
fn offline_watches_devices_that_never_reported() {
    let w = world();
    let rule = w.rule(
        AlarmTarget::Tenant,
        AlarmCondition::Offline {
            after: Duration::from_secs(30),
        },
    );
    let mut e = w.engine(vec![rule]);
    assert!(
        e.tick(at(0)).is_empty(),
        "the clock starts at the first tick"
    );
    feed(&mut e, &w.dev, "flow_temp", 20, 1.0);
    let t = e.tick(at(30));
    assert_eq!(t.len(), 1, "dev2 silent since the first tick; dev reported");
    assert_eq!(t[0].device(), w.dev2.id);
}

#[test]
fn stale_raises_when_a_point_stops_updating() {
    let w = world();
    let rule = w.rule(
        AlarmTarget::Device(w.dev.id),
        AlarmCondition::Stale {
            point: key("outdoor_temp"),
            after: Duration::from_secs(30),
        },
    );
    let mut e = w.engine(vec![rule]);
    feed(&mut e, &w.dev, "outdoor_temp", 0, 5.0);
    // Other points keep coming; they do not refresh this one.
    feed(&mut e, &w.dev, "flow_temp", 25, 50.0);
    assert!(e.tick(at(29)).is_empty());
    let t = e.tick(at(30));
    assert_eq!(raises(&t), 1);
    match &t[0] {
        Transition::Raise { message, .. } => {
            assert_eq!(message, "outdoor_temp not updated for more than 30 s")
        }
        other => panic!("expected a raise, got {other:?}"),
    }
    assert_eq!(clears(&feed(&mut e, &w.dev, "outdoor_temp", 31, 5.0)), 1);
}

#[test]
fn consumption_adds_rises_ignores_meter_resets_and_clears_at_the_next_window() {
    let w = world();
    // Window starts 06:00 UTC; t0 is 12:00 UTC.
    let rule = w.rule(
        AlarmTarget::Device(w.dev.id),
        AlarmCondition::Consumption {
            point: key("energy"),
            max_increase: 10.0,
            window_start_minute: 6 * 60,
        },
    );
    let mut e = w.engine(vec![rule]);
    assert!(feed(&mut e, &w.dev, "energy", 0, 1000.0).is_empty());
    assert!(feed(&mut e, &w.dev, "energy", 60, 1006.0).is_empty());
    // Meter reset: 1006 -> 2 is not -1004, and adds nothing.
    assert!(feed(&mut e, &w.dev, "energy", 120, 2.0).is_empty());
    assert!(
        feed(&mut e, &w.dev, "energy", 180, 5.0).is_empty(),
        "used 9"
    );
    let t = feed(&mut e, &w.dev, "energy", 240, 7.0);
    assert_eq!(raises(&t), 1, "used 11 > 10");
    match &t[0] {
        Transition::Raise { value, message, .. } => {
            assert_eq!(*value, Some(11.0));
            assert_eq!(
                message,
                "energy rose by 11 within the daily window (more than 10)"
            );
        }
        other => panic!("expected a raise, got {other:?}"),
    }
    assert!(feed(&mut e, &w.dev, "energy", 300, 50.0).is_empty());
    // Next day 05:59 UTC is still the same window; 06:00 starts the next.
    let next_day = 18 * 3600;
    assert!(e.tick(at(next_day - 60)).is_empty());
    assert_eq!(clears(&e.tick(at(next_day))), 1);
    // Counting starts again in the new window.
    assert!(
        feed(&mut e, &w.dev, "energy", next_day + 10, 60.0).is_empty(),
        "used 10"
    );
    assert_eq!(
        raises(&feed(&mut e, &w.dev, "energy", next_day + 20, 60.5)),
        1
    );
}

#[test]
fn consumption_window_follows_the_schedule_time_zone() {
    let w = world();
    let mut rule = w.rule(
        AlarmTarget::Device(w.dev.id),
        AlarmCondition::Consumption {
            point: key("energy"),
            max_increase: 1.0,
            window_start_minute: 0,
        },
    );
    let all_week = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ]
    .into_iter()
    .map(|day| ScheduleWindow {
        day,
        start_minute: 0,
        end_minute: 1440,
    })
    .collect();
    rule.schedule = Some(WeeklySchedule::new("Europe/Copenhagen", all_week).unwrap());
    let mut e = w.engine(vec![rule]);
    // 22:30 UTC is 23:30 in Copenhagen; 23:30 UTC is 00:30 the next local day.
    let before = 10 * 3600 + 1800;
    feed(&mut e, &w.dev, "energy", before, 0.0);
    assert_eq!(raises(&feed(&mut e, &w.dev, "energy", before + 60, 2.0)), 1);
    assert_eq!(
        clears(&e.tick(at(before + 3600))),
        1,
        "local midnight passed"
    );
}

#[test]
fn rate_of_change_uses_a_sliding_window() {
    let w = world();
    let rule = w.rule(
        AlarmTarget::Device(w.dev.id),
        AlarmCondition::RateOfChange {
            point: key("flow_temp"),
            max_change: 5.0,
            over: Duration::from_secs(60),
        },
    );
    let mut e = w.engine(vec![rule]);
    // A slow drift of 1 per 30 s never spreads more than 5 within 60 s.
    for i in 0..20 {
        assert!(feed(&mut e, &w.dev, "flow_temp", i * 30, 50.0 + i as f64).is_empty());
    }
    // A fall of 6 within 20 s raises.
    let s = 19 * 30;
    assert!(feed(&mut e, &w.dev, "flow_temp", s + 10, 66.0).is_empty());
    assert_eq!(raises(&feed(&mut e, &w.dev, "flow_temp", s + 20, 60.0)), 1);
    // Steady afterwards: clears once the jump left the window.
    assert!(feed(&mut e, &w.dev, "flow_temp", s + 50, 60.0).is_empty());
    assert!(
        e.tick(at(s + 69)).is_empty(),
        "66 at s + 10 is still in the window"
    );
    assert_eq!(clears(&e.tick(at(s + 71))), 1);
}

#[test]
fn an_inactive_schedule_holds_back_raises_but_not_clears() {
    let w = world();
    let mut rule = w.rule(AlarmTarget::Device(w.dev.id), above(90.0, 0.0, 0, 0));
    // Wednesdays 12:00-12:10 UTC.
    rule.schedule = Some(
        WeeklySchedule::new(
            "UTC",
            vec![ScheduleWindow {
                day: Weekday::Wed,
                start_minute: 12 * 60,
                end_minute: 12 * 60 + 10,
            }],
        )
        .unwrap(),
    );
    let mut e = w.engine(vec![rule]);
    assert!(feed(&mut e, &w.dev, "flow_temp", -120, 95.0).is_empty());
    assert!(e.tick(at(-60)).is_empty(), "before the window");
    assert_eq!(
        raises(&e.tick(at(0))),
        1,
        "the window opened on a present condition"
    );
    // After the window the alarm stays open and still clears.
    assert!(feed(&mut e, &w.dev, "flow_temp", 700, 95.0).is_empty());
    assert_eq!(clears(&feed(&mut e, &w.dev, "flow_temp", 710, 80.0)), 1);
    assert!(feed(&mut e, &w.dev, "flow_temp", 720, 99.0).is_empty());
}

#[test]
fn seeded_alarms_are_not_raised_again_and_still_clear() {
    let w = world();
    let threshold = w.rule(AlarmTarget::Device(w.dev.id), above(90.0, 0.0, 0, 0));
    let stale = w.rule(
        AlarmTarget::Device(w.dev.id),
        AlarmCondition::Stale {
            point: key("outdoor_temp"),
            after: Duration::from_secs(10),
        },
    );
    let offline = w.rule(
        AlarmTarget::Device(w.dev.id),
        AlarmCondition::Offline {
            after: Duration::from_secs(10),
        },
    );
    let rate = w.rule(
        AlarmTarget::Device(w.dev.id),
        AlarmCondition::RateOfChange {
            point: key("supply"),
            max_change: 5.0,
            over: Duration::from_secs(60),
        },
    );
    let deleted = w.rule(AlarmTarget::Device(w.dev.id), above(50.0, 0.0, 0, 0));
    let mut e = w.engine(vec![
        threshold.clone(),
        stale.clone(),
        offline.clone(),
        rate.clone(),
    ]);
    let open: Vec<Alarm> = [&threshold, &stale, &offline, &rate, &deleted]
        .iter()
        .map(|r| active_alarm(r, &w.dev, -300))
        .collect();
    let t = e.seed_active(&open, at(0));
    assert_eq!(t.len(), 1, "only the alarm of the deleted rule clears");
    assert_eq!(t[0].rule(), deleted.id);
    assert!(!t[0].is_raise());
    // Still silent, still stale: nothing raised twice.
    assert!(e.tick(at(5)).is_empty());
    assert!(e.tick(at(100)).is_empty());
    // Still beyond: not raised twice; but the device is alive again.
    let t = feed(&mut e, &w.dev, "flow_temp", 101, 95.0);
    assert_eq!(
        t.iter().map(Transition::rule).collect::<Vec<_>>(),
        vec![offline.id]
    );
    assert!(!t[0].is_raise());
    // Rate: one calm reading cannot tell; a whole calm window clears.
    assert!(feed(&mut e, &w.dev, "supply", 102, 40.0).is_empty());
    let t = feed(&mut e, &w.dev, "supply", 170, 40.0);
    assert_eq!(
        t.iter().map(Transition::rule).collect::<Vec<_>>(),
        vec![rate.id]
    );
    // The threshold clears once the value is back.
    let t = feed(&mut e, &w.dev, "flow_temp", 171, 80.0);
    assert_eq!(
        t.iter().map(Transition::rule).collect::<Vec<_>>(),
        vec![threshold.id]
    );
    // The stale point updates: clears.
    let t = feed(&mut e, &w.dev, "outdoor_temp", 172, 1.0);
    assert_eq!(
        t.iter().map(Transition::rule).collect::<Vec<_>>(),
        vec![stale.id]
    );
    assert!(t.iter().all(|t| !t.is_raise()));
}

#[test]
fn seeded_consumption_alarm_clears_at_its_window_end() {
    let w = world();
    let rule = w.rule(
        AlarmTarget::Device(w.dev.id),
        AlarmCondition::Consumption {
            point: key("energy"),
            max_increase: 10.0,
            window_start_minute: 0,
        },
    );
    let mut e = w.engine(vec![rule.clone()]);
    assert!(e
        .seed_active(&[active_alarm(&rule, &w.dev, -60)], at(0))
        .is_empty());
    assert!(feed(&mut e, &w.dev, "energy", 10, 100.0).is_empty());
    assert!(
        feed(&mut e, &w.dev, "energy", 20, 200.0).is_empty(),
        "not raised twice"
    );
    assert_eq!(clears(&e.tick(at(12 * 3600))), 1, "UTC midnight");
}

#[test]
fn rule_changes_keep_unchanged_conditions_and_clear_the_rest() {
    let w = world();
    let kept = w.rule(AlarmTarget::Tenant, above(90.0, 0.0, 0, 0));
    let changed = w.rule(AlarmTarget::Device(w.dev.id), above(80.0, 0.0, 0, 0));
    let disabled = w.rule(AlarmTarget::Device(w.dev.id), above(70.0, 0.0, 0, 0));
    let deleted = w.rule(AlarmTarget::Device(w.dev.id), above(60.0, 0.0, 0, 0));
    let mut e = w.engine(vec![
        kept.clone(),
        changed.clone(),
        disabled.clone(),
        deleted.clone(),
    ]);
    assert_eq!(raises(&feed(&mut e, &w.dev, "flow_temp", 0, 95.0)), 4);
    let mut renamed = kept.clone();
    renamed.name = "renamed".into();
    renamed.severity = Severity::Critical;
    let mut stricter = changed.clone();
    stricter.condition = above(85.0, 0.0, 0, 0);
    let mut off = disabled.clone();
    off.enabled = false;
    let t = e.set_rules(vec![renamed.clone(), stricter, off], at(5));
    let mut cleared: Vec<AlarmRuleId> = t
        .iter()
        .filter(|t| !t.is_raise())
        .map(Transition::rule)
        .collect();
    cleared.sort();
    let mut want = vec![changed.id, disabled.id, deleted.id];
    want.sort();
    assert_eq!(cleared, want);
    assert_eq!(raises(&t), 0);
    assert!(e.is_raised(kept.id, w.dev.id));
    assert_eq!(e.rule(kept.id).map(|r| r.name.as_str()), Some("renamed"));
    // The changed rule starts afresh: raised again by the next reading.
    let t = feed(&mut e, &w.dev, "flow_temp", 6, 95.0);
    assert_eq!(
        t.iter().map(Transition::rule).collect::<Vec<_>>(),
        vec![changed.id]
    );
}

#[test]
fn a_device_leaving_the_target_clears_its_alarms() {
    let w = world();
    let rule = w.rule(AlarmTarget::Area(w.root.id), above(90.0, 0.0, 0, 0));
    let mut e = w.engine(vec![rule.clone()]);
    assert_eq!(raises(&feed(&mut e, &w.dev, "flow_temp", 0, 95.0)), 1);
    let mut moved = w.dev.clone();
    moved.area_id = None;
    let t = e.set_devices(
        DeviceIndex::new(&[moved, w.dev2.clone()], &[w.root.clone(), w.child.clone()]),
        at(1),
    );
    assert_eq!(clears(&t), 1);
    assert!(feed(&mut e, &w.dev, "flow_temp", 2, 95.0).is_empty());
}
