//! Bucketed history of one point.

use chrono::{DateTime, Utc};

use super::Hearth;
use crate::error::DomainError;
use crate::ids::{DeviceId, PointKey};
use crate::model::{Aggregate, HistoryBucket, HistoryQuery};
use crate::principal::Principal;

impl Hearth {
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
        let (device, _) = self.visible_device(principal, device).await?;
        let profile = self.ports.documents.profile(&device.profile_id).await?;
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
        Ok(self.ports.readings.history(&query).await?)
    }
}
