//! `TestApp`: the real engine on a temporary (or given) data directory, the real router served
//! on port 0, and a client that speaks HTTP to it with an explicit cookie jar, so tests can
//! send, drop or tamper with each cookie and header on purpose.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use reqwest::Method;
use serde_json::Value;

use allot_engine::{Engine, EngineConfig, NewProduct, ProductDetails, ProductKind, SystemClock};
use allot_server::mail::{MailConfig, MailTransportConfig, Mailer};
use allot_server::stock_feed::StockFeedConfig;
use allot_server::{AppState, ServerConfig};

pub struct TestApp {
    pub base: String,
    pub engine: Engine,
    mailer: Mailer,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub struct AppOptions {
    pub mail: MailTransportConfig,
    pub ip_rate_limit_per_min: u32,
    /// How long an order holds its units; the server's default (600 s) when `None`.
    pub reservation_ttl_ms: Option<u64>,
    /// How often unsettled payments are looked at; the server's default when `None`.
    pub payment_resolve_interval_ms: Option<u64>,
    /// How live stock streams pace their events.
    pub stock_feed: StockFeedConfig,
    /// How long after delivery a return may be asked for; the engine's default when `None`.
    pub return_window_ms: Option<u64>,
    /// Where online backups may go; the server's default (beside the data directory) when
    /// `None`.
    pub backup_dir: Option<std::path::PathBuf>,
}

impl AppOptions {
    /// Mail as `.eml` files under `<data_dir>/mail`, no per-IP budget.
    pub fn files(data_dir: &Path) -> Self {
        Self {
            mail: MailTransportConfig::Files {
                dir: data_dir.join("mail"),
            },
            ip_rate_limit_per_min: 0,
            reservation_ttl_ms: None,
            payment_resolve_interval_ms: None,
            stock_feed: StockFeedConfig::default(),
            return_window_ms: None,
            backup_dir: None,
        }
    }
}

impl TestApp {
    pub async fn spawn(data_dir: &Path, options: AppOptions) -> TestApp {
        let defaults = EngineConfig::new(data_dir);
        let config = EngineConfig {
            return_window_ms: options
                .return_window_ms
                .unwrap_or(defaults.return_window_ms),
            ..defaults
        };
        let engine = tokio::task::spawn_blocking(move || {
            Engine::open(config, Arc::new(SystemClock::new())).expect("open the engine")
        })
        .await
        .unwrap();
        let mailer = Mailer::start(MailConfig {
            transport: options.mail,
            from: "allot <no-reply@allot.test>".into(),
        })
        .expect("mailer");
        let defaults = ServerConfig::default();
        let state = AppState::new(
            &ServerConfig {
                insecure_cookies: false,
                ip_rate_limit_per_min: options.ip_rate_limit_per_min,
                reservation_ttl_ms: options
                    .reservation_ttl_ms
                    .unwrap_or(defaults.reservation_ttl_ms),
                payment_resolve_interval_ms: options
                    .payment_resolve_interval_ms
                    .unwrap_or(defaults.payment_resolve_interval_ms),
                stock_feed: options.stock_feed,
                backup_dir: options.backup_dir.clone(),
            },
            mailer.clone(),
        );
        let simulator = allot_engine::PaymentSimulator::open(&data_dir.join("payment-simulator"))
            .expect("open the payment simulator");
        let payments = Arc::new(allot_engine::Payments::new(Arc::new(simulator)));
        state.install_engine(engine.clone(), payments);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(allot_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        TestApp {
            base,
            engine,
            mailer,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops serving and closes the engine cleanly, as SIGTERM would.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        self.mailer
            .shutdown(std::time::Duration::from_secs(5))
            .await;
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.close().unwrap())
            .await
            .unwrap();
    }

    /// Creates a product directly in the engine (as an admin would) and answers its id.
    pub async fn product(&self, name: &str, kind: ProductKind, price: u64, stock: u32) -> String {
        let now = self.engine.now_ms();
        let window = (kind == ProductKind::Limited).then_some((now - 60_000, now + 3_600_000));
        let (view, ticket) = self
            .engine
            .create_product(NewProduct {
                kind,
                details: ProductDetails {
                    name: name.into(),
                    description: String::new(),
                    price,
                    currency: "KRW".into(),
                },
                sale_opens_ms: window.map(|w| w.0),
                sale_closes_ms: window.map(|w| w.1),
                per_user_limit: None,
                stock_total: stock,
            })
            .expect("create a product");
        ticket.durable().await.unwrap();
        view.product.id.to_string()
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.base.clone(),
            http: reqwest::Client::new(),
            cookies: BTreeMap::new(),
            bearer: None,
            csrf: true,
        }
    }
}

/// One user agent: its cookies, and whether it sends the CSRF header or a Bearer token.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    /// Send `Authorization: Bearer` (and no cookies) instead of the cookie session.
    pub bearer: Option<String>,
    /// Send `X-CSRF-Token` equal to the `csrf_token` cookie.
    pub csrf: bool,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub set_cookies: Vec<String>,
}

impl Answer {
    /// The problem `type` of an error answer.
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }

    /// The ids of a list page's items; the page must have been read.
    pub fn ids(&self) -> Vec<String> {
        allot_engine::testkit::item_ids(self.status, &self.body)
    }
}

/// An error answer: the status, the problem `type`, and the problem+json envelope.
#[track_caller]
pub fn assert_problem(answer: &Answer, status: u16, kind: &str) {
    assert_eq!(
        (answer.status, answer.kind()),
        (status, kind),
        "{:?}",
        answer.body
    );
    assert_eq!(answer.body["status"], status);
    assert!(answer.body["title"].is_string(), "{:?}", answer.body);
    assert_eq!(
        answer.headers["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
}

pub use allot_engine::testkit::Units;

impl Client {
    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    /// A POST with extra request headers (an `Idempotency-Key`, say).
    pub async fn post_with(&mut self, path: &str, headers: &[(&str, &str)], body: Value) -> Answer {
        self.send_with(Method::POST, path, headers, Some(body))
            .await
    }

    /// `POST /orders` of `body` under `key`.
    pub async fn place(&mut self, key: &str, body: Value) -> Answer {
        self.post_with("/orders", &[("Idempotency-Key", key)], body)
            .await
    }

    /// The product's units; the read must succeed.
    pub async fn stock(&mut self, product: &str) -> Units {
        let read = self.get(&format!("/products/{product}/stock")).await;
        assert_eq!(read.status, 200, "{:?}", read.body);
        Units::of_stock_json(&read.body)
    }

    pub async fn send(&mut self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.send_with(method, path, &[], body).await
    }

    /// Sends `headers` besides the session's own (cookies, CSRF or Bearer).
    pub async fn send_with(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        } else if !self.cookies.is_empty() {
            let header = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header("cookie", header);
            if self.csrf
                && let Some(csrf) = self.cookies.get("csrf_token")
            {
                request = request.header("x-csrf-token", csrf);
            }
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let set_cookies: Vec<String> = headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        for cookie in &set_cookies {
            let pair = cookie.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || cookie.contains("Max-Age=0") {
                    self.cookies.remove(name.trim());
                } else {
                    self.cookies
                        .insert(name.trim().to_string(), value.to_string());
                }
            }
        }
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            set_cookies,
        }
    }
}
