//! `GET /metrics`: what the shop is doing, in the Prometheus text format (0.0.4), for an
//! operator's dashboards and alerts.
//!
//! Two kinds of figures. What happens to requests is counted as it happens, by one middleware
//! ([`track`]): requests and their latency per route and status, and, read from the same
//! answers, placements and payments by outcome (a problem answer says its `type` to the
//! middleware through a response extension, [`ProblemKind`]). What the shop holds is read at
//! each scrape ([`ShopCollector`]): the units of every product whose sale is open, the sagas
//! under way by status, the log, the checkpoints, stream subscribers, the mail queue, and the
//! size of the hot tier. Nothing is added to the take path, and a scrape takes no lock a
//! placement needs for longer than a read of the catalog does.
//!
//! Labels are bounded: routes are the router's templates (`/api/v1/orders/{id}`), never the
//! path sent, and an unmatched path is `unmatched`.

use std::sync::Weak;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use allot_engine::{Engine, HistogramSnapshot, ProductStatus};

use crate::AppState;

/// Products whose units a scrape reports at most (the newest first are not preferred: the
/// first by id). A shop with more open sales than this reports the rest in nothing but the
/// aggregate figures.
pub const METRICS_PRODUCTS_MAX: usize = 1_000;

/// The request latency histogram's buckets, in seconds: 100 µs doubling to about 3.3 s.
const LATENCY_BUCKET_FIRST_S: f64 = 0.000_1;
const LATENCY_BUCKETS: u16 = 16;

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// The problem `type` of an answer, put in its extensions by `Problem`'s `IntoResponse` so
/// the middleware can count refusals by reason without reading the body.
#[derive(Debug, Clone, Copy)]
pub struct ProblemKind(pub &'static str);

/// In the extensions of a placement's answer that repeated an order placed before under the
/// same Idempotency-Key: counted as `replayed`, not as a new placement.
#[derive(Debug, Clone, Copy)]
pub struct Replayed;

type Labels = Vec<(&'static str, String)>;

/// A label value of the figures counted per request, made without allocating: the request
/// path's template, the method and the problem type are `'static` (templates are interned
/// once, [`Metrics::template`]), the status a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Value {
    Text(&'static str),
    Status(u16),
}

impl EncodeLabelValue for Value {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Value::Text(text) => text.encode(encoder),
            Value::Status(status) => status.encode(encoder),
        }
    }
}

/// Route, method, status.
type RequestLabels = [(&'static str, Value); 3];
/// Route, method.
type LatencyLabels = [(&'static str, Value); 2];
/// Outcome, reason.
type OutcomeLabels = [(&'static str, Value); 2];

/// The method as a `'static` label: the standard ones by name, any other as `other` (a
/// client's invented method must not grow the label set).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The figures counted as they happen, and the registry that renders them with the shop's.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    placements: Family<OutcomeLabels, Counter>,
    payments: Family<OutcomeLabels, Counter>,
    /// The route templates seen, each leaked once as a `'static` label (the router has a
    /// fixed few).
    templates: parking_lot::RwLock<std::collections::HashSet<&'static str>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The registry, with the shop's figures read from `state` at each scrape.
    pub fn new(state: ShopCollector) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "allot_http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let latency: Family<LatencyLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "allot_http_request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by route template and method",
            latency.clone(),
        );
        let placements = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "allot_placements",
            "POST /orders answered: outcome placed, replayed (the same Idempotency-Key again) or \
             refused, with the problem type as reason",
            placements.clone(),
        );
        let payments = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "allot_payments",
            "POST /orders/{id}/payment answered: outcome paid or refused, with the problem type \
             as reason (payment_declined, payment_timeout, card_limit_exceeded, ...)",
            payments.clone(),
        );
        registry.register_collector(Box::new(state));
        Self {
            registry,
            requests,
            latency,
            placements,
            payments,
            templates: parking_lot::RwLock::default(),
        }
    }

    /// The exposition text of everything registered.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; a collector's own error leaves what it wrote.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// `template` as a `'static` label: the same one every time, leaked the first time.
    fn template(&self, template: &str) -> &'static str {
        if let Some(known) = self.templates.read().get(template) {
            return known;
        }
        let mut templates = self.templates.write();
        if let Some(known) = templates.get(template) {
            return known;
        }
        let leaked: &'static str = Box::leak(template.to_owned().into_boxed_str());
        templates.insert(leaked);
        leaked
    }

    fn observe(
        &self,
        route: &'static str,
        method: &'static str,
        status: u16,
        seconds: f64,
        problem: Option<&'static str>,
        replayed: bool,
    ) {
        let (route, method) = (Value::Text(route), Value::Text(method));
        self.requests
            .get_or_create(&[
                ("route", route),
                ("method", method),
                ("status", Value::Status(status)),
            ])
            .inc();
        self.latency
            .get_or_create(&[("route", route), ("method", method)])
            .observe(seconds);
        if method != Value::Text("POST") {
            return;
        }
        let (family, success) = match route {
            Value::Text("/api/v1/orders") => (&self.placements, "placed"),
            Value::Text("/api/v1/orders/{id}/payment") => (&self.payments, "paid"),
            _ => return,
        };
        let (outcome, reason) = match problem {
            None if replayed => ("replayed", ""),
            None if status < 400 => (success, ""),
            reason => ("refused", reason.unwrap_or("unknown")),
        };
        family
            .get_or_create(&[
                ("outcome", Value::Text(outcome)),
                ("reason", Value::Text(reason)),
            ])
            .inc();
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        LATENCY_BUCKET_FIRST_S,
        2.0,
        LATENCY_BUCKETS,
    ))
}

/// Counts every request: its route template, method, status and latency.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let metrics = state.metrics();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |path| metrics.template(path.as_str()));
    let method = method_label(request.method());
    let response = next.run(request).await;
    let problem = response
        .extensions()
        .get::<ProblemKind>()
        .map(|kind| kind.0);
    let replayed = response.extensions().get::<Replayed>().is_some();
    metrics.observe(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
        problem,
        replayed,
    );
    response
}

/// `GET /metrics`: the exposition text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = tokio::task::spawn_blocking(move || state.metrics().render())
        .await
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

/// Reads the shop's figures at each scrape. It holds the server's state weakly: the state
/// holds the registry that holds it.
pub struct ShopCollector {
    shared: Weak<crate::Shared>,
}

impl ShopCollector {
    pub(crate) fn new(shared: Weak<crate::Shared>) -> Self {
        Self { shared }
    }
}

impl std::fmt::Debug for ShopCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopCollector").finish_non_exhaustive()
    }
}

/// One gauge or counter family with its samples, encoded in one go.
fn encode_family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    let Some((_, first)) = samples.peek() else {
        return Ok(());
    };
    let mut family = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn one<M>(metric: M) -> [(Labels, M); 1] {
    [(Vec::new(), metric)]
}

impl Collector for ShopCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        encode_family(
            &mut encoder,
            "allot_stream_subscribers",
            "Live stock streams open now",
            one(ConstGauge::new(shared.stock_feed.subscriber_count() as i64)),
        )?;
        encode_family(
            &mut encoder,
            "allot_mail_undelivered",
            "Mails queued or being sent, not yet delivered or given up",
            one(ConstGauge::new(shared.mailer.undelivered() as i64)),
        )?;
        if let Some(rss) = resident_memory_bytes() {
            encode_family(
                &mut encoder,
                "allot_resident_memory_bytes",
                "The process's resident memory (the hot tier, sled's cache and the rest)",
                one(ConstGauge::new(rss)),
            )?;
        }
        match shared.ready.get() {
            Some(ready) => encode_engine(&mut encoder, &ready.engine),
            None => Ok(()),
        }
    }
}

/// A histogram the engine keeps (its own buckets), as one Prometheus histogram.
fn encode_histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    histogram: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(histogram.sum, histogram.count, &histogram.buckets, None)
}

fn encode_engine(encoder: &mut DescriptorEncoder, engine: &Engine) -> Result<(), std::fmt::Error> {
    let histograms = engine.log_histograms();
    encode_histogram(
        encoder,
        "allot_log_batch_records",
        "Records per batch the log writer made durable (one flush each)",
        None,
        &histograms.batch_records,
    )?;
    encode_histogram(
        encoder,
        "allot_log_flush",
        "Time per durable flush of a log batch (sled's flush and its fsyncs)",
        Some(&Unit::Seconds),
        &histograms.flush_seconds,
    )?;
    let mut open_sales = engine.list_products(None, METRICS_PRODUCTS_MAX, None, None);
    open_sales.retain(|view| matches!(view.status, ProductStatus::OnSale | ProductStatus::SoldOut));
    let units = open_sales.iter().flat_map(|view| {
        let id = view.product.id.to_string();
        let counts = view.counts;
        [
            ("remaining", counts.available),
            ("reserved", counts.reserved),
            ("sold", counts.sold),
        ]
        .map(|(state, value)| {
            (
                vec![("product", id.clone()), ("state", state.to_string())],
                ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)),
            )
        })
    });
    encode_family(
        encoder,
        "allot_stock_units",
        "Units of each product whose sale is open (on sale or sold out), by state",
        units,
    )?;
    let sagas = engine
        .live_orders_by_status()
        .into_iter()
        .map(|(status, count)| {
            (
                vec![("status", status.as_str().to_string())],
                ConstGauge::new(count as i64),
            )
        });
    encode_family(
        encoder,
        "allot_orders_live",
        "Orders in the hot tier (sagas under way), by status",
        sagas,
    )?;
    let stats = engine.stats();
    encode_family(
        encoder,
        "allot_log_records_written",
        "Records the write-ahead log has made durable since the server started",
        one(ConstCounter::new(stats.wal.records_written)),
    )?;
    encode_family(
        encoder,
        "allot_log_batches_written",
        "Batches (one fsync each) the write-ahead log has written since the server started",
        one(ConstCounter::new(stats.wal.batches_written)),
    )?;
    encode_family(
        encoder,
        "allot_log_durable_seq",
        "The sequence number of the newest durable record",
        one(ConstGauge::new(
            i64::try_from(stats.wal.durable_seq).unwrap_or(i64::MAX),
        )),
    )?;
    let hot = [
        ("skus", stats.skus),
        ("reservations", stats.reservations),
        ("orders", stats.live_orders),
    ]
    .map(|(kind, count)| {
        (
            vec![("kind", kind.to_string())],
            ConstGauge::new(count as i64),
        )
    });
    encode_family(
        encoder,
        "allot_hot_tier_entries",
        "What the hot tier holds in memory, by kind",
        hot,
    )?;
    encode_family(
        encoder,
        "allot_orders_stored",
        "Orders in the cold tier (every order ever placed and not pruned)",
        one(ConstGauge::new(stats.stored_orders as i64)),
    )?;
    let health = engine.checkpoint_health();
    encode_family(
        encoder,
        "allot_checkpoint_failures_in_a_row",
        "Checkpoints that failed since the last success (0: the log is being pruned)",
        one(ConstGauge::new(i64::from(health.failures_in_a_row))),
    )?;
    if let Some(ms) = health.last_ok_duration_ms {
        encode_family(
            encoder,
            "allot_checkpoint_last_duration_seconds",
            "How long the newest successful checkpoint took",
            one(ConstGauge::new(ms as f64 / 1_000.0)),
        )?;
    }
    Ok(())
}

/// The resident set size, from `/proc/self/statm` (Linux); `None` elsewhere.
fn resident_memory_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The page size of the machines allot runs on; statm counts in pages.
    const PAGE_BYTES: i64 = 4_096;
    Some(pages.saturating_mul(PAGE_BYTES))
}
