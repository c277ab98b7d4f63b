//! Waiting for background work (expiry, payment answers, the notifier, a mail) the one way:
//! poll the condition until a deadline, never a fixed sleep.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long a test waits for background work before it fails: a bound for a loaded CI
/// machine, not a claim about speed.
pub const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// How often a condition is read again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `probe` until it answers `Ok`, and answers that. After [`SETTLE_WAIT`] the test fails,
/// naming `what` it waited for and the last reading.
pub async fn eventually<T, E: Debug>(
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + SETTLE_WAIT;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not so after {SETTLE_WAIT:?}; last read {last:?}"
            ),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
