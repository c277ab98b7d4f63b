//! The crowd: purchase attempts sent open-loop at their intended times, payments after a think
//! time, and every answer tallied with its latency from the moment it was meant to be sent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::shop::{Answer, Api, Sale};
use crate::progress::Bar;

/// The simulator's cards (API.md), and how often the crowd types each first.
const APPROVED: &str = "4242 4242 4242 4242";
const CARD_MIX: [(&str, u32); 5] = [
    (APPROVED, 75),
    ("4000 0000 0000 0002", 10), // declined: tried again with the approved card
    ("4000 0000 0000 9995", 5),  // card limit exceeded: tried again
    ("4000 0000 0000 0259", 5),  // times out but charged: paid in the background
    ("4000 0000 0000 0119", 5),  // times out, not charged: the hold expires
];
/// How long a customer thinks before paying, or before trying another card, in ms.
const THINK_MS: std::ops::Range<u64> = 100..1_000;
/// The slowest answer the latency histograms hold, in µs (a request gives up at 30 s).
const LATENCY_US_MAX: u64 = 120_000_000;
/// The number of time buckets the drop is cut into for the plots, at most.
const BUCKETS_MAX: u64 = 400;
const BUCKET_MS_MIN: u64 = 50;

/// What the crowd does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rate: f64,
    pub ramp_to: Option<f64>,
    pub duration: Duration,
    pub connections: usize,
    pub pay_share: f64,
    pub limit: u32,
    pub seed: u64,
}

impl Plan {
    /// Attempts a second, `at` seconds after the opening.
    fn rate_at(&self, at: f64) -> f64 {
        match self.ramp_to {
            Some(to) => self.rate + (to - self.rate) * at / self.duration.as_secs_f64(),
            None => self.rate,
        }
    }

    /// The plots' bucket width.
    pub fn bucket_ms(&self) -> u64 {
        let duration_ms = self.duration.as_millis() as u64;
        duration_ms.div_ceil(BUCKETS_MAX).max(BUCKET_MS_MIN)
    }
}

/// Which request an answer was to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Place,
    Pay,
}

/// How an answer counts in the plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Placed,
    Refused,
    Paid,
    Failed,
}

/// One time bucket of the drop.
pub struct Bucket {
    pub placed: u64,
    pub refused: u64,
    pub paid: u64,
    pub failed: u64,
    pub place_latency: Histogram<u64>,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            placed: 0,
            refused: 0,
            paid: 0,
            failed: 0,
            place_latency: latency_histogram(),
        }
    }
}

/// An order the crowd was answered 201 for.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: String,
    pub customer: usize,
    pub quantity: u64,
    /// Answered 200 `paid` to a payment.
    pub paid: bool,
}

/// Everything the crowd saw.
pub struct Tally {
    pub attempts: u64,
    /// Answers by (step, status, problem type; "transport" for no answer).
    pub answers: BTreeMap<(Step, u16, String), u64>,
    pub place_latency: Histogram<u64>,
    pub pay_latency: Histogram<u64>,
    /// From a placement's intended send to its `paid` answer.
    pub checkout_latency: Histogram<u64>,
    pub placed: Vec<Placed>,
    pub buckets: Vec<Bucket>,
    pub bucket_ms: u64,
    /// The most an attempt was sent after its intended time (the generator's own delay, or
    /// a wait for a free connection).
    pub send_lag_max: Duration,
    /// From the opening to the last answer.
    pub elapsed: Duration,
    /// The latest `reservation_expires_at` of an order placed, ms since the Unix epoch.
    pub holds_until_ms: u64,
}

impl Tally {
    pub(super) fn new(plan: &Plan) -> Tally {
        let bucket_ms = plan.bucket_ms();
        let buckets = (plan.duration.as_millis() as u64).div_ceil(bucket_ms) as usize;
        Tally {
            attempts: 0,
            answers: BTreeMap::new(),
            place_latency: latency_histogram(),
            pay_latency: latency_histogram(),
            checkout_latency: latency_histogram(),
            placed: Vec::new(),
            buckets: (0..buckets).map(|_| Bucket::new()).collect(),
            bucket_ms,
            send_lag_max: Duration::ZERO,
            elapsed: Duration::ZERO,
            holds_until_ms: 0,
        }
    }

    /// Counts an answer of `step` meant to be sent `at` after the opening.
    fn count(&mut self, step: Step, answer: &Sent, at: Duration, class: Class) {
        let latency_us = (answer.latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        *self
            .answers
            .entry((step, answer.status, answer.kind.clone()))
            .or_insert(0) += 1;
        self.send_lag_max = self.send_lag_max.max(answer.lag);
        let index = (at.as_millis() as u64 / self.bucket_ms) as usize;
        let last = self.buckets.len().saturating_sub(1);
        let bucket = self.buckets.get_mut(index.min(last));
        match step {
            Step::Place => {
                let _ = self.place_latency.record(latency_us);
                if let Some(bucket) = bucket {
                    let _ = bucket.place_latency.record(latency_us);
                    bump(bucket, class);
                }
            }
            Step::Pay => {
                let _ = self.pay_latency.record(latency_us);
                if let Some(bucket) = bucket {
                    bump(bucket, class);
                }
            }
        }
    }
}

fn bump(bucket: &mut Bucket, class: Class) {
    match class {
        Class::Placed => bucket.placed += 1,
        Class::Refused => bucket.refused += 1,
        Class::Paid => bucket.paid += 1,
        Class::Failed => bucket.failed += 1,
    }
}

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// The crowd's shared part.
struct Crowd {
    api: Api,
    sale: Sale,
    customers: Vec<String>,
    connections: Semaphore,
    tally: Mutex<Tally>,
    address: Value,
}

/// One answer, timed from its intended send.
struct Sent {
    status: u16,
    kind: String,
    body: Value,
    latency: Duration,
    lag: Duration,
}

impl Crowd {
    /// Sends a request meant for `intended`; a transport failure is status 0, kind
    /// "transport".
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: &Value,
        intended: Instant,
    ) -> Sent {
        // The semaphore is never closed: a permit always comes.
        let _connection = self.connections.acquire().await.ok();
        let lag = intended.elapsed();
        let mut request = self
            .api
            .http
            .request(method, format!("{}{path}", self.api.base))
            .bearer_auth(token)
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let answer = match request.send().await {
            Ok(answer) => {
                let status = answer.status().as_u16();
                match answer.bytes().await {
                    Ok(bytes) => Ok(Answer {
                        status,
                        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    }),
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        };
        let latency = intended.elapsed();
        match answer {
            Ok(answer) => Sent {
                status: answer.status,
                kind: answer.kind().to_string(),
                body: answer.body,
                latency,
                lag,
            },
            Err(_) => Sent {
                status: 0,
                kind: "transport".to_string(),
                body: Value::Null,
                latency,
                lag,
            },
        }
    }
}

/// One purchase attempt, decided up front so that a seed replays the same crowd.
struct Attempt {
    n: u64,
    intended: Instant,
    customer: usize,
    quantity: u64,
    /// The card tried first, and the think times before paying and before a second card;
    /// none if the customer walks away.
    pays: Option<(&'static str, Duration, Duration)>,
}

/// Runs the crowd of `plan` against `sale` and answers what it saw once every answer is in.
pub async fn run(
    api: &Api,
    sale: &Sale,
    customers: &[String],
    plan: &Plan,
    bar: &Bar,
) -> anyhow::Result<Tally> {
    use allot_engine::Progress;
    let crowd = Arc::new(Crowd {
        api: api.clone(),
        sale: sale.clone(),
        customers: customers.to_vec(),
        connections: Semaphore::new(plan.connections),
        tally: Mutex::new(Tally::new(plan)),
        address: address(),
    });
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut tasks = JoinSet::new();
    let duration = plan.duration.as_secs_f64();
    bar.start("the drop (seconds)", plan.duration.as_secs().max(1));
    let mut shown = 0;
    let mut at = 0.0;
    let mut n = 0;
    while at < duration {
        let intended = sale.opens_at + Duration::from_secs_f64(at);
        tokio::time::sleep_until(intended.into()).await;
        let attempt = decide(&mut rng, n, intended, customers.len(), plan);
        tasks.spawn(attempt_purchase(crowd.clone(), attempt));
        n += 1;
        at += 1.0 / plan.rate_at(at);
        while let Some(done) = tasks.try_join_next() {
            done.context("a purchase attempt failed")?;
        }
        let seconds = at as u64;
        if seconds > shown {
            bar.advance(seconds - shown);
            shown = seconds;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a purchase attempt failed")?;
    }
    let mut tally = std::mem::replace(&mut *crowd.tally.lock(), Tally::new(plan));
    tally.attempts = n;
    tally.elapsed = sale.opens_at.elapsed();
    Ok(tally)
}

fn decide(rng: &mut StdRng, n: u64, intended: Instant, customers: usize, plan: &Plan) -> Attempt {
    let customer = rng.random_range(0..customers);
    // Mostly one unit, some two, and a few more than a customer may have.
    let quantity = match rng.random_range(0..100) {
        0..80 => 1,
        80..95 => 2,
        _ => u64::from(plan.limit) + 1,
    };
    let pays = rng.random_bool(plan.pay_share).then(|| {
        let total: u32 = CARD_MIX.iter().map(|(_, weight)| weight).sum();
        let mut pick = rng.random_range(0..total);
        let card = CARD_MIX
            .iter()
            .find(|(_, weight)| {
                let hit = pick < *weight;
                pick = pick.saturating_sub(*weight);
                hit
            })
            .map_or(APPROVED, |(card, _)| card);
        let mut think = || Duration::from_millis(rng.random_range(THINK_MS));
        (card, think(), think())
    });
    Attempt {
        n,
        intended,
        customer,
        quantity,
        pays,
    }
}

async fn attempt_purchase(crowd: Arc<Crowd>, attempt: Attempt) {
    let token = &crowd.customers[attempt.customer];
    let key = format!("bench-{}-{}", crowd.sale.run, attempt.n);
    let body = json!({
        "items": [{ "product_id": crowd.sale.product, "quantity": attempt.quantity }],
        "shipping_address": crowd.address,
    });
    let at = attempt
        .intended
        .saturating_duration_since(crowd.sale.opens_at);
    let sent = crowd
        .send(
            reqwest::Method::POST,
            "/api/v1/orders",
            token,
            Some(&key),
            &body,
            attempt.intended,
        )
        .await;
    let class = match sent.status {
        201 => Class::Placed,
        409 | 422 => Class::Refused,
        _ => Class::Failed,
    };
    let order = sent.body["id"].as_str().map(String::from);
    crowd.tally.lock().count(Step::Place, &sent, at, class);
    let (Some(order), 201) = (order, sent.status) else {
        return;
    };
    let index = {
        let mut tally = crowd.tally.lock();
        let expires = sent.body["reservation_expires_at"].as_str();
        if let Some(ms) = expires.and_then(allot_engine::parse_rfc3339) {
            tally.holds_until_ms = tally.holds_until_ms.max(ms);
        }
        tally.placed.push(Placed {
            order: order.clone(),
            customer: attempt.customer,
            quantity: attempt.quantity,
            paid: false,
        });
        tally.placed.len() - 1
    };
    let Some((card, think, think_again)) = attempt.pays else {
        return;
    };
    let mut card = card;
    let mut intended = Instant::now() + think;
    // At most two cards: a refused one is followed by the approved card.
    for _ in 0..2 {
        tokio::time::sleep_until(intended.into()).await;
        let path = format!("/api/v1/orders/{order}/payment");
        let body = json!({ "card_number": card, "expiry": "12/39", "cvc": "123" });
        let paid = crowd
            .send(reqwest::Method::POST, &path, token, None, &body, intended)
            .await;
        let class = match paid.status {
            200 => Class::Paid,
            402 | 409 | 504 => Class::Refused,
            _ => Class::Failed,
        };
        let at = intended.saturating_duration_since(crowd.sale.opens_at);
        let mut tally = crowd.tally.lock();
        tally.count(Step::Pay, &paid, at, class);
        if paid.status == 200 {
            let checkout = attempt.intended.elapsed().as_micros() as u64;
            let _ = tally
                .checkout_latency
                .record(checkout.clamp(1, LATENCY_US_MAX));
            tally.placed[index].paid = true;
            return;
        }
        if paid.status != 402 {
            return;
        }
        card = APPROVED;
        intended = Instant::now() + think_again;
    }
}

/// The crowd's shipping address (every customer ships to the same flat).
fn address() -> Value {
    json!({
        "recipient": "Kim Min-ji",
        "phone": "+82 10-1234-5678",
        "line1": "152 Teheran-ro, Gangnam-gu",
        "city": "Seoul",
        "postal_code": "06236",
        "country": "KR",
    })
}
