//! Given data written to the embedded stores, when the stores are dropped and
//! reopened from the same directory, then everything reads back.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, TimeZone, Utc};
use hearth_domain::model::{
    Aggregate, DeviceProfile, FieldAddress, HistoryQuery, PointDefinition, Quality, Reading,
    WriteLevel,
};
use hearth_domain::ports::{DocumentStore, ReadingStore};
use hearth_domain::{DeviceId, PointKey, ProfileId, StoreError, TenantId};
use hearth_embedded::{EmbeddedDocuments, EmbeddedReadings};

fn profile(id: &str, tenant_id: Option<TenantId>) -> DeviceProfile {
    DeviceProfile {
        id: ProfileId::new(id).expect("valid id"),
        tenant_id,
        name: format!("profile {id}"),
        poll_interval_ms: 1_000,
        live_poll_interval_ms: None,
        points: vec![PointDefinition {
            key: PointKey::new("outdoor").expect("valid key"),
            name: "Outdoor".into(),
            address: match serde_json::json!({
                "register": "input", "address": 10_199, "data_type": "i16", "scale": 0.01,
            }) {
                serde_json::Value::Object(map) => FieldAddress(map),
                _ => FieldAddress::default(),
            },
            unit: "°C".into(),
            writable: false,
            write_level: WriteLevel::Full,
            min: None,
            max: None,
            options: Vec::new(),
            plausible_min: None,
            plausible_max: None,
        }],
    }
}

fn reading(tenant: TenantId, device: DeviceId, point: &str, seconds: i64, value: f64) -> Reading {
    Reading {
        tenant_id: tenant,
        device_id: device,
        point: PointKey::new(point).expect("valid key"),
        timestamp: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date")
            + Duration::seconds(seconds),
        value,
        quality: Quality::Good,
    }
}

fn count_query(tenant: TenantId, device: DeviceId, point: &str) -> HistoryQuery {
    let from = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    HistoryQuery::new(
        tenant,
        device,
        PointKey::new(point).expect("valid key"),
        from,
        from + Duration::seconds(3_600),
        3_600,
        Aggregate::Count,
    )
    .expect("valid query")
}

#[tokio::test]
async fn profiles_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let tenant = TenantId::new();
    let builtin = profile("ecl-310", None);
    let own = profile("acme-custom", Some(tenant));
    {
        let store = EmbeddedDocuments::open(dir.path()).expect("open documents.redb");
        store.put_profile(&builtin).await.expect("put built-in");
        store.put_profile(&own).await.expect("put tenant profile");
    }
    let store = EmbeddedDocuments::open(dir.path()).expect("reopen documents.redb");
    assert_eq!(
        store
            .profile(tenant, &own.id)
            .await
            .expect("profile after reopen"),
        Some(own.clone())
    );
    assert_eq!(
        store.profiles(tenant).await.expect("profiles after reopen"),
        vec![own, builtin.clone()]
    );
    assert_eq!(
        store
            .profiles(TenantId::new())
            .await
            .expect("other tenant after reopen"),
        vec![builtin]
    );
}

#[tokio::test]
async fn readings_and_series_ids_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let (tenant, device) = (TenantId::new(), DeviceId::new());
    {
        let store = EmbeddedReadings::open(dir.path()).expect("open readings.redb");
        let batch: Vec<Reading> = (0..100)
            .map(|s| reading(tenant, device, "flow", s, s as f64))
            .collect();
        store.append(&batch).await.expect("append");
    }
    let store = EmbeddedReadings::open(dir.path()).expect("reopen readings.redb");
    let flow = count_query(tenant, device, "flow");
    assert_eq!(
        store.history(&flow).await.expect("history after reopen")[0].value,
        100.0
    );

    // A series created after the reopen must get a fresh id, not reuse the
    // persisted one (which would merge the two series).
    store
        .append(&[reading(tenant, device, "return", 5, 1.0)])
        .await
        .expect("append to a new series");
    assert_eq!(
        store
            .history(&flow)
            .await
            .expect("history of the old series")[0]
            .value,
        100.0
    );
    let ret = count_query(tenant, device, "return");
    assert_eq!(
        store
            .history(&ret)
            .await
            .expect("history of the new series")[0]
            .value,
        1.0
    );
}

#[tokio::test]
async fn a_corrupt_file_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let garbage = vec![0x5Au8; 64 * 1024];
    std::fs::write(dir.path().join("documents.redb"), &garbage).expect("write garbage");
    std::fs::write(dir.path().join("readings.redb"), &garbage).expect("write garbage");

    let Err(docs) = EmbeddedDocuments::open(dir.path()) else {
        panic!("a garbage documents.redb must not open")
    };
    let Err(readings) = EmbeddedReadings::open(dir.path()) else {
        panic!("a garbage readings.redb must not open")
    };
    for (err, file) in [(docs, "documents.redb"), (readings, "readings.redb")] {
        assert!(
            matches!(err, StoreError::Backend(_)),
            "expected a backend error, got {err:?}"
        );
        let message = format!("{err:#}");
        assert!(
            message.contains(file),
            "the error must name the file: {message}"
        );
    }
}

#[tokio::test]
async fn a_file_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let _first = EmbeddedReadings::open(dir.path()).expect("first open");
    let Err(err) = EmbeddedReadings::open(dir.path()) else {
        panic!("a second open of the same file must fail")
    };
    assert!(
        format!("{err}").contains("readings.redb"),
        "the error must name the file: {err}"
    );
}

#[tokio::test]
async fn a_data_dir_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let not_a_dir = dir.path().join("data");
    std::fs::write(&not_a_dir, b"x").expect("write a file");
    let Err(err) = EmbeddedDocuments::open(&not_a_dir) else {
        panic!("a file as data directory must not open")
    };
    assert!(
        format!("{err}").contains("data"),
        "the error must name the path: {err}"
    );
}

#[tokio::test]
async fn a_profile_id_cannot_be_taken_over_by_another_owner() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store = EmbeddedDocuments::open(dir.path()).expect("open documents.redb");
    let (acme, globex) = (TenantId::new(), TenantId::new());
    let builtin = profile("ecl-310", None);
    let own = profile("custom", Some(acme));
    store.put_profile(&builtin).await.expect("put built-in");
    store.put_profile(&own).await.expect("put acme's profile");

    let hijack_builtin = profile("ecl-310", Some(globex));
    let hijack_own = profile("custom", Some(globex));
    assert!(matches!(
        store.put_profile(&hijack_builtin).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.put_profile(&hijack_own).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.profile(acme, &own.id).await.expect("profile"),
        Some(own.clone())
    );
    // And globex, whose attempt was refused, cannot read acme's profile either
    assert_eq!(store.profile(globex, &own.id).await.expect("profile"), None);
    assert_eq!(
        store.profile(globex, &builtin.id).await.expect("profile"),
        Some(builtin)
    );
}
