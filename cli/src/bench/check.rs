//! What must hold after a drop, checked through the API: nothing oversold, every unit
//! accounted for at every sample of the stock, per-customer limits held, every hold sold or
//! released once its deadline passed, and every acknowledged order and payment still there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use super::crowd::{Step, Tally};
use super::shop::{Api, Sale, Units};

/// How often the stock is read during the drop.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// How long after the holds' deadline the payment resolver and the expiry may take.
const SETTLE_SLACK: Duration = Duration::from_secs(30);
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// Customers whose orders are read at once at the end.
const READERS: usize = 32;

/// The answers a crowd may get during a drop: anything else fails the run.
const DOCUMENTED: [(Step, u16, &str); 10] = [
    (Step::Place, 201, ""),
    (Step::Place, 409, "sold_out"),
    (Step::Place, 409, "sale_not_open"),
    (Step::Place, 409, "sale_closed"),
    (Step::Place, 409, "purchase_limit_exceeded"),
    (Step::Pay, 200, ""),
    (Step::Pay, 402, "payment_declined"),
    (Step::Pay, 402, "card_limit_exceeded"),
    (Step::Pay, 504, "payment_timeout"),
    (Step::Pay, 409, "order_expired"),
];

/// Order statuses whose units are no longer the customer's.
const GIVEN_BACK: [&str; 3] = ["expired", "cancelled", "returned"];
/// Order statuses that still hold units unpaid.
const HOLDING: [&str; 2] = ["pending_payment", "payment_failed"];
/// Order statuses of units sold.
const SOLD: [&str; 4] = ["paid", "shipped", "delivered", "return_requested"];

/// One claim and whether it held.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &'static str, passed: bool, detail: impl Into<String>) -> Check {
        Check {
            name,
            passed,
            detail: detail.into(),
        }
    }
}

/// A read of the stock, `at_ms` after the opening (negative before it); `None` if it failed.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at_ms: i64,
    pub units: Option<Units>,
}

/// Reads the stock every [`SAMPLE_EVERY`] until stopped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Watcher {
    pub fn start(api: Api, product: String, opens_at: Instant) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                let now = Instant::now();
                let at_ms = if now >= opens_at {
                    (now - opens_at).as_millis() as i64
                } else {
                    -((opens_at - now).as_millis() as i64)
                };
                let units = api.stock(&product).await.ok();
                samples.push(Sample { at_ms, units });
            }
            samples
        });
        Watcher { stop, task }
    }

    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// An order of the drop's product as its customer reads it at the end.
#[derive(Debug, Clone)]
pub struct Found {
    pub customer: usize,
    pub id: String,
    pub status: String,
    pub quantity: u64,
}

/// The shop once the drop is over and every hold's deadline passed.
#[derive(Debug, Clone)]
pub struct Settled {
    /// No unit was held any more within the deadline.
    pub settled: bool,
    /// From the last arrival until then.
    pub waited: Duration,
    pub units: Units,
    pub orders: Vec<Found>,
}

/// Waits until no unit of the drop is held (every hold paid or expired), at most until
/// [`SETTLE_SLACK`] after `holds_until_ms` (the latest deadline of an order placed, ms since
/// the Unix epoch), then reads every customer's orders of it.
pub async fn settle(
    api: &Api,
    sale: &Sale,
    customers: &[String],
    holds_until_ms: u64,
) -> anyhow::Result<Settled> {
    let start = Instant::now();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let deadline =
        start + Duration::from_millis(holds_until_ms.saturating_sub(now_ms)) + SETTLE_SLACK;
    let (settled, units) = loop {
        let units = api.stock(&sale.product).await?;
        if units.reserved == 0 {
            break (true, units);
        }
        if Instant::now() > deadline {
            break (false, units);
        }
        tokio::time::sleep(SETTLE_POLL).await;
    };
    let waited = start.elapsed();
    let mut orders = Vec::new();
    let mut readers = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < customers.len() || !readers.is_empty() {
        while next < customers.len() && readers.len() < READERS {
            let (api, token, customer) = (api.clone(), customers[next].clone(), next);
            readers.spawn(async move { (customer, api.orders_of(&token).await) });
            next += 1;
        }
        if let Some(read) = readers.join_next().await {
            let (customer, read) = read.context("reading a customer's orders")?;
            let read = read.with_context(|| format!("the orders of customer {customer}"))?;
            orders.extend(
                read.iter()
                    .filter_map(|order| found(customer, order, &sale.product)),
            );
        }
    }
    Ok(Settled {
        settled,
        waited,
        units,
        orders,
    })
}

/// The order `order` of `customer` if it buys `product`.
fn found(customer: usize, order: &Value, product: &str) -> Option<Found> {
    let items = order["items"].as_array()?;
    let quantity: u64 = items
        .iter()
        .filter(|item| item["product_id"] == product)
        .filter_map(|item| item["quantity"].as_u64())
        .sum();
    (quantity > 0).then(|| Found {
        customer,
        id: order["id"].as_str().unwrap_or_default().to_string(),
        status: order["status"].as_str().unwrap_or_default().to_string(),
        quantity,
    })
}

/// Every check of a drop.
pub fn all(sale: &Sale, samples: &[Sample], settled: &Settled, tally: &Tally) -> Vec<Check> {
    vec![
        readable(samples),
        never_oversold(sale, samples, settled),
        conserved(sale, samples, settled),
        limits_held(sale, settled),
        holds_resolved(settled),
        sold_is_paid(settled),
        acknowledged_kept(settled, tally),
        documented_answers(tally),
    ]
}

fn readable(samples: &[Sample]) -> Check {
    let failed = samples.iter().filter(|s| s.units.is_none()).count();
    Check::new(
        "the stock was readable at every sample",
        failed == 0 && !samples.is_empty(),
        format!("{} samples, {failed} failed", samples.len()),
    )
}

fn never_oversold(sale: &Sale, samples: &[Sample], settled: &Settled) -> Check {
    let most = samples
        .iter()
        .filter_map(|s| s.units)
        .chain([settled.units])
        .map(|units| units.sold)
        .max()
        .unwrap_or(0);
    Check::new(
        "nothing oversold",
        most <= sale.stock,
        format!("at most {most} sold of {}", sale.stock),
    )
}

fn conserved(sale: &Sale, samples: &[Sample], settled: &Settled) -> Check {
    let off: Vec<String> = samples
        .iter()
        .filter_map(|s| Some((s.at_ms, s.units?)))
        .chain([(i64::MAX, settled.units)])
        .filter(|(_, units)| units.total() != sale.stock)
        .map(|(at, units)| format!("{units:?} at {at} ms"))
        .collect();
    Check::new(
        "remaining + reserved + sold = stock at every sample",
        off.is_empty(),
        if off.is_empty() {
            format!("{} samples and the final read", samples.len())
        } else {
            format!("{} samples off, first {}", off.len(), off[0])
        },
    )
}

fn limits_held(sale: &Sale, settled: &Settled) -> Check {
    let mut owned: BTreeMap<usize, u64> = BTreeMap::new();
    for order in &settled.orders {
        if !GIVEN_BACK.contains(&order.status.as_str()) {
            *owned.entry(order.customer).or_insert(0) += order.quantity;
        }
    }
    let over: Vec<_> = owned
        .iter()
        .filter(|(_, units)| **units > sale.limit)
        .collect();
    Check::new(
        "no customer holds or owns more than the limit",
        over.is_empty(),
        match over.first() {
            None => format!("{} customers own units, limit {}", owned.len(), sale.limit),
            Some((customer, units)) => format!(
                "{} customers over the limit {}; customer {customer} has {units}",
                over.len(),
                sale.limit
            ),
        },
    )
}

fn holds_resolved(settled: &Settled) -> Check {
    let holding = settled
        .orders
        .iter()
        .filter(|order| HOLDING.contains(&order.status.as_str()))
        .count();
    Check::new(
        "every hold was sold or released after its deadline",
        settled.settled && settled.units.reserved == 0 && holding == 0,
        format!(
            "{} units still reserved, {holding} orders still holding, {:.1} s after the last arrival",
            settled.units.reserved,
            settled.waited.as_secs_f64()
        ),
    )
}

fn sold_is_paid(settled: &Settled) -> Check {
    let paid: u64 = settled
        .orders
        .iter()
        .filter(|order| SOLD.contains(&order.status.as_str()))
        .map(|order| order.quantity)
        .sum();
    Check::new(
        "units sold = units of paid orders",
        paid == settled.units.sold,
        format!("{} sold, {paid} in paid orders", settled.units.sold),
    )
}

fn acknowledged_kept(settled: &Settled, tally: &Tally) -> Check {
    let found: BTreeMap<(&str, usize), &Found> = settled
        .orders
        .iter()
        .map(|order| ((order.id.as_str(), order.customer), order))
        .collect();
    let (mut missing, mut changed, mut unpaid) = (0, 0, 0);
    for placed in &tally.placed {
        match found.get(&(placed.order.as_str(), placed.customer)) {
            None => missing += 1,
            Some(order) if order.quantity != placed.quantity => changed += 1,
            Some(order) if placed.paid && !SOLD.contains(&order.status.as_str()) => unpaid += 1,
            Some(_) => {}
        }
    }
    Check::new(
        "every acknowledged order and payment is kept",
        missing == 0 && changed == 0 && unpaid == 0,
        format!(
            "{} orders acknowledged: {missing} missing, {changed} with other units, \
             {unpaid} acknowledged paid but not paid",
            tally.placed.len()
        ),
    )
}

fn documented_answers(tally: &Tally) -> Check {
    let odd: Vec<String> = tally
        .answers
        .iter()
        .filter(|((step, status, kind), _)| !DOCUMENTED.contains(&(*step, *status, kind.as_str())))
        .map(|((step, status, kind), count)| format!("{step:?} {status} {kind:?} ×{count}"))
        .collect();
    Check::new(
        "only documented answers (no 5xx, no failed connection)",
        odd.is_empty(),
        if odd.is_empty() {
            "none other".to_string()
        } else {
            odd.join(", ")
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale() -> Sale {
        Sale {
            product: "prd_1".into(),
            stock: 10,
            limit: 2,
            opens_at: Instant::now(),
            run: "test".into(),
        }
    }

    fn sample(at_ms: i64, remaining: u64, reserved: u64, sold: u64) -> Sample {
        Sample {
            at_ms,
            units: Some(units(remaining, reserved, sold)),
        }
    }

    fn order(customer: usize, id: &str, status: &str, quantity: u64) -> Found {
        Found {
            customer,
            id: id.into(),
            status: status.into(),
            quantity,
        }
    }

    fn units(remaining: u64, reserved: u64, sold: u64) -> Units {
        Units {
            remaining,
            reserved,
            sold,
        }
    }

    fn settled(units: Units, orders: Vec<Found>) -> Settled {
        Settled {
            settled: true,
            waited: Duration::ZERO,
            units,
            orders,
        }
    }

    fn tally() -> Tally {
        let plan = super::super::crowd::Plan {
            rate: 10.0,
            ramp_to: None,
            duration: Duration::from_secs(1),
            connections: 1,
            pay_share: 1.0,
            limit: 2,
            seed: 1,
        };
        Tally::new(&plan)
    }

    fn passed(checks: &[Check]) -> BTreeMap<&'static str, bool> {
        checks.iter().map(|c| (c.name, c.passed)).collect()
    }

    #[test]
    fn a_clean_drop_passes_every_check() {
        let end = units(7, 0, 3);
        let orders = vec![
            order(0, "ord_1", "paid", 2),
            order(1, "ord_2", "paid", 1),
            order(1, "ord_3", "expired", 2),
        ];
        let samples = [
            sample(-50, 10, 0, 0),
            sample(0, 5, 5, 0),
            sample(50, 7, 0, 3),
        ];
        let checks = all(&sale(), &samples, &settled(end, orders), &tally());
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
    }

    #[test]
    fn each_violation_fails_its_own_check() {
        // One sample oversells and loses a unit; a customer owns 3 of a limit of 2; an order
        // still holds; paid orders hold fewer units than were sold.
        let end = units(0, 0, 11);
        let orders = vec![
            order(0, "ord_1", "paid", 2),
            order(0, "ord_2", "pending_payment", 1),
        ];
        let samples = [sample(0, 5, 5, 0), sample(50, 0, 0, 9)];
        let checks = passed(&all(&sale(), &samples, &settled(end, orders), &tally()));
        assert!(!checks["nothing oversold"]);
        assert!(!checks["remaining + reserved + sold = stock at every sample"]);
        assert!(!checks["no customer holds or owns more than the limit"]);
        assert!(!checks["every hold was sold or released after its deadline"]);
        assert!(!checks["units sold = units of paid orders"]);
        assert!(checks["the stock was readable at every sample"]);
    }

    #[test]
    fn a_lost_order_a_lost_payment_and_an_odd_answer_fail() {
        let mut tally = tally();
        tally.placed = vec![
            super::super::crowd::Placed {
                order: "ord_1".into(),
                customer: 0,
                quantity: 1,
                paid: true,
            },
            super::super::crowd::Placed {
                order: "ord_9".into(),
                customer: 1,
                quantity: 1,
                paid: false,
            },
        ];
        tally
            .answers
            .insert((Step::Place, 500, "internal".into()), 1);
        let end = units(10, 0, 0);
        let orders = vec![order(0, "ord_1", "expired", 1)];
        let samples = [Sample {
            at_ms: 0,
            units: None,
        }];
        let checks = passed(&all(&sale(), &samples, &settled(end, orders), &tally));
        assert!(!checks["every acknowledged order and payment is kept"]);
        assert!(!checks["only documented answers (no 5xx, no failed connection)"]);
        assert!(!checks["the stock was readable at every sample"]);
        assert!(checks["nothing oversold"]);
    }
}
