//! Confirmed remote writes of device parameters.
//!
//! A value is validated against the profile and the caller's write level
//! before anything reaches the wire, written, then read back: only a
//! matching read-back is reported as confirmed. Every attempt is audited.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use super::access::{device_resource, DeviceAccess};
use super::audit::AuditTrail;
use crate::error::{DomainError, InvalidValue};
use crate::ids::{DeviceId, PointKey, UserId};
use crate::model::{AreaTree, AuditEntry, AuditOutcome, Device, PointDefinition, Quality, Reading};
use crate::ports::{
    Action, AuditCursor, AuditFilter, AuditRecord, FieldError, FieldGateway, LiveBus, LiveEvent,
};
use crate::principal::Principal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    /// The read-back matched the written value.
    Confirmed,
    /// The device accepted the write but reads back something else.
    Mismatch,
    /// The device refused the value (its protocol's refusal, e.g. an
    /// exception code).
    Rejected,
}

#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub status: WriteStatus,
    /// The value read back after the write (what the device holds now).
    pub value: Option<f64>,
    pub previous_value: Option<f64>,
    pub confirmed_at: Option<DateTime<Utc>>,
}

/// What `audit_log` should list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries about this device (which the caller must be able to see).
    pub device: Option<DeviceId>,
    pub actor: Option<UserId>,
    /// Entries active at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Entries begun before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Continue after this entry.
    pub after: Option<AuditCursor>,
    /// Page size, 1 to [`ControlService::MAX_AUDIT_PAGE`].
    pub first: u64,
}

/// One page of the audit log, newest first.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    /// More entries follow the last one.
    pub has_next: bool,
}

/// Confirmed writes to devices, and the audit log they leave.
#[derive(Clone)]
pub struct ControlService {
    access: DeviceAccess,
    field: Arc<dyn FieldGateway>,
    live: Arc<dyn LiveBus>,
    audit: AuditTrail,
}

impl ControlService {
    pub(crate) fn new(
        access: DeviceAccess,
        field: Arc<dyn FieldGateway>,
        live: Arc<dyn LiveBus>,
        audit: AuditTrail,
    ) -> Self {
        Self {
            access,
            field,
            live,
            audit,
        }
    }

    pub async fn write_parameter(
        &self,
        principal: &Principal,
        device_id: DeviceId,
        point: PointKey,
        value: f64,
    ) -> Result<WriteOutcome, DomainError> {
        let (device, areas) = self.access.visible_device(principal, device_id).await?;
        let profile = self
            .access
            .profile(device.tenant_id, &device.profile_id)
            .await?
            .ok_or_else(|| DomainError::NotFound("point".into()))?;
        let def = profile
            .point(&point)
            .cloned()
            .ok_or_else(|| DomainError::NotFound("point".into()))?;
        let refuse = |detail: String| {
            let at = Utc::now().trunc_subsecs(6);
            AuditEntry {
                tenant_id: device.tenant_id,
                at,
                actor: principal.user_id,
                action: "write_parameter".into(),
                device_id: Some(device.id),
                point: Some(point.clone()),
                old_value: None,
                new_value: Some(value),
                outcome: AuditOutcome::Refused,
                detail,
                count: 1,
                last_at: at,
            }
        };
        if !def.writable {
            self.audit.record(refuse("point is read-only".into())).await;
            return Err(InvalidValue::new("point", format!("`{point}` is read-only")).into());
        }
        let resource = device_resource(&device, &AreaTree::new(&areas));
        if self
            .access
            .policy
            .authorize(principal, Action::WritePoint(def.write_level), &resource)
            .is_err()
        {
            self.audit
                .record(refuse(format!(
                    "role {} may not write level {}",
                    principal.role,
                    def.write_level.as_str()
                )))
                .await;
            return Err(DomainError::Forbidden(format!(
                "writing `{point}` needs write level {}",
                def.write_level.as_str()
            )));
        }
        // Refused values never reach the wire: the definition's rules
        // (range, options) first, then what the device can represent.
        let held = match def
            .check_value(value)
            .and_then(|()| self.field.check_value(&def, value))
        {
            Ok(held) => held,
            Err(err) => {
                self.audit.record(refuse(err.to_string())).await;
                return Err(err.into());
            }
        };

        let previous_value = self.read_point(&device, &def).await.ok();
        let mut entry = AuditEntry {
            outcome: AuditOutcome::Confirmed,
            old_value: previous_value,
            detail: String::new(),
            ..refuse(String::new())
        };
        if let Err(err) = self.field.write_point(&device, &def, value).await {
            let detail = err.to_string();
            let (outcome, result) = match err {
                FieldError::Refused(_) => (
                    AuditOutcome::Rejected,
                    Ok(WriteOutcome {
                        status: WriteStatus::Rejected,
                        value: previous_value,
                        previous_value,
                        confirmed_at: None,
                    }),
                ),
                // Nothing was sent: the profile cannot address the point.
                FieldError::Unaddressable(invalid) => {
                    (AuditOutcome::Refused, Err(DomainError::from(invalid)))
                }
                other => (
                    AuditOutcome::Unreachable,
                    Err(DomainError::DeviceUnreachable(other.to_string())),
                ),
            };
            entry.outcome = outcome;
            entry.detail = detail;
            self.audit.record(entry).await;
            return result;
        }
        // Never retried: a write that may or may not have landed is reported
        // as it is, and the operator decides.
        let read_back = self.read_point(&device, &def).await;
        let now = Utc::now().trunc_subsecs(6);
        let (status, read_value) = match read_back {
            // Both sides come from the same raw value when it landed.
            Ok(v) if v == held => (WriteStatus::Confirmed, Some(v)),
            Ok(v) => (WriteStatus::Mismatch, Some(v)),
            Err(err) => {
                entry.outcome = AuditOutcome::Unreachable;
                entry.detail = format!("written, read-back failed: {err}");
                self.audit.record(entry).await;
                return Err(DomainError::DeviceUnreachable(format!(
                    "written, but the read-back failed: {err}"
                )));
            }
        };
        if let Some(v) = read_value {
            self.live.publish(LiveEvent::Reading(Reading {
                tenant_id: device.tenant_id,
                device_id: device.id,
                point: def.key.clone(),
                timestamp: now,
                value: v,
                quality: Quality::Good,
            }));
        }
        entry.outcome = match status {
            WriteStatus::Confirmed => AuditOutcome::Confirmed,
            _ => AuditOutcome::Mismatch,
        };
        entry.at = now;
        entry.last_at = now;
        self.audit.record(entry).await;
        Ok(WriteOutcome {
            status,
            value: read_value,
            previous_value,
            confirmed_at: (status == WriteStatus::Confirmed).then_some(now),
        })
    }

    /// Most audit entries one page may hold.
    pub const MAX_AUDIT_PAGE: u64 = 1000;

    /// The audit log of the caller's tenant, newest first, as far as the
    /// caller may see it: who may read at all is the policy's
    /// `manage_devices`; entries about devices outside the caller's scope
    /// are left out, and tenant-level entries (no device) are shown only to
    /// memberships that may manage the tenant as a whole (`ManageTenant`).
    pub async fn audit_log(
        &self,
        principal: &Principal,
        query: AuditQuery,
    ) -> Result<AuditPage, DomainError> {
        self.access
            .policy
            .require_tenant(principal, Action::ManageDevices)?;
        if query.first == 0 || query.first > Self::MAX_AUDIT_PAGE {
            return Err(InvalidValue::new(
                "first",
                format!("must be 1 to {}", Self::MAX_AUDIT_PAGE),
            )
            .into());
        }
        if let (Some(from), Some(to)) = (query.from, query.to) {
            if from >= to {
                return Err(InvalidValue::new("from", "must be before `to`").into());
            }
        }
        let devices = match query.device {
            Some(id) => {
                self.access.visible_device(principal, id).await?;
                Some(vec![id])
            }
            None if self.access.policy.tenant_wide(principal) => None,
            None => Some(
                self.access
                    .devices_in_scope(principal)
                    .await?
                    .into_iter()
                    .collect(),
            ),
        };
        let filter = AuditFilter {
            devices,
            actor: query.actor,
            from: query.from,
            to: query.to,
        };
        let mut entries = self
            .audit
            .list(principal.tenant_id, &filter, query.after, query.first + 1)
            .await?;
        let has_next = entries.len() as u64 > query.first;
        entries.truncate(query.first as usize);
        Ok(AuditPage { entries, has_next })
    }

    async fn read_point(&self, device: &Device, def: &PointDefinition) -> Result<f64, DomainError> {
        match self.field.read_point(device, def).await {
            Ok(value) => Ok(value),
            Err(FieldError::Unaddressable(err)) => Err(err.into()),
            Err(err) => Err(DomainError::DeviceUnreachable(err.to_string())),
        }
    }
}
