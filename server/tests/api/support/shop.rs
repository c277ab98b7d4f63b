//! The shop's cast and props for order tests: the password every test account uses, the
//! payment simulator's cards (API.md), verified customers made in the engine (the mail round
//! trip is the accounts tests' job), logging in and paying over HTTP.

use serde_json::json;

pub use allot_engine::testkit::cards::{
    APPROVED as CARD_APPROVED, DECLINED as CARD_DECLINED, LIMIT_EXCEEDED as CARD_LIMIT_EXCEEDED,
    TIMEOUT_CHARGED as CARD_TIMEOUT_CHARGED, TIMEOUT_NOT_CHARGED as CARD_TIMEOUT_NOT_CHARGED,
};
pub use allot_engine::testkit::{ADMIN_EMAIL, PASSWORD};
use allot_engine::{Engine, hash_password};

use super::app::{Answer, Client, TestApp};

/// [`PASSWORD`], hashed off the async workers (argon2 is slow on purpose: hash it once per
/// test and share it).
pub async fn password_hash() -> String {
    tokio::task::spawn_blocking(|| hash_password(PASSWORD))
        .await
        .unwrap()
}

/// The admin [`ADMIN_EMAIL`] with the password hash `hash`, logged in.
pub async fn admin(app: &TestApp, hash: &str) -> Client {
    allot_engine::testkit::create_admin(&app.engine, hash);
    log_in(app.client(), ADMIN_EMAIL).await
}

/// A verified customer with the password hash `hash` (hash [`PASSWORD`] once and share it:
/// argon2 is slow on purpose).
pub async fn create_customer(engine: &Engine, email: &str, name: &str, hash: &str) {
    allot_engine::testkit::create_customer(engine, email, name, hash);
}

/// Logs `client` in as `email` with [`PASSWORD`].
pub async fn log_in(mut client: Client, email: &str) -> Client {
    let logged = client
        .post(
            "/auth/login",
            json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(logged.status, 200, "{email}: {:?}", logged.body);
    client
}

/// Pays `order` with `card_number` through the simulator.
pub async fn pay(client: &mut Client, order: &str, card_number: &str) -> Answer {
    pay_with(client, order, card_number, "12/30", "123").await
}

pub async fn pay_with(
    client: &mut Client,
    order: &str,
    card_number: &str,
    expiry: &str,
    cvc: &str,
) -> Answer {
    client
        .post(
            &format!("/orders/{order}/payment"),
            json!({ "card_number": card_number, "expiry": expiry, "cvc": cvc }),
        )
        .await
}
