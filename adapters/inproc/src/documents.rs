//! In-memory [`DocumentStore`]: the document semantics of the embedded store
//! without a file, for use-case tests and as a benchmark baseline.

use std::collections::BTreeMap;

use async_trait::async_trait;
use hearth_domain::model::DeviceProfile;
use hearth_domain::ports::DocumentStore;
use hearth_domain::{ProfileId, StoreError, TenantId};
use parking_lot::RwLock;

/// Profiles keyed by id; a `BTreeMap` so listings come out ordered by id.
#[derive(Default)]
pub struct MemoryDocuments {
    profiles: RwLock<BTreeMap<ProfileId, DeviceProfile>>,
}

impl MemoryDocuments {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl DocumentStore for MemoryDocuments {
    /// Refuses with `Conflict` to replace a profile owned by someone else
    /// (another tenant's, or a built-in by a tenant): profile ids are global,
    /// so replacing across owners would let one tenant rewrite what another uses.
    async fn put_profile(&self, profile: &DeviceProfile) -> Result<(), StoreError> {
        let mut profiles = self.profiles.write();
        if let Some(existing) = profiles.get(&profile.id) {
            if existing.tenant_id != profile.tenant_id {
                return Err(StoreError::Conflict(format!(
                    "profile id `{}` is taken",
                    profile.id
                )));
            }
        }
        profiles.insert(profile.id.clone(), profile.clone());
        Ok(())
    }

    async fn profile(
        &self,
        tenant: TenantId,
        id: &ProfileId,
    ) -> Result<Option<DeviceProfile>, StoreError> {
        let profiles = self.profiles.read();
        Ok(profiles
            .get(id)
            .filter(|p| p.tenant_id.is_none() || p.tenant_id == Some(tenant))
            .cloned())
    }

    async fn profiles(&self, tenant: TenantId) -> Result<Vec<DeviceProfile>, StoreError> {
        let profiles = self.profiles.read();
        Ok(profiles
            .values()
            .filter(|p| p.tenant_id.is_none() || p.tenant_id == Some(tenant))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_domain::model::{FieldAddress, PointDefinition, WriteLevel};
    use hearth_domain::PointKey;

    fn profile(id: &str, tenant_id: Option<TenantId>) -> DeviceProfile {
        DeviceProfile {
            id: ProfileId::new(id).expect("valid id"),
            tenant_id,
            name: id.into(),
            poll_interval_ms: 1_000,
            live_poll_interval_ms: None,
            points: vec![PointDefinition {
                key: PointKey::new("p").expect("valid key"),
                name: "p".into(),
                address: FieldAddress::default(),
                unit: String::new(),
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

    #[tokio::test]
    async fn a_profile_id_cannot_be_taken_over_by_another_owner() {
        let store = MemoryDocuments::new();
        let (acme, globex) = (TenantId::new(), TenantId::new());
        store
            .put_profile(&profile("ecl-310", None))
            .await
            .expect("put built-in");
        store
            .put_profile(&profile("custom", Some(acme)))
            .await
            .expect("put acme's");
        assert!(matches!(
            store.put_profile(&profile("ecl-310", Some(globex))).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.put_profile(&profile("custom", Some(globex))).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.put_profile(&profile("custom", None)).await,
            Err(StoreError::Conflict(_))
        ));
        let kept = store
            .profile(acme, &ProfileId::new("custom").expect("valid id"))
            .await
            .expect("profile");
        assert_eq!(kept.and_then(|p| p.tenant_id), Some(acme));
    }
}
