//! Password hashing off the async workers: argon2 takes tens of milliseconds
//! of CPU per call, and run on the async workers a login storm would stall
//! every request and the device poller with it. Each hash runs on Tokio's
//! blocking pool, at most [`LoginLimits::hashing_permits`] at once, and only
//! [`LoginLimits::max_waiting_logins`] logins may queue for a permit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::throttle::LoginLimits;

/// Why a hash did not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashingError {
    /// Too many logins are already waiting; try again shortly.
    #[error("password checks are saturated")]
    Busy,
    /// The blocking task panicked or was cancelled.
    #[error("password hashing task failed: {0}")]
    Failed(#[from] tokio::task::JoinError),
}

#[derive(Clone)]
pub(crate) struct HashingPool {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

/// Counts a waiter until dropped, also when the waiting future is cancelled.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashingPool {
    pub(crate) fn new(limits: &LoginLimits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.hashing_permits.max(1))),
            waiting: Arc::default(),
            max_waiting: limits.max_waiting_logins,
        }
    }

    /// Runs `work` on the blocking pool once a permit is free, or refuses at
    /// once with `Busy` when the queue is full (logins: a client may retry).
    pub(crate) async fn try_run<T, F>(&self, work: F) -> Result<T, HashingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HashingError::Busy);
        }
        let waiting = Waiting(&self.waiting);
        self.run_counted(work, waiting).await
    }

    /// Runs `work` on the blocking pool once a permit is free, however long
    /// the queue (authenticated operations such as setting a password).
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, HashingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting = Waiting(&self.waiting);
        self.run_counted(work, waiting).await
    }

    async fn run_counted<T, F>(&self, work: F, waiting: Waiting<'_>) -> Result<T, HashingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // The semaphore is never closed, so acquiring only fails if it were.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HashingError::Busy)?;
        drop(waiting);
        // The permit moves into the task: if the caller gives up, the hash
        // still holds it until it is done, so no more than `permits` ever run.
        Ok(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn pool(permits: usize, max_waiting: usize) -> HashingPool {
        HashingPool::new(&LoginLimits {
            hashing_permits: permits,
            max_waiting_logins: max_waiting,
            ..LoginLimits::default()
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_off_the_async_thread() {
        // Given a current-thread runtime, when work runs through the pool,
        // then it runs on another thread (the blocking pool)
        let here = std::thread::current().id();
        let there = pool(1, 4)
            .run(|| std::thread::current().id())
            .await
            .expect("runs");
        assert_ne!(here, there);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_permits_run_at_once_and_a_full_queue_refuses() {
        // Given one permit, held by a task that waits for our signal
        let pool = pool(1, 1);
        let (release, hold) = mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let first = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.try_run(move || {
                    let _ = started_tx.send(());
                    let _ = hold.recv_timeout(Duration::from_secs(30));
                })
                .await
            }
        });
        started.await.expect("the first task runs");
        // When a second one queues (the one allowed waiter)
        let second = tokio::spawn({
            let pool = pool.clone();
            async move { pool.try_run(|| 2).await }
        });
        while pool.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // Then a third is refused at once as Busy
        assert!(matches!(pool.try_run(|| 3).await, Err(HashingError::Busy)));
        // And once the permit is free the queued one runs
        release.send(()).expect("the first task listens");
        assert!(first.await.expect("joined").is_ok());
        assert_eq!(second.await.expect("joined").ok(), Some(2));
        assert_eq!(pool.waiting.load(Ordering::Acquire), 0);
    }
}
