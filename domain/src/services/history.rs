//! Bucketed history of one point.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::access::DeviceAccess;
use crate::error::DomainError;
use crate::ids::{DeviceId, PointKey};
use crate::model::{Aggregate, HistoryBucket, HistoryQuery};
use crate::ports::ReadingStore;
use crate::principal::Principal;

/// History of the points of the devices a caller may view.
#[derive(Clone)]
pub struct HistoryService {
    access: DeviceAccess,
    readings: Arc<dyn ReadingStore>,
}

impl HistoryService {
    pub(crate) fn new(access: DeviceAccess, readings: Arc<dyn ReadingStore>) -> Self {
        Self { access, readings }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn history(
        &self,
        principal: &Principal,
        device: DeviceId,
        point: PointKey,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_seconds: i64,
        aggregate: Aggregate,
    ) -> Result<Vec<HistoryBucket>, DomainError> {
        let (device, _) = self.access.visible_device(principal, device).await?;
        let profile = self
            .access
            .profile(device.tenant_id, &device.profile_id)
            .await?;
        if profile.as_ref().and_then(|p| p.point(&point)).is_none() {
            return Err(DomainError::NotFound("point".into()));
        }
        let query = HistoryQuery::new(
            device.tenant_id,
            device.id,
            point,
            from,
            to,
            bucket_seconds,
            aggregate,
        )?;
        Ok(self.readings.history(&query).await?)
    }
}
