//! Benchmark: profiles written per second through [`MongoDocuments`], as a
//! ratio to the bare `mongodb` client writing the same profiles, against the
//! server in `HEARTH_TEST_MONGODB_URL` (CI's FerretDB; skipped without it).
//!
//! - "hearth create": `put_profile` of new profiles. Each is four round
//!   trips: the owner's version (a find), the owner record (an insert), the
//!   write itself (an insert) and the newest-version check (a find).
//!   "hearth replace" adds the delete of the replaced version (by `_id`).
//!
//! On FerretDB 1.24's SQLite backend the two version finds (filter on
//! `profile_id` and `tenant_id`, sorted by `version`) read the whole
//! collection: their cost grows with every profile stored, so this bench
//! writes 100 profiles (300 took minutes). Real MongoDB answers them from
//! the `tenant_id_1_profile_id_1_version_-1` index.
//! - "hearth replace": `put_profile` over each of those profiles again.
//! - "bare insert_one": `insert_one` of each profile serialised with the
//!   domain's own serde (same content, flattened shape): one round trip.
//! - "bare insert_many": the same documents in batches of 1,000 (reference).
//!
//! Each scenario writes `PROFILES` profiles of 14 points with `CONCURRENCY`
//! tasks into a fresh database; scenarios run in interleaved rounds of the
//! same run, and the figure that matters is the ratio.

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
const ROUNDS: usize = 1;

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

#[tokio::main]
async fn main() {
    let Ok(url) = std::env::var("HEARTH_TEST_MONGODB_URL") else {
        let _ = writeln!(
            std::io::stderr(),
            "put_throughput did NOT run: HEARTH_TEST_MONGODB_URL is not set (see .ci/extra.d/20-ferretdb.sh)"
        );
        return;
    };
    let client = Client::with_uri_str(&url).await.expect("client");
    let tenant = TenantId::new();
    let profiles: Vec<DeviceProfile> = (0..PROFILES).map(|n| profile(n, tenant)).collect();
    let mut results: Vec<(&str, Vec<f64>)> = vec![
        ("hearth create", Vec::new()),
        ("hearth replace", Vec::new()),
        ("bare insert_one", Vec::new()),
        ("bare insert_many", Vec::new()),
    ];
    for _ in 0..ROUNDS {
        let database = fresh(&client).await;
        let store = MongoDocuments::with_database(database.clone())
            .await
            .expect("store");
        // Create first, then replace the same profiles.
        for (_, rates) in results.iter_mut().take(2) {
            let store = store.clone();
            rates.push(
                timed(&profiles, move |chunk| {
                    let store = store.clone();
                    async move {
                        for p in &chunk {
                            store.put_profile(p).await.expect("put_profile");
                        }
                    }
                })
                .await,
            );
        }
        database.drop().await.expect("drop");

        let documents: Vec<Document> = profiles
            .iter()
            .map(|p| mongodb::bson::to_document(p).expect("profile as BSON"))
            .collect();
        let database = fresh(&client).await;
        let raw = database.collection::<Document>("profiles");
        let one = raw.clone();
        results[2].1.push(
            timed(&profiles, move |chunk| {
                let raw = one.clone();
                async move {
                    for p in &chunk {
                        let d = mongodb::bson::to_document(p).expect("profile as BSON");
                        raw.insert_one(d).await.expect("insert_one");
                    }
                }
            })
            .await,
        );
        database.drop().await.expect("drop");
        let database = fresh(&client).await;
        let raw = database.collection::<Document>("profiles");
        let start = Instant::now();
        for batch in documents.chunks(1_000) {
            raw.insert_many(batch).await.expect("insert_many");
        }
        results[3]
            .1
            .push(documents.len() as f64 / start.elapsed().as_secs_f64());
        database.drop().await.expect("drop");
    }
    let median = |rates: &[f64]| {
        let mut sorted = rates.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let bare = median(&results[2].1);
    println!("{PROFILES} profiles of 14 points, {CONCURRENCY} writers, {ROUNDS} round(s), median:");
    for (name, rates) in &results {
        let m = median(rates);
        println!(
            "  {name:<17} {m:>9.0} profiles/s  ({:.2}x bare insert_one)  rounds: {rates:.0?}",
            m / bare
        );
    }
}
