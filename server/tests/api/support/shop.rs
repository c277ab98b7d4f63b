//! The shop's cast and props for the API tests: the password every test account uses, the
//! payment simulator's cards (API.md), verified customers made in the engine (the mail round
//! trip is the accounts tests' job), logging in and paying over HTTP, and [`Shop`]: a server
//! with an admin and two customers, built by [`ShopBuilder`].

use serde_json::json;
use tempfile::TempDir;

pub use allot_engine::testkit::cards::{
    APPROVED as CARD_APPROVED, DECLINED as CARD_DECLINED, LIMIT_EXCEEDED as CARD_LIMIT_EXCEEDED,
    TIMEOUT_CHARGED as CARD_TIMEOUT_CHARGED, TIMEOUT_NOT_CHARGED as CARD_TIMEOUT_NOT_CHARGED,
};
pub use allot_engine::testkit::{ADMIN_EMAIL, PASSWORD};
use allot_engine::{Engine, hash_password, rfc3339};
use allot_server::mail::MailTransportConfig;

use super::app::{Answer, AppOptions, Client, TestApp};

/// The first customer of a [`Shop`].
pub const MIN_JI_EMAIL: &str = "min-ji.kim@example.com";
/// The second customer of a [`Shop`].
pub const JI_WOO_EMAIL: &str = "ji-woo.park@example.com";

/// A test app on a temporary data directory of its own (mail as files, no per-IP budget).
pub async fn spawn() -> (TempDir, TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path(), AppOptions::files(dir.path())).await;
    (dir, app)
}

/// A server on its own data directory, its admin and two verified customers, each logged in.
pub struct Shop {
    pub app: TestApp,
    pub admin: Client,
    pub min_ji: Client,
    pub ji_woo: Client,
    /// The data directory: kept to reopen the shop on, removed when the shop is dropped.
    pub dir: TempDir,
}

/// How a [`Shop`] is set up: the server's defaults unless told otherwise.
pub struct ShopBuilder {
    dir: TempDir,
    options: AppOptions,
}

impl ShopBuilder {
    /// Orders hold their units for `ms` (the server's default is 600 s).
    pub fn reservation_ttl_ms(mut self, ms: u64) -> Self {
        self.options.reservation_ttl_ms = Some(ms);
        self
    }

    /// Unsettled payments are looked at every `ms`.
    pub fn payment_resolve_interval_ms(mut self, ms: u64) -> Self {
        self.options.payment_resolve_interval_ms = Some(ms);
        self
    }

    /// Online backups may go into `dir`.
    pub fn backup_dir(mut self, dir: &std::path::Path) -> Self {
        self.options.backup_dir = Some(dir.to_path_buf());
        self
    }

    /// Mail goes out through `transport` instead of into files.
    pub fn mail(mut self, transport: MailTransportConfig) -> Self {
        self.options.mail = transport;
        self
    }

    /// Starts the server and logs its cast in.
    pub async fn open(self) -> Shop {
        let Self { dir, options } = self;
        let app = TestApp::spawn(dir.path(), options).await;
        let hash = password_hash().await;
        let admin = admin(&app, &hash).await;
        let min_ji = customer(&app, MIN_JI_EMAIL, "Kim Min-ji", &hash).await;
        let ji_woo = customer(&app, JI_WOO_EMAIL, "Park Ji-woo", &hash).await;
        Shop {
            app,
            admin,
            min_ji,
            ji_woo,
            dir,
        }
    }
}

impl Shop {
    /// A shop with the server's defaults on a new temporary directory.
    pub async fn open() -> Shop {
        Shop::builder().open().await
    }

    pub fn builder() -> ShopBuilder {
        let dir = tempfile::tempdir().unwrap();
        let options = AppOptions::files(dir.path());
        ShopBuilder { dir, options }
    }

    pub async fn close(self) {
        self.app.stop().await;
    }

    /// A limited product created through the admin API: `window` is (opens, closes) relative
    /// to now, in ms.
    pub async fn limited(
        &mut self,
        name: &str,
        window: (i64, i64),
        per_user_limit: Option<u32>,
        stock: u32,
    ) -> String {
        let now = self.app.engine.now_ms();
        let at = |offset: i64| rfc3339(now.checked_add_signed(offset).unwrap());
        let mut body = json!({
            "name": name,
            "price": 259000,
            "kind": "limited",
            "sale_opens_at": at(window.0),
            "sale_closes_at": at(window.1),
            "stock_total": stock,
        });
        if let Some(limit) = per_user_limit {
            body["per_user_limit"] = json!(limit);
        }
        let created = self.admin.post("/admin/products", body).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        created.body["id"].as_str().unwrap().to_string()
    }
}

impl TestApp {
    /// A new client, logged in as `email` with [`PASSWORD`].
    pub async fn log_in(&self, email: &str) -> Client {
        log_in(self.client(), email).await
    }
}

/// A verified customer with the password hash `hash`, logged in on `app`.
pub async fn customer(app: &TestApp, email: &str, name: &str, hash: &str) -> Client {
    create_customer(&app.engine, email, name, hash).await;
    log_in(app.client(), email).await
}

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
