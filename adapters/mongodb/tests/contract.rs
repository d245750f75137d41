//! The documents contract and the store's own promises (optimistic
//! concurrency, reading older stored shapes) against a real server named by
//! `HEARTH_TEST_MONGODB_URL` (CI starts FerretDB: `.ci/extra.d/20-ferretdb.sh`).
//! Each test uses its own uniquely named database and drops it afterwards.

// Test code: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;

use futures::TryStreamExt as _;
use std::io::Write;

use hearth_domain::contract::documents::documents_contract;
use hearth_domain::error::StoreError;
use hearth_domain::ids::{PointKey, ProfileId, TenantId};
use hearth_domain::model::{DeviceProfile, FieldAddress, PointDefinition, WriteLevel};
use hearth_domain::ports::DocumentStore;
use hearth_mongodb::{MongoDocuments, PROFILES, TENANT_INDEX};
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Client, Database};

const VAR: &str = "HEARTH_TEST_MONGODB_URL";

/// The server URL, or `None` (with a visible note) when none is configured.
/// Under `CI=true` a missing server is a failure, never a silent pass.
fn server_url(test: &str) -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but {VAR} is not set: .ci/run must start FerretDB (.ci/extra.d/20-ferretdb.sh)"
            );
            // Straight to stderr: libtest captures `println!` of passing
            // tests, and a skipped integration test must be visible.
            let _ = writeln!(
                std::io::stderr(),
                "{test} did NOT run: {VAR} is not set (see .ci/extra.d/20-ferretdb.sh)"
            );
            None
        }
    }
}

/// Runs `body` against a fresh database on the test server, then drops the
/// database whatever the outcome, and re-raises a failure of `body`.
async fn with_fresh_database<F, Fut>(test: &str, body: F)
where
    F: FnOnce(String, Database) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = server_url(test) else {
        return;
    };
    let name = format!("hearth_test_{}", uuid::Uuid::new_v4().simple());
    let client = Client::with_uri_str(&url)
        .await
        .expect("a client for HEARTH_TEST_MONGODB_URL");
    let database = client.database(&name);
    let outcome = tokio::spawn(body(url, database.clone())).await;
    database.drop().await.expect("drop the test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
    let _ = writeln!(std::io::stderr(), "{test} ran against database {name}");
}

fn profile(id: &str, tenant: Option<TenantId>, name: &str) -> DeviceProfile {
    let serde_json::Value::Object(address) =
        serde_json::json!({ "table": "holding", "address": 11_178, "scale": 0.1 })
    else {
        panic!("a literal object");
    };
    DeviceProfile {
        id: ProfileId::new(id).expect("valid id"),
        tenant_id: tenant,
        name: name.to_owned(),
        poll_interval_ms: 1_000,
        live_poll_interval_ms: None,
        points: vec![PointDefinition {
            key: PointKey::new("room").expect("valid key"),
            name: "Room".into(),
            address: FieldAddress(address),
            unit: "°C".into(),
            writable: true,
            write_level: WriteLevel::Basic,
            min: Some(10.0),
            max: Some(30.0),
            options: Vec::new(),
            plausible_min: None,
            plausible_max: None,
        }],
    }
}

#[tokio::test]
async fn mongodb_passes_the_documents_contract() {
    with_fresh_database(
        "mongodb_passes_the_documents_contract",
        |url, database| async move {
            // Given a store connected through its URL, on an empty database
            let store = MongoDocuments::connect(&url, database.name())
                .await
                .expect("the store connects and creates its indexes");
            // When / Then every promise of the port holds
            documents_contract(&store).await;
        },
    )
    .await;
}

#[tokio::test]
async fn indexes_are_created_on_start_and_starting_again_is_harmless() {
    with_fresh_database(
        "indexes_are_created_on_start_and_starting_again_is_harmless",
        |_url, database| async move {
            // Given a store started on a fresh database
            MongoDocuments::with_database(database.clone())
                .await
                .expect("first start");
            // When it starts again on the same database
            MongoDocuments::with_database(database.clone())
                .await
                .expect("a second start with the indexes in place");
            // Then the tenant index exists
            let names = database
                .collection::<Document>(PROFILES)
                .list_index_names()
                .await
                .expect("list indexes");
            assert!(
                names.iter().any(|n| n == TENANT_INDEX),
                "index {TENANT_INDEX} missing: {names:?}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_writer_that_lost_the_race_gets_a_conflict_and_changes_nothing() {
    with_fresh_database(
        "a_writer_that_lost_the_race_gets_a_conflict_and_changes_nothing",
        |_url, database| async move {
            let store = MongoDocuments::with_database(database)
                .await
                .expect("store");
            let tenant = TenantId::new();
            let original = profile("boiler", Some(tenant), "Boiler");
            store.put_profile(&original).await.expect("first put");

            // Given two writers that both read the profile at the same version
            let seen_by_a = store
                .stored_version(Some(tenant), &original.id)
                .await
                .expect("version for A");
            let seen_by_b = store
                .stored_version(Some(tenant), &original.id)
                .await
                .expect("version for B");
            assert_eq!(seen_by_a, Some(1));
            assert_eq!(seen_by_a, seen_by_b);

            // When A writes first, then B writes on what it read
            let from_a = profile("boiler", Some(tenant), "Boiler (A)");
            let from_b = profile("boiler", Some(tenant), "Boiler (B)");
            let a = store.put_profile_if_version(&from_a, seen_by_a).await;
            let b = store.put_profile_if_version(&from_b, seen_by_b).await;

            // Then A wins, B is a Conflict, and the stored profile is A's
            assert_eq!(a.expect("A's write"), 2);
            assert!(matches!(b, Err(StoreError::Conflict(_))), "B got {b:?}");
            assert_eq!(
                store
                    .profile(tenant, &original.id)
                    .await
                    .expect("read back"),
                Some(from_a)
            );
            assert_eq!(
                store
                    .stored_version(Some(tenant), &original.id)
                    .await
                    .expect("version after"),
                Some(2)
            );

            // And a creation racing an existing profile is a Conflict too
            let late_create = store.put_profile_if_version(&from_b, None).await;
            assert!(
                matches!(late_create, Err(StoreError::Conflict(_))),
                "a create over an existing profile got {late_create:?}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_writer_that_read_long_ago_gets_a_conflict_after_newer_writes() {
    with_fresh_database(
        "a_writer_that_read_long_ago_gets_a_conflict_after_newer_writes",
        |_url, database| async move {
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("store");
            let tenant = TenantId::new();
            let id = ProfileId::new("boiler").expect("id");
            store
                .put_profile(&profile("boiler", Some(tenant), "v1"))
                .await
                .expect("first put");

            // Given a writer that read version 1, and two newer writes since
            // (after which version 2's document is gone, so its id is free)
            let stale = store.stored_version(Some(tenant), &id).await.expect("read");
            assert_eq!(stale, Some(1));
            for name in ["v2", "v3"] {
                store
                    .put_profile(&profile("boiler", Some(tenant), name))
                    .await
                    .expect("newer put");
            }

            // When the stale writer writes on what it read
            let late = store
                .put_profile_if_version(&profile("boiler", Some(tenant), "stale"), stale)
                .await;

            // Then it is a Conflict and the newest write stays
            assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
            let read = store.profile(tenant, &id).await.expect("read back");
            assert_eq!(read.map(|p| p.name), Some("v3".to_owned()));
            // And the superseded versions hold nothing but their `_id`
            for key in [format!("{tenant}/boiler#1"), format!("{tenant}/boiler#2")] {
                let key = key.as_str();
                let tombstone = database
                    .collection::<Document>(PROFILES)
                    .find_one(doc! { "_id": key })
                    .await
                    .expect("raw read");
                assert_eq!(tombstone, Some(doc! { "_id": key, "superseded": true }));
            }
            assert_eq!(
                store
                    .stored_version(Some(tenant), &id)
                    .await
                    .expect("version"),
                Some(3)
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_won_write_stays_won_when_another_builds_on_it_before_its_cleanup() {
    with_fresh_database(
        "a_won_write_stays_won_when_another_builds_on_it_before_its_cleanup",
        |_url, database| async move {
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("store");
            // Two adapter instances: writers in two processes.
            let other = MongoDocuments::with_database(database)
                .await
                .expect("second store");
            let tenant = TenantId::new();
            let id = ProfileId::new("boiler").expect("id");
            store
                .put_profile(&profile("boiler", Some(tenant), "v1"))
                .await
                .expect("first put");

            // Given writer W whose insert of version 2 succeeded, its
            // housekeeping not yet done
            let from_w = profile("boiler", Some(tenant), "W");
            let w = store
                .insert_next_version(&from_w, Some(1))
                .await
                .expect("W's insert wins");
            assert_eq!(w, 2);

            // When writer X reads W's version and writes version 3 on it,
            // and only then W finishes its write
            let seen_by_x = other
                .stored_version(Some(tenant), &id)
                .await
                .expect("X reads");
            assert_eq!(seen_by_x, Some(2), "X sees W's write before W finished");
            let from_x = profile("boiler", Some(tenant), "X");
            let x = other
                .put_profile_if_version(&from_x, seen_by_x)
                .await
                .expect("X builds on W");
            store.retire_superseded(&from_w, Some(1), w).await;

            // Then both writes count: X's stays on top of W's, version 3,
            // even though W's hint (2) now lags behind the newest version
            assert_eq!(x, 3);
            assert_eq!(
                store.profile(tenant, &id).await.expect("read"),
                Some(from_x)
            );
            assert_eq!(
                store
                    .stored_version(Some(tenant), &id)
                    .await
                    .expect("version"),
                Some(3)
            );
            // And a writer that also read version 1 still loses
            let late = store
                .put_profile_if_version(&profile("boiler", Some(tenant), "late"), Some(1))
                .await;
            assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn a_lagging_latest_hint_still_reads_the_newest_version() {
    with_fresh_database(
        "a_lagging_latest_hint_still_reads_the_newest_version",
        |_url, database| async move {
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("store");
            let tenant = TenantId::new();
            let id = ProfileId::new("boiler").expect("id");
            for name in ["v1", "v2", "v3", "v4"] {
                store
                    .put_profile(&profile("boiler", Some(tenant), name))
                    .await
                    .expect("put");
            }
            // Given an owner record whose hint lost a `$max` race and lags
            database
                .collection::<Document>(hearth_mongodb::PROFILE_OWNERS)
                .update_one(
                    doc! { "_id": format!("{tenant}/boiler") },
                    doc! { "$set": { "latest": 1_i64 } },
                )
                .await
                .expect("lower the hint");
            // When the profile is read, listed and written again
            let read = store.profile(tenant, &id).await.expect("read");
            let listed = store.profiles(tenant).await.expect("list");
            let next = store
                .put_profile_if_version(&profile("boiler", Some(tenant), "v5"), Some(4))
                .await;
            // Then the newest version is found despite the hint
            assert_eq!(read.map(|p| p.name), Some("v4".to_owned()));
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].name, "v4");
            assert_eq!(next.expect("writes on the newest"), 5);
            assert_eq!(
                store
                    .stored_version(Some(tenant), &id)
                    .await
                    .expect("version"),
                Some(5)
            );
        },
    )
    .await;
}

#[tokio::test]
async fn naming_a_version_never_lets_another_tenant_write_a_profile() {
    with_fresh_database(
        "naming_a_version_never_lets_another_tenant_write_a_profile",
        |_url, database| async move {
            let store = MongoDocuments::with_database(database)
                .await
                .expect("store");
            let (owner, intruder) = (TenantId::new(), TenantId::new());
            let id = ProfileId::new("boiler").expect("id");
            let original = profile("boiler", Some(owner), "Owner's");
            store.put_profile(&original).await.expect("owner's put");

            // Given another tenant that knows the profile's current version
            let version = store.stored_version(Some(owner), &id).await.expect("read");
            // When it writes under that id, naming that version
            let attempt = store
                .put_profile_if_version(&profile("boiler", Some(intruder), "Intruder's"), version)
                .await;
            // Then it is a Conflict, the owner's profile is unchanged and the
            // intruder sees nothing under that id
            assert!(
                matches!(attempt, Err(StoreError::Conflict(_))),
                "{attempt:?}"
            );
            assert_eq!(
                store.profile(owner, &id).await.expect("owner reads"),
                Some(original)
            );
            assert_eq!(
                store.profile(intruder, &id).await.expect("intruder reads"),
                None
            );
            assert!(store
                .profiles(intruder)
                .await
                .expect("intruder lists")
                .is_empty());
        },
    )
    .await;
}

#[tokio::test]
async fn concurrent_puts_never_lose_a_counted_write() {
    with_fresh_database(
        "concurrent_puts_never_lose_a_counted_write",
        |_url, database| async move {
            let store = MongoDocuments::with_database(database)
                .await
                .expect("store");
            let tenant = TenantId::new();
            store
                .put_profile(&profile("shared", Some(tenant), "start"))
                .await
                .expect("first put");

            // Given many writers, each reading the profile's version and
            // writing on it, all at once
            let id = ProfileId::new("shared").expect("id");
            let writers: Vec<_> = (0..16)
                .map(|i| {
                    let (store, id) = (store.clone(), id.clone());
                    tokio::spawn(async move {
                        let seen = store.stored_version(Some(tenant), &id).await?;
                        let mine = profile("shared", Some(tenant), &format!("writer {i}"));
                        store
                            .put_profile_if_version(&mine, seen)
                            .await
                            .map(|v| (v, i))
                    })
                })
                .collect();

            // When they have all finished
            let mut won: Vec<(i64, usize)> = Vec::new();
            for writer in writers {
                match writer.await.expect("writer task") {
                    Ok(win) => won.push(win),
                    Err(StoreError::Conflict(_)) => {}
                    Err(other) => panic!("a put failed with {other:?}"),
                }
            }

            // Then each version has exactly one winner, the versions that
            // won are 2, 3, … without a gap (no write reported as done was
            // lost), and the stored profile is the last winner's
            won.sort_unstable();
            let versions: Vec<i64> = won.iter().map(|(v, _)| *v).collect();
            let expected: Vec<i64> = (2..2 + i64::try_from(won.len()).expect("few")).collect();
            assert_eq!(versions, expected, "winners: {won:?}");
            let (last, writer) = *won.last().expect("at least one writer must win");
            assert_eq!(
                store
                    .stored_version(Some(tenant), &id)
                    .await
                    .expect("version"),
                Some(last)
            );
            let stored = store.profile(tenant, &id).await.expect("read");
            assert_eq!(stored.map(|p| p.name), Some(format!("writer {writer}")));
        },
    )
    .await;
}

#[tokio::test]
async fn stored_documents_of_an_older_shape_still_read() {
    with_fresh_database(
        "stored_documents_of_an_older_shape_still_read",
        |_url, database| async move {
            let tenant = TenantId::new();
            let raw = database.collection::<Document>(PROFILES);

            // Given a schema-1 document with only the fields the first
            // writers had (no live interval, options or plausibility), with
            // 32-bit integers as another client would write them, in the
            // first layout (no owner in its `_id`)
            raw.insert_one(doc! {
                "_id": "legacy#4", "profile_id": "legacy", "tenant_id": tenant.to_string(),
                "schema_version": 1_i32,
                "version": 4_i32, "name": "Legacy ECL", "poll_interval_ms": 2_000_i32,
                "points": [{
                    "key": "outdoor", "name": "Outdoor",
                    "address": { "table": "input", "address": 10_199_i32 },
                }],
            })
            .await
            .expect("insert a legacy document");
            // with its owner record as the layout before the `latest` hint
            // left it (no hint; older versions deleted, so no chain)
            database
                .collection::<Document>(hearth_mongodb::PROFILE_OWNERS)
                .insert_one(doc! { "_id": "legacy", "tenant_id": tenant.to_string() })
                .await
                .expect("insert its owner record");
            // and a store started on it (which moves it to the current layout)
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("store");

            // When it is read through the store
            let read = store
                .profile(tenant, &ProfileId::new("legacy").expect("id"))
                .await
                .expect("an older shape reads")
                .expect("the legacy profile is found");

            // Then it has its values and the defaults of what it lacks
            assert_eq!(read.name, "Legacy ECL");
            assert_eq!(read.poll_interval_ms, 2_000);
            assert_eq!(read.live_poll_interval_ms, None);
            let point = &read.points[0];
            assert_eq!(point.write_level, WriteLevel::Full);
            assert_eq!(
                point.address.entries().get("address"),
                Some(&serde_json::json!(10_199))
            );

            // And writing it back continues from its version, in the full
            // shape, and replaces the legacy document
            store.put_profile(&read).await.expect("rewrite");
            let stored: Vec<Document> = raw
                .find(doc! { "profile_id": "legacy" })
                .await
                .expect("raw read")
                .try_collect()
                .await
                .expect("raw documents");
            assert_eq!(stored.len(), 1, "{stored:?}");
            let rewritten = &stored[0];
            assert_eq!(
                rewritten.get("_id"),
                Some(&Bson::String(format!("{tenant}/legacy#5")))
            );
            assert_eq!(rewritten.get("version"), Some(&Bson::Int64(5)));
            assert_eq!(rewritten.get("schema_version"), Some(&Bson::Int32(1)));
            assert_eq!(rewritten.get("live_poll_interval_ms"), Some(&Bson::Null));
        },
    )
    .await;
}

#[tokio::test]
async fn unreadable_documents_are_backend_errors_and_hide_nothing_else() {
    with_fresh_database(
        "unreadable_documents_are_backend_errors_and_hide_nothing_else",
        |_url, database| async move {
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("store");
            let tenant = TenantId::new();
            let raw = database.collection::<Document>(PROFILES);

            // Given a document written by a newer Hearth and one damaged by hand
            raw.insert_one(doc! {
                "_id": format!("{tenant}/future#1"), "profile_id": "future", "tenant_id": tenant.to_string(),
                "schema_version": 99_i32,
                "version": 1_i64, "title": "renamed field",
            })
            .await
            .expect("insert a future document");
            raw.insert_one(doc! {
                "_id": format!("{tenant}/broken#1"), "profile_id": "broken", "tenant_id": tenant.to_string(),
                "schema_version": 1_i32,
                "version": 1_i64, "name": "Broken", "poll_interval_ms": "often", "points": [],
            })
            .await
            .expect("insert a broken document");
            for id in ["future", "broken"] {
                database
                    .collection::<Document>(hearth_mongodb::PROFILE_OWNERS)
                    .insert_one(doc! {
                        "_id": format!("{tenant}/{id}"), "tenant_id": tenant.to_string(),
                        "profile_id": id, "latest": 1_i64,
                    })
                    .await
                    .expect("insert an owner record");
            }

            // When they are read, Then each is a backend failure (no panic,
            // no guessed profile)
            for id in ["future", "broken"] {
                let read = store
                    .profile(tenant, &ProfileId::new(id).expect("id"))
                    .await;
                assert!(
                    matches!(read, Err(StoreError::Backend(_))),
                    "{id}: {read:?}"
                );
            }
            let listed = store.profiles(tenant).await;
            assert!(matches!(listed, Err(StoreError::Backend(_))), "{listed:?}");

            // And another tenant, whose listing does not include them, still reads
            let other = store.profiles(TenantId::new()).await.expect("other tenant");
            assert!(other.is_empty(), "{other:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_server_fails_at_start_without_quoting_the_url() {
    // Given a URL with a password, pointing at a port nobody listens on
    // (port 9 is "discard", closed on loopback), with a short selection timeout
    let url = "mongodb://hearth:hunter2@127.0.0.1:9/?serverSelectionTimeoutMS=300";
    // When the store connects
    let result = MongoDocuments::connect(url, "hearth").await;
    // Then it is an outage (no server answers), and its message has no
    // password in it
    match result {
        Err(StoreError::Unavailable(e)) => {
            let message = format!("{e:#}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected an outage, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_url_or_database_name_is_refused_without_quoting_the_url() {
    for (url, database) in [
        ("http://hearth:hunter2@127.0.0.1:27017/", "hearth"),
        ("mongodb://127.0.0.1:27017/", "he.arth"),
        ("mongodb://127.0.0.1:27017/", ""),
    ] {
        // Given a URL that is not MongoDB's or a database name it refuses
        // When the store connects
        let result = MongoDocuments::connect(url, database).await;
        // Then it fails before any network access, quoting no password
        match result {
            Err(StoreError::Backend(e)) => {
                assert!(!format!("{e:#}").contains("hunter2"), "{e:#}")
            }
            other => panic!("{url} {database:?}: expected a failure, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_mid_way_is_unavailable_and_leaves_only_whole_profiles() {
    with_fresh_database(
        "a_cut_mid_way_is_unavailable_and_leaves_only_whole_profiles",
        |url, database| async move {
            use hearth_domain::contract::proxy::{host_port, through, Proxy};
            use std::sync::atomic::{AtomicUsize, Ordering};
            use std::sync::Arc;

            // Given a store that reaches the server through a proxy (a short
            // server selection so a cut is noticed quickly)
            let proxy = Proxy::start(host_port(&url)).await;
            let via = through(&url, &proxy.addr);
            let sep = if via.contains('?') { '&' } else { '?' };
            let via = format!("{via}{sep}serverSelectionTimeoutMS=1000");
            let store = Arc::new(
                MongoDocuments::connect(&via, database.name())
                    .await
                    .expect("connects through the proxy"),
            );
            let tenant = TenantId::new();

            // When writers put profiles (new ones and new versions) and the
            // proxy is cut after 30 writes succeeded, others in flight
            let written = Arc::new(AtomicUsize::new(0));
            let writers: Vec<_> = (0..4)
                .map(|w| {
                    let (store, written) = (store.clone(), written.clone());
                    tokio::spawn(async move {
                        let mut errors = Vec::new();
                        for n in 0.. {
                            let id = format!("cut-{w}-{}", n % 5);
                            let p = profile(&id, Some(tenant), &format!("v{n}"));
                            match store.put_profile(&p).await {
                                Ok(()) => {
                                    written.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(e) => {
                                    errors.push(e);
                                    if errors.len() == 2 {
                                        break;
                                    }
                                }
                            }
                        }
                        errors
                    })
                })
                .collect();
            while written.load(Ordering::SeqCst) < 30 {
                tokio::task::yield_now().await;
            }
            proxy.set(false);
            let mut errors = Vec::new();
            for w in writers {
                errors.extend(w.await.expect("writer finished"));
            }

            // Then every failure during the cut is Unavailable
            assert_eq!(errors.len(), 8);
            for e in &errors {
                assert!(
                    matches!(e, StoreError::Unavailable(_)),
                    "a failure while the server is unreachable must be Unavailable, got {e:?}"
                );
            }

            // And once it is reachable again, every profile reads whole
            // and each one can be written again (no leftover blocks it)
            proxy.set(true);
            let mut listed = Err(anyhow_free("not tried"));
            for _ in 0..50 {
                listed = store.profiles(tenant).await;
                if listed.is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let listed = listed.expect("the store recovers once the server is back");
            assert!(!listed.is_empty(), "writes before the cut are stored");
            for p in &listed {
                assert!(p.name.starts_with('v'), "a whole profile: {p:?}");
                assert_eq!(p.points.len(), 1, "a whole profile: {p:?}");
            }
            for w in 0..4 {
                for n in 0..5 {
                    let id = format!("cut-{w}-{n}");
                    store
                        .put_profile(&profile(&id, Some(tenant), "after"))
                        .await
                        .expect("every profile id can be written after the outage");
                }
            }
            assert_eq!(store.profiles(tenant).await.expect("listed").len(), 20);
        },
    )
    .await;
}

/// A placeholder error without pulling `anyhow` into the test's dependencies.
fn anyhow_free(message: &str) -> StoreError {
    StoreError::Conflict(message.to_owned())
}

// ------------------------------------------------------------ the layout

/// The owner part every `_id` of a profile document must start with.
fn owner_of_key(key: &str) -> &str {
    key.split_once('/').map_or("", |(owner, _)| owner)
}

#[tokio::test]
async fn every_profile_key_names_its_owner() {
    with_fresh_database(
        "every_profile_key_names_its_owner",
        |_url, database| async move {
            // Given profiles of two tenants and a built-in, each written twice
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("store");
            let (a, b) = (TenantId::new(), TenantId::new());
            for _ in 0..2 {
                for p in [
                    profile("of-a", Some(a), "A"),
                    profile("of-b", Some(b), "B"),
                    profile("built-in", None, "shared"),
                ] {
                    store.put_profile(&p).await.expect("put");
                }
            }
            // When the raw documents are read
            for collection in [PROFILES, hearth_mongodb::PROFILE_OWNERS] {
                let keys: Vec<Document> = database
                    .collection::<Document>(collection)
                    .find(doc! {})
                    .await
                    .expect("raw read")
                    .try_collect()
                    .await
                    .expect("raw documents");
                // Then every `_id` starts with its owner: a lookup built for
                // tenant A (`<A>/…` or `shared/…`) can never name B's
                let mut owners: Vec<String> = keys
                    .iter()
                    .map(|d| owner_of_key(d.get_str("_id").expect("string _id")).to_owned())
                    .collect();
                owners.sort();
                owners.dedup();
                let mut expected = vec![a.to_string(), b.to_string(), "shared".to_owned()];
                expected.sort();
                assert_eq!(owners, expected, "{collection}: {keys:?}");
                for d in &keys {
                    let key = d.get_str("_id").expect("string _id");
                    let owner = owner_of_key(key);
                    if let Ok(tenant) = d.get_str("tenant_id") {
                        assert_eq!(owner, tenant, "{key} holds another tenant's data");
                    }
                }
            }
            // And the marker says the current layout
            let marker = database
                .collection::<Document>(hearth_mongodb::META)
                .find_one(doc! { "_id": hearth_mongodb::LAYOUT_MARKER })
                .await
                .expect("marker read");
            assert_eq!(
                marker.and_then(|m| m.get("version").cloned()),
                Some(Bson::Int64(hearth_mongodb::LAYOUT_VERSION))
            );
        },
    )
    .await;
}

/// Documents as Hearth's first layout stored them: owner records keyed by
/// the profile id alone, versions keyed `<id>#<n>`, tombstones, a lagging
/// hint, a record from before the hint, and a claim without any version.
async fn seed_layout_1(database: &Database, a: TenantId, b: TenantId) {
    let version = |key: &str, id: &str, tenant: Option<TenantId>, v: i64, name: &str| {
        doc! {
            "_id": key, "profile_id": id,
            "tenant_id": tenant.map_or(Bson::Null, |t| Bson::String(t.to_string())),
            "schema_version": 1_i32, "version": v, "name": name, "poll_interval_ms": 1_000_i64,
            "live_poll_interval_ms": Bson::Null,
            "points": [{ "key": "room", "name": "Room", "address": { "table": "holding", "address": 11_178_i64 } }],
        }
    };
    let tombstone = |key: &str| doc! { "_id": key, "superseded": true };
    let tenant = |t: Option<TenantId>| t.map_or(Bson::Null, |t| Bson::String(t.to_string()));
    database
        .collection::<Document>(PROFILES)
        .insert_many([
            tombstone("boiler#1"),
            version("boiler#2", "boiler", Some(a), 2, "A's boiler v2"),
            tombstone("ahu#1"),
            tombstone("ahu#2"),
            version("ahu#3", "ahu", Some(b), 3, "B's AHU v3"),
            version("ecl-310#1", "ecl-310", None, 1, "Built-in ECL 310"),
            version("legacy#4", "legacy", Some(a), 4, "A's legacy"),
        ])
        .await
        .expect("seed versions");
    database
        .collection::<Document>(hearth_mongodb::PROFILE_OWNERS)
        .insert_many([
            doc! { "_id": "boiler", "tenant_id": tenant(Some(a)), "latest": 2_i64 },
            // A hint that lost a `$max` race and lags.
            doc! { "_id": "ahu", "tenant_id": tenant(Some(b)), "latest": 1_i64 },
            doc! { "_id": "ecl-310", "tenant_id": tenant(None), "latest": 1_i64 },
            doc! { "_id": "legacy", "tenant_id": tenant(Some(a)) },
            doc! { "_id": "empty", "tenant_id": tenant(Some(b)), "latest": 0_i64 },
        ])
        .await
        .expect("seed owners");
}

/// Everything a migrated [`seed_layout_1`] must show.
async fn assert_migrated(database: &Database, store: &MongoDocuments, a: TenantId, b: TenantId) {
    let id = |s: &str| ProfileId::new(s).expect("id");
    let names = |ps: Vec<DeviceProfile>| {
        ps.into_iter()
            .map(|p| format!("{}={}", p.id, p.name))
            .collect::<Vec<_>>()
    };
    // Each tenant sees its own and the built-in, at their versions
    assert_eq!(
        names(store.profiles(a).await.expect("list A")),
        vec![
            "boiler=A's boiler v2",
            "ecl-310=Built-in ECL 310",
            "legacy=A's legacy"
        ]
    );
    assert_eq!(
        names(store.profiles(b).await.expect("list B")),
        vec!["ahu=B's AHU v3", "ecl-310=Built-in ECL 310"]
    );
    assert_eq!(store.profile(b, &id("boiler")).await.expect("read"), None);
    assert_eq!(
        store
            .stored_version(Some(a), &id("boiler"))
            .await
            .expect("v"),
        Some(2)
    );
    assert_eq!(
        store.stored_version(Some(b), &id("ahu")).await.expect("v"),
        Some(3)
    );
    assert_eq!(
        store
            .stored_version(Some(a), &id("legacy"))
            .await
            .expect("v"),
        Some(4)
    );
    // No old document is left
    for collection in [PROFILES, hearth_mongodb::PROFILE_OWNERS] {
        let left: Vec<Document> = database
            .collection::<Document>(collection)
            .find(doc! {})
            .await
            .expect("raw read")
            .try_collect()
            .await
            .expect("raw documents");
        assert!(
            left.iter()
                .all(|d| d.get_str("_id").is_ok_and(|k| k.contains('/'))),
            "{collection} keeps old keys: {left:?}"
        );
    }
    // Ids stay claimed by their owners, and superseded versions stay taken
    let steal = store
        .put_profile(&profile("boiler", Some(b), "B steals"))
        .await;
    assert!(matches!(steal, Err(StoreError::Conflict(_))), "{steal:?}");
    let steal = store
        .put_profile(&profile("empty", Some(a), "A steals"))
        .await;
    assert!(matches!(steal, Err(StoreError::Conflict(_))), "{steal:?}");
    let stale = store
        .put_profile_if_version(&profile("ahu", Some(b), "stale"), Some(1))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let stale = store
        .put_profile_if_version(&profile("legacy", Some(a), "stale"), Some(2))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    // And writing goes on from where the old layout was
    store
        .put_profile(&profile("empty", Some(b), "B's first"))
        .await
        .expect("B writes its claimed id");
    assert_eq!(
        store
            .put_profile_if_version(&profile("ahu", Some(b), "B's AHU v4"), Some(3))
            .await
            .expect("B writes on v3"),
        4
    );
    assert_eq!(
        store
            .profile(b, &id("ahu"))
            .await
            .expect("read")
            .map(|p| p.name),
        Some("B's AHU v4".to_owned())
    );
}

#[tokio::test]
async fn documents_of_the_old_layout_are_moved_on_start() {
    with_fresh_database(
        "documents_of_the_old_layout_are_moved_on_start",
        |_url, database| async move {
            use hearth_mongodb::migrate::{ensure_layout, Migration};
            // Given a database in the first layout
            let (a, b) = (TenantId::new(), TenantId::new());
            seed_layout_1(&database, a, b).await;
            // When the store starts on it
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("start migrates");
            // Then every profile is where the current layout looks for it
            assert_migrated(&database, &store, a, b).await;
            // And a second start reads the marker and does nothing
            assert_eq!(
                ensure_layout(&database, None).await.expect("again"),
                Migration::UpToDate
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_migration_interrupted_after_any_write_finishes_on_the_next_start() {
    with_fresh_database(
        "a_migration_interrupted_after_any_write_finishes_on_the_next_start",
        |_url, database| async move {
            use hearth_mongodb::migrate::{ensure_layout, Migration};
            // Given a database in the first layout
            let (a, b) = (TenantId::new(), TenantId::new());
            seed_layout_1(&database, a, b).await;
            let marker = || async {
                database
                    .collection::<Document>(hearth_mongodb::META)
                    .find_one(doc! { "_id": hearth_mongodb::LAYOUT_MARKER })
                    .await
                    .expect("marker read")
            };
            // When migrations stop (as a crash would) after a single write,
            // again and again, each one starting over on what the last left
            let mut runs = 0;
            loop {
                match ensure_layout(&database, Some(1))
                    .await
                    .expect("an interrupted run fails nothing")
                {
                    Migration::Interrupted => {
                        runs += 1;
                        assert!(marker().await.is_none(), "marked done after {runs} runs");
                        assert!(runs < 500, "the migration makes no progress");
                    }
                    Migration::Migrated { .. } => break,
                    Migration::UpToDate => panic!("up to date before it was migrated"),
                }
            }
            // Then it got there one write at a time (claims, tombstones,
            // copies, heads, deletions: more than 20 for this seed)
            assert!(runs > 20, "only {runs} interruptions");
            assert!(marker().await.is_some());
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("start");
            assert_migrated(&database, &store, a, b).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_migration_stopped_half_way_is_finished_by_the_next_start() {
    with_fresh_database(
        "a_migration_stopped_half_way_is_finished_by_the_next_start",
        |_url, database| async move {
            use hearth_mongodb::migrate::{ensure_layout, Migration};
            // Given a database in the first layout whose migration stopped
            // after 8 writes (half-way through the profiles)
            let (a, b) = (TenantId::new(), TenantId::new());
            seed_layout_1(&database, a, b).await;
            assert_eq!(
                ensure_layout(&database, Some(8)).await.expect("first run"),
                Migration::Interrupted
            );
            // When the store starts again
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("the next start finishes the move");
            // Then everything is as after one uninterrupted run
            assert_migrated(&database, &store, a, b).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_database_marked_with_a_newer_layout_is_refused() {
    with_fresh_database(
        "a_database_marked_with_a_newer_layout_is_refused",
        |_url, database| async move {
            // Given a marker written by a newer Hearth
            database
                .collection::<Document>(hearth_mongodb::META)
                .insert_one(doc! { "_id": hearth_mongodb::LAYOUT_MARKER, "version": 99_i64 })
                .await
                .expect("marker");
            // When the store starts, Then it refuses rather than guess
            let started = MongoDocuments::with_database(database).await;
            assert!(
                matches!(started, Err(StoreError::Backend(_))),
                "{:?}",
                started.map(drop)
            );
        },
    )
    .await;
}

// ------------------------------------------------------------ alarm rules

#[tokio::test]
async fn mongodb_passes_the_alarm_rules_contract() {
    with_fresh_database(
        "mongodb_passes_the_alarm_rules_contract",
        |url, database| async move {
            use hearth_domain::contract::alarm_rules::alarm_rules_contract;
            let store = MongoDocuments::connect(&url, database.name())
                .await
                .expect("store");
            alarm_rules_contract(&store).await;
        },
    )
    .await;
}

#[tokio::test]
async fn concurrent_rule_writers_have_exactly_one_winner_per_version() {
    with_fresh_database(
        "concurrent_rule_writers_have_exactly_one_winner_per_version",
        |_url, database| async move {
            use hearth_domain::contract::alarm_rules::full_rule;
            use hearth_domain::ports::AlarmRuleStore;
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("store");
            // Two adapter instances, as two replicas would be.
            let other = MongoDocuments::with_database(database)
                .await
                .expect("second store");
            let tenant = TenantId::new();
            let rule = full_rule(tenant, "start");
            store.put_alarm_rule(&rule, None).await.expect("create");

            // Given 16 writers, each reading the rule and writing the next
            // version on what it read, all at once
            let writers: Vec<_> = (0..16)
                .map(|i| {
                    let store = if i % 2 == 0 {
                        store.clone()
                    } else {
                        other.clone()
                    };
                    let id = rule.id;
                    tokio::spawn(async move {
                        let mut seen = store
                            .alarm_rule(tenant, id)
                            .await?
                            .expect("the rule exists");
                        let read = seen.version;
                        seen.version = read + 1;
                        seen.name = format!("writer {i}");
                        store
                            .put_alarm_rule(&seen, Some(read))
                            .await
                            .map(|()| (read + 1, i))
                    })
                })
                .collect();
            let mut won: Vec<(u64, usize)> = Vec::new();
            for writer in writers {
                match writer.await.expect("writer task") {
                    Ok(win) => won.push(win),
                    Err(StoreError::Conflict(_)) => {}
                    Err(other) => panic!("a put failed with {other:?}"),
                }
            }

            // Then each version has exactly one winner, the versions won
            // are 2, 3, … without a gap, and the stored rule is the last
            // winner's
            won.sort_unstable();
            let versions: Vec<u64> = won.iter().map(|(v, _)| *v).collect();
            let expected: Vec<u64> = (2..2 + won.len() as u64).collect();
            assert_eq!(versions, expected, "winners: {won:?}");
            let (last, writer) = *won.last().expect("at least one writer must win");
            let stored = store
                .alarm_rule(tenant, rule.id)
                .await
                .expect("read")
                .expect("stored");
            assert_eq!(
                (stored.version, stored.name),
                (last, format!("writer {writer}"))
            );

            // And a delete racing writers leaves either a deleted rule or a
            // newer version, never a write reported done and then lost
            let seen = store
                .alarm_rule(tenant, rule.id)
                .await
                .expect("read")
                .expect("stored");
            let mut late = seen.clone();
            late.version = seen.version + 1;
            let (deleted, put) = tokio::join!(
                other.delete_alarm_rule(tenant, rule.id),
                store.put_alarm_rule(&late, Some(seen.version))
            );
            let after = store.alarm_rule(tenant, rule.id).await.expect("read");
            match (deleted.expect("delete"), put) {
                (true, _) => assert_eq!(after, None),
                (false, result) => panic!("the rule existed, delete said false; put {result:?}"),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn alarm_rule_keys_name_their_tenant() {
    with_fresh_database(
        "alarm_rule_keys_name_their_tenant",
        |_url, database| async move {
            use hearth_domain::contract::alarm_rules::full_rule;
            use hearth_domain::ports::AlarmRuleStore;
            let store = MongoDocuments::with_database(database.clone())
                .await
                .expect("store");
            // Given a rule of each of two tenants, one updated and deleted
            let (a, b) = (TenantId::new(), TenantId::new());
            let of_a = full_rule(a, "A");
            let of_b = full_rule(b, "B");
            for r in [&of_a, &of_b] {
                store.put_alarm_rule(r, None).await.expect("create");
            }
            let mut v2 = of_a.clone();
            v2.version = 2;
            store.put_alarm_rule(&v2, Some(1)).await.expect("update");
            assert!(store.delete_alarm_rule(b, of_b.id).await.expect("delete"));
            // When the raw documents are read
            for collection in [
                hearth_mongodb::ALARM_RULES,
                hearth_mongodb::ALARM_RULE_HEADS,
            ] {
                let docs: Vec<Document> = database
                    .collection::<Document>(collection)
                    .find(doc! {})
                    .await
                    .expect("raw read")
                    .try_collect()
                    .await
                    .expect("raw documents");
                // Then every `_id` begins with the tenant whose data it holds
                for d in &docs {
                    let key = d.get_str("_id").expect("string _id");
                    let owner = owner_of_key(key);
                    assert!(owner == a.to_string() || owner == b.to_string(), "{key}");
                    if let Ok(tenant) = d.get_str("tenant_id") {
                        assert_eq!(owner, tenant, "{key} holds another tenant's rule");
                    }
                }
            }
            // And the stored rule documents carry the DTO's explicit shape
            let stored = database
                .collection::<Document>(hearth_mongodb::ALARM_RULES)
                .find_one(doc! { "_id": format!("{a}/{}#2", of_a.id) })
                .await
                .expect("raw read")
                .expect("version 2 stored");
            assert_eq!(stored.get_str("severity"), Ok("major"));
            assert_eq!(
                stored
                    .get_document("condition")
                    .and_then(|c| c.get_i64("on_delay_ms")),
                Ok(90_000)
            );
            assert_eq!(stored.get_i32("schema_version"), Ok(1));
        },
    )
    .await;
}
