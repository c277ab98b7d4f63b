//! Time, injected. The engine never reads the system clock directly, so tests can move time
//! and a wall-clock jump on the host cannot move the engine's time backwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = u64;

pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds since the Unix epoch, UTC. Never decreases within a run.
    fn now_ms(&self) -> Millis;
}

/// Wall time read once at start, then advanced by the monotonic clock: a host whose wall clock
/// is stepped back (NTP, an operator) does not reopen a sale or revive an expired reservation.
#[derive(Debug)]
pub struct SystemClock {
    anchor_wall_ms: Millis,
    anchor: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        let anchor_wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0);
        Self {
            anchor_wall_ms,
            anchor: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        self.anchor_wall_ms + self.anchor.elapsed().as_millis() as Millis
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn new(now_ms: Millis) -> Self {
        Self {
            now_ms: AtomicU64::new(now_ms),
        }
    }

    pub fn advance_ms(&self, delta_ms: Millis) {
        self.now_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }

    pub fn set_ms(&self, now_ms: Millis) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now_ms.load(Ordering::SeqCst)
    }
}
