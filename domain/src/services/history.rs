//! Bucketed history of one point or several points of one device.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::access::DeviceAccess;
use crate::error::DomainError;
use crate::error::InvalidValue;
use crate::ids::{DeviceId, PointKey};
use crate::model::{Aggregate, HistoryBucket, HistoryQuery};
use crate::ports::ReadingStore;
use crate::principal::Principal;

/// One point's buckets in a several-point history. Buckets without readings
/// are absent (a gap is a missing timestamp), as in single-point history.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesHistory {
    pub point: PointKey,
    pub buckets: Vec<HistoryBucket>,
}

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

    /// At most this many points per several-point request.
    pub const MAX_POINTS: usize = 32;

    /// History of several points of one device over the same buckets;
    /// `bucket_seconds: None` picks about 500–1,000 buckets
    /// ([`HistoryQuery::auto_bucket_seconds`]). Points come back in the order
    /// asked, each once.
    #[allow(clippy::too_many_arguments)]
    pub async fn history_series(
        &self,
        principal: &Principal,
        device: DeviceId,
        points: Vec<PointKey>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_seconds: Option<i64>,
        aggregate: Aggregate,
    ) -> Result<Vec<SeriesHistory>, DomainError> {
        let (device, _) = self.access.visible_device(principal, device).await?;
        let mut unique: Vec<PointKey> = Vec::with_capacity(points.len());
        for point in points {
            if !unique.contains(&point) {
                unique.push(point);
            }
        }
        if unique.is_empty() || unique.len() > Self::MAX_POINTS {
            return Err(InvalidValue::new(
                "points",
                format!("1 to {} points per request", Self::MAX_POINTS),
            )
            .into());
        }
        let profile = self
            .access
            .profile(device.tenant_id, &device.profile_id)
            .await?;
        if unique
            .iter()
            .any(|point| profile.as_ref().and_then(|p| p.point(point)).is_none())
        {
            return Err(DomainError::NotFound("point".into()));
        }
        let bucket_seconds =
            bucket_seconds.unwrap_or_else(|| HistoryQuery::auto_bucket_seconds(from, to));
        let mut out = Vec::with_capacity(unique.len());
        for point in unique {
            let query = HistoryQuery::new(
                device.tenant_id,
                device.id,
                point.clone(),
                from,
                to,
                bucket_seconds,
                aggregate,
            )?;
            let buckets = self.readings.history(&query).await?;
            out.push(SeriesHistory { point, buckets });
        }
        Ok(out)
    }
}
