//! The live stock stream through HTTP: the opening is announced, purchases show up as a
//! decreasing sequence ending at 0, bursts are coalesced, the closing is announced, and a server
//! stop ends the stream.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::app::{AppOptions, TestApp};
use crate::support::shop;
use allot_engine::{NewProduct, Sku, UserId, testkit};
use allot_server::stock_feed::StockFeedConfig;

struct SseEvent {
    name: String,
    data: Value,
}

/// Reads a `text/event-stream` response event by event.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(base: &str, product: &str) -> SseReader {
        let response = reqwest::Client::new()
            .get(format!("{base}/api/v1/products/{product}/stock/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the stream ended.
    async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        self.within(timeout)
            .await
            .unwrap_or_else(|| panic!("no event within {timeout:?}"))
    }

    /// `Some` of what `next` answers, or `None` if no event came within `timeout`.
    async fn within(&mut self, timeout: Duration) -> Option<Option<SseEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(Some(SseEvent {
                    name,
                    data: serde_json::from_str(&data).unwrap(),
                }));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Ok(None)) | Ok(Err(_)) => return Some(None),
                Err(_) => return None,
            }
        }
    }
}

async fn limited(app: &TestApp, stock: u32, opens_in_ms: u64, closes_in_ms: u64) -> (String, Sku) {
    let now = app.engine.now_ms();
    let (view, ticket) = app
        .engine
        .create_product(NewProduct {
            per_user_limit: None,
            ..testkit::limited(
                "Drop",
                1_000,
                stock,
                (now + opens_in_ms, now + closes_in_ms),
                1,
            )
        })
        .unwrap();
    ticket.durable().await.unwrap();
    (view.product.id.to_string(), view.product.sku())
}

fn assert_consistent(event: &SseEvent, total: u64) {
    let d = &event.data;
    let sum = d["remaining"].as_u64().unwrap()
        + d["reserved"].as_u64().unwrap()
        + d["sold"].as_u64().unwrap();
    assert_eq!(sum, total, "an event whose units do not add up: {d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_the_opening_then_stock_falling_to_zero_then_the_closing() {
    let (_dir, app) = shop::spawn().await;
    // Opening 1.5 s out leaves a loaded machine time to subscribe before it.
    let (product, sku) = limited(&app, 50, 1_500, 4_000).await;
    let mut stream = SseReader::open(&app.base, &product).await;

    let first = stream.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (first.name.as_str(), first.data["status"].as_str()),
        ("stock", Some("upcoming"))
    );
    assert_eq!(first.data["remaining"], 50);
    let opened = stream.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(opened.name, "sale_opened");
    assert_eq!(opened.data["status"], "on_sale");

    // Purchases run while the subscriber listens.
    let engine = app.engine.clone();
    let buyer = tokio::spawn(async move {
        for user in 0..50 {
            let (_, ticket) = engine.reserve(UserId(user), sku, 1, 600_000).unwrap();
            ticket.durable().await.unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    let mut seen = vec![50];
    loop {
        let event = stream.next(Duration::from_secs(5)).await.unwrap();
        assert_consistent(&event, 50);
        if event.name != "stock" {
            continue;
        }
        let remaining = event.data["remaining"].as_u64().unwrap();
        assert!(
            remaining <= *seen.last().unwrap(),
            "stock went up: {seen:?} then {remaining}"
        );
        seen.push(remaining);
        if remaining == 0 {
            break;
        }
    }
    buyer.await.unwrap();
    assert!(
        seen.len() > 2,
        "the stream showed the fall, not just its end: {seen:?}"
    );

    let closing = loop {
        let event = stream.next(Duration::from_secs(5)).await.unwrap();
        if event.name == "sale_closed" {
            break event;
        }
    };
    assert_eq!(closing.data["status"], "closed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_coalesced_and_a_stop_ends_the_stream() {
    let (_dir, app) = shop::spawn().await;
    let (product, sku) = limited(&app, 10_000, 0, 3_600_000).await;
    let mut stream = SseReader::open(&app.base, &product).await;
    assert_eq!(
        stream.next(Duration::from_secs(5)).await.unwrap().data["remaining"],
        10_000
    );

    // 10,000 purchases as fast as the engine takes them; the subscriber does not read meanwhile.
    let mut last = None;
    for user in 0..10_000 {
        last = Some(app.engine.reserve(UserId(user), sku, 1, 600_000).unwrap().1);
    }
    last.unwrap().durable().await.unwrap();
    let mut events = 0;
    loop {
        let event = stream.next(Duration::from_secs(5)).await.unwrap();
        assert_consistent(&event, 10_000);
        events += 1;
        if event.data["remaining"] == 0 {
            break;
        }
    }
    assert!(events < 200, "{events} events for one burst: not coalesced");

    // A stopping server ends the stream instead of waiting for the client forever.
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(
        stopped.is_ok(),
        "the server did not stop with a stream open"
    );
    assert!(stream.next(Duration::from_secs(5)).await.is_none());
}

/// A crowd slows how often counts are sent, never the opening or the closing: with a budget
/// of one event per second, ten subscribers get new counts every 10 s, but hear the sale open
/// and close at once, each time with the newest counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_gets_counts_at_its_pace_but_the_opening_and_closing_at_once() {
    const SUBSCRIBERS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let options = AppOptions {
        stock_feed: StockFeedConfig {
            events_per_sec_max: 1,
            pace_max_ms: 10_000,
        },
        ..AppOptions::files(dir.path())
    };
    let app = TestApp::spawn(dir.path(), options).await;
    let opens_in = Duration::from_millis(2_500);
    let (product, sku) = limited(&app, 10, 2_500, 8_000).await;
    let created = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut stream = SseReader::open(&app.base, &product).await;
        let first = stream.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(first.data["status"], "upcoming");
        streams.push(stream);
    }
    // Past a tick, so the feed knows its crowd; then the counts change before the opening.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, ticket) = app.engine.reserve(UserId(1), sku, 1, 600_000).unwrap();
    ticket.durable().await.unwrap();
    assert!(
        created.elapsed() < opens_in,
        "the machine was too slow to set the scene before the opening"
    );

    // Without the opening's precedence it would come with the next paced counts, 10 s after
    // the streams were opened; 4 s past the opening leaves a loaded machine plenty of time.
    let opening_by = opens_in - created.elapsed() + Duration::from_secs(4);
    for stream in &mut streams {
        let opened = stream.next(opening_by).await.unwrap();
        assert_eq!(
            opened.name, "sale_opened",
            "the counts came before the opening"
        );
        assert_eq!(opened.data["status"], "on_sale");
        assert_eq!(
            opened.data["remaining"], 9,
            "the opening carries the newest counts"
        );
        let stock = stream.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            (stock.name.as_str(), &stock.data["remaining"]),
            ("stock", &9.into())
        );
    }

    // A purchase on sale waits for the pace: not told within a second.
    let (_, ticket) = app.engine.reserve(UserId(2), sku, 1, 600_000).unwrap();
    ticket.durable().await.unwrap();
    assert!(
        streams[0].within(Duration::from_secs(1)).await.is_none(),
        "new counts were sent before the pace allowed"
    );
    // The closing, 5.5 s after the opening, is told at once with the counts it waited for;
    // paced, it would come with them 10 s after the opening.
    let closing_by = Duration::from_millis(8_000 + 2_500).saturating_sub(created.elapsed());
    for stream in &mut streams {
        let closed = stream
            .next(closing_by.max(Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(closed.name, "sale_closed");
        assert_eq!(closed.data["remaining"], 8);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_product_has_no_stream() {
    let (_dir, app) = shop::spawn().await;
    let response = reqwest::get(format!("{}/api/v1/products/prd_42/stock/stream", app.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "product_not_found");
    app.stop().await;
}
