//! `allot db backup --url`: a backup of a running shop taken while customers keep buying and
//! paying. The copy verifies clean, restores, and the restored shop holds every order that
//! was acknowledged before the backup began, with that status or a later one.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allot_engine::testkit::{self, ADMIN_EMAIL, cards::APPROVED};

use support::shop::{self, call, card_body, log_in, log_in_customers, order_body, wait_ready};
use support::{ALLOT, Server, assert_db_verify};

const CUSTOMERS: usize = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Orders acknowledged before the backup begins.
const ACKED_BEFORE_BACKUP: usize = 200;
const LOAD_WAIT_MAX: Duration = Duration::from_secs(120);

/// The status each order was last acknowledged with, by id.
type Acks = Arc<Mutex<BTreeMap<String, String>>>;

/// One customer's loop until `stop`: place an order, pay every other one.
async fn buy_until(
    http: reqwest::Client,
    base: String,
    token: String,
    product: String,
    customer: usize,
    acks: Acks,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut placed = 0;
    while !stop.load(Ordering::Acquire) {
        let key = format!("c{customer}-{placed}");
        let answer = call(
            &http,
            &base,
            &token,
            "/orders",
            Some(&key),
            Some(&order_body(&product, 1)),
        )
        .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        let id = answer.body["id"].as_str().unwrap().to_string();
        acks.lock()
            .unwrap()
            .insert(id.clone(), "pending_payment".into());
        if placed % 2 == 0 {
            let paid = call(
                &http,
                &base,
                &token,
                &format!("/orders/{id}/payment"),
                None,
                Some(&card_body(APPROVED)),
            )
            .await;
            assert_eq!(paid.status, 200, "{:?}", paid.body);
            acks.lock().unwrap().insert(id, "paid".into());
        }
        placed += 1;
    }
    placed
}

fn allot(args: &[&str]) -> std::process::Output {
    Command::new(ALLOT)
        .args(args)
        .env("ALLOT_LOG", "error")
        .output()
        .unwrap()
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_shop_holds_every_order_acknowledged_before_it() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("db");
    let product = shop::prepare(
        &data,
        CUSTOMERS,
        testkit::general("Canvas Tote", 19_000, 1_000_000),
    )
    .await;
    let mut server = Server::start(&data, &["--ip-rate-limit", "0"], "warn");
    let base = server.base.clone();
    let http = shop::http_client(REQUEST_TIMEOUT);
    wait_ready(&http, &base, "online backup").await;
    let admin = log_in(&http, &base, ADMIN_EMAIL).await;
    let tokens = log_in_customers(&http, &base, CUSTOMERS).await;

    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let buyers: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(n, token)| {
            tokio::spawn(buy_until(
                http.clone(),
                base.clone(),
                token,
                product.clone(),
                n,
                acks.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // Let the load run a little before and during the backup.
    let deadline = Instant::now() + LOAD_WAIT_MAX;
    while acks.lock().unwrap().len() < ACKED_BEFORE_BACKUP {
        assert!(
            Instant::now() < deadline,
            "the load acknowledged too little"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before: BTreeMap<String, String> = acks.lock().unwrap().clone();
    let backup = root.path().join("backups").join("first");
    let to = "first".to_string();
    let took = tokio::task::spawn_blocking({
        let (base, admin, to) = (base.clone(), admin.clone(), to.clone());
        move || {
            allot(&[
                "db", "backup", "--to", &to, "--url", &base, "--token", &admin,
            ])
        }
    })
    .await
    .unwrap();
    let during = acks.lock().unwrap().len();
    // The load goes on past the backup's start before it is stopped.
    while acks.lock().unwrap().len() <= before.len() {
        assert!(Instant::now() < deadline, "the load stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);
    let mut placed = 0;
    for buyer in buyers {
        placed += buyer.await.unwrap();
    }
    assert!(took.status.success(), "{}", text(&took));
    assert!(text(&took).contains("verify: clean"), "{}", text(&took));
    assert!(placed > before.len(), "the load went on: {placed} placed");
    eprintln!(
        "{} acknowledged before the backup, {during} when it ended, {placed} in all",
        before.len()
    );

    // The same path again is refused, and changes nothing.
    let again = allot(&[
        "db", "backup", "--to", &to, "--url", &base, "--token", &admin,
    ]);
    assert!(!again.status.success());
    assert!(text(&again).contains("backup_exists"), "{}", text(&again));
    // A customer may not take one.
    let customer = log_in(&http, &base, &shop::customer_email(0)).await;
    let refused = allot(&[
        "db", "backup", "--to", "theirs", "--url", &base, "--token", &customer,
    ]);
    assert!(text(&refused).contains("forbidden"), "{}", text(&refused));
    assert!(!root.path().join("backups").join("theirs").exists());
    server.stop();
    assert_db_verify(&data, "the shop after the backup");

    // The backup verifies, restores, and the restored shop holds what was acknowledged.
    assert_db_verify(&backup, "the online backup");
    let restored = root.path().join("restored");
    let output = allot(&[
        "db",
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert_db_verify(&restored, "the restored backup");
    let mut server = Server::start(&restored, &["--ip-rate-limit", "0"], "warn");
    let base = server.base.clone();
    wait_ready(&http, &base, "restored").await;
    let admin = log_in(&http, &base, ADMIN_EMAIL).await;
    let orders: BTreeMap<String, String> = shop::all_orders(&http, &base, &admin)
        .await
        .into_iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_string(),
                o["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (id, status) in &before {
        let found = orders.get(id).map(String::as_str);
        let later_or_same = match status.as_str() {
            "paid" => found == Some("paid"),
            _ => matches!(found, Some("pending_payment" | "paid")),
        };
        assert!(
            later_or_same,
            "{id} was acknowledged {status}, the restored shop has {found:?}"
        );
    }
    server.stop();
}
