//! Power cuts under load: `allot serve` runs with its data directory on LazyFS (a FUSE file
//! system that keeps written data in its own cache until the program fsyncs it). Customers place
//! orders and pay for most of them with the payment simulator's cards; then, at a moment the
//! seed picks, the server is killed with SIGKILL, LazyFS drops everything not fsynced (what a
//! power cut does to the page cache), the file system is unmounted and mounted again, and the
//! server restarts on what is left. Several rounds per seed.
//!
//! The kill lands either at a random moment, or aimed at a checkpoint: the server writes a
//! snapshot every few hundred records (`--snapshot-every-records`), and an aimed kill, after a
//! while of load, waits for the next snapshot's blob file (sled writes a large value as a file of
//! its own) to appear on the disk below, and then for 0 to 30 ms more, which
//! spreads the cuts over the snapshot's write, its flush, the retention pruning of the log
//! batches it covers, and the flush after that.
//!
//! After each restart every answer a customer saw as a success still holds: the order exists,
//! in the acknowledged status or a later one, and a placement sent again with its
//! Idempotency-Key answers the same order. At the end, once every payment has settled: nothing
//! was charged twice (one charge per order at most in the simulator's journal), every charge
//! belongs to an order that reads paid (or later) or was refunded, and `allot db verify` passes.
//!
//! LazyFS itself crashes now and then (a segfault on a sparse write, a defect of LazyFS): its
//! mount then answers "not connected" and the server's writes fail. That is a power cut the
//! seed did not pick, and the round ends at it as at a kill (`Round::disk_died`,
//! `LazyFs::power_cut`); every check after the restart still holds. A crash while the checks
//! run is one more power cut, after which the checks run again (`checked`).
//!
//! Seeds are random per run and printed; `ALLOT_POWER_LOSS_SEEDS=1,2` replays given ones (how
//! requests interleave is still up to the machine). `ALLOT_POWER_LOSS_ROUNDS` sets the rounds
//! per seed (default 3). `ALLOT_POWER_LOSS_KEEP=1` keeps each seed's directories (the disk
//! below LazyFS under `under/`), and `ALLOT_TEST_SERVER_LOG` sets the server's log filter.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use allot_engine::{
    NewProduct, testkit,
    testkit::ADMIN_EMAIL,
    testkit::cards::{
        APPROVED as CARD_APPROVED, DECLINED as CARD_DECLINED,
        TIMEOUT_CHARGED as CARD_TIMEOUT_CHARGED,
    },
};

mod support;

use support::lazyfs::LazyFs;
use support::shop::{self, card_body, log_in, log_in_customers, order_body, request, wait_ready};
use support::{Server, assert_db_verify, next, seeds};

const SEEDS_DEFAULT: u64 = 2;
const ROUNDS_DEFAULT: u64 = 3;
const CUSTOMERS: usize = 24;
/// Ample: every placement is meant to succeed, so that the log grows fast.
const STOCK_UNITS: u32 = 1_000_000;
/// Often, so that checkpoints and pruning happen during every round.
const SNAPSHOT_EVERY_RECORDS: &str = "400";

/// How long a round runs before a kill at a random moment, in ms.
const RUN_MS_MIN: u64 = 300;
const RUN_MS_MAX: u64 = 2_500;
/// An aimed kill waits at most this long for a checkpoint, then kills anyway (and says so).
const AIM_WAIT: Duration = Duration::from_secs(10);
const AIM_POLL: Duration = Duration::from_millis(1);
const AIM_DELAY_MS_MAX: u64 = 30;
/// Every answer comes in well within this, or the test gives up (not a claim about speed).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const WAIT_MAX: Duration = Duration::from_secs(60);
/// How long a restarted server may take to recover before it counts as gone.
const READY_WAIT: Duration = Duration::from_secs(60);
const POLL_PAUSE: Duration = Duration::from_millis(100);
/// Placements sent again after each restart.
const REPLAYS_PER_RESTART: usize = 20;

/// Verified customers, an admin and one general product, made in-process (signing up over HTTP
/// costs a mail and an argon2 hash each). Answers the product's id.
/// The product every round buys: always in stock.
fn tote() -> NewProduct {
    let mut tote = testkit::general("Canvas Tote", 19_000, STOCK_UNITS);
    tote.details.description = "Always in stock".into();
    tote
}

fn start(data: &Path) -> Server {
    let args = [
        "--ip-rate-limit",
        "0",
        "--no-demo-catalog",
        "--snapshot-every-records",
        SNAPSHOT_EVERY_RECORDS,
    ];
    Server::start(data, &args, "warn,tower_http=off,allot_server=off")
}

// ----- requests ----------------------------------------------------------------------------

/// Whether an order acknowledged as `acked` may read `now` later: the saga only moves forward.
fn follows(acked: &str, now: &str) -> bool {
    match acked {
        "pending_payment" => true,
        "paid" => matches!(
            now,
            "paid" | "shipped" | "delivered" | "return_requested" | "returned" | "cancelled"
        ),
        other => panic!("{other} is never acknowledged here"),
    }
}

// ----- the customers -----------------------------------------------------------------------

/// What the server acknowledged, across every round of a seed.
#[derive(Default, Clone)]
struct Acks {
    /// Order id → the strongest acknowledged status.
    orders: HashMap<String, &'static str>,
    /// (customer, Idempotency-Key, quantity, order) of each acknowledged placement.
    placements: Vec<(usize, String, u64, String)>,
}

struct Round {
    seed: u64,
    http: reqwest::Client,
    base: String,
    product: String,
    /// Set once the server was killed: answers no longer come.
    killed: AtomicBool,
    /// The mount the server's data directory is on.
    mount: std::path::PathBuf,
    acks: Arc<Mutex<Acks>>,
}

impl Round {
    /// Whether LazyFS died under the server (it crashes now and then on sparse writes): its
    /// mount then answers "not connected", the server's writes fail and it answers 500. That
    /// is a power cut the seed did not pick; the round ends at it like at a kill.
    fn disk_died(&self) -> bool {
        std::fs::metadata(&self.mount).is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN))
    }
}

/// One customer, placing and paying until the server goes away. Transport errors end it: they
/// come from the kill (or a request in flight at it, whose outcome is unknown and not counted).
async fn customer(round: Arc<Round>, n: usize, token: String, tag: String, mut rng: u64) {
    for attempt in 0.. {
        let key = format!("{tag}-customer-{n}-{attempt}");
        let quantity = 1 + next(&mut rng) % 3;
        let url = format!("{}/api/v1/orders", round.base);
        let body = order_body(&round.product, quantity);
        let Ok(placed) = request(&round.http, &url, Some(&token), Some(&key), Some(&body)).await
        else {
            return;
        };
        if round.killed.load(Ordering::Acquire) || round.disk_died() {
            return;
        }
        assert_eq!(
            placed.status, 201,
            "seed {}: placing {key}: {placed:?}",
            round.seed
        );
        let order = placed.body["id"].as_str().unwrap().to_string();
        {
            let mut acks = round.acks.lock().unwrap();
            acks.orders.insert(order.clone(), "pending_payment");
            acks.placements.push((n, key, quantity, order.clone()));
        }
        let card = match next(&mut rng) % 10 {
            0..6 => CARD_APPROVED,
            6..8 => CARD_DECLINED,
            8 => CARD_TIMEOUT_CHARGED,
            _ => continue, // walks away: the order expires, or the test ends first
        };
        let url = format!("{}/api/v1/orders/{order}/payment", round.base);
        let Ok(paid) = request(
            &round.http,
            &url,
            Some(&token),
            None,
            Some(&card_body(card)),
        )
        .await
        else {
            return;
        };
        if round.killed.load(Ordering::Acquire) || round.disk_died() {
            return;
        }
        match (paid.status, paid.kind()) {
            (200, _) => {
                assert_eq!(paid.body["status"], "paid", "{paid:?}");
                round.acks.lock().unwrap().orders.insert(order, "paid");
            }
            (402, "payment_declined") | (504, "payment_timeout") => {}
            _ => panic!("seed {}: paying {order}: {paid:?}", round.seed),
        }
    }
}

// ----- the checks --------------------------------------------------------------------------

/// Who the test's own checks act as.
struct Checker {
    seed: u64,
    http: reqwest::Client,
    admin: String,
    tokens: Vec<String>,
    product: String,
}

/// Every order by id, through the admin list and its cursor.
async fn all_orders(http: &reqwest::Client, base: &str, admin: &str) -> HashMap<String, Value> {
    shop::all_orders(http, base, admin)
        .await
        .into_iter()
        .map(|order| (order["id"].as_str().unwrap().to_string(), order))
        .collect()
}

/// Every acknowledgement holds after the restart, and placements sent again answer the same
/// order.
async fn check_acks(
    checker: &Checker,
    base: &str,
    acks: &Acks,
    rng: &mut u64,
) -> HashMap<String, Value> {
    let Checker {
        seed,
        http,
        admin,
        tokens,
        product,
    } = checker;
    let orders = all_orders(http, base, admin).await;
    // Every broken acknowledgement, not only the first: whether the newest ones went together
    // (a lost tail) or one alone tells where to look.
    let mut broken: Vec<(u64, String)> = acks
        .orders
        .iter()
        .filter_map(|(id, acked)| {
            let number = id.trim_start_matches("ord_").parse().unwrap_or(0);
            match orders.get(id).and_then(|o| o["status"].as_str()) {
                None => Some((number, format!("{id}, acknowledged {acked}, is lost"))),
                Some(now) if !follows(acked, now) => Some((
                    number,
                    format!("{id} was acknowledged {acked} and now reads {now}"),
                )),
                Some(_) => None,
            }
        })
        .collect();
    broken.sort();
    assert!(
        broken.is_empty(),
        "seed {seed}: {} of {} acknowledgements broken (the newest acknowledged order is \
         ord_{}):\n{}",
        broken.len(),
        acks.orders.len(),
        acks.orders
            .keys()
            .filter_map(|id| id.trim_start_matches("ord_").parse::<u64>().ok())
            .max()
            .unwrap_or(0),
        broken
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let count = acks.placements.len().min(REPLAYS_PER_RESTART);
    for _ in 0..count {
        let pick = next(rng) as usize % acks.placements.len();
        let (customer, key, quantity, order) = &acks.placements[pick];
        let url = format!("{base}/api/v1/orders");
        let body = order_body(product, *quantity);
        let again = request(http, &url, Some(&tokens[*customer]), Some(key), Some(&body))
            .await
            .unwrap();
        assert_eq!(
            (again.status, again.body["id"].as_str()),
            (201, Some(order.as_str())),
            "seed {seed}: {key} sent again: {again:?}"
        );
    }
    orders
}

/// Charges per order in the simulator's journal (`key event amount currency crc` lines, the key
/// `ord_N/attempt`), and the orders whose charge was refunded.
fn charges(data: &Path) -> (HashMap<String, u32>, Vec<String>) {
    let journal =
        std::fs::read_to_string(data.join("payment-simulator/charges.log")).unwrap_or_default();
    let mut charged: HashMap<String, u32> = HashMap::new();
    let mut refunded = Vec::new();
    for line in journal.lines() {
        let mut fields = line.split(' ');
        let (Some(key), Some(event)) = (fields.next(), fields.next()) else {
            continue;
        };
        let order = key.split('/').next().unwrap_or(key).to_string();
        match event {
            "approved" | "timeout_charged" => *charged.entry(order).or_default() += 1,
            "refunded" => refunded.push(order),
            _ => {}
        }
    }
    (charged, refunded)
}

/// Polls until no order waits for a payment answer; answers the orders then.
async fn wait_for_payments(
    seed: u64,
    http: &reqwest::Client,
    base: &str,
    admin: &str,
) -> HashMap<String, Value> {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let orders = all_orders(http, base, admin).await;
        let pending = orders
            .values()
            .filter(|o| {
                matches!(
                    o["payment"]["status"].as_str(),
                    Some("pending" | "refund_pending")
                )
            })
            .count();
        if pending == 0 {
            return orders;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: {pending} payments still unsettled after {WAIT_MAX:?}"
        );
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

// ----- the test ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_and_payments_survive_power_cuts() {
    let rounds = std::env::var("ALLOT_POWER_LOSS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS_DEFAULT);
    // Built (and its packages installed) before any clock runs.
    tokio::task::spawn_blocking(support::lazyfs::binary)
        .await
        .unwrap();
    for seed in seeds("ALLOT_POWER_LOSS_SEEDS", SEEDS_DEFAULT) {
        println!("power loss seed {seed} (rerun with ALLOT_POWER_LOSS_SEEDS={seed})");
        let started = Instant::now();
        run_seed(seed, rounds).await;
        println!(
            "seed {seed}: passed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// How the server is killed at the end of a round.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// After this many ms of load.
    AtRandom(u64),
    /// After `load_ms` of load, once the next checkpoint's snapshot is being written, and
    /// `delay_ms` more.
    DuringCheckpoint { load_ms: u64, delay_ms: u64 },
}

async fn run_seed(seed: u64, rounds: u64) {
    let mut root = tempfile::tempdir().unwrap();
    if std::env::var_os("ALLOT_POWER_LOSS_KEEP").is_some() {
        // To look at a failing seed's disk afterwards.
        root.disable_cleanup(true);
        println!("seed {seed}: kept in {}", root.path().display());
    }
    let mut lazyfs = {
        let root = root.path().to_path_buf();
        tokio::task::spawn_blocking(move || LazyFs::mount_in(&root))
            .await
            .unwrap()
    };
    let data = lazyfs.mount_point().join("db");
    let disk_blobs = lazyfs.disk().join("db/store/blobs");
    let mut rng = seed.max(1);
    let product = shop::prepare(&data, CUSTOMERS, tote()).await;
    let http = shop::http_client(REQUEST_TIMEOUT);
    let acks = Arc::new(Mutex::new(Acks::default()));
    let mut server = start(&data);
    wait_ready(&http, &server.base, &format!("seed {seed}")).await;
    let admin = log_in(&http, &server.base, ADMIN_EMAIL).await;
    let tokens = log_in_customers(&http, &server.base, CUSTOMERS).await;

    let checker = Arc::new(Checker {
        seed,
        http: http.clone(),
        admin,
        tokens,
        product,
    });
    let (admin, tokens, product) = (&checker.admin, &checker.tokens, &checker.product);
    for number in 1..=rounds {
        let round = Arc::new(Round {
            seed,
            http: http.clone(),
            base: server.base.clone(),
            product: product.clone(),
            killed: AtomicBool::new(false),
            mount: lazyfs.mount_point().to_path_buf(),
            acks: acks.clone(),
        });
        let mut customers = Vec::with_capacity(CUSTOMERS);
        for (n, token) in tokens.iter().enumerate() {
            let tag = format!("seed-{seed}-round-{number}");
            let task = customer(round.clone(), n, token.clone(), tag, next(&mut rng).max(1));
            customers.push(tokio::spawn(task));
        }

        let cut = if next(&mut rng).is_multiple_of(2) {
            Cut::DuringCheckpoint {
                load_ms: RUN_MS_MIN + next(&mut rng) % (RUN_MS_MAX - RUN_MS_MIN),
                delay_ms: next(&mut rng) % (AIM_DELAY_MS_MAX + 1),
            }
        } else {
            Cut::AtRandom(RUN_MS_MIN + next(&mut rng) % (RUN_MS_MAX - RUN_MS_MIN))
        };
        let aimed = match cut {
            Cut::AtRandom(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "at a random moment"
            }
            Cut::DuringCheckpoint { load_ms, delay_ms } => {
                tokio::time::sleep(Duration::from_millis(load_ms)).await;
                if wait_for_new_blob(&disk_blobs).await {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    "during a checkpoint"
                } else {
                    "after waiting in vain for a checkpoint"
                }
            }
        };
        round.killed.store(true, Ordering::Release);
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for (n, task) in customers.into_iter().enumerate() {
            task.await
                .unwrap_or_else(|e| panic!("seed {seed}: customer {n}: {e}"));
        }
        lazyfs = tokio::task::spawn_blocking(move || {
            lazyfs.power_cut();
            lazyfs.mount();
            lazyfs
        })
        .await
        .unwrap();
        let acked = acks.lock().unwrap().orders.len();
        println!(
            "seed {seed}: round {number}: power cut {aimed} ({cut:?}), {acked} orders \
             acknowledged so far"
        );

        server = start(&data);
        let acked = acks.lock().unwrap().clone();
        rng = checked(seed, &mut lazyfs, &mut server, &data, &http, |base| {
            let (checker, acked, data, mut rng) =
                (checker.clone(), acked.clone(), data.clone(), rng);
            tokio::spawn(async move {
                let orders = check_acks(&checker, &base, &acked, &mut rng).await;
                let (charged, _) = charges(&data);
                for (order, times) in &charged {
                    assert!(
                        *times <= 1,
                        "seed {seed}: {order} was charged {times} times"
                    );
                    assert!(
                        orders.contains_key(order),
                        "seed {seed}: {order} was charged but the shop does not know it"
                    );
                }
                rng
            })
        })
        .await;
    }

    let orders = checked(seed, &mut lazyfs, &mut server, &data, &http, |base| {
        let (http, admin) = (http.clone(), admin.clone());
        tokio::spawn(async move { wait_for_payments(seed, &http, &base, &admin).await })
    })
    .await;
    let (charged, refunded) = charges(&data);
    for (order, times) in &charged {
        assert!(
            *times <= 1,
            "seed {seed}: {order} was charged {times} times"
        );
        let status = orders
            .get(order)
            .and_then(|o| o["status"].as_str())
            .unwrap_or_else(|| panic!("seed {seed}: {order} was charged but is unknown"));
        assert!(
            follows("paid", status) || refunded.contains(order),
            "seed {seed}: {order} was charged, reads {status} and was not refunded"
        );
    }
    let paid = orders.values().filter(|o| o["status"] == "paid").count();
    assert!(paid > 0, "seed {seed}: nothing was paid");
    println!(
        "seed {seed}: {} orders, {paid} paid, {} charges, every acknowledgement held",
        orders.len(),
        charged.len()
    );
    server.stop();
    assert_db_verify(&data, &format!("seed {seed}"));
    tokio::task::spawn_blocking(move || drop(lazyfs))
        .await
        .unwrap();
}

/// Runs the checks that follow a restart, once the restarted `server` is ready (`check`
/// spawns them against its base URL), and answers what they answer. LazyFS dies on its own now
/// and then (the module's docs): if it dies while the server recovers or the checks run, what
/// the server answers means nothing, and that is one more power cut. The server is killed, the
/// disk remounted, the server started again, and the checks run again, every acknowledgement
/// still owed. Any other failure is the test's.
async fn checked<T: Send + 'static>(
    seed: u64,
    lazyfs: &mut LazyFs,
    server: &mut Server,
    data: &Path,
    http: &reqwest::Client,
    mut check: impl FnMut(String) -> tokio::task::JoinHandle<T>,
) -> T {
    loop {
        let when = if ready_or_gone(server, http).await {
            match check(server.base.clone()).await {
                Ok(answer) => return answer,
                Err(failure) if !failure.is_panic() => panic!("seed {seed}: the checks: {failure}"),
                Err(failure) if lazyfs.crashed().is_none() => {
                    std::panic::resume_unwind(failure.into_panic())
                }
                Err(_) => "the checks ran",
            }
        } else {
            assert!(
                lazyfs.crashed().is_some(),
                "seed {seed}: the server stopped or never became ready, and lazyfs is alive"
            );
            "the server recovered"
        };
        println!(
            "seed {seed}: lazyfs died while {when}; one more power cut, then the checks again"
        );
        let _ = server.child.kill();
        let _ = server.child.wait();
        tokio::task::block_in_place(|| {
            lazyfs.power_cut();
            lazyfs.mount();
        });
        *server = start(data);
    }
}

/// Waits for the server's `/readyz`; false if its process ended first, or after
/// `READY_WAIT`.
async fn ready_or_gone(server: &mut Server, http: &reqwest::Client) -> bool {
    let deadline = Instant::now() + READY_WAIT;
    while Instant::now() < deadline {
        if server.child.try_wait().ok().flatten().is_some() {
            return false;
        }
        let url = format!("{}/readyz", server.base);
        if let Ok(answer) = http.get(&url).send().await
            && answer.status() == 200
        {
            return true;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    false
}

/// Waits until a blob file appears on the disk below that was not there when the wait began:
/// a snapshot being written. Answers false if none came within [`AIM_WAIT`].
async fn wait_for_new_blob(dir: &Path) -> bool {
    let names = || -> Vec<std::ffi::OsString> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = names();
    let deadline = Instant::now() + AIM_WAIT;
    while Instant::now() < deadline {
        if names().iter().any(|name| !before.contains(name)) {
            return true;
        }
        tokio::time::sleep(AIM_POLL).await;
    }
    false
}
