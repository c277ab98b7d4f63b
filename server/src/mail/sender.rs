//! The background task that drains the queue: delivery, retries with backoff, and the drain
//! on shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::{
    RETRY_DELAY_FIRST_MS, RETRY_DELAY_MAX_MS, SEND_ATTEMPT_TIMEOUT_MS, SEND_ATTEMPTS_MAX,
    SEND_CONCURRENCY_MAX, eml_dir,
};

/// A rendered mail. It holds the body only inside `formatted`, which is never logged.
pub(super) struct Job {
    pub(super) envelope: Envelope,
    pub(super) formatted: Arc<[u8]>,
    pub(super) subject: String,
    pub(super) recipient_domain: String,
    /// When `send` took it; names the `.eml` file, so files sort in the order mails were sent
    /// whatever the retries and the concurrency did.
    pub(super) queued_unix_ms: u128,
}

pub(super) enum Delivery {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

pub(super) struct Failure {
    /// The relay refused for good (5xx): trying again would only repeat the refusal.
    pub(super) permanent: bool,
    pub(super) reason: String,
}

/// Runs until the queue is closed and empty: after `stop` turns true (or every `Mailer` is
/// gone) it takes no new mail, finishes what is queued and in flight, then reports `drained`.
/// `undelivered` counts the mails queued or in flight; each finished mail takes one off.
pub(super) async fn run(
    delivery: Arc<Delivery>,
    mut queue: mpsc::Receiver<Job>,
    mut stop: watch::Receiver<bool>,
    drained: watch::Sender<bool>,
    undelivered: Arc<AtomicUsize>,
) {
    let finished = |joined: Result<(), tokio::task::JoinError>| {
        if let Err(error) = joined {
            tracing::error!(%error, "mail delivery task failed");
        }
        undelivered.fetch_sub(1, Ordering::Relaxed);
    };
    let mut in_flight = JoinSet::new();
    let mut stopping = false;
    loop {
        // Some branch is always enabled: `recv` while below the limit, `join_next` at it.
        tokio::select! {
            // Err: every Mailer is gone, which is a stop as well.
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                // Refuses further sends but keeps what is queued for the `recv`s below.
                queue.close();
                stopping = true;
            }
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => finished(joined),
            job = queue.recv(), if in_flight.len() < SEND_CONCURRENCY_MAX => match job {
                Some(job) => {
                    in_flight.spawn(deliver_with_retries(Arc::clone(&delivery), job));
                }
                None => break,
            },
        }
    }
    while let Some(joined) = in_flight.join_next().await {
        finished(joined);
    }
    drained.send_replace(true);
}

async fn deliver_with_retries(delivery: Arc<Delivery>, job: Job) {
    for attempt in 1..=SEND_ATTEMPTS_MAX {
        let Err(failure) = deliver_once(&delivery, &job).await else {
            return;
        };
        if failure.permanent || attempt == SEND_ATTEMPTS_MAX {
            tracing::error!(
                subject = %job.subject,
                recipient_domain = %job.recipient_domain,
                attempt,
                permanent = failure.permanent,
                error = %failure.reason,
                "mail not delivered, giving up"
            );
            return;
        }
        let delay = retry_delay(attempt);
        tracing::warn!(
            subject = %job.subject,
            recipient_domain = %job.recipient_domain,
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            error = %failure.reason,
            "mail delivery failed, will retry"
        );
        tokio::time::sleep(delay).await;
    }
}

/// The wait after failed attempt number `attempt` (1-based): doubling from the first delay,
/// capped.
fn retry_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    let delay_ms = RETRY_DELAY_FIRST_MS.saturating_mul(1 << doublings);
    Duration::from_millis(delay_ms.min(RETRY_DELAY_MAX_MS))
}

pub(super) async fn deliver_once(delivery: &Delivery, job: &Job) -> Result<(), Failure> {
    match delivery {
        Delivery::Smtp(transport) => {
            let attempt = transport.send_raw(&job.envelope, &job.formatted);
            match tokio::time::timeout(Duration::from_millis(SEND_ATTEMPT_TIMEOUT_MS), attempt)
                .await
            {
                Ok(Ok(_response)) => {
                    tracing::info!(
                        subject = %job.subject,
                        recipient_domain = %job.recipient_domain,
                        "mail sent"
                    );
                    Ok(())
                }
                Ok(Err(error)) => Err(Failure {
                    permanent: error.is_permanent(),
                    reason: error.to_string(),
                }),
                Err(_elapsed) => Err(Failure {
                    permanent: false,
                    reason: format!("no answer from the relay within {SEND_ATTEMPT_TIMEOUT_MS} ms"),
                }),
            }
        }
        Delivery::Files(dir) => {
            let dir = dir.clone();
            let formatted = Arc::clone(&job.formatted);
            // std::fs blocks; keep it off the runtime's workers.
            let queued_unix_ms = job.queued_unix_ms;
            let written = tokio::task::spawn_blocking(move || {
                eml_dir::write_eml(&dir, queued_unix_ms, &formatted)
            })
            .await;
            match written {
                Ok(Ok(path)) => {
                    tracing::info!(
                        subject = %job.subject,
                        file = %path.display(),
                        "mail written"
                    );
                    Ok(())
                }
                Ok(Err(error)) => Err(Failure {
                    permanent: false,
                    reason: error.to_string(),
                }),
                Err(join_error) => Err(Failure {
                    permanent: false,
                    reason: join_error.to_string(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let delays: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(
            retry_delay(u32::MAX),
            Duration::from_millis(RETRY_DELAY_MAX_MS)
        );
    }
}
