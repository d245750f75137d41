//! Contract of [`NotificationFailureLog`]: per-tenant, newest first, paged by `seq`.

use chrono::{TimeZone, Utc};

use crate::ids::{AlarmId, AlarmRuleId, TenantId};
use crate::model::{AlarmTransition, NotificationChannel, NotificationFailure};
use crate::ports::NotificationFailureLog;

fn failure(tenant: TenantId, n: u32) -> NotificationFailure {
    NotificationFailure {
        tenant_id: tenant,
        alarm_id: AlarmId::new(),
        rule_id: AlarmRuleId::new(),
        rule_name: format!("Rule ø {n}"),
        transition: if n.is_multiple_of(2) {
            AlarmTransition::Raised
        } else {
            AlarmTransition::Cleared
        },
        channel: NotificationChannel::Email,
        target: format!("r{n}@example.com"),
        attempts: n,
        error: format!("connection refused ({n})"),
        failed_at: Utc.timestamp_opt(1_700_000_000 + i64::from(n), 0).unwrap(),
    }
}

/// Runs the suite against a fresh, empty log.
pub async fn run(log: &impl NotificationFailureLog) {
    let (a, b) = (TenantId::new(), TenantId::new());
    let empty = log.list_failures(a, 10, None).await.unwrap();
    assert!(empty.items.is_empty(), "a fresh log lists nothing");
    assert_eq!(empty.total, 0);

    for n in 0..5 {
        log.record(failure(a, n)).await.unwrap();
    }
    let mut webhook = failure(b, 9);
    webhook.channel = NotificationChannel::Webhook;
    webhook.target = "https://hooks.example.com/h".into();
    log.record(webhook.clone()).await.unwrap();

    let first = log.list_failures(a, 2, None).await.unwrap();
    assert_eq!(first.total, 5, "total counts the tenant's failures only");
    let names: Vec<_> = first
        .items
        .iter()
        .map(|r| r.failure.rule_name.as_str())
        .collect();
    assert_eq!(names, ["Rule ø 4", "Rule ø 3"], "newest first");
    assert!(first.items[0].seq > first.items[1].seq);
    assert_eq!(
        first.items[0].failure,
        failure_like(&first.items[0].failure, a, 4)
    );

    let rest = log
        .list_failures(a, 10, Some(first.items[1].seq))
        .await
        .unwrap();
    let names: Vec<_> = rest
        .items
        .iter()
        .map(|r| r.failure.rule_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["Rule ø 2", "Rule ø 1", "Rule ø 0"],
        "after a cursor"
    );
    assert_eq!(rest.total, 5);

    let other = log.list_failures(b, 10, None).await.unwrap();
    assert_eq!(
        other.items.len(),
        1,
        "tenants never see each other's failures"
    );
    assert_eq!(other.items[0].failure, webhook);
    assert!(
        other.items[0].seq > first.items[0].seq,
        "seq grows across tenants"
    );
    let none = log.list_failures(TenantId::new(), 10, None).await.unwrap();
    assert!(none.items.is_empty());
    assert_eq!(none.total, 0);
}

/// The stored failure must round-trip every field: rebuild the expected one
/// with the ids the store returned (they were random at record time).
fn failure_like(got: &NotificationFailure, tenant: TenantId, n: u32) -> NotificationFailure {
    NotificationFailure {
        alarm_id: got.alarm_id,
        rule_id: got.rule_id,
        ..failure(tenant, n)
    }
}
