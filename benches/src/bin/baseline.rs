//! The alternatives a buyer would pick, behind allot's own request shapes, for
//! `benches/compare/run.sh`: the same axum stack answering the few routes `allot bench drop
//! --url … --product prd_1` uses (the product, its stock, `POST /api/v1/orders`, the customer's
//! orders), each mode as durable as it honestly can be made:
//!
//! - `hello`: the ceiling. No state; every order attempt is answered `sold_out` at once.
//! - `redis-lua`: the common practice. An atomic Lua check-and-decrement in Redis (stock and the
//!   customer's units), then the order inserted into MariaDB (autocommit; the server runs with
//!   `innodb_flush_log_at_trx_commit=1`, an fsync a commit). Redis runs with `appendfsync
//!   always`. A crash between the two loses a unit to no order; the script says so.
//! - `fair-lock`: the design allot replaces. A per-product fair lock in Redis (the Redisson
//!   fair-lock protocol: a queue, timeouts, a lease), and under it a MariaDB transaction:
//!   `UPDATE … SET stock = stock - ? WHERE stock >= ?`, the customer's units, the order insert,
//!   committed per order.
//! - `postgres`: what open-source shops do. One PostgreSQL transaction: `SELECT … FOR UPDATE`
//!   on the stock row, the customer's units, the update and the order insert
//!   (`synchronous_commit = on`, `fsync = on`).
//!
//! A customer is the bearer token itself (the script writes `customer-N` tokens); every order
//! placed here is final (`paid`), as there is no payment step to compare.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

const PRODUCT: &str = "prd_1";
/// Connections each mode keeps to its databases.
const POOL: usize = 32;
/// The fair lock's lease and how long a waiter keeps its place in the queue, in ms.
const LOCK_LEASE_MS: u64 = 30_000;
const LOCK_WAIT_MS: u64 = 5_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Hello,
    RedisLua,
    FairLock,
    Postgres,
}

struct Args {
    mode: Mode,
    listen: String,
    stock: u64,
    limit: u64,
    redis: String,
    mysql: String,
    postgres: String,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        mode: Mode::Hello,
        listen: "127.0.0.1:0".into(),
        stock: 100,
        limit: 2,
        redis: "redis://127.0.0.1:6379/".into(),
        mysql: "mysql://root@127.0.0.1:3306/shop".into(),
        postgres: "host=127.0.0.1 user=postgres dbname=postgres".into(),
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => {
                args.mode = match value.as_str() {
                    "hello" => Mode::Hello,
                    "redis-lua" => Mode::RedisLua,
                    "fair-lock" => Mode::FairLock,
                    "postgres" => Mode::Postgres,
                    _ => return Err(format!("unknown mode {value}")),
                }
            }
            "--listen" => args.listen = value,
            "--stock" => args.stock = value.parse().map_err(|_| "--stock: a count")?,
            "--limit" => args.limit = value.parse().map_err(|_| "--limit: a count")?,
            "--redis" => args.redis = value,
            "--mysql" => args.mysql = value,
            "--postgres" => args.postgres = value,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

/// A plain pool: a permit, then a connection off the stack.
struct Pool<T> {
    permits: tokio::sync::Semaphore,
    idle: parking_lot::Mutex<Vec<T>>,
}

impl<T> Pool<T> {
    fn new(items: Vec<T>) -> Pool<T> {
        Pool {
            permits: tokio::sync::Semaphore::new(items.len()),
            idle: parking_lot::Mutex::new(items),
        }
    }

    async fn take(&self) -> T {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the pool is never closed");
        permit.forget();
        self.idle
            .lock()
            .pop()
            .expect("a permit stands for an idle item")
    }

    fn give(&self, item: T) {
        self.idle.lock().push(item);
        self.permits.add_permits(1);
    }
}

struct Shop {
    mode: Mode,
    stock: u64,
    limit: u64,
    redis: Option<redis::aio::MultiplexedConnection>,
    mysql: Option<mysql_async::Pool>,
    postgres: Option<Pool<tokio_postgres::Client>>,
    next_order: AtomicU64,
    /// The fair lock's waiters by thread id, to tell the next one when the lock is let go.
    waiters: parking_lot::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Notify>>>,
}

impl Shop {
    /// A MariaDB connection from the pool (the Redis modes only).
    async fn mysql_conn(&self) -> Result<mysql_async::Conn, String> {
        let pool = self.mysql.as_ref().ok_or("no mysql")?;
        pool.get_conn().await.map_err(|e| e.to_string())
    }
}

type Shared = Arc<Shop>;

/// What an order attempt came to.
enum Outcome {
    Placed(u64),
    SoldOut,
    OverLimit,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args().map_err(|e| format!("baseline: {e}"))?;
    let mut shop = Shop {
        mode: args.mode,
        stock: args.stock,
        limit: args.limit,
        redis: None,
        mysql: None,
        postgres: None,
        next_order: AtomicU64::new(1),
        waiters: parking_lot::Mutex::new(std::collections::HashMap::new()),
    };
    match args.mode {
        Mode::Hello => {}
        Mode::RedisLua | Mode::FairLock => {
            let client = redis::Client::open(args.redis.as_str())?;
            let mut redis = client.get_multiplexed_async_connection().await?;
            let _: () = redis::cmd("FLUSHALL").query_async(&mut redis).await?;
            let _: () = redis::cmd("SET")
                .arg("stock")
                .arg(args.stock)
                .query_async(&mut redis)
                .await?;
            let mysql = mysql_async::Pool::new(
                mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&args.mysql)?)
                    .pool_opts(mysql_async::PoolOpts::default().with_constraints(
                        mysql_async::PoolConstraints::new(POOL, POOL).expect("valid bounds"),
                    )),
            );
            mysql_schema(&mysql, args.stock).await?;
            shop.redis = Some(redis);
            shop.mysql = Some(mysql);
        }
        Mode::Postgres => {
            let mut clients = Vec::with_capacity(POOL);
            for _ in 0..POOL {
                let (client, connection) =
                    tokio_postgres::connect(&args.postgres, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                clients.push(client);
            }
            clients[0]
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS orders, stock;
                     CREATE TABLE stock (product TEXT PRIMARY KEY, remaining BIGINT NOT NULL);
                     CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, customer TEXT NOT NULL,
                         product TEXT NOT NULL, quantity BIGINT NOT NULL,
                         idempotency_key TEXT NOT NULL UNIQUE);
                     CREATE INDEX orders_customer ON orders (customer);
                     INSERT INTO stock VALUES ('{PRODUCT}', {});",
                    args.stock
                ))
                .await?;
            shop.postgres = Some(Pool::new(clients));
        }
    }
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/api/v1/products/{id}", get(product))
        .route("/api/v1/products/{id}/stock", get(stock))
        .route("/api/v1/orders", post(place).get(orders))
        .with_state(Arc::new(shop));
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn mysql_schema(pool: &mysql_async::Pool, stock: u64) -> Result<(), mysql_async::Error> {
    use mysql_async::prelude::Queryable;
    let mut conn = pool.get_conn().await?;
    conn.query_drop(format!(
        "DROP TABLE IF EXISTS orders, stock;
         CREATE TABLE stock (product VARCHAR(32) PRIMARY KEY, remaining BIGINT NOT NULL)
             ENGINE=InnoDB;
         CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY,
             customer VARCHAR(64) NOT NULL, product VARCHAR(32) NOT NULL,
             quantity BIGINT NOT NULL, idempotency_key VARCHAR(128) NOT NULL UNIQUE,
             INDEX (customer)) ENGINE=InnoDB;
         INSERT INTO stock VALUES ('{PRODUCT}', {stock});"
    ))
    .await
}

fn problem(status: StatusCode, kind: &str) -> Response {
    (
        status,
        [("content-type", "application/problem+json")],
        Json(json!({ "type": kind, "title": kind, "status": status.as_u16() })),
    )
        .into_response()
}

fn customer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ")?.to_string())
}

async fn product(State(shop): State<Shared>, Path(id): Path<String>) -> Response {
    if id != PRODUCT {
        return problem(StatusCode::NOT_FOUND, "product_not_found");
    }
    Json(json!({
        "id": PRODUCT,
        "kind": "limited",
        "status": "on_sale",
        "stock_total": shop.stock,
        "per_user_limit": shop.limit,
        "sale_opens_at": allot_engine::rfc3339(now_ms() + 1_500),
    }))
    .into_response()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Units sold are the orders' units as the database holds them, not the counter's complement:
/// an oversell or a lost insert shows.
async fn stock(State(shop): State<Shared>) -> Response {
    let read = match shop.mode {
        Mode::Hello => Ok((shop.stock, 0)),
        Mode::RedisLua | Mode::FairLock => mysql_units(&shop).await,
        Mode::Postgres => postgres_units(&shop).await,
    };
    match read {
        // Redis's counter and MariaDB's orders are read apart: units taken from the counter
        // whose order is not inserted yet are "reserved"; one never inserted stays so.
        Ok((remaining, sold)) => Json(json!({
            "product_id": PRODUCT,
            "remaining": remaining,
            "reserved": shop.stock.saturating_sub(remaining + sold),
            "sold": sold,
        }))
        .into_response(),
        Err(error) => {
            eprintln!("stock: {error}");
            problem(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        }
    }
}

async fn mysql_units(shop: &Shop) -> Result<(u64, u64), String> {
    use mysql_async::prelude::Queryable;
    let mut redis = shop.redis.clone().ok_or("no redis")?;
    let mut conn = shop.mysql_conn().await?;
    let sold: Option<u64> = conn
        .query_first("SELECT CAST(COALESCE(SUM(quantity), 0) AS UNSIGNED) FROM orders")
        .await
        .map_err(|e| e.to_string())?;
    let remaining: u64 = if shop.mode == Mode::RedisLua {
        redis::cmd("GET")
            .arg("stock")
            .query_async(&mut redis)
            .await
            .map_err(|e| e.to_string())?
    } else {
        conn.query_first("SELECT CAST(remaining AS UNSIGNED) FROM stock")
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(0)
    };
    Ok((remaining, sold.unwrap_or(0)))
}

async fn postgres_units(shop: &Shop) -> Result<(u64, u64), String> {
    let pool = shop.postgres.as_ref().ok_or("no postgres")?;
    let client = pool.take().await;
    let read = client
        .query_one(
            "SELECT (SELECT remaining FROM stock), (SELECT COALESCE(SUM(quantity), 0)::BIGINT FROM orders)",
            &[],
        )
        .await;
    pool.give(client);
    let row = read.map_err(|e| e.to_string())?;
    let (remaining, sold): (i64, i64) = (row.get(0), row.get(1));
    Ok((remaining.max(0) as u64, sold.max(0) as u64))
}

async fn place(
    State(shop): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let Some(customer) = customer(&headers) else {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|key| key.to_str().ok())
        .map(String::from)
    else {
        return problem(StatusCode::BAD_REQUEST, "missing_idempotency_key");
    };
    let quantity = body["items"][0]["quantity"].as_u64().unwrap_or(0);
    if quantity == 0 || body["items"][0]["product_id"] != PRODUCT {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_quantity");
    }
    if quantity > shop.limit {
        return problem(StatusCode::CONFLICT, "purchase_limit_exceeded");
    }
    let placed = match shop.mode {
        Mode::Hello => Ok(Outcome::SoldOut),
        Mode::RedisLua => redis_lua(&shop, &customer, &key, quantity).await,
        Mode::FairLock => fair_lock(&shop, &customer, &key, quantity).await,
        Mode::Postgres => row_lock(&shop, &customer, &key, quantity).await,
    };
    match placed {
        Ok(Outcome::Placed(id)) => {
            (StatusCode::CREATED, Json(order_json(id, quantity))).into_response()
        }
        Ok(Outcome::SoldOut) => problem(StatusCode::CONFLICT, "sold_out"),
        Ok(Outcome::OverLimit) => problem(StatusCode::CONFLICT, "purchase_limit_exceeded"),
        Err(error) => {
            eprintln!("place: {error}");
            problem(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        }
    }
}

fn order_json(id: u64, quantity: u64) -> Value {
    json!({
        "id": format!("ord_{id}"),
        "status": "paid",
        "items": [{ "product_id": PRODUCT, "quantity": quantity }],
    })
}

/// The customer's units and the stock in one atomic step of Redis.
const CHECK_AND_DECREMENT: &str = r"
local stock = tonumber(redis.call('GET', KEYS[1]))
local quantity = tonumber(ARGV[2])
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held + quantity > tonumber(ARGV[3]) then return -2 end
if stock < quantity then return -1 end
redis.call('DECRBY', KEYS[1], quantity)
redis.call('HINCRBY', KEYS[2], ARGV[1], quantity)
return stock - quantity
";

async fn redis_lua(
    shop: &Shop,
    customer: &str,
    key: &str,
    quantity: u64,
) -> Result<Outcome, String> {
    use mysql_async::prelude::Queryable;
    let mut redis = shop.redis.clone().ok_or("no redis")?;
    let left: i64 = redis::Script::new(CHECK_AND_DECREMENT)
        .key("stock")
        .key("held")
        .arg(customer)
        .arg(quantity)
        .arg(shop.limit)
        .invoke_async(&mut redis)
        .await
        .map_err(|e| e.to_string())?;
    match left {
        -2 => return Ok(Outcome::OverLimit),
        -1 => return Ok(Outcome::SoldOut),
        _ => {}
    }
    let mut conn = shop.mysql_conn().await?;
    conn.exec_drop(
        "INSERT INTO orders (customer, product, quantity, idempotency_key) VALUES (?, ?, ?, ?)",
        (customer, PRODUCT, quantity, key),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Outcome::Placed(conn.last_insert_id().unwrap_or(0)))
}

/// Redisson's fair lock, `tryLockInnerAsync`: the queue of waiters and their timeouts, stale
/// waiters dropped, the lock granted only to the first in the queue. Answers nil when the lock
/// is taken, else the ms to wait.
const FAIR_TRY_LOCK: &str = r"
while true do
  local first = redis.call('lindex', KEYS[2], 0)
  if first == false then break end
  local timeout = tonumber(redis.call('zscore', KEYS[3], first))
  if timeout <= tonumber(ARGV[4]) then
    redis.call('zrem', KEYS[3], first)
    redis.call('lpop', KEYS[2])
  else break end
end
if (redis.call('exists', KEYS[1]) == 0) and ((redis.call('exists', KEYS[2]) == 0)
    or (redis.call('lindex', KEYS[2], 0) == ARGV[2])) then
  redis.call('lpop', KEYS[2])
  redis.call('zrem', KEYS[3], ARGV[2])
  local keys = redis.call('zrange', KEYS[3], 0, -1)
  for i = 1, #keys, 1 do
    redis.call('zincrby', KEYS[3], -tonumber(ARGV[3]), keys[i])
  end
  redis.call('hset', KEYS[1], ARGV[2], 1)
  redis.call('pexpire', KEYS[1], ARGV[1])
  return nil
end
if redis.call('hexists', KEYS[1], ARGV[2]) == 1 then
  redis.call('hincrby', KEYS[1], ARGV[2], 1)
  redis.call('pexpire', KEYS[1], ARGV[1])
  return nil
end
local timeout = redis.call('zscore', KEYS[3], ARGV[2])
if timeout ~= false then
  return timeout - tonumber(ARGV[3]) - tonumber(ARGV[4])
end
local last = redis.call('lindex', KEYS[2], -1)
local ttl
if last ~= false and last ~= ARGV[2] then
  ttl = tonumber(redis.call('zscore', KEYS[3], last)) - tonumber(ARGV[4])
else
  ttl = redis.call('pttl', KEYS[1])
end
local deadline = ttl + tonumber(ARGV[3]) + tonumber(ARGV[4])
if redis.call('zadd', KEYS[3], deadline, ARGV[2]) == 1 then
  redis.call('rpush', KEYS[2], ARGV[2])
end
return ttl
";

/// Redisson's fair unlock: the hold count down, the lock deleted at zero; answers the next
/// waiter in the queue, whom Redisson tells by a message on its channel.
const FAIR_UNLOCK: &str = r"
if redis.call('hexists', KEYS[1], ARGV[1]) == 0 then return false end
local counter = redis.call('hincrby', KEYS[1], ARGV[1], -1)
if counter > 0 then return false end
redis.call('del', KEYS[1])
return redis.call('lindex', KEYS[2], 0)
";

async fn fair_lock(
    shop: &Shop,
    customer: &str,
    key: &str,
    quantity: u64,
) -> Result<Outcome, String> {
    let mut redis = shop.redis.clone().ok_or("no redis")?;
    let thread = format!(
        "{}:{}",
        std::process::id(),
        shop.next_order.fetch_add(1, Ordering::Relaxed)
    );
    let keys = ["lock:prd_1", "lock-queue:prd_1", "lock-timeout:prd_1"];
    // Redisson's waiter subscribes to its channel and sleeps until told or until its turn's
    // timeout; here the channel is in-process (every waiter is in this process).
    let told = Arc::new(tokio::sync::Notify::new());
    shop.waiters.lock().insert(thread.clone(), told.clone());
    let taken = loop {
        let wait: Result<Option<i64>, _> = redis::Script::new(FAIR_TRY_LOCK)
            .key(keys[0])
            .key(keys[1])
            .key(keys[2])
            .arg(LOCK_LEASE_MS)
            .arg(&thread)
            .arg(LOCK_WAIT_MS)
            .arg(now_ms())
            .invoke_async(&mut redis)
            .await;
        match wait {
            Err(error) => break Err(error.to_string()),
            Ok(None) => break Ok(()),
            Ok(Some(ms)) => {
                let ms = (ms.max(0) as u64).clamp(1, LOCK_WAIT_MS);
                let _ = tokio::time::timeout(Duration::from_millis(ms), told.notified()).await;
            }
        }
    };
    shop.waiters.lock().remove(&thread);
    taken?;
    let placed = locked_order(shop, customer, key, quantity).await;
    let next: Option<String> = redis::Script::new(FAIR_UNLOCK)
        .key(keys[0])
        .key(keys[1])
        .arg(&thread)
        .invoke_async(&mut redis)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(next) = next
        && let Some(waiter) = shop.waiters.lock().get(&next)
    {
        waiter.notify_one();
    }
    placed
}

/// Under the fair lock: MariaDB's conditional update, the customer's units and the insert,
/// one transaction committed per order.
async fn locked_order(
    shop: &Shop,
    customer: &str,
    key: &str,
    quantity: u64,
) -> Result<Outcome, String> {
    use mysql_async::prelude::Queryable;
    let mut conn = shop.mysql_conn().await?;
    let mut tx = conn
        .start_transaction(mysql_async::TxOpts::default())
        .await
        .map_err(|e| e.to_string())?;
    let held: Option<u64> = tx
        .exec_first(
            "SELECT CAST(COALESCE(SUM(quantity), 0) AS UNSIGNED) FROM orders WHERE customer = ?",
            (customer,),
        )
        .await
        .map_err(|e| e.to_string())?;
    if held.unwrap_or(0) + quantity > shop.limit {
        tx.rollback().await.map_err(|e| e.to_string())?;
        return Ok(Outcome::OverLimit);
    }
    tx.exec_drop(
        "UPDATE stock SET remaining = remaining - ? WHERE product = ? AND remaining >= ?",
        (quantity, PRODUCT, quantity),
    )
    .await
    .map_err(|e| e.to_string())?;
    if tx.affected_rows() == 0 {
        tx.rollback().await.map_err(|e| e.to_string())?;
        return Ok(Outcome::SoldOut);
    }
    tx.exec_drop(
        "INSERT INTO orders (customer, product, quantity, idempotency_key) VALUES (?, ?, ?, ?)",
        (customer, PRODUCT, quantity, key),
    )
    .await
    .map_err(|e| e.to_string())?;
    let id = tx.last_insert_id().unwrap_or(0);
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(Outcome::Placed(id))
}

async fn row_lock(
    shop: &Shop,
    customer: &str,
    key: &str,
    quantity: u64,
) -> Result<Outcome, String> {
    let pool = shop.postgres.as_ref().ok_or("no postgres")?;
    let mut client = pool.take().await;
    let placed = row_lock_on(&mut client, shop.limit, customer, key, quantity).await;
    pool.give(client);
    placed.map_err(|e| e.to_string())
}

async fn row_lock_on(
    client: &mut tokio_postgres::Client,
    limit: u64,
    customer: &str,
    key: &str,
    quantity: u64,
) -> Result<Outcome, tokio_postgres::Error> {
    let quantity = quantity as i64;
    let tx = client.transaction().await?;
    let remaining: i64 = tx
        .query_one(
            "SELECT remaining FROM stock WHERE product = $1 FOR UPDATE",
            &[&PRODUCT],
        )
        .await?
        .get(0);
    let held: i64 = tx
        .query_one(
            "SELECT COALESCE(SUM(quantity), 0)::BIGINT FROM orders WHERE customer = $1",
            &[&customer],
        )
        .await?
        .get(0);
    if held + quantity > limit as i64 {
        tx.rollback().await?;
        return Ok(Outcome::OverLimit);
    }
    if remaining < quantity {
        tx.rollback().await?;
        return Ok(Outcome::SoldOut);
    }
    tx.execute(
        "UPDATE stock SET remaining = remaining - $1 WHERE product = $2",
        &[&quantity, &PRODUCT],
    )
    .await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO orders (customer, product, quantity, idempotency_key)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[&customer, &PRODUCT, &quantity, &key],
        )
        .await?
        .get(0);
    tx.commit().await?;
    Ok(Outcome::Placed(id as u64))
}

/// The customer's orders, all on one page.
async fn orders(State(shop): State<Shared>, headers: HeaderMap) -> Response {
    let Some(customer) = customer(&headers) else {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    let read: Result<Vec<(u64, u64)>, String> = match shop.mode {
        Mode::Hello => Ok(Vec::new()),
        Mode::RedisLua | Mode::FairLock => {
            use mysql_async::prelude::Queryable;
            match shop.mysql_conn().await {
                Err(error) => Err(error),
                Ok(mut conn) => conn
                    .exec(
                        "SELECT CAST(id AS UNSIGNED), CAST(quantity AS UNSIGNED) FROM orders WHERE customer = ?",
                        (customer,),
                    )
                    .await
                    .map_err(|e| e.to_string()),
            }
        }
        Mode::Postgres => match shop.postgres.as_ref() {
            None => Err("no postgres".into()),
            Some(pool) => {
                let client = pool.take().await;
                let rows = client
                    .query(
                        "SELECT id, quantity FROM orders WHERE customer = $1",
                        &[&customer],
                    )
                    .await;
                pool.give(client);
                rows.map(|rows| {
                    rows.iter()
                        .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
                        .collect()
                })
                .map_err(|e| e.to_string())
            }
        },
    };
    match read {
        Ok(rows) => Json(json!({
            "items": rows.into_iter().map(|(id, quantity)| order_json(id, quantity)).collect::<Vec<_>>(),
            "next_cursor": null,
        }))
        .into_response(),
        Err(error) => {
            eprintln!("orders: {error}");
            problem(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        }
    }
}
