//! The shared port contracts, run against the embedded redb stores.

use hearth_domain::contract::documents::documents_contract;
use hearth_domain::contract::readings::readings_contract;
use hearth_embedded::{EmbeddedDocuments, EmbeddedReadings};

#[tokio::test]
async fn embedded_documents_pass_the_documents_contract() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store = EmbeddedDocuments::open(dir.path()).expect("open documents.redb");
    documents_contract(&store).await;
}

#[tokio::test]
async fn embedded_readings_pass_the_readings_contract() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store = EmbeddedReadings::open(dir.path()).expect("open readings.redb");
    readings_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_readings_pass_the_readings_contract_on_a_multi_threaded_runtime() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store = EmbeddedReadings::open(dir.path()).expect("open readings.redb");
    readings_contract(&store).await;
}

#[tokio::test]
async fn embedded_alarm_rules_pass_the_alarm_rules_contract() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store =
        hearth_embedded::EmbeddedAlarmRules::open(dir.path()).expect("open alarm_rules.redb");
    hearth_domain::contract::alarm_rules::alarm_rules_contract(&store).await;
}

#[tokio::test]
async fn embedded_alarm_rules_survive_a_reopen() {
    use hearth_domain::ports::AlarmRuleStore;
    // Given a rule stored, and the store closed
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let tenant = hearth_domain::TenantId::new();
    let rule = hearth_domain::contract::alarm_rules::full_rule(tenant, "Kept");
    {
        let store = hearth_embedded::EmbeddedAlarmRules::open(dir.path()).expect("open");
        store.put_alarm_rule(&rule, None).await.expect("put");
    }
    // When it is opened again, Then the rule is there field for field
    let store = hearth_embedded::EmbeddedAlarmRules::open(dir.path()).expect("reopen");
    assert_eq!(
        store.alarm_rule(tenant, rule.id).await.expect("read"),
        Some(rule)
    );
}
