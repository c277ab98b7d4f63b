//! The administration of accounts over HTTP: list, look up, promote, demote, disable, enable;
//! a disabled account is out at once and stays out across a restart.

use serde_json::json;

use crate::support::app::{AppOptions, TestApp, assert_problem};
use crate::support::shop::{JI_WOO_EMAIL, MIN_JI_EMAIL, PASSWORD, Shop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_find_promote_and_demote_accounts() {
    let mut shop = Shop::open().await;

    let all = shop.admin.get("/admin/users").await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    let items = all.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let emails: Vec<&str> = items.iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails[1..], [MIN_JI_EMAIL, JI_WOO_EMAIL]);
    assert_eq!(items[0]["role"], "admin");
    assert_eq!(items[1]["status"], "active");
    assert_eq!(items[1]["name"], "Kim Min-ji");
    assert_eq!(items[1]["live_sessions"], 1);
    assert!(all.body["next_cursor"].is_null());

    // Pages by id, a role filter, one account by email.
    let first = shop.admin.get("/admin/users?limit=2").await;
    assert_eq!(first.ids().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let rest = shop
        .admin
        .get(&format!("/admin/users?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest.body["items"][0]["email"], JI_WOO_EMAIL);
    assert!(rest.body["next_cursor"].is_null());
    let customers = shop.admin.get("/admin/users?role=customer").await;
    assert_eq!(customers.ids().len(), 2);
    let found = shop
        .admin
        .get("/admin/users?email=Min-Ji.Kim@Example.com")
        .await;
    assert_eq!(found.body["items"][0]["email"], MIN_JI_EMAIL);
    let min_ji = found.body["items"][0]["id"].as_str().unwrap().to_string();
    let nobody = shop
        .admin
        .get("/admin/users?email=nobody@example.com")
        .await;
    assert_eq!(nobody.ids().len(), 0);
    assert_problem(
        &shop.admin.get("/admin/users?role=owner").await,
        400,
        "invalid_query",
    );
    assert_problem(
        &shop.admin.get("/admin/users?email=not-an-address").await,
        400,
        "invalid_query",
    );

    // One account; a malformed or unknown id is named in the 404.
    let one = shop.admin.get(&format!("/admin/users/{min_ji}")).await;
    assert_eq!(
        (one.status, one.body["email"].as_str()),
        (200, Some(MIN_JI_EMAIL))
    );
    let tote = shop.admin.get("/admin/users/tote").await;
    assert_problem(&tote, 404, "user_not_found");
    assert!(tote.body["detail"].as_str().unwrap().contains("tote"));
    let gone = shop.admin.get("/admin/users/usr_999").await;
    assert_problem(&gone, 404, "user_not_found");
    assert!(gone.body["detail"].as_str().unwrap().contains("usr_999"));
    assert_problem(
        &shop
            .admin
            .post("/admin/users/usr_999/disable", json!({}))
            .await,
        404,
        "user_not_found",
    );

    // A customer may not look; a promoted one may, at once, and a demoted one no longer.
    assert_problem(&shop.min_ji.get("/admin/users").await, 403, "forbidden");
    let promoted = shop
        .admin
        .post(&format!("/admin/users/{min_ji}/promote"), json!({}))
        .await;
    assert_eq!(
        (promoted.status, promoted.body["role"].as_str()),
        (200, Some("admin"))
    );
    assert_eq!(shop.min_ji.get("/admin/users").await.status, 200);
    let again = shop
        .admin
        .post(&format!("/admin/users/{min_ji}/promote"), json!({}))
        .await;
    assert_eq!(
        again.body["role"], "admin",
        "promoting twice changes nothing"
    );
    // The promoted admin cannot demote or disable themselves.
    assert_problem(
        &shop
            .min_ji
            .post(&format!("/admin/users/{min_ji}/demote"), json!({}))
            .await,
        409,
        "self_lockout",
    );
    assert_problem(
        &shop
            .min_ji
            .post(&format!("/admin/users/{min_ji}/disable"), json!({}))
            .await,
        409,
        "self_lockout",
    );
    let demoted = shop
        .admin
        .post(&format!("/admin/users/{min_ji}/demote"), json!({}))
        .await;
    assert_eq!(demoted.body["role"], "customer");
    assert_problem(&shop.min_ji.get("/admin/users").await, 403, "forbidden");
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_is_out_at_once_and_stays_out_after_a_restart() {
    let mut shop = Shop::open().await;
    let found = shop
        .admin
        .get(&format!("/admin/users?email={JI_WOO_EMAIL}"))
        .await;
    let ji_woo = found.body["items"][0]["id"].as_str().unwrap().to_string();
    // A second device of hers, by Bearer token.
    let mut phone = shop.app.client();
    let logged = phone
        .post(
            "/auth/login",
            json!({ "email": JI_WOO_EMAIL, "password": PASSWORD }),
        )
        .await;
    phone.bearer = Some(logged.body["access_token"].as_str().unwrap().to_string());
    assert_eq!(phone.get("/me").await.status, 200);
    let refresh = shop.ji_woo.cookies["refresh_token"].clone();

    let disabled = shop
        .admin
        .post(&format!("/admin/users/{ji_woo}/disable"), json!({}))
        .await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.body);
    assert_eq!(disabled.body["status"], "disabled");
    assert!(disabled.body["disabled_at"].is_string());
    assert_eq!(disabled.body["live_sessions"], 0);

    // Her tokens stop working at once, her refresh token is dead, her login is refused with
    // the right password (and a wrong one says nothing more than it ever does).
    assert_problem(&shop.ji_woo.get("/me").await, 401, "unauthenticated");
    assert_problem(&phone.get("/me").await, 401, "unauthenticated");
    let mut stale = shop.app.client();
    assert_problem(
        &stale
            .post("/auth/refresh", json!({ "refresh_token": refresh }))
            .await,
        401,
        "invalid_refresh",
    );
    let login = json!({ "email": JI_WOO_EMAIL, "password": PASSWORD });
    assert_problem(
        &stale.post("/auth/login", login.clone()).await,
        403,
        "account_disabled",
    );
    assert_problem(
        &stale
            .post(
                "/auth/login",
                json!({ "email": JI_WOO_EMAIL, "password": "not-her-password-1" }),
            )
            .await,
        401,
        "invalid_credentials",
    );
    // The others are untouched; disabling twice changes nothing.
    assert_eq!(shop.min_ji.get("/me").await.status, 200);
    let twice = shop
        .admin
        .post(&format!("/admin/users/{ji_woo}/disable"), json!({}))
        .await;
    assert_eq!(
        (twice.status, twice.body["disabled_at"].clone()),
        (200, disabled.body["disabled_at"].clone())
    );

    // Still disabled after a restart (the snapshot of a clean stop holds it).
    let admin_cookies = shop.admin.cookies.clone();
    shop.app.stop().await;
    let app = TestApp::spawn(shop.dir.path(), AppOptions::files(shop.dir.path())).await;
    let mut admin = app.client();
    admin.cookies = admin_cookies;
    let after = admin.get(&format!("/admin/users/{ji_woo}")).await;
    assert_eq!(after.body["status"], "disabled", "{:?}", after.body);
    assert_problem(
        &app.client().post("/auth/login", login.clone()).await,
        403,
        "account_disabled",
    );

    // Enabled again, she logs in; her old sessions stay ended.
    let enabled = admin
        .post(&format!("/admin/users/{ji_woo}/enable"), json!({}))
        .await;
    assert_eq!(
        (enabled.status, enabled.body["status"].as_str()),
        (200, Some("active"))
    );
    assert!(enabled.body["disabled_at"].is_null());
    let mut back = app.client();
    assert_eq!(back.post("/auth/login", login).await.status, 200);
    assert_eq!(back.get("/me").await.status, 200);
    assert_problem(
        &app.client()
            .post("/auth/refresh", json!({ "refresh_token": refresh }))
            .await,
        401,
        "invalid_refresh",
    );
    app.stop().await;
}

/// The documented rule of `?email=` is the engine's.
#[test]
fn the_email_lookup_documents_the_engines_rule() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("openapi.json")).expect("the committed document");
    let params = doc["paths"]["/api/v1/admin/users"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let email = params.iter().find(|p| p["name"] == "email").unwrap();
    assert_eq!(email["schema"]["pattern"], allot_engine::EMAIL_PATTERN);
    assert_eq!(email["schema"]["maxLength"], allot_engine::EMAIL_BYTES_MAX);
}
