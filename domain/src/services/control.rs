//! Confirmed remote writes of device parameters.
//!
//! A value is validated against the profile and the caller's write level
//! before anything reaches the wire, written, then read back: only a
//! matching read-back is reported as confirmed. Every attempt is audited.

use chrono::{DateTime, SubsecRound, Utc};

use super::Hearth;
use crate::error::{DomainError, InvalidValue};
use crate::ids::{DeviceId, PointKey};
use crate::model::{AreaTree, AuditEntry, AuditOutcome, Device, PointDefinition, Quality, Reading};
use crate::ports::{Action, FieldError, LiveEvent};
use crate::principal::Principal;
use crate::services::devices::device_resource;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    /// The read-back matched the written value.
    Confirmed,
    /// The device accepted the write but reads back something else.
    Mismatch,
    /// The device refused the value with a Modbus exception.
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

impl Hearth {
    pub async fn write_parameter(
        &self,
        principal: &Principal,
        device_id: DeviceId,
        point: PointKey,
        value: f64,
    ) -> Result<WriteOutcome, DomainError> {
        let (device, areas) = self.visible_device(principal, device_id).await?;
        let profile = self
            .ports
            .documents
            .profile(&device.profile_id)
            .await?
            .ok_or_else(|| DomainError::NotFound("point".into()))?;
        let def = profile
            .point(&point)
            .cloned()
            .ok_or_else(|| DomainError::NotFound("point".into()))?;
        let refuse = |detail: String| AuditEntry {
            tenant_id: device.tenant_id,
            at: Utc::now(),
            actor: principal.user_id,
            action: "write_parameter".into(),
            device_id: Some(device.id),
            point: Some(point.clone()),
            old_value: None,
            new_value: Some(value),
            outcome: AuditOutcome::Refused,
            detail,
        };
        if !def.writable {
            self.audit(refuse("point is read-only".into())).await;
            return Err(InvalidValue::new("point", format!("`{point}` is read-only")).into());
        }
        let resource = device_resource(&device, &AreaTree::new(&areas));
        if self
            .authorize(principal, Action::WritePoint(def.write_level), &resource)
            .is_err()
        {
            self.audit(refuse(format!(
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
        let words = match def.encode(value) {
            Ok(words) => words,
            Err(err) => {
                self.audit(refuse(err.to_string())).await;
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
        if let Err(err) = self
            .ports
            .field
            .write_registers(&device, def.address, &words)
            .await
        {
            let detail = err.to_string();
            let (outcome, result) = match err {
                FieldError::Exception { .. } => (
                    AuditOutcome::Rejected,
                    Ok(WriteOutcome {
                        status: WriteStatus::Rejected,
                        value: previous_value,
                        previous_value,
                        confirmed_at: None,
                    }),
                ),
                other => (
                    AuditOutcome::Unreachable,
                    Err(DomainError::DeviceUnreachable(other.to_string())),
                ),
            };
            entry.outcome = outcome;
            entry.detail = detail;
            self.audit(entry).await;
            return result;
        }
        // Never retried: a write that may or may not have landed is reported
        // as it is, and the operator decides.
        let read_back = self.read_point(&device, &def).await;
        let now = Utc::now().trunc_subsecs(6);
        let (status, read_value) = match read_back {
            Ok(v) if def.encode(v).ok().as_deref() == Some(&words[..]) => {
                (WriteStatus::Confirmed, Some(v))
            }
            Ok(v) => (WriteStatus::Mismatch, Some(v)),
            Err(err) => {
                entry.outcome = AuditOutcome::Unreachable;
                entry.detail = format!("written, read-back failed: {err}");
                self.audit(entry).await;
                return Err(DomainError::DeviceUnreachable(format!(
                    "written, but the read-back failed: {err}"
                )));
            }
        };
        if let Some(v) = read_value {
            self.ports.live.publish(LiveEvent::Reading(Reading {
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
        self.audit(entry).await;
        Ok(WriteOutcome {
            status,
            value: read_value,
            previous_value,
            confirmed_at: (status == WriteStatus::Confirmed).then_some(now),
        })
    }

    /// The audit log of the caller's tenant, newest first.
    pub async fn audit_log(
        &self,
        principal: &Principal,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, DomainError> {
        self.require_tenant(principal, Action::ManageDevices)?;
        Ok(self
            .ports
            .directory
            .audit(principal.tenant_id, limit.clamp(1, 1000))
            .await?)
    }

    async fn read_point(&self, device: &Device, def: &PointDefinition) -> Result<f64, DomainError> {
        let words = self
            .ports
            .field
            .read_registers(device, def.register, def.address, def.data_type.words())
            .await
            .map_err(|e| DomainError::DeviceUnreachable(e.to_string()))?;
        Ok(def.decode(&words)?)
    }

    /// Audit failures are logged loudly but do not undo a write that happened.
    async fn audit(&self, entry: AuditEntry) {
        if let Err(err) = self.ports.directory.append_audit(&entry).await {
            tracing::error!(error = %err, device = ?entry.device_id, "Could not append to the audit log.");
        }
    }
}
