//! The live stock feed behind `GET /products/{id}/stock/stream`.
//!
//! Purchases never pay for subscribers: nothing is added to the take path. One task polls the
//! counter of each product that has subscribers (one atomic load) every `STOCK_FEED_TICK_MS`
//! and publishes a change through a `watch` channel per product. A watch keeps only the latest
//! value, so a burst of 10,000 purchases is coalesced and a slow subscriber gets the newest
//! stock, never a backlog.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;
use tokio::sync::watch;

use allot_engine::{Engine, ProductId, ProductStatus, StockCounts};

/// How often subscribed counters are read; bounds how late an event can be. Every change
/// within it is one event per subscriber: with thousands of subscribers, each tick costs a
/// socket write per subscriber, which is what competes with purchases for the CPU
/// (benches/RESULTS.md, "stream subscribers").
pub const STOCK_FEED_TICK_MS: u64 = 100;

/// What a subscriber is told, rendered once per change for every subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockEvent {
    pub counts: StockCounts,
    pub status: ProductStatus,
    pub as_of_ms: u64,
    /// The event's data: the JSON of `GET /products/{id}/stock`.
    pub data: Arc<str>,
}

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
    fn new(id: ProductId, counts: StockCounts, status: ProductStatus, as_of_ms: u64) -> Self {
        let data = serde_json::to_string(&StockJson::new(id, counts, status, as_of_ms))
            .unwrap_or_default();
        Self {
            counts,
            status,
            as_of_ms,
            data: data.into(),
        }
    }
}

#[derive(Default)]
pub struct StockFeed {
    channels: Mutex<HashMap<ProductId, watch::Sender<StockEvent>>>,
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
        let sender = channels
            .entry(id)
            .or_insert_with(|| watch::channel(StockEvent::new(id, counts, status, as_of_ms)).0);
        Some(sender.subscribe())
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
        let mut tick = tokio::time::interval(Duration::from_millis(STOCK_FEED_TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !self.closed.load(std::sync::atomic::Ordering::Acquire) {
            tick.tick().await;
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            channels.retain(|id, sender| {
                if sender.receiver_count() == 0 {
                    return false;
                }
                let Some((counts, status, as_of_ms)) = engine.stock_status(*id) else {
                    return false;
                };
                sender.send_if_modified(|last| {
                    let changed = last.counts != counts || last.status != status;
                    if changed {
                        *last = StockEvent::new(*id, counts, status, as_of_ms);
                    }
                    changed
                });
                true
            });
        }
    }
}
