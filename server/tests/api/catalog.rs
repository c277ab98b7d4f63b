//! The catalog through HTTP, like an admin and a shopper: creation and its refusals, who may
//! manage products, versions, restocks, reads with live stock, list filters and pages. The sale
//! window's exact edges need a clock the test moves, so that one test drives the engine directly.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{Answer, Client, TestApp, assert_problem};
use crate::support::shop::{self, spawn};
use allot_engine::{
    Engine, EngineConfig, ManualClock, NewProduct, ProductDetails, ProductId, ProductKind,
    ProductStatus, Seq, Sku, UserId, rfc3339,
};

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
/// How long a reservation made by a test holds its units: longer than any test runs.
const RESERVATION_TTL_MS: u64 = 10 * MINUTE_MS;

// ----- helpers ---------------------------------------------------------------------------

/// An admin logged in with cookies (and the CSRF header).
async fn admin(app: &TestApp) -> Client {
    shop::admin(app, &shop::password_hash().await).await
}

/// A verified customer, logged in.
async fn customer(app: &TestApp, email: &str) -> Client {
    shop::customer(app, email, "Kim Min-ji", &shop::password_hash().await).await
}

/// A client that sends only `Authorization: Bearer` with `session`'s access token.
fn bearer_of(app: &TestApp, session: &Client) -> Client {
    let mut client = app.client();
    client.bearer = Some(session.cookies["access_token"].clone());
    client
}

fn general(name: &str, stock: u32) -> Value {
    json!({ "name": name, "price": 39000, "kind": "general", "stock_total": stock })
}

fn limited(name: &str, opens_ms: u64, closes_ms: u64, stock: u32) -> Value {
    json!({
        "name": name,
        "price": 259000,
        "kind": "limited",
        "sale_opens_at": rfc3339(opens_ms),
        "sale_closes_at": rfc3339(closes_ms),
        "stock_total": stock,
    })
}

/// Creates a product through the API and answers its id.
async fn create(admin: &mut Client, body: Value) -> String {
    let created = admin.post("/admin/products", body).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    created.body["id"].as_str().unwrap().to_string()
}

async fn patch(client: &mut Client, id: &str, body: Value) -> Answer {
    client
        .send(Method::PATCH, &format!("/admin/products/{id}"), Some(body))
        .await
}

fn sku_of(id: &str) -> Sku {
    Sku(id.parse::<ProductId>().unwrap().0)
}

/// What a refused request must leave as it was: the products and the log.
fn footprint(app: &TestApp) -> (usize, Seq) {
    let products = app.engine.list_products(None, 10_000, None, None).len();
    (products, app.engine.durable_seq())
}

/// Sends `body` as it is (not necessarily JSON) with `token` as Bearer.
async fn post_raw(app: &TestApp, token: &str, path: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1{path}", app.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

// ----- creation ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_products_with_every_field() {
    let (_dir, app) = spawn().await;
    let mut admin = admin(&app).await;
    let now = app.engine.now_ms();
    let (opens, closes) = (now - MINUTE_MS, now + HOUR_MS);

    let created = admin
        .post(
            "/admin/products",
            json!({
                "name": "  Aurora Sneaker  ",
                "description": "Hand-stitched, numbered pairs.",
                "price": 259000,
                "currency": "USD",
                "kind": "limited",
                "sale_opens_at": rfc3339(opens),
                "sale_closes_at": rfc3339(closes),
                "per_user_limit": 2,
                "stock_total": 50,
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert!(id.parse::<ProductId>().is_ok(), "{id} is not a prd_… id");
    assert_eq!(
        created.body,
        json!({
            "id": id,
            "name": "Aurora Sneaker",
            "description": "Hand-stitched, numbered pairs.",
            "price": 259000,
            "currency": "USD",
            "kind": "limited",
            "sale_opens_at": rfc3339(opens),
            "sale_closes_at": rfc3339(closes),
            "per_user_limit": 2,
            "stock_total": 50,
            "remaining": 50,
            "status": "on_sale",
            "version": 1,
        })
    );
    // What was created is what anyone reads.
    let read = app.client().get(&format!("/products/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, created.body);

    // Defaults: KRW, an empty description; a general product has no window and no limit.
    let tote = admin
        .post("/admin/products", general("Canvas Tote", 0))
        .await;
    assert_eq!(tote.status, 201, "{:?}", tote.body);
    assert_eq!(tote.body["currency"], "KRW");
    assert_eq!(tote.body["description"], "");
    assert_eq!(tote.body["kind"], "general");
    for absent in ["sale_opens_at", "sale_closes_at", "per_user_limit"] {
        assert!(
            tote.body.get(absent).is_none(),
            "{absent} in {:?}",
            tote.body
        );
    }
    assert_eq!(
        (&tote.body["stock_total"], &tote.body["remaining"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(tote.body["status"], "sold_out");

    // Any RFC 3339 offset is accepted and answered in UTC.
    let offset = admin
        .post(
            "/admin/products",
            json!({
                "name": "New Year Drop", "price": 1000, "kind": "limited", "stock_total": 1,
                "sale_opens_at": "2030-01-01T09:00:00+09:00",
                "sale_closes_at": "2030-01-01T00:30:00.5Z",
            }),
        )
        .await;
    assert_eq!(offset.status, 201, "{:?}", offset.body);
    assert_eq!(offset.body["sale_opens_at"], "2030-01-01T00:00:00.000Z");
    assert_eq!(offset.body["sale_closes_at"], "2030-01-01T00:30:00.500Z");
    assert_eq!(offset.body["status"], "upcoming");

    // The limits themselves are allowed.
    let largest = admin
        .post(
            "/admin/products",
            json!({
                "name": "x".repeat(200), "description": "d".repeat(5_000),
                "price": 1_000_000_000_000_u64, "kind": "general", "stock_total": 4_294_967_295_u64,
            }),
        )
        .await;
    assert_eq!(largest.status, 201, "{:?}", largest.body);
    assert_eq!(largest.body["remaining"], 4_294_967_295_u64);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_product_is_refused_and_changes_nothing() {
    let (_dir, app) = spawn().await;
    let mut admin = admin(&app).await;
    let now = app.engine.now_ms();
    let (opens, closes) = (now + HOUR_MS, now + 2 * HOUR_MS);
    // Each case changes a valid limited product: a field set, or removed when null.
    let with = |changes: &Value| {
        let mut body = limited("Aurora Sneaker", opens, closes, 10);
        for (field, value) in changes.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(field);
            } else {
                body[field] = value.clone();
            }
        }
        body
    };
    let invalid_product = [
        ("negative price", json!({ "price": -1 })),
        (
            "price over 10^12",
            json!({ "price": 1_000_000_000_001_u64 }),
        ),
        ("negative stock", json!({ "stock_total": -1 })),
        (
            "stock over u32",
            json!({ "stock_total": 4_294_967_296_u64 }),
        ),
        (
            "closes before opens",
            json!({ "sale_closes_at": rfc3339(opens - 1) }),
        ),
        (
            "closes when it opens",
            json!({ "sale_closes_at": rfc3339(opens) }),
        ),
        (
            "limited, no window",
            json!({ "sale_opens_at": null, "sale_closes_at": null }),
        ),
        ("limited, no close", json!({ "sale_closes_at": null })),
        ("limited, no opening", json!({ "sale_opens_at": null })),
        ("general with a window", json!({ "kind": "general" })),
        (
            "general with an opening",
            json!({ "kind": "general", "sale_closes_at": null }),
        ),
        ("lowercase currency", json!({ "currency": "krw" })),
        ("four-letter currency", json!({ "currency": "KRWX" })),
        ("empty currency", json!({ "currency": "" })),
        ("empty name", json!({ "name": "" })),
        ("blank name", json!({ "name": "   " })),
        (
            "name over 200 characters",
            json!({ "name": "가".repeat(201) }),
        ),
        (
            "long description",
            json!({ "description": "d".repeat(5_001) }),
        ),
        ("unknown kind", json!({ "kind": "special" })),
        ("malformed opening", json!({ "sale_opens_at": "tomorrow" })),
        (
            "impossible date",
            json!({ "sale_closes_at": "2030-02-30T00:00:00Z" }),
        ),
        (
            "time without a zone",
            json!({ "sale_closes_at": "2030-01-01T00:00:00" }),
        ),
        (
            "before 1970",
            json!({ "sale_opens_at": "1969-12-31T23:59:59Z" }),
        ),
        ("per-user limit 0", json!({ "per_user_limit": 0 })),
    ]
    .map(|(case, changes)| (case, with(&changes), "invalid_product"));
    // Refused by the JSON shape before any rule is looked at.
    let invalid_request = [
        ("price as text", with(&json!({ "price": "259000" }))),
        ("kind as a number", with(&json!({ "kind": 1 }))),
        ("unknown field", with(&json!({ "colour": "red" }))),
        ("missing name", with(&json!({ "name": null }))),
        ("missing stock", with(&json!({ "stock_total": null }))),
        ("not an object", json!(["Aurora Sneaker"])),
    ]
    .map(|(case, body)| (case, body, "invalid_request"));

    let before = footprint(&app);
    let cases = invalid_product.into_iter().chain(invalid_request);
    for (case, body, kind) in cases {
        let refused = admin.post("/admin/products", body).await;
        assert_eq!(refused.kind(), kind, "{case}: {:?}", refused.body);
        assert_problem(&refused, 422, kind);
        assert_eq!(footprint(&app), before, "{case} changed something");
    }

    // A body that is not JSON at all.
    let token = admin.cookies["access_token"].clone();
    let (status, body) = post_raw(&app, &token, "/admin/products", "{\"name\": ").await;
    assert_eq!((status, body["type"].as_str()), (400, Some("invalid_json")));
    assert_eq!(footprint(&app), before);
    app.stop().await;
}

// ----- who may manage the catalog ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_manages_the_catalog() {
    let (_dir, app) = spawn().await;
    let mut admin = admin(&app).await;
    let mut shopper = customer(&app, "min-ji.kim@example.com").await;
    let id = create(&mut admin, general("Canvas Tote", 10)).await;
    let before = footprint(&app);
    let restock = format!("/admin/products/{id}/restock");

    // Anonymous: 401; a customer: 403; reads stay public.
    let mut anonymous = app.client();
    assert_problem(
        &anonymous.post("/admin/products", general("Nope", 1)).await,
        401,
        "unauthenticated",
    );
    assert_problem(
        &patch(&mut anonymous, &id, json!({ "price": 1 })).await,
        401,
        "unauthenticated",
    );
    assert_problem(
        &anonymous.post(&restock, json!({ "quantity": 5 })).await,
        401,
        "unauthenticated",
    );
    assert_eq!(anonymous.get(&format!("/products/{id}")).await.status, 200);
    assert_eq!(anonymous.get("/products").await.status, 200);

    assert_problem(
        &shopper.post("/admin/products", general("Nope", 1)).await,
        403,
        "forbidden",
    );
    assert_problem(
        &patch(&mut shopper, &id, json!({ "price": 1 })).await,
        403,
        "forbidden",
    );
    assert_problem(
        &shopper.post(&restock, json!({ "quantity": 5 })).await,
        403,
        "forbidden",
    );
    let mut shopper_bearer = bearer_of(&app, &shopper);
    assert_problem(
        &shopper_bearer
            .post("/admin/products", general("Nope", 1))
            .await,
        403,
        "forbidden",
    );
    assert_eq!(shopper.get("/products").await.status, 200);

    // The admin's cookies without the CSRF header, or with a wrong one: refused.
    let mut forged = admin.clone();
    forged.csrf = false;
    assert_problem(
        &forged.post("/admin/products", general("Nope", 1)).await,
        403,
        "csrf_failed",
    );
    assert_problem(
        &patch(&mut forged, &id, json!({ "price": 1 })).await,
        403,
        "csrf_failed",
    );
    assert_problem(
        &forged.post(&restock, json!({ "quantity": 5 })).await,
        403,
        "csrf_failed",
    );
    let cookies: Vec<String> = admin
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mismatched = reqwest::Client::new()
        .post(format!("{}/api/v1/admin/products", app.base))
        .header("cookie", cookies.join("; "))
        .header("x-csrf-token", "not-the-token")
        .json(&general("Nope", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(mismatched.status(), 403);
    let body: Value = mismatched.json().await.unwrap();
    assert_eq!(body["type"], "csrf_failed");
    assert_eq!(
        footprint(&app),
        before,
        "a refused request changed something"
    );

    // A Bearer admin needs no CSRF token.
    let mut bearer = bearer_of(&app, &admin);
    let created = bearer
        .post("/admin/products", general("Bearer Tote", 3))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(
        patch(&mut bearer, &id, json!({ "price": 41000 }))
            .await
            .status,
        200
    );
    assert_eq!(
        bearer.post(&restock, json!({ "quantity": 5 })).await.status,
        200
    );
    app.stop().await;
}

// ----- versions ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_a_new_version_and_earlier_ones_stay_readable() {
    let (_dir, app) = spawn().await;
    let mut admin = admin(&app).await;
    let id = create(&mut admin, general("Canvas Tote", 10)).await;

    let v2 = patch(&mut admin, &id, json!({ "price": 42000 })).await;
    assert_eq!(v2.status, 200, "{:?}", v2.body);
    assert_eq!(
        (&v2.body["version"], &v2.body["price"]),
        (&json!(2), &json!(42000))
    );
    let v3 = patch(
        &mut admin,
        &id,
        json!({ "price": 45000, "name": " Canvas Tote II ", "description": "Heavier canvas." }),
    )
    .await;
    assert_eq!(v3.status, 200, "{:?}", v3.body);
    assert_eq!(v3.body["version"], 3);
    assert_eq!(v3.body["name"], "Canvas Tote II");

    let mut reader = app.client();
    for (version, price, name) in [
        (1, 39000, "Canvas Tote"),
        (2, 42000, "Canvas Tote"),
        (3, 45000, "Canvas Tote II"),
    ] {
        let read = reader
            .get(&format!("/products/{id}/versions/{version}"))
            .await;
        assert_eq!(read.status, 200, "version {version}: {:?}", read.body);
        assert_eq!(read.body["id"], id.as_str());
        assert_eq!(read.body["version"], version);
        assert_eq!(read.body["price"], price);
        assert_eq!(read.body["name"], name);
    }
    let current = reader.get(&format!("/products/{id}")).await;
    assert_eq!(current.body, v3.body);
    assert_eq!(current.body["description"], "Heavier canvas.");
    assert_eq!(
        current.body["currency"], "KRW",
        "an unchanged field is carried over"
    );

    for missing in ["4", "0", "-1", "two", "99999999999"] {
        let read = reader
            .get(&format!("/products/{id}/versions/{missing}"))
            .await;
        assert_problem(&read, 404, "version_not_found");
    }
    assert_problem(
        &reader.get("/products/prd_999/versions/1").await,
        404,
        "product_not_found",
    );

    // A refused change adds no version.
    let before = footprint(&app);
    for (body, kind) in [
        (json!({ "price": -5 }), "invalid_product"),
        (json!({ "name": "  " }), "invalid_product"),
        (json!({ "currency": "won" }), "invalid_product"),
        (
            json!({ "sale_opens_at": rfc3339(app.engine.now_ms()) }),
            "invalid_product",
        ),
        (json!({ "stock_total": 99 }), "invalid_request"),
    ] {
        let refused = patch(&mut admin, &id, body.clone()).await;
        assert_problem(&refused, 422, kind);
    }
    assert_problem(
        &patch(&mut admin, "prd_999", json!({ "price": 1 })).await,
        404,
        "product_not_found",
    );
    assert_problem(
        &patch(&mut admin, "tote", json!({ "price": 1 })).await,
        404,
        "product_not_found",
    );
    assert_eq!(footprint(&app), before);
    assert_eq!(
        reader.get(&format!("/products/{id}")).await.body["version"],
        3
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sale_window_changes_the_status_at_once() {
    let (_dir, app) = spawn().await;
    let mut admin = admin(&app).await;
    let now = app.engine.now_ms();
    let id = create(
        &mut admin,
        limited("Aurora Sneaker", now - MINUTE_MS, now + HOUR_MS, 5),
    )
    .await;

    let postponed = patch(
        &mut admin,
        &id,
        json!({ "sale_opens_at": rfc3339(now + HOUR_MS), "sale_closes_at": rfc3339(now + 2 * HOUR_MS) }),
    )
    .await;
    assert_eq!(postponed.status, 200, "{:?}", postponed.body);
    assert_eq!(postponed.body["status"], "upcoming");
    assert_eq!(postponed.body["sale_opens_at"], rfc3339(now + HOUR_MS));
    // Version 1 is read with its own window, but status and stock are the product's now.
    let first = app
        .client()
        .get(&format!("/products/{id}/versions/1"))
        .await;
    assert_eq!(first.body["sale_opens_at"], rfc3339(now - MINUTE_MS));
    assert_eq!(first.body["status"], "upcoming");

    // Closing before the (kept) opening is refused.
    let refused = patch(&mut admin, &id, json!({ "sale_closes_at": rfc3339(now) })).await;
    assert_problem(&refused, 422, "invalid_product");
    app.stop().await;
}

// ----- restock -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restock_adds_units_and_answers_the_stock() {
    let (_dir, app) = spawn().await;
    let mut admin = admin(&app).await;
    let id = create(&mut admin, general("Canvas Tote", 10)).await;
    let empty = create(&mut admin, general("Sold Out Tote", 0)).await;
    let restock = format!("/admin/products/{id}/restock");

    let restocked = admin.post(&restock, json!({ "quantity": 5 })).await;
    assert_eq!(restocked.status, 200, "{:?}", restocked.body);
    assert_eq!(restocked.body["product_id"], id.as_str());
    assert_eq!(restocked.body["remaining"], 15);
    assert_eq!(restocked.body["reserved"], 0);
    assert_eq!(restocked.body["sold"], 0);
    assert_eq!(restocked.body["status"], "on_sale");
    let product = app.client().get(&format!("/products/{id}")).await;
    assert_eq!(
        (&product.body["stock_total"], &product.body["remaining"]),
        (&json!(15), &json!(15))
    );

    // A sold-out product is back on sale.
    let revived = admin
        .post(
            &format!("/admin/products/{empty}/restock"),
            json!({ "quantity": 1 }),
        )
        .await;
    assert_eq!(
        (&revived.body["remaining"], &revived.body["status"]),
        (&json!(1), &json!("on_sale"))
    );

    let before = footprint(&app);
    for (body, kind) in [
        (json!({ "quantity": 0 }), "invalid_quantity"),
        (json!({ "quantity": -5 }), "invalid_quantity"),
        (json!({ "quantity": 4_294_967_296_u64 }), "invalid_quantity"),
        (json!({ "quantity": "5" }), "invalid_request"),
        (json!({}), "invalid_request"),
    ] {
        let refused = admin.post(&restock, body.clone()).await;
        assert_problem(&refused, 422, kind);
    }
    for unknown in ["prd_999", "prd_01", "tote"] {
        let refused = admin
            .post(
                &format!("/admin/products/{unknown}/restock"),
                json!({ "quantity": 5 }),
            )
            .await;
        assert_problem(&refused, 404, "product_not_found");
    }
    assert_eq!(footprint(&app), before);

    // The most one restock carries, twice: the SKU's lifetime passes 2^32 units (a counter
    // of 42 bits a field; only a lifetime past 2^42 − 1 answers `stock_limit_exceeded`).
    for times in [1_u64, 2] {
        let full = admin.post(&restock, json!({ "quantity": u32::MAX })).await;
        assert_eq!(
            (full.status, &full.body["remaining"]),
            (200, &json!(15 + times * u64::from(u32::MAX)))
        );
    }
    app.stop().await;
}

// ----- reads -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_unknown_products_are_404_and_stock_has_its_shape() {
    let (_dir, app) = spawn().await;
    let id = app
        .product("Canvas Tote", ProductKind::General, 39000, 7)
        .await;
    let mut reader = app.client();
    for unknown in [
        "prd_999", "prd_0", "prd_01", "prd_", "PRD_1", "usr_1", "1", "prd_-1", "tote",
        // Not UTF-8 once decoded: named as sent.
        "prd_%FF",
    ] {
        for path in [
            format!("/products/{unknown}"),
            format!("/products/{unknown}/stock"),
            format!("/products/{unknown}/versions/1"),
        ] {
            let refused = reader.get(&path).await;
            assert_problem(&refused, 404, "product_not_found");
            // The detail names what was sent, never a stand-in id.
            let detail = refused.body["detail"].as_str().unwrap();
            assert!(detail.contains(unknown), "{path}: {detail}");
        }
    }

    let before = app.engine.now_ms();
    let stock = reader.get(&format!("/products/{id}/stock")).await;
    assert_eq!(stock.status, 200, "{:?}", stock.body);
    let fields: Vec<&str> = stock
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "as_of",
            "product_id",
            "remaining",
            "reserved",
            "sold",
            "status"
        ]
    );
    assert_eq!(stock.body["product_id"], id.as_str());
    assert_eq!(
        (
            &stock.body["remaining"],
            &stock.body["reserved"],
            &stock.body["sold"]
        ),
        (&json!(7), &json!(0), &json!(0))
    );
    assert_eq!(stock.body["status"], "on_sale");
    let as_of = allot_engine::parse_rfc3339(stock.body["as_of"].as_str().unwrap())
        .expect("as_of is RFC 3339");
    assert!(
        (before..=app.engine.now_ms()).contains(&as_of),
        "as_of is the moment of the answer"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_is_exact_at_the_moment_of_the_answer() {
    let (_dir, app) = spawn().await;
    let id = app
        .product("Canvas Tote", ProductKind::General, 39000, 10)
        .await;
    let sku = sku_of(&id);
    let mut reader = app.client();
    let stock = |body: &Value| {
        (
            body["remaining"].as_u64().unwrap(),
            body["reserved"].as_u64().unwrap(),
            body["sold"].as_u64().unwrap(),
        )
    };

    let (first, ticket) = app
        .engine
        .reserve(UserId(1), sku, 3, RESERVATION_TTL_MS)
        .unwrap();
    ticket.durable().await.unwrap();
    let read = reader.get(&format!("/products/{id}/stock")).await;
    assert_eq!(stock(&read.body), (7, 3, 0));
    let product = reader.get(&format!("/products/{id}")).await;
    assert_eq!(
        (&product.body["remaining"], &product.body["stock_total"]),
        (&json!(7), &json!(10))
    );

    let (second, ticket) = app
        .engine
        .reserve(UserId(2), sku, 7, RESERVATION_TTL_MS)
        .unwrap();
    ticket.durable().await.unwrap();
    let read = reader.get(&format!("/products/{id}/stock")).await;
    assert_eq!(stock(&read.body), (0, 10, 0));
    assert_eq!(read.body["status"], "sold_out");
    assert_eq!(
        reader.get(&format!("/products/{id}")).await.body["status"],
        "sold_out"
    );
    assert_eq!(
        reader.get("/products?status=sold_out").await.ids(),
        [id.as_str()]
    );

    app.engine.commit(first).unwrap().durable().await.unwrap();
    assert_eq!(
        stock(&reader.get(&format!("/products/{id}/stock")).await.body),
        (0, 7, 3)
    );
    app.engine
        .release(second, allot_engine::ReleaseReason::Cancelled)
        .unwrap()
        .durable()
        .await
        .unwrap();
    let read = reader.get(&format!("/products/{id}/stock")).await;
    assert_eq!(stock(&read.body), (7, 0, 3));
    assert_eq!(read.body["status"], "on_sale");
    let product = reader.get(&format!("/products/{id}")).await;
    assert_eq!(
        (&product.body["remaining"], &product.body["stock_total"]),
        (&json!(7), &json!(10))
    );
    app.stop().await;
}

// ----- lists -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_by_kind_and_live_status() {
    let (_dir, app) = spawn().await;
    let mut admin = admin(&app).await;
    let now = app.engine.now_ms();
    let tote = create(&mut admin, general("Canvas Tote", 10)).await;
    let gone = create(&mut admin, general("Sold Out Tote", 0)).await;
    let open = create(
        &mut admin,
        limited("Open Drop", now - MINUTE_MS, now + HOUR_MS, 5),
    )
    .await;
    let next = create(
        &mut admin,
        limited("Next Drop", now + HOUR_MS, now + 2 * HOUR_MS, 5),
    )
    .await;
    let past = create(
        &mut admin,
        limited("Past Drop", now - 2 * HOUR_MS, now - HOUR_MS, 5),
    )
    .await;
    // The window comes first: a drop without stock is upcoming or closed, not sold out.
    let next_empty = create(
        &mut admin,
        limited("Empty Next", now + HOUR_MS, now + 2 * HOUR_MS, 0),
    )
    .await;
    let past_empty = create(
        &mut admin,
        limited("Empty Past", now - 2 * HOUR_MS, now - HOUR_MS, 0),
    )
    .await;
    let open_empty = create(
        &mut admin,
        limited("Empty Open", now - MINUTE_MS, now + HOUR_MS, 0),
    )
    .await;

    let mut reader = app.client();
    let all = [
        &tote,
        &gone,
        &open,
        &next,
        &past,
        &next_empty,
        &past_empty,
        &open_empty,
    ];
    for (query, expected) in [
        ("", all.to_vec()),
        ("?kind=general", vec![&tote, &gone]),
        (
            "?kind=limited",
            vec![&open, &next, &past, &next_empty, &past_empty, &open_empty],
        ),
        ("?status=on_sale", vec![&tote, &open]),
        ("?status=upcoming", vec![&next, &next_empty]),
        ("?status=closed", vec![&past, &past_empty]),
        ("?status=sold_out", vec![&gone, &open_empty]),
        ("?kind=limited&status=on_sale", vec![&open]),
        ("?kind=general&status=sold_out", vec![&gone]),
        ("?kind=general&status=upcoming", vec![]),
    ] {
        let page = reader.get(&format!("/products{query}")).await;
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(page.ids(), expected, "{query}");
        assert_eq!(page.body["next_cursor"], Value::Null, "{query}");
    }
    // Each item is a whole product with its live status.
    let page = reader.get("/products?status=upcoming&limit=1").await;
    let item = &page.body["items"][0];
    assert_eq!(item["name"], "Next Drop");
    assert_eq!(item["status"], "upcoming");
    assert_eq!(item["sale_opens_at"], rfc3339(now + HOUR_MS));
    assert_eq!(item["remaining"], 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_list_query_is_invalid_query() {
    let (_dir, app) = spawn().await;
    app.product("Canvas Tote", ProductKind::General, 39000, 1)
        .await;
    let mut reader = app.client();
    for query in [
        "kind=special",
        "kind=General",
        "status=on-sale",
        "status=",
        "limit=0",
        "limit=101",
        "cursor=banana",
        "cursor=prd_01",
        "cursor=usr_1",
    ] {
        let refused = reader.get(&format!("/products?{query}")).await;
        assert_problem(&refused, 400, "invalid_query");
    }
    for query in ["limit=1", "limit=100", "cursor=prd_1", "cursor=prd_999"] {
        assert_eq!(
            reader.get(&format!("/products?{query}")).await.status,
            200,
            "{query}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeserializable_list_query_is_invalid_query_too() {
    let (_dir, app) = spawn().await;
    let mut reader = app.client();
    for query in ["limit=abc", "limit=-1", "limit=1.5"] {
        let refused = reader.get(&format!("/products?{query}")).await;
        assert_problem(&refused, 400, "invalid_query");
    }
    // Unknown parameters (a tracking tag, say) are ignored.
    assert_eq!(reader.get("/products?colour=red").await.status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_pages_through_every_product_once_in_order() {
    let (_dir, app) = spawn().await;
    let mut admin = admin(&app).await;
    let mut created = Vec::new();
    for (n, stock) in [1, 0, 1, 0, 1].into_iter().enumerate() {
        created.push(create(&mut admin, general(&format!("Tote {n}"), stock)).await);
    }
    let mut reader = app.client();

    let pages = page_through(&mut reader, "/products?limit=2").await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), created, "every product once, in id order");
    let numbers: Vec<u64> = created.iter().map(|id| sku_of(id).0).collect();
    assert!(numbers.is_sorted_by(|a, b| a < b), "{created:?}");

    // A page that ends exactly at the last product has no next page.
    let exact = reader.get("/products?limit=5").await;
    assert_eq!(exact.ids(), created);
    assert_eq!(exact.body["next_cursor"], Value::Null);
    let short = reader.get("/products?limit=4").await;
    assert_eq!(short.body["next_cursor"], created[3].as_str());

    // With a filter, the cursor is the last product of the page, not the last one looked at.
    let on_sale = page_through(&mut reader, "/products?status=on_sale&limit=2").await;
    assert_eq!(
        on_sale,
        [
            vec![created[0].clone(), created[2].clone()],
            vec![created[4].clone()]
        ]
    );
    let sold_out = page_through(&mut reader, "/products?status=sold_out&limit=1").await;
    assert_eq!(
        sold_out,
        [vec![created[1].clone()], vec![created[3].clone()]]
    );

    // A product created while paging shows up on a later page.
    let first = reader.get("/products?limit=3").await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let late = create(&mut admin, general("Late Tote", 1)).await;
    let rest = page_through(&mut reader, &format!("/products?limit=3&cursor={cursor}")).await;
    assert_eq!(
        rest.concat(),
        [created[3].clone(), created[4].clone(), late]
    );
    app.stop().await;
}

/// Follows `next_cursor` from `first` until it is null; answers the ids of each page.
async fn page_through(reader: &mut Client, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut path = first.to_string();
    // More pages than products would mean the cursor does not advance.
    for _ in 0..20 {
        let page = reader.get(&path).await;
        pages.push(page.ids());
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("{first}&cursor={cursor}"),
            None => return pages,
        }
    }
    panic!("the cursor does not advance: {pages:?}");
}

// ----- the sale window, to the millisecond (engine-level: the clock is moved by hand) -------

#[test]
fn the_sale_window_is_half_open_to_the_millisecond() {
    const T: u64 = 1_800_000_000_000;
    const WINDOW_MS: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T - HOUR_MS));
    let engine = Engine::open(EngineConfig::new(dir.path()), clock.clone()).expect("open");
    let drop = |name: &str, stock: u32| {
        let (view, ticket) = engine
            .create_product(NewProduct {
                kind: ProductKind::Limited,
                details: ProductDetails {
                    name: name.into(),
                    description: String::new(),
                    price: 259000,
                    currency: "KRW".into(),
                },
                sale_opens_ms: Some(T),
                sale_closes_ms: Some(T + WINDOW_MS),
                per_user_limit: None,
                stock_total: stock,
            })
            .unwrap();
        ticket.wait().unwrap();
        view.product.id
    };
    let stocked = drop("Aurora Sneaker", 3);
    let empty = drop("Aurora Sneaker (none left)", 0);

    use ProductStatus::{Closed, OnSale, SoldOut, Upcoming};
    for (at, stocked_status, empty_status) in [
        (T - 1, Upcoming, Upcoming),
        (T, OnSale, SoldOut),
        (T + 1, OnSale, SoldOut),
        (T + WINDOW_MS - 1, OnSale, SoldOut),
        (T + WINDOW_MS, Closed, Closed),
        (T + WINDOW_MS + 1, Closed, Closed),
    ] {
        clock.set_ms(at);
        let offset = i128::from(at) - i128::from(T);
        for (id, expected) in [(stocked, stocked_status), (empty, empty_status)] {
            let view = engine.product(id).unwrap();
            assert_eq!(view.status, expected, "{id} at T{offset:+} ms");
            assert_eq!(view.as_of_ms, at);
            assert_eq!(
                engine.stock_status(id).unwrap().1,
                expected,
                "{id} at T{offset:+} ms"
            );
        }
        let listed: Vec<ProductId> = engine
            .list_products(None, 10, None, Some(stocked_status))
            .into_iter()
            .map(|v| v.product.id)
            .collect();
        assert!(
            listed.contains(&stocked),
            "list at T{offset:+} ms: {listed:?}"
        );
    }
    engine.close().unwrap();
}
