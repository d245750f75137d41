//! Contract suite for [`AlarmStore`]: one active alarm per (rule, device,
//! point), the acknowledge and clear transitions with their errors, paging
//! newest first, filters, tenant isolation and `active_alarms`.
//!
//! Details the implementations agree on beyond the trait's words:
//! - listings order by `raised_at` descending, then by id descending;
//! - a point of `None` is a key of its own: (rule, device, None) and
//!   (rule, device, Some(p)) may both be active;
//! - `devices: Some(vec![])` matches nothing;
//! - timestamps are kept to the millisecond at least (fixtures use whole ms).

use chrono::{DateTime, TimeZone, Utc};

use crate::error::StoreError;
use crate::ids::{AlarmId, AlarmRuleId, DeviceId, PointKey, TenantId, UserId};
use crate::model::{Acknowledgement, Alarm, AlarmState, Severity};
use crate::ports::{AlarmFilter, AlarmStore};

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_780_000_000_000 + ms)
        .single()
        .expect("contract timestamps are valid")
}

/// A raised alarm with every field set.
pub fn raised(
    tenant: TenantId,
    rule: AlarmRuleId,
    device: DeviceId,
    point: Option<&str>,
    raised_ms: i64,
) -> Alarm {
    Alarm {
        id: AlarmId::new(),
        tenant_id: tenant,
        rule_id: rule,
        rule_name: "Flow too hot".into(),
        severity: Severity::Major,
        device_id: device,
        point: point.map(|p| PointKey::new(p).expect("contract point keys are valid")),
        state: AlarmState::Raised,
        message: "flow_temp above 90 for 60 s".into(),
        value: Some(91.25),
        raised_at: at(raised_ms),
        acknowledgement: None,
        cleared_at: None,
    }
}

fn ack(comment: &str, ms: i64) -> Acknowledgement {
    Acknowledgement {
        by: UserId::new(),
        at: at(ms),
        comment: comment.into(),
    }
}

fn conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict(_)))
}

fn not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::NotFound(_)))
}

async fn ids(store: &dyn AlarmStore, tenant: TenantId, filter: &AlarmFilter) -> Vec<AlarmId> {
    store
        .alarms(tenant, filter, 0, 1_000)
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.id)
        .collect()
}

/// Checks every promise of [`AlarmStore`] against an empty store.
pub async fn alarms_contract(store: &dyn AlarmStore) {
    let tenant_a = TenantId::new();
    let tenant_b = TenantId::new();
    let rule = AlarmRuleId::new();
    let device = DeviceId::new();
    let other_device = DeviceId::new();
    let all = AlarmFilter::default();

    let empty = store.alarms(tenant_a, &all, 0, 10).await.unwrap();
    assert!(empty.items.is_empty() && empty.total == 0);
    assert!(store.active_alarms().await.unwrap().is_empty());

    // Round trip.
    let first = raised(tenant_a, rule, device, Some("flow_temp"), 0);
    store.insert_alarm(&first).await.unwrap();
    assert_eq!(
        store.alarm(tenant_a, first.id).await.unwrap().as_ref(),
        Some(&first),
        "a stored alarm must come back field for field"
    );
    let mut pointless = raised(tenant_a, rule, device, None, 1);
    pointless.value = None;
    pointless.severity = Severity::Critical;
    store.insert_alarm(&pointless).await.unwrap();
    assert_eq!(
        store.alarm(tenant_a, pointless.id).await.unwrap().as_ref(),
        Some(&pointless),
        "an alarm without point or value round-trips"
    );

    // One active alarm per (rule, device, point).
    let twin = raised(tenant_a, rule, device, Some("flow_temp"), 2);
    assert!(
        conflict(store.insert_alarm(&twin).await),
        "a second active alarm of the same (rule, device, point) must be Conflict"
    );
    assert_eq!(store.alarm(tenant_a, twin.id).await.unwrap(), None);
    let pointless_twin = raised(tenant_a, rule, device, None, 2);
    assert!(
        conflict(store.insert_alarm(&pointless_twin).await),
        "(rule, device, no point) is unique among active alarms too"
    );
    let elsewhere = raised(tenant_a, rule, other_device, Some("flow_temp"), 3);
    store.insert_alarm(&elsewhere).await.unwrap();
    let other_point = raised(tenant_a, rule, device, Some("return_temp"), 4);
    store.insert_alarm(&other_point).await.unwrap();

    // Acknowledge.
    let by_anna = ack("Valve checked, technician called", 10);
    let acked = store
        .acknowledge_alarm(tenant_a, first.id, &by_anna)
        .await
        .unwrap();
    let mut expected = first.clone();
    expected.state = AlarmState::Acknowledged;
    expected.acknowledgement = Some(by_anna.clone());
    assert_eq!(
        acked, expected,
        "acknowledge returns the acknowledged alarm"
    );
    assert_eq!(
        store.alarm(tenant_a, first.id).await.unwrap().as_ref(),
        Some(&expected)
    );
    assert!(
        conflict(
            store
                .acknowledge_alarm(tenant_a, first.id, &ack("again", 11))
                .await
        ),
        "acknowledging twice must be Conflict"
    );
    assert_eq!(
        store.alarm(tenant_a, first.id).await.unwrap().as_ref(),
        Some(&expected),
        "the first acknowledgement is kept"
    );
    assert!(
        not_found(
            store
                .acknowledge_alarm(tenant_a, AlarmId::new(), &ack("x", 12))
                .await
        ),
        "acknowledging a missing alarm must be NotFound"
    );
    assert!(
        not_found(
            store
                .acknowledge_alarm(tenant_b, elsewhere.id, &ack("x", 12))
                .await
        ),
        "acknowledging another tenant's alarm must be NotFound"
    );
    // Still active while acknowledged: no second raise.
    assert!(conflict(store.insert_alarm(&twin).await));

    // Clear.
    assert!(
        not_found(store.clear_alarm(tenant_b, first.id, at(20)).await),
        "clearing another tenant's alarm must be NotFound"
    );
    assert!(not_found(
        store.clear_alarm(tenant_a, AlarmId::new(), at(20)).await
    ));
    let cleared = store.clear_alarm(tenant_a, first.id, at(20)).await.unwrap();
    let mut expected_cleared = expected.clone();
    expected_cleared.state = AlarmState::Cleared;
    expected_cleared.cleared_at = Some(at(20));
    assert_eq!(
        cleared, expected_cleared,
        "clear keeps the acknowledgement and sets cleared_at"
    );
    assert_eq!(
        store.alarm(tenant_a, first.id).await.unwrap().as_ref(),
        Some(&expected_cleared)
    );
    assert!(
        conflict(store.clear_alarm(tenant_a, first.id, at(21)).await),
        "clearing twice must be Conflict"
    );
    assert!(
        conflict(
            store
                .acknowledge_alarm(tenant_a, first.id, &ack("late", 22))
                .await
        ),
        "acknowledging a cleared alarm must be Conflict"
    );
    let plain_clear = store
        .clear_alarm(tenant_a, elsewhere.id, at(23))
        .await
        .unwrap();
    assert_eq!(plain_clear.state, AlarmState::Cleared);
    assert_eq!(plain_clear.acknowledgement, None);

    // Raised again after clearing: a new alarm.
    let again = raised(tenant_a, rule, device, Some("flow_temp"), 30);
    store.insert_alarm(&again).await.unwrap();

    // Another tenant's alarms, same rule/device ids even: independent.
    let b_alarm = raised(tenant_b, rule, device, Some("flow_temp"), 40);
    store.insert_alarm(&b_alarm).await.unwrap();
    assert_eq!(store.alarm(tenant_a, b_alarm.id).await.unwrap(), None);
    assert_eq!(store.alarm(tenant_b, again.id).await.unwrap(), None);
    assert_eq!(ids(store, tenant_b, &all).await, vec![b_alarm.id]);

    // Paging newest first, with a total.
    let newest_first = vec![
        again.id,
        other_point.id,
        elsewhere.id,
        pointless.id,
        first.id,
    ];
    assert_eq!(
        ids(store, tenant_a, &all).await,
        newest_first,
        "alarms are listed newest first"
    );
    let page = store.alarms(tenant_a, &all, 1, 2).await.unwrap();
    assert_eq!(page.total, 5, "total counts every match, not the page");
    assert_eq!(
        page.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        newest_first[1..3].to_vec()
    );
    let past_end = store.alarms(tenant_a, &all, 10, 2).await.unwrap();
    assert!(past_end.items.is_empty() && past_end.total == 5);

    // Equal raised_at: by id, descending.
    let tenant_c = TenantId::new();
    let x = raised(tenant_c, rule, device, Some("a"), 50);
    let y = raised(tenant_c, rule, device, Some("b"), 50);
    store.insert_alarm(&x).await.unwrap();
    store.insert_alarm(&y).await.unwrap();
    let mut tied = vec![x.id, y.id];
    tied.sort();
    tied.reverse();
    assert_eq!(ids(store, tenant_c, &all).await, tied);

    // Filters.
    let active = AlarmFilter {
        states: Some(vec![AlarmState::Raised, AlarmState::Acknowledged]),
        ..AlarmFilter::default()
    };
    assert_eq!(
        ids(store, tenant_a, &active).await,
        vec![again.id, other_point.id, pointless.id]
    );
    let cleared_only = AlarmFilter {
        states: Some(vec![AlarmState::Cleared]),
        ..AlarmFilter::default()
    };
    assert_eq!(
        ids(store, tenant_a, &cleared_only).await,
        vec![elsewhere.id, first.id]
    );
    let critical = AlarmFilter {
        severities: Some(vec![Severity::Critical]),
        ..AlarmFilter::default()
    };
    assert_eq!(ids(store, tenant_a, &critical).await, vec![pointless.id]);
    let on_other = AlarmFilter {
        devices: Some(vec![other_device]),
        ..AlarmFilter::default()
    };
    assert_eq!(ids(store, tenant_a, &on_other).await, vec![elsewhere.id]);
    let nowhere = AlarmFilter {
        devices: Some(Vec::new()),
        ..AlarmFilter::default()
    };
    let none = store.alarms(tenant_a, &nowhere, 0, 10).await.unwrap();
    assert!(
        none.items.is_empty() && none.total == 0,
        "an empty device list matches nothing"
    );
    let window = AlarmFilter {
        from: Some(at(1)),
        to: Some(at(4)),
        ..AlarmFilter::default()
    };
    assert_eq!(
        ids(store, tenant_a, &window).await,
        vec![elsewhere.id, pointless.id],
        "from is inclusive, to exclusive"
    );
    let combined = AlarmFilter {
        states: Some(vec![AlarmState::Raised]),
        severities: Some(vec![Severity::Major]),
        devices: Some(vec![device, other_device]),
        from: Some(at(4)),
        to: None,
    };
    let page = store.alarms(tenant_a, &combined, 0, 1).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(
        page.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![again.id]
    );

    // Active alarms of every tenant.
    let mut active_all: Vec<AlarmId> = store
        .active_alarms()
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    active_all.sort();
    let mut wanted = vec![
        again.id,
        other_point.id,
        pointless.id,
        b_alarm.id,
        x.id,
        y.id,
    ];
    wanted.sort();
    assert_eq!(
        active_all, wanted,
        "active_alarms returns every tenant's raised and acknowledged alarms"
    );
}
