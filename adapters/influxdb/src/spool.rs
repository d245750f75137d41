//! Bounded on-disk spool for write bodies InfluxDB could not take (refused
//! connection, timeout, 5xx, 429), so an outage loses no readings: each
//! body is one file `<sequence>.lp` in the spool folder, replayed oldest
//! first once InfluxDB answers again, and deleted only after it took it.
//! Replaying twice is harmless: the same series and timestamp overwrite.
//!
//! Bounded by total bytes; when full, appends fail (the caller's retry and
//! drop policy applies) rather than filling the disk.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::error::InfluxError;

/// Files of the spool, oldest first, with their total size.
pub(crate) struct SpoolState {
    files: VecDeque<(u64, u64)>,
    bytes: u64,
    next: u64,
}

impl SpoolState {
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    pub(crate) state: tokio::sync::Mutex<SpoolState>,
    /// Files waiting, readable without the state's lock (which a write
    /// holds for as long as InfluxDB takes to answer): for `/readyz`.
    waiting: std::sync::atomic::AtomicU64,
}

fn io(what: &str, path: &Path, err: std::io::Error) -> InfluxError {
    InfluxError::Spool(format!("{what} {}: {err}", path.display()))
}

impl Spool {
    /// Opens (or creates) the folder and picks up what an earlier run left,
    /// in sequence order; half-written files of a crash are removed.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Self, InfluxError> {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io("cannot read", dir, e))? {
            let entry = entry.map_err(|e| io("cannot read", dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                std::fs::remove_file(&path).map_err(|e| io("cannot remove", &path, e))?;
                continue;
            }
            let Some(sequence) = name.strip_suffix(".lp").and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry
                .metadata()
                .map_err(|e| io("cannot stat", &path, e))?
                .len();
            files.push((sequence, len));
        }
        files.sort_unstable();
        let next = files.last().map_or(0, |(sequence, _)| sequence + 1);
        let bytes = files.iter().map(|(_, len)| len).sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            waiting: std::sync::atomic::AtomicU64::new(files.len() as u64),
            state: tokio::sync::Mutex::new(SpoolState {
                files: files.into(),
                bytes,
                next,
            }),
        })
    }

    /// Batches waiting to be replayed.
    pub(crate) fn waiting(&self) -> u64 {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn path(&self, sequence: u64) -> PathBuf {
        // Zero-padded so a directory listing shows replay order.
        self.dir.join(format!("{sequence:020}.lp"))
    }

    /// Stores `body` as the newest file; written to a temporary name and
    /// renamed, so a crash never leaves half a body to replay.
    pub(crate) async fn push(&self, state: &mut SpoolState, body: &str) -> Result<(), InfluxError> {
        let len = body.len() as u64;
        if state.bytes + len > self.max_bytes {
            return Err(InfluxError::Spool(format!(
                "spool {} is full ({} of {} bytes); the batch is not kept",
                self.dir.display(),
                state.bytes,
                self.max_bytes
            )));
        }
        let path = self.path(state.next);
        let temporary = path.with_extension("lp.tmp");
        tokio::fs::write(&temporary, body)
            .await
            .map_err(|e| io("cannot write", &temporary, e))?;
        tokio::fs::rename(&temporary, &path)
            .await
            .map_err(|e| io("cannot rename", &temporary, e))?;
        state.files.push_back((state.next, len));
        state.bytes += len;
        state.next += 1;
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The oldest body, if any.
    pub(crate) async fn oldest(
        &self,
        state: &SpoolState,
    ) -> Result<Option<(u64, String)>, InfluxError> {
        let Some(&(sequence, _)) = state.files.front() else {
            return Ok(None);
        };
        let path = self.path(sequence);
        let body = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| io("cannot read", &path, e))?;
        Ok(Some((sequence, body)))
    }

    /// Forgets the oldest body: deleted once replayed, or kept aside as
    /// `.rejected` when InfluxDB refuses it for good (so it cannot block
    /// every later one).
    pub(crate) async fn pop(
        &self,
        state: &mut SpoolState,
        rejected: bool,
    ) -> Result<(), InfluxError> {
        let Some((sequence, len)) = state.files.pop_front() else {
            return Ok(());
        };
        state.bytes -= len;
        self.waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.path(sequence);
        let done = if rejected {
            tokio::fs::rename(&path, path.with_extension("lp.rejected")).await
        } else {
            tokio::fs::remove_file(&path).await
        };
        done.map_err(|e| io("cannot remove", &path, e))
    }
}
