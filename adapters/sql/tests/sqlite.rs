//! The directory contract and persistence against SQLite files.

use hearth_domain::contract::directory::directory_contract;
use hearth_domain::model::{Area, Tenant, TenantSlug};
use hearth_domain::ports::{AreaRepository, DeviceFilter, DeviceRepository, TenantRepository};
use hearth_domain::{AreaId, TenantId};
use hearth_sql::SqlDirectory;

#[tokio::test]
async fn sqlite_passes_the_directory_contract() {
    let dir = tempfile::tempdir().expect("a temp dir for the database");
    let store = SqlDirectory::sqlite_in(dir.path())
        .await
        .expect("SQLite opens and migrates");
    directory_contract(&store).await;
}

#[tokio::test]
async fn sqlite_url_with_awkward_path_characters_opens() {
    // Given a data directory whose name would confuse a URL parser
    let root = tempfile::tempdir().expect("a temp dir");
    let data = root.path().join("data 100% #1?");
    std::fs::create_dir_all(&data).expect("create the data dir");
    // When the directory is opened there, Then the file lands where asked
    let _store = SqlDirectory::sqlite_in(&data)
        .await
        .expect("SQLite opens in an awkward path");
    assert!(
        data.join("hearth.db").exists(),
        "hearth.db must be created inside the data dir"
    );
    // And it runs in WAL mode (the write-ahead log exists while it is open)
    assert!(
        data.join("hearth.db-wal").exists(),
        "SQLite must be opened in WAL mode"
    );
}

#[tokio::test]
async fn sqlite_keeps_data_across_reopen() {
    // Given a directory written to and dropped
    let dir = tempfile::tempdir().expect("a temp dir for the database");
    let tenant = Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new("acme").expect("valid slug"),
        name: "Acme".into(),
    };
    let area = Area {
        id: AreaId::new(),
        tenant_id: tenant.id,
        parent_id: None,
        name: "Site".into(),
    };
    {
        let store = SqlDirectory::sqlite_in(dir.path())
            .await
            .expect("first open");
        store.insert_tenant(&tenant).await.expect("insert tenant");
        store.insert_area(&area).await.expect("insert area");
    }

    // When it is reopened (migrations run again and must be a no-op)
    let store = SqlDirectory::sqlite_in(dir.path()).await.expect("reopen");

    // Then everything written is still there
    assert_eq!(
        store.tenant(tenant.id).await.expect("read tenant"),
        Some(tenant.clone())
    );
    assert_eq!(
        store.areas(tenant.id).await.expect("read areas"),
        vec![area]
    );
    let page = store
        .devices(tenant.id, &DeviceFilter::default(), 0, 10)
        .await
        .expect("list devices");
    assert_eq!(page.total, 0);
    // And the unique constraints survived the reopen
    assert!(matches!(
        store.insert_tenant(&tenant).await,
        Err(hearth_domain::StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn sqlite_passes_the_alarms_contract() {
    let dir = tempfile::tempdir().expect("a temp dir for the database");
    let store = SqlDirectory::sqlite_in(dir.path())
        .await
        .expect("SQLite opens and migrates");
    hearth_domain::contract::alarms::alarms_contract(&store).await;
}

#[tokio::test]
async fn sqlite_alarms_survive_a_reopen_and_stay_unique_while_active() {
    use hearth_domain::ports::AlarmStore;
    // Given an active alarm stored, and the database closed
    let dir = tempfile::tempdir().expect("a temp dir for the database");
    let tenant = TenantId::new();
    let alarm = hearth_domain::contract::alarms::raised(
        tenant,
        hearth_domain::AlarmRuleId::new(),
        hearth_domain::DeviceId::new(),
        Some("flow"),
        0,
    );
    {
        let store = SqlDirectory::sqlite_in(dir.path()).await.expect("open");
        store.insert_alarm(&alarm).await.expect("insert");
    }
    // When it is opened again
    let store = SqlDirectory::sqlite_in(dir.path()).await.expect("reopen");
    // Then the alarm is active and a second raise is still refused
    assert_eq!(
        store.active_alarms().await.expect("read"),
        vec![alarm.clone()]
    );
    let mut twin = alarm.clone();
    twin.id = hearth_domain::AlarmId::new();
    assert!(matches!(
        store.insert_alarm(&twin).await,
        Err(hearth_domain::StoreError::Conflict(_))
    ));
}
