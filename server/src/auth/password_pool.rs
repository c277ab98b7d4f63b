//! A bounded pool for password hashing. Argon2 is deliberately slow and memory-hungry; run
//! inline it would block the async workers, and run unbounded on the blocking pool a login burst
//! would queue without limit and take every core from the rest of the server.

use std::fmt;
use std::num::NonZero;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Hashes that may wait for a worker by default; beyond it callers get [`PoolBusy`] at once.
/// With ~50 ms per hash on two cores, 64 waiting is a wait of under two seconds.
pub const PASSWORD_QUEUE_MAX_DEFAULT: usize = 64;

/// At most `workers` jobs run at once on tokio's blocking pool, at most `queue_max` more wait.
#[derive(Clone)]
pub struct PasswordPool {
    /// Permits for running and waiting jobs together: `workers + queue_max`.
    admitted: Arc<Semaphore>,
    /// Permits for running jobs: `workers`. Tokio's semaphore is fair, so waiters run in order.
    running: Arc<Semaphore>,
    admitted_max: usize,
}

/// The pool's queue is full (or the runtime is shutting down): answer 503 and let the client
/// retry, rather than queue without bound.
#[derive(Debug)]
pub struct PoolBusy;

impl fmt::Display for PoolBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("password hashing pool is busy")
    }
}

impl std::error::Error for PoolBusy {}

impl PasswordPool {
    pub fn new(workers: usize, queue_max: usize) -> Self {
        assert!(workers >= 1, "a password pool needs at least one worker");
        let admitted_max = workers
            .checked_add(queue_max)
            .filter(|&total| total <= Semaphore::MAX_PERMITS)
            .expect("password pool workers + queue_max within the semaphore's limit");
        Self {
            admitted: Arc::new(Semaphore::new(admitted_max)),
            running: Arc::new(Semaphore::new(workers)),
            admitted_max,
        }
    }

    /// One worker per core this process may use.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism().map_or(1, NonZero::get)
    }

    /// Runs `work` on the blocking pool once a worker is free, or answers [`PoolBusy`] at once
    /// if the queue is full. A panic in `work` is resumed in the caller.
    ///
    /// If the caller stops waiting (the client went away) while `work` runs, the work finishes
    /// and holds its worker until then: the bound counts hashes, not callers.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolBusy> {
        let admission = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| PoolBusy)?;
        // The semaphores are never closed; an error here could only mean shutdown.
        let worker = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| PoolBusy)?;
        let job = tokio::task::spawn_blocking(move || {
            let _permits = (admission, worker);
            work()
        });
        match job.await {
            Ok(value) => Ok(value),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Cancelled: the runtime is shutting down before the job started.
            Err(_) => Err(PoolBusy),
        }
    }

    /// Jobs running or waiting now (for metrics).
    pub fn in_flight(&self) -> usize {
        self.admitted_max - self.admitted.available_permits()
    }
}

impl Default for PasswordPool {
    fn default() -> Self {
        Self::new(Self::default_workers(), PASSWORD_QUEUE_MAX_DEFAULT)
    }
}

impl fmt::Debug for PasswordPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordPool")
            .field("admitted_max", &self.admitted_max)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    async fn wait_until(mut condition: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn runs_work_and_returns_its_value() {
        let pool = PasswordPool::new(2, 4);
        assert_eq!(pool.run(|| 6 * 7).await.expect("not busy"), 42);
        assert_eq!(pool.in_flight(), 0);
        let default = PasswordPool::default();
        assert_eq!(default.run(|| "ok").await.expect("not busy"), "ok");
    }

    #[tokio::test]
    async fn full_queue_answers_busy_at_once() {
        let pool = PasswordPool::new(1, 1);
        let (release, released) = mpsc::channel::<()>();

        let running = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || released.recv().is_ok()).await }
        });
        wait_until(|| pool.in_flight() == 1).await;
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 7).await }
        });
        wait_until(|| pool.in_flight() == 2).await;

        assert!(matches!(pool.run(|| ()).await, Err(PoolBusy)));

        release.send(()).expect("job waits");
        assert!(running.await.expect("joins").expect("admitted"));
        assert_eq!(waiting.await.expect("joins").expect("admitted"), 7);
        assert_eq!(pool.in_flight(), 0);
        assert!(pool.run(|| ()).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_than_workers_at_once() {
        const WORKERS: usize = 2;
        let pool = PasswordPool::new(WORKERS, 16);
        let current = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..12)
            .map(|_| {
                let (pool, current, most) = (pool.clone(), current.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(10));
                        current.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for job in jobs {
            job.await.expect("joins").expect("admitted");
        }
        assert!(most.load(Ordering::SeqCst) <= WORKERS);
        assert_eq!(pool.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_panic_reaches_the_caller_and_frees_the_worker() {
        let pool = PasswordPool::new(1, 0);
        let job = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| panic!("hash exploded")).await }
        });
        let error = job.await.expect_err("the panic is resumed");
        assert!(error.is_panic());
        assert_eq!(pool.in_flight(), 0);
        assert_eq!(pool.run(|| 1).await.expect("worker free"), 1);
    }

    #[tokio::test]
    async fn an_abandoned_job_keeps_its_worker_until_done() {
        let pool = PasswordPool::new(1, 0);
        let (release, released) = mpsc::channel::<()>();
        let (started, has_started) = mpsc::channel::<()>();
        let caller = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started.send(());
                    released.recv().is_ok()
                })
                .await
            }
        });
        wait_until(|| has_started.try_recv().is_ok()).await;
        caller.abort();
        assert!(caller.await.expect_err("aborted").is_cancelled());

        // The hash still runs, so the only worker is still taken.
        assert_eq!(pool.in_flight(), 1);
        assert!(matches!(pool.run(|| ()).await, Err(PoolBusy)));

        release.send(()).expect("job waits");
        wait_until(|| pool.in_flight() == 0).await;
        assert!(pool.run(|| ()).await.is_ok());
    }
}
