//! Do thousands of live-stock subscribers slow purchases? Durable reservations/s (fsync on,
//! 2 producers, as in (b)) while N subscribers are connected to a product's stock stream over
//! real HTTP, in alternating rounds of one run: in a "quiet" round that product does not
//! change, so the subscribers get nothing; in a "live" round a side thread buys one unit of it
//! every few ms, so every tick of the feed is broadcast to all N. The purchases themselves go
//! to fresh bulk SKUs, so a round can last seconds (many ticks) without running out of units.
//!
//! `cargo bench -p allot-benches --bench subscribers` (`ALLOT_BENCH_SUBSCRIBERS`, default 2,000).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use allot_benches::{open_for_throughput, reserve_durably};
use allot_engine::{
    Durability, NewProduct, ProductDetails, ProductKind, SKU_UNITS_MAX, Sku, UserId,
};
use allot_server::mail::{MailConfig, MailTransportConfig, Mailer};
use allot_server::{AppState, ServerConfig};

const ROUNDS: usize = 3;
/// About 3 s per round here: many ticks of the feed, whatever its length.
const RESERVATIONS_PER_ROUND: u64 = 4_000_000;
/// How often the watched product changes in a live round: more often than any feed tick.
const CHANGE_EVERY_MS: u64 = 5;
/// Bulk SKUs are numbered from here, clear of the products' own.
const BULK_SKU_FIRST: u64 = 1_000;

fn main() {
    let subscribers: usize = std::env::var("ALLOT_BENCH_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(subscribers));
}

async fn run(subscribers: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open_for_throughput(dir.path(), Durability::Fsync).expect("open");
    let product = |name: &str| {
        let (view, ticket) = engine
            .create_product(NewProduct {
                kind: ProductKind::General,
                details: ProductDetails {
                    name: name.into(),
                    description: String::new(),
                    price: 1_000,
                    currency: "KRW".into(),
                },
                sale_opens_ms: None,
                sale_closes_ms: None,
                per_user_limit: None,
                stock_total: 1_000_000,
            })
            .expect("product");
        ticket.wait().expect("durable");
        view.product.id
    };
    let watched = product("everybody watches");
    let mut next_bulk = BULK_SKU_FIRST;
    let mut bulk_stock = |units: u64| -> Vec<Sku> {
        let count = units.div_ceil(u64::from(SKU_UNITS_MAX));
        let skus: Vec<Sku> = (next_bulk..next_bulk + count).map(Sku).collect();
        next_bulk += count;
        for &sku in &skus {
            let ticket = engine
                .create_sku(sku, SKU_UNITS_MAX, None)
                .expect("bulk SKU");
            ticket.wait().expect("durable");
        }
        skus
    };

    let mailer = Mailer::start(MailConfig {
        transport: MailTransportConfig::Files {
            dir: dir.path().join("mail"),
        },
        from: "allot <bench@allot.local>".into(),
    })
    .expect("mailer");
    let state = AppState::new(&ServerConfig::default(), mailer);
    let simulator = allot_engine::payment::PaymentSimulator::open(&dir.path().join("payments"))
        .expect("simulator");
    state.install_engine(
        engine.clone(),
        Arc::new(allot_engine::Payments::new(Arc::new(simulator))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/api/v1/products/{watched}/stock/stream",
        listener.local_addr().expect("address")
    );
    tokio::spawn(allot_server::serve(listener, state, std::future::pending()));

    // The subscribers: each a real HTTP connection reading every event it is sent.
    let events = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    for _ in 0..subscribers {
        let (client, url, events) = (client.clone(), url.clone(), events.clone());
        tokio::spawn(async move {
            let Ok(mut response) = client.get(&url).send().await else {
                return;
            };
            while let Ok(Some(chunk)) = response.chunk().await {
                let n = chunk.windows(7).filter(|w| w == b"event: ").count();
                events.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.load(Ordering::Relaxed) < subscribers as u64 {
        assert!(Instant::now() < deadline, "subscribers did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{subscribers} subscribers connected to {watched}'s stock stream");

    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for (which, live) in [(0, false), (1, true)] {
            let skus = bulk_stock(RESERVATIONS_PER_ROUND);
            let changing = Arc::new(AtomicBool::new(live));
            let changer = {
                let (engine, changing) = (engine.clone(), changing.clone());
                std::thread::spawn(move || {
                    let mut user = u64::MAX / 2 + round as u64 * 1_000_000;
                    while changing.load(Ordering::Relaxed) {
                        user += 1;
                        let _ = engine.reserve(UserId(user), Sku(watched.0), 1, 3_600_000);
                        std::thread::sleep(Duration::from_millis(CHANGE_EVERY_MS));
                    }
                })
            };
            let engine = engine.clone();
            let before = events.load(Ordering::Relaxed);
            let took = tokio::task::spawn_blocking(move || {
                reserve_durably(&engine, &skus, 2, RESERVATIONS_PER_ROUND)
            })
            .await
            .expect("producers")
            .expect("reservations");
            changing.store(false, Ordering::Relaxed);
            changer.join().expect("changer");
            let rate = RESERVATIONS_PER_ROUND as f64 / took.as_secs_f64();
            let delivered = events.load(Ordering::Relaxed) - before;
            println!(
                "round {round}: {:>5} {:>10.0} durable reservations/s in {:.1} s ({delivered} events delivered meanwhile)",
                if live { "live" } else { "quiet" },
                rate,
                took.as_secs_f64()
            );
            rates[which].push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (quiet_rate, live_rate) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "median: quiet {quiet_rate:.0}/s, live with {subscribers} subscribers {live_rate:.0}/s: {:.1} %",
        100.0 * live_rate / quiet_rate
    );
}
