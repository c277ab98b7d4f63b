//! Accounts through HTTP, like a user: the real server on port 0, a fresh data directory each,
//! mail through a real local SMTP server (or as .eml files).

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{AppOptions, Client, TestApp, assert_problem};
use crate::support::smtp::{SmtpServer, body_text};
use allot_engine::ProductKind;
use allot_server::mail::MailTransportConfig;

const PASSWORD: &str = "Tr0ub4dor&3-horse";

/// Where a test reads the codes the server mails.
enum Inbox<'a> {
    Smtp(&'a SmtpServer),
    Files(PathBuf),
}

impl Inbox<'_> {
    async fn code_for(&self, email: &str) -> String {
        let text = match self {
            Inbox::Smtp(smtp) => {
                body_text(&smtp.wait_for_mail_to(email, Duration::from_secs(10)).await)
            }
            Inbox::Files(dir) => newest_eml_to(dir, email).await,
        };
        let at = text.find("code is ").expect("a code in the mail") + "code is ".len();
        text[at..at + 6].to_string()
    }
}

async fn newest_eml_to(dir: &Path, email: &str) -> String {
    for _ in 0..500 {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        for file in files.iter().rev() {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if text.contains(&format!("To: {email}")) {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no mail to {email} under {}", dir.display());
}

/// Verifies the email, signs up and logs in; answers the logged-in client and the user id.
async fn sign_up(
    app: &TestApp,
    inbox: &Inbox<'_>,
    email: &str,
    name: &str,
    phone: &str,
) -> (Client, String) {
    let mut client = app.client();
    let asked = client
        .post("/auth/email-verifications", json!({ "email": email }))
        .await;
    assert_eq!(asked.status, 202);
    let code = inbox.code_for(email).await;
    let confirmed = client
        .post(
            "/auth/email-verifications/confirm",
            json!({ "email": email, "code": code }),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    let token = confirmed.body["verification_token"]
        .as_str()
        .unwrap()
        .to_string();
    let signed = client
        .post(
            "/auth/signup",
            json!({ "verification_token": token, "password": PASSWORD, "name": name, "phone": phone }),
        )
        .await;
    assert_eq!(signed.status, 201, "{:?}", signed.body);
    let user_id = signed.body["user_id"].as_str().unwrap().to_string();
    let logged = client
        .post(
            "/auth/login",
            json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(logged.status, 200, "{:?}", logged.body);
    assert_eq!(logged.body["user_id"], user_id.as_str());
    (client, user_id)
}

fn files_app_options(dir: &Path) -> AppOptions {
    AppOptions::files(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_journey_over_smtp_then_a_restart() {
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let options = || AppOptions {
        mail: MailTransportConfig::Smtp { url: smtp.url() },
        ..AppOptions::files(dir.path())
    };
    let app = TestApp::spawn(dir.path(), options()).await;
    let inbox = Inbox::Smtp(&smtp);
    let email = "ji-woo.park@example.com";
    let (mut client, user_id) =
        sign_up(&app, &inbox, email, "Park Ji-woo", "+82 10-5555-0199").await;

    // The login set three cookies with the promised attributes.
    let me = client.get("/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user_id"], user_id.as_str());
    assert_eq!(me.body["email"], email);
    assert_eq!(me.body["name"], "Park Ji-woo");
    assert_eq!(me.body["phone"], "+82 10-5555-0199");
    assert_eq!(me.body["role"], "customer");

    // Wishlist: add, update, list, delete.
    let drop_id = app
        .product("Aurora Sneaker", ProductKind::Limited, 259000, 50)
        .await;
    let tote_id = app
        .product("Canvas Tote", ProductKind::General, 39000, 500)
        .await;
    let listed = client.get("/products?kind=limited").await;
    assert_eq!(listed.body["items"][0]["id"], drop_id.as_str());
    let put = client
        .send(
            Method::PUT,
            &format!("/me/wishlist/{drop_id}"),
            Some(json!({ "quantity": 1, "note": "size 270" })),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let put = client
        .send(
            Method::PUT,
            &format!("/me/wishlist/{drop_id}"),
            Some(json!({ "quantity": 2, "note": "size 275" })),
        )
        .await;
    assert_eq!(put.body["quantity"], 2);
    client
        .send(
            Method::PUT,
            &format!("/me/wishlist/{tote_id}"),
            Some(json!({})),
        )
        .await;
    let list = client.get("/me/wishlist").await;
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let drop = items
        .iter()
        .find(|i| i["product_id"] == drop_id.as_str())
        .unwrap();
    assert_eq!(drop["quantity"], 2);
    assert_eq!(drop["note"], "size 275");
    assert!(drop["product"]["name"].as_str().unwrap().contains("Aurora"));
    assert_eq!(drop["product"]["price"], 259000);
    assert_eq!(drop["product"]["remaining"], 50);
    assert_eq!(drop["product"]["status"], "on_sale");
    let deleted = client
        .send(Method::DELETE, &format!("/me/wishlist/{tote_id}"), None)
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        client.get("/me/wishlist").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let missing = client
        .send(
            Method::PUT,
            "/me/wishlist/prd_999",
            Some(json!({ "quantity": 1 })),
        )
        .await;
    assert_eq!((missing.status, missing.kind()), (404, "product_not_found"));

    // A second session survives the restart below; this one is logged out.
    let mut other_device = app.client();
    let login = other_device
        .post(
            "/auth/login",
            json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(login.status, 200);
    let access = client.cookies["access_token"].clone();
    let refresh = client.cookies["refresh_token"].clone();
    let out = client.post("/auth/logout", json!({})).await;
    assert_eq!(out.status, 204);
    assert!(out.set_cookies.iter().all(|c| c.contains("Max-Age=0")));
    // The old access token is refused as a cookie and as a Bearer token, the refresh token too.
    let mut stale = app.client();
    stale.cookies.insert("access_token".into(), access.clone());
    assert_eq!(stale.get("/me").await.status, 401);
    stale.cookies.clear();
    stale.bearer = Some(access);
    assert_eq!(stale.get("/me").await.kind(), "unauthenticated");
    stale.bearer = None;
    let again = stale
        .post("/auth/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!((again.status, again.kind()), (401, "invalid_refresh"));

    // Nothing personal is stored in plaintext anywhere under the data directory.
    for secret in [email, "Park Ji-woo", "+82 10-5555-0199", "5555-0199"] {
        assert_no_plaintext(dir.path(), secret);
    }

    // Restart on the same directory: the account, the other session and the wishlist survive.
    app.stop().await;
    let app = TestApp::spawn(dir.path(), options()).await;
    let mut client = app.client();
    client.cookies = other_device.cookies.clone();
    let me = client.get("/me").await;
    assert_eq!((me.status, me.body["email"].as_str()), (200, Some(email)));
    let refreshed = client.post("/auth/refresh", json!({})).await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    let list = client.get("/me/wishlist").await;
    assert_eq!(list.body["items"][0]["product_id"], drop_id.as_str());
    let mut fresh = app.client();
    assert_eq!(
        fresh
            .post(
                "/auth/login",
                json!({ "email": email, "password": PASSWORD })
            )
            .await
            .status,
        200
    );
    app.stop().await;
}

fn assert_no_plaintext(dir: &Path, needle: &str) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!found, "{needle:?} in plaintext in {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_with_codes_from_eml_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path(), files_app_options(dir.path())).await;
    let inbox = Inbox::Files(dir.path().join("mail"));
    let (mut client, _) = sign_up(&app, &inbox, "min@example.org", "Min", "010 1234 5678").await;
    assert_eq!(client.get("/me").await.body["email"], "min@example.org");
    // A body is an object: serde alone would read `[null, null]` as the fields in order (and
    // remove the phone).
    for body in [json!([null, null]), json!(["Max"]), json!(null)] {
        let refused = client.send(Method::PATCH, "/me", Some(body.clone())).await;
        assert_problem(&refused, 422, "invalid_request");
    }
    let me = client.get("/me").await;
    assert_eq!(
        (me.body["name"].as_str(), me.body["phone"].as_str()),
        (Some("Min"), Some("010 1234 5678"))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_a_reused_token_revokes_the_family() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path(), files_app_options(dir.path())).await;
    let inbox = Inbox::Files(dir.path().join("mail"));
    let (mut client, _) = sign_up(&app, &inbox, "rot@example.com", "Rot", "010 0000 1111").await;
    let first = client.cookies["refresh_token"].clone();
    client.csrf = false;
    let no_csrf = client.post("/auth/refresh", json!({})).await;
    assert_eq!((no_csrf.status, no_csrf.kind()), (403, "csrf_failed"));
    client.csrf = true;
    let rotated = client.post("/auth/refresh", json!({})).await;
    assert_eq!(rotated.status, 200);
    let second = client.cookies["refresh_token"].clone();
    assert_ne!(first, second);
    assert_eq!(client.get("/me").await.status, 200);

    // The stolen first token comes back: refused, and the whole family with it.
    let mut thief = app.client();
    let reuse = thief
        .post("/auth/refresh", json!({ "refresh_token": first }))
        .await;
    assert_eq!((reuse.status, reuse.kind()), (401, "invalid_refresh"));
    let legit = client.post("/auth/refresh", json!({})).await;
    assert_eq!((legit.status, legit.kind()), (401, "invalid_refresh"));
    let garbage = thief
        .post("/auth/refresh", json!({ "refresh_token": "nope" }))
        .await;
    assert_eq!(garbage.kind(), "invalid_refresh");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_tokens_and_roles_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path(), files_app_options(dir.path())).await;
    let inbox = Inbox::Files(dir.path().join("mail"));
    let (mut client, _) = sign_up(&app, &inbox, "csrf@example.com", "Cee", "010 2222 3333").await;

    client.csrf = false;
    let missing = client
        .send(Method::PATCH, "/me", Some(json!({ "name": "X" })))
        .await;
    assert_eq!((missing.status, missing.kind()), (403, "csrf_failed"));
    let mut forged = client.clone();
    forged.csrf = false;
    forged.cookies.insert("csrf_token".into(), "forged".into());
    let wrong = forged
        .send(Method::PATCH, "/me", Some(json!({ "name": "X" })))
        .await;
    assert_eq!(wrong.kind(), "csrf_failed");
    client.csrf = true;
    let ok = client
        .send(
            Method::PATCH,
            "/me",
            Some(json!({ "name": "Cee Two", "phone": null, "address": "1 Main St" })),
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(
        (ok.body["name"].as_str(), ok.body["phone"].as_str()),
        (Some("Cee Two"), None)
    );
    // A Bearer client needs no CSRF token.
    let mut api = app.client();
    api.bearer = Some(client.cookies["access_token"].clone());
    api.csrf = false;
    assert_eq!(
        api.send(Method::PATCH, "/me", Some(json!({ "name": "Cee" })))
            .await
            .status,
        200
    );
    let invalid = api
        .send(Method::PATCH, "/me", Some(json!({ "name": "" })))
        .await;
    assert_eq!((invalid.status, invalid.kind()), (422, "invalid_profile"));

    // A customer on an admin route.
    let admin_only = client
        .post(
            "/admin/products",
            json!({ "name": "X", "price": 1, "kind": "general", "stock_total": 1 }),
        )
        .await;
    assert_eq!((admin_only.status, admin_only.kind()), (403, "forbidden"));
    let mut anonymous = app.client();
    let anon = anonymous.post("/admin/products", json!({})).await;
    assert_eq!((anon.status, anon.kind()), (401, "unauthenticated"));

    // Another customer sees only their own wishlist and profile.
    let (mut other, other_id) =
        sign_up(&app, &inbox, "other@example.com", "Oh", "010 4444 5555").await;
    let drop_id = app.product("Drop", ProductKind::Limited, 1000, 5).await;
    other
        .send(
            Method::PUT,
            &format!("/me/wishlist/{drop_id}"),
            Some(json!({ "note": "mine" })),
        )
        .await;
    assert_eq!(
        client.get("/me/wishlist").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    client
        .send(Method::DELETE, &format!("/me/wishlist/{drop_id}"), None)
        .await;
    assert_eq!(
        other.get("/me/wishlist").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_ne!(client.get("/me").await.body["user_id"], other_id.as_str());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_expired_and_foreign_tokens_are_refused() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path(), files_app_options(dir.path())).await;
    let inbox = Inbox::Files(dir.path().join("mail"));
    let (client, _) = sign_up(&app, &inbox, "jwt@example.com", "Jay", "010 6666 7777").await;
    let token = client.cookies["access_token"].clone();
    let parts: Vec<&str> = token.split('.').collect();
    let payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();

    let mut claims = payload.clone();
    claims["role"] = json!("admin");
    let changed_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let alg_none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let key = jsonwebtoken::EncodingKey::from_secret(&[7u8; 64]);
    let other_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &payload,
        &key,
    )
    .unwrap();
    let real_keys = allot_engine::Keys::load_or_create(&dir.path().join("keys")).unwrap();
    let real_key = jsonwebtoken::EncodingKey::from_secret(real_keys.jwt_key());
    let mut expired_claims = payload.clone();
    expired_claims["exp"] = json!(payload["iat"].as_u64().unwrap() - 3600);
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &expired_claims,
        &real_key,
    )
    .unwrap();
    let mut no_jti = payload.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    let without_jti = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &no_jti,
        &real_key,
    )
    .unwrap();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &payload,
        &real_key,
    )
    .unwrap();

    let mut probe = app.client();
    probe.bearer = Some(token.clone());
    assert_eq!(
        probe.get("/me").await.status,
        200,
        "the untampered token works"
    );
    for (what, bad) in [
        ("changed payload", changed_payload),
        ("alg none", alg_none),
        ("other key", other_key),
        ("expired", expired),
        ("no jti", without_jti),
        ("HS256", hs256),
        ("garbage", "not.a.jwt".to_string()),
    ] {
        probe.bearer = Some(bad);
        let answer = probe.get("/me").await;
        assert_eq!(
            (answer.status, answer.kind()),
            (401, "unauthenticated"),
            "{what}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_passwords_wrong_codes_and_unknown_emails() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path(), files_app_options(dir.path())).await;
    let inbox = Inbox::Files(dir.path().join("mail"));
    sign_up(&app, &inbox, "known@example.com", "Known", "010 1111 2222").await;
    let mut client = app.client();

    // Known and unknown emails get identical answers.
    let known = client
        .post(
            "/auth/email-verifications",
            json!({ "email": "known@example.com" }),
        )
        .await;
    let unknown = client
        .post(
            "/auth/email-verifications",
            json!({ "email": "nobody@example.com" }),
        )
        .await;
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    let wrong_password = client
        .post(
            "/auth/login",
            json!({ "email": "known@example.com", "password": "Wrong-pass1" }),
        )
        .await;
    let no_account = client
        .post(
            "/auth/login",
            json!({ "email": "nobody@example.com", "password": "Wrong-pass1" }),
        )
        .await;
    assert_eq!(wrong_password.status, 401);
    assert_eq!(
        (wrong_password.status, &wrong_password.body),
        (no_account.status, &no_account.body)
    );
    assert_eq!(wrong_password.kind(), "invalid_credentials");

    // Weak passwords.
    client
        .post(
            "/auth/email-verifications",
            json!({ "email": "weak@example.com" }),
        )
        .await;
    let code = inbox.code_for("weak@example.com").await;
    let token = client
        .post(
            "/auth/email-verifications/confirm",
            json!({ "email": "weak@example.com", "code": code }),
        )
        .await
        .body["verification_token"]
        .as_str()
        .unwrap()
        .to_string();
    for weak in [
        "Sh0rt!",
        "nodigits!!",
        "n0special1",
        "12345678!",
        "P@ssw0rd",
        "Passw0rd!",
    ] {
        let answer = client
            .post(
                "/auth/signup",
                json!({ "verification_token": token, "password": weak, "name": "W" }),
            )
            .await;
        assert_eq!(
            (answer.status, answer.kind()),
            (422, "weak_password"),
            "{weak}"
        );
    }
    let long = "correct horse battery staple 42! ".repeat(2);
    let ok = client
        .post(
            "/auth/signup",
            json!({ "verification_token": token, "password": long, "name": "W" }),
        )
        .await;
    assert_eq!(ok.status, 201, "a 66-character passphrase: {:?}", ok.body);
    let taken = client
        .post(
            "/auth/signup",
            json!({ "verification_token": token, "password": PASSWORD, "name": "W" }),
        )
        .await;
    assert_eq!(
        taken.kind(),
        "invalid_verification_token",
        "a token is single use"
    );

    // Five wrong codes lock the code, even for the right one afterwards.
    client
        .post(
            "/auth/email-verifications",
            json!({ "email": "lock@example.com" }),
        )
        .await;
    let right = inbox.code_for("lock@example.com").await;
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };
    for _ in 0..5 {
        let answer = client
            .post(
                "/auth/email-verifications/confirm",
                json!({ "email": "lock@example.com", "code": wrong }),
            )
            .await;
        assert_eq!((answer.status, answer.kind()), (400, "invalid_code"));
    }
    let locked = client
        .post(
            "/auth/email-verifications/confirm",
            json!({ "email": "lock@example.com", "code": right }),
        )
        .await;
    assert_eq!((locked.status, locked.kind()), (429, "too_many_attempts"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_and_the_ip_budget_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path(), files_app_options(dir.path())).await;
    let mut client = app.client();
    for _ in 0..10 {
        let answer = client
            .post(
                "/auth/login",
                json!({ "email": "victim@example.com", "password": "Guess-no1" }),
            )
            .await;
        assert_eq!(answer.kind(), "invalid_credentials");
    }
    let limited = client
        .post(
            "/auth/login",
            json!({ "email": "victim@example.com", "password": "Guess-no1" }),
        )
        .await;
    assert_eq!((limited.status, limited.kind()), (429, "rate_limited"));
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&retry));
    // Another account is not affected.
    let other = client
        .post(
            "/auth/login",
            json!({ "email": "else@example.com", "password": "Guess-no1" }),
        )
        .await;
    assert_eq!(other.kind(), "invalid_credentials");
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let options = AppOptions {
        ip_rate_limit_per_min: 5,
        ..AppOptions::files(dir.path())
    };
    let app = TestApp::spawn(dir.path(), options).await;
    let mut client = app.client();
    for _ in 0..5 {
        let answer = client
            .post(
                "/auth/email-verifications",
                json!({ "email": "a@example.com" }),
            )
            .await;
        assert_eq!(answer.status, 202);
    }
    let over = client
        .post(
            "/auth/email-verifications",
            json!({ "email": "a@example.com" }),
        )
        .await;
    assert_eq!((over.status, over.kind()), (429, "rate_limited"));
    assert!(over.headers.contains_key("retry-after"));
    // The budget is for the auth endpoints only.
    assert_eq!(client.get("/products").await.status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_problems_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path(), files_app_options(dir.path())).await;
    let before = app.engine.durable_seq();
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/auth/login", app.base);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            http.post(&url)
                .header("content-type", "application/json")
                .body("{"),
            400,
            "invalid_json",
        ),
        (http.post(&url).body("{}"), 415, "unsupported_media_type"),
        (
            http.post(&url).json(&json!({ "email": 5 })),
            422,
            "invalid_request",
        ),
        (
            http.post(&url)
                .json(&json!({ "email": "a@b.c", "password": "x", "extra": 1 })),
            422,
            "invalid_request",
        ),
        (
            http.post(&url)
                .header("content-type", "application/json")
                .body(vec![b'x'; 70 * 1024]),
            413,
            "payload_too_large",
        ),
    ];
    for (request, status, kind) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], kind);
    }
    let mut client = app.client();
    let bad_email = client
        .post(
            "/auth/email-verifications",
            json!({ "email": "not an email" }),
        )
        .await;
    assert_eq!((bad_email.status, bad_email.kind()), (422, "invalid_email"));
    assert_eq!(app.engine.durable_seq(), before, "nothing was logged");
    app.stop().await;
}
