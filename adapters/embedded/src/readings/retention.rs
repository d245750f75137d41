//! How long readings and rollups are kept, per tenant, and the compaction
//! step that drops what is older: whole chunks and whole rollup rows only,
//! so enforcing it never rewrites data.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use hearth_domain::TenantId;
use redb::WriteTransaction;

use super::{BLOCKS, CHUNK_SECONDS, DAY, PENDING, ROLLUPS, ROLLUP_BLOBS, ROLLUP_LEVELS, STAGED};
use crate::error::EmbeddedError;

/// Days to keep, `None` for ever: raw readings and each rollup level
/// (1 min, 15 min, 1 h, 1 day, as in [`ROLLUP_LEVELS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    pub raw_days: Option<u32>,
    pub rollup_days: [Option<u32>; 4],
}

/// A default policy and per-tenant overrides.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    pub default: RetentionPolicy,
    pub tenants: HashMap<TenantId, RetentionPolicy>,
}

impl Retention {
    pub fn for_tenant(&self, tenant: TenantId) -> RetentionPolicy {
        self.tenants.get(&tenant).copied().unwrap_or(self.default)
    }
}

/// Horizon in s for `days` before `now`.
fn horizon(now: DateTime<Utc>, days: u32) -> i64 {
    now.timestamp() - i64::from(days) * 86_400
}

/// Drops, for every series, chunks and rollup rows that end at or before
/// their tenant's horizon. Every table is keyed time first, so each is one
/// pass over its old keys, each kept or dropped by its series' horizon.
/// Returns the number of chunks, staged blocks and rollup rows dropped.
pub(super) fn enforce(
    txn: &WriteTransaction,
    retention: &Retention,
    tenants: &HashMap<u64, TenantId>,
    pending: &mut HashMap<u64, BTreeSet<i64>>,
    now: DateTime<Utc>,
) -> Result<u64, EmbeddedError> {
    // Series -> first start (s) kept, for keys of `width` seconds.
    let first_kept = |days_of: &dyn Fn(RetentionPolicy) -> Option<u32>, width: i64| {
        tenants
            .iter()
            .filter_map(|(series, tenant)| {
                let days = days_of(retention.for_tenant(*tenant))?;
                Some((*series, horizon(now, days) - width + 1))
            })
            .collect::<HashMap<u64, i64>>()
    };
    let dropped = std::cell::Cell::new(0u64);
    let keep = |kept: &HashMap<u64, i64>, series: u64, start: i64| {
        let kept = kept.get(&series).is_none_or(|first| start >= *first);
        if !kept {
            dropped.set(dropped.get() + 1);
        }
        kept
    };

    // Raw: a chunk goes only when all of it is past the horizon.
    let raw = first_kept(&|p| p.raw_days, CHUNK_SECONDS);
    if let Some(latest) = raw.values().max().copied() {
        txn.open_table(BLOCKS)?
            .retain_in((i64::MIN, 0)..(latest, 0), |(chunk, series), _| {
                keep(&raw, series, chunk)
            })?;
        txn.open_table(STAGED)?
            .retain_in((i64::MIN, 0, 0)..(latest, 0, 0), |(chunk, series, _), _| {
                keep(&raw, series, chunk)
            })?;
        let mut pending_table = txn.open_table(PENDING)?;
        for (series, first) in &raw {
            pending_table.retain_in((*series, i64::MIN)..(*series, *first), |_, _| false)?;
            if let Some(chunks) = pending.get_mut(series) {
                chunks.retain(|chunk| chunk >= first);
            }
        }
    }
    let mut rollups = txn.open_table(ROLLUPS)?;
    let mut blobs = txn.open_table(ROLLUP_BLOBS)?;
    for (index, level) in ROLLUP_LEVELS.iter().enumerate() {
        let level_key = *level as u32;
        // Finer levels are kept per hour and hours per day: a blob goes whole.
        let width = match *level {
            l if l < CHUNK_SECONDS => CHUNK_SECONDS,
            CHUNK_SECONDS => DAY,
            l => l,
        };
        let kept = first_kept(&|p| p.rollup_days[index], width);
        let Some(latest) = kept.values().max().copied() else {
            continue;
        };
        let range = (level_key, i64::MIN, 0)..(level_key, latest, 0);
        if *level <= CHUNK_SECONDS {
            blobs.retain_in(range, |(_, start, series), _| keep(&kept, series, start))?;
        } else {
            rollups.retain_in(range, |(_, start, series), _| keep(&kept, series, start))?;
        }
    }
    Ok(dropped.get())
}
