//! CPU work ragway does itself (local embedding batches, FAISS searches, templating a local
//! model's prompt) runs through one bounded pool: at most `cpu_workers` jobs at once on Tokio's
//! blocking threads, and at most `max_queued_jobs` waiting for one. Tokio's blocking pool on
//! its own is no limit: it starts up to 512 threads and queues the rest without end, and a
//! queued job runs even after its request has gone. Here a job waits in an async queue until a
//! worker is free, so a request that goes away (a client hanging up, a timeout) leaves the queue
//! without its job ever starting, and a full queue is a `ProviderError::Busy` (a 503 with
//! `Retry-After`) at once rather than minutes of work for callers who have given up.
//!
//! [`Gate`] is the queue itself, also used for a local model's generation slots.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ProviderError;

/// Jobs waiting for a worker when `[server.limits] max_queued_jobs` is not set.
pub const DEFAULT_MAX_QUEUED_JOBS: usize = 128;

/// A number of workers and a bounded queue in front of them.
#[derive(Debug)]
pub struct Gate {
    workers: Arc<Semaphore>,
    worker_count: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// A worker held: the job runs while this lives.
#[derive(Debug)]
pub struct Turn(#[allow(dead_code)] OwnedSemaphorePermit);

impl Gate {
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        let workers = workers.max(1);
        Self {
            workers: Arc::new(Semaphore::new(workers)),
            worker_count: workers,
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Waits for a free worker, in arrival order. With `max_waiting` jobs already waiting it
    /// fails at once; dropping the future leaves the queue.
    pub async fn enter(&self, provider: &str) -> Result<Turn, ProviderError> {
        if let Ok(permit) = Arc::clone(&self.workers).try_acquire_owned() {
            return Ok(Turn(permit));
        }
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if waiting >= self.max_waiting {
            return Err(ProviderError::Busy {
                provider: provider.to_owned(),
                message: format!(
                    "{waiting} jobs are already waiting for its {} workers \
                     (server.limits.max_queued_jobs); retry shortly",
                    self.worker_count
                ),
            });
        }
        Arc::clone(&self.workers)
            .acquire_owned()
            .await
            .map(Turn)
            .map_err(|_| ProviderError::unreachable(provider, "it was shut down"))
    }

    /// Jobs waiting for a worker now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Workers busy now.
    pub fn busy(&self) -> usize {
        self.worker_count - self.workers.available_permits().min(self.worker_count)
    }
}

/// Counts a job out of the queue however its wait ends (a worker, an error, a drop).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

static POOL: OnceLock<Gate> = OnceLock::new();
static MAX_QUEUED: OnceLock<usize> = OnceLock::new();

/// Sets the pool's size once, at start-up, before any job runs; `false` when it was already
/// set (or used, which sets the defaults).
pub fn configure(workers: usize, max_queued_jobs: usize) -> bool {
    let queued = MAX_QUEUED.set(max_queued_jobs).is_ok();
    POOL.set(Gate::new(workers, max_queued_jobs)).is_ok() && queued
}

/// The process's CPU pool (the machine's cores and [`DEFAULT_MAX_QUEUED_JOBS`] unless
/// [`configure`]d).
pub fn pool() -> &'static Gate {
    POOL.get_or_init(|| Gate::new(default_workers(), max_queued_jobs()))
}

/// How many jobs may wait in each queue (the CPU pool, a local model's slots).
pub fn max_queued_jobs() -> usize {
    *MAX_QUEUED.get_or_init(|| DEFAULT_MAX_QUEUED_JOBS)
}

/// The machine's cores, the default number of workers.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Runs `work` on a blocking thread once the pool has a free worker. The worker stays taken
/// until `work` returns, even when the caller has gone: the CPU is busy until then.
pub async fn run<T: Send + 'static>(
    provider: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ProviderError> {
    let turn = pool().enter(provider).await?;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
    .await
    .map_err(|e| ProviderError::Internal {
        provider: provider.to_owned(),
        message: format!("a CPU job failed: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_a_dropped_wait_leaves_it() {
        let gate = Arc::new(Gate::new(1, 2));
        let running = gate.enter("pool").await.unwrap();
        let first = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.enter("pool").await.map(drop) }
        });
        let second = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.enter("pool").await.map(drop) }
        });
        while gate.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        let refused = gate.enter("pool").await.unwrap_err();
        assert!(matches!(refused, ProviderError::Busy { .. }), "{refused}");
        let message = refused.to_string();
        assert!(
            message.contains("pool is busy") && message.contains("2 jobs are already waiting"),
            "{message}"
        );
        assert_eq!(gate.waiting(), 2, "a refused job does not count as waiting");

        // A caller that gives up leaves the queue; the next one fits again.
        second.abort();
        while gate.waiting() > 1 {
            tokio::task::yield_now().await;
        }
        let third = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.enter("pool").await.map(drop) }
        });
        while gate.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.busy(), 1);

        drop(running);
        first.await.unwrap().unwrap();
        third.await.unwrap().unwrap();
        assert_eq!((gate.waiting(), gate.busy()), (0, 0));
    }

    #[tokio::test]
    async fn run_holds_a_worker_until_the_work_returns() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let job = tokio::spawn(run("pool", move || {
            rx.recv_timeout(Duration::from_secs(10))
        }));
        while pool().busy() == 0 {
            tokio::task::yield_now().await;
        }
        job.abort(); // the caller goes; the CPU work it started does not
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(pool().busy(), 1);
        tx.send(()).unwrap();
        while pool().busy() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
