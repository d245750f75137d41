//! Contract suite for [`AlarmRuleStore`]: round trips of every condition
//! kind and every optional part, optimistic concurrency on `put`, ordering,
//! and tenant isolation (another tenant's rule behaves exactly as a missing
//! one: invisible, not replaceable, not deletable).
//!
//! Details the implementations agree on beyond the trait's words:
//! - `updated_at` is kept to the millisecond (the fixtures use whole
//!   milliseconds, as BSON dates hold no more);
//! - `alarm_rules` orders by id as the UUID's bytes order it, which is the
//!   order of the lowercase hyphenated text form too.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc, Weekday};

use crate::error::StoreError;
use crate::ids::{AlarmRuleId, AreaId, DeviceId, PointKey, TenantId};
use crate::model::{
    AlarmCondition, AlarmRule, AlarmTarget, EmailAddress, Language, NotificationSettings,
    Recipient, ScheduleWindow, Severity, ThresholdDirection, Webhook, WebhookSecret,
    WeeklySchedule,
};
use crate::ports::AlarmRuleStore;

fn key(value: &str) -> PointKey {
    PointKey::new(value).expect("contract point keys are valid")
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_780_000_000_000 + ms)
        .single()
        .expect("contract timestamps are valid")
}

/// A rule whose every field differs from its default, so a store that drops
/// or defaults a field fails the round trip.
pub fn full_rule(tenant: TenantId, name: &str) -> AlarmRule {
    AlarmRule {
        id: AlarmRuleId::new(),
        tenant_id: tenant,
        name: name.to_owned(),
        enabled: false,
        severity: Severity::Major,
        target: AlarmTarget::Area(AreaId::new()),
        condition: AlarmCondition::Threshold {
            point: key("flow_temp"),
            direction: ThresholdDirection::Below,
            limit: -12.25,
            hysteresis: 0.5,
            on_delay: Duration::from_secs(90),
            off_delay: Duration::from_millis(1_500),
        },
        schedule: Some(
            WeeklySchedule::new(
                "Europe/Copenhagen",
                vec![
                    ScheduleWindow {
                        day: Weekday::Tue,
                        start_minute: 360,
                        end_minute: 1_440,
                    },
                    ScheduleWindow {
                        day: Weekday::Sun,
                        start_minute: 0,
                        end_minute: 15,
                    },
                ],
            )
            .expect("contract schedule is valid"),
        ),
        notifications: NotificationSettings {
            recipients: vec![
                Recipient {
                    email: EmailAddress::new("ops@acme.test").expect("valid email"),
                    language: Language::Da,
                },
                Recipient {
                    email: EmailAddress::new("night@acme.test").expect("valid email"),
                    language: Language::De,
                },
            ],
            delay: Duration::from_secs(300),
            notify_on_clear: true,
            webhook: Some(
                Webhook::new(
                    "https://hooks.acme.test/hearth",
                    WebhookSecret::new("s3cr3t-s3cr3t-s3cr3t").expect("valid secret"),
                )
                .expect("valid webhook"),
            ),
        },
        version: 1,
        updated_at: at(7),
    }
}

/// A rule with every optional part left out.
fn bare_rule(tenant: TenantId, name: &str, condition: AlarmCondition) -> AlarmRule {
    AlarmRule {
        id: AlarmRuleId::new(),
        tenant_id: tenant,
        name: name.to_owned(),
        enabled: true,
        severity: Severity::Warning,
        target: AlarmTarget::Tenant,
        condition,
        schedule: None,
        notifications: NotificationSettings::default(),
        version: 1,
        updated_at: at(0),
    }
}

fn conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict(_)))
}

fn not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::NotFound(_)))
}

/// Checks every promise of [`AlarmRuleStore`] against an empty store.
pub async fn alarm_rules_contract(store: &dyn AlarmRuleStore) {
    let tenant_a = TenantId::new();
    let tenant_b = TenantId::new();

    // Empty store.
    assert!(store.alarm_rules(tenant_a).await.unwrap().is_empty());
    assert!(store.all_alarm_rules().await.unwrap().is_empty());

    // Round trip of a rule with every part set.
    let full = full_rule(tenant_a, "Flow too cold");
    store.put_alarm_rule(&full, None).await.unwrap();
    assert_eq!(
        store.alarm_rule(tenant_a, full.id).await.unwrap().as_ref(),
        Some(&full),
        "a stored rule must come back field for field"
    );

    // Round trip of every condition kind and every target kind, bare.
    let conditions = vec![
        AlarmCondition::Threshold {
            point: key("room"),
            direction: ThresholdDirection::Above,
            limit: 26.0,
            hysteresis: 0.0,
            on_delay: Duration::ZERO,
            off_delay: Duration::from_secs(5),
        },
        AlarmCondition::Offline {
            after: Duration::from_secs(600),
        },
        AlarmCondition::Stale {
            point: key("outdoor"),
            after: Duration::from_millis(90_250),
        },
        AlarmCondition::Consumption {
            point: key("heat_meter"),
            max_increase: 1_234.5,
            window_start_minute: 1_439,
        },
        AlarmCondition::RateOfChange {
            point: key("supply_temp"),
            max_change: 3.75,
            over: Duration::from_secs(120),
        },
    ];
    let targets = [
        AlarmTarget::Device(DeviceId::new()),
        AlarmTarget::Area(AreaId::new()),
        AlarmTarget::Tenant,
        AlarmTarget::Device(DeviceId::new()),
        AlarmTarget::Tenant,
    ];
    let mut bare = Vec::new();
    for (i, (condition, target)) in conditions.into_iter().zip(targets).enumerate() {
        let mut rule = bare_rule(tenant_a, &format!("kind {i}"), condition);
        rule.target = target;
        rule.severity = [
            Severity::Critical,
            Severity::Major,
            Severity::Minor,
            Severity::Warning,
        ][i % 4];
        store.put_alarm_rule(&rule, None).await.unwrap();
        assert_eq!(
            store.alarm_rule(tenant_a, rule.id).await.unwrap().as_ref(),
            Some(&rule),
            "condition kind {i} must round-trip"
        );
        bare.push(rule);
    }

    // Ordering by id.
    let mut expected: Vec<AlarmRuleId> = bare.iter().map(|r| r.id).collect();
    expected.push(full.id);
    expected.sort();
    let listed: Vec<AlarmRuleId> = store
        .alarm_rules(tenant_a)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, expected, "alarm_rules is ordered by id");

    // Creating an existing id is a conflict and changes nothing.
    let mut again = full.clone();
    again.name = "Replaced by a create".into();
    assert!(
        conflict(store.put_alarm_rule(&again, None).await),
        "put with expected None on an existing id must be Conflict"
    );
    assert_eq!(
        store.alarm_rule(tenant_a, full.id).await.unwrap().as_ref(),
        Some(&full)
    );

    // Updating at the right version replaces; at a stale one conflicts.
    let mut v2 = full.clone();
    v2.name = "Flow far too cold".into();
    v2.enabled = true;
    v2.schedule = None;
    v2.notifications.webhook = None;
    v2.version = 2;
    v2.updated_at = at(1_000);
    store.put_alarm_rule(&v2, Some(1)).await.unwrap();
    assert_eq!(
        store.alarm_rule(tenant_a, full.id).await.unwrap().as_ref(),
        Some(&v2),
        "an update replaces the whole rule (optional parts removed stay removed)"
    );
    let mut stale = v2.clone();
    stale.name = "Lost update".into();
    stale.version = 2;
    assert!(
        conflict(store.put_alarm_rule(&stale, Some(1)).await),
        "put naming an older version must be Conflict"
    );
    let mut ahead = v2.clone();
    ahead.version = 4;
    assert!(
        conflict(store.put_alarm_rule(&ahead, Some(3)).await),
        "put naming a newer version than stored must be Conflict"
    );
    assert_eq!(
        store.alarm_rule(tenant_a, full.id).await.unwrap().as_ref(),
        Some(&v2),
        "a refused update changes nothing"
    );

    // An update of a missing rule is NotFound.
    let mut ghost = bare_rule(
        tenant_a,
        "ghost",
        AlarmCondition::Offline {
            after: Duration::from_secs(60),
        },
    );
    ghost.version = 2;
    assert!(
        not_found(store.put_alarm_rule(&ghost, Some(1)).await),
        "put with Some(version) on a missing id must be NotFound"
    );
    assert_eq!(store.alarm_rule(tenant_a, ghost.id).await.unwrap(), None);

    // Tenant isolation.
    let b_rule = full_rule(tenant_b, "B's rule");
    store.put_alarm_rule(&b_rule, None).await.unwrap();
    assert_eq!(
        store.alarm_rule(tenant_a, b_rule.id).await.unwrap(),
        None,
        "another tenant's rule is invisible"
    );
    assert!(store
        .alarm_rules(tenant_a)
        .await
        .unwrap()
        .iter()
        .all(|r| r.tenant_id == tenant_a));
    assert_eq!(
        store
            .alarm_rules(tenant_b)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![b_rule.id]
    );
    let mut hijack = b_rule.clone();
    hijack.tenant_id = tenant_a;
    hijack.name = "Hijacked".into();
    hijack.version = 2;
    assert!(
        not_found(store.put_alarm_rule(&hijack, Some(1)).await),
        "updating another tenant's rule must be NotFound, as for a missing one"
    );
    hijack.version = 1;
    assert!(
        conflict(store.put_alarm_rule(&hijack, None).await),
        "creating with another tenant's id must be Conflict (ids are global)"
    );
    assert!(
        !store.delete_alarm_rule(tenant_a, b_rule.id).await.unwrap(),
        "deleting another tenant's rule reports false"
    );
    assert_eq!(
        store
            .alarm_rule(tenant_b, b_rule.id)
            .await
            .unwrap()
            .as_ref(),
        Some(&b_rule),
        "another tenant's attempts change nothing"
    );

    // all_alarm_rules spans tenants.
    let mut all: Vec<AlarmRuleId> = store
        .all_alarm_rules()
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    all.sort();
    let mut wanted = expected.clone();
    wanted.push(b_rule.id);
    wanted.sort();
    assert_eq!(all, wanted, "all_alarm_rules returns every tenant's rules");

    // Delete.
    assert!(store.delete_alarm_rule(tenant_a, full.id).await.unwrap());
    assert_eq!(store.alarm_rule(tenant_a, full.id).await.unwrap(), None);
    assert!(
        !store.delete_alarm_rule(tenant_a, full.id).await.unwrap(),
        "deleting twice reports false"
    );
    assert_eq!(store.alarm_rules(tenant_a).await.unwrap().len(), bare.len());
    // A deleted id may be created again (as a new rule at version 1).
    store.put_alarm_rule(&full, None).await.unwrap();
    assert_eq!(
        store.alarm_rule(tenant_a, full.id).await.unwrap().as_ref(),
        Some(&full)
    );
}
