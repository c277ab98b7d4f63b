//! The engine: one data directory, its state, the log writer and the background work
//! (expiry scheduler, snapshotter).

pub mod accounts;
pub mod catalog;
pub mod events;
pub mod login;
pub mod orders;
pub mod payments;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::checkpoint::CheckpointHealth;
use crate::clock::{Clock, Millis};
use crate::config::EngineConfig;
use crate::counter::StockCounts;
use crate::crypto::Keys;
use crate::error::{EngineError, Internal, OpenError};
use crate::ids::{ReservationId, Sku, UserId};
use crate::limits::LoginThrottle;
use crate::orders::{OrderError, OrderStatus};
use crate::record::{ReleaseReason, Seq};
use crate::recovery::{OnDefect, RecoveryReport, recover, replay};
use crate::state::{Reservation, State, StateImage, StockError};
use crate::store::{DirLock, Store};
use crate::wal::{LogHistograms, Ticket, Wal, WalOptions, WalStats};

/// A handle to an open engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    state: Arc<State>,
    wal: Arc<Wal>,
    store: Store,
    report: RecoveryReport,
    keys: Keys,
    /// Failed logins per account, in memory: a restart forgets them (the budget slows
    /// guessing down; it is no record of who tried).
    login_throttle: LoginThrottle,
    background: Arc<Background>,
    threads: Mutex<Threads>,
    closed: Mutex<bool>,
    _lock: DirLock,
}

#[derive(Default)]
struct Threads {
    scheduler: Option<JoinHandle<()>>,
    snapshotter: Option<JoinHandle<Shadow>>,
}

/// Wakes and stops the background threads.
#[derive(Default)]
struct Background {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Background {
    /// Sleeps up to `timeout`; answers false once the engine is stopping.
    fn sleep(&self, timeout: Duration) -> bool {
        let mut stopped = self.stopped.lock();
        if !*stopped {
            self.wake.wait_for(&mut stopped, timeout);
        }
        !*stopped
    }

    fn stop(&self) {
        *self.stopped.lock() = true;
        self.wake.notify_all();
    }
}

/// The snapshotter's copy of the durable state: it trails the live state and catches up from
/// the log before each snapshot, so a snapshot never stalls a purchase.
type Shadow = Option<State>;

/// Figures for `db stats` and metrics.
#[derive(Debug, Clone)]
pub struct EngineStats {
    /// The log writer's counters: the durable sequence number, batches and records written.
    pub wal: WalStats,
    /// SKUs the engine knows.
    pub skus: usize,
    /// Reservations in memory, active and closed.
    pub reservations: usize,
    /// Orders in the hot tier (live: unpaid, paid and not closed, a refund due).
    pub live_orders: usize,
    /// Orders in the cold tier (every order ever placed).
    pub stored_orders: usize,
    /// Sequence numbers of the stored snapshots, newest first (empty if they cannot be read).
    pub snapshot_seqs: Vec<Seq>,
    /// The oldest sequence number the log still holds (what pruning has kept).
    pub log_first_seq: Option<Seq>,
    /// What the store takes on disk, in bytes (0 if sled cannot tell).
    pub disk_bytes: u64,
}

impl Engine {
    /// Opens (or creates) the data directory: locks it, recovers the state, cuts a damaged log
    /// tail, and starts the writer, the expiry scheduler and the snapshotter.
    pub fn open(config: EngineConfig, clock: Arc<dyn Clock>) -> Result<Self, OpenError> {
        let lock = DirLock::acquire(&config.data_dir)?;
        let keys = Keys::load_or_create(&config.keys_path())?;
        let store = Store::open(&config)?;
        let (state, report) = recover(&store, Seq::MAX, OnDefect::Cut)?;
        tracing::info!(
            snapshot = ?report.snapshot_seq,
            records_replayed = report.records_replayed,
            last_seq = report.last_seq,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "recovered"
        );
        state.attach_cold(store.cold.clone());
        let state = Arc::new(state);
        let background = Arc::new(Background::default());

        let hook_state = state.clone();
        let hook_background = background.clone();
        let every = config.snapshot_every_records.max(1);
        let hook = Box::new(move |first_seq: Seq, batch: &[crate::record::Record]| {
            let last_seq = first_seq + batch.len() as Seq - 1;
            if (first_seq - 1) / every != last_seq / every {
                hook_background.wake.notify_all();
            }
            for (offset, record) in batch.iter().enumerate() {
                let seq = first_seq + offset as Seq;
                // The decision step checked this very transition under the entity's lock: a
                // refusal now is a defect, and the log stops taking records.
                hook_state
                    .complete(seq, record)
                    .map_err(|error| error.to_string())?;
            }
            Ok(())
        });
        let wal = Arc::new(Wal::start(
            store.db.clone(),
            store.files.clone(),
            crate::wal::LogTrees {
                log: store.log.clone(),
                events: store.events.clone(),
                cold: Some((store.cold.clone(), {
                    let state = state.clone();
                    Arc::new(move |id| state.order_users.get(id))
                })),
            },
            report.last_seq,
            WalOptions {
                durability: config.durability,
                batch_records_max: config.batch_records_max,
                queue_records_max: config.queue_records_max,
            },
            hook,
        )?);

        let scheduler = if !config.run_expiry {
            None
        } else {
            let (state, wal, clock, background) = (
                state.clone(),
                wal.clone(),
                clock.clone(),
                background.clone(),
            );
            let timing = SchedulerTiming {
                tick: Duration::from_millis(config.expiry_tick_ms.max(1)),
                return_window_ms: config.return_window_ms,
            };
            std::thread::Builder::new()
                .name("allot-expiry".into())
                .spawn(move || run_scheduler(&state, &wal, clock.as_ref(), &background, timing))
                .map(Some)?
        };
        let snapshotter = {
            let (store, wal, background, config, clock) = (
                store.clone(),
                wal.clone(),
                background.clone(),
                config.clone(),
                clock.clone(),
            );
            let last = report.snapshot_seq.unwrap_or(0);
            std::thread::Builder::new()
                .name("allot-snapshot".into())
                .spawn(move || {
                    run_snapshotter(&store, &wal, &background, &config, clock.as_ref(), last)
                })?
        };

        Ok(Self {
            inner: Arc::new(Inner {
                config,
                clock,
                state,
                wal,
                store,
                report,
                keys,
                login_throttle: LoginThrottle::new(),
                background,
                threads: Mutex::new(Threads {
                    scheduler,
                    snapshotter: Some(snapshotter),
                }),
                closed: Mutex::new(false),
                _lock: lock,
            }),
        })
    }

    /// What the open found on disk and did to rebuild the state (snapshot used, records
    /// replayed, a cut tail), for `db verify` and the startup log.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The configuration the engine was opened with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The store, for the copies an online backup makes.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The data directory's keys (the HTTP layer signs access tokens with `jwt_key`).
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The engine's clock now, in ms since the Unix epoch: the time its decisions are dated by.
    pub fn now_ms(&self) -> Millis {
        self.inner.clock.now_ms()
    }

    // ----- writes: each returns once the decision is made and logged-to-be; wait on the
    // ticket before telling anyone it happened.

    /// Creates a bare SKU with `stock_total` units and an optional per-customer limit (in
    /// units). Answers a `Ticket`: the SKU is durable once it is waited on.
    ///
    /// Errors: `SkuExists` if the id is taken, `InvalidQuantity` for a per-customer limit of 0,
    /// and `ShuttingDown` or `LogFailed` when the log takes no writes.
    pub fn create_sku(
        &self,
        sku: Sku,
        stock_total: u32,
        per_user_limit: Option<u32>,
    ) -> Result<Ticket, EngineError> {
        let wal = self.ready_wal()?;
        self.inner
            .state
            .create_sku(sku, stock_total, per_user_limit, |r| wal.append(r))
    }

    /// Takes `quantity` units of `sku` for `user`, held for `ttl_ms` (ms from now); unless
    /// committed or released first, they go back on sale at that deadline. Answers the
    /// reservation's id and a `Ticket`: the hold is durable once it is waited on.
    ///
    /// Errors: `InvalidQuantity` (0 or more than 1,000 units), `SkuNotFound`, `SoldOut` (nothing
    /// is taken), `PurchaseLimitExceeded`, and `ShuttingDown` or `LogFailed` when the log takes
    /// no writes.
    pub fn reserve(
        &self,
        user: UserId,
        sku: Sku,
        quantity: u32,
        ttl_ms: Millis,
    ) -> Result<(ReservationId, Ticket), EngineError> {
        let wal = self.ready_wal()?;
        let deadline_ms = self.now_ms().saturating_add(ttl_ms);
        self.inner
            .state
            .reserve(user, sku, quantity, deadline_ms, |r| wal.append(r))
    }

    /// Sells the units a reservation holds. Answers a `Ticket`: the sale is durable once it is
    /// waited on.
    ///
    /// Errors: `ReservationNotFound`; `ReservationNotActive` if it is closed, already closing
    /// or a line of an order; `ReservationExpired` once its deadline has passed, even if the
    /// expiry is not logged yet; and `ShuttingDown` or `LogFailed` when the log takes no writes.
    pub fn commit(&self, id: ReservationId) -> Result<Ticket, EngineError> {
        let wal = self.ready_wal()?;
        self.inner
            .state
            .commit(id, self.now_ms(), |r| wal.append(r))
    }

    /// Gives a reservation's units back for sale, for `reason`. Answers a `Ticket`: the
    /// release is durable (and the units back on sale) once it is waited on.
    ///
    /// Errors: `ReservationNotFound`; `ReservationNotActive` if it is closed, already closing
    /// or a line of an order; and `ShuttingDown` or `LogFailed` when the log takes no writes.
    pub fn release(&self, id: ReservationId, reason: ReleaseReason) -> Result<Ticket, EngineError> {
        let wal = self.ready_wal()?;
        self.inner.state.release(id, reason, |r| wal.append(r))
    }

    /// Adds `quantity` units to a SKU's stock. Answers a `Ticket`: the units are durable (and
    /// on sale) once it is waited on.
    ///
    /// Errors: `InvalidQuantity` for 0 units, `SkuNotFound`, `StockLimitExceeded` if the SKU
    /// would be given more than `SKU_UNITS_MAX` units over its lifetime, and `ShuttingDown` or
    /// `LogFailed` when the log takes no writes.
    pub fn restock(&self, sku: Sku, quantity: u32) -> Result<Ticket, EngineError> {
        let wal = self.ready_wal()?;
        self.inner.state.restock(sku, quantity, |r| wal.append(r))
    }

    /// Releases every reservation whose deadline has passed; answers how many it queued.
    /// The scheduler calls this on its own; tests with a manual clock may call it directly.
    pub fn release_expired(&self) -> usize {
        release_expired(&self.inner.state, &self.inner.wal, self.now_ms())
    }

    /// Waits, without blocking the thread, until the log's queue has room (see `Wal::room`).
    /// Async callers await this before a write, so that a slow disk makes their requests wait
    /// while the async workers go on serving reads, `/healthz` and the stock stream.
    pub async fn log_room(&self) -> Result<(), EngineError> {
        self.inner.wal.room().await
    }

    /// A ticket for everything queued so far.
    pub fn barrier(&self) -> Ticket {
        self.inner.wal.barrier()
    }

    // ----- reads -----------------------------------------------------------------------------

    /// The counter itself: exact at the moment of the call.
    pub fn stock(&self, sku: Sku) -> Option<StockCounts> {
        self.inner.state.stock(sku)
    }

    /// A reservation as it is now, active or closed; `None` for an id the engine does not know.
    pub fn reservation(&self, id: ReservationId) -> Option<Reservation> {
        self.inner.state.reservation(id)
    }

    /// The units of `sku` that `user` holds (reserved or bought) against its per-customer
    /// limit; 0 for a SKU without a limit.
    pub fn held_by(&self, user: UserId, sku: Sku) -> u32 {
        self.inner.state.held_by(user, sku)
    }

    /// The whole state as an ordered image; consistent once every ticket has been waited on.
    pub fn image(&self) -> StateImage {
        self.inner.state.image()
    }

    /// Whether the log stopped taking records after a failed write: restart to recover.
    pub fn is_failed(&self) -> bool {
        self.inner.wal.is_failed()
    }

    /// The last record that is durable (and applied).
    pub fn durable_seq(&self) -> Seq {
        self.inner.wal.durable_seq()
    }

    /// Figures on the engine's state, log and store now, for `db stats` and metrics.
    pub fn stats(&self) -> EngineStats {
        let store = &self.inner.store;
        EngineStats {
            wal: self.inner.wal.stats(),
            skus: self.inner.state.sku_count(),
            reservations: self.inner.state.reservation_count(),
            live_orders: self.inner.state.live_order_count(),
            stored_orders: store.cold.len(),
            snapshot_seqs: store.snapshot_seqs().unwrap_or_default(),
            log_first_seq: store.log_first_key().unwrap_or_default(),
            disk_bytes: store.size_on_disk(),
        }
    }

    /// The log writer's records per batch and time per durable flush since the open.
    pub fn log_histograms(&self) -> LogHistograms {
        self.inner.wal.histograms()
    }

    /// How many orders of the hot tier are in each status: the sagas under way.
    pub fn live_orders_by_status(&self) -> std::collections::BTreeMap<OrderStatus, usize> {
        self.inner.state.live_orders_by_status()
    }

    /// Writes a snapshot of everything durable now, then prunes what it lets go (log batches,
    /// events past their retention).
    pub fn snapshot_now(&self) -> Result<Seq, EngineError> {
        self.inner.wal.barrier().wait()?;
        let _one_at_a_time = self.inner.store.checkpointing.lock();
        let target = self.inner.wal.durable_seq();
        let inner = &self.inner;
        checkpoint(
            &inner.store,
            &mut None,
            target,
            &inner.config,
            inner.clock.as_ref(),
        )?;
        Ok(target)
    }

    /// How the checkpoints of this run are going: a failing one is retried on the snapshotter's
    /// cadence, and until one succeeds the log is not pruned.
    pub fn checkpoint_health(&self) -> CheckpointHealth {
        self.inner.store.checkpoints.health()
    }

    /// Makes the next `count` snapshot writes fail as storage would (`testkit::internals`).
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn plan_checkpoint_faults(&self, count: u32) {
        self.inner.store.checkpoints.plan_faults(count);
    }

    /// Stops taking writes, writes everything queued, writes a snapshot (unless configured
    /// off) and stops the background threads. Idempotent; also run when the last handle drops.
    pub fn close(&self) -> Result<(), EngineError> {
        self.inner.close()
    }

    fn ready_wal(&self) -> Result<&Wal, EngineError> {
        // Room is awaited here, before any entity lock is taken (see `Wal::wait_for_room`).
        self.inner.wal.wait_for_room()?;
        Ok(&self.inner.wal)
    }
}

impl Inner {
    fn close(&self) -> Result<(), EngineError> {
        let mut closed = self.closed.lock();
        if *closed {
            return Ok(());
        }
        *closed = true;
        self.background.stop();
        let (scheduler, snapshotter) = {
            let mut threads = self.threads.lock();
            (threads.scheduler.take(), threads.snapshotter.take())
        };
        if let Some(handle) = scheduler {
            let _ = handle.join();
        }
        let mut shadow = snapshotter.and_then(|h| h.join().ok()).flatten();
        self.wal.close();
        let durable = self.wal.durable_seq();
        let newest = self
            .store
            .snapshot_seqs()
            .ok()
            .and_then(|s| s.first().copied());
        if self.config.snapshot_on_close && durable > newest.unwrap_or(0) {
            let _one_at_a_time = self.store.checkpointing.lock();
            take_snapshot(
                &self.store,
                &mut shadow,
                durable,
                self.config.log_tail_kept_records,
            )
            .map_err(|e| Internal::Checkpoint(format!("at close: {e}")))?;
        }
        self.store
            .flush()
            .map_err(|e| Internal::Flush(e.to_string()))?;
        tracing::info!(last_seq = durable, "engine closed");
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(%error, "closing the engine failed");
        }
    }
}

fn release_expired(state: &State, wal: &Wal, now_ms: Millis) -> usize {
    let mut released = 0;
    let due = state.pop_expired(now_ms);
    for (at, &id) in due.iter().enumerate() {
        let result = wal
            .wait_for_room()
            .and_then(|()| state.release(id, ReleaseReason::Expired, |r| wal.append(r)));
        match result {
            Ok(_ticket) => released += 1,
            // Committed or released meanwhile: nothing to expire.
            Err(EngineError::Stock(StockError::ReservationNotActive { .. })) => {}
            Err(error) => {
                // The log refuses writes for now: what is left is looked at again a moment later.
                tracing::warn!(%error, reservation = %id, "expiry not logged");
                for &id in &due[at..] {
                    state.recheck_reservation_later(id, now_ms + orders::EXPIRY_RECHECK_MS);
                }
                break;
            }
        }
    }
    released
}

fn expire_due_orders(state: &State, wal: &Wal, now_ms: Millis) -> usize {
    let mut expired = 0;
    let due = state.due_orders(now_ms);
    for (at, &id) in due.iter().enumerate() {
        let result = wal
            .wait_for_room()
            .and_then(|()| state.expire_order(id, now_ms, &|r| wal.append(r)));
        match result {
            Ok(_ticket) => expired += 1,
            // A payment answer is awaited: look again shortly; the answer decides.
            Err(EngineError::Order(OrderError::PaymentInProgress)) => {
                state.recheck_order_later(id, now_ms + orders::EXPIRY_RECHECK_MS);
            }
            // Paid, cancelled or expired meanwhile.
            Err(
                EngineError::Order(OrderError::OrderStateConflict(_))
                | EngineError::Order(OrderError::OrderNotFound(_)),
            ) => {}
            Err(error) => {
                // The log refuses writes for now: what is left is looked at again a moment later.
                tracing::warn!(%error, order = %id, "expiry not logged");
                for &id in &due[at..] {
                    state.recheck_order_later(id, now_ms + orders::EXPIRY_RECHECK_MS);
                }
                break;
            }
        }
    }
    expired
}

/// Closes every delivered order whose return window has passed; answers how many it queued.
fn close_due_returns(state: &State, wal: &Wal, now_ms: Millis, window_ms: Millis) -> usize {
    let mut closed = 0;
    let due = state.returns_due(now_ms, window_ms);
    for (at, &(_, id)) in due.iter().enumerate() {
        let result = wal
            .wait_for_room()
            .and_then(|()| state.close_returns(id, now_ms, window_ms, &|r| wal.append(r)));
        match result {
            Ok(_ticket) => closed += 1,
            // A return was asked for meanwhile, or the order closed already.
            Err(
                EngineError::Order(OrderError::OrderStateConflict(_))
                | EngineError::Order(OrderError::OrderNotFound(_)),
            ) => {}
            Err(error) => {
                // The log refuses writes for now: what is left is looked at again next tick.
                tracing::warn!(%error, order = %id, "closing a return window not logged");
                for &(delivered, id) in &due[at..] {
                    state.recheck_return_later(delivered, id);
                }
                break;
            }
        }
    }
    closed
}

/// Retention of accounts, one sweep of at most [`accounts::FORGET_PER_SWEEP_MAX`]; answers how
/// many it forgot.
fn forget_expired_accounts(state: &State, wal: &Wal, now_ms: Millis) -> Result<usize, EngineError> {
    wal.wait_for_room()?;
    state
        .accounts
        .forget_expired(now_ms, accounts::FORGET_PER_SWEEP_MAX, &|r| {
            wal.append(r.into())
        })
}

/// How often retention forgets expired sessions, revocations and verifications.
pub const ACCOUNT_RETENTION_EVERY_MS: Millis = 60_000;

/// What the scheduler's timers are set by.
struct SchedulerTiming {
    /// Its longest sleep.
    tick: Duration,
    return_window_ms: Millis,
}

fn run_scheduler(
    state: &State,
    wal: &Wal,
    clock: &dyn Clock,
    background: &Background,
    timing: SchedulerTiming,
) {
    let SchedulerTiming {
        tick,
        return_window_ms,
    } = timing;
    let mut next_retention = clock.now_ms();
    loop {
        let now = clock.now_ms();
        release_expired(state, wal, now);
        expire_due_orders(state, wal, now);
        close_due_returns(state, wal, now, return_window_ms);
        if now >= next_retention {
            let forgotten = forget_expired_accounts(state, wal, now);
            next_retention = match forgotten {
                // More are due: go on at the next tick.
                Ok(n) if n >= accounts::FORGET_PER_SWEEP_MAX => now,
                Ok(_) => now.saturating_add(ACCOUNT_RETENTION_EVERY_MS),
                Err(error) => {
                    tracing::warn!(%error, "retention not logged; will retry");
                    now.saturating_add(ACCOUNT_RETENTION_EVERY_MS)
                }
            };
        }
        // Deadlines live in the state, so a restart loses none; the tick bounds how late an
        // expiry can be when the clock jumps or a deadline arrives while we sleep.
        let until_next = state.next_deadline().map_or(tick, |d| {
            Duration::from_millis(d.saturating_sub(now)).min(tick)
        });
        if !background.sleep(until_next.max(Duration::from_millis(1))) {
            return;
        }
    }
}

fn run_snapshotter(
    store: &Store,
    wal: &Wal,
    background: &Background,
    config: &EngineConfig,
    clock: &dyn Clock,
    mut last_seq: Seq,
) -> Shadow {
    let mut shadow: Shadow = None;
    let mut last_at = Instant::now();
    let every_ms = Duration::from_millis(config.snapshot_every_ms);
    loop {
        if !background.sleep(every_ms.min(Duration::from_secs(1))) {
            return shadow;
        }
        let durable = wal.durable_seq();
        let due = durable > last_seq
            && (durable - last_seq >= config.snapshot_every_records
                || last_at.elapsed() >= every_ms);
        if !due {
            continue;
        }
        let _one_at_a_time = store.checkpointing.lock();
        match checkpoint(store, &mut shadow, durable, config, clock) {
            // A snapshot that was written covers `durable`, whether or not retention followed.
            Ok(()) | Err(Internal::Retention(_)) => last_seq = durable,
            Err(_) => {}
        }
        last_at = Instant::now();
    }
}

/// One checkpoint: a snapshot of everything durable up to `target`, the log batches it covers
/// pruned, then retention. What happened is recorded in the store's [`CheckpointHealth`] and
/// logged; a failure leaves everything as it was, to be retried.
fn checkpoint(
    store: &Store,
    shadow: &mut Shadow,
    target: Seq,
    config: &EngineConfig,
    clock: &dyn Clock,
) -> Result<(), Internal> {
    let started = Instant::now();
    let outcome = take_snapshot(store, shadow, target, config.log_tail_kept_records)
        .map_err(Internal::Checkpoint)
        .and_then(|()| {
            prune_events(store, config, clock, target)
                .map(|_| ())
                .map_err(|e| Internal::Retention(e.to_string()))
        });
    match &outcome {
        Ok(()) => {
            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            store.checkpoints.succeeded(target, duration_ms);
        }
        Err(error) => {
            tracing::error!(
                %error,
                "checkpoint failed: recovery replays a longer log and the log is not pruned \
                 until one succeeds; will retry"
            );
            store.checkpoints.failed(error.to_string(), clock.now_ms());
        }
    }
    outcome
}

/// Retention after a snapshot. Events beyond the newest `events_kept_records` records, and
/// events older than `events_kept_ms`, go (either limit is a cap), never one whose record the
/// log still holds (`db verify` compares those) nor one a consumer has not finished with; and
/// the keys of orders closed more than `keys_kept_ms` ago.
fn prune_events(
    store: &Store,
    config: &EngineConfig,
    clock: &dyn Clock,
    durable: Seq,
) -> Result<u64, sled::Error> {
    let log_first = store.log_first_key()?.unwrap_or(durable + 1);
    let consumers = store.consumers_min_offset()?.map_or(durable + 1, |o| o + 1);
    let before = log_first.min(consumers);
    let by_count = durable.saturating_sub(config.events_kept_records);
    let older_than = clock.now_ms().saturating_sub(config.events_kept_ms);
    let pruned = store.prune_events(before, by_count, older_than)?;
    if pruned > 0 {
        tracing::info!(pruned, "events pruned");
    }
    // And the keys of orders closed longer ago than they are kept.
    let closed_before = clock.now_ms().saturating_sub(config.keys_kept_ms);
    let keys = store
        .cold
        .prune_keys(closed_before)
        .map_err(|error| match error {
            crate::cold::ColdError::Storage(error) => error,
            damaged => sled::Error::Unsupported(damaged.to_string()),
        })?;
    if keys > 0 {
        store.flush()?;
        tracing::info!(keys, "idempotency keys of closed orders pruned");
    }
    Ok(pruned)
}

/// Brings the shadow state up to `target` from the log and writes it as a snapshot; prunes the
/// log it covers but for `tail_kept` records.
fn take_snapshot(
    store: &Store,
    shadow: &mut Shadow,
    target: Seq,
    tail_kept: Seq,
) -> Result<(), String> {
    let started = Instant::now();
    let state = match shadow.take() {
        Some(state) => state,
        None => {
            recover(store, target, OnDefect::Stop)
                .map_err(|e| e.to_string())?
                .0
        }
    };
    replay(
        store,
        &state,
        target,
        OnDefect::Stop,
        &mut RecoveryReport::default(),
    )
    .map_err(|e| e.to_string())?;
    if state.seq() != target {
        return Err(format!(
            "the log reaches {} only, not {target}",
            state.seq()
        ));
    }
    store
        .write_snapshot(&state.image(), tail_kept)
        .map_err(|e| e.to_string())?;
    tracing::info!(
        seq = target,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    *shadow = Some(state);
    Ok(())
}
