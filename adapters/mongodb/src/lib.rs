//! The document store on MongoDB (or anything speaking its wire protocol,
//! such as FerretDB): device profiles as versioned documents, the tenant in
//! every filter, optimistic concurrency through a `version` field.
//!
//! Built for the smallest common server. FerretDB 1.24 has no transactions,
//! change streams, `$group` accumulators, TTL or partial indexes, and its
//! `findAndModify`/`update` are a read followed by a write by `_id`, so a
//! version condition in their filter does not stop a concurrent writer
//! (measured: 4 of 16 racing `find_one_and_replace` calls "won"). The one
//! atomic check it has is the unique `_id` index on insert, so every write
//! is an insert:
//!
//! - `profile_owners` holds one document per profile id, `_id` = the id,
//!   inserted once: the first owner keeps the id forever.
//! - `profiles` holds one document per write, `_id` = `id#version`: of two
//!   writers that read version `v`, exactly one can insert `id#v+1`; the
//!   other gets a duplicate key, which is the `Conflict`. The insert that
//!   succeeds has won; nothing checks again afterwards. The version it
//!   replaced becomes a tombstone (its `_id` only), so no version number is
//!   ever free again.
//! - Reads go by `_id` only (FerretDB's SQLite backend pushes nothing else
//!   down and scans): the owner record, whose `latest` is a hint that may
//!   lag, then `id#latest`, `id#latest+1`, … until the first miss.

mod stored;

use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt as _, TryStreamExt as _};
use hearth_domain::error::{quoted, StoreError};
use hearth_domain::ids::{ProfileId, TenantId};
use hearth_domain::model::DeviceProfile;
use hearth_domain::ports::DocumentStore;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};

pub use stored::SCHEMA_VERSION;

/// The collection holding device profiles, one document per write.
pub const PROFILES: &str = "profiles";
/// The collection recording which owner each profile id belongs to.
pub const PROFILE_OWNERS: &str = "profile_owners";
/// The index that serves every tenant-scoped read: the tenant, then the
/// listing order (profile id), then the newest write first.
pub const TENANT_INDEX: &str = "tenant_id_1_profile_id_1_version_-1";

/// MongoDB's "duplicate key" error code (FerretDB uses the same).
const DUPLICATE_KEY: i32 = 11000;

/// Field of an owner record: a hint at the newest version that won. Raised
/// after each win, it may lag (never lead), so readers probe past it.
const LATEST: &str = "latest";

/// Field marking a superseded version document: its `_id` is kept so the
/// version number can never be written again; its content is gone.
const SUPERSEDED: &str = "superseded";

/// How many profiles a listing reads at once (each read is a few `_id`
/// round trips; this bounds the load one listing puts on the server).
const LIST_CONCURRENCY: usize = 8;

/// How long an operation waits for a reachable server before it fails, when
/// the URL does not say (`serverSelectionTimeoutMS`). The driver's own
/// default of 30 s would hold a request that long during an outage.
const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// [`DocumentStore`] on a MongoDB database.
#[derive(Clone)]
pub struct MongoDocuments {
    database: Database,
    profiles: Collection<Document>,
    owners: Collection<Document>,
}

impl std::fmt::Debug for MongoDocuments {
    // The client's options hold the URL and so the password: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoDocuments")
            .field("database", &self.database.name())
            .finish_non_exhaustive()
    }
}

impl MongoDocuments {
    /// Connects to `url` (`mongodb://…`), uses `database` and creates the
    /// indexes when missing. Fails when the server cannot be reached, so a
    /// wrong URL is reported at start rather than at the first request.
    pub async fn connect(url: &str, database: &str) -> Result<Self, StoreError> {
        check_database_name(database)?;
        // The driver's parse error can quote the URL, password included.
        let mut options = ClientOptions::parse(url).await.map_err(|e| {
            StoreError::Backend(anyhow::anyhow!(
                "not a usable MongoDB URL ({})",
                redacted_kind(&e)
            ))
        })?;
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(DEFAULT_SERVER_SELECTION_TIMEOUT);
        }
        if options.app_name.is_none() {
            options.app_name = Some("hearth".to_owned());
        }
        let client = Client::with_options(options).map_err(backend("creating the client"))?;
        Self::with_database(client.database(database)).await
    }

    /// Uses an existing database handle (tests share one client) and creates
    /// the indexes when missing.
    pub async fn with_database(database: Database) -> Result<Self, StoreError> {
        let profiles = database.collection::<Document>(PROFILES);
        let owners = database.collection::<Document>(PROFILE_OWNERS);
        // Uniqueness is `_id`'s in both collections (always indexed). This
        // one serves the tenant-scoped reads; creating an index that exists
        // with the same keys is a no-op, so every start may do it.
        profiles
            .create_index(
                IndexModel::builder()
                    .keys(doc! { stored::TENANT: 1, stored::PROFILE_ID: 1, stored::VERSION: -1 })
                    .options(
                        IndexOptions::builder()
                            .name(TENANT_INDEX.to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(backend("creating the profile indexes"))?;
        Ok(Self {
            database,
            profiles,
            owners,
        })
    }

    /// One cheap round trip (`ping`), for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map(drop)
            .map_err(backend("ping"))
    }

    /// The database in use.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The write number of the stored profile `id` of `owner` (a tenant, or
    /// `None` for built-ins), or `None` when that owner has no such profile.
    pub async fn stored_version(
        &self,
        owner: Option<TenantId>,
        id: &ProfileId,
    ) -> Result<Option<i64>, StoreError> {
        let owner = owner_bson(owner);
        let found = self
            .newest(id.as_str(), |recorded| *recorded == owner)
            .await?;
        found.map(|document| version_of(&document)).transpose()
    }

    /// Stores `profile` only if its owner's stored copy is still at write
    /// number `expected` (`None`: only if there is none yet), and returns the
    /// new write number. A profile written by someone else since `expected`
    /// was read, or an id another owner holds, is a `Conflict` and changes
    /// nothing a reader sees.
    pub async fn put_profile_if_version(
        &self,
        profile: &DeviceProfile,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        let won = self.insert_next_version(profile, expected).await?;
        self.retire_superseded(profile, expected, won).await;
        Ok(won)
    }

    /// The deciding step of [`Self::put_profile_if_version`]: claims the id
    /// and inserts `id#expected+1`. Its success is the win, full stop: a
    /// writer may read this version and build on it the moment it exists,
    /// so nothing afterwards may take it back (a re-check after the insert
    /// once reported a write that another had built on as a `Conflict`).
    /// Public only so tests can interleave writers between the two steps.
    #[doc(hidden)]
    pub async fn insert_next_version(
        &self,
        profile: &DeviceProfile,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.insert_version(profile, expected, false).await
    }

    async fn insert_version(
        &self,
        profile: &DeviceProfile,
        expected: Option<i64>,
        owner_verified: bool,
    ) -> Result<i64, StoreError> {
        let id = profile.id.as_str();
        if !owner_verified {
            let owner = owner_bson(profile.tenant_id);
            self.claim_id(id, &owner, expected.is_none()).await?;
        }
        let next = expected.unwrap_or(0) + 1;
        let document = stored::write_profile(profile, next).map_err(StoreError::Backend)?;
        // A superseded version keeps its `_id` (as a tombstone, below), so
        // `id#next` is taken whenever version `next` was ever written: a
        // writer that read long ago gets the duplicate key too.
        match self.profiles.insert_one(document).await {
            Ok(_) => Ok(next),
            Err(e) if is_duplicate_key(&e) => Err(changed_meanwhile(id)),
            Err(e) => Err(backend("inserting a profile")(e)),
        }
    }

    /// The housekeeping after a won write: raises the owner record's
    /// `latest` hint and empties the replaced version. Both are by `_id`
    /// alone (FerretDB's SQLite backend scans the whole collection for any
    /// other filter in an update or delete) and both may fail or lose a race
    /// harmlessly: readers probe forward from the hint to the newest version,
    /// and an old version's content is never read once a newer one exists.
    /// It returns nothing on purpose: the write has already won.
    #[doc(hidden)]
    pub async fn retire_superseded(
        &self,
        profile: &DeviceProfile,
        expected: Option<i64>,
        won: i64,
    ) {
        let id = profile.id.as_str();
        // On FerretDB `$max` is a read then a write, so two writers can
        // leave the lower of their versions here: the hint only lags, and
        // a lagging hint costs a reader one more probe.
        if let Err(e) = self
            .owners
            .update_one(doc! { stored::ID: id }, doc! { "$max": { LATEST: won } })
            .await
        {
            tracing::warn!(error = %e, "Could not raise a profile's latest-version hint; readers probe forward.");
        }
        // The replaced version becomes a tombstone rather than being deleted:
        // deleting it would free `id#expected` for a writer that read
        // `expected - 1` long ago, whose insert would then succeed unseen
        // behind the newer versions. A tombstone holds the `_id` only.
        if let Some(replaced) = expected {
            let key = stored::version_id(id, replaced);
            if let Err(e) = self
                .profiles
                .replace_one(
                    doc! { stored::ID: &key },
                    doc! { stored::ID: &key, SUPERSEDED: true },
                )
                .await
            {
                tracing::warn!(error = %e, "Could not empty a superseded profile version; it stays readable history only.");
            }
        }
    }

    /// The newest stored version of `id` when its owner record's tenant
    /// passes `visible`, else `None`. Only `_id` lookups: the owner record,
    /// then `id#hint`, `id#hint+1`, … until one is missing. Versions are
    /// inserted in sequence and never removed (superseded ones become
    /// tombstones only once their successor exists), so the first miss ends
    /// the chain and the last hit is the newest.
    async fn newest(
        &self,
        id: &str,
        visible: impl Fn(&Bson) -> bool,
    ) -> Result<Option<Document>, StoreError> {
        let Some(owner) = self
            .owners
            .find_one(doc! { stored::ID: id })
            .await
            .map_err(backend("reading a profile owner"))?
        else {
            return Ok(None);
        };
        if !visible(owner.get(stored::TENANT).unwrap_or(&Bson::Null)) {
            return Ok(None);
        }
        self.newest_of(id, &owner).await
    }

    /// The newest stored version of `id`, probing from the hint in its
    /// (already read and authorised) owner record.
    async fn newest_of(&self, id: &str, owner: &Document) -> Result<Option<Document>, StoreError> {
        let hint = match owner.get(LATEST) {
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Int32(v)) => i64::from(*v),
            // An owner record from before the hint existed (that layout
            // deleted old versions, so there is no chain to probe).
            _ => return self.newest_by_filter(id, owner.get(stored::TENANT)).await,
        };
        let mut newest: Option<Document> = None;
        // Version 0 is never written: a hint of 0 starts the probe at 1.
        let mut version = hint.max(1);
        while let Some(found) = self
            .profiles
            .find_one(doc! { stored::ID: stored::version_id(id, version) })
            .await
            .map_err(backend("reading a profile"))?
        {
            newest = Some(found);
            version += 1;
        }
        match newest {
            Some(document) if document.get_bool(SUPERSEDED).unwrap_or(false) => {
                Err(StoreError::Backend(anyhow::anyhow!(
                    "profile `{}`: version {} is superseded but no newer one is stored",
                    quoted(id),
                    version - 1
                )))
            }
            other => Ok(other),
        }
    }

    /// The newest version by a filtered, sorted query: slow on FerretDB,
    /// used only for owner records written before the `latest` hint.
    async fn newest_by_filter(
        &self,
        id: &str,
        owner: Option<&Bson>,
    ) -> Result<Option<Document>, StoreError> {
        self.profiles
            .find_one(doc! { stored::PROFILE_ID: id, stored::TENANT: owner.cloned().unwrap_or(Bson::Null) })
            .sort(doc! { stored::VERSION: -1 })
            .await
            .map_err(backend("reading a profile"))
    }

    /// Makes sure `id` belongs to `owner`, recording it when nobody holds it
    /// (the unique `_id` lets exactly one owner have it). The record is read
    /// by `_id` alone and its tenant compared here, so another owner's record
    /// only ever counts as "taken". Checked on every write: a write naming
    /// an expected version must not add a version to another tenant's
    /// profile. A creation tries the insert first, a replacement the lookup
    /// first: each then usually needs one round trip.
    async fn claim_id(&self, id: &str, owner: &Bson, creating: bool) -> Result<(), StoreError> {
        if !creating && self.owner_recorded(id, owner).await? {
            return Ok(());
        }
        let claim = doc! { stored::ID: id, stored::TENANT: owner.clone(), LATEST: 0_i64 };
        match self.owners.insert_one(&claim).await {
            Ok(_) => return Ok(()),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(backend("recording a profile owner")(e)),
        }
        // Held already: by this owner (a concurrent creation of the same
        // profile) or by another one.
        if self.owner_recorded(id, owner).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "profile id `{}` is taken",
                quoted(id)
            )))
        }
    }

    async fn owner_recorded(&self, id: &str, owner: &Bson) -> Result<bool, StoreError> {
        self.owners
            .find_one(doc! { stored::ID: id })
            .await
            .map(|found| {
                found.is_some_and(|d| d.get(stored::TENANT).unwrap_or(&Bson::Null) == owner)
            })
            .map_err(backend("reading a profile owner"))
    }
}

#[async_trait]
impl DocumentStore for MongoDocuments {
    async fn put_profile(&self, profile: &DeviceProfile) -> Result<(), StoreError> {
        let current = self.stored_version(profile.tenant_id, &profile.id).await?;
        // A version found means the owner record named this tenant, and
        // owner records never change owner: the claim check can be skipped.
        let won = self
            .insert_version(profile, current, current.is_some())
            .await?;
        self.retire_superseded(profile, current, won).await;
        Ok(())
    }

    async fn profile(
        &self,
        tenant: TenantId,
        id: &ProfileId,
    ) -> Result<Option<DeviceProfile>, StoreError> {
        self.newest(id.as_str(), |owner| visible_to(tenant, owner))
            .await?
            .map(stored::read_profile)
            .transpose()
            .map_err(StoreError::Backend)
    }

    async fn profiles(&self, tenant: TenantId) -> Result<Vec<DeviceProfile>, StoreError> {
        // The owner records name every profile id with its tenant: one small
        // document per profile, so filtering them (a scan on FerretDB's
        // SQLite backend) stays cheap next to scanning every version. Each
        // visible id is then read by `_id` probes, a few at a time.
        let owners: Vec<Document> = self
            .owners
            .find(doc! { stored::TENANT: { "$in": [Bson::Null, tenant.to_string()] } })
            .sort(doc! { stored::ID: 1 })
            .await
            .map_err(backend("listing profiles"))?
            .try_collect()
            .await
            .map_err(backend("listing profiles"))?;
        // The owner records just read carry the hints: no second read each.
        let visible: Vec<(String, Document)> = owners
            .into_iter()
            .filter(|owner| visible_to(tenant, owner.get(stored::TENANT).unwrap_or(&Bson::Null)))
            .filter_map(|owner| Some((owner.get_str(stored::ID).ok()?.to_owned(), owner)))
            .collect();
        let found: Vec<Option<Document>> = futures::stream::iter(visible)
            .map(|(id, owner)| async move { self.newest_of(&id, &owner).await })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        found
            .into_iter()
            .flatten()
            .map(|document| stored::read_profile(document).map_err(StoreError::Backend))
            .collect()
    }
}

/// `tenant_id` as stored: the tenant's id, or `null` for a built-in.
fn owner_bson(owner: Option<TenantId>) -> Bson {
    match owner {
        Some(tenant) => Bson::String(tenant.to_string()),
        None => Bson::Null,
    }
}

/// Whether a profile owned by `owner` (as stored) is visible to `tenant`:
/// built-ins (`null`) and its own, nothing else (a missing or odd value
/// is nobody's).
fn visible_to(tenant: TenantId, owner: &Bson) -> bool {
    match owner {
        Bson::Null => true,
        Bson::String(s) => *s == tenant.to_string(),
        _ => false,
    }
}

/// A database name MongoDB accepts (its documented restrictions), checked
/// here so a bad one fails at start with a clear message.
fn check_database_name(name: &str) -> Result<(), StoreError> {
    let bad = name.is_empty()
        || name.len() > 63
        || name.chars().any(|c| {
            matches!(
                c,
                '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
            )
        });
    if bad {
        return Err(StoreError::Backend(anyhow::anyhow!(
            "database name `{}` is not usable: 1 to 63 characters without /\\. \"$*<>:|?",
            quoted(name)
        )));
    }
    Ok(())
}

fn version_of(document: &Document) -> Result<i64, StoreError> {
    match document.get(stored::VERSION) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        other => Err(StoreError::Backend(anyhow::anyhow!(
            "stored profile {:?} has version {other:?}, not an integer",
            document.get(stored::ID)
        ))),
    }
}

fn changed_meanwhile(id: &str) -> StoreError {
    StoreError::Conflict(format!(
        "profile `{}` was changed by someone else; read it again",
        quoted(id)
    ))
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// The kind of a driver error without its message (which may quote a URL).
fn redacted_kind(error: &mongodb::error::Error) -> &'static str {
    match error.kind.as_ref() {
        ErrorKind::InvalidArgument { .. } => "invalid argument",
        ErrorKind::Authentication { .. } => "authentication",
        ErrorKind::DnsResolve { .. } => "DNS resolution",
        _ => "unusable",
    }
}

/// Wraps a driver error as a backend failure, saying what was being done.
/// A server that cannot be reached (refused, reset, timed out, no server
/// selectable, pool cleared, shutting down) is `Unavailable`: the use case
/// may succeed when retried later.
fn backend(doing: &'static str) -> impl Fn(mongodb::error::Error) -> StoreError {
    move |e| {
        let outage = is_outage(&e);
        let e = anyhow::Error::new(e).context(format!("MongoDB: {doing}"));
        if outage {
            StoreError::Unavailable(e)
        } else {
            StoreError::Backend(e)
        }
    }
}

fn is_outage(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => true,
        // The server's own "shutting down" / "not primary" codes, and the
        // label the driver puts on every retryable network failure.
        ErrorKind::Command(e) => matches!(e.code, 91 | 189 | 11600 | 11602 | 10107 | 13435),
        _ => error.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR),
    }
}
