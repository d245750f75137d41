use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::InvalidValue;
use crate::ids::{DeviceId, PointKey, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Read from the device in the last poll.
    Good,
    /// The device stopped answering; the value is the last one read, with its
    /// original timestamp.
    Stale,
    /// The device answered with an error or an implausible value (open sensor).
    Bad,
}

impl Quality {
    pub fn as_u8(self) -> u8 {
        match self {
            Quality::Good => 0,
            Quality::Stale => 1,
            Quality::Bad => 2,
        }
    }
    pub fn from_u8(value: u8) -> Self {
        match value {
            0 => Quality::Good,
            1 => Quality::Stale,
            _ => Quality::Bad,
        }
    }
}

/// One sampled value of one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub point: PointKey,
    pub timestamp: DateTime<Utc>,
    pub value: f64,
    pub quality: Quality,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    Mean,
    Min,
    Max,
    Last,
    Count,
}

/// A validated history request: a bounded range cut into whole buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub point: PointKey,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket_seconds: u32,
    pub aggregate: Aggregate,
}

impl HistoryQuery {
    /// At most this many buckets per request, so one call cannot exhaust memory.
    pub const MAX_BUCKETS: i64 = 10_000;

    pub fn new(
        tenant_id: TenantId,
        device_id: DeviceId,
        point: PointKey,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_seconds: i64,
        aggregate: Aggregate,
    ) -> Result<Self, InvalidValue> {
        if from >= to {
            return Err(InvalidValue::new(
                "history range",
                "`from` must be before `to`",
            ));
        }
        if !(1..=31 * 86_400).contains(&bucket_seconds) {
            return Err(InvalidValue::new("bucketSeconds", "must be 1 s to 31 days"));
        }
        let buckets = (to - from).num_seconds() / bucket_seconds;
        if buckets > Self::MAX_BUCKETS {
            return Err(InvalidValue::new(
                "history range",
                format!(
                    "{buckets} buckets requested; at most {} per request",
                    Self::MAX_BUCKETS
                ),
            ));
        }
        Ok(Self {
            tenant_id,
            device_id,
            point,
            from,
            to,
            bucket_seconds: bucket_seconds as u32,
            aggregate,
        })
    }

    /// Bucket width when a caller names none: about 500 to 1,000 buckets over
    /// the range, rounded up to whole minutes, quarter hours, hours or days when that wide,
    /// so the store's rollups (1 min, 15 min, 1 h, 1 day) can serve it.
    pub fn auto_bucket_seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        let range = (to - from).num_seconds().max(1);
        let raw = (range + 999) / 1_000;
        let round_up = |b: i64, unit: i64| (b + unit - 1) / unit * unit;
        match raw {
            b if b >= 86_400 => round_up(b, 86_400),
            b if b >= 3_600 => round_up(b, 3_600),
            b if b >= 900 => round_up(b, 900),
            b if b >= 60 => round_up(b, 60),
            b => b.max(1),
        }
    }

    /// Start of the bucket a timestamp falls into (buckets are aligned on `from`).
    pub fn bucket_start(&self, ts: DateTime<Utc>) -> DateTime<Utc> {
        let offset = (ts - self.from).num_seconds().max(0);
        let index = offset / i64::from(self.bucket_seconds);
        self.from + chrono::Duration::seconds(index * i64::from(self.bucket_seconds))
    }
}

/// One aggregated bucket of history. Buckets with no readings are omitted.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryBucket {
    pub timestamp: DateTime<Utc>,
    pub value: f64,
}

/// Folds readings (sorted by time) into buckets; shared by every ReadingStore
/// that cannot aggregate natively. `Bad` samples are fault codes, not
/// values (an open sensor's 192 °C), and are left out of every aggregate.
pub fn aggregate_sorted(
    query: &HistoryQuery,
    samples: impl IntoIterator<Item = (DateTime<Utc>, f64, Quality)>,
) -> Vec<HistoryBucket> {
    struct Acc {
        start: DateTime<Utc>,
        sum: f64,
        min: f64,
        max: f64,
        last: f64,
        count: u64,
    }
    let finish = |acc: &Acc| HistoryBucket {
        timestamp: acc.start,
        value: match query.aggregate {
            Aggregate::Mean => acc.sum / acc.count as f64,
            Aggregate::Min => acc.min,
            Aggregate::Max => acc.max,
            Aggregate::Last => acc.last,
            Aggregate::Count => acc.count as f64,
        },
    };
    let mut out = Vec::new();
    let mut current: Option<Acc> = None;
    for (ts, value, quality) in samples {
        if ts < query.from || ts >= query.to || quality == Quality::Bad {
            continue;
        }
        let start = query.bucket_start(ts);
        match current.as_mut() {
            Some(acc) if acc.start == start => {
                acc.sum += value;
                acc.min = acc.min.min(value);
                acc.max = acc.max.max(value);
                acc.last = value;
                acc.count += 1;
            }
            _ => {
                if let Some(acc) = current.take() {
                    out.push(finish(&acc));
                }
                current = Some(Acc {
                    start,
                    sum: value,
                    min: value,
                    max: value,
                    last: value,
                    count: 1,
                });
            }
        }
    }
    if let Some(acc) = current {
        out.push(finish(&acc));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn query(aggregate: Aggregate) -> HistoryQuery {
        let from = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date");
        HistoryQuery::new(
            TenantId::new(),
            DeviceId::new(),
            PointKey::new("p").expect("valid key"),
            from,
            from + chrono::Duration::seconds(60),
            30,
            aggregate,
        )
        .expect("valid query")
    }

    #[test]
    fn buckets_aggregate_each_kind() {
        let q = query(Aggregate::Mean);
        let s = |sec: i64, v: f64| (q.from + chrono::Duration::seconds(sec), v, Quality::Good);
        let bad = (q.from + chrono::Duration::seconds(20), 192.0, Quality::Bad);
        let samples = vec![
            s(0, 1.0),
            s(10, 3.0),
            bad,
            s(30, 5.0),
            s(59, 7.0),
            s(60, 100.0),
        ];
        let mean = aggregate_sorted(&q, samples.clone());
        assert_eq!(
            mean.iter().map(|b| b.value).collect::<Vec<_>>(),
            vec![2.0, 6.0]
        );
        let count = aggregate_sorted(&query(Aggregate::Count), samples.clone());
        assert_eq!(
            count.iter().map(|b| b.value).collect::<Vec<_>>(),
            vec![2.0, 2.0]
        );
        let max = aggregate_sorted(&query(Aggregate::Max), samples.clone());
        assert_eq!(max[1].value, 7.0);
        let last = aggregate_sorted(&query(Aggregate::Last), samples);
        assert_eq!(last[0].value, 3.0);
        assert_eq!(last[1].timestamp, q.from + chrono::Duration::seconds(30));
    }

    #[test]
    fn an_omitted_bucket_gives_500_to_1000_points_on_rollup_boundaries() {
        let from = query(Aggregate::Mean).from;
        for (range, expected) in [
            (600, 1),                       // ten minutes: every second
            (86_400, 120),                  // a day: 2-minute buckets, 720 points
            (7 * 86_400, 660),              // a week: 11 minutes, 916 points
            (30 * 86_400, 2_700),           // a month: 45 minutes, 960 points
            (3 * 365 * 86_400, 86_400 * 2), // three years: 2 days
        ] {
            let to = from + chrono::Duration::seconds(range);
            let bucket = HistoryQuery::auto_bucket_seconds(from, to);
            assert_eq!(bucket, expected, "range {range} s");
            let points = range / bucket;
            assert!(
                range < 500 || (500..=1_000).contains(&points),
                "{points} points"
            );
        }
    }

    #[test]
    fn absurd_ranges_are_refused() {
        let q = query(Aggregate::Mean);
        let build = |from, to, bucket| {
            HistoryQuery::new(
                q.tenant_id,
                q.device_id,
                q.point.clone(),
                from,
                to,
                bucket,
                Aggregate::Mean,
            )
        };
        assert!(build(q.to, q.from, 30).is_err());
        assert!(build(q.from, q.to, 0).is_err());
        assert!(build(q.from, q.from + chrono::Duration::days(365), 1).is_err());
    }
}
