//! A shop after years of trading, measured: builds ORDERS closed orders (placed, then cancelled)
//! for CUSTOMERS customers on a durable engine, then restarts it in a fresh process and reports
//! what the issue "state that stays small" asks for:
//!
//! - the durable placement rate over the first and the last million orders;
//! - time to ready and RSS after the restart (sled's cache included);
//! - the newest 5 orders of a customer with 10,000 orders against one with 5.
//!
//! ```text
//! cargo run --release -p allot-benches --bin history -- 1000000 100000     # about a minute
//! cargo run --release -p allot-benches --bin history -- 10000000 1000000   # the full figure
//! cargo run --release -p allot-benches --bin history -- 300000 30000 --delivered
//! cargo run --release -p allot-benches --bin history -- 10000000 1000000 --over-days 365
//! ```
//!
//! `--delivered`: each order is paid, shipped and delivered instead of cancelled, with a return
//! window of 0, so it closes when the scheduler sees the window passed (`ReturnWindowClosed`).
//! `--over-days N`: the orders are spread over N days of simulated time ending now (the engine's
//! clock is moved on after each order), so retention by age (Idempotency-Keys kept 30 days
//! after the close, events 30 days) does what it would in a shop that ran that long.
//!
//! Customer 0 has 10,000 orders, customer 1 has 5, the rest share the remainder. The data
//! directory is a temporary one, removed at the end (set `ALLOT_HISTORY_DIR` to keep one).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allot_engine::{
    AddressForm, Clock, Engine, EngineConfig, IdempotencyKey, LineRequest, ManualClock, NewProduct,
    OrderRequest, PaymentOutcome, Placement, ProductDetails, ProductId, ProductKind, Shipment,
    ShipmentForm, ShippingAddress, SystemClock, UserId,
};

const HEAVY_ORDERS: u64 = 10_000;
const LIGHT_ORDERS: u64 = 5;
/// Orders in flight before the builder waits for the oldest: deep enough for full batches.
const PIPELINE: usize = 4_096;
const MILLION: u64 = 1_000_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--measure") => match args.get(2) {
            Some(dir) => measure(Path::new(dir)),
            None => Err("--measure DIR".into()),
        },
        _ => build_and_measure(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("history: {error}");
            ExitCode::FAILURE
        }
    }
}

fn config(dir: &Path) -> EngineConfig {
    let defaults = EngineConfig::new(dir);
    EngineConfig {
        // Delivered orders close at once (`--delivered`).
        return_window_ms: 0,
        // A checkpoint every 100,000 records. A running shop takes one every minute (or every
        // million records): at the pace of a shop with millions of orders a year, after a few
        // hundred orders. Retention (keys, events) runs after each one.
        snapshot_every_records: 100_000,
        // `ALLOT_HISTORY_CACHE_MB`: sled's cache, as `allot serve --cache-mb` sets it.
        cache_bytes: std::env::var("ALLOT_HISTORY_CACHE_MB")
            .ok()
            .and_then(|mb| mb.parse::<u64>().ok())
            .map_or(defaults.cache_bytes, |mb| mb << 20),
        ..defaults
    }
}

fn build_and_measure(args: &[String]) -> Result<(), String> {
    let number = |at: usize, default: u64| -> Result<u64, String> {
        args.get(at).map_or(Ok(default), |a| {
            a.replace('_', "").parse().map_err(|e| format!("{a}: {e}"))
        })
    };
    let orders = number(1, MILLION)?;
    let customers = number(2, orders / 10)?.max(3);
    if orders < HEAVY_ORDERS + LIGHT_ORDERS {
        return Err(format!("at least {} orders", HEAVY_ORDERS + LIGHT_ORDERS));
    }
    let mut journey = Journey::Cancelled;
    let mut over_days = 0;
    let mut flags = args.iter().skip(3);
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--delivered" => journey = Journey::Delivered,
            "--over-days" => {
                over_days = flags
                    .next()
                    .and_then(|d| d.parse::<u64>().ok())
                    .ok_or("--over-days N")?;
            }
            other => return Err(format!("{other}: expected --delivered or --over-days N")),
        }
    }
    let kept = std::env::var_os("ALLOT_HISTORY_DIR").map(PathBuf::from);
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = kept.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    println!(
        "building {orders} closed orders for {customers} customers in {}",
        dir.display()
    );
    let rates = build(&dir, orders, customers, journey, over_days)?;
    for (million, rate) in &rates {
        println!("orders {million}M: {rate:.0} durable placements+cancellations/s");
    }
    if let (Some(first), Some(last)) = (rates.first(), rates.last()) {
        println!(
            "rate at the last million / at the first: {:.2}",
            last.1 / first.1
        );
    }
    let status = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("--measure")
        .arg(&dir)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("the measuring process failed: {status}"));
    }
    Ok(())
}

/// What becomes of each order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Journey {
    Cancelled,
    /// Paid, shipped, delivered, and closed when its return window passes.
    Delivered,
}

/// Places `orders` orders and takes each to its close; answers the rate of each million (or of
/// the whole run, under a million).
fn build(
    dir: &Path,
    orders: u64,
    customers: u64,
    journey: Journey,
    over_days: u64,
) -> Result<Vec<(u64, f64)>, String> {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    let now = SystemClock::new().now_ms();
    let clock = Arc::new(ManualClock::new(now - over_days * DAY_MS));
    let step_ms = over_days * DAY_MS / orders;
    let engine = Engine::open(config(dir), clock.clone()).map_err(|e| e.to_string())?;
    let (view, ticket) = engine
        .create_product(NewProduct {
            kind: ProductKind::General,
            details: ProductDetails {
                name: "Everyday tee".into(),
                description: String::new(),
                price: 2_500,
                currency: "EUR".into(),
            },
            sale_opens_ms: None,
            sale_closes_ms: None,
            per_user_limit: None,
            stock_total: u32::try_from(orders.min(u64::from(u32::MAX))).unwrap_or(u32::MAX),
        })
        .map_err(|e| e.to_string())?;
    ticket.wait().map_err(|e| e.to_string())?;
    let product: ProductId = view.product.id;
    let request = OrderRequest::new(
        vec![LineRequest {
            product,
            quantity: 1,
        }],
        ShippingAddress::try_from(AddressForm {
            recipient: "Pat Doe".into(),
            phone: "555-0100".into(),
            line1: "1 Long Road".into(),
            line2: None,
            city: "Springfield".into(),
            postal_code: "12345".into(),
            country: "US".into(),
        })
        .map_err(|e| e.to_string())?,
    );
    let mut in_flight = std::collections::VecDeque::with_capacity(PIPELINE);
    let mut rates = Vec::new();
    let mut started = Instant::now();
    for n in 0..orders {
        let user = match n {
            n if n < HEAVY_ORDERS => UserId(0),
            n if n < HEAVY_ORDERS + LIGHT_ORDERS => UserId(1),
            n => UserId(2 + n % (customers - 2)),
        };
        let key: IdempotencyKey = format!("order-{n}").parse().map_err(|e| format!("{e}"))?;
        let placed = engine
            .place_order(user, &key, &request, 86_400_000)
            .map_err(|e| format!("order {n}: {e}"))?;
        let Placement::Placed(order, _) = placed else {
            return Err(format!("order {n} replayed"));
        };
        let last = match journey {
            Journey::Cancelled => engine.cancel_order(order.id).map_err(|e| e.to_string())?.1,
            Journey::Delivered => deliver(&engine, order.id).map_err(|e| e.to_string())?,
        };
        in_flight.push_back(last);
        clock.advance_ms(step_ms);
        if in_flight.len() >= PIPELINE
            && let Some(oldest) = in_flight.pop_front()
        {
            oldest.wait().map_err(|e| e.to_string())?;
        }
        let done = n + 1;
        if done % MILLION == 0 || done == orders {
            for ticket in in_flight.drain(..) {
                ticket.wait().map_err(|e| e.to_string())?;
            }
            let chunk = if done % MILLION == 0 {
                MILLION
            } else {
                done % MILLION
            };
            rates.push((
                done.div_ceil(MILLION),
                chunk as f64 / started.elapsed().as_secs_f64(),
            ));
            started = Instant::now();
        }
    }
    // Delivered orders close on the scheduler's next ticks.
    let waited = Instant::now();
    while engine.stats().live_orders > 0 {
        if waited.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "{} orders still live after 10 minutes",
                engine.stats().live_orders
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    engine.close().map_err(|e| e.to_string())?;
    Ok(rates)
}

/// Pays (the simulator's answer recorded as charged), ships and delivers an order; answers the
/// ticket of the last step.
fn deliver(
    engine: &Engine,
    order: allot_engine::OrderId,
) -> Result<allot_engine::Ticket, allot_engine::EngineError> {
    let (_, attempt, _) = engine.request_payment(order)?;
    // The last step's ticket covers these: the log is durable in order.
    let _paid = engine.record_payment(order, attempt, PaymentOutcome::Charged)?;
    let shipment = ShipmentForm {
        carrier: "DHL".into(),
        tracking_number: format!("T{}", order.0),
    };
    let shipment = Shipment::try_from(shipment).map_err(allot_engine::EngineError::from)?;
    let _shipped = engine.ship_order(order, shipment)?;
    Ok(engine.deliver_order(order)?.1)
}

/// In a fresh process: open, then RSS, then the newest-five read of a heavy and a light customer.
fn measure(dir: &Path) -> Result<(), String> {
    let opened = Instant::now();
    let engine =
        Engine::open(config(dir), Arc::new(SystemClock::new())).map_err(|e| e.to_string())?;
    let ready = opened.elapsed();
    let rss = rss_bytes()?;
    println!(
        "RSS: anonymous {:.1} MB, file {:.1} MB",
        status_kb("RssAnon:")? as f64 / 1e6,
        status_kb("RssFile:")? as f64 / 1e6
    );
    let stats = engine.stats();
    let report = engine.recovery_report();
    println!(
        "recovery: {:.3} s of the open (snapshot {:?}, {} records replayed); sled's own open the rest",
        report.elapsed.as_secs_f64(),
        report.snapshot_seq,
        report.records_replayed
    );
    println!(
        "after restart: ready in {:.3} s, RSS {:.1} MB; {} orders stored, {} live in memory; \
         disk {:.1} MB",
        ready.as_secs_f64(),
        rss as f64 / 1e6,
        stats.stored_orders,
        stats.live_orders,
        stats.disk_bytes as f64 / 1e6
    );
    let newest_five = |user: u64| -> Duration {
        const READS: u32 = 2_000;
        let started = Instant::now();
        for _ in 0..READS {
            std::hint::black_box(engine.orders_of(UserId(user), None, 5));
        }
        started.elapsed() / READS
    };
    // Warm both once, then measure alternately.
    newest_five(0);
    newest_five(1);
    let (heavy, light) = (newest_five(0), newest_five(1));
    println!(
        "newest 5 orders: customer with {HEAVY_ORDERS} orders {:.1} µs, with {LIGHT_ORDERS} {:.1} µs \
         (ratio {:.2})",
        heavy.as_secs_f64() * 1e6,
        light.as_secs_f64() * 1e6,
        heavy.as_secs_f64() / light.as_secs_f64()
    );
    engine.close().map_err(|e| e.to_string())
}

fn rss_bytes() -> Result<u64, String> {
    status_kb("VmRSS:")
}

/// A figure of /proc/self/status, in bytes.
fn status_kb(field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no {field} in /proc/self/status"))
}
