//! [`ReadingStore`] in `<data dir>/readings.redb` as a small time-series
//! engine: per-series chunks of one hour, written in compressed blocks.
//!
//! Write path: a batch is committed as one WAL record (one redb insert,
//! whatever the batch size, so ingest does not slow as the store grows) and
//! kept in memory as the series' *head*. Every [`Tuning::checkpoint_readings`]
//! readings the heads are sealed: each (series, hour) becomes one compressed
//! block (see [`codec`]) and the WAL is emptied, in one transaction. When an
//! hour is over, its blocks are *compacted* into one, and its rollups (1 min,
//! 15 min, 1 h and the day: sum, min, max, last, count) are computed from the
//! final data, so late or replaced readings never leave a rollup stale.
//!
//! Read path: history merges blocks and heads (later writes win) or, when
//! the buckets line up with a rollup level, reads the rollups of settled
//! hours and only the unsettled ones raw.

mod codec;
mod retention;

pub use retention::{Retention, RetentionPolicy};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hearth_domain::model::{Aggregate, HistoryBucket, HistoryQuery, Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::{DeviceId, StoreError, TenantId};
use parking_lot::{Mutex, RwLock};
use redb::{
    Database, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

use self::codec::Sample;
use crate::error::EmbeddedError;

/// `tenant uuid (16 bytes) ++ device uuid (16 bytes) ++ point key (UTF-8)`
/// -> series id, so block keys carry 8 bytes of identity instead of ~40.
const SERIES: TableDefinition<&[u8], u64> = TableDefinition::new("series");
/// Counters: next free series id, next block sequence number.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SERIES_ID: &str = "next_series_id";
const NEXT_BLOCK: &str = "next_block";
/// Acknowledged batches not yet sealed into blocks: sequence -> rows.
const WAL: TableDefinition<u64, &[u8]> = TableDefinition::new("wal");
/// `(hour start in s, series)` -> the hour's compacted, compressed block.
/// Time first, like every table written on ingest: compaction of the hour
/// that just ended appends at the end of the tree. Keyed series first, each
/// compaction dirtied one page per series, and ingest slowed as the store
/// grew. Reads look up the hours of the range one by one instead, within
/// the hours the series has data for ([`SPANS`]).
const BLOCKS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("blocks");
/// Series -> (first, last) hour start with data, so reads skip the hours
/// before and after a series' life without touching the block tree.
const SPANS: TableDefinition<u64, (i64, i64)> = TableDefinition::new("spans");
/// `(hour start in s, series, block sequence)` -> a block sealed at a
/// checkpoint, plain, until its hour is compacted. Time first, so a
/// checkpoint appends at the end of the tree instead of touching one page
/// per series (which made ingest slow down as the store grew); the
/// sequence orders blocks of one hour so later writes win.
const STAGED: TableDefinition<(i64, u64, u64), &[u8]> = TableDefinition::new("staged_blocks");
/// Hours written since their last compaction: their rollups are not to be
/// trusted until compacted again.
const PENDING: TableDefinition<(u64, i64), u8> = TableDefinition::new("pending_hours");
/// `(level in s, bucket start in s, series)` -> (sum, min, max, last, time
/// of last in µs, count) of the `Good`/`Stale` readings of the bucket, for
/// the hour and the day. Time first, as [`BLOCKS`].
const ROLLUPS: TableDefinition<(u32, i64, u64), RollupRow> = TableDefinition::new("rollups");
/// `(level in s, hour start in s, series)` -> the hour's buckets of a level
/// finer than an hour, compressed: one row per bucket would cost more than
/// the compressed readings themselves.
const ROLLUP_BLOBS: TableDefinition<(u32, i64, u64), &[u8]> = TableDefinition::new("rollup_blobs");
/// The layout before blocks (one row per reading); migrated on open.
const LEGACY_SAMPLES: TableDefinition<(u64, i64), (f64, u8)> = TableDefinition::new("samples");

/// One chunk (and compaction unit) spans this many seconds.
pub const CHUNK_SECONDS: i64 = 3_600;
const CHUNK_MICROS: i64 = CHUNK_SECONDS * 1_000_000;
/// Rollup levels in seconds, finest first. All but the day divide a chunk.
pub const ROLLUP_LEVELS: [i64; 4] = [60, 900, 3_600, 86_400];
const DAY: i64 = 86_400;
/// Bytes of one WAL row: series id, µs, value bits, quality.
const WAL_ROW: usize = 8 + 8 + 8 + 1;

/// Knobs of the engine; the defaults suit a server.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Readings held in heads (and the WAL) before they are sealed. Memory
    /// is about 40 bytes a reading; larger means fewer, bigger blocks.
    pub checkpoint_readings: usize,
    pub retention: Retention,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            checkpoint_readings: 1_000_000,
            retention: Retention::default(),
        }
    }
}

/// `(tenant, device)` -> point -> series id, so a batch resolves its series
/// without touching the series table.
type SeriesIds = HashMap<(TenantId, DeviceId), HashMap<String, u64>>;

/// What readers and writers share in memory.
#[derive(Default)]
struct State {
    ids: SeriesIds,
    /// Series id -> tenant, for retention.
    tenants: HashMap<u64, TenantId>,
    /// Unsealed readings: series -> hour -> samples in arrival order.
    heads: HashMap<u64, BTreeMap<i64, Vec<Sample>>>,
    head_len: usize,
    /// Mirror of the `PENDING` table.
    pending: HashMap<u64, BTreeSet<i64>>,
    /// Mirror of the `SPANS` table.
    spans: HashMap<u64, (i64, i64)>,
    /// Newest reading time seen, in s: hours that end before it are over.
    newest_secs: i64,
}

/// Held by whoever writes; the WAL and the block counter move under it.
struct Writer {
    next_wal: u64,
    next_block: u64,
}

struct Inner {
    db: Database,
    state: RwLock<State>,
    writer: Mutex<Writer>,
    tuning: Tuning,
    /// Starts as `tuning.retention`; replaced by [`EmbeddedReadings::set_retention`]
    /// once tenant slugs are resolved, which needs the directory, after open.
    retention: RwLock<Retention>,
}

/// The embedded default [`ReadingStore`].
#[derive(Clone)]
pub struct EmbeddedReadings {
    inner: Arc<Inner>,
}

/// A series the cache did not know, resolved or created inside the write
/// transaction.
struct NewSeries {
    tenant: TenantId,
    device: DeviceId,
    point: String,
}

#[derive(Clone, Copy)]
enum SeriesRef {
    Known(u64),
    New(usize),
}

fn series_key(tenant: TenantId, device: DeviceId, point: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(32 + point.len());
    key.extend_from_slice(tenant.as_uuid().as_bytes());
    key.extend_from_slice(device.as_uuid().as_bytes());
    key.extend_from_slice(point.as_bytes());
    key
}

fn parse_series_key(key: &[u8]) -> Option<(TenantId, DeviceId, String)> {
    let tenant = uuid::Uuid::from_slice(key.get(..16)?).ok()?;
    let device = uuid::Uuid::from_slice(key.get(16..32)?).ok()?;
    let point = std::str::from_utf8(key.get(32..)?).ok()?;
    Some((
        TenantId::from_uuid(tenant),
        DeviceId::from_uuid(device),
        point.to_owned(),
    ))
}

/// Start (s) of the chunk holding a time in µs.
fn chunk_of(micros: i64) -> i64 {
    micros.div_euclid(CHUNK_MICROS) * CHUNK_SECONDS
}

/// Sorts by time; of equal times the one written last stays.
fn sort_dedup(mut samples: Vec<Sample>) -> Vec<Sample> {
    samples.sort_by_key(|s| s.0);
    let mut out: Vec<Sample> = Vec::with_capacity(samples.len());
    for s in samples {
        match out.last_mut() {
            Some(last) if last.0 == s.0 => *last = s,
            _ => out.push(s),
        }
    }
    out
}

/// Microseconds of `to`, rounded up, as an exclusive bound: a stored sample
/// (truncated to µs) just below a sub-µs `to` is still inside the range.
fn exclusive_end_micros(to: DateTime<Utc>) -> i64 {
    let micros = to.timestamp_micros();
    match to.timestamp_subsec_nanos() % 1_000 {
        0 => micros,
        _ => micros.saturating_add(1),
    }
}

/// Running aggregate of one bucket (raw readings or rollup rows).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Agg {
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
    last_micros: i64,
    count: u64,
}

type RollupRow = (f64, f64, f64, f64, i64, u64);

impl Agg {
    fn one(micros: i64, value: f64) -> Self {
        Self {
            sum: value,
            min: value,
            max: value,
            last: value,
            last_micros: micros,
            count: 1,
        }
    }
    fn merge(&mut self, other: &Agg) {
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.last_micros >= self.last_micros {
            self.last = other.last;
            self.last_micros = other.last_micros;
        }
        self.count += other.count;
    }
    fn row(&self) -> RollupRow {
        (
            self.sum,
            self.min,
            self.max,
            self.last,
            self.last_micros,
            self.count,
        )
    }
    fn from_row(row: RollupRow) -> Self {
        let (sum, min, max, last, last_micros, count) = row;
        Self {
            sum,
            min,
            max,
            last,
            last_micros,
            count,
        }
    }
    fn value(&self, aggregate: Aggregate) -> f64 {
        match aggregate {
            Aggregate::Mean => self.sum / self.count as f64,
            Aggregate::Min => self.min,
            Aggregate::Max => self.max,
            Aggregate::Last => self.last,
            Aggregate::Count => self.count as f64,
        }
    }
}

/// Query buckets being filled, keyed by index from `from`; order of
/// arrival does not matter, so rollups and raw pieces can be mixed.
struct Buckets<'q> {
    query: &'q HistoryQuery,
    from_us: i64,
    to_us: i64,
    bucket_us: i64,
    map: BTreeMap<i64, Agg>,
}

impl<'q> Buckets<'q> {
    fn new(query: &'q HistoryQuery) -> Self {
        Self {
            query,
            from_us: query.from.timestamp_micros(),
            to_us: exclusive_end_micros(query.to),
            bucket_us: i64::from(query.bucket_seconds) * 1_000_000,
            map: BTreeMap::new(),
        }
    }
    fn add(&mut self, micros: i64, agg: &Agg) {
        let index = (micros - self.from_us).div_euclid(self.bucket_us);
        self.map
            .entry(index)
            .and_modify(|a| a.merge(agg))
            .or_insert(*agg);
    }
    /// `Bad` samples are fault codes (an open sensor's 192 °C), never values.
    fn raw(&mut self, samples: &[Sample], lo_us: i64, hi_us: i64) {
        let lo = lo_us.max(self.from_us);
        let hi = hi_us.min(self.to_us);
        for &(micros, value, quality) in samples {
            if micros >= lo && micros < hi && quality != Quality::Bad.as_u8() {
                self.add(micros, &Agg::one(micros, value));
            }
        }
    }
    fn finish(self) -> Vec<HistoryBucket> {
        let step = i64::from(self.query.bucket_seconds);
        self.map
            .into_iter()
            .map(|(index, agg)| HistoryBucket {
                timestamp: self.query.from + chrono::Duration::seconds(index * step),
                value: agg.value(self.query.aggregate),
            })
            .collect()
    }
}

/// The coarsest rollup level whose buckets each fall inside one query
/// bucket: `from` on a level boundary and the bucket a multiple of it.
fn rollup_level(query: &HistoryQuery) -> Option<i64> {
    if query.from.timestamp_subsec_nanos() != 0 {
        return None;
    }
    let from = query.from.timestamp();
    let bucket = i64::from(query.bucket_seconds);
    ROLLUP_LEVELS
        .iter()
        .rev()
        .copied()
        .find(|level| bucket % level == 0 && from.rem_euclid(*level) == 0)
}

/// What a read needs from memory, copied under the state lock together with
/// opening the read transaction, so a concurrent seal is seen whole or not at all.
struct Snapshot {
    txn: ReadTransaction,
    series: u64,
    /// Heads of the queried range, sorted and deduplicated.
    heads: BTreeMap<i64, Vec<Sample>>,
    /// Hours whose rollups cannot be used: pending compaction or with heads.
    dirty: BTreeSet<i64>,
    /// First and last hour that may hold data of the series.
    span: (i64, i64),
}

impl Snapshot {
    /// Folds raw readings in `[lo_us, hi_us)` into `out`, one chunk at a time
    /// so memory holds at most one hour of one series.
    fn raw(&self, out: &mut Buckets<'_>, lo_us: i64, hi_us: i64) -> Result<(), EmbeddedError> {
        if lo_us >= hi_us {
            return Ok(());
        }
        let blocks = self.txn.open_table(BLOCKS)?;
        let staged = self.txn.open_table(STAGED)?;
        for chunk in self.chunks(chunk_of(lo_us), chunk_of(hi_us - 1)) {
            let mut samples = match blocks.get((chunk, self.series))? {
                Some(block) => codec::decode(block.value())?,
                None => Vec::new(),
            };
            if !self.dirty.contains(&chunk) {
                // A compacted block alone is sorted and unique already.
                out.raw(&samples, lo_us, hi_us);
                continue;
            }
            for entry in staged.range((chunk, self.series, 0)..=(chunk, self.series, u64::MAX))? {
                let (_, value) = entry?;
                samples.extend(codec::decode(value.value())?);
            }
            if let Some(head) = self.heads.get(&chunk) {
                samples.extend_from_slice(head);
            }
            out.raw(&sort_dedup(samples), lo_us, hi_us);
        }
        Ok(())
    }

    /// Hour starts in `[first, last]` (both hour starts) where the series
    /// may have data.
    fn chunks(&self, first: i64, last: i64) -> impl Iterator<Item = i64> {
        let lo = first.max(self.span.0);
        let hi = last.min(self.span.1);
        (lo <= hi)
            .then(|| (0..=(hi - lo) / CHUNK_SECONDS).map(move |i| lo + i * CHUNK_SECONDS))
            .into_iter()
            .flatten()
    }

    /// Rollup rows of `level` in `[from_s, to_s)` for settled hours, raw for
    /// the others.
    fn rollups(
        &self,
        out: &mut Buckets<'_>,
        level: i64,
        from_s: i64,
        to_s: i64,
    ) -> Result<(), EmbeddedError> {
        if from_s >= to_s {
            return Ok(());
        }
        let level_key = level as u32;
        let first = from_s.div_euclid(CHUNK_SECONDS) * CHUNK_SECONDS;
        let last = (to_s - 1).div_euclid(CHUNK_SECONDS) * CHUNK_SECONDS;
        if level < CHUNK_SECONDS {
            let blobs = self.txn.open_table(ROLLUP_BLOBS)?;
            for chunk in self.chunks(first, last) {
                if self.dirty.contains(&chunk) {
                    continue;
                }
                if let Some(blob) = blobs.get((level_key, chunk, self.series))? {
                    for (start, agg) in decode_rollups(blob.value())? {
                        if start >= from_s && start < to_s {
                            out.add(start * 1_000_000, &agg);
                        }
                    }
                }
            }
        } else {
            // Hours come 24 to a blob, one per day: a month is 30 lookups.
            let blobs = self.txn.open_table(ROLLUP_BLOBS)?;
            let mut day = first.max(self.span.0).div_euclid(DAY) * DAY;
            while day <= last.min(self.span.1) {
                if let Some(blob) = blobs.get((level_key, day, self.series))? {
                    for (hour, agg) in decode_hours(day, blob.value())? {
                        if hour >= from_s && hour < to_s && !self.dirty.contains(&hour) {
                            out.add(hour * 1_000_000, &agg);
                        }
                    }
                }
                day += DAY;
            }
        }
        for chunk in self.dirty.range(first..to_s) {
            let lo = (*chunk).max(from_s);
            let hi = (chunk + CHUNK_SECONDS).min(to_s);
            self.raw(out, lo * 1_000_000, hi * 1_000_000)?;
        }
        Ok(())
    }

    /// Day rows for days without an unsettled hour; hour rows and raw
    /// readings for the others.
    fn days(&self, out: &mut Buckets<'_>, from_s: i64, to_s: i64) -> Result<(), EmbeddedError> {
        let dirty_days: BTreeSet<i64> = self
            .dirty
            .iter()
            .map(|chunk| chunk.div_euclid(DAY) * DAY)
            .collect();
        let rows = self.txn.open_table(ROLLUPS)?;
        let first = from_s.max(self.span.0.div_euclid(DAY) * DAY);
        let last = (to_s - 1).min(self.span.1);
        let mut day = first.div_euclid(DAY) * DAY;
        while day <= last {
            if day >= from_s && !dirty_days.contains(&day) {
                if let Some(row) = rows.get((DAY as u32, day, self.series))? {
                    out.add(day * 1_000_000, &Agg::from_row(row.value()));
                }
            }
            day += DAY;
        }
        for day in dirty_days.range(from_s..to_s) {
            self.rollups(out, CHUNK_SECONDS, *day, (day + DAY).min(to_s))?;
        }
        Ok(())
    }
}

impl EmbeddedReadings {
    /// Opens or creates `<dir>/readings.redb` with the default tuning.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self::open_inner(dir, Tuning::default())?)
    }

    /// Opens with explicit tuning (retention, checkpoint size).
    pub fn open_with(dir: &Path, tuning: Tuning) -> Result<Self, StoreError> {
        Ok(Self::open_inner(dir, tuning)?)
    }

    fn open_inner(dir: &Path, tuning: Tuning) -> Result<Self, EmbeddedError> {
        let db = crate::open_database(dir, "readings.redb")?;
        let txn = db.begin_write()?;
        let mut state = State::default();
        let writer;
        {
            let series = txn.open_table(SERIES)?;
            for entry in series.iter()? {
                let (key, id) = entry?;
                let (tenant, device, point) = parse_series_key(key.value())
                    .ok_or_else(|| EmbeddedError::Corrupt("unreadable series key".into()))?;
                state.tenants.insert(id.value(), tenant);
                state
                    .ids
                    .entry((tenant, device))
                    .or_default()
                    .insert(point, id.value());
            }
            let meta = txn.open_table(META)?;
            let next_block = meta.get(NEXT_BLOCK)?.map(|v| v.value()).unwrap_or(0);
            txn.open_table(BLOCKS)?;
            txn.open_table(STAGED)?;
            for entry in txn.open_table(SPANS)?.iter()? {
                let (series, span) = entry?;
                state.spans.insert(series.value(), span.value());
            }
            txn.open_table(ROLLUPS)?;
            txn.open_table(ROLLUP_BLOBS)?;
            let pending = txn.open_table(PENDING)?;
            for entry in pending.iter()? {
                let (key, _) = entry?;
                let (series, chunk) = key.value();
                state.pending.entry(series).or_default().insert(chunk);
            }
            // Crash recovery: acknowledged batches not yet sealed go back
            // into the heads, in the order they were written.
            let wal = txn.open_table(WAL)?;
            let mut next_wal = 0;
            for entry in wal.iter()? {
                let (seq, rows) = entry?;
                next_wal = seq.value() + 1;
                for row in rows.value().chunks_exact(WAL_ROW) {
                    let (series, sample) = decode_wal_row(row);
                    state.push_head(series, sample);
                }
            }
            writer = Writer {
                next_wal,
                next_block,
            };
        }
        txn.commit()?;
        let store = Self {
            inner: Arc::new(Inner {
                db,
                state: RwLock::new(state),
                writer: Mutex::new(writer),
                retention: RwLock::new(tuning.retention.clone()),
                tuning,
            }),
        };
        store.migrate_legacy()?;
        Ok(store)
    }

    /// Moves rows of the one-row-per-reading layout into blocks, then drops
    /// the old table.
    fn migrate_legacy(&self) -> Result<(), EmbeddedError> {
        let exists = {
            let txn = self.inner.db.begin_read()?;
            let found = txn
                .list_tables()?
                .any(|t| t.name() == LEGACY_SAMPLES.name());
            found
        };
        if !exists {
            return Ok(());
        }
        let mut writer = self.inner.writer.lock();
        let mut rows = Vec::new();
        {
            let txn = self.inner.db.begin_read()?;
            let table = txn.open_table(LEGACY_SAMPLES)?;
            for entry in table.iter()? {
                let (key, value) = entry?;
                let (series, micros) = key.value();
                let (v, q) = value.value();
                rows.push((series, (micros, v, q)));
                if rows.len() >= 1_000_000 {
                    self.inner
                        .state
                        .write()
                        .push_rows(&std::mem::take(&mut rows));
                    checkpoint(&self.inner, &mut writer, false, None)?;
                }
            }
        }
        self.inner.state.write().push_rows(&rows);
        checkpoint(&self.inner, &mut writer, true, None)?;
        let txn = self.inner.db.begin_write()?;
        txn.delete_table(LEGACY_SAMPLES)?;
        txn.commit()?;
        tracing::info!("Migrated readings to the block layout.");
        Ok(())
    }

    /// Seals every head and compacts every hour, closed or not: for a
    /// measurement of the size at rest, or before a backup.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        crate::blocking(move || {
            let mut writer = inner.writer.lock();
            checkpoint(&inner, &mut writer, true, None)
        })
        .await?;
        Ok(())
    }

    /// Drops sealed chunks and rollups older than each tenant's retention at
    /// `now` (whole chunks only), after sealing the heads.
    /// Returns how many chunks and rollup rows (or blobs) it dropped.
    pub async fn enforce_retention(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let inner = self.inner.clone();
        let dropped = crate::blocking(move || {
            let mut writer = inner.writer.lock();
            checkpoint(&inner, &mut writer, false, Some(now))
        })
        .await?;
        Ok(dropped)
    }

    /// Replaces the retention the next [`Self::enforce_retention`] applies.
    pub fn set_retention(&self, retention: Retention) {
        *self.inner.retention.write() = retention;
    }

    /// History from the raw readings only, never from rollups: what
    /// [`ReadingStore::history`] must agree with, for checks and benchmarks.
    pub async fn history_raw(
        &self,
        query: &HistoryQuery,
    ) -> Result<Vec<HistoryBucket>, StoreError> {
        let inner = self.inner.clone();
        let owned = query.clone();
        Ok(crate::blocking(move || read_history(&inner, &owned, false)).await?)
    }

    /// Gives free pages back to the file system; needs the only handle.
    pub fn compact_file(&mut self) -> Result<bool, StoreError> {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                // One pass moves what it can; later passes free what the
                // first one's moves left behind.
                let mut any = false;
                for _ in 0..8 {
                    let moved = inner.db.compact().map_err(|err| {
                        StoreError::from(EmbeddedError::Database(Box::new(err.into())))
                    })?;
                    any |= moved;
                    if !moved {
                        break;
                    }
                }
                Ok(any)
            }
            None => Ok(false),
        }
    }

    /// redb's own accounting of the file: (allocated pages x page size,
    /// stored bytes, B-tree metadata bytes, fragmented bytes), to tell the
    /// data from the engine's overhead in a size measurement.
    pub fn file_stats(&self) -> Result<(u64, u64, u64, u64), StoreError> {
        let stats = (|| {
            let txn = self.inner.db.begin_write()?;
            let stats = txn.stats()?;
            txn.abort()?;
            Ok::<_, EmbeddedError>((
                stats.allocated_pages() * stats.page_size() as u64,
                stats.stored_bytes(),
                stats.metadata_bytes(),
                stats.fragmented_bytes(),
            ))
        })()?;
        Ok(stats)
    }

    /// Bytes of compressed blocks and rollup rows (what the file holds once
    /// free pages are discounted) and the number of stored readings.
    pub async fn stored_size(&self) -> Result<(u64, u64), StoreError> {
        let inner = self.inner.clone();
        let size = crate::blocking(move || {
            let txn = inner.db.begin_read()?;
            let mut bytes = 0u64;
            let mut readings = 0u64;
            for entry in txn.open_table(BLOCKS)?.iter()? {
                let (_, value) = entry?;
                bytes += value.value().len() as u64 + 16;
                readings += codec::decode(value.value())?.len() as u64;
            }
            for entry in txn.open_table(STAGED)?.iter()? {
                let (_, value) = entry?;
                bytes += value.value().len() as u64 + 24;
                readings += codec::decode(value.value())?.len() as u64;
            }
            let rollups = txn.open_table(ROLLUPS)?.len()?;
            bytes += rollups * (20 + 48);
            bytes += txn.open_table(SPANS)?.len()? * 24;
            for entry in txn.open_table(ROLLUP_BLOBS)?.iter()? {
                let (_, value) = entry?;
                bytes += value.value().len() as u64 + 20;
            }
            Ok((bytes, readings))
        })
        .await?;
        Ok(size)
    }
}

/// Bytes of one hour in a day's blob: sum, min, max, last, time of last, count.
const HOUR_RECORD: usize = 6 * 8;

/// The hours of one day, plain: a bitmap of the hours present, then one
/// record per present hour. Decoding is a copy, and a month of hourly
/// history is 30 lookups.
fn encode_hours(day: i64, hours: &BTreeMap<i64, Agg>) -> Vec<u8> {
    let mut present = 0u32;
    let mut records = Vec::with_capacity(hours.len() * HOUR_RECORD);
    for h in 0..DAY / CHUNK_SECONDS {
        if let Some(a) = hours.get(&(day + h * CHUNK_SECONDS)) {
            present |= 1 << h;
            for word in [
                a.sum.to_bits(),
                a.min.to_bits(),
                a.max.to_bits(),
                a.last.to_bits(),
                a.last_micros as u64,
                a.count,
            ] {
                records.extend_from_slice(&word.to_le_bytes());
            }
        }
    }
    let mut out = present.to_le_bytes().to_vec();
    out.extend(records);
    out
}

fn decode_hours(day: i64, blob: &[u8]) -> Result<Vec<(i64, Agg)>, EmbeddedError> {
    let corrupt = || EmbeddedError::Corrupt("hour rollups of the wrong size".into());
    let (present, records) = blob.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let present = u32::from_le_bytes(*present);
    if records.len() != present.count_ones() as usize * HOUR_RECORD {
        return Err(corrupt());
    }
    let hours = (0..DAY / CHUNK_SECONDS).filter(|h| present & (1 << h) != 0);
    Ok(hours
        .zip(records.chunks_exact(HOUR_RECORD))
        .map(|(h, record)| {
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&record[i * 8..i * 8 + 8]);
                u64::from_le_bytes(b)
            };
            (
                day + h * CHUNK_SECONDS,
                Agg {
                    sum: f64::from_bits(word(0)),
                    min: f64::from_bits(word(1)),
                    max: f64::from_bits(word(2)),
                    last: f64::from_bits(word(3)),
                    last_micros: word(4) as i64,
                    count: word(5),
                },
            )
        })
        .collect())
}

/// Buckets of one hour at a sub-hour level as compressed columns.
fn encode_rollups(buckets: &BTreeMap<i64, Agg>) -> Result<Vec<u8>, EmbeddedError> {
    let column = |f: fn(&Agg) -> f64| buckets.values().map(f).collect::<Vec<f64>>();
    let mut out = Vec::new();
    codec::put_numbers(&mut out, &buckets.keys().copied().collect::<Vec<i64>>())?;
    codec::put_numbers(&mut out, &column(|a| a.sum))?;
    codec::put_numbers(&mut out, &column(|a| a.min))?;
    codec::put_numbers(&mut out, &column(|a| a.max))?;
    codec::put_numbers(&mut out, &column(|a| a.last))?;
    codec::put_numbers(
        &mut out,
        &buckets
            .values()
            .map(|a| a.last_micros)
            .collect::<Vec<i64>>(),
    )?;
    codec::put_numbers(
        &mut out,
        &buckets.values().map(|a| a.count).collect::<Vec<u64>>(),
    )?;
    Ok(out)
}

fn decode_rollups(blob: &[u8]) -> Result<Vec<(i64, Agg)>, EmbeddedError> {
    let mut input = blob;
    let starts: Vec<i64> = codec::take_numbers(&mut input)?;
    let sum: Vec<f64> = codec::take_numbers(&mut input)?;
    let min: Vec<f64> = codec::take_numbers(&mut input)?;
    let max: Vec<f64> = codec::take_numbers(&mut input)?;
    let last: Vec<f64> = codec::take_numbers(&mut input)?;
    let last_micros: Vec<i64> = codec::take_numbers(&mut input)?;
    let count: Vec<u64> = codec::take_numbers(&mut input)?;
    let n = starts.len();
    if [
        sum.len(),
        min.len(),
        max.len(),
        last.len(),
        last_micros.len(),
        count.len(),
    ]
    .iter()
    .any(|len| *len != n)
    {
        return Err(EmbeddedError::Corrupt(
            "rollup columns of different lengths".into(),
        ));
    }
    Ok((0..n)
        .map(|i| {
            (
                starts[i],
                Agg {
                    sum: sum[i],
                    min: min[i],
                    max: max[i],
                    last: last[i],
                    last_micros: last_micros[i],
                    count: count[i],
                },
            )
        })
        .collect())
}

fn encode_wal_row(out: &mut Vec<u8>, series: u64, sample: Sample) {
    out.extend_from_slice(&series.to_le_bytes());
    out.extend_from_slice(&sample.0.to_le_bytes());
    out.extend_from_slice(&sample.1.to_bits().to_le_bytes());
    out.push(sample.2);
}

fn decode_wal_row(row: &[u8]) -> (u64, Sample) {
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&row[i..i + 8]);
        b
    };
    (
        u64::from_le_bytes(word(0)),
        (
            i64::from_le_bytes(word(8)),
            f64::from_bits(u64::from_le_bytes(word(16))),
            row[24],
        ),
    )
}

impl State {
    fn push_head(&mut self, series: u64, sample: Sample) {
        self.newest_secs = self.newest_secs.max(sample.0.div_euclid(1_000_000));
        self.heads
            .entry(series)
            .or_default()
            .entry(chunk_of(sample.0))
            .or_default()
            .push(sample);
        self.head_len += 1;
    }
    fn push_rows(&mut self, rows: &[(u64, Sample)]) {
        for (series, sample) in rows {
            self.push_head(*series, *sample);
        }
    }
}

/// Seals all heads into blocks, compacts hours that are over (all hours when
/// `everything`), applies retention when `now` is given, and empties the
/// WAL, in one transaction. Caller holds the writer lock.
fn checkpoint(
    inner: &Inner,
    writer: &mut Writer,
    everything: bool,
    now: Option<DateTime<Utc>>,
) -> Result<u64, EmbeddedError> {
    // Readers wait while the heads move into blocks: they must see a head
    // either in memory or in a committed block, never in neither.
    let mut state = inner.state.write();
    let txn = inner.db.begin_write()?;
    let mut pending = state.pending.clone();
    let mut new_spans: HashMap<u64, (i64, i64)> = HashMap::new();
    {
        let mut staged = txn.open_table(STAGED)?;
        let mut pending_table = txn.open_table(PENDING)?;
        // Key order: appends at the end of the staged tree.
        let mut sealed: Vec<(i64, u64, &Vec<Sample>)> = state
            .heads
            .iter()
            .flat_map(|(series, chunks)| {
                chunks
                    .iter()
                    .map(move |(chunk, samples)| (*chunk, *series, samples))
            })
            .collect();
        sealed.sort_by_key(|(chunk, series, _)| (*chunk, *series));
        let mut spans = txn.open_table(SPANS)?;
        for (chunk, series, samples) in sealed {
            let span = new_spans
                .get(&series)
                .or_else(|| state.spans.get(&series))
                .copied();
            let wider = match span {
                Some((lo, hi)) => (lo.min(chunk), hi.max(chunk)),
                None => (chunk, chunk),
            };
            if span != Some(wider) {
                spans.insert(series, wider)?;
                new_spans.insert(series, wider);
            }
            let block = codec::encode_plain(&sort_dedup(samples.clone()));
            staged.insert((chunk, series, writer.next_block), block.as_slice())?;
            writer.next_block += 1;
            pending_table.insert((series, chunk), 0)?;
            pending.entry(series).or_default().insert(chunk);
        }
        let mut wal = txn.open_table(WAL)?;
        wal.retain(|_, _| false)?;
    }
    let newest = state.newest_secs;
    let mut closed: Vec<(u64, i64)> = pending
        .iter()
        .flat_map(|(series, chunks)| chunks.iter().map(move |chunk| (*series, *chunk)))
        .filter(|(_, chunk)| everything || chunk + CHUNK_SECONDS <= newest)
        .collect();
    // Key order: the hour that just ended, all series, appended in order.
    closed.sort_unstable_by_key(|(series, chunk)| (*chunk, *series));
    if !closed.is_empty() {
        let mut tables = Compaction {
            blocks: txn.open_table(BLOCKS)?,
            staged: txn.open_table(STAGED)?,
            pending: txn.open_table(PENDING)?,
            rollups: txn.open_table(ROLLUPS)?,
            blobs: txn.open_table(ROLLUP_BLOBS)?,
        };
        for (series, chunk) in &closed {
            tables.compact_chunk(*series, *chunk)?;
        }
    }
    for (series, chunk) in closed {
        if let Some(chunks) = pending.get_mut(&series) {
            chunks.remove(&chunk);
            if chunks.is_empty() {
                pending.remove(&series);
            }
        }
    }
    let mut dropped = 0;
    if let Some(now) = now {
        let retention = inner.retention.read().clone();
        dropped = retention::enforce(&txn, &retention, &state.tenants, &mut pending, now)?;
    }
    txn.open_table(META)?
        .insert(NEXT_BLOCK, writer.next_block)?;
    txn.commit()?;
    state.heads.clear();
    state.head_len = 0;
    state.pending = pending;
    state.spans.extend(new_spans);
    Ok(dropped)
}

/// The tables compaction writes, opened once per checkpoint.
struct Compaction<'txn> {
    blocks: redb::Table<'txn, (i64, u64), &'static [u8]>,
    staged: redb::Table<'txn, (i64, u64, u64), &'static [u8]>,
    pending: redb::Table<'txn, (u64, i64), u8>,
    rollups: redb::Table<'txn, (u32, i64, u64), RollupRow>,
    blobs: redb::Table<'txn, (u32, i64, u64), &'static [u8]>,
}

impl Compaction<'_> {
    /// Merges the compacted block and the staged blocks of one hour into one
    /// compressed block and recomputes its rollups (and its day's) from it.
    fn compact_chunk(&mut self, series: u64, chunk: i64) -> Result<(), EmbeddedError> {
        let Compaction {
            blocks,
            staged,
            pending,
            rollups,
            blobs,
        } = self;
        let mut samples = match blocks.get((chunk, series))? {
            Some(block) => codec::decode(block.value())?,
            None => Vec::new(),
        };
        let range = (chunk, series, 0)..=(chunk, series, u64::MAX);
        for entry in staged.range(range.clone())? {
            let (_, value) = entry?;
            samples.extend(codec::decode(value.value())?);
        }
        staged.retain_in(range, |_, _| false)?;
        let samples = sort_dedup(samples);
        if samples.is_empty() {
            blocks.remove((chunk, series))?;
        } else {
            let block = codec::encode(&samples)?;
            blocks.insert((chunk, series), block.as_slice())?;
        }
        let mut hours_of_day: BTreeMap<i64, Agg> = BTreeMap::new();
        for level in &ROLLUP_LEVELS[..3] {
            let level_key = *level as u32;
            let mut buckets: BTreeMap<i64, Agg> = BTreeMap::new();
            for &(micros, value, quality) in &samples {
                if quality == Quality::Bad.as_u8() {
                    continue;
                }
                let start = micros.div_euclid(level * 1_000_000) * level;
                buckets
                    .entry(start)
                    .and_modify(|a| a.merge(&Agg::one(micros, value)))
                    .or_insert(Agg::one(micros, value));
            }
            if *level < CHUNK_SECONDS {
                if buckets.is_empty() {
                    blobs.remove((level_key, chunk, series))?;
                } else {
                    let blob = encode_rollups(&buckets)?;
                    blobs.insert((level_key, chunk, series), blob.as_slice())?;
                }
                continue;
            }
            // The hour level: the chunk is its one bucket, kept in its day's
            // blob of 24 hours.
            let day = chunk.div_euclid(DAY) * DAY;
            let mut hours: BTreeMap<i64, Agg> = match blobs.get((level_key, day, series))? {
                Some(blob) => decode_hours(day, blob.value())?.into_iter().collect(),
                None => BTreeMap::new(),
            };
            match buckets.get(&chunk) {
                Some(agg) => hours.insert(chunk, *agg),
                None => hours.remove(&chunk),
            };
            if hours.is_empty() {
                blobs.remove((level_key, day, series))?;
            } else {
                blobs.insert(
                    (level_key, day, series),
                    encode_hours(day, &hours).as_slice(),
                )?;
            }
            hours_of_day = hours;
        }
        // The day from its hours: the other hours of the day are either settled
        // (their rollups are final) or pending, and then their own compaction
        // rewrites the day again.
        let day = chunk.div_euclid(DAY) * DAY;
        let mut total: Option<Agg> = None;
        for agg in hours_of_day.values() {
            match total.as_mut() {
                Some(t) => t.merge(agg),
                None => total = Some(*agg),
            }
        }
        match total {
            Some(agg) => {
                rollups.insert((DAY as u32, day, series), agg.row())?;
            }
            None => {
                rollups.remove((DAY as u32, day, series))?;
            }
        }
        pending.remove((series, chunk))?;
        Ok(())
    }
}

/// Rows of a batch with their series ids.
type SeriesRows = Vec<(u64, Sample)>;

/// Resolves series ids and writes one batch as one WAL record; returns the
/// rows as `(series, sample)` for the heads.
fn write_batch(
    db: &Database,
    writer: &mut Writer,
    rows: Vec<(SeriesRef, Sample)>,
    new_series: &[NewSeries],
) -> Result<(SeriesRows, Vec<u64>), EmbeddedError> {
    let txn = db.begin_write()?;
    let mut new_ids = Vec::with_capacity(new_series.len());
    {
        let mut series_table = txn.open_table(SERIES)?;
        let mut meta = txn.open_table(META)?;
        let mut next_id = meta.get(NEXT_SERIES_ID)?.map(|id| id.value()).unwrap_or(0);
        let first_free = next_id;
        for series in new_series {
            let key = series_key(series.tenant, series.device, &series.point);
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
    let resolved: Vec<(u64, Sample)> = rows
        .into_iter()
        .map(|(series, sample)| {
            let id = match series {
                SeriesRef::Known(id) => id,
                SeriesRef::New(index) => new_ids[index],
            };
            (id, sample)
        })
        .collect();
    let mut record = Vec::with_capacity(resolved.len() * WAL_ROW);
    for (series, sample) in &resolved {
        encode_wal_row(&mut record, *series, *sample);
    }
    txn.open_table(WAL)?
        .insert(writer.next_wal, record.as_slice())?;
    // Nothing is visible until here; an error above drops the transaction,
    // which aborts it: the batch is stored whole or not at all.
    txn.commit()?;
    writer.next_wal += 1;
    Ok((resolved, new_ids))
}

fn append_blocking(
    inner: &Inner,
    rows: Vec<(SeriesRef, Sample)>,
    new_series: Vec<NewSeries>,
) -> Result<(), EmbeddedError> {
    let mut writer = inner.writer.lock();
    let (resolved, new_ids) = write_batch(&inner.db, &mut writer, rows, &new_series)?;
    let full = {
        let mut state = inner.state.write();
        for (series, id) in new_series.into_iter().zip(new_ids) {
            state.tenants.insert(id, series.tenant);
            state
                .ids
                .entry((series.tenant, series.device))
                .or_default()
                .insert(series.point, id);
        }
        state.push_rows(&resolved);
        state.head_len >= inner.tuning.checkpoint_readings
    };
    if full {
        checkpoint(inner, &mut writer, false, None)?;
    }
    Ok(())
}

fn read_history(
    inner: &Inner,
    query: &HistoryQuery,
    use_rollups: bool,
) -> Result<Vec<HistoryBucket>, EmbeddedError> {
    let mut out = Buckets::new(query);
    let (from_us, to_us) = (out.from_us, out.to_us);
    let snapshot = {
        let state = inner.state.read();
        let Some(series) = state
            .ids
            .get(&(query.tenant_id, query.device_id))
            .and_then(|points| points.get(query.point.as_str()))
            .copied()
        else {
            return Ok(Vec::new());
        };
        let first = chunk_of(from_us);
        let last = chunk_of(to_us - 1);
        let heads: BTreeMap<i64, Vec<Sample>> = state
            .heads
            .get(&series)
            .map(|chunks| {
                chunks
                    .range(first..=last)
                    .map(|(chunk, samples)| (*chunk, sort_dedup(samples.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let mut dirty: BTreeSet<i64> = heads.keys().copied().collect();
        if let Some(pending) = state.pending.get(&series) {
            dirty.extend(pending.range(first..=last));
        }
        let mut span = state
            .spans
            .get(&series)
            .copied()
            .unwrap_or((i64::MAX, i64::MIN));
        if let (Some(lo), Some(hi)) = (dirty.first(), dirty.last()) {
            span = (span.0.min(*lo), span.1.max(*hi));
        }
        Snapshot {
            txn: inner.db.begin_read()?,
            series,
            heads,
            dirty,
            span,
        }
    };
    match rollup_level(query).filter(|_| use_rollups) {
        None => snapshot.raw(&mut out, from_us, to_us)?,
        Some(level) => {
            let from_s = query.from.timestamp();
            let end_s = to_us.div_euclid(level * 1_000_000) * level;
            if end_s <= from_s {
                snapshot.raw(&mut out, from_us, to_us)?;
            } else {
                if level == DAY {
                    snapshot.days(&mut out, from_s, end_s)?;
                } else {
                    snapshot.rollups(&mut out, level, from_s, end_s)?;
                }
                snapshot.raw(&mut out, end_s * 1_000_000, to_us)?;
            }
        }
    }
    Ok(out.finish())
}

impl EmbeddedReadings {
    /// Turns a batch into rows, resolving series ids from the cache; series
    /// the cache does not know are listed once each.
    fn prepare(&self, batch: &[Reading]) -> (Vec<(SeriesRef, Sample)>, Vec<NewSeries>) {
        let state = self.inner.state.read();
        let mut rows = Vec::with_capacity(batch.len());
        let mut new_series = Vec::new();
        let mut new_index: HashMap<(TenantId, DeviceId, &str), usize> = HashMap::new();
        for r in batch {
            let point = r.point.as_str();
            let known = state
                .ids
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
            rows.push((
                series,
                (r.timestamp.timestamp_micros(), r.value, r.quality.as_u8()),
            ));
        }
        (rows, new_series)
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
        crate::blocking(move || append_blocking(&inner, rows, new_series)).await?;
        Ok(())
    }

    async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryBucket>, StoreError> {
        let inner = self.inner.clone();
        let owned = query.clone();
        Ok(crate::blocking(move || read_history(&inner, &owned, true)).await?)
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

    #[test]
    fn of_equal_times_the_last_written_stays() {
        let merged = sort_dedup(vec![(2, 1.0, 0), (1, 5.0, 0), (2, 3.0, 1)]);
        assert_eq!(merged, vec![(1, 5.0, 0), (2, 3.0, 1)]);
    }
}
