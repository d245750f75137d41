//! In-memory [`ReadingStore`]: one ordered map per series, for use-case tests
//! and as the baseline the embedded store is benchmarked against.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::DateTime;
use hearth_domain::model::{aggregate_sorted, HistoryBucket, HistoryQuery, Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::{DeviceId, PointKey, StoreError, TenantId};
use parking_lot::RwLock;

type SeriesKey = (TenantId, DeviceId, PointKey);

/// Samples of one series keyed by timestamp in microseconds, the resolution
/// the embedded store keeps, so both replace on exactly the same keys.
type Series = BTreeMap<i64, (f64, Quality)>;

#[derive(Default)]
pub struct MemoryReadings {
    series: RwLock<HashMap<SeriesKey, Series>>,
}

impl MemoryReadings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples stored, over every series: what a test of the writing side
    /// (the poller, the batched writer) checks without asking for history.
    pub fn len(&self) -> usize {
        self.series.read().values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ReadingStore for MemoryReadings {
    async fn append(&self, batch: &[Reading]) -> Result<(), StoreError> {
        // One write lock for the whole batch: readers see all of it or none.
        let mut series = self.series.write();
        for r in batch {
            series
                .entry((r.tenant_id, r.device_id, r.point.clone()))
                .or_default()
                .insert(r.timestamp.timestamp_micros(), (r.value, r.quality));
        }
        Ok(())
    }

    async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryBucket>, StoreError> {
        let series = self.series.read();
        let Some(samples) = series.get(&(query.tenant_id, query.device_id, query.point.clone()))
        else {
            return Ok(Vec::new());
        };
        let range = samples
            .range(query.from.timestamp_micros()..=query.to.timestamp_micros())
            .filter_map(|(micros, (value, quality))| {
                DateTime::from_timestamp_micros(*micros).map(|ts| (ts, *value, *quality))
            });
        // `aggregate_sorted` applies the exact [from, to) bounds.
        Ok(aggregate_sorted(query, range))
    }
}
