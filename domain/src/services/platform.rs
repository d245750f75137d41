//! Platform operations: what belongs to no tenant. A platform operator (a
//! grant in the directory, given from the command line, never a tenant
//! role) creates tenants with their first Admin; everyone else is refused.
//! The tenant itself is then written by the provisioning use case, as the
//! provisioner, exactly like `hearth tenant create`.

use std::sync::Arc;

use chrono::Utc;
use rand::distributions::{Alphanumeric, DistString};

use super::audit::AuditTrail;
use super::provisioning::ProvisioningService;
use crate::error::{DomainError, InvalidValue};
use crate::ids::{TenantId, UserId};
use crate::model::{
    AuditEntry, AuditOutcome, DeviceScope, EmailAddress, Membership, Role, Tenant, TenantSlug, User,
};
use crate::ports::{PlatformOperators, TenantRepository, UserRepository};
use crate::principal::{Principal, SystemPrincipal};

/// A tenant created with its first Admin, whose one-time password is shown
/// once.
#[derive(Debug, Clone)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    pub admin: User,
    pub one_time_password: String,
}

/// Tenant creation by platform operators, and the operator grants.
#[derive(Clone)]
pub struct PlatformService {
    operators: Arc<dyn PlatformOperators>,
    tenants: Arc<dyn TenantRepository>,
    users: Arc<dyn UserRepository>,
    provisioning: ProvisioningService,
    audit: AuditTrail,
}

impl PlatformService {
    /// Length of the first Admin's one-time password (alphanumeric).
    pub const ONE_TIME_PASSWORD_LEN: usize = 20;
    /// Longest tenant name.
    pub const MAX_NAME_LEN: usize = 200;

    pub(crate) fn new(
        operators: Arc<dyn PlatformOperators>,
        tenants: Arc<dyn TenantRepository>,
        users: Arc<dyn UserRepository>,
        provisioning: ProvisioningService,
        audit: AuditTrail,
    ) -> Self {
        Self {
            operators,
            tenants,
            users,
            provisioning,
            audit,
        }
    }

    /// Creates a tenant and its first Admin (a new user with a generated
    /// one-time password). Only platform operators; everyone else gets
    /// `Forbidden` before any input is looked at. A taken slug or email
    /// is `Conflict`, and nothing is created.
    pub async fn create_tenant(
        &self,
        principal: &Principal,
        slug: &str,
        name: &str,
        admin_email: &str,
    ) -> Result<CreatedTenant, DomainError> {
        if !self.operators.is_operator(principal.user_id).await? {
            return Err(DomainError::Forbidden(
                "only platform operators create tenants".into(),
            ));
        }
        let created = self
            .create(&SystemPrincipal::provisioner(), slug, name, admin_email)
            .await?;
        let at = Utc::now();
        self.audit
            .record(AuditEntry {
                tenant_id: created.tenant.id,
                at,
                actor: principal.user_id,
                action: "create_tenant".into(),
                device_id: None,
                point: None,
                old_value: None,
                new_value: None,
                outcome: AuditOutcome::Confirmed,
                detail: format!(
                    "tenant {} (`{}`): before: none; after: `{}` with admin {} ({}), by platform operator {}",
                    created.tenant.id,
                    created.tenant.slug.as_str(),
                    created.tenant.name,
                    created.admin.id,
                    created.admin.email,
                    principal.email
                ),
                count: 1,
                last_at: at,
            })
            .await;
        tracing::info!(tenant = %created.tenant.id, operator = %principal.user_id, "A platform operator created a tenant.");
        Ok(created)
    }

    /// The tenant and its Admin, written as `system` (the command line's
    /// `hearth tenant create` and the GraphQL mutation share this).
    pub async fn create(
        &self,
        system: &SystemPrincipal,
        slug: &str,
        name: &str,
        admin_email: &str,
    ) -> Result<CreatedTenant, DomainError> {
        let slug = TenantSlug::new(slug.trim())?;
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > Self::MAX_NAME_LEN
            || name.chars().any(char::is_control)
        {
            return Err(InvalidValue::new(
                "name",
                format!(
                    "must be 1 to {} characters, no control characters",
                    Self::MAX_NAME_LEN
                ),
            )
            .into());
        }
        let email = EmailAddress::new(admin_email)?;
        if self.tenants.tenant_by_slug(slug.as_str()).await?.is_some() {
            return Err(DomainError::Conflict(format!(
                "a tenant with the slug `{}` exists already",
                slug.as_str()
            )));
        }
        if self.users.user_by_email(&email).await?.is_some() {
            return Err(DomainError::Conflict(
                "a user with this email exists already (add them as a guest instead)".into(),
            ));
        }
        let tenant = Tenant {
            id: TenantId::new(),
            slug,
            name: name.to_owned(),
        };
        let admin = User {
            id: UserId::new(),
            email: email.clone(),
            display_name: email.as_str().to_owned(),
            password_hash: None,
            disabled: false,
            tokens_valid_from: None,
        };
        let password =
            Alphanumeric.sample_string(&mut rand::thread_rng(), Self::ONE_TIME_PASSWORD_LEN);
        self.provisioning.create_tenant(system, &tenant).await?;
        let membership = Membership {
            user_id: admin.id,
            tenant_id: tenant.id,
            role: Role::Admin,
            scope: DeviceScope::All,
        };
        self.provisioning
            .create_user(system, &admin, &password, &[membership])
            .await?;
        Ok(CreatedTenant {
            tenant,
            admin,
            one_time_password: password,
        })
    }

    /// Grants (or with `granted: false` revokes) the platform operator role
    /// to the user with `email`, as `system` (the command line). `false`
    /// when nothing changed.
    pub async fn set_operator(
        &self,
        system: &SystemPrincipal,
        email: &str,
        granted: bool,
    ) -> Result<bool, DomainError> {
        self.provisioning.require_platform(system)?;
        let email = EmailAddress::new(email)?;
        let user = self
            .users
            .user_by_email(&email)
            .await?
            .ok_or_else(|| DomainError::NotFound("user".into()))?;
        let changed = if granted {
            self.operators.grant_operator(user.id).await?
        } else {
            self.operators.revoke_operator(user.id).await?
        };
        tracing::info!(user = %user.id, granted, changed, "Platform operator grant changed.");
        Ok(changed)
    }
}
