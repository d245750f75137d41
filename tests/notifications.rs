//! `notificationFailures` end to end: dead letters written to the demo's
//! SQLite store (as the notifier would) are listed to the tenant's Admin
//! only, newest first, paged, and never to another tenant.

use anyhow::Context as _;
use chrono::Utc;
use hearth_domain::model::{AlarmTransition, NotificationChannel, NotificationFailure};
use hearth_domain::ports::NotificationFailureLog;
use hearth_domain::{AlarmId, AlarmRuleId, TenantId};
use hearth_tests::{error_code, Client, DemoServer};
use serde_json::{json, Value};

const LIST: &str = "query($first: Int, $after: String) {
  notificationFailures(first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage }
    edges { cursor node { ruleName channel transition target attempts error failedAt } }
  }
}";

async fn tenant_id(client: &Client) -> anyhow::Result<TenantId> {
    let me = client.data("{ me { tenant { id } } }", json!({})).await?;
    let id = me["me"]["tenant"]["id"].as_str().context("tenant id")?;
    Ok(TenantId::from_uuid(id.parse()?))
}

fn failure(tenant: TenantId, rule_name: &str, channel: NotificationChannel) -> NotificationFailure {
    NotificationFailure {
        tenant_id: tenant,
        alarm_id: AlarmId::new(),
        rule_id: AlarmRuleId::new(),
        rule_name: rule_name.into(),
        transition: AlarmTransition::Raised,
        channel,
        target: "ops@example.com".into(),
        attempts: 4,
        error: "SMTP: connection refused".into(),
        failed_at: Utc::now(),
    }
}

fn names(page: &Value) -> Vec<String> {
    page["notificationFailures"]["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .filter_map(|e| e["node"]["ruleName"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn admins_see_their_own_tenants_dead_letters_and_no_one_else_does() -> anyhow::Result<()> {
    // Given the demo, and dead letters of acme and globex in its relational store
    let server = DemoServer::start().await?;
    let acme_admin = server.login("admin@acme.test").await?;
    let globex_admin = server.login("admin@globex.test").await?;
    let (acme, globex) = (
        tenant_id(&acme_admin).await?,
        tenant_id(&globex_admin).await?,
    );
    let log = hearth_sql::SqlDirectory::sqlite_in(server.data_dir.path()).await?;
    for name in ["acme 1", "acme 2", "acme 3"] {
        log.record(failure(acme, name, NotificationChannel::Email))
            .await?;
    }
    log.record(failure(globex, "globex 1", NotificationChannel::Webhook))
        .await?;

    // When acme's Admin lists them two at a time
    let first = acme_admin.data(LIST, json!({ "first": 2 })).await?;
    // Then they come newest first, with the total and a next page
    assert_eq!(names(&first), ["acme 3", "acme 2"]);
    assert_eq!(first["notificationFailures"]["totalCount"], 3);
    assert_eq!(
        first["notificationFailures"]["pageInfo"]["hasNextPage"],
        true
    );
    let node = &first["notificationFailures"]["edges"][0]["node"];
    assert_eq!(node["channel"], "EMAIL");
    assert_eq!(node["transition"], "RAISED");
    assert_eq!(node["attempts"], 4);
    assert_eq!(node["target"], "ops@example.com");
    let cursor = first["notificationFailures"]["edges"][1]["cursor"].clone();
    let rest = acme_admin
        .data(LIST, json!({ "first": 2, "after": cursor }))
        .await?;
    assert_eq!(names(&rest), ["acme 1"]);
    assert_eq!(
        rest["notificationFailures"]["pageInfo"]["hasNextPage"],
        false
    );

    // And globex's Admin sees only globex's
    let other = globex_admin.data(LIST, json!({})).await?;
    assert_eq!(names(&other), ["globex 1"]);
    assert_eq!(other["notificationFailures"]["totalCount"], 1);
    assert_eq!(
        other["notificationFailures"]["edges"][0]["node"]["channel"],
        "WEBHOOK"
    );

    // And every other role of acme is refused, as is an anonymous caller
    for email in [
        "full@acme.test",
        "limited@acme.test",
        "basic@acme.test",
        "readonly@acme.test",
    ] {
        let res = server.login(email).await?.gql(LIST, json!({})).await?;
        assert_eq!(
            error_code(&res).as_deref(),
            Some("FORBIDDEN"),
            "{email}: {res}"
        );
        assert!(res["data"].is_null() || res["data"]["notificationFailures"].is_null());
    }
    let res = server.client().gql(LIST, json!({})).await?;
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );

    // And a page size out of range is the caller's mistake
    let res = acme_admin.gql(LIST, json!({ "first": 0 })).await?;
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{res}");
    Ok(())
}
