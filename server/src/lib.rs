//! The thin HTTP layer of allot: routes, extractors and JSON <-> engine calls. No business
//! rule lives here; a handler parses, calls one engine method, and maps the answer.

pub mod auth;
mod extract;
mod json;
pub mod mail;
mod metrics;
pub mod notifier;
mod openapi;
pub mod problem;
mod routes;
pub mod stock_feed;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use allot_engine::Engine;
pub use auth::{CookiePolicy, IpBudget, PasswordPool, TokenSigner};
pub use mail::Mailer;
pub use problem::Problem;

/// Largest request body accepted.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Longest a request may take before it is answered 408.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Logins (argon2 checks) that may wait for the password pool before more are refused.
pub const PASSWORD_QUEUE_MAX: usize = 256;

/// How the HTTP layer behaves; parsed once in `main`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Cookies without `Secure`, for plain-HTTP local use.
    pub insecure_cookies: bool,
    /// Requests per minute and IP on the auth endpoints; 0 turns the budget off.
    pub ip_rate_limit_per_min: u32,
    /// How long a placed order holds its units before it expires unpaid.
    pub reservation_ttl_ms: u64,
    /// How often unsettled payments (lost answers, due refunds) are looked at.
    pub payment_resolve_interval_ms: u64,
    /// How the live stock streams pace their events when many listen.
    pub stock_feed: stock_feed::StockFeedConfig,
    /// Where online backups may be written (`POST /admin/backups`); `None`: `backups/` beside
    /// the data directory.
    pub backup_dir: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            insecure_cookies: false,
            ip_rate_limit_per_min: 60,
            reservation_ttl_ms: 600_000,
            payment_resolve_interval_ms: 500,
            stock_feed: stock_feed::StockFeedConfig::default(),
            backup_dir: None,
        }
    }
}

/// What every handler can reach. The engine arrives once recovery is done; until then the
/// server answers `/healthz` but refuses work with 503 `not_ready`.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

struct Shared {
    /// `/metrics`: what requests did, and a collector that reads the rest at each scrape.
    metrics: metrics::Metrics,
    config: ServerConfig,
    ready: OnceLock<ReadyParts>,
    mailer: Mailer,
    cookies: CookiePolicy,
    ip_budget: IpBudget,
    passwords: PasswordPool,
    stock_feed: Arc<stock_feed::StockFeed>,
    /// Tells background tasks the server is stopping.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The payment resolver and the notifier, awaited when serving ends so they let go of
    /// the engine.
    background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// What exists only once the engine is open.
struct ReadyParts {
    engine: Engine,
    signer: TokenSigner,
    payments: Arc<allot_engine::Payments>,
}

impl AppState {
    /// Where online backups may go: `--backup-dir`, else `backups/` beside `data_dir`; as an
    /// absolute path.
    pub fn backup_dir(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        let chosen = match &self.shared.config.backup_dir {
            Some(dir) => dir.clone(),
            None => {
                let data_dir = std::path::absolute(data_dir).unwrap_or(data_dir.to_path_buf());
                data_dir
                    .parent()
                    .map_or_else(|| data_dir.join("backups"), |p| p.join("backups"))
            }
        };
        std::path::absolute(&chosen).unwrap_or(chosen)
    }

    pub fn new(config: &ServerConfig, mailer: Mailer) -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            shared: Arc::new_cyclic(|shared| Shared {
                metrics: metrics::Metrics::new(metrics::ShopCollector::new(shared.clone())),
                config: config.clone(),
                ready: OnceLock::new(),
                mailer,
                cookies: CookiePolicy {
                    secure: !config.insecure_cookies,
                },
                ip_budget: IpBudget::new(config.ip_rate_limit_per_min),
                passwords: PasswordPool::new(workers, PASSWORD_QUEUE_MAX),
                stock_feed: Arc::new(stock_feed::StockFeed::new(config.stock_feed)),
                stopping: tokio::sync::watch::channel(false).0,
                background: Default::default(),
            }),
        }
    }

    /// Marks the server ready and starts settling unfinished payments (at once: after a
    /// restart, attempts whose answer was lost are asked again) and the email notifier. Call
    /// it inside the runtime.
    /// Answers false if an engine was already installed.
    pub fn install_engine(&self, engine: Engine, payments: Arc<allot_engine::Payments>) -> bool {
        let signer = TokenSigner::new(engine.keys().jwt_key());
        // Before the first request: a notifier new to this directory starts at its end.
        let notifier_offset = match notifier::start_offset(&engine) {
            Ok(offset) => Some(offset),
            Err(error) => {
                tracing::error!(%error, "notifier: no offset; no order mail is sent");
                None
            }
        };
        let installed = self
            .shared
            .ready
            .set(ReadyParts {
                engine: engine.clone(),
                signer,
                payments: payments.clone(),
            })
            .is_ok();
        if installed {
            let notifier = notifier_offset.map(|offset| {
                tokio::spawn(notifier::run(
                    engine.clone(),
                    self.shared.mailer.clone(),
                    offset,
                    self.shared.stopping.subscribe(),
                ))
            });
            let mut stopping = self.shared.stopping.subscribe();
            let interval =
                Duration::from_millis(self.shared.config.payment_resolve_interval_ms.max(1));
            let resolver = tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopping.wait_for(|stop| *stop) => return,
                    }
                    let (engine, payments) = (engine.clone(), payments.clone());
                    let settled = tokio::task::spawn_blocking(move || {
                        (!engine.is_failed()).then(|| engine.resolve_payments(&payments))
                    })
                    .await;
                    if !matches!(settled, Ok(Some(_))) {
                        return;
                    }
                }
            });
            self.shared
                .background
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(std::iter::once(resolver).chain(notifier));
        }
        installed
    }

    /// The payment driver, once ready.
    pub(crate) fn payments(&self) -> Result<Arc<allot_engine::Payments>, Problem> {
        self.shared
            .ready
            .get()
            .map(|r| r.payments.clone())
            .ok_or_else(Problem::not_ready)
    }

    pub fn engine(&self) -> Option<&Engine> {
        self.shared.ready.get().map(|r| &r.engine)
    }

    pub fn mailer(&self) -> &Mailer {
        &self.shared.mailer
    }

    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.shared.metrics
    }
}

/// Extracts the engine, or answers 503 `not_ready` while it is still recovering.
pub struct Ready(pub Engine);

impl<S> FromRequestParts<S> for Ready
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        AppState::from_ref(state)
            .engine()
            .cloned()
            .map(Ready)
            .ok_or_else(Problem::not_ready)
    }
}

pub fn router(state: AppState) -> Router {
    routes::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            await_log_room,
        ))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(REQUEST_TIMEOUT_MS),
        ))
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        // Outside the others, so it counts what the client was answered.
        .layer(axum::middleware::from_fn_with_state(state, metrics::track))
        .layer(TraceLayer::new_for_http().on_failure(log_failure))
}

/// A request that may write waits here, without holding an async worker, while the log's
/// queue is full (a slow disk): the engine's own wait for room blocks its thread, which on an
/// async worker would stall `/healthz`, reads and the stock stream with it. Reads pass at once.
/// Whatever the log answers (failed, shutting down) is left to the handler to say.
async fn await_log_room(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let reads_only = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if !reads_only && let Some(engine) = state.engine() {
        let _ = engine.log_room().await;
    }
    next.run(request).await
}

/// tower-http logs every 5xx as an error. A 503 (`not_ready`, `busy`, `shutting_down`, and
/// `/readyz` while the engine recovers or after its log failed) is an answer the server chose
/// and a client retries: during a login burst or a probe of a recovering server it would flood
/// the log, so it is logged at debug. The faults behind some of them are logged as errors where
/// they arise (the log writer's failure once, with its cause), and so is every 500.
fn log_failure(
    failure: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass;
    let latency_ms = latency.as_millis();
    match failure {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(latency_ms, "answered 503");
        }
        other => tracing::error!(classification = %other, latency_ms, "response failed"),
    }
}

/// Longest body of a framework error that is kept as a problem's detail.
const BARE_ERROR_DETAIL_BYTES_MAX: usize = 1_024;

/// Errors that did not come from a handler (a method not allowed, a timeout, a path that does
/// not decode) arrive as plain text or empty: they leave as problem+json like every other.
async fn problem_for_bare_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, BARE_ERROR_DETAIL_BYTES_MAX)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let detail = if detail.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        detail
    };
    let mut problem = Problem::of_status(status, detail).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    problem
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
/// `GET /metrics` alone, without a login, for an address only Prometheus reaches (the loopback
/// or a private network): scrapers hold no session, and the shop's own port keeps the admin
/// check.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", axum::routing::get(metrics::metrics))
        .fallback(routes::not_found)
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Live stock streams never end by themselves; close them when the stop begins, or the
    // graceful shutdown would wait for their clients forever.
    let feed = state.shared.stock_feed.clone();
    let stopping = state.shared.stopping.clone();
    let shutdown = async move {
        shutdown.await;
        feed.close();
        let _ = stopping.send(true);
    };
    let shared = state.shared.clone();
    // Peer addresses feed the per-IP budget of the auth endpoints.
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    // Background work holds the engine; it ends before serving is over, so whoever closes the
    // engine next has it to themselves.
    let _ = shared.stopping.send(true);
    let background =
        std::mem::take(&mut *shared.background.lock().unwrap_or_else(|e| e.into_inner()));
    for task in background {
        let _ = task.await;
    }
    Ok(())
}
