//! The live stock feed behind `GET /products/{id}/stock/stream`.
//!
//! Purchases never pay for subscribers: nothing is added to the take path. One task reads the
//! counter of each product that has subscribers (one atomic load) every tick and publishes a
//! change through a `watch` channel per product. A watch keeps only the latest value, so a
//! burst of 10,000 purchases is coalesced and a slow subscriber gets the newest stock, never a
//! backlog.
//!
//! What costs is telling: one socket write per subscriber per event, on the cores the
//! purchases need (benches/RESULTS.md, "stream subscribers"). So a product's subscribers are
//! told of new counts at most once per *pace*, which is one tick while few listen and lengthens
//! with the crowd, so that the server writes at most about `events_per_sec_max` events per
//! second in all (up to `pace_max_ms` between two). The sale window opening or closing is
//! different: it happens once, everybody waits for it, and it is told at the next tick
//! whatever the pace.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;
use std::time::Instant;

use axum::body::Bytes;
use tokio::sync::watch;

use allot_engine::{Engine, ProductId, ProductStatus, StockCounts};

/// How often subscribed counters are read: the soonest an opening or closing is told, and
/// the pace of counts while few listen.
pub const STOCK_FEED_TICK_MS: u64 = 100;

/// How the feed trades freshness for CPU when many listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockFeedConfig {
    /// About how many events per second all subscribers together are sent at most (openings
    /// and closings aside), as long as the pace stays within `pace_max_ms`.
    pub events_per_sec_max: u64,
    /// The longest a product's subscribers wait for its new counts, however many listen.
    pub pace_max_ms: u64,
}

impl Default for StockFeedConfig {
    fn default() -> Self {
        Self {
            events_per_sec_max: 2_000,
            pace_max_ms: 1_000,
        }
    }
}

impl StockFeedConfig {
    /// The pace of counts for `subscribers` listeners in all: 100 ms up to 200 subscribers
    /// with the defaults, then longer, 1 s from 2,000 on.
    pub fn pace_ms(&self, subscribers: u64) -> u64 {
        let longest = self.pace_max_ms.max(STOCK_FEED_TICK_MS);
        (subscribers.saturating_mul(1_000) / self.events_per_sec_max.max(1))
            .clamp(STOCK_FEED_TICK_MS, longest)
    }
}

/// What a product's subscribers are sent at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tell {
    /// The new counts and status.
    Change,
    /// A keep-alive comment.
    Beat,
    Nothing,
}

/// The tick's decision for one product: the window opening or closing at once, new counts
/// once the pace has passed since they were last sent anything, a beat after a long silence.
fn tell(
    last: &StockEvent,
    counts: StockCounts,
    status: ProductStatus,
    silent_for: Duration,
    pace: Duration,
) -> Tell {
    let window_moved = last.status != status
        && [last.status, status]
            .iter()
            .any(|s| matches!(s, ProductStatus::Upcoming | ProductStatus::Closed));
    let changed = last.counts != counts || last.status != status;
    let keep_alive = Duration::from_millis(STOCK_FEED_KEEP_ALIVE_MS);
    // A pace longer than the keep-alive would have every change wait behind the beats.
    if window_moved || (changed && silent_for >= pace.min(keep_alive)) {
        Tell::Change
    } else if silent_for >= keep_alive {
        Tell::Beat
    } else {
        Tell::Nothing
    }
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

/// One event of the stream as an SSE reader parses it: `event` names it, `data` is a
/// [`StockJson`] in JSON text. Documented by hand: a derived schema cannot say that a string
/// holds JSON of a given shape (`contentMediaType` with `contentSchema`).
pub struct StockFrame;

/// The `event:` names the stream sends, as rendered in [`StockEvent::new`].
const FRAME_EVENTS: [&str; 3] = ["stock", "sale_opened", "sale_closed"];

impl utoipa::PartialSchema for StockFrame {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::extensions::Extensions;
        use utoipa::openapi::schema::{ObjectBuilder, Type};

        let mut content_schema = Extensions::default();
        content_schema.insert(
            "contentSchema".to_string(),
            serde_json::json!({ "$ref": "#/components/schemas/StockJson" }),
        );
        ObjectBuilder::new()
            .description(Some("One Server-Sent Event of the stock stream."))
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(FRAME_EVENTS)),
            )
            .required("event")
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("A StockJson, as JSON text."))
                    .content_media_type("application/json")
                    .extensions(Some(content_schema)),
            )
            .required("data")
            .into()
    }
}

impl utoipa::ToSchema for StockFrame {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "StockJson".to_string(),
            <StockJson as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// A product's stock as `GET /products/{id}/stock` answers it and every stream event carries it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StockJson {
    pub product_id: String,
    pub remaining: u64,
    pub reserved: u64,
    pub sold: u64,
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
            as_of: allot_engine::rfc3339(as_of_ms),
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
        let [stock, opened, closed] = FRAME_EVENTS;
        Self {
            counts,
            status,
            as_of_ms,
            change,
            stock_frame: frame(stock),
            opened_frame: frame(opened),
            closed_frame: frame(closed),
        }
    }
}

struct Channel {
    sender: watch::Sender<StockEvent>,
    /// When its subscribers were last sent anything (a change or a beat).
    last_sent: Instant,
}

pub struct StockFeed {
    config: StockFeedConfig,
    channels: Mutex<HashMap<ProductId, Channel>>,
    closed: std::sync::atomic::AtomicBool,
    started: std::sync::OnceLock<()>,
}

impl StockFeed {
    pub fn new(config: StockFeedConfig) -> Self {
        Self {
            config,
            channels: Mutex::default(),
            closed: Default::default(),
            started: Default::default(),
        }
    }

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

    /// Streams open now, over all products.
    pub fn subscriber_count(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|channel| channel.sender.receiver_count())
            .sum()
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
        let mut pace = Duration::from_millis(STOCK_FEED_TICK_MS);
        while !self.closed.load(std::sync::atomic::Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(STOCK_FEED_TICK_MS)).await;
            let mut subscribers = 0;
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            channels.retain(|id, channel| {
                let listening = channel.sender.receiver_count() as u64;
                if listening == 0 {
                    return false;
                }
                subscribers += listening;
                let Some((counts, status, as_of_ms)) = engine.stock_status(*id) else {
                    return false;
                };
                let silent_for = now.duration_since(channel.last_sent);
                let sent = channel.sender.send_if_modified(|last| {
                    match tell(last, counts, status, silent_for, pace) {
                        Tell::Change => {
                            *last = StockEvent::new(*id, counts, status, as_of_ms, last.change + 1);
                            true
                        }
                        Tell::Beat => true,
                        Tell::Nothing => false,
                    }
                });
                if sent {
                    channel.last_sent = now;
                }
                true
            });
            drop(channels);
            pace = Duration::from_millis(self.config.pace_ms(subscribers));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_lengthens_with_the_crowd_within_its_bounds() {
        let config = StockFeedConfig::default();
        assert_eq!(config.pace_ms(0), STOCK_FEED_TICK_MS);
        assert_eq!(config.pace_ms(1), STOCK_FEED_TICK_MS);
        assert_eq!(config.pace_ms(200), STOCK_FEED_TICK_MS);
        assert_eq!(config.pace_ms(1_000), 500);
        assert_eq!(config.pace_ms(2_000), 1_000);
        assert_eq!(config.pace_ms(u64::MAX), 1_000);
        let odd = StockFeedConfig {
            events_per_sec_max: 0,
            pace_max_ms: 0,
        };
        assert_eq!(odd.pace_ms(5), STOCK_FEED_TICK_MS);
    }

    fn event(status: ProductStatus, available: u64) -> (StockEvent, StockCounts) {
        let counts = StockCounts {
            available,
            reserved: 0,
            sold: 0,
        };
        (
            StockEvent::new(ProductId(1), counts, status, 1_800_000_000_000, 0),
            counts,
        )
    }

    #[test]
    fn counts_wait_for_the_pace_but_the_window_moving_does_not() {
        use ProductStatus::*;
        let ms = Duration::from_millis;
        let pace = ms(1_000);
        let (on_sale, five) = event(OnSale, 5);
        let four = StockCounts {
            available: 4,
            ..five
        };
        assert_eq!(tell(&on_sale, five, OnSale, ms(999), pace), Tell::Nothing);
        assert_eq!(tell(&on_sale, four, OnSale, ms(999), pace), Tell::Nothing);
        assert_eq!(tell(&on_sale, four, OnSale, ms(1_000), pace), Tell::Change);
        // Selling out and back (a unit released) is paced like the counts it comes with.
        let zero = StockCounts {
            available: 0,
            ..five
        };
        assert_eq!(tell(&on_sale, zero, SoldOut, ms(100), pace), Tell::Nothing);
        assert_eq!(tell(&on_sale, zero, SoldOut, ms(1_000), pace), Tell::Change);
        // Opening and closing are told at the next tick.
        let (upcoming, _) = event(Upcoming, 5);
        assert_eq!(tell(&upcoming, five, OnSale, ms(0), pace), Tell::Change);
        assert_eq!(tell(&upcoming, zero, SoldOut, ms(0), pace), Tell::Change);
        assert_eq!(tell(&on_sale, five, Closed, ms(0), pace), Tell::Change);
        let (sold_out, _) = event(SoldOut, 0);
        assert_eq!(tell(&sold_out, zero, Closed, ms(0), pace), Tell::Change);
        // A quiet product is beaten now and then, and only then.
        let keep_alive = ms(STOCK_FEED_KEEP_ALIVE_MS);
        assert_eq!(tell(&on_sale, five, OnSale, keep_alive, pace), Tell::Beat);
        assert_eq!(
            tell(&on_sale, five, OnSale, keep_alive - ms(1), pace),
            Tell::Nothing
        );
        // Changes are never held behind beats, however long the pace.
        let slow = ms(STOCK_FEED_KEEP_ALIVE_MS * 2);
        assert_eq!(tell(&on_sale, four, OnSale, keep_alive, slow), Tell::Change);
    }
}
