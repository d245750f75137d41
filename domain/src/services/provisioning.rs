//! Creating tenants, users, memberships, areas and devices, and storing the
//! built-in profiles, for internal jobs (demo seeding, start-up, and later
//! `hearth tenant create`). Each operation takes a [`SystemPrincipal`] and
//! asks the policy (`provision`) like every other use case.

use std::sync::Arc;

use super::hashing::HashingPool;
use super::Policy;
use crate::error::{DomainError, InvalidValue};
use crate::ids::{TenantId, UserId};
use crate::model::{Area, Device, DeviceProfile, Membership, Tenant, User};
use crate::ports::{
    AreaRepository, DeviceRepository, DocumentStore, FieldGateway, IdentityLinks, PasswordHasher,
    Resource, SystemAction, TenantRepository, UserRepository,
};
use crate::principal::SystemPrincipal;

#[derive(Clone)]
pub struct ProvisioningService {
    tenants: Arc<dyn TenantRepository>,
    users: Arc<dyn UserRepository>,
    areas: Arc<dyn AreaRepository>,
    devices: Arc<dyn DeviceRepository>,
    documents: Arc<dyn DocumentStore>,
    field: Arc<dyn FieldGateway>,
    policy: Policy,
    passwords: Arc<dyn PasswordHasher>,
    hashing: HashingPool,
    links: Option<Arc<dyn IdentityLinks>>,
}

impl ProvisioningService {
    #[allow(clippy::too_many_arguments)] // one per port it uses
    pub(crate) fn new(
        tenants: Arc<dyn TenantRepository>,
        users: Arc<dyn UserRepository>,
        areas: Arc<dyn AreaRepository>,
        devices: Arc<dyn DeviceRepository>,
        documents: Arc<dyn DocumentStore>,
        field: Arc<dyn FieldGateway>,
        policy: Policy,
        passwords: Arc<dyn PasswordHasher>,
        hashing: HashingPool,
    ) -> Self {
        Self {
            tenants,
            users,
            areas,
            devices,
            documents,
            field,
            policy,
            passwords,
            hashing,
            links: None,
        }
    }

    pub(crate) fn with_identity_links(mut self, links: Arc<dyn IdentityLinks>) -> Self {
        self.links = Some(links);
        self
    }

    fn require(&self, system: &SystemPrincipal, tenant: TenantId) -> Result<(), DomainError> {
        self.policy
            .authorize_system(system, SystemAction::Provision, &Resource::Tenant(tenant))
    }

    /// Allowed to change what belongs to no tenant (platform grants).
    pub(crate) fn require_platform(&self, system: &SystemPrincipal) -> Result<(), DomainError> {
        self.policy
            .authorize_system(system, SystemAction::Provision, &Resource::Builtins)
    }

    /// The tenant with this slug, if any (to keep seeding idempotent).
    pub async fn tenant_by_slug(
        &self,
        system: &SystemPrincipal,
        slug: &str,
    ) -> Result<Option<Tenant>, DomainError> {
        let tenant = self.tenants.tenant_by_slug(slug).await?;
        match tenant {
            Some(t) => {
                self.require(system, t.id)?;
                Ok(Some(t))
            }
            None => Ok(None),
        }
    }

    pub async fn create_tenant(
        &self,
        system: &SystemPrincipal,
        tenant: &Tenant,
    ) -> Result<(), DomainError> {
        self.require(system, tenant.id)?;
        Ok(self.tenants.insert_tenant(tenant).await?)
    }

    pub async fn create_area(
        &self,
        system: &SystemPrincipal,
        area: &Area,
    ) -> Result<(), DomainError> {
        self.require(system, area.tenant_id)?;
        Ok(self.areas.insert_area(area).await?)
    }

    pub async fn create_device(
        &self,
        system: &SystemPrincipal,
        device: &Device,
    ) -> Result<(), DomainError> {
        self.require(system, device.tenant_id)?;
        self.field.check_endpoint(&device.endpoint)?;
        Ok(self.devices.insert_device(device).await?)
    }

    /// Creates a user with `password` (hashed on the blocking pool) and the
    /// given memberships, each of which needs `provision` on its tenant. At
    /// least one is required: the policy grants `provision` per tenant, so a
    /// user belonging to no tenant would be created without any rule
    /// allowing it (and could not log in anyway).
    pub async fn create_user(
        &self,
        system: &SystemPrincipal,
        user: &User,
        password: &str,
        memberships: &[Membership],
    ) -> Result<(), DomainError> {
        if memberships.is_empty() {
            return Err(
                InvalidValue::new("memberships", "a user needs at least one membership").into(),
            );
        }
        for m in memberships {
            self.require(system, m.tenant_id)?;
            if m.user_id != user.id {
                return Err(InvalidValue::new("membership", "belongs to another user").into());
            }
        }
        let hasher = self.passwords.clone();
        let password = password.to_owned();
        let hash = self
            .hashing
            .run(move || hasher.hash(&password))
            .await
            .map_err(|e| DomainError::Internal(e.into()))?
            .map_err(DomainError::Internal)?;
        let user = User {
            password_hash: Some(hash),
            disabled: false,
            tokens_valid_from: None,
            ..user.clone()
        };
        // One write, all or nothing: a half-created user (no memberships)
        // could neither log in nor be created again (its email is taken).
        self.users
            .insert_user_with_memberships(&user, memberships)
            .await?;
        Ok(())
    }

    /// Inserts or replaces a membership (role or scope changes).
    pub async fn set_membership(
        &self,
        system: &SystemPrincipal,
        membership: &Membership,
    ) -> Result<(), DomainError> {
        self.require(system, membership.tenant_id)?;
        Ok(self.users.upsert_membership(membership).await?)
    }

    /// Removes a membership; `true` when there was one.
    pub async fn remove_membership(
        &self,
        system: &SystemPrincipal,
        user: UserId,
        tenant: TenantId,
    ) -> Result<bool, DomainError> {
        self.require(system, tenant)?;
        Ok(self.users.remove_membership(user, tenant).await?)
    }

    /// Links the subject `subject` of identity provider `issuer` to `user`
    /// in `tenant`, so that provider's tokens for it authenticate as that
    /// user there. The user must already be a member of `tenant`: a link
    /// never grants a membership.
    pub async fn link_identity(
        &self,
        system: &SystemPrincipal,
        tenant: TenantId,
        issuer: &str,
        subject: &str,
        user: UserId,
    ) -> Result<(), DomainError> {
        self.require(system, tenant)?;
        if issuer.trim().is_empty() || issuer.len() > 255 {
            return Err(InvalidValue::new("issuer", "1 to 255 characters").into());
        }
        if subject.is_empty() || subject.len() > 255 {
            return Err(InvalidValue::new("subject", "1 to 255 characters").into());
        }
        if self.users.membership(user, tenant).await?.is_none() {
            return Err(InvalidValue::new("user", "is not a member of that tenant").into());
        }
        let links = self
            .links
            .as_ref()
            .ok_or_else(|| DomainError::Internal(anyhow::anyhow!("no identity link store")))?;
        Ok(links.link_identity(tenant, issuer, subject, user).await?)
    }

    /// Stores a built-in profile (one no tenant owns), replacing the
    /// previous version: built-ins are code, stored at every start.
    pub async fn put_builtin_profile(
        &self,
        system: &SystemPrincipal,
        profile: &DeviceProfile,
    ) -> Result<(), DomainError> {
        self.policy
            .authorize_system(system, SystemAction::Provision, &Resource::Builtins)?;
        if profile.tenant_id.is_some() {
            return Err(InvalidValue::new("profile", "a built-in profile has no tenant").into());
        }
        profile.validate()?;
        self.field.check_profile(profile)?;
        Ok(self.documents.put_profile(profile).await?)
    }
}
