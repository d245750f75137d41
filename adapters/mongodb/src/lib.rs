//! The document store on MongoDB (or anything speaking its wire protocol,
//! such as FerretDB): device profiles and alarm rules as versioned
//! documents, the tenant in every key and filter, optimistic concurrency
//! through the version in each document's `_id`.
//!
//! Built for the smallest common server. FerretDB 1.24 has no transactions,
//! change streams, `$group` accumulators, TTL or partial indexes, and its
//! `findAndModify`/`update` are a read followed by a write by `_id`, so a
//! version condition in their filter does not stop a concurrent writer
//! (measured: 4 of 16 racing `find_one_and_replace` calls "won"). The one
//! atomic check it has is the unique `_id` index on insert, so every write
//! is an insert:
//!
//! - `profile_ids` holds one claim per profile id (`_id` = the id, `owner`),
//!   inserted once: the first owner keeps the id forever. It is read only
//!   when a claim collides, and then with the owner in the filter.
//! - `profile_owners` holds one head record per owned profile, `_id` =
//!   `<tenant>/<id>` (`shared/<id>` for built-ins), with a `latest` hint.
//! - `profiles` holds one document per write, `_id` = `<tenant>/<id>#<n>`:
//!   of two writers that read version `n`, exactly one can insert `#n+1`;
//!   the other gets a duplicate key, which is the `Conflict`. The insert
//!   that succeeds has won; nothing checks again afterwards. The version it
//!   replaced becomes a tombstone (its `_id` only), so no version number is
//!   ever free again.
//! - Reads go by `_id` only (FerretDB's SQLite backend pushes nothing else
//!   down and scans), and every `_id` a read for tenant A builds starts with
//!   A's id or `shared/`: it cannot name tenant B's documents.
//!
//! Documents stored by an older Hearth in the layout without owners in the
//! keys are moved on start ([`migrate`]); alarm rules follow the same scheme
//! ([`alarm_rules`]).

mod alarm_rules;
mod chain;
pub mod migrate;
mod stored;
mod stored_alarm_rule;

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

use chain::{Chain, LATEST};

pub use alarm_rules::{ALARM_RULES, ALARM_RULE_HEADS, ALARM_RULE_IDS};
pub use migrate::{LAYOUT_MARKER, LAYOUT_VERSION, META};
pub use stored::SCHEMA_VERSION;

/// The collection holding device profiles, one document per write.
pub const PROFILES: &str = "profiles";
/// The collection of head records, one per owned profile (`<owner>/<id>`).
pub const PROFILE_OWNERS: &str = "profile_owners";
/// The collection of profile id claims: which owner holds each id.
pub const PROFILE_IDS: &str = "profile_ids";
/// The index that serves tenant-scoped queries on the profile versions: the
/// tenant, then the listing order (profile id), then the newest write first.
pub const TENANT_INDEX: &str = "tenant_id_1_profile_id_1_version_-1";
/// The index on the head records' tenant, which a listing filters by.
pub const OWNER_TENANT_INDEX: &str = "tenant_id_1";

/// MongoDB's "duplicate key" error code (FerretDB uses the same).
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// Field of a claim: the owner key (`<tenant>` or `shared`) holding the id.
const OWNER: &str = "owner";

/// How many documents a listing reads at once (each read is a few `_id`
/// round trips; this bounds the load one listing puts on the server).
pub(crate) const LIST_CONCURRENCY: usize = 8;

/// How long an operation waits for a reachable server before it fails, when
/// the URL does not say (`serverSelectionTimeoutMS`). The driver's own
/// default of 30 s would hold a request that long during an outage.
const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// [`DocumentStore`] (and [`hearth_domain::ports::AlarmRuleStore`]) on a
/// MongoDB database.
#[derive(Clone)]
pub struct MongoDocuments {
    database: Database,
    profiles: Chain,
    claims: Collection<Document>,
    rules: alarm_rules::RuleCollections,
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
    /// Connects to `url` (`mongodb://…`), uses `database`, moves documents
    /// of an older layout and creates the indexes when missing. Fails when
    /// the server cannot be reached, so a wrong URL is reported at start
    /// rather than at the first request.
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

    /// Uses an existing database handle (tests share one client): moves
    /// documents of an older layout and creates the indexes when missing.
    pub async fn with_database(database: Database) -> Result<Self, StoreError> {
        migrate::ensure_layout(&database, None).await?;
        let profiles = Chain {
            heads: database.collection::<Document>(PROFILE_OWNERS),
            versions: database.collection::<Document>(PROFILES),
        };
        // Uniqueness is `_id`'s in every collection (always indexed). These
        // serve the tenant-scoped queries; creating an index that exists
        // with the same keys is a no-op, so every start may do it.
        profiles
            .versions
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
        profiles
            .heads
            .create_index(
                IndexModel::builder()
                    .keys(doc! { stored::TENANT: 1 })
                    .options(
                        IndexOptions::builder()
                            .name(OWNER_TENANT_INDEX.to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(backend("creating the profile indexes"))?;
        let rules = alarm_rules::RuleCollections::open(&database).await?;
        Ok(Self {
            claims: database.collection::<Document>(PROFILE_IDS),
            database,
            profiles,
            rules,
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
        let head = stored::profile_head_id(owner, id.as_str());
        let Some(record) = self.profiles.head(&head).await? else {
            return Ok(None);
        };
        let found = self.profiles.newest(&head, &record).await?;
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
    /// and inserts `<owner>/<id>#expected+1`. Its success is the win, full
    /// stop: a writer may read this version and build on it the moment it
    /// exists, so nothing afterwards may take it back (a re-check after the
    /// insert once reported a write that another had built on as a
    /// `Conflict`). Public only so tests can interleave writers between the
    /// two steps.
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
            self.claim_id(profile, expected.is_none()).await?;
        }
        let next = expected.unwrap_or(0) + 1;
        let document = stored::write_profile(profile, next).map_err(StoreError::Backend)?;
        // A superseded version keeps its `_id` (as a tombstone), so
        // `#next` is taken whenever version `next` was ever written: a
        // writer that read long ago gets the duplicate key too.
        if self.profiles.insert_version(document).await? {
            Ok(next)
        } else {
            Err(changed_meanwhile(id))
        }
    }

    /// The housekeeping after a won write: raises the head record's
    /// `latest` hint and empties the replaced version ([`Chain::retire`]).
    #[doc(hidden)]
    pub async fn retire_superseded(
        &self,
        profile: &DeviceProfile,
        expected: Option<i64>,
        won: i64,
    ) {
        let head = stored::profile_head_id(profile.tenant_id, profile.id.as_str());
        self.profiles.retire(&head, expected, won).await;
    }

    /// Makes sure `profile`'s id belongs to its owner, claiming it when
    /// nobody holds it (the unique `_id` of the claim lets exactly one owner
    /// have it), and that the owner's head record exists. The owner's own
    /// head record proves the claim (it is only written after the claim
    /// succeeded); a colliding claim is read with the owner in the filter,
    /// so another owner's claim only ever counts as "taken". Checked on
    /// every write: a write naming an expected version must not add a
    /// version to another tenant's profile. A creation tries the insert
    /// first, a replacement the head lookup first: each then usually needs
    /// one round trip.
    async fn claim_id(&self, profile: &DeviceProfile, creating: bool) -> Result<(), StoreError> {
        let id = profile.id.as_str();
        let head = stored::profile_head_id(profile.tenant_id, id);
        if !creating && self.profiles.head(&head).await?.is_some() {
            return Ok(());
        }
        let owner = stored::owner_key(profile.tenant_id);
        match self
            .claims
            .insert_one(doc! { chain::ID: id, OWNER: &owner })
            .await
        {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                // Held already: by this owner (a concurrent creation of the
                // same profile, or an interrupted one) or by another one.
                let mine = self
                    .claims
                    .find_one(doc! { chain::ID: id, OWNER: &owner })
                    .await
                    .map_err(backend("reading a profile id claim"))?;
                if mine.is_none() {
                    return Err(StoreError::Conflict(format!(
                        "profile id `{}` is taken",
                        quoted(id)
                    )));
                }
            }
            Err(e) => return Err(backend("claiming a profile id")(e)),
        }
        self.profiles
            .ensure_head(doc! {
                chain::ID: &head,
                stored::TENANT: owner_bson(profile.tenant_id),
                stored::PROFILE_ID: id,
                LATEST: 0_i64,
            })
            .await
    }

    /// The newest stored version of profile `id` visible to `tenant`: its
    /// own or a built-in (at most one exists: both hold the id's claim).
    async fn visible(
        &self,
        tenant: TenantId,
        id: &ProfileId,
    ) -> Result<Option<Document>, StoreError> {
        // One lookup after the other: both at once were no faster on
        // FerretDB (get 0.34x the bare find_one, against 0.37x this way, at
        // load 6), and a tenant's own profile then needs one lookup only.
        for owner in [Some(tenant), None] {
            let head = stored::profile_head_id(owner, id.as_str());
            if let Some(record) = self.profiles.head(&head).await? {
                return self.profiles.newest(&head, &record).await;
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl DocumentStore for MongoDocuments {
    async fn put_profile(&self, profile: &DeviceProfile) -> Result<(), StoreError> {
        let current = self.stored_version(profile.tenant_id, &profile.id).await?;
        // A version found means the owner's head record exists, which is
        // written only after the owner's claim: the claim check can be skipped.
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
        self.visible(tenant, id)
            .await?
            .map(stored::read_profile)
            .transpose()
            .map_err(StoreError::Backend)
    }

    async fn profiles(&self, tenant: TenantId) -> Result<Vec<DeviceProfile>, StoreError> {
        // The head records name every profile with its tenant: one small
        // document per profile, so filtering them (a scan on FerretDB's
        // SQLite backend) stays cheap next to scanning every version. Each
        // visible profile is then read by `_id` probes, a few at a time.
        let heads: Vec<Document> = self
            .profiles
            .heads
            .find(doc! { stored::TENANT: { "$in": [Bson::Null, tenant.to_string()] } })
            .await
            .map_err(backend("listing profiles"))?
            .try_collect()
            .await
            .map_err(backend("listing profiles"))?;
        // The filter named the tenant; the keys are checked too, so a head
        // record whose fields disagree with its key is nobody's.
        let mut visible: Vec<(String, String, Document)> = heads
            .into_iter()
            .filter_map(|record| {
                let key = record.get_str(chain::ID).ok()?.to_owned();
                let profile_id = record.get_str(stored::PROFILE_ID).ok()?.to_owned();
                let owned = key == stored::profile_head_id(Some(tenant), &profile_id)
                    || key == stored::profile_head_id(None, &profile_id);
                owned.then_some((profile_id, key, record))
            })
            .collect();
        visible.sort_by(|a, b| a.0.cmp(&b.0));
        // The head records just read carry the hints: no second read each.
        let found: Vec<Option<Document>> = futures::stream::iter(visible)
            .map(|(_, key, record)| async move { self.profiles.newest(&key, &record).await })
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

pub(crate) fn version_of(document: &Document) -> Result<i64, StoreError> {
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

pub(crate) fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
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
pub(crate) fn backend(doing: &'static str) -> impl Fn(mongodb::error::Error) -> StoreError {
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
