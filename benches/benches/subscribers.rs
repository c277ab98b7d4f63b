//! Do thousands of live-stock subscribers slow purchases? Durable reservations/s (fsync on,
//! 2 producers, as in (b)) on a product nobody watches and on one with N subscribers to its
//! stock stream over real HTTP, in alternating rounds of one run.
//!
//! `cargo bench -p allot-benches --bench subscribers` (`ALLOT_BENCH_SUBSCRIBERS`, default 2,000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use allot_benches::{open_for_throughput, reserve_durably};
use allot_engine::{Durability, NewProduct, ProductDetails, ProductKind, Sku};
use allot_server::mail::{MailConfig, MailTransportConfig, Mailer};
use allot_server::{AppState, ServerConfig};

const ROUNDS: usize = 3;
/// Long enough for several stream ticks per round (a SKU holds at most 2,097,151 units).
const RESERVATIONS_PER_ROUND: u64 = 500_000;

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
                stock_total: (ROUNDS as u32 + 1) * RESERVATIONS_PER_ROUND as u32,
            })
            .expect("product");
        ticket.wait().expect("durable");
        view.product.id
    };
    let quiet = product("nobody watches");
    let watched = product("everybody watches");

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
        for (which, product) in [(0, quiet), (1, watched)] {
            let engine = engine.clone();
            let before = events.load(Ordering::Relaxed);
            let took = tokio::task::spawn_blocking(move || {
                reserve_durably(&engine, &[Sku(product.0)], 2, RESERVATIONS_PER_ROUND)
            })
            .await
            .expect("producers")
            .expect("reservations");
            let rate = RESERVATIONS_PER_ROUND as f64 / took.as_secs_f64();
            let delivered = events.load(Ordering::Relaxed) - before;
            println!(
                "round {round}: {:>9} {:>10.0} durable reservations/s ({delivered} events delivered meanwhile)",
                if which == 0 { "unwatched" } else { "watched" },
                rate
            );
            rates[which].push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (quiet_rate, watched_rate) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "median: unwatched {quiet_rate:.0}/s, watched by {subscribers} {watched_rate:.0}/s: {:.1} %",
        100.0 * watched_rate / quiet_rate
    );
}
