//! Device profiles (points and how to reach them): reading them, and admins
//! adding their own.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};

use super::audit::AuditTrail;
use super::Policy;
use crate::error::{DomainError, InvalidValue, StoreError};
use crate::model::{AuditEntry, AuditOutcome, DeviceProfile};
use crate::ports::{Action, DocumentStore, FieldGateway, TenantRepository};
use crate::principal::Principal;

/// Device profiles as tenants see and manage them.
#[derive(Clone)]
pub struct ProfileService {
    documents: Arc<dyn DocumentStore>,
    tenants: Arc<dyn TenantRepository>,
    field: Arc<dyn FieldGateway>,
    policy: Policy,
    audit: AuditTrail,
}

impl ProfileService {
    pub(crate) fn new(
        documents: Arc<dyn DocumentStore>,
        tenants: Arc<dyn TenantRepository>,
        field: Arc<dyn FieldGateway>,
        policy: Policy,
        audit: AuditTrail,
    ) -> Self {
        Self {
            documents,
            tenants,
            field,
            policy,
            audit,
        }
    }

    /// Built-in profiles and the caller's tenant's own.
    pub async fn profiles(&self, principal: &Principal) -> Result<Vec<DeviceProfile>, DomainError> {
        self.policy.require_tenant(principal, Action::View)?;
        Ok(self.documents.profiles(principal.tenant_id).await?)
    }

    /// Stores a profile owned by the caller's tenant (new, or replacing one
    /// of the tenant's own). Its id must start with the tenant's slug and a
    /// dot (`acme.my-ahu`): ids are global, and a per-tenant namespace means
    /// no answer can reveal that another tenant uses some id.
    /// Devices already polled pick a changed profile up on the poller's next reload.
    ///
    /// A profile applies to every device of the tenant that uses it, so this
    /// needs `ManageTenant`: a Full guest scoped to one area may not. Refusals
    /// and stored profiles are audited as tenant-level entries.
    pub async fn put_profile(
        &self,
        principal: &Principal,
        mut profile: DeviceProfile,
    ) -> Result<DeviceProfile, DomainError> {
        let audit = |outcome: AuditOutcome, detail: String| {
            let at = Utc::now().trunc_subsecs(6);
            AuditEntry {
                tenant_id: principal.tenant_id,
                at,
                actor: principal.user_id,
                action: "put_profile".into(),
                device_id: None,
                point: None,
                old_value: None,
                new_value: None,
                outcome,
                detail,
                count: 1,
                last_at: at,
            }
        };
        if let Err(err) = self.policy.require_tenant(principal, Action::ManageTenant) {
            self.audit
                .record(audit(
                    AuditOutcome::Refused,
                    format!(
                        "role {} with this device scope may not manage profiles (`{}`)",
                        principal.role, profile.id
                    ),
                ))
                .await;
            return Err(err);
        }
        profile.tenant_id = Some(principal.tenant_id);
        profile.validate()?;
        // The points' field addresses are the gateway's to judge.
        self.field.check_profile(&profile)?;
        let tenant = self
            .tenants
            .tenant(principal.tenant_id)
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        let prefix = format!("{}.", tenant.slug.as_str());
        if !profile.id.as_str().starts_with(&prefix) || profile.id.as_str().len() == prefix.len() {
            return Err(
                InvalidValue::new("profile id", format!("must start with `{prefix}`")).into(),
            );
        }
        // The store refuses another owner's id (the ownership rule of
        // `DocumentStore`); the answer is the same whether it exists or not.
        match self.documents.put_profile(&profile).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(DomainError::Conflict(format!(
                    "profile id `{}` is taken",
                    profile.id
                )))
            }
            Err(other) => return Err(other.into()),
        }
        self.audit
            .record(audit(
                AuditOutcome::Confirmed,
                format!("stored profile `{}`", profile.id),
            ))
            .await;
        tracing::info!(profile = %profile.id, tenant = %principal.tenant_id, "Profile stored.");
        Ok(profile)
    }
}
