//! `writeParameter` and the audit log (`auditLog`, a Relay connection).

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use hearth_domain::ports::{AuditCursor, AuditRecord};
use hearth_domain::services::{AuditQuery, ControlService, WriteOutcome};
use hearth_domain::{DeviceId, PointKey, UserId};

use super::error::{bad_input, from_domain};
use super::{parse_id, principal, services};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "hearth_domain::services::WriteStatus")]
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
            status: o.status.into(),
            value: o.value,
            previous_value: o.previous_value,
            confirmed_at: o.confirmed_at,
        }
    }
}

/// One attempted change, or a run of identical refused attempts (`count`).
#[derive(SimpleObject)]
pub struct AuditEntry {
    /// The (first) attempt; the log is ordered by it.
    pub at: DateTime<Utc>,
    pub actor_id: ID,
    /// `write_parameter`, or `put_profile` (tenant-level: no device).
    pub action: String,
    /// Null for tenant-level entries.
    pub device_id: Option<ID>,
    pub point: Option<String>,
    /// Of the last attempt when `count` > 1.
    pub old_value: Option<f64>,
    /// Of the last attempt when `count` > 1.
    pub new_value: Option<f64>,
    /// confirmed, mismatch, rejected, unreachable or refused.
    pub outcome: String,
    /// Of the last attempt when `count` > 1.
    pub detail: String,
    /// Identical refused attempts within an hour of the first are one entry.
    pub count: u64,
    /// The last of those attempts (`at` when `count` is 1).
    pub last_at: DateTime<Utc>,
}

impl From<AuditRecord> for AuditEntry {
    fn from(record: AuditRecord) -> Self {
        let e = record.entry;
        AuditEntry {
            at: e.at,
            actor_id: ID(e.actor.to_string()),
            action: e.action,
            device_id: e.device_id.map(|d| ID(d.to_string())),
            point: e.point.map(|p| p.to_string()),
            old_value: e.old_value,
            new_value: e.new_value,
            outcome: e.outcome.as_str().to_string(),
            detail: e.detail,
            count: e.count,
            last_at: e.last_at,
        }
    }
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
        services(ctx)
            .control
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
    /// Only entries about devices in the caller's scope; tenant-level entries
    /// (profiles) only for members who may manage the whole tenant.
    #[allow(clippy::too_many_arguments)]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 1000 (100 when omitted).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only entries about this device.")] device_id: Option<ID>,
        #[graphql(desc = "Only entries of this user.")] actor_id: Option<ID>,
        #[graphql(desc = "Only entries still active at or after this instant.")] from: Option<
            DateTime<Utc>,
        >,
        #[graphql(desc = "Only entries begun before this instant.")] to: Option<DateTime<Utc>>,
        #[graphql(deprecation = "Use `first`.")] limit: Option<i32>,
    ) -> async_graphql::Result<Connection<String, AuditEntry, EmptyFields, EmptyFields>> {
        let principal = principal(ctx)?;
        let first = first.or(limit).unwrap_or(100);
        if first < 1 || i64::from(first) > ControlService::MAX_AUDIT_PAGE as i64 {
            return Err(bad_input(format!(
                "`first` must be 1 to {}",
                ControlService::MAX_AUDIT_PAGE
            )));
        }
        let after = after
            .map(|c| c.parse::<AuditCursor>())
            .transpose()
            .map_err(|_| bad_input("`after` is not a cursor from this connection"))?;
        let query = AuditQuery {
            device: device_id
                .as_ref()
                .map(|d| parse_id::<DeviceId>(d, "device"))
                .transpose()?,
            actor: actor_id
                .as_ref()
                .map(|a| parse_id::<UserId>(a, "user"))
                .transpose()?,
            from,
            to,
            after,
            first: first as u64,
        };
        let has_previous = query.after.is_some();
        let page = services(ctx)
            .control
            .audit_log(principal, query)
            .await
            .map_err(from_domain)?;
        let mut connection = Connection::new(has_previous, page.has_next);
        connection.edges.extend(
            page.entries
                .into_iter()
                .map(|record| Edge::new(record.cursor.to_string(), AuditEntry::from(record))),
        );
        Ok(connection)
    }
}
