//! How long readings and rollups are kept, per tenant, and the compaction
//! step that drops what is older: whole chunks and whole rollup rows only,
//! so enforcing it never rewrites data.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use hearth_domain::TenantId;
use redb::WriteTransaction;

use super::{BLOCKS, CHUNK_SECONDS, PENDING, ROLLUPS, ROLLUP_BLOBS, ROLLUP_LEVELS, STAGED};
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
/// their tenant's horizon.
pub(super) fn enforce(
    txn: &WriteTransaction,
    retention: &Retention,
    tenants: &HashMap<u64, TenantId>,
    pending: &mut HashMap<u64, BTreeSet<i64>>,
    now: DateTime<Utc>,
) -> Result<(), EmbeddedError> {
    let mut blocks = txn.open_table(BLOCKS)?;
    let mut staged = txn.open_table(STAGED)?;
    // Staged blocks are keyed by time first: one pass over the old hours,
    // each kept or dropped by its series' horizon.
    let raw_first_kept: HashMap<u64, i64> = tenants
        .iter()
        .filter_map(|(series, tenant)| {
            let days = retention.for_tenant(*tenant).raw_days?;
            Some((*series, horizon(now, days) - CHUNK_SECONDS + 1))
        })
        .collect();
    if let Some(latest) = raw_first_kept.values().max() {
        staged.retain_in((i64::MIN, 0, 0)..(*latest, 0, 0), |(chunk, series, _), _| {
            raw_first_kept
                .get(&series)
                .is_none_or(|first_kept| chunk >= *first_kept)
        })?;
    }
    let mut pending_table = txn.open_table(PENDING)?;
    let mut rollups = txn.open_table(ROLLUPS)?;
    let mut blobs = txn.open_table(ROLLUP_BLOBS)?;
    for (series, tenant) in tenants {
        let policy = retention.for_tenant(*tenant);
        if let Some(days) = policy.raw_days {
            // A chunk goes only when all of it is past the horizon.
            let first_kept = horizon(now, days) - CHUNK_SECONDS + 1;
            blocks.retain_in((*series, i64::MIN)..(*series, first_kept), |_, _| false)?;
            pending_table.retain_in((*series, i64::MIN)..(*series, first_kept), |_, _| false)?;
            if let Some(chunks) = pending.get_mut(series) {
                chunks.retain(|chunk| *chunk >= first_kept);
            }
        }
        for (level, days) in ROLLUP_LEVELS.iter().zip(policy.rollup_days) {
            if let Some(days) = days {
                let level_key = *level as u32;
                if *level < CHUNK_SECONDS {
                    // Finer levels are kept per hour: an hour goes whole.
                    let first_kept = horizon(now, days) - CHUNK_SECONDS + 1;
                    blobs.retain_in(
                        (*series, level_key, i64::MIN)..(*series, level_key, first_kept),
                        |_, _| false,
                    )?;
                    continue;
                }
                let first_kept = horizon(now, days) - level + 1;
                let level = level_key;
                rollups.retain_in(
                    (*series, level, i64::MIN)..(*series, level, first_kept),
                    |_, _| false,
                )?;
            }
        }
    }
    Ok(())
}
