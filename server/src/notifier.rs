//! The email notifier: a consumer of the engine's domain events that mails the customer when
//! an order is paid, shipped or refunded.
//!
//! It keeps a durable offset (`email-notifier`) in the engine and moves it past a mail only
//! once the relay (or the mail directory) took that mail, so a mail is sent at least once
//! even across a crash or a relay outage. It is not sent twice for one event in normal
//! operation: the offset is flushed after each mail. A repeat needs a crash between the relay's
//! acceptance and that flush, or a relay that accepts a mail but answers only after the
//! attempt's timeout (15 s) or after a stop's grace (2 s); it carries the same Message-ID
//! (`<allot-event-SEQ-ORDER@domain>`), by which a mail client recognises it as the same mail.

use std::time::Duration;

use allot_engine::{Engine, EngineError, Event, EventKind, Internal, Order, Seq, Subject};
use tokio::sync::watch;

use crate::mail::{MailError, Mailer, OutgoingMail};

/// The consumer's name, under which its offset is kept.
pub const CONSUMER: &str = "email-notifier";
/// How often the notifier looks for new events when it has caught up.
const POLL_INTERVAL_MS: u64 = 200;
/// Events read at once.
const EVENTS_PER_READ: usize = 256;
/// How long a delivery under way may still take once the server is stopping.
const STOP_GRACE_MS: u64 = 2_000;
/// Waits between delivery attempts of one mail: doubling from the first, capped.
const RETRY_FIRST_MS: u64 = 200;
const RETRY_MAX_MS: u64 = 10_000;

/// Where the notifier starts: its saved offset, or, the first time it runs on a data
/// directory, the end of the log (history is not mailed). Call it before the server takes
/// requests, so that no event of the first moments falls before the start.
pub fn start_offset(engine: &Engine) -> Result<Seq, EngineError> {
    engine.start_consumer(CONSUMER)
}

/// Runs from `offset` until `stopping` turns true (or the engine stops taking writes).
pub async fn run(
    engine: Engine,
    mailer: Mailer,
    mut offset: Seq,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        if *stopping.borrow() {
            return;
        }
        let after = offset;
        let events = match blocking(&engine, move |e| e.events(after, EVENTS_PER_READ)).await {
            Ok(events) => events,
            Err(error) => {
                tracing::error!(%error, "notifier: events cannot be read; will retry");
                Vec::new()
            }
        };
        if events.is_empty() {
            if pause(&mut stopping, POLL_INTERVAL_MS).await {
                return;
            }
            continue;
        }
        let mut unsaved = false;
        for event in &events {
            if let Some(mail) = mail_for(&engine, event).await {
                let key = format!("allot-event-{}-{}", event.seq, order_of(event));
                if !deliver(&mailer, mail, &key, &mut stopping).await {
                    return;
                }
                if !save(&engine, event.seq).await {
                    return;
                }
                unsaved = false;
            } else {
                unsaved = true;
            }
            offset = event.seq;
        }
        // Events without a mail are only skipped: saving their offset once per read is enough.
        if unsaved && !save(&engine, offset).await {
            return;
        }
    }
}

/// The mail an event sends, if any.
async fn mail_for(engine: &Engine, event: &Event) -> Option<OutgoingMail> {
    let Subject::Order(id) = event.subject else {
        return None;
    };
    if !matches!(
        event.kind,
        EventKind::OrderPaid | EventKind::OrderShipped | EventKind::OrderRefunded
    ) {
        return None;
    }
    let order = match engine.read_order(id).await {
        Ok(order) => order?,
        Err(error) => {
            tracing::warn!(%error, order = %id, "notifier: the order could not be read");
            return None;
        }
    };
    let to = match engine.profile(order.user) {
        Ok(profile) => profile.email,
        Err(error) => {
            tracing::warn!(%error, order = %id, "notifier: no address for the order's customer");
            return None;
        }
    };
    let (subject, body_text) = match event.kind {
        EventKind::OrderPaid => (
            format!("Your order {id} is paid"),
            format!(
                "Thank you! We received your payment for order {id}.\n\n{}\n",
                summary(&order)
            ),
        ),
        EventKind::OrderShipped => {
            let (carrier, tracking) = order.tracking.clone().unwrap_or_default();
            (
                format!("Your order {id} has shipped"),
                format!(
                    "Order {id} is on its way with {carrier}, tracking number {tracking}.\n\n{}\n",
                    summary(&order)
                ),
            )
        }
        _ => (
            format!("Your refund for order {id}"),
            format!(
                "We refunded {} {} for order {id} to the card you paid with.\n",
                order.total, order.currency
            ),
        ),
    };
    Some(OutgoingMail {
        to,
        subject,
        body_text,
    })
}

fn summary(order: &Order) -> String {
    let mut text = String::new();
    for line in &order.lines {
        text.push_str(&format!(
            "  {} x {} at {} {}\n",
            line.quantity, line.name, line.unit_price, order.currency
        ));
    }
    text.push_str(&format!("Total: {} {}", order.total, order.currency));
    text
}

fn order_of(event: &Event) -> String {
    match event.subject {
        Subject::Order(id) => id.to_string(),
        Subject::Product(id) => id.to_string(),
    }
}

/// Delivers until the mail is taken or refused for good (logged and skipped: a refused
/// address must not hold up every later mail). Answers false when the server is stopping.
async fn deliver(
    mailer: &Mailer,
    mail: OutgoingMail,
    key: &str,
    stopping: &mut watch::Receiver<bool>,
) -> bool {
    let mut delay = RETRY_FIRST_MS;
    loop {
        // At a stop, the attempt in flight gets a moment to finish (its offset is then saved);
        // a relay that hangs beyond it must not hold up the stop, and the mail is sent again
        // on the next start.
        let delivery = mailer.deliver(mail.clone(), key);
        tokio::pin!(delivery);
        let finished = tokio::select! {
            attempt = &mut delivery => Some(attempt),
            _ = stopping.wait_for(|stop| *stop) => None,
        };
        let attempt = match finished {
            Some(attempt) => attempt,
            None => {
                let grace = Duration::from_millis(STOP_GRACE_MS);
                match tokio::time::timeout(grace, delivery).await {
                    Ok(attempt) => attempt,
                    Err(_) => return false,
                }
            }
        };
        match attempt {
            Ok(()) => return true,
            Err(MailError::NotDelivered {
                permanent: false,
                reason,
            }) => {
                tracing::warn!(%reason, subject = %mail.subject, retry_in_ms = delay, "notifier: mail not delivered; will retry");
            }
            Err(error) => {
                tracing::error!(%error, subject = %mail.subject, "notifier: mail refused; skipped");
                return true;
            }
        }
        if pause(stopping, delay).await {
            return false;
        }
        delay = (delay * 2).min(RETRY_MAX_MS);
    }
}

/// Saves the offset durably; answers false if it cannot (the notifier then stops, and starts
/// again from the last saved offset with the next server start).
async fn save(engine: &Engine, seq: Seq) -> bool {
    match blocking(engine, move |e| e.save_consumer_offset(CONSUMER, seq)).await {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(%error, seq, "notifier: the offset cannot be saved; stopping");
            false
        }
    }
}

/// Sleeps `ms`; answers true if the server began stopping meanwhile.
async fn pause(stopping: &mut watch::Receiver<bool>, ms: u64) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => false,
        _ = stopping.wait_for(|stop| *stop) => true,
    };
    stopped || *stopping.borrow()
}

async fn blocking<T: Send + 'static>(
    engine: &Engine,
    work: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || work(&engine))
        .await
        .map_err(|_| EngineError::from(Internal::WorkerStopped))?
}
