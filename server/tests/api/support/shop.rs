//! The shop's cast and props for order tests: the password every test account uses, the
//! payment simulator's cards (API.md), verified customers made in the engine (the mail round
//! trip is the accounts tests' job), logging in and paying over HTTP.

use serde_json::json;

use allot_engine::password::hash_password;
use allot_engine::{Email, Engine, SignupProfile};

use super::app::{Answer, Client, TestApp};

pub const PASSWORD: &str = "Tr0ub4dor&3-horse";
pub const ADMIN_EMAIL: &str = "admin@example.com";

pub const CARD_APPROVED: &str = "4242 4242 4242 4242";
pub const CARD_DECLINED: &str = "4000 0000 0000 0002";
pub const CARD_LIMIT_EXCEEDED: &str = "4000 0000 0000 9995";
pub const CARD_TIMEOUT_NOT_CHARGED: &str = "4000 0000 0000 0119";
pub const CARD_TIMEOUT_CHARGED: &str = "4000 0000 0000 0259";

/// [`PASSWORD`], hashed off the async workers (argon2 is slow on purpose: hash it once per
/// test and share it).
pub async fn password_hash() -> String {
    tokio::task::spawn_blocking(|| hash_password(PASSWORD))
        .await
        .unwrap()
}

/// The admin [`ADMIN_EMAIL`] with the password hash `hash`, logged in.
pub async fn admin(app: &TestApp, hash: &str) -> Client {
    let (_, ticket) = app
        .engine
        .create_admin(&Email::parse(ADMIN_EMAIL).unwrap(), hash.to_string())
        .unwrap();
    ticket.durable().await.unwrap();
    log_in(app.client(), ADMIN_EMAIL).await
}

/// A verified customer with the password hash `hash` (hash [`PASSWORD`] once and share it:
/// argon2 is slow on purpose).
pub async fn create_customer(engine: &Engine, email: &str, name: &str, hash: &str) {
    let parsed = Email::parse(email).unwrap();
    let (code, ticket) = engine.request_verification(&parsed).unwrap();
    ticket.durable().await.unwrap();
    let (token, ticket) = engine.confirm_verification(&parsed, &code).unwrap();
    ticket.durable().await.unwrap();
    let profile = SignupProfile {
        name: name.into(),
        ..SignupProfile::default()
    };
    let (_, ticket) = engine.register(&token, hash.to_string(), profile).unwrap();
    ticket.durable().await.unwrap();
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
