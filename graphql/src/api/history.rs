//! `history` and `historySeries`: bucketed aggregates of one point or of
//! several points of one device. Buckets without readings are absent.

use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use hearth_domain::{DeviceId, PointKey};

use super::error::{bad_input, from_domain};
use super::{parse_id, principal, services};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "hearth_domain::model::Aggregate")]
pub enum Aggregate {
    Mean,
    Min,
    Max,
    Last,
    Count,
}

#[derive(SimpleObject)]
pub struct HistoryPoint {
    /// Start of the bucket.
    pub timestamp: DateTime<Utc>,
    pub value: f64,
}

/// One point's buckets in `historySeries`.
#[derive(SimpleObject)]
pub struct HistorySeries {
    pub point: String,
    /// Oldest first; a bucket without readings is absent (a gap).
    pub buckets: Vec<HistoryPoint>,
}

#[derive(Default)]
pub struct HistoryQueries;

#[Object]
impl HistoryQueries {
    /// Readings of one point in `[from, to)`, aggregated per bucket of
    /// `bucketSeconds` aligned on `from`; empty buckets are omitted.
    #[allow(clippy::too_many_arguments)]
    async fn history(
        &self,
        ctx: &Context<'_>,
        device_id: ID,
        point: String,
        #[graphql(desc = "RFC 3339 start, inclusive.")] from: DateTime<Utc>,
        #[graphql(desc = "RFC 3339 end, exclusive.")] to: DateTime<Utc>,
        #[graphql(default = 300)] bucket_seconds: i32,
        #[graphql(default_with = "Aggregate::Mean")] aggregate: Aggregate,
    ) -> async_graphql::Result<Vec<HistoryPoint>> {
        let principal = principal(ctx)?;
        let device = parse_id::<DeviceId>(&device_id, "device")?;
        let point = PointKey::new(point).map_err(|e| bad_input(e.to_string()))?;
        let buckets = services(ctx)
            .history
            .history(
                principal,
                device,
                point,
                from,
                to,
                i64::from(bucket_seconds),
                aggregate.into(),
            )
            .await
            .map_err(from_domain)?;
        Ok(buckets
            .into_iter()
            .map(|b| HistoryPoint {
                timestamp: b.timestamp,
                value: b.value,
            })
            .collect())
    }

    /// Several points of one device over the same buckets in `[from, to)`,
    /// aligned on `from`. Without `bucketSeconds` a width giving about 500 to
    /// 1,000 buckets is chosen. Empty buckets are omitted, as in `history`.
    #[allow(clippy::too_many_arguments)]
    async fn history_series(
        &self,
        ctx: &Context<'_>,
        device_id: ID,
        points: Vec<String>,
        #[graphql(desc = "RFC 3339 start, inclusive.")] from: DateTime<Utc>,
        #[graphql(desc = "RFC 3339 end, exclusive.")] to: DateTime<Utc>,
        bucket_seconds: Option<i32>,
        #[graphql(default_with = "Aggregate::Mean")] aggregate: Aggregate,
    ) -> async_graphql::Result<Vec<HistorySeries>> {
        let principal = principal(ctx)?;
        let device = parse_id::<DeviceId>(&device_id, "device")?;
        let points = points
            .into_iter()
            .map(PointKey::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_input(e.to_string()))?;
        let series = services(ctx)
            .history
            .history_series(
                principal,
                device,
                points,
                from,
                to,
                bucket_seconds.map(i64::from),
                aggregate.into(),
            )
            .await
            .map_err(from_domain)?;
        Ok(series
            .into_iter()
            .map(|s| HistorySeries {
                point: s.point.as_str().to_owned(),
                buckets: s
                    .buckets
                    .into_iter()
                    .map(|b| HistoryPoint {
                        timestamp: b.timestamp,
                        value: b.value,
                    })
                    .collect(),
            })
            .collect())
    }
}
