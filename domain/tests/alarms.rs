//! Use-case tier for alarms: who may manage rules, who may see and
//! acknowledge which alarms, what raising and clearing store, publish and
//! notify, and that another tenant sees nothing of it.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use hearth_domain::model::{
    AlarmCondition, AlarmNotice, AlarmRule, AlarmState, AlarmTarget, AlarmTransition,
    NotificationSettings, Role, Severity, ThresholdDirection, WebhookSecret,
};
use hearth_domain::ports::AlarmNotifier;
use hearth_domain::services::{
    AlarmAdapters, AlarmQuery, AlarmRuleInput, AlarmService, AuditQuery, LiveUpdate,
    NotificationInput, WebhookInput,
};
use hearth_domain::{DomainError, PointKey};
use hearth_inproc::alarms::{MemoryAlarmRules, MemoryAlarms};
use parking_lot::Mutex;
use support::{world, World};

/// Keeps every notice it is handed.
#[derive(Default)]
struct Recorder(Mutex<Vec<(AlarmNotice, NotificationSettings)>>);

impl AlarmNotifier for Recorder {
    fn submit(&self, notice: AlarmNotice, settings: &NotificationSettings) {
        self.0.lock().push((notice, settings.clone()));
    }
}

async fn setup() -> (World, AlarmService, Arc<Recorder>) {
    let w = world().await;
    let notices = Arc::new(Recorder::default());
    let alarms = w.services.alarm_service(AlarmAdapters {
        rules: Arc::new(MemoryAlarmRules::new()),
        alarms: Arc::new(MemoryAlarms::new()),
        notifier: notices.clone(),
    });
    (w, alarms, notices)
}

fn input(name: &str, target: AlarmTarget) -> AlarmRuleInput {
    AlarmRuleInput {
        id: None,
        expected_version: None,
        name: name.into(),
        enabled: true,
        severity: Severity::Major,
        target,
        condition: AlarmCondition::Threshold {
            point: PointKey::new("outdoor").unwrap(),
            direction: ThresholdDirection::Above,
            limit: 30.0,
            hysteresis: 1.0,
            on_delay: Duration::ZERO,
            off_delay: Duration::ZERO,
        },
        schedule: None,
        notifications: NotificationInput {
            webhook: Some(WebhookInput {
                url: "https://hooks.acme.test/a".into(),
                secret: Some(WebhookSecret::new("0123456789abcdef").unwrap()),
            }),
            ..NotificationInput::default()
        },
    }
}

async fn a_rule(w: &World, alarms: &AlarmService) -> AlarmRule {
    alarms
        .put_alarm_rule(
            &w.acme.member(Role::Admin),
            input("Too warm", AlarmTarget::Tenant),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn rules_are_managed_by_admin_and_unscoped_full_only() {
    let (w, alarms, _) = setup().await;
    // Given a rule put by acme's Admin
    let admin = w.acme.member(Role::Admin);
    let rule = a_rule(&w, &alarms).await;
    assert_eq!(rule.version, 1);
    // Then Full (all devices) may list and change it
    let full = w.acme.member(Role::Full);
    assert_eq!(alarms.alarm_rules(&full).await.unwrap(), vec![rule.clone()]);
    let mut change = input(
        "Too warm (full)",
        AlarmTarget::Device(w.acme.south_device.id),
    );
    change.id = Some(rule.id);
    change.expected_version = Some(1);
    // The secret left out keeps the stored one.
    change.notifications.webhook = Some(WebhookInput {
        url: "https://hooks.acme.test/b".into(),
        secret: None,
    });
    let v2 = alarms.put_alarm_rule(&full, change.clone()).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        v2.notifications.webhook.as_ref().map(|h| h.secret.expose()),
        Some("0123456789abcdef")
    );
    // And a stale version is a conflict
    let stale = alarms.put_alarm_rule(&admin, change.clone()).await;
    assert!(matches!(stale, Err(DomainError::Conflict(_))), "{stale:?}");
    // But Limited, Basic, Read-only and a Full scoped to one area may not
    for who in [
        w.acme.member(Role::Limited),
        w.acme.member(Role::Basic),
        w.acme.member(Role::ReadOnly),
        w.acme_north_full.clone(),
    ] {
        let put = alarms
            .put_alarm_rule(&who, input("nope", AlarmTarget::Tenant))
            .await;
        assert!(
            matches!(put, Err(DomainError::Forbidden(_))),
            "{:?}: {put:?}",
            who.role
        );
        assert!(matches!(
            alarms.delete_alarm_rule(&who, rule.id).await,
            Err(DomainError::Forbidden(_))
        ));
        assert!(matches!(
            alarms.alarm_rules(&who).await,
            Err(DomainError::Forbidden(_))
        ));
    }
    // And the change is audited with before and after, without the secret
    let log = w
        .services
        .control
        .audit_log(
            &admin,
            AuditQuery {
                first: 100,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    let puts: Vec<_> = log
        .entries
        .iter()
        .map(|r| &r.entry)
        .filter(|e| e.action == "put_alarm_rule")
        .collect();
    assert_eq!(puts.len(), 2);
    let update = puts.iter().find(|e| e.actor == full.user_id).unwrap();
    assert!(update.detail.contains("before: rule"), "{}", update.detail);
    assert!(
        update.detail.contains("Too warm (full)"),
        "{}",
        update.detail
    );
    assert!(!update.detail.contains("0123456789abcdef"));
    // And delete works once
    assert!(alarms.delete_alarm_rule(&admin, rule.id).await.unwrap());
    assert!(matches!(
        alarms.delete_alarm_rule(&admin, rule.id).await,
        Err(DomainError::NotFound(_))
    ));
}

#[tokio::test]
async fn targets_and_rules_of_another_tenant_are_unknown() {
    let (w, alarms, _) = setup().await;
    let admin = w.acme.member(Role::Admin);
    let rule = a_rule(&w, &alarms).await;
    // Given globex's admin
    let other = w.globex.member(Role::Admin);
    // Then acme's rule is invisible, not replaceable, not deletable
    assert!(alarms.alarm_rules(&other).await.unwrap().is_empty());
    let mut hijack = input("mine now", AlarmTarget::Tenant);
    hijack.id = Some(rule.id);
    hijack.expected_version = Some(1);
    assert!(matches!(
        alarms.put_alarm_rule(&other, hijack).await,
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        alarms.delete_alarm_rule(&other, rule.id).await,
        Err(DomainError::NotFound(_))
    ));
    assert_eq!(alarms.alarm_rules(&admin).await.unwrap(), vec![rule]);
    // And acme's devices and areas are no targets for globex
    for target in [
        AlarmTarget::Device(w.acme.north_device.id),
        AlarmTarget::Area(w.acme.north.id),
    ] {
        let put = alarms.put_alarm_rule(&other, input("x", target)).await;
        assert!(matches!(put, Err(DomainError::InvalidInput(_))), "{put:?}");
    }
}

#[tokio::test]
async fn raising_stores_publishes_and_notifies_once() {
    let (w, alarms, notices) = setup().await;
    let rule = a_rule(&w, &alarms).await;
    let basic = w.acme.member(Role::Basic);
    let mut events = w.services.live.subscribe_live(&basic, &[]).await.unwrap();
    let changes = alarms.rule_changes();
    let device = w.acme.north_device.id;
    let point = Some(PointKey::new("outdoor").unwrap());
    // When the evaluator raises twice for the same (rule, device, point)
    let first = alarms
        .raise(
            &rule,
            device,
            point.clone(),
            Some(31.5),
            Utc::now(),
            "outdoor above 30".into(),
        )
        .await
        .unwrap();
    let second = alarms
        .raise(
            &rule,
            device,
            point.clone(),
            Some(32.0),
            Utc::now(),
            "again".into(),
        )
        .await
        .unwrap();
    // Then the second returns the active alarm, and one notice went out
    assert_eq!(first.id, second.id);
    assert_eq!(first.state, AlarmState::Raised);
    {
        let sent = notices.0.lock();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.transition, AlarmTransition::Raised);
        assert_eq!(sent[0].0.device_name, w.acme.north_device.name);
        assert_eq!(sent[0].1, rule.notifications);
    }
    // And the live stream carries the raise
    let update = events.next().await.unwrap();
    assert!(
        matches!(&update, LiveUpdate::Alarm(e) if e.alarm.id == first.id && e.transition == AlarmTransition::Raised),
        "{update:?}"
    );
    // When cleared, Then stored, published and notified
    let cleared = alarms
        .clear(rule.tenant_id, first.id, Utc::now(), Some(20.0))
        .await
        .unwrap();
    assert_eq!(cleared.state, AlarmState::Cleared);
    assert!(matches!(
        alarms
            .clear(rule.tenant_id, first.id, Utc::now(), None)
            .await,
        Err(DomainError::Conflict(_))
    ));
    assert_eq!(notices.0.lock().len(), 2);
    let update = events.next().await.unwrap();
    assert!(matches!(&update, LiveUpdate::Alarm(e) if e.transition == AlarmTransition::Cleared));
    // And raised again later it is a new alarm
    let again = alarms
        .raise(&rule, device, point, None, Utc::now(), "again".into())
        .await
        .unwrap();
    assert_ne!(again.id, first.id);
    assert_eq!(alarms.active_alarms().await.unwrap().len(), 1);
    // And rule changes were counted (one put before the receiver existed)
    assert_eq!(*changes.borrow(), 1);
    // And a device of another tenant cannot be raised on with acme's rule
    assert!(matches!(
        alarms
            .raise(
                &rule,
                w.globex.north_device.id,
                None,
                None,
                Utc::now(),
                "x".into()
            )
            .await,
        Err(DomainError::NotFound(_))
    ));
}

#[tokio::test]
async fn acknowledging_needs_a_role_above_read_only_and_the_device_in_scope() {
    let (w, alarms, notices) = setup().await;
    let rule = a_rule(&w, &alarms).await;
    let south = alarms
        .raise(
            &rule,
            w.acme.south_device.id,
            None,
            None,
            Utc::now(),
            "offline".into(),
        )
        .await
        .unwrap();
    let north = alarms
        .raise(
            &rule,
            w.acme.north_sub_device.id,
            None,
            None,
            Utc::now(),
            "offline".into(),
        )
        .await
        .unwrap();
    // Read-only may see it but not acknowledge it
    let read_only = w.acme.member(Role::ReadOnly);
    let listed = alarms
        .alarms(
            &read_only,
            AlarmQuery {
                limit: 10,
                ..AlarmQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 2);
    assert!(matches!(
        alarms.acknowledge_alarm(&read_only, south.id, "seen").await,
        Err(DomainError::Forbidden(_))
    ));
    // A comment over 500 characters is refused
    let basic = w.acme.member(Role::Basic);
    assert!(matches!(
        alarms
            .acknowledge_alarm(&basic, south.id, &"x".repeat(501))
            .await,
        Err(DomainError::InvalidInput(_))
    ));
    // Basic may acknowledge, once
    let acked = alarms
        .acknowledge_alarm(&basic, south.id, "technician called")
        .await
        .unwrap();
    assert_eq!(acked.state, AlarmState::Acknowledged);
    let ack = acked.acknowledgement.clone().unwrap();
    assert_eq!(
        (ack.by, ack.comment.as_str()),
        (basic.user_id, "technician called")
    );
    assert!(matches!(
        alarms.acknowledge_alarm(&basic, south.id, "again").await,
        Err(DomainError::Conflict(_))
    ));
    assert_eq!(
        notices.0.lock().last().map(|n| n.0.transition),
        Some(AlarmTransition::Acknowledged)
    );
    // A Full scoped to `north` sees only north's alarm; south's is unknown
    let scoped = &w.acme_north_full;
    let listed = alarms
        .alarms(
            scoped,
            AlarmQuery {
                limit: 10,
                ..AlarmQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        listed.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![north.id]
    );
    assert!(matches!(
        alarms.acknowledge_alarm(scoped, south.id, "x").await,
        Err(DomainError::NotFound(_))
    ));
    let by_device = alarms
        .alarms(
            scoped,
            AlarmQuery {
                device: Some(w.acme.south_device.id),
                limit: 10,
                ..AlarmQuery::default()
            },
        )
        .await;
    assert!(matches!(by_device, Err(DomainError::NotFound(_))));
    // An area filter covers the subtree
    let admin = w.acme.member(Role::Admin);
    let in_north = alarms
        .alarms(
            &admin,
            AlarmQuery {
                area: Some(w.acme.north.id),
                limit: 10,
                ..AlarmQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        in_north.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![north.id]
    );
    // And state filters apply
    let acked_only = alarms
        .alarms(
            &admin,
            AlarmQuery {
                states: Some(vec![AlarmState::Acknowledged]),
                limit: 10,
                ..AlarmQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        acked_only.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![south.id]
    );
    // Another tenant sees nothing and cannot acknowledge
    let other = w.globex.member(Role::Admin);
    let theirs = alarms
        .alarms(
            &other,
            AlarmQuery {
                limit: 10,
                ..AlarmQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(theirs.total, 0);
    assert!(matches!(
        alarms.acknowledge_alarm(&other, north.id, "x").await,
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        alarms
            .alarms(
                &other,
                AlarmQuery {
                    device: Some(w.acme.north_device.id),
                    limit: 10,
                    ..AlarmQuery::default()
                }
            )
            .await,
        Err(DomainError::NotFound(_))
    ));
}
