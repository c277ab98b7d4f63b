//! Operations: `/readyz` says when the checkpoints fail (the log is then not pruned), while
//! the shop stays ready and keeps selling; `/metrics` counts what requests did and reads what
//! the shop holds, in text a Prometheus parser reads whole.

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use serde_json::Value;

use crate::support::app::{Client, TestApp, assert_problem};
use crate::support::shop::{self, CARD_APPROVED, CARD_DECLINED, Shop, pay};
use allot_engine::ProductKind;
use allot_engine::testkit::{self, internals::fail_next_checkpoints};

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = reqwest::get(format!("{}/readyz", app.base))
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_failing_checkpoint_until_one_succeeds() {
    let (_dir, app) = shop::spawn().await;
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checkpoint"]["status"], "ok", "{ready}");

    let engine = app.engine.clone();
    fail_next_checkpoints(&engine, 1);
    let failed = tokio::task::spawn_blocking(move || engine.snapshot_now())
        .await
        .unwrap();
    assert!(failed.is_err(), "{failed:?}");
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 200, "still ready: writes go on, nothing is lost");
    let checkpoint = &ready["checkpoint"];
    assert_eq!(checkpoint["status"], "failing", "{ready}");
    assert_eq!(checkpoint["failures_in_a_row"], 1, "{ready}");
    assert!(
        checkpoint["error"]
            .as_str()
            .is_some_and(|e| e.contains("planned by the test")),
        "{ready}"
    );
    assert!(checkpoint["failing_since"].is_string(), "{ready}");

    let engine = app.engine.clone();
    let covered = tokio::task::spawn_blocking(move || engine.snapshot_now())
        .await
        .unwrap()
        .expect("a checkpoint once storage takes writes");
    let (_, ready) = readyz(&app).await;
    assert_eq!(ready["checkpoint"]["status"], "ok", "{ready}");
    assert_eq!(ready["checkpoint"]["last_seq"], covered, "{ready}");
    assert!(ready["checkpoint"].get("error").is_none(), "{ready}");
    app.stop().await;
}

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

/// `GET /metrics` as `client`, read by a strict parser of the Prometheus text format (a
/// grammar: a line it cannot read fails the parse).
async fn scrape(client: &Client) -> Exposition {
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", client.base))
        .bearer_auth(client.cookies["access_token"].clone())
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    parse_prometheus(&text).unwrap_or_else(|e| panic!("not Prometheus text ({e:?}):\n{text}"))
}

/// The value of the sample of `family` with exactly these `labels` (counters and gauges).
fn value(scraped: &Exposition, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let family = scraped.families.get(family)?;
    family
        .iter_samples()
        .find(|sample| {
            let set = sample.get_labelset().expect("labels");
            set.iter().count() == labels.len()
                && labels
                    .iter()
                    .all(|(name, value)| set.get_label_value(name) == Some(*value))
        })
        .map(|sample| match &sample.value {
            PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
            PrometheusValue::Counter(counter) => counter.value.as_f64(),
            other => panic!("{} is not a single value: {other:?}", family.family_name),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_placements_and_payments_and_read_the_shop_for_admins_only() {
    let mut shop = Shop::open().await;
    let drop = shop
        .app
        .product("Aurora Sneaker", ProductKind::Limited, 259_000, 3)
        .await;

    // Admins only on the shop's address.
    let answer = reqwest::get(format!("{}/metrics", shop.app.base))
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let answer = reqwest::Client::new()
        .get(format!("{}/metrics", shop.app.base))
        .bearer_auth(shop.min_ji.cookies["access_token"].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);

    let before = scrape(&shop.admin).await;
    let placed = |scraped: &Exposition| {
        value(
            scraped,
            "allot_placements_total",
            &[("outcome", "placed"), ("reason", "")],
        )
    };
    assert_eq!(placed(&before), None, "nothing placed yet");
    assert_eq!(
        value(
            &before,
            "allot_stock_units",
            &[("product", &drop), ("state", "remaining")]
        ),
        Some(3.0)
    );

    // Two placements, a refusal, a paid order and a declined card.
    let body = |quantity| testkit::order_json(&[(drop.as_str(), quantity)]);
    let first = shop.min_ji.place("first", body(1)).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let second = shop.ji_woo.place("second", body(1)).await;
    assert_eq!(second.status, 201, "{:?}", second.body);
    // The same key again answers the same order: a replay, not a placement.
    let again = shop.ji_woo.place("second", body(1)).await;
    assert_eq!(again.body["id"], second.body["id"]);
    assert_problem(&shop.ji_woo.place("greedy", body(5)).await, 409, "sold_out");
    let paid = pay(
        &mut shop.min_ji,
        first.body["id"].as_str().unwrap(),
        CARD_APPROVED,
    )
    .await;
    assert_eq!(paid.status, 200, "{:?}", paid.body);
    let declined = pay(
        &mut shop.ji_woo,
        second.body["id"].as_str().unwrap(),
        CARD_DECLINED,
    )
    .await;
    assert_problem(&declined, 402, "payment_declined");

    let after = scrape(&shop.admin).await;
    assert_eq!(placed(&after), Some(2.0));
    assert_eq!(
        value(
            &after,
            "allot_placements_total",
            &[("outcome", "replayed"), ("reason", "")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "allot_placements_total",
            &[("outcome", "refused"), ("reason", "sold_out")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "allot_payments_total",
            &[("outcome", "paid"), ("reason", "")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "allot_payments_total",
            &[("outcome", "refused"), ("reason", "payment_declined")]
        ),
        Some(1.0)
    );
    let requests = |status: &str| {
        value(
            &after,
            "allot_http_requests_total",
            &[
                ("route", "/api/v1/orders"),
                ("method", "POST"),
                ("status", status),
            ],
        )
    };
    // Two placements and the replay answered 201.
    assert_eq!((requests("201"), requests("409")), (Some(3.0), Some(1.0)));
    let latency = &after.families["allot_http_request_duration_seconds"];
    assert_eq!(latency.family_type, PrometheusType::Histogram);
    assert!(
        latency.iter_samples().any(|sample| {
            let labels = sample.get_labelset().expect("labels");
            labels.get_label_value("route") == Some("/api/v1/orders/{id}/payment")
                && matches!(&sample.value, PrometheusValue::Histogram(h) if h.count == Some(2))
        }),
        "no latency histogram of the two payments"
    );
    // What the shop holds, read at the scrape.
    let units = |state: &str| {
        value(
            &after,
            "allot_stock_units",
            &[("product", &drop), ("state", state)],
        )
    };
    assert_eq!(
        (units("remaining"), units("reserved"), units("sold")),
        (Some(1.0), Some(1.0), Some(1.0))
    );
    assert_eq!(
        value(&after, "allot_orders_live", &[("status", "paid")]),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "allot_orders_live", &[("status", "payment_failed")]),
        Some(1.0)
    );
    let written = value(&after, "allot_log_records_written_total", &[]).unwrap();
    assert!(written > value(&before, "allot_log_records_written_total", &[]).unwrap());
    // The writer's histograms: read before the counters at a scrape, so never ahead of them.
    let histogram = |name: &str| {
        let family = &after.families[name];
        assert_eq!(family.family_type, PrometheusType::Histogram, "{name}");
        family
            .iter_samples()
            .find_map(|sample| match &sample.value {
                PrometheusValue::Histogram(h) => {
                    Some((h.count, h.sum.as_ref().map(|s| s.as_f64())))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name} has no histogram"))
    };
    let batches = value(&after, "allot_log_batches_written_total", &[]).unwrap();
    let (batch_count, records) = histogram("allot_log_batch_records");
    let batch_count = batch_count.unwrap() as f64;
    assert!(
        batch_count >= 1.0 && batch_count <= batches,
        "{batch_count} of {batches}"
    );
    assert!(records.unwrap() >= batch_count && records.unwrap() <= written);
    let (flushes, seconds) = histogram("allot_log_flush_seconds");
    assert!(flushes.unwrap() >= 1 && seconds.unwrap() > 0.0);
    assert_eq!(
        value(&after, "allot_checkpoint_failures_in_a_row", &[]),
        Some(0.0)
    );
    assert_eq!(value(&after, "allot_stream_subscribers", &[]), Some(0.0));
    assert!(value(&after, "allot_resident_memory_bytes", &[]).unwrap() > 0.0);
    shop.close().await;
}

/// `POST /admin/backups`: an admin's online copy into the backup directory, refused for a
/// name that is not one plain directory name, for one that exists, and for a customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_takes_an_online_backup_once_per_path() {
    let backups = tempfile::tempdir().unwrap();
    let mut shop = Shop::builder().backup_dir(backups.path()).open().await;
    let to = backups.path().join("nightly");
    let body = serde_json::json!({ "name": "nightly" });
    assert_problem(
        &shop.min_ji.post("/admin/backups", body.clone()).await,
        403,
        "forbidden",
    );
    assert!(!to.exists());
    assert_problem(
        &shop
            .admin
            .post("/admin/backups", serde_json::json!({ "name": "../escape" }))
            .await,
        422,
        "invalid_backup_path",
    );
    assert!(!backups.path().join("../escape").exists());
    let made = shop.admin.post("/admin/backups", body.clone()).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.body["clean"], true, "{:?}", made.body);
    assert!(made.body["last_seq"].as_u64().unwrap() > 0);
    assert!(to.join("store").is_dir() && to.join("keys").is_file());
    let inspection = allot_engine::inspect(&to).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
    assert_problem(
        &shop.admin.post("/admin/backups", body).await,
        409,
        "backup_exists",
    );
    shop.close().await;
}
