use chrono::{DateTime, Utc};

use crate::ids::{DeviceId, PointKey, TenantId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Confirmed,
    Mismatch,
    Rejected,
    Unreachable,
    Refused,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Confirmed => "confirmed",
            AuditOutcome::Mismatch => "mismatch",
            AuditOutcome::Rejected => "rejected",
            AuditOutcome::Unreachable => "unreachable",
            AuditOutcome::Refused => "refused",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        [
            AuditOutcome::Confirmed,
            AuditOutcome::Mismatch,
            AuditOutcome::Rejected,
            AuditOutcome::Unreachable,
            AuditOutcome::Refused,
        ]
        .into_iter()
        .find(|o| o.as_str() == value)
    }
}

/// One attempted change to a field device, whatever its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub tenant_id: TenantId,
    pub at: DateTime<Utc>,
    pub actor: UserId,
    pub action: String,
    pub device_id: Option<DeviceId>,
    pub point: Option<PointKey>,
    pub old_value: Option<f64>,
    pub new_value: Option<f64>,
    pub outcome: AuditOutcome,
    pub detail: String,
}
