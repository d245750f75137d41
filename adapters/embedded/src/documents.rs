//! [`DocumentStore`] in `<data dir>/documents.redb`: each profile as JSON
//! keyed by its id, with an in-memory read cache.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use hearth_domain::model::DeviceProfile;
use hearth_domain::ports::DocumentStore;
use hearth_domain::{ProfileId, StoreError, TenantId};
use parking_lot::{Mutex, MutexGuard};
use redb::{Database, ReadableTable, TableDefinition};
use serde::Deserialize;

use crate::error::EmbeddedError;

/// Profile id -> `DeviceProfile` as JSON. JSON rather than a binary encoding
/// so that new optional fields keep old documents readable.
const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");

/// Every profile, keyed (and so ordered) by id.
type Snapshot = Arc<BTreeMap<ProfileId, DeviceProfile>>;

/// Profiles are read on every device listing but written rarely (by admins),
/// so all of them are cached and the cache is dropped on every put.
#[derive(Default)]
struct Cache {
    /// Bumped on every put, so a load that raced a put does not install a
    /// snapshot from before it.
    generation: u64,
    snapshot: Option<Snapshot>,
}

struct Inner {
    db: Database,
    cache: Mutex<Cache>,
}

/// The embedded default [`DocumentStore`].
#[derive(Clone)]
pub struct EmbeddedDocuments {
    inner: Arc<Inner>,
}

impl EmbeddedDocuments {
    /// Opens or creates `<dir>/documents.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self::open_inner(dir)?)
    }

    fn open_inner(dir: &Path) -> Result<Self, EmbeddedError> {
        let db = crate::open_database(dir, "documents.redb")?;
        // Create the table up front so read transactions never meet a
        // missing table.
        let txn = db.begin_write()?;
        txn.open_table(PROFILES)?;
        txn.commit()?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                cache: Mutex::new(Cache::default()),
            }),
        })
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.inner.cache.lock()
    }

    async fn snapshot(&self) -> Result<Snapshot, EmbeddedError> {
        let generation = {
            let cache = self.cache();
            if let Some(snapshot) = &cache.snapshot {
                return Ok(snapshot.clone());
            }
            cache.generation
        };
        let inner = self.inner.clone();
        let snapshot: Snapshot = Arc::new(crate::blocking(move || load_all(&inner.db)).await?);
        let mut cache = self.cache();
        if cache.generation == generation {
            cache.snapshot = Some(snapshot.clone());
        }
        Ok(snapshot)
    }
}

fn load_all(db: &Database) -> Result<BTreeMap<ProfileId, DeviceProfile>, EmbeddedError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(PROFILES)?;
    let mut profiles = BTreeMap::new();
    for entry in table.iter()? {
        let (id, json) = entry?;
        let profile: DeviceProfile = serde_json::from_slice(json.value()).map_err(|source| {
            EmbeddedError::CorruptProfile {
                id: id.value().to_owned(),
                source,
            }
        })?;
        profiles.insert(profile.id.clone(), profile);
    }
    Ok(profiles)
}

/// The part of a stored profile the ownership check needs.
#[derive(Deserialize)]
struct Owner {
    tenant_id: Option<TenantId>,
}

fn put(
    db: &Database,
    id: &str,
    json: &[u8],
    owner: Option<TenantId>,
) -> Result<Result<(), StoreError>, EmbeddedError> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(PROFILES)?;
        if let Some(existing) = table.get(id)? {
            let existing: Owner = serde_json::from_slice(existing.value()).map_err(|source| {
                EmbeddedError::CorruptProfile {
                    id: id.to_owned(),
                    source,
                }
            })?;
            if existing.tenant_id != owner {
                // Dropping the transaction aborts it.
                return Ok(Err(StoreError::Conflict(format!(
                    "profile id `{id}` is taken"
                ))));
            }
        }
        table.insert(id, json)?;
    }
    txn.commit()?;
    Ok(Ok(()))
}

#[async_trait]
impl DocumentStore for EmbeddedDocuments {
    /// Refuses with `Conflict` to replace a profile owned by someone else
    /// (another tenant's, or a built-in by a tenant): profile ids are global,
    /// so replacing across owners would let one tenant rewrite what another uses.
    async fn put_profile(&self, profile: &DeviceProfile) -> Result<(), StoreError> {
        let id = profile.id.as_str().to_owned();
        let json = serde_json::to_vec(profile).map_err(|source| EmbeddedError::EncodeProfile {
            id: id.clone(),
            source,
        })?;
        let owner = profile.tenant_id;
        let inner = self.inner.clone();
        let outcome = crate::blocking(move || put(&inner.db, &id, &json, owner)).await?;
        // Invalidate whatever happened: after a failed commit the cache
        // merely reloads once.
        let mut cache = self.cache();
        cache.generation += 1;
        cache.snapshot = None;
        outcome
    }

    async fn profile(
        &self,
        tenant: TenantId,
        id: &ProfileId,
    ) -> Result<Option<DeviceProfile>, StoreError> {
        Ok(self
            .snapshot()
            .await?
            .get(id)
            .filter(|p| p.tenant_id.is_none() || p.tenant_id == Some(tenant))
            .cloned())
    }

    async fn profiles(&self, tenant: TenantId) -> Result<Vec<DeviceProfile>, StoreError> {
        Ok(self
            .snapshot()
            .await?
            .values()
            .filter(|p| p.tenant_id.is_none() || p.tenant_id == Some(tenant))
            .cloned()
            .collect())
    }
}
