//! How the checkpoints are going. A checkpoint (a snapshot, then pruning the log batches it
//! covers and retention) runs in the background; when one fails nothing is lost, but recovery
//! replays a longer log and the store grows until one succeeds. The snapshotter retries on its
//! cadence; what it last saw is kept here for `/readyz` to report, so an operator sees that
//! pruning stopped without reading the log.

use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::clock::Millis;
use crate::record::Seq;

/// What the checkpoints of this run have done so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointHealth {
    /// The log position the newest successful checkpoint of this run covers (`None` before the
    /// first one).
    pub last_ok_seq: Option<Seq>,
    /// How long that checkpoint took, in ms (snapshot, pruning and retention).
    pub last_ok_duration_ms: Option<u64>,
    /// Checkpoints that failed in a row since the last success: 0 while they succeed.
    pub failures_in_a_row: u32,
    /// When the first of those failures happened (ms since the Unix epoch).
    pub failing_since_ms: Option<Millis>,
    /// Why the latest one failed, while they fail.
    pub last_error: Option<String>,
}

impl CheckpointHealth {
    /// No checkpoint failed since the last success (or since the open).
    pub fn is_ok(&self) -> bool {
        self.failures_in_a_row == 0
    }
}

/// The shared record of [`CheckpointHealth`], and the faults a test asked for.
#[derive(Debug, Default)]
pub(crate) struct Checkpoints {
    health: Mutex<CheckpointHealth>,
    /// Snapshot writes still to fail on purpose (`testkit::internals::fail_next_checkpoints`).
    faults_planned: AtomicU32,
}

impl Checkpoints {
    pub fn health(&self) -> CheckpointHealth {
        self.health.lock().clone()
    }

    pub fn succeeded(&self, seq: Seq, duration_ms: u64) {
        *self.health.lock() = CheckpointHealth {
            last_ok_seq: Some(seq),
            last_ok_duration_ms: Some(duration_ms),
            ..CheckpointHealth::default()
        };
    }

    pub fn failed(&self, error: String, now_ms: Millis) {
        let mut health = self.health.lock();
        health.failures_in_a_row = health.failures_in_a_row.saturating_add(1);
        health.failing_since_ms.get_or_insert(now_ms);
        health.last_error = Some(error);
    }

    /// Makes the next `count` snapshot writes fail as a storage error would.
    #[cfg(any(test, feature = "test-support"))]
    pub fn plan_faults(&self, count: u32) {
        self.faults_planned.store(count, Ordering::Release);
    }

    /// Takes one planned fault, if any is left: the caller then fails as if storage had.
    pub fn take_fault(&self) -> bool {
        self.faults_planned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}
