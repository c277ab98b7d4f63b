//! The shop's cast and requests for the tests that drive `allot serve` over HTTP (the crash and
//! power-loss tests): the password every account shares, the simulator's cards (API.md),
//! verified customers and an admin made in-process, and plain requests that read any answer.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use allot_engine::{
    Engine, EngineConfig, NewProduct, SystemClock, hash_password, testkit, testkit::PASSWORD,
};

/// How long a server may take to become ready before a test gives up (not a claim of speed).
const READY_WAIT_MAX: Duration = Duration::from_secs(60);
const READY_POLL: Duration = Duration::from_millis(20);

pub fn customer_email(n: usize) -> String {
    format!("customer-{n}@example.com")
}

/// `customers` verified customers (`customer_email(0..customers)`) and the admin, sharing one
/// password hash: made in the engine, because signing up over HTTP costs a mail round trip and
/// an argon2 hash each.
pub fn create_customers_and_admin(engine: &Engine, customers: usize) {
    let hash = hash_password(PASSWORD);
    for n in 0..customers {
        testkit::create_customer(engine, &customer_email(n), &format!("Customer {n}"), &hash);
    }
    testkit::create_admin(engine, &hash);
}

/// A stopped shop in `data`, made off the async workers: `customers` verified customers, the
/// admin and `product` (a catalog that is not empty also keeps the demo catalog out). Answers
/// the product's id.
pub async fn prepare(data: &Path, customers: usize, product: NewProduct) -> String {
    let data = data.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let engine = Engine::open(EngineConfig::new(&data), Arc::new(SystemClock::new()))
            .expect("open the data directory");
        create_customers_and_admin(&engine, customers);
        let id = testkit::create(&engine, product);
        // Closing lets go of the directory lock before the server takes it.
        engine.close().expect("a clean close");
        id.to_string()
    })
    .await
    .expect("the shop is prepared")
}

/// A client whose requests give up after `timeout` (a server killed mid-answer never replies).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("an HTTP client")
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The problem `type`, or "" for an answer that is not a problem.
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

pub use allot_engine::testkit::Units;

/// The product's units; the read must succeed.
pub async fn stock(http: &reqwest::Client, base: &str, token: &str, product: &str) -> Units {
    let path = format!("/products/{product}/stock");
    let read = call(http, base, token, &path, None, None).await;
    assert_eq!(read.status, 200, "{read:?}");
    Units::of_stock_json(&read.body)
}

/// One request: a POST when there is a body, a GET otherwise. An error is a transport error
/// (the server is away, or its answer was cut off).
pub async fn request(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<&Value>,
) -> Result<Answer, reqwest::Error> {
    let mut request = match body {
        Some(body) => http.post(url).json(body),
        None => http.get(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    Ok(Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

/// A request of the test's own to the server that is up now: a transport error fails the test.
pub async fn call(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let url = format!("{base}/api/v1{path}");
    request(http, &url, Some(token), key, body)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Waits for `/readyz`; answers when the server was first seen ready. `what` names the run.
pub async fn wait_ready(http: &reqwest::Client, base: &str, what: &str) -> Instant {
    let deadline = Instant::now() + READY_WAIT_MAX;
    loop {
        if let Ok(response) = http.get(format!("{base}/readyz")).send().await
            && response.status() == 200
        {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{what}: never became ready");
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Logs in with [`PASSWORD`]; answers the access token.
pub async fn log_in(http: &reqwest::Client, base: &str, email: &str) -> String {
    let body = json!({ "email": email, "password": PASSWORD });
    let url = format!("{base}/api/v1/auth/login");
    let answer = request(http, &url, None, None, Some(&body)).await.unwrap();
    assert_eq!(answer.status, 200, "{email}: {:?}", answer.body);
    answer.body["access_token"].as_str().unwrap().to_string()
}

/// Logs in customers `0..count` (`customer_email`), a few at a time; answers their access
/// tokens in order. They outlive restarts: the key is in the data directory.
pub async fn log_in_customers(http: &reqwest::Client, base: &str, count: usize) -> Vec<String> {
    const LANES: usize = 4;
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..LANES {
        let (http, base) = (http.clone(), base.to_string());
        lanes.spawn(async move {
            let mut tokens = Vec::new();
            for n in (lane..count).step_by(LANES) {
                tokens.push((n, log_in(&http, &base, &customer_email(n)).await));
            }
            tokens
        });
    }
    let mut tokens = vec![String::new(); count];
    while let Some(lane) = lanes.join_next().await {
        for (n, token) in lane.unwrap() {
            tokens[n] = token;
        }
    }
    tokens
}

/// A `POST /orders` body: `quantity` units of `product`, shipped to one address.
pub fn order_body(product: &str, quantity: u64) -> Value {
    allot_engine::testkit::order_json(&[(product, quantity)])
}

pub fn card_body(card: &str) -> Value {
    testkit::card_json(card)
}

/// Every order, through the admin list and its cursor.
pub async fn all_orders(http: &reqwest::Client, base: &str, admin: &str) -> Vec<Value> {
    list(http, base, admin, "/admin/orders").await
}

/// Every item of a paged list at `path`, following `next_cursor`.
pub async fn list(http: &reqwest::Client, base: &str, token: &str, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_path = match &cursor {
            Some(cursor) => format!("{path}?limit=100&cursor={cursor}"),
            None => format!("{path}?limit=100"),
        };
        let page = call(http, base, token, &page_path, None, None).await;
        assert_eq!(page.status, 200, "{page:?}");
        items.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return items,
        }
    }
}
