//! The published contract: `/openapi.json` as committed (a change of it is a deliberate act),
//! and the document held to what the server does — every route it says needs a login answers
//! 401 without one and every other does not, every admin route refuses a customer, every
//! problem is `application/problem+json` and a registered type.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::shop::{self, spawn};

/// The committed document. Rewrite it with `ALLOT_UPDATE_OPENAPI=1 cargo test -p allot-server
/// --test api contract` after a change of the API, and review the diff.
fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/openapi.json")
}

async fn document(app: &TestApp) -> Value {
    let response = reqwest::get(format!("{}/openapi.json", app.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Every operation of the document: method, path under `/api/v1`, the operation.
fn operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_uppercase().parse::<Method>().unwrap();
            let path = path.strip_prefix("/api/v1").unwrap_or(path).to_string();
            all.push((method, path, operation.clone()));
        }
    }
    all
}

/// A concrete path for a documented one: each `{parameter}` filled with a well-formed id.
fn concrete(path: &str) -> String {
    path.replace("{id}", "ord_1")
        .replace("{product_id}", "prd_1")
        .replace("{version}", "1")
        .replace("/products/ord_1", "/products/prd_1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_the_committed_one() {
    let (_dir, app) = spawn().await;
    let doc = document(&app).await;
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = snapshot_path();
    if std::env::var_os("ALLOT_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "/openapi.json differs from {}: if the change is meant, run \
         `ALLOT_UPDATE_OPENAPI=1 cargo test -p allot-server --test api contract` and review the diff",
        path.display()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_login_is_enforced_and_no_other() {
    let (_dir, app) = spawn().await;
    let doc = document(&app).await;
    let hash = shop::password_hash().await;
    let mut customer = shop::customer(&app, "min-ji@example.com", "Min-ji", &hash).await;
    let mut anonymous = app.client();
    let mut checked = 0;
    for (method, path, operation) in operations(&doc) {
        let url = concrete(&path);
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        let body = matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
        let answer = anonymous.send(method.clone(), &url, body.clone()).await;
        if secured {
            assert_eq!(
                (answer.status, answer.kind()),
                (401, "unauthenticated"),
                "{method} {path} is documented with a login"
            );
            assert!(
                operation["responses"]["401"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("`unauthenticated`")),
                "{method} {path} does not document its 401"
            );
        } else {
            assert_ne!(
                answer.kind(),
                "unauthenticated",
                "{method} {path} asks for a login its document does not declare"
            );
        }
        if path.starts_with("/admin/") {
            let refused = customer.send(method.clone(), &url, body).await;
            assert_eq!(
                (refused.status, refused.kind()),
                (403, "forbidden"),
                "{method} {path} lets a customer in"
            );
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} operations documented");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_is_problem_json_of_a_registered_type() {
    let (_dir, app) = spawn().await;
    let doc = document(&app).await;
    let registered: Vec<&str> = doc["x-problem-types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        registered.len()
    );
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().unwrap();
        // Every operation can find the engine still recovering.
        assert!(responses.contains_key("503"), "{method} {path}: no 503");
        if operation.get("requestBody").is_some() {
            for status in ["400", "413", "415", "422"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
        }
        for (status, response) in responses {
            if !status.starts_with('4') && !status.starts_with('5') {
                continue;
            }
            let content = response["content"].as_object().unwrap();
            assert!(
                content.keys().all(|c| c == "application/problem+json"),
                "{method} {path} {status}: {:?}",
                content.keys()
            );
            // The description names its codes, each a registered one.
            let description = response["description"].as_str().unwrap();
            let codes: Vec<&str> = description.split('`').skip(1).step_by(2).collect();
            assert!(!codes.is_empty(), "{method} {path} {status}: no code named");
            for code in codes {
                assert!(
                    registered.contains(&code),
                    "{method} {path} {status}: `{code}` is not registered"
                );
            }
        }
    }
    app.stop().await;
}

/// A placement's answer links every operation that takes the order's id, and each link names
/// an operation the document has.
#[test]
fn a_placed_order_links_the_operations_on_it() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("openapi.json")).expect("the committed document");
    let links = doc["paths"]["/api/v1/orders"]["post"]["responses"]["201"]["links"]
        .as_object()
        .expect("links on 201");
    let operations: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    for name in [
        "get_order",
        "pay_order",
        "cancel_order",
        "return_order",
        "admin_order",
        "ship_order",
        "deliver_order",
        "approve_return",
    ] {
        let link = &links[name];
        assert_eq!(link["operationId"], name);
        assert_eq!(link["parameters"]["id"], "$response.body#/id");
        assert!(operations.contains(&name), "{name} is no operation");
    }
}
