//! The audit log's entry: one attempted change, or a run of identical refused ones.

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

/// One attempted change, whatever its outcome: to a field device
/// (`device_id` set) or to the tenant as a whole (a profile, `device_id`
/// `None`). Identical refused attempts in a row are one entry with a `count`
/// (see [`Directory::append_audit`](crate::ports::Directory::append_audit)),
/// so a flood of refusals cannot push real entries out of view.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub tenant_id: TenantId,
    /// The (first) attempt. Listings order by it, and it never changes.
    pub at: DateTime<Utc>,
    pub actor: UserId,
    pub action: String,
    pub device_id: Option<DeviceId>,
    pub point: Option<PointKey>,
    /// Of the last attempt, when `count` > 1.
    pub old_value: Option<f64>,
    /// Of the last attempt, when `count` > 1.
    pub new_value: Option<f64>,
    pub outcome: AuditOutcome,
    /// Of the last attempt, when `count` > 1.
    pub detail: String,
    /// How many identical attempts this entry stands for (1 unless coalesced).
    pub count: u64,
    /// The last of those attempts (`at` unless coalesced).
    pub last_at: DateTime<Utc>,
}

impl AuditEntry {
    /// A refusal this entry may absorb: same tenant, actor, action, device
    /// and point, and both refused. Values and detail may differ (the entry
    /// keeps the last ones).
    pub fn same_refusal(&self, other: &AuditEntry) -> bool {
        self.outcome == AuditOutcome::Refused
            && other.outcome == AuditOutcome::Refused
            && self.tenant_id == other.tenant_id
            && self.actor == other.actor
            && self.action == other.action
            && self.device_id == other.device_id
            && self.point == other.point
    }
}
