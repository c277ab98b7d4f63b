//! The shop a drop runs on: a running server (`--url`) with the customers' tokens it was given,
//! or one set up offline in a data directory and served by a child `allot serve`; and the few
//! API calls the simulator makes besides the crowd's own.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use allot_engine::{
    Email, Engine, EngineConfig, Role, SignupProfile, SystemClock, hash_password, random_token,
    rfc3339,
};
use allot_server::TokenSigner;

use super::check::Check;

/// The password every account of an offline shop shares (hashed once: argon2 costs tens of ms).
const BENCH_PASSWORD: &str = "Bench-drop-Pa55word!";
/// How long the child server may take to become ready.
const READY_WAIT_MAX: Duration = Duration::from_secs(60);
/// How long it may take to stop after SIGTERM before it is killed.
const STOP_WAIT_MAX: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);
/// Lines of the child server's log kept to show when it fails.
const LOG_LINES_KEPT: usize = 40;
/// How long one request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the sale stays open after the last arrival, so that held units released late go
/// back on sale rather than into a closed one.
const SALE_OPEN_AFTER: Duration = Duration::from_secs(600);

pub struct Shop {
    api: Api,
    /// The customers' access tokens.
    pub customers: Vec<String>,
    server: Option<Server>,
    data_dir: Option<PathBuf>,
    _temporary: Option<tempfile::TempDir>,
}

impl Shop {
    /// A running server at `url`: customers from the tokens file, and the admin's token if
    /// the drop's product is to be made.
    pub fn remote(
        url: &str,
        tokens: Option<&Path>,
        admin_token: Option<&str>,
    ) -> anyhow::Result<Shop> {
        let Some(tokens) = tokens else {
            bail!("--url needs --tokens");
        };
        let text = std::fs::read_to_string(tokens)
            .with_context(|| format!("read the tokens file {}", tokens.display()))?;
        let customers: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(String::from)
            .collect();
        ensure!(
            !customers.is_empty(),
            "the tokens file {} holds no token",
            tokens.display()
        );
        let base = url.trim_end_matches('/').to_string();
        ensure!(
            base.starts_with("http://"),
            "--url must be an http:// URL, got {url}"
        );
        Ok(Shop {
            api: Api::new(base, admin_token.map(String::from), customers[0].clone())?,
            customers,
            server: None,
            data_dir: None,
            _temporary: None,
        })
    }

    /// A shop set up in `data_dir` (or a temporary directory): `customers` verified customers
    /// and an admin made in the engine, then served by a child `allot serve` whose orders hold
    /// their units `hold_seconds`.
    pub async fn offline(
        data_dir: Option<&Path>,
        customers: usize,
        hold_seconds: u64,
    ) -> anyhow::Result<Shop> {
        let (temporary, dir) = match data_dir {
            Some(dir) => (None, dir.to_path_buf()),
            None => {
                let temporary = tempfile::Builder::new()
                    .prefix("allot-bench-")
                    .tempdir()
                    .context("make a temporary directory")?;
                let dir = temporary.path().join("db");
                (Some(temporary), dir)
            }
        };
        let setup_dir = dir.clone();
        let (admin, tokens) =
            tokio::task::spawn_blocking(move || make_accounts(&setup_dir, customers))
                .await
                .context("the offline setup ended")??;
        let serve_dir = dir.clone();
        let server = tokio::task::spawn_blocking(move || Server::start(&serve_dir, hold_seconds))
            .await
            .context("starting the server")??;
        let api = Api::new(server.base.clone(), Some(admin.clone()), admin)?;
        let mut shop = Shop {
            api,
            customers: tokens,
            server: Some(server),
            data_dir: Some(dir),
            _temporary: temporary,
        };
        if let Err(error) = shop.wait_ready().await {
            let _ = shop.stop().await;
            return Err(error);
        }
        Ok(shop)
    }

    pub fn api(&self) -> Api {
        self.api.clone()
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_WAIT_MAX;
        loop {
            if let Some(server) = &mut self.server {
                server.exited()?;
            }
            if self.api.ready().await {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the server was not ready within {READY_WAIT_MAX:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the child server, if there is one, and checks its data directory as `allot db
    /// verify` does. Answers that check (none for a remote server).
    pub async fn stop(&mut self) -> anyhow::Result<Vec<Check>> {
        let Some(server) = self.server.take() else {
            return Ok(Vec::new());
        };
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .context("stopping the server")??;
        let Some(dir) = self.data_dir.clone() else {
            return Ok(Vec::new());
        };
        let inspection = tokio::task::spawn_blocking(move || allot_engine::inspect(&dir))
            .await
            .context("verifying the data directory")?
            .context("open the data directory to verify it")?;
        Ok(vec![Check::new(
            "the data directory verifies clean (allot db verify)",
            inspection.is_clean(),
            inspection.problems.join("; "),
        )])
    }
}

/// Makes the crowd and an admin in the data directory `dir` (created if need be, the server
/// stopped), each with a fresh address so that a directory can serve many runs. Answers the
/// admin's access token and the customers'.
fn make_accounts(dir: &Path, customers: usize) -> anyhow::Result<(String, Vec<String>)> {
    let engine = Engine::open(EngineConfig::new(dir), Arc::new(SystemClock::new()))
        .with_context(|| format!("open the data directory {}", dir.display()))?;
    let made = (|| {
        let run = &random_token()[..8];
        let hash = hash_password(BENCH_PASSWORD);
        let mut users = Vec::with_capacity(customers);
        let mut tickets = Vec::with_capacity(customers + 1);
        for n in 0..customers {
            let email = Email::parse(&format!("crowd-{run}-{n}@bench.allot.test"))
                .context("a bench address")?;
            let (code, _) = engine.request_verification(&email)?;
            let (signup, _) = engine.confirm_verification(&email, &code)?;
            let profile = SignupProfile {
                name: format!("Customer {n}"),
                ..SignupProfile::default()
            };
            let (user, ticket) = engine.register(&signup, hash.clone(), profile)?;
            users.push(user);
            tickets.push(ticket);
        }
        let email = Email::parse(&format!("admin-{run}@bench.allot.test")).context("an address")?;
        let (admin, ticket) = engine.create_admin(&email, hash)?;
        tickets.push(ticket);
        for ticket in tickets {
            ticket.wait()?;
        }
        let signer = TokenSigner::new(engine.keys().jwt_key());
        let now = engine.now_ms();
        let tokens = users
            .into_iter()
            .map(|user| signer.issue(user, Role::Customer, now).token)
            .collect();
        anyhow::Ok((signer.issue(admin, Role::Admin, now).token, tokens))
    })();
    // Closing lets go of the directory before the server takes it.
    engine.close().context("close the data directory")?;
    made
}

/// A child `allot serve` on a free loopback port.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    fn start(dir: &Path, hold_seconds: u64) -> anyhow::Result<Server> {
        let exe = std::env::current_exe().context("find the allot binary")?;
        let mut command = Command::new(exe);
        // The child answers to its flags alone, not to the caller's ALLOT_* settings.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ALLOT_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--ip-rate-limit", "0"])
            .args(["--no-demo-catalog", "--insecure-cookies"])
            .arg("--reservation-ttl")
            .arg(hold_seconds.to_string())
            .arg("--data-dir")
            .arg(dir)
            .env("ALLOT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("start allot serve")?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || keep_lines(stderr, &log));
        }
        let Some(stdout) = child.stdout.take() else {
            bail!("the server's output is not readable");
        };
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(address) = line.strip_prefix("allot listening on ") {
                        break address.trim().to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("the server exited before it listened:\n{}", tail(&log));
                }
            }
        };
        // Drained, so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Server { child, base, log })
    }

    /// An error, with the log's tail, if the server has exited.
    fn exited(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the server exited ({status}):\n{}", tail(&self.log));
        }
        Ok(())
    }

    /// SIGTERM, then a wait for a clean stop (SIGKILL past the limit, reported).
    fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            let pid = libc::pid_t::try_from(self.child.id()).context("the server's pid")?;
            // SAFETY: kill(2) with a pid this process spawned and has not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_WAIT_MAX;
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "the server stopped with {status}:\n{}",
                    tail(&self.log)
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("the server did not stop within {STOP_WAIT_MAX:?}; killed");
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn keep_lines(from: impl std::io::Read, log: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(from).lines().map_while(Result::ok) {
        let mut log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if log.len() == LOG_LINES_KEPT {
            log.pop_front();
        }
        log.push_back(line);
    }
}

fn tail(log: &Mutex<VecDeque<String>>) -> String {
    let log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    log.iter().cloned().collect::<Vec<_>>().join("\n")
}

/// The drop's product and when its sale opens.
#[derive(Debug, Clone)]
pub struct Sale {
    pub product: String,
    pub stock: u64,
    pub limit: u64,
    /// The opening, on this process's monotonic clock.
    pub opens_at: Instant,
    /// A stamp that makes this run's idempotency keys its own.
    pub run: String,
}

/// An answer: its status and body (JSON, or null).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The problem `type`, "" if the answer is not a problem.
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

/// Units of a product as `GET /products/{id}/stock` reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Units {
    pub remaining: u64,
    pub reserved: u64,
    pub sold: u64,
}

impl Units {
    pub fn total(self) -> u64 {
        self.remaining + self.reserved + self.sold
    }
}

/// The API as the simulator uses it: the admin's token to make the product, `reader`'s to
/// watch the stock.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    admin: Option<String>,
    reader: String,
}

impl Api {
    fn new(base: String, admin: Option<String>, reader: String) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(usize::MAX)
            .tcp_nodelay(true)
            .build()
            .context("an HTTP client")?;
        Ok(Api {
            http,
            base,
            admin,
            reader,
        })
    }

    async fn ready(&self) -> bool {
        let url = format!("{}/readyz", self.base);
        matches!(self.http.get(url).send().await, Ok(answer) if answer.status().is_success())
    }

    /// Sends one request with `token`; a transport failure is an error.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.with_context(|| path.to_string())?;
        let status = answer.status().as_u16();
        let bytes = answer.bytes().await.with_context(|| path.to_string())?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// Creates the limited product of the drop: its sale opens `lead` from now.
    pub async fn create_drop(
        &self,
        stock: u32,
        limit: u32,
        lead: Duration,
        arrivals: Duration,
    ) -> anyhow::Result<Sale> {
        let Some(admin) = &self.admin else {
            bail!("making the drop's product needs an admin's token");
        };
        let run = random_token()[..8].to_string();
        let now_ms = wall_ms()?;
        let lead_ms = lead.as_millis() as u64;
        // The API's times are whole seconds: the opening is the next whole second after the lead.
        let opens_ms = (now_ms + lead_ms).div_ceil(1_000) * 1_000;
        let closes_ms = opens_ms + (arrivals + SALE_OPEN_AFTER).as_millis() as u64;
        let body = json!({
            "kind": "limited",
            "name": format!("Bench drop {run}"),
            "description": "allot bench drop",
            "price": 129_000,
            "currency": "KRW",
            "stock_total": stock,
            "per_user_limit": limit,
            "sale_opens_at": rfc3339(opens_ms),
            "sale_closes_at": rfc3339(closes_ms),
        });
        let made = self
            .call(
                reqwest::Method::POST,
                "/api/v1/admin/products",
                admin,
                Some(&body),
            )
            .await?;
        ensure!(
            made.status == 201,
            "creating the drop's product answered {}: {}",
            made.status,
            made.body
        );
        let Some(product) = made.body["id"].as_str() else {
            bail!("the product created has no id: {}", made.body);
        };
        let opens_at = Instant::now() + Duration::from_millis(opens_ms.saturating_sub(now_ms));
        Ok(Sale {
            product: product.to_string(),
            stock: u64::from(stock),
            limit: u64::from(limit),
            opens_at,
            run,
        })
    }

    /// The body of `GET path`, which must answer 200.
    async fn read(&self, path: &str) -> anyhow::Result<Value> {
        let read = self
            .call(reqwest::Method::GET, path, &self.reader, None)
            .await?;
        ensure!(
            read.status == 200,
            "{path} answered {}: {}",
            read.status,
            read.body
        );
        Ok(read.body)
    }

    /// The drop of the existing limited product `product`: its stock, limit and opening as
    /// the API reads them (a sale already open opens now, for the crowd).
    pub async fn existing_drop(&self, product: &str) -> anyhow::Result<Sale> {
        let body = &self.read(&format!("/api/v1/products/{product}")).await?;
        ensure!(
            body["kind"] == "limited" && body["status"] != "closed",
            "{product} is not a limited product on sale or upcoming: {body}"
        );
        let (Some(stock), Some(limit)) = (
            body["stock_total"].as_u64(),
            body["per_user_limit"].as_u64(),
        ) else {
            bail!("{product} has no stock_total or per_user_limit: {body}");
        };
        let opens_ms = body["sale_opens_at"]
            .as_str()
            .and_then(allot_engine::parse_rfc3339)
            .with_context(|| format!("{product} has no sale_opens_at: {body}"))?;
        let wait = Duration::from_millis(opens_ms.saturating_sub(wall_ms()?));
        Ok(Sale {
            product: product.to_string(),
            stock,
            limit,
            opens_at: Instant::now() + wait,
            run: random_token()[..8].to_string(),
        })
    }

    /// The product's units now.
    pub async fn stock(&self, product: &str) -> anyhow::Result<Units> {
        let path = format!("/api/v1/products/{product}/stock");
        let body = self.read(&path).await?;
        let count = |field: &str| {
            body[field]
                .as_u64()
                .with_context(|| format!("{path}: {field} is not a count: {body}"))
        };
        Ok(Units {
            remaining: count("remaining")?,
            reserved: count("reserved")?,
            sold: count("sold")?,
        })
    }

    /// Every order of the customer with `token`, all pages.
    pub async fn orders_of(&self, token: &str) -> anyhow::Result<Vec<Value>> {
        let mut orders = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(cursor) => format!("/api/v1/orders?limit=100&cursor={cursor}"),
                None => "/api/v1/orders?limit=100".to_string(),
            };
            let page = self.call(reqwest::Method::GET, &path, token, None).await?;
            ensure!(
                page.status == 200,
                "{path} answered {}: {}",
                page.status,
                page.body
            );
            if let Some(items) = page.body["items"].as_array() {
                orders.extend(items.iter().cloned());
            }
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok(orders),
            }
        }
    }
}

/// The wall clock, in ms since the Unix epoch (the API's times).
fn wall_ms() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_millis() as u64)
}
