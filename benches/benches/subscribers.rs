//! Do thousands of live-stock subscribers slow purchases? Durable reservations/s (fsync on,
//! 2 producers, as in (b)) while N subscribers are connected to a product's stock stream over
//! real HTTP. In a "quiet" round that product does not change, so the subscribers get nothing
//! but their first event; in a "live" round a side thread buys one unit of it every few ms, so
//! the feed sends new counts to all N once per pace (1 s at 2,000 subscribers). The purchases
//! themselves go to bulk SKUs of the same engine, so a round lasts seconds (several paces)
//! without running out of units.
//!
//! Every round starts from nothing: a fresh data directory, engine and server, and N fresh
//! connections. The engine keeps every reservation it was ever given (closed ones included),
//! so rounds run one after the other on one engine got slower as the run went on, whatever the
//! subscribers did (a round holding the 25 millionth reservation took three times as long). The
//! rounds still go in pairs ordered quiet-live, live-quiet, … so that any drift of the machine
//! cancels.
//!
//! Besides the rates it counts CPU time per thread group (from `/proc/self/task/*/schedstat`):
//! `allot-http`, the server's two workers (the HTTP server, the feed and the streams, as
//! `allot serve` runs them), and `subscriber`, the one worker that reads every stream. The
//! clients share the machine's 2 cores with the purchases here; on a real drop they are
//! elsewhere, and only the server's part is the shop's.
//!
//! `cargo bench -p allot-benches --bench subscribers`: `ALLOT_BENCH_SUBSCRIBERS` (default 2,000;
//! 0 runs the same rounds with nobody listening, which shows how far apart two conditions that
//! differ only by the changer land on this machine), `ALLOT_BENCH_DURABILITY=none` to take the
//! disk out, and the server's own `ALLOT_STREAM_EVENTS_PER_SEC` and `ALLOT_STREAM_PACE_MAX_MS`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use allot_benches::UNITS_PER_SKU;
use allot_benches::{open_for_throughput, reserve_durably};
use allot_engine::{
    Durability, Engine, NewProduct, ProductDetails, ProductId, ProductKind, Sku, UserId,
};
use allot_server::mail::{MailConfig, MailTransportConfig, Mailer};
use allot_server::stock_feed::StockFeedConfig;
use allot_server::{AppState, ServerConfig};
use tokio::runtime::Runtime;

/// Pairs of rounds, one quiet and one live each.
const PAIRS: usize = 4;
/// About 3 s per round here: several paces of the feed.
const RESERVATIONS_PER_ROUND: u64 = 4_000_000;
/// How often the watched product changes in a live round: more often than the feed looks.
const CHANGE_EVERY_MS: u64 = 5;
/// Bulk SKUs are numbered from here, clear of the products' own.
const BULK_SKU_FIRST: u64 = 1_000;
/// Thread names, as `/proc` shows them (at most 15 bytes).
const SERVER_THREADS: &str = "allot-http";
const CLIENT_THREADS: &str = "subscriber";

fn main() {
    let subscribers: u64 = std::env::var("ALLOT_BENCH_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let durability = match std::env::var("ALLOT_BENCH_DURABILITY").as_deref() {
        Ok("none") => Durability::NoneBenchmarkOnly,
        _ => Durability::Fsync,
    };
    let runtime = |threads: usize, name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let defaults = StockFeedConfig::default();
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let feed = StockFeedConfig {
        events_per_sec_max: setting("ALLOT_STREAM_EVENTS_PER_SEC", defaults.events_per_sec_max),
        pace_max_ms: setting("ALLOT_STREAM_PACE_MAX_MS", defaults.pace_max_ms),
    };
    let world = World {
        server: runtime(2, SERVER_THREADS),
        clients: runtime(1, CLIENT_THREADS),
        subscribers,
        durability,
        feed,
    };
    println!(
        "{subscribers} subscribers, {RESERVATIONS_PER_ROUND} reservations per round, {durability:?}, {feed:?}"
    );

    let mut rounds = [Vec::new(), Vec::new()];
    for pair in 0..PAIRS {
        let order = if pair % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for live in order {
            let round = world.round(live);
            println!(
                "pair {pair}: {:>5} {:>9.0} reservations/s in {:.1} s; {:>5} events delivered; CPU ms/s: server {:>5.1}, subscribers {:>5.1}",
                if live { "live" } else { "quiet" },
                round.rate(),
                round.took.as_secs_f64(),
                round.events,
                round.per_second(round.server_cpu),
                round.per_second(round.client_cpu),
            );
            rounds[usize::from(live)].push(round);
        }
    }
    summarize(subscribers, &rounds[0], &rounds[1]);
}

struct World {
    server: Runtime,
    clients: Runtime,
    subscribers: u64,
    durability: Durability,
    feed: StockFeedConfig,
}

struct Round {
    took: Duration,
    /// Events the subscribers read while the purchases ran.
    events: u64,
    server_cpu: Duration,
    client_cpu: Duration,
}

impl Round {
    fn rate(&self) -> f64 {
        RESERVATIONS_PER_ROUND as f64 / self.took.as_secs_f64()
    }

    fn per_second(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1_000.0 / self.took.as_secs_f64()
    }
}

impl World {
    /// One round on a world of its own: engine, server and subscribers are made for it and
    /// gone when it returns.
    fn round(&self, live: bool) -> Round {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = open_for_throughput(dir.path(), self.durability).expect("open");
        let watched = product(&engine);
        let skus = bulk_stock(&engine, RESERVATIONS_PER_ROUND);

        let (stop, server) = {
            let _runtime = self.server.enter();
            let mailer = Mailer::start(MailConfig {
                transport: MailTransportConfig::Files {
                    dir: dir.path().join("mail"),
                },
                from: "allot <bench@allot.local>".into(),
            })
            .expect("mailer");
            let config = ServerConfig {
                stock_feed: self.feed,
                ..ServerConfig::default()
            };
            let state = AppState::new(&config, mailer);
            let simulator = allot_engine::PaymentSimulator::open(&dir.path().join("payments"))
                .expect("simulator");
            state.install_engine(
                engine.clone(),
                Arc::new(allot_engine::Payments::new(Arc::new(simulator))),
            );
            let listener = self
                .server
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind");
            let url = format!(
                "http://{}/api/v1/products/{watched}/stock/stream",
                listener.local_addr().expect("address")
            );
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = self
                .server
                .spawn(allot_server::serve(listener, state, async {
                    let _ = stopped.await;
                }));
            (stop, (server, url))
        };
        let (server, url) = server;
        let events = self.connect(&url);

        let changing = Arc::new(AtomicBool::new(live));
        let changer = {
            let (engine, changing) = (engine.clone(), changing.clone());
            std::thread::Builder::new()
                .name("changer".into())
                .spawn(move || {
                    let mut user = u64::MAX / 2;
                    while changing.load(Ordering::Relaxed) {
                        user += 1;
                        let _ = engine.reserve(UserId(user), Sku(watched.0), 1, 3_600_000);
                        std::thread::sleep(Duration::from_millis(CHANGE_EVERY_MS));
                    }
                })
                .expect("changer")
        };
        let (events_before, server_before, clients_before) = (
            events.load(Ordering::Relaxed),
            cpu_of(SERVER_THREADS),
            cpu_of(CLIENT_THREADS),
        );
        // The producers are children of a thread of their own name, so no thread of the two
        // runtimes runs a purchase.
        let took = {
            let engine = engine.clone();
            std::thread::Builder::new()
                .name("purchases".into())
                .spawn(move || reserve_durably(&engine, &skus, 2, RESERVATIONS_PER_ROUND))
                .expect("purchases")
                .join()
                .expect("producers")
                .expect("reservations")
        };
        let round = Round {
            took,
            events: events.load(Ordering::Relaxed) - events_before,
            server_cpu: cpu_of(SERVER_THREADS).saturating_sub(server_before),
            client_cpu: cpu_of(CLIENT_THREADS).saturating_sub(clients_before),
        };
        changing.store(false, Ordering::Relaxed);
        changer.join().expect("changer");

        let _ = stop.send(());
        self.server
            .block_on(server)
            .expect("server task")
            .expect("serve");
        engine.close().expect("close");
        round
    }

    /// Opens the streams, each a real HTTP connection reading every event it is sent, and
    /// answers once every one has read its first event. The count goes on while they read.
    fn connect(&self, url: &str) -> Arc<AtomicU64> {
        let events = Arc::new(AtomicU64::new(0));
        let _runtime = self.clients.enter();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        for _ in 0..self.subscribers {
            let (client, url, events) = (client.clone(), url.to_owned(), events.clone());
            self.clients.spawn(async move {
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
        while events.load(Ordering::Relaxed) < self.subscribers {
            assert!(Instant::now() < deadline, "subscribers did not connect");
            std::thread::sleep(Duration::from_millis(20));
        }
        events
    }
}

fn product(engine: &Engine) -> ProductId {
    let (view, ticket) = engine
        .create_product(NewProduct {
            kind: ProductKind::General,
            details: ProductDetails {
                name: "everybody watches".into(),
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
}

/// Fresh SKUs holding at least `units` units between them, durable.
fn bulk_stock(engine: &Engine, units: u64) -> Vec<Sku> {
    let count = units.div_ceil(u64::from(UNITS_PER_SKU));
    let skus: Vec<Sku> = (BULK_SKU_FIRST..BULK_SKU_FIRST + count).map(Sku).collect();
    for &sku in &skus {
        let ticket = engine
            .create_sku(sku, UNITS_PER_SKU, None)
            .expect("bulk SKU");
        ticket.wait().expect("durable");
    }
    skus
}

/// CPU time so far of this process's threads named `name` (those alive now).
fn cpu_of(name: &str) -> Duration {
    let mut nanos = 0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let named = std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == name);
        if !named {
            continue;
        }
        // The first field is the time on a CPU in nanoseconds.
        if let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            nanos += ns;
        }
    }
    Duration::from_nanos(nanos)
}

fn summarize(subscribers: u64, quiet: &[Round], live: &[Round]) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        let mid = v.len() / 2;
        if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        }
    };
    let rate = |rounds: &[Round]| median(rounds.iter().map(Round::rate).collect());
    let (quiet_rate, live_rate) = (rate(quiet), rate(live));
    let total = |rounds: &[Round], f: fn(&Round) -> f64| rounds.iter().map(f).sum::<f64>();
    let seconds = |r: &Round| r.took.as_secs_f64();
    let events = total(live, |r| r.events as f64);
    let extra_cpu = |f: fn(&Round) -> f64| {
        // CPU per second in live rounds beyond the quiet rounds', spread over the live events.
        let live_per_s = total(live, f) / total(live, seconds);
        let quiet_per_s = total(quiet, f) / total(quiet, seconds);
        let per_event_us = (live_per_s - quiet_per_s) * 1e6 / (events / total(live, seconds));
        (live_per_s - quiet_per_s, per_event_us)
    };
    let (server_share, server_us) = extra_cpu(|r| r.server_cpu.as_secs_f64());
    let (client_share, client_us) = extra_cpu(|r| r.client_cpu.as_secs_f64());
    println!(
        "median: quiet {quiet_rate:.0}/s, live with {subscribers} subscribers {live_rate:.0}/s: {:.1} %",
        100.0 * live_rate / quiet_rate
    );
    if events > 0.0 {
        println!(
            "{:.0} events/s in live rounds; their extra CPU: server {:.1} % of a core ({server_us:.1} µs per event), subscribers {:.1} % of a core ({client_us:.1} µs per event)",
            events / total(live, seconds),
            100.0 * server_share,
            100.0 * client_share,
        );
    }
}
