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
//!   other gets a duplicate key, which is the `Conflict`. Reads take the
//!   highest version; older ones are deleted after each write.

mod stored;

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt as _;
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
        let found = self
            .profiles
            .find_one(doc! { stored::PROFILE_ID: id.as_str(), stored::TENANT: owner_bson(owner) })
            .sort(doc! { stored::VERSION: -1 })
            .projection(doc! { stored::VERSION: 1 })
            .await
            .map_err(backend("reading a profile version"))?;
        found.map(|d| version_of(&d)).transpose()
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
        let id = profile.id.as_str();
        let owner = owner_bson(profile.tenant_id);
        self.claim_id(id, &owner, expected.is_none()).await?;
        let next = expected.unwrap_or(0) + 1;
        let document = stored::write_profile(profile, next).map_err(StoreError::Backend)?;
        match self.profiles.insert_one(document).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => return Err(changed_meanwhile(id)),
            Err(e) => return Err(backend("inserting a profile")(e)),
        }
        // A writer that read long ago may find `id#next` free again because
        // the cleanup below removed it after newer writes. Versions only
        // grow and the newest is never deleted, so a newer one still exists
        // then: seeing one means this write lost and must not count.
        let newest = self.stored_version(profile.tenant_id, &profile.id).await?;
        // Deletes name `_id` alone: FerretDB's SQLite backend (CI's server)
        // runs a delete with any other field in its filter as a full scan
        // (measured 0.13-0.41 s per delete at 300 profiles, against 0.04 s by
        // `_id` alone). Both documents are this owner's: the claim above
        // made the id this owner's, and `id#n` names the id.
        if newest != Some(next) {
            self.delete_quietly(doc! { stored::ID: stored::version_id(id, next) })
                .await;
            return Err(changed_meanwhile(id));
        }
        // Readers take the newest version, so leftovers are harmless; the one
        // this write replaces is removed to keep one document per profile (a
        // failure here, or a leftover of an older failure, stays harmless).
        if let Some(replaced) = expected {
            self.delete_quietly(doc! { stored::ID: stored::version_id(id, replaced) })
                .await;
        }
        Ok(next)
    }

    /// Makes sure `id` belongs to `owner`, recording it when nobody holds it
    /// (the unique `_id` lets exactly one owner have it). Lookups carry the
    /// tenant in the filter, so another owner's record is never read, only
    /// found missing. Checked on every write: a write naming an expected
    /// version must not add a version to another tenant's profile. A
    /// creation tries the insert first, a replacement the lookup first: each
    /// then usually needs one round trip.
    async fn claim_id(&self, id: &str, owner: &Bson, creating: bool) -> Result<(), StoreError> {
        let claim = doc! { stored::ID: id, stored::TENANT: owner.clone() };
        if !creating && self.owner_recorded(&claim).await? {
            return Ok(());
        }
        match self.owners.insert_one(&claim).await {
            Ok(_) => return Ok(()),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(backend("recording a profile owner")(e)),
        }
        // Held already: by this owner (a concurrent creation of the same
        // profile) or by another one.
        if self.owner_recorded(&claim).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "profile id `{}` is taken",
                quoted(id)
            )))
        }
    }

    async fn owner_recorded(&self, claim: &Document) -> Result<bool, StoreError> {
        self.owners
            .find_one(claim.clone())
            .await
            .map(|found| found.is_some())
            .map_err(backend("reading a profile owner"))
    }

    async fn delete_quietly(&self, filter: Document) {
        if let Err(e) = self.profiles.delete_many(filter).await {
            tracing::warn!(error = %e, "Could not delete superseded profile versions; the next write retries.");
        }
    }
}

#[async_trait]
impl DocumentStore for MongoDocuments {
    async fn put_profile(&self, profile: &DeviceProfile) -> Result<(), StoreError> {
        let current = self.stored_version(profile.tenant_id, &profile.id).await?;
        self.put_profile_if_version(profile, current)
            .await
            .map(|_| ())
    }

    async fn profile(
        &self,
        tenant: TenantId,
        id: &ProfileId,
    ) -> Result<Option<DeviceProfile>, StoreError> {
        let found = self
            .profiles
            .find_one(doc! { stored::PROFILE_ID: id.as_str(), stored::TENANT: visible_to(tenant) })
            .sort(doc! { stored::VERSION: -1 })
            .await
            .map_err(backend("reading a profile"))?;
        found
            .map(stored::read_profile)
            .transpose()
            .map_err(StoreError::Backend)
    }

    async fn profiles(&self, tenant: TenantId) -> Result<Vec<DeviceProfile>, StoreError> {
        // Newest write first within each id, so the first document of an id
        // is the one to keep (no `$group` on FerretDB to do it server-side).
        let documents: Vec<Document> = self
            .profiles
            .find(doc! { stored::TENANT: visible_to(tenant) })
            .sort(doc! { stored::PROFILE_ID: 1, stored::VERSION: -1 })
            .await
            .map_err(backend("listing profiles"))?
            .try_collect()
            .await
            .map_err(backend("listing profiles"))?;
        let mut newest = Vec::new();
        let mut last_id: Option<String> = None;
        for document in documents {
            let id = document.get_str(stored::PROFILE_ID).ok().map(str::to_owned);
            if id.is_some() && id == last_id {
                continue;
            }
            last_id = id;
            newest.push(stored::read_profile(document).map_err(StoreError::Backend)?);
        }
        Ok(newest)
    }
}

/// `tenant_id` as stored: the tenant's id, or `null` for a built-in.
fn owner_bson(owner: Option<TenantId>) -> Bson {
    match owner {
        Some(tenant) => Bson::String(tenant.to_string()),
        None => Bson::Null,
    }
}

/// The `tenant_id` condition of a read by `tenant`: built-ins and its own.
fn visible_to(tenant: TenantId) -> Document {
    doc! { "$in": [Bson::Null, tenant.to_string()] }
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
