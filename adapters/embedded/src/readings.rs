//! [`ReadingStore`] in `<data dir>/readings.redb`, laid out for range scans of
//! one series: `(series id, timestamp µs) -> (value, quality)`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hearth_domain::model::{aggregate_sorted, HistoryBucket, HistoryQuery, Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::{DeviceId, StoreError, TenantId};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use redb::{Database, ReadableTable, TableDefinition};

use crate::error::EmbeddedError;

/// `tenant uuid (16 bytes) ++ device uuid (16 bytes) ++ point key (UTF-8)`
/// -> series id. A small dense id keeps every sample key at 16 bytes
/// instead of repeating ~40 bytes of identity per sample.
const SERIES: TableDefinition<&[u8], u64> = TableDefinition::new("series");
/// `(series id, timestamp in µs since the epoch)` -> `(value, quality)`.
/// Sorting by series first makes one series' history a contiguous range.
const SAMPLES: TableDefinition<(u64, i64), (f64, u8)> = TableDefinition::new("samples");
/// Counters; holds the next free series id.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SERIES_ID: &str = "next_series_id";

/// Series ids already known, so a batch resolves its series without touching
/// the series table. Nested by point key so lookups borrow `&str` instead of
/// allocating a key per reading.
type SeriesIds = HashMap<(TenantId, DeviceId), HashMap<String, u64>>;

struct Inner {
    db: Database,
    /// Only ids of committed series enter here, so an aborted batch cannot
    /// leave an id behind that the table does not have.
    series: RwLock<SeriesIds>,
}

/// The embedded default [`ReadingStore`].
#[derive(Clone)]
pub struct EmbeddedReadings {
    inner: Arc<Inner>,
}

/// Which series a row belongs to while a batch is being prepared.
#[derive(Clone, Copy)]
enum SeriesRef {
    Known(u64),
    /// Index into the batch's list of series not yet in the cache.
    New(usize),
}

struct Row {
    series: SeriesRef,
    micros: i64,
    value: f64,
    quality: u8,
}

/// A series the cache did not know, resolved or created inside the write
/// transaction.
struct NewSeries {
    tenant: TenantId,
    device: DeviceId,
    point: String,
}

impl NewSeries {
    fn key(&self) -> Vec<u8> {
        series_key(self.tenant, self.device, &self.point)
    }
}

fn series_key(tenant: TenantId, device: DeviceId, point: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(32 + point.len());
    key.extend_from_slice(tenant.as_uuid().as_bytes());
    key.extend_from_slice(device.as_uuid().as_bytes());
    key.extend_from_slice(point.as_bytes());
    key
}

impl EmbeddedReadings {
    /// Opens or creates `<dir>/readings.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self::open_inner(dir)?)
    }

    fn open_inner(dir: &Path) -> Result<Self, EmbeddedError> {
        let db = crate::open_database(dir, "readings.redb")?;
        // Create the tables up front so read transactions never meet a
        // missing table.
        let txn = db.begin_write()?;
        txn.open_table(SERIES)?;
        txn.open_table(SAMPLES)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                series: RwLock::new(SeriesIds::new()),
            }),
        })
    }

    fn ids(&self) -> RwLockReadGuard<'_, SeriesIds> {
        self.inner.series.read()
    }

    fn ids_mut(&self) -> RwLockWriteGuard<'_, SeriesIds> {
        self.inner.series.write()
    }

    /// Turns a batch into rows, resolving series ids from the cache; series
    /// the cache does not know are listed once each.
    fn prepare(&self, batch: &[Reading]) -> (Vec<Row>, Vec<NewSeries>) {
        let ids = self.ids();
        let mut rows = Vec::with_capacity(batch.len());
        let mut new_series = Vec::new();
        let mut new_index: HashMap<(TenantId, DeviceId, &str), usize> = HashMap::new();
        for r in batch {
            let point = r.point.as_str();
            let known = ids
                .get(&(r.tenant_id, r.device_id))
                .and_then(|points| points.get(point));
            let series = match known {
                Some(id) => SeriesRef::Known(*id),
                None => SeriesRef::New(
                    *new_index
                        .entry((r.tenant_id, r.device_id, point))
                        .or_insert_with(|| {
                            new_series.push(NewSeries {
                                tenant: r.tenant_id,
                                device: r.device_id,
                                point: point.to_owned(),
                            });
                            new_series.len() - 1
                        }),
                ),
            };
            rows.push(Row {
                series,
                micros: r.timestamp.timestamp_micros(),
                value: r.value,
                quality: r.quality.as_u8(),
            });
        }
        (rows, new_series)
    }

    fn remember(&self, resolved: Vec<(NewSeries, u64)>) {
        if resolved.is_empty() {
            return;
        }
        let mut ids = self.ids_mut();
        for (series, id) in resolved {
            ids.entry((series.tenant, series.device))
                .or_default()
                .insert(series.point, id);
        }
    }
}

/// Writes one batch in one write transaction; returns the ids of the series
/// it had to look up or create.
fn write_batch(
    db: &Database,
    rows: Vec<Row>,
    new_series: Vec<NewSeries>,
) -> Result<Vec<(NewSeries, u64)>, EmbeddedError> {
    let txn = db.begin_write()?;
    let mut new_ids = Vec::with_capacity(new_series.len());
    {
        let mut series_table = txn.open_table(SERIES)?;
        let mut meta = txn.open_table(META)?;
        let mut next_id = meta.get(NEXT_SERIES_ID)?.map(|id| id.value()).unwrap_or(0);
        let first_free = next_id;
        for series in &new_series {
            let key = series.key();
            let existing = series_table.get(key.as_slice())?.map(|id| id.value());
            let id = match existing {
                Some(id) => id,
                None => {
                    let id = next_id;
                    next_id += 1;
                    series_table.insert(key.as_slice(), id)?;
                    id
                }
            };
            new_ids.push(id);
        }
        if next_id != first_free {
            meta.insert(NEXT_SERIES_ID, next_id)?;
        }
    }
    let mut samples: Vec<(u64, i64, f64, u8)> = rows
        .into_iter()
        .map(|row| {
            let id = match row.series {
                SeriesRef::Known(id) => id,
                SeriesRef::New(index) => new_ids[index],
            };
            (id, row.micros, row.value, row.quality)
        })
        .collect();
    // Key order turns scattered B-tree inserts into mostly sequential ones.
    // The sort is stable, so of two readings with the same key in one batch
    // the later one still wins.
    samples.sort_by_key(|&(id, micros, _, _)| (id, micros));
    {
        let mut table = txn.open_table(SAMPLES)?;
        for (id, micros, value, quality) in samples {
            table.insert((id, micros), (value, quality))?;
        }
    }
    // Nothing is visible until here; an error anywhere above drops the
    // transaction, which aborts it: the batch is stored whole or not at all.
    txn.commit()?;
    Ok(new_series.into_iter().zip(new_ids).collect())
}

/// Microseconds of `to`, rounded up, as an exclusive bound: a stored sample
/// (truncated to µs) just below a sub-µs `to` is still inside the range.
fn exclusive_end_micros(to: DateTime<Utc>) -> i64 {
    let micros = to.timestamp_micros();
    // `timestamp_micros` truncates; round up only when nanoseconds were cut.
    match to.timestamp_subsec_nanos() % 1_000 {
        0 => micros,
        _ => micros.saturating_add(1),
    }
}

fn read_history(
    db: &Database,
    query: &HistoryQuery,
    known: Option<u64>,
    key: &[u8],
) -> Result<(Vec<HistoryBucket>, Option<u64>), EmbeddedError> {
    let txn = db.begin_read()?;
    let series = match known {
        Some(id) => id,
        None => match txn.open_table(SERIES)?.get(key)? {
            Some(id) => id.value(),
            None => return Ok((Vec::new(), None)),
        },
    };
    let table = txn.open_table(SAMPLES)?;
    let from = query.from.timestamp_micros();
    let to = exclusive_end_micros(query.to);
    // Aggregate while scanning rather than collecting first: a month of
    // one-second samples would otherwise sit in memory at once.
    let mut failure = None;
    let samples = table
        .range((series, from)..(series, to))?
        .map_while(|entry| {
            let decoded = entry.map_err(EmbeddedError::from).and_then(|(key, value)| {
                let (_, micros) = key.value();
                let timestamp = DateTime::from_timestamp_micros(micros).ok_or_else(|| {
                    EmbeddedError::Corrupt(format!("sample timestamp {micros} µs is out of range"))
                })?;
                let (value, quality) = value.value();
                Ok((timestamp, value, Quality::from_u8(quality)))
            });
            match decoded {
                Ok(sample) => Some(sample),
                Err(err) => {
                    failure = Some(err);
                    None
                }
            }
        });
    let buckets = aggregate_sorted(query, samples);
    match failure {
        Some(err) => Err(err),
        None => Ok((buckets, Some(series))),
    }
}

#[async_trait]
impl ReadingStore for EmbeddedReadings {
    async fn append(&self, batch: &[Reading]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (rows, new_series) = self.prepare(batch);
        let inner = self.inner.clone();
        let resolved = crate::blocking(move || write_batch(&inner.db, rows, new_series)).await?;
        self.remember(resolved);
        Ok(())
    }

    async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryBucket>, StoreError> {
        let known = self
            .ids()
            .get(&(query.tenant_id, query.device_id))
            .and_then(|points| points.get(query.point.as_str()))
            .copied();
        let key = series_key(query.tenant_id, query.device_id, query.point.as_str());
        let inner = self.inner.clone();
        let owned = query.clone();
        let (buckets, series) =
            crate::blocking(move || read_history(&inner.db, &owned, known, &key)).await?;
        if let (None, Some(id)) = (known, series) {
            let mut ids = self.ids_mut();
            ids.entry((query.tenant_id, query.device_id))
                .or_default()
                .insert(query.point.as_str().to_owned(), id);
        }
        Ok(buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_microsecond_end_still_covers_the_microsecond_below_it() {
        let whole = DateTime::from_timestamp_micros(1_000).expect("valid");
        assert_eq!(exclusive_end_micros(whole), 1_000);
        let ragged = whole + chrono::Duration::nanoseconds(1);
        assert_eq!(exclusive_end_micros(ragged), 1_001);
    }
}
