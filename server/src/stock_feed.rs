//! The live stock feed behind `GET /products/{id}/stock/stream`.
//!
//! Purchases never pay for subscribers: nothing is added to the take path. One task polls the
//! counter of each product that has subscribers (one atomic load) every tick and publishes a
//! change through a `watch` channel per product. A watch keeps only the latest value, so a
//! burst of 10,000 purchases is coalesced and a slow subscriber gets the newest stock, never a
//! backlog.
//!
//! The tick is `STOCK_FEED_TICK_MS` while few listen, and lengthens with the number of
//! subscribers so that the server writes at most about `STOCK_FEED_EVENTS_PER_SEC_MAX` events
//! per second in all (up to `STOCK_FEED_TICK_MAX_MS` between events): a crowd watching a drop
//! gets its updates a little later instead of taking the CPU the purchases need.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;
use std::time::Instant;

use axum::body::Bytes;
use tokio::sync::watch;

use allot_engine::{Engine, ProductId, ProductStatus, StockCounts};

/// How often subscribed counters are read; bounds how late an event can be. Every change
/// within it is one event per subscriber: with thousands of subscribers, each tick costs a
/// socket write per subscriber, which is what competes with purchases for the CPU
/// (benches/RESULTS.md, "stream subscribers").
pub const STOCK_FEED_TICK_MS: u64 = 100;
/// About how many events per second all subscribers together are sent at most.
pub const STOCK_FEED_EVENTS_PER_SEC_MAX: u64 = 2_000;
/// The longest tick, however many listen.
pub const STOCK_FEED_TICK_MAX_MS: u64 = 1_000;

/// The tick for `subscribers` listeners in all.
pub fn tick_ms(subscribers: u64) -> u64 {
    (subscribers * 1_000 / STOCK_FEED_EVENTS_PER_SEC_MAX)
        .clamp(STOCK_FEED_TICK_MS, STOCK_FEED_TICK_MAX_MS)
}

/// How long a stream may stay silent before it is sent a comment, so proxies keep it open.
/// The feed task beats every quiet channel, so no stream keeps a timer of its own.
pub const STOCK_FEED_KEEP_ALIVE_MS: u64 = 15_000;

/// What a subscriber is told, rendered once per change for every subscriber: the SSE frames
/// are ready-made bytes that every stream only hands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockEvent {
    pub counts: StockCounts,
    pub status: ProductStatus,
    pub as_of_ms: u64,
    /// Counts the changes: a new value with the same `change` is a keep-alive beat.
    pub change: u64,
    /// `event: stock` with the JSON of `GET /products/{id}/stock` as its data.
    pub stock_frame: Bytes,
    /// The same data as `event: sale_opened` and `event: sale_closed`.
    pub opened_frame: Bytes,
    pub closed_frame: Bytes,
}

/// An SSE comment: keeps an idle stream open.
pub const KEEP_ALIVE_FRAME: &[u8] = b":\n\n";

/// A product's stock as `GET /products/{id}/stock` answers it and every stream event carries it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StockJson {
    pub product_id: String,
    pub remaining: u32,
    pub reserved: u32,
    pub sold: u32,
    pub status: &'static str,
    pub as_of: String,
}

impl StockJson {
    pub fn new(id: ProductId, counts: StockCounts, status: ProductStatus, as_of_ms: u64) -> Self {
        Self {
            product_id: id.to_string(),
            remaining: counts.available,
            reserved: counts.reserved,
            sold: counts.sold,
            status: status.as_str(),
            as_of: allot_engine::clock::rfc3339(as_of_ms),
        }
    }
}

impl StockEvent {
    pub(crate) fn new(
        id: ProductId,
        counts: StockCounts,
        status: ProductStatus,
        as_of_ms: u64,
        change: u64,
    ) -> Self {
        let data = serde_json::to_string(&StockJson::new(id, counts, status, as_of_ms))
            .unwrap_or_default();
        let frame = |event: &str| Bytes::from(format!("event: {event}\ndata: {data}\n\n"));
        Self {
            counts,
            status,
            as_of_ms,
            change,
            stock_frame: frame("stock"),
            opened_frame: frame("sale_opened"),
            closed_frame: frame("sale_closed"),
        }
    }
}

struct Channel {
    sender: watch::Sender<StockEvent>,
    /// When its subscribers were last sent anything (a change or a beat).
    last_sent: Instant,
}

#[derive(Default)]
pub struct StockFeed {
    channels: Mutex<HashMap<ProductId, Channel>>,
    closed: std::sync::atomic::AtomicBool,
    started: std::sync::OnceLock<()>,
}

impl StockFeed {
    /// Subscribes to a product's stock; `None` for an unknown product or once closed.
    pub fn subscribe(
        self: &Arc<Self>,
        engine: &Engine,
        id: ProductId,
    ) -> Option<watch::Receiver<StockEvent>> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let (counts, status, as_of_ms) = engine.stock_status(id)?;
        self.started.get_or_init(|| {
            tokio::spawn(self.clone().run(engine.clone()));
        });
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock `close` clears the channels with: a stream opened
        // while the server stops must not outlive it.
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let channel = channels.entry(id).or_insert_with(|| Channel {
            sender: watch::channel(StockEvent::new(id, counts, status, as_of_ms, 0)).0,
            last_sent: Instant::now(),
        });
        Some(channel.sender.subscribe())
    }

    /// Ends every stream (their senders are dropped) and refuses new ones: a graceful stop
    /// must not wait for clients that would listen forever.
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    async fn run(self: Arc<Self>, engine: Engine) {
        let mut tick = STOCK_FEED_TICK_MS;
        while !self.closed.load(std::sync::atomic::Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(tick)).await;
            let mut subscribers = 0;
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let keep_alive = Duration::from_millis(STOCK_FEED_KEEP_ALIVE_MS);
            channels.retain(|id, channel| {
                let listening = channel.sender.receiver_count() as u64;
                if listening == 0 {
                    return false;
                }
                subscribers += listening;
                let Some((counts, status, as_of_ms)) = engine.stock_status(*id) else {
                    return false;
                };
                let beat = now.duration_since(channel.last_sent) >= keep_alive;
                let sent = channel.sender.send_if_modified(|last| {
                    if last.counts != counts || last.status != status {
                        *last = StockEvent::new(*id, counts, status, as_of_ms, last.change + 1);
                        true
                    } else {
                        beat
                    }
                });
                if sent {
                    channel.last_sent = now;
                }
                true
            });
            drop(channels);
            tick = tick_ms(subscribers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_lengthens_with_the_crowd_within_its_bounds() {
        assert_eq!(tick_ms(0), STOCK_FEED_TICK_MS);
        assert_eq!(tick_ms(1), STOCK_FEED_TICK_MS);
        assert_eq!(tick_ms(200), STOCK_FEED_TICK_MS);
        assert_eq!(tick_ms(1_000), 500);
        assert_eq!(tick_ms(2_000), STOCK_FEED_TICK_MAX_MS);
        assert_eq!(tick_ms(1_000_000), STOCK_FEED_TICK_MAX_MS);
    }
}
