//! The embedded dead-letter log: in process memory, newest kept, oldest
//! forgotten beyond a cap. For installations without a relational store and tests.

use std::collections::VecDeque;

use async_trait::async_trait;
use parking_lot::Mutex;

use hearth_domain::error::StoreError;
use hearth_domain::ids::TenantId;
use hearth_domain::model::NotificationFailure;
use hearth_domain::ports::{NotificationFailureLog, Page, RecordedFailure};

/// Keeps at most `cap` failures over all tenants.
#[derive(Debug)]
pub struct MemoryFailureLog {
    cap: usize,
    inner: Mutex<(i64, VecDeque<RecordedFailure>)>,
}

impl MemoryFailureLog {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            inner: Mutex::new((0, VecDeque::new())),
        }
    }
}

impl Default for MemoryFailureLog {
    fn default() -> Self {
        Self::new(10_000)
    }
}

#[async_trait]
impl NotificationFailureLog for MemoryFailureLog {
    async fn record(&self, failure: NotificationFailure) -> Result<(), StoreError> {
        let mut guard = self.inner.lock();
        let (seq, items) = &mut *guard;
        *seq += 1;
        if items.len() >= self.cap {
            items.pop_front();
        }
        items.push_back(RecordedFailure { seq: *seq, failure });
        Ok(())
    }

    async fn list_failures(
        &self,
        tenant: TenantId,
        first: u32,
        after: Option<i64>,
    ) -> Result<Page<RecordedFailure>, StoreError> {
        let guard = self.inner.lock();
        let mine = || {
            guard
                .1
                .iter()
                .rev()
                .filter(|r| r.failure.tenant_id == tenant)
        };
        let total = mine().count() as u64;
        let items = mine()
            .filter(|r| after.is_none_or(|a| r.seq < a))
            .take(first as usize)
            .cloned()
            .collect();
        Ok(Page { items, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_failure_log_contract() {
        hearth_domain::contract::failures::run(&MemoryFailureLog::default()).await;
    }
}
