//! `writeParameter` and the audit log.

use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use hearth_domain::services::{WriteOutcome, WriteStatus as DomainStatus};
use hearth_domain::{DeviceId, PointKey};

use super::error::{bad_input, from_domain};
use super::{hearth, parse_id, principal};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum WriteStatus {
    /// The device holds the written value (read back).
    Confirmed,
    /// The device accepted the write but reads back another value.
    Mismatch,
    /// The device refused the value (Modbus exception); nothing changed.
    Rejected,
}

#[derive(SimpleObject)]
pub struct WriteResult {
    pub status: WriteStatus,
    /// What the device holds after the write, as read back.
    pub value: Option<f64>,
    /// What the device held before the write.
    pub previous_value: Option<f64>,
    /// When the read-back confirmed the value; null unless CONFIRMED.
    pub confirmed_at: Option<DateTime<Utc>>,
}

impl From<WriteOutcome> for WriteResult {
    fn from(o: WriteOutcome) -> Self {
        WriteResult {
            status: match o.status {
                DomainStatus::Confirmed => WriteStatus::Confirmed,
                DomainStatus::Mismatch => WriteStatus::Mismatch,
                DomainStatus::Rejected => WriteStatus::Rejected,
            },
            value: o.value,
            previous_value: o.previous_value,
            confirmed_at: o.confirmed_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor_id: ID,
    pub action: String,
    pub device_id: Option<ID>,
    pub point: Option<String>,
    pub old_value: Option<f64>,
    pub new_value: Option<f64>,
    /// confirmed, mismatch, rejected, unreachable or refused.
    pub outcome: String,
    pub detail: String,
}

#[derive(Default)]
pub struct ControlMutation;

#[Object]
impl ControlMutation {
    /// Writes one point, validated against the device profile and the
    /// caller's write level first, and confirmed by reading it back.
    async fn write_parameter(
        &self,
        ctx: &Context<'_>,
        device_id: ID,
        point: String,
        value: f64,
    ) -> async_graphql::Result<WriteResult> {
        let principal = principal(ctx)?;
        let device = parse_id::<DeviceId>(&device_id, "device")?;
        let point = PointKey::new(point).map_err(|e| bad_input(e.to_string()))?;
        hearth(ctx)
            .write_parameter(principal, device, point, value)
            .await
            .map(WriteResult::from)
            .map_err(from_domain)
    }
}

#[derive(Default)]
pub struct AuditQueries;

#[Object]
impl AuditQueries {
    /// Attempted changes in the active tenant, newest first (Admin and Full).
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] limit: i32,
    ) -> async_graphql::Result<Vec<AuditEntry>> {
        let principal = principal(ctx)?;
        if !(1..=1000).contains(&limit) {
            return Err(bad_input("`limit` must be 1 to 1000"));
        }
        let entries = hearth(ctx)
            .audit_log(principal, limit as u64)
            .await
            .map_err(from_domain)?;
        Ok(entries
            .into_iter()
            .map(|e| AuditEntry {
                at: e.at,
                actor_id: ID(e.actor.to_string()),
                action: e.action,
                device_id: e.device_id.map(|d| ID(d.to_string())),
                point: e.point.map(|p| p.to_string()),
                old_value: e.old_value,
                new_value: e.new_value,
                outcome: e.outcome.as_str().to_string(),
                detail: e.detail,
            })
            .collect())
    }
}
