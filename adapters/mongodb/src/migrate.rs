//! Moves documents stored by an older Hearth into the current layout, once,
//! on start. The marker document `hearth_meta/documents_layout` records the
//! layout a database is in; without it a database is in layout 1 (or empty).
//!
//! Layout 1 keyed profiles by their id alone (`profile_owners/<id>` with the
//! tenant in a field, `profiles/<id>#<n>`), so a lookup for one tenant read
//! another tenant's owner record and compared the tenant in code. Layout 2
//! puts the owner into every key (`<tenant>/<id>`, `shared/<id>` for
//! built-ins) and keeps the global claim of an id in `profile_ids`.
//!
//! The move is idempotent and safe to interrupt at any point: it only
//! inserts (a duplicate key means "done already") until every profile has
//! its new head record, and a profile's head record is written last, after
//! its claim, its tombstones and its newest version. Only then are the old
//! documents deleted (each by `_id` alone) and the marker written. A run
//! that stops half-way is finished by the next start; two replicas
//! starting at once do the same inserts and both succeed.
//!
//! Not covered: an older Hearth still writing layout 1 while a newer one
//! has migrated (upgrade every replica together).

use futures::TryStreamExt as _;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::options::InsertManyOptions;
use mongodb::{Collection, Database};

use hearth_domain::error::{quoted, StoreError};

use crate::chain::{self, ID, LATEST, SUPERSEDED};
use crate::{backend, is_duplicate_key, stored, version_of, PROFILES, PROFILE_IDS, PROFILE_OWNERS};

/// The collection of store metadata.
pub const META: &str = "hearth_meta";
/// The `_id` of the marker recording the layout of the database.
pub const LAYOUT_MARKER: &str = "documents_layout";
/// The layout this build reads and writes.
pub const LAYOUT_VERSION: i64 = 2;

/// How a call of [`ensure_layout`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// The marker said the database is in the current layout: nothing read.
    UpToDate,
    /// Moved this many profiles (0 on a fresh database) and wrote the marker.
    Migrated { profiles: usize },
    /// Stopped after the step budget, as a crash would: run it again.
    Interrupted,
}

/// Brings the database to [`LAYOUT_VERSION`]. `budget` stops the run after
/// that many writes that changed something, as a crash would (tests stop a
/// migration half-way with it); `None` runs to the end. Refuses a database marked with a newer layout.
pub async fn ensure_layout(
    database: &Database,
    budget: Option<usize>,
) -> Result<Migration, StoreError> {
    let meta = database.collection::<Document>(META);
    let marker = meta
        .find_one(doc! { ID: LAYOUT_MARKER })
        .await
        .map_err(backend("reading the layout marker"))?;
    if let Some(marker) = marker {
        let version = match marker.get("version") {
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Int32(v)) => i64::from(*v),
            other => {
                return Err(StoreError::Backend(anyhow::anyhow!(
                    "{META}/{LAYOUT_MARKER} holds version {other:?}, not an integer"
                )))
            }
        };
        if version == LAYOUT_VERSION {
            return Ok(Migration::UpToDate);
        }
        if version > LAYOUT_VERSION {
            return Err(StoreError::Backend(anyhow::anyhow!(
                "the documents are in layout {version}, which this build cannot read \
                 (it knows up to {LAYOUT_VERSION}); was the database written by a newer Hearth?"
            )));
        }
    }
    let mut steps = Steps(budget);
    match migrate_profiles(database, &mut steps).await {
        Ok(profiles) => {
            meta.update_one(
                doc! { ID: LAYOUT_MARKER },
                doc! { "$set": { "version": LAYOUT_VERSION } },
            )
            .upsert(true)
            .await
            .map_err(backend("writing the layout marker"))?;
            if profiles > 0 {
                tracing::info!(
                    profiles,
                    layout = LAYOUT_VERSION,
                    "Moved stored profiles to the current document layout."
                );
            }
            Ok(Migration::Migrated { profiles })
        }
        Err(Stop::Budget) => Ok(Migration::Interrupted),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// How many more writes that change something a run may make before it
/// stops as if it crashed (`None`: no limit). Writes that find their work
/// done (a duplicate key, nothing to delete) do not count, so a run that
/// is allowed one write always gets one step further.
struct Steps(Option<usize>);

impl Steps {
    /// Counts a write; `Err(Stop::Budget)` once the budget is used up.
    fn wrote(&mut self, changed: bool) -> Result<(), Stop> {
        match &mut self.0 {
            Some(left) if changed => {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    Err(Stop::Budget)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

enum Stop {
    Budget,
    Failed(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Failed(e)
    }
}

/// Whether `key` is one of layout 1 (no owner part).
fn is_layout_1(key: &str) -> bool {
    !key.contains('/')
}

async fn migrate_profiles(database: &Database, steps: &mut Steps) -> Result<usize, Stop> {
    let owners = database.collection::<Document>(PROFILE_OWNERS);
    let versions = database.collection::<Document>(PROFILES);
    let claims = database.collection::<Document>(PROFILE_IDS);
    let all_owners: Vec<Document> = owners
        .find(doc! {})
        .await
        .map_err(backend("reading profile owners to migrate"))?
        .try_collect()
        .await
        .map_err(backend("reading profile owners to migrate"))?;
    let old_owners: Vec<Document> = all_owners
        .into_iter()
        .filter(|d| d.get_str(ID).is_ok_and(is_layout_1))
        .collect();

    // Phase 1: every old profile gets its claim, tombstones, newest version
    // and, last, its head record, by inserts only.
    let mut moved = 0;
    for old in &old_owners {
        let id = old
            .get_str(ID)
            .map_err(|_| odd("an owner record without a string _id"))?;
        let tenant = old.get(stored::TENANT).cloned().unwrap_or(Bson::Null);
        let owner = match &tenant {
            Bson::Null => stored::SHARED.to_owned(),
            Bson::String(t) if !t.contains(['/', '#']) && t != stored::SHARED => t.clone(),
            other => {
                return Err(odd(&format!("profile `{}` has owner {other:?}", quoted(id))).into())
            }
        };
        let head = chain::head_id(&owner, id);
        if owners
            .find_one(doc! { ID: &head })
            .await
            .map_err(backend("reading a profile head"))?
            .is_some()
        {
            continue; // moved by an earlier (interrupted) run
        }
        let newest = old_newest(&versions, id, old).await?;

        match claims.insert_one(doc! { ID: id, "owner": &owner }).await {
            Ok(_) => steps.wrote(true)?,
            Err(e) if is_duplicate_key(&e) => {
                let mine = claims
                    .find_one(doc! { ID: id, "owner": &owner })
                    .await
                    .map_err(backend("reading a profile id claim"))?;
                if mine.is_none() {
                    return Err(odd(&format!(
                        "profile id `{}` is claimed by another owner than its stored one",
                        quoted(id)
                    ))
                    .into());
                }
            }
            Err(e) => return Err(backend("claiming a profile id")(e).into()),
        }
        // An owner record without any version: the claim was all there was.
        let Some(mut newest) = newest else {
            continue;
        };
        let version = version_of(&newest)?;
        if version > 1 {
            // Versions below the newest stay taken, as they were: a writer
            // that read one of them must still lose.
            let tombstones: Vec<Document> = (1..version)
                .map(|v| doc! { ID: chain::version_id(&head, v), SUPERSEDED: true })
                .collect();
            let inserted = insert_all_new(&versions, tombstones).await?;
            steps.wrote(inserted)?;
        }
        newest.insert(ID, chain::version_id(&head, version));
        match versions.insert_one(&newest).await {
            Ok(_) => steps.wrote(true)?,
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(backend("copying a profile version")(e).into()),
        }
        moved += 1;
        match owners
            .insert_one(
                doc! { ID: &head, stored::TENANT: tenant, stored::PROFILE_ID: id, LATEST: version },
            )
            .await
        {
            Ok(_) => steps.wrote(true)?,
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(backend("recording a profile head")(e).into()),
        }
    }

    // Phase 2: the old version documents and tombstones, each by `_id`.
    let old_versions: Vec<String> = versions
        .find(doc! {})
        .projection(doc! { ID: 1 })
        .await
        .map_err(backend("reading profile versions to migrate"))?
        .try_collect::<Vec<Document>>()
        .await
        .map_err(backend("reading profile versions to migrate"))?
        .into_iter()
        .filter_map(|d| {
            d.get_str(ID)
                .ok()
                .filter(|k| is_layout_1(k))
                .map(str::to_owned)
        })
        .collect();
    for key in old_versions {
        let deleted = versions
            .delete_one(doc! { ID: key })
            .await
            .map_err(backend("deleting a migrated profile version"))?;
        steps.wrote(deleted.deleted_count > 0)?;
    }
    // Phase 3: the old owner records, last, so a run interrupted before
    // here still finds every profile to check.
    for old in &old_owners {
        if let Ok(id) = old.get_str(ID) {
            let deleted = owners
                .delete_one(doc! { ID: id })
                .await
                .map_err(backend("deleting a migrated profile owner"))?;
            steps.wrote(deleted.deleted_count > 0)?;
        }
    }
    Ok(moved)
}

/// The newest layout-1 version of profile `id`: probed from the owner
/// record's `latest` hint, or, for records from before the hint (which
/// deleted older versions), found by a filtered query.
async fn old_newest(
    versions: &Collection<Document>,
    id: &str,
    owner: &Document,
) -> Result<Option<Document>, StoreError> {
    if matches!(owner.get(LATEST), Some(Bson::Int64(_) | Bson::Int32(_))) {
        let probing = chain::Chain {
            heads: versions.clone(),
            versions: versions.clone(),
        };
        return probing.newest(id, owner).await;
    }
    versions
        .find_one(doc! {
            stored::PROFILE_ID: id,
            stored::TENANT: owner.get(stored::TENANT).cloned().unwrap_or(Bson::Null),
        })
        .sort(doc! { stored::VERSION: -1 })
        .await
        .map_err(backend("reading a profile to migrate"))
}

/// Inserts `documents`, skipping those whose `_id` exists already; whether
/// any was new.
async fn insert_all_new(
    versions: &Collection<Document>,
    documents: Vec<Document>,
) -> Result<bool, StoreError> {
    let count = documents.len();
    match versions
        .insert_many(documents)
        .with_options(InsertManyOptions::builder().ordered(false).build())
        .await
    {
        Ok(_) => Ok(true),
        Err(e) => match e.kind.as_ref() {
            ErrorKind::InsertMany(failure)
                if failure.write_concern_error.is_none()
                    && failure.write_errors.as_ref().is_some_and(|errors| {
                        errors.iter().all(|w| w.code == crate::DUPLICATE_KEY)
                    }) =>
            {
                Ok(failure.write_errors.as_ref().map_or(0, Vec::len) < count)
            }
            _ => Err(backend("writing migrated tombstones")(e)),
        },
    }
}

fn odd(what: &str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!(
        "cannot migrate the stored profiles: {what}"
    ))
}
