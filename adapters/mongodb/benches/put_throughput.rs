//! Benchmark: profile creates, replaces and reads per second through
//! [`MongoDocuments`], each as a ratio to the bare `mongodb` client doing the
//! nearest single operation on the same stored documents, against the server
//! in `HEARTH_TEST_MONGODB_URL` (CI's FerretDB; skipped without it).
//!
//! - "hearth create": `put_profile` of a new profile: the version read (head
//!   record `<tenant>/<id>` by `_id`, a miss), the id claim insert, the head
//!   record insert, the version insert (a first version needs no hint
//!   raise). Against "bare insert_one" of the very documents hearth stored
//!   (read back from its database), one round trip.
//! - "hearth replace": `put_profile` over each profile again: the version
//!   read (head by `_id`, `<tenant>/<id>#hint`, a miss on `#hint+1`; a
//!   version found proves the owner), the insert, the hint raise and the tombstone
//!   (replace by `_id`).
//!   Against "bare replace_one" of the same documents by `_id`.
//! - "hearth get": `profile(tenant, id)`: the tenant's and the built-in head
//!   by `_id` (the built-in only when the tenant has none), `<tenant>/<id>#hint`,
//!   a miss on `#hint+1`.
//!   Against "bare find_one" by `_id`.
//! - "hearth list": `profiles(tenant)` once over all of them (the head
//!   records filtered by tenant, then each profile's `_id` probes from the
//!   hint in its head record, eight at a time), as profiles/s. Also
//!   timed: that tenant filter alone, and one `_id` `$in` over all profiles
//!   (the alternative to the probes).
//!
//! Every operation names `_id` alone except the tenant filter of the list:
//! FerretDB 1.24's SQLite backend scans the collection for anything else.
//! Each scenario runs `PROFILES` profiles of 14 points with `CONCURRENCY`
//! tasks; the load average is printed before and after, since the machine
//! running CI is shared and only the ratios are meaningful.

// Test code: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Instant;

use hearth_domain::ids::{PointKey, ProfileId, TenantId};
use hearth_domain::model::{DeviceProfile, FieldAddress, PointDefinition, WriteLevel};
use hearth_domain::ports::DocumentStore;
use hearth_mongodb::MongoDocuments;
use mongodb::bson::Document;
use mongodb::{Client, Database};

const PROFILES: usize = 100;
const CONCURRENCY: usize = 4;

fn profile(n: usize, tenant: TenantId) -> DeviceProfile {
    DeviceProfile {
        id: ProfileId::new(format!("bench-{n}")).expect("valid id"),
        tenant_id: Some(tenant),
        name: format!("Bench profile {n}"),
        poll_interval_ms: 2_000,
        live_poll_interval_ms: Some(250),
        points: (0..14)
            .map(|p| {
                let serde_json::Value::Object(address) = serde_json::json!({
                    "table": "holding", "address": 11_000 + p, "data_type": "i16",
                    "word_order": "high_first", "scale": 0.1,
                }) else {
                    unreachable!("a literal object")
                };
                PointDefinition {
                    key: PointKey::new(format!("point_{p}")).expect("valid key"),
                    name: format!("Point {p}"),
                    address: FieldAddress(address),
                    unit: "°C".into(),
                    writable: p % 2 == 0,
                    write_level: WriteLevel::Limited,
                    min: Some(5.0),
                    max: Some(95.0),
                    options: Vec::new(),
                    plausible_min: Some(-50.0),
                    plausible_max: Some(150.0),
                }
            })
            .collect(),
    }
}

/// Runs `write` over the profiles split across `CONCURRENCY` tasks and
/// returns profiles per second.
async fn timed<F, Fut>(profiles: &[DeviceProfile], write: F) -> f64
where
    F: Fn(Vec<DeviceProfile>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let chunk = profiles.len().div_ceil(CONCURRENCY);
    let start = Instant::now();
    let tasks: Vec<_> = profiles
        .chunks(chunk)
        .map(|c| tokio::spawn(write(c.to_vec())))
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    profiles.len() as f64 / start.elapsed().as_secs_f64()
}

async fn fresh(client: &Client) -> Database {
    client.database(&format!("hearth_bench_{}", uuid::Uuid::new_v4().simple()))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[tokio::main]
async fn main() {
    let Ok(url) = std::env::var("HEARTH_TEST_MONGODB_URL") else {
        let _ = writeln!(
            std::io::stderr(),
            "put_throughput did NOT run: HEARTH_TEST_MONGODB_URL is not set (see .ci/extra.d/20-ferretdb.sh)"
        );
        return;
    };
    let load_before = load_average();
    let client = Client::with_uri_str(&url).await.expect("client");
    let tenant = TenantId::new();
    let profiles: Vec<DeviceProfile> = (0..PROFILES).map(|n| profile(n, tenant)).collect();

    // Through hearth.
    let database = fresh(&client).await;
    let store = MongoDocuments::with_database(database.clone())
        .await
        .expect("store");
    let put = |store: MongoDocuments| {
        move |chunk: Vec<DeviceProfile>| {
            let store = store.clone();
            async move {
                for p in &chunk {
                    store.put_profile(p).await.expect("put_profile");
                }
            }
        }
    };
    let create = timed(&profiles, put(store.clone())).await;
    // The documents exactly as hearth stored them (version 1), for the bare
    // client's scenarios.
    let stored = database.collection::<Document>(hearth_mongodb::PROFILES);
    let mut documents = Vec::with_capacity(PROFILES);
    for p in &profiles {
        let key = format!("{tenant}/{}#1", p.id.as_str());
        let found = stored.find_one(mongodb::bson::doc! { "_id": key }).await;
        documents.push(found.expect("read back").expect("stored"));
    }
    let replace = timed(&profiles, put(store.clone())).await;
    let get = {
        let store = store.clone();
        timed(&profiles, move |chunk| {
            let store = store.clone();
            async move {
                for p in &chunk {
                    let found = store.profile(tenant, &p.id).await.expect("profile");
                    assert!(found.is_some(), "{} is stored", p.id);
                }
            }
        })
        .await
    };
    let start = Instant::now();
    let listed = store.profiles(tenant).await.expect("profiles");
    let list = listed.len() as f64 / start.elapsed().as_secs_f64();
    assert_eq!(listed.len(), PROFILES);
    // What the listing's parts cost on this server: the tenant filter on
    // the head records (not `_id`: a scan on FerretDB's SQLite backend),
    // and, as the alternative to per-profile probes, one `_id` `$in` query.
    let owners = database.collection::<Document>(hearth_mongodb::PROFILE_OWNERS);
    let start = Instant::now();
    let filter = mongodb::bson::doc! { "tenant_id": tenant.to_string() };
    let n_owners = owners.count_documents(filter).await.expect("owners");
    let owner_scan = start.elapsed();
    let keys: Vec<String> = profiles
        .iter()
        .map(|p| format!("{tenant}/{}#2", p.id.as_str()))
        .collect();
    let start = Instant::now();
    let mut cursor = stored
        .find(mongodb::bson::doc! { "_id": { "$in": keys } })
        .await
        .expect("$in");
    let mut n_in = 0;
    while cursor.advance().await.expect("$in cursor") {
        n_in += 1;
    }
    let id_in = start.elapsed();
    assert_eq!((n_owners, n_in), (PROFILES as u64, PROFILES));
    database.drop().await.expect("drop");

    // The bare client on the same documents.
    let database = fresh(&client).await;
    let raw = database.collection::<Document>("profiles");
    let by_index = |op: &'static str| {
        let (raw, documents) = (raw.clone(), documents.clone());
        move |chunk: Vec<DeviceProfile>| {
            let (raw, documents) = (raw.clone(), documents.clone());
            async move {
                for p in &chunk {
                    let n: usize = p.id.as_str()["bench-".len()..].parse().expect("n");
                    let d = documents[n].clone();
                    let id = mongodb::bson::doc! { "_id": d.get("_id").expect("_id").clone() };
                    match op {
                        "insert" => drop(raw.insert_one(d).await.expect("insert_one")),
                        "replace" => drop(raw.replace_one(id, d).await.expect("replace_one")),
                        _ => assert!(raw.find_one(id).await.expect("find_one").is_some()),
                    }
                }
            }
        }
    };
    let bare_insert = timed(&profiles, by_index("insert")).await;
    let bare_replace = timed(&profiles, by_index("replace")).await;
    let bare_find = timed(&profiles, by_index("find")).await;
    database.drop().await.expect("drop");

    println!(
        "{PROFILES} profiles of 14 points, {CONCURRENCY} tasks; load average before {load_before}, after {}",
        load_average()
    );
    for (name, rate, bare_name, bare) in [
        ("hearth create", create, "bare insert_one", bare_insert),
        ("hearth replace", replace, "bare replace_one", bare_replace),
        ("hearth get", get, "bare find_one", bare_find),
    ] {
        println!(
            "  {name:<15} {rate:>7.1}/s   {bare_name:<17} {bare:>7.1}/s   ratio {:.2}x",
            rate / bare
        );
    }
    println!("  hearth list     {list:>7.1} profiles/s (one listing of {PROFILES})");
    println!(
        "  parts: owner records filtered by tenant {:.0} ms, one _id $in over {PROFILES} versions {:.0} ms",
        owner_scan.as_secs_f64() * 1e3,
        id_in.as_secs_f64() * 1e3
    );
}
