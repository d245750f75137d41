//! What admins see of alarm notifications: the dead letters of their own
//! tenant (Admin only, `manage_users`: who is told what is the admin's
//! business, and recipients' addresses are personal data).

use std::sync::Arc;

use super::Policy;
use crate::error::{DomainError, InvalidValue};
use crate::ports::{Action, NotificationFailureLog, Page, RecordedFailure};
use crate::principal::Principal;

/// One page of dead letters.
#[derive(Debug, Clone, PartialEq)]
pub struct FailurePage {
    pub items: Vec<RecordedFailure>,
    /// All of the tenant's dead letters.
    pub total: u64,
    /// Older ones follow this page.
    pub has_more: bool,
}

#[derive(Clone)]
pub struct NotificationService {
    policy: Policy,
    failures: Arc<dyn NotificationFailureLog>,
}

impl NotificationService {
    /// The largest page `notification_failures` returns.
    pub const MAX_PAGE: u32 = 100;

    pub(crate) fn new(policy: Policy, failures: Arc<dyn NotificationFailureLog>) -> Self {
        Self { policy, failures }
    }

    pub(crate) fn policy(&self) -> Policy {
        self.policy.clone()
    }

    /// The caller's tenant's undelivered notices, newest first; `after` is
    /// the `seq` of the last one of the previous page.
    pub async fn notification_failures(
        &self,
        principal: &Principal,
        first: u32,
        after: Option<i64>,
    ) -> Result<FailurePage, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        if first == 0 || first > Self::MAX_PAGE {
            return Err(
                InvalidValue::new("first", format!("must be 1 to {}", Self::MAX_PAGE)).into(),
            );
        }
        // One more than asked tells whether another page follows.
        let Page { mut items, total } = self
            .failures
            .list_failures(principal.tenant_id, first + 1, after)
            .await?;
        let has_more = items.len() > first as usize;
        items.truncate(first as usize);
        Ok(FailurePage {
            items,
            total,
            has_more,
        })
    }
}
