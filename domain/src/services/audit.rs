//! Appending to the audit log on behalf of the services that act (control,
//! profiles) and reading it back (control's `audit_log`).

use std::sync::Arc;

use crate::error::DomainError;
use crate::ids::TenantId;
use crate::model::AuditEntry;
use crate::ports::{AuditCursor, AuditFilter, AuditLog, AuditRecord};

#[derive(Clone)]
pub(crate) struct AuditTrail {
    log: Arc<dyn AuditLog>,
}

impl AuditTrail {
    /// Identical refused attempts within this long of the first are one
    /// entry with a count (see [`AuditLog::append_audit`]).
    pub const COALESCE_WINDOW: chrono::Duration = chrono::Duration::hours(1);

    pub(crate) fn new(log: Arc<dyn AuditLog>) -> Self {
        Self { log }
    }

    /// Audit failures are logged loudly but do not undo what happened.
    pub(crate) async fn record(&self, entry: AuditEntry) {
        if let Err(err) = self.log.append_audit(&entry, Self::COALESCE_WINDOW).await {
            tracing::error!(error = %err, device = ?entry.device_id, "Could not append to the audit log.");
        }
    }

    pub(crate) async fn list(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        limit: u64,
    ) -> Result<Vec<AuditRecord>, DomainError> {
        Ok(self.log.audit(tenant, filter, after, limit).await?)
    }
}
