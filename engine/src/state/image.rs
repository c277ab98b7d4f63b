//! A plain, ordered picture of the whole state: what a snapshot stores, what tests compare,
//! and what `db verify` checks the invariants on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rkyv::{Archive, Deserialize, Serialize};

use super::{OrderUsers, OrderUsersImage, Reservation, ReservationStatus, SkuEntry, State};
use crate::accounts::{Accounts, AccountsImage};
use crate::catalog::{Catalog, Product};
use crate::clock::Millis;
use crate::counter::{SKU_UNITS_MAX, SkuCounter, StockCounts};
use crate::ids::{ReservationId, Sku, UserId};
use crate::orders::{Order, OrderStatus};
use crate::record::{ReleaseReason, Seq};
use crate::wishlist::{WishItem, Wishlists};

/// The whole state as a plain, ordered picture: what a snapshot stores, what `Engine::image`
/// answers for tests to compare, and what `db verify` checks the invariants on.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct StateImage {
    /// The last record whose effects the image holds.
    pub seq: Seq,
    /// The id the next reservation will get.
    pub next_reservation: u64,
    /// Every SKU's counts and limit, by SKU.
    pub skus: Vec<SkuImage>,
    /// Every reservation in memory, active or closed, by id.
    pub reservations: Vec<ReservationImage>,
    /// Units each customer holds of each SKU with a per-customer limit (0s left out).
    pub holds: Vec<HoldImage>,
    /// The accounts, sessions, revocations and verifications.
    pub accounts: AccountsImage,
    /// The id the next product will get.
    pub next_product: u64,
    /// Every product with all its versions.
    pub products: Vec<Product>,
    /// Each user's wishlist.
    pub wishlists: Vec<(UserId, Vec<WishItem>)>,
    /// The id the next order will get.
    pub next_order: u64,
    /// Every live order (closed ones are in the cold tier only); the idempotency keys, the
    /// expiry index and the ownership of line reservations are rebuilt from them.
    pub orders: Vec<Order>,
    /// Whose order every id is, closed ones included.
    pub order_users: OrderUsersImage,
    /// What orders that left the hot tier sold.
    pub retired: RetiredImage,
    /// Accounts an admin disabled, and since when (ms), by id.
    pub disabled_users: Vec<(UserId, Millis)>,
}

/// The image as snapshot format 3 laid it out (before accounts could be disabled): the same
/// but for `disabled_users`, which was nothing then. Read, never written.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct StateImageV3 {
    pub seq: Seq,
    pub next_reservation: u64,
    pub skus: Vec<SkuImage>,
    pub reservations: Vec<ReservationImage>,
    pub holds: Vec<HoldImage>,
    pub accounts: AccountsImage,
    pub next_product: u64,
    pub products: Vec<Product>,
    pub wishlists: Vec<(UserId, Vec<WishItem>)>,
    pub next_order: u64,
    pub orders: Vec<Order>,
    pub order_users: OrderUsersImage,
    pub retired: RetiredImage,
}

impl From<StateImageV3> for StateImage {
    fn from(v3: StateImageV3) -> Self {
        StateImage {
            seq: v3.seq,
            next_reservation: v3.next_reservation,
            skus: v3.skus,
            reservations: v3.reservations,
            holds: v3.holds,
            accounts: v3.accounts,
            next_product: v3.next_product,
            products: v3.products,
            wishlists: v3.wishlists,
            next_order: v3.next_order,
            orders: v3.orders,
            order_users: v3.order_users,
            retired: v3.retired,
            disabled_users: Vec::new(),
        }
    }
}

/// The units sold by orders that left the hot tier with their units sold (delivered, their
/// return window passed): the part of each SKU's `sold` and of each customer's allowance that
/// no reservation in memory accounts for any more.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct RetiredImage {
    pub sold: Vec<(Sku, u64)>,
    pub held: Vec<(UserId, Sku, u32)>,
}

/// The image as snapshot format 2 laid it out (before delivered orders could leave the hot
/// tier): the same but for `retired`, which was nothing then. Read, never written.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct StateImageV2 {
    pub seq: Seq,
    pub next_reservation: u64,
    pub skus: Vec<SkuImage>,
    pub reservations: Vec<ReservationImage>,
    pub holds: Vec<HoldImage>,
    pub accounts: AccountsImage,
    pub next_product: u64,
    pub products: Vec<Product>,
    pub wishlists: Vec<(UserId, Vec<WishItem>)>,
    pub next_order: u64,
    pub orders: Vec<Order>,
    pub order_users: OrderUsersImage,
}

impl From<StateImageV2> for StateImage {
    fn from(v2: StateImageV2) -> Self {
        StateImage {
            seq: v2.seq,
            next_reservation: v2.next_reservation,
            skus: v2.skus,
            reservations: v2.reservations,
            holds: v2.holds,
            accounts: v2.accounts,
            next_product: v2.next_product,
            products: v2.products,
            wishlists: v2.wishlists,
            next_order: v2.next_order,
            orders: v2.orders,
            order_users: v2.order_users,
            retired: RetiredImage::default(),
            disabled_users: Vec::new(),
        }
    }
}

/// One SKU in a `StateImage`: its counts, in units, which add up to `stock_total`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SkuImage {
    /// Which SKU.
    pub sku: Sku,
    /// Units it was ever given (created plus restocked), counting restocks queued but not yet
    /// durable.
    pub stock_total: u64,
    /// Units on sale.
    pub available: u64,
    /// Units held by active reservations.
    pub reserved: u64,
    /// Units sold.
    pub sold: u64,
    /// The most units one customer may hold, if limited.
    pub per_user_limit: Option<u32>,
}

/// The image as snapshot format 1 laid it out (before counters were 42 bits a field): the same
/// but for 32-bit SKU counts. Read, never written, and turned into a [`StateImage`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct StateImageV1 {
    pub seq: Seq,
    pub next_reservation: u64,
    pub skus: Vec<SkuImageV1>,
    pub reservations: Vec<ReservationImage>,
    pub holds: Vec<HoldImage>,
    pub accounts: AccountsImage,
    pub next_product: u64,
    pub products: Vec<Product>,
    pub wishlists: Vec<(UserId, Vec<WishItem>)>,
    pub next_order: u64,
    pub orders: Vec<Order>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SkuImageV1 {
    pub sku: Sku,
    pub stock_total: u32,
    pub available: u32,
    pub reserved: u32,
    pub sold: u32,
    pub per_user_limit: Option<u32>,
}

impl From<StateImageV1> for StateImage {
    fn from(v1: StateImageV1) -> Self {
        StateImage {
            seq: v1.seq,
            next_reservation: v1.next_reservation,
            skus: v1
                .skus
                .into_iter()
                .map(|s| SkuImage {
                    sku: s.sku,
                    stock_total: s.stock_total.into(),
                    available: s.available.into(),
                    reserved: s.reserved.into(),
                    sold: s.sold.into(),
                    per_user_limit: s.per_user_limit,
                })
                .collect(),
            reservations: v1.reservations,
            holds: v1.holds,
            accounts: v1.accounts,
            next_product: v1.next_product,
            products: v1.products,
            wishlists: v1.wishlists,
            next_order: v1.next_order,
            order_users: {
                // Format 1 held every order.
                let users = OrderUsers::default();
                for order in &v1.orders {
                    users.set(order.id, order.user);
                }
                users.image()
            },
            orders: v1.orders,
            retired: RetiredImage::default(),
            disabled_users: Vec::new(),
        }
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReservationImage {
    pub id: ReservationId,
    pub sku: Sku,
    pub user: UserId,
    pub quantity: u32,
    pub deadline_ms: Millis,
    /// `None` while active, else whether it was sold and, if not, why it was released.
    pub closed: Option<Closed>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Committed,
    Released(ReleaseReason),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HoldImage {
    pub user: UserId,
    pub sku: Sku,
    pub held: u32,
}

impl State {
    /// The state as an ordered image. Consistent only when nothing is in flight.
    pub fn image(&self) -> StateImage {
        let mut skus: Vec<SkuImage> = self
            .skus
            .iter()
            .map(|entry| {
                let counts = entry.counter.load();
                SkuImage {
                    sku: *entry.key(),
                    stock_total: entry.stock_promised(),
                    available: counts.available,
                    reserved: counts.reserved,
                    sold: counts.sold,
                    per_user_limit: entry.per_user_limit,
                }
            })
            .collect();
        skus.sort_by_key(|s| s.sku);
        let mut reservations: Vec<ReservationImage> = self
            .reservations
            .iter()
            .map(|r| ReservationImage {
                id: r.id,
                sku: r.sku,
                user: r.user,
                quantity: r.quantity,
                deadline_ms: r.deadline_ms,
                closed: match r.status {
                    ReservationStatus::Active => None,
                    ReservationStatus::Committed => Some(Closed::Committed),
                    ReservationStatus::Released(reason) => Some(Closed::Released(reason)),
                },
            })
            .collect();
        reservations.sort_by_key(|r| r.id);
        let mut holds: Vec<HoldImage> = self
            .holds
            .iter()
            .map(|h| HoldImage {
                user: h.key().0,
                sku: h.key().1,
                held: h.value().load(Ordering::Acquire),
            })
            .filter(|h| h.held > 0)
            .collect();
        holds.sort_by_key(|h| (h.user, h.sku));
        StateImage {
            seq: self.seq(),
            next_reservation: self.next_reservation.load(Ordering::Acquire),
            skus,
            reservations,
            holds,
            accounts: self.accounts.image(),
            next_product: self.catalog.image().0,
            products: self.catalog.image().1,
            wishlists: self.wishlists.image(),
            next_order: self.next_order.load(Ordering::Acquire),
            orders: {
                let mut orders: Vec<Order> = self.orders.iter().map(|o| o.clone()).collect();
                orders.sort_by_key(|o| o.id);
                orders
            },
            order_users: self.order_users.image(),
            retired: {
                let mut sold: Vec<(Sku, u64)> = self
                    .retired_sold
                    .iter()
                    .map(|e| (*e.key(), *e.value()))
                    .collect();
                sold.sort_unstable();
                let mut held: Vec<(UserId, Sku, u32)> = self
                    .retired_held
                    .iter()
                    .map(|e| (e.key().0, e.key().1, *e.value()))
                    .collect();
                held.sort_unstable();
                RetiredImage { sold, held }
            },
            disabled_users: self.accounts.disabled_image(),
        }
    }

    /// Rebuilds a state from an image, checking its invariants first: a snapshot that does not
    /// add up is refused, never loaded.
    pub fn from_image(image: &StateImage) -> Result<Self, Vec<String>> {
        let problems = check_invariants(image);
        if !problems.is_empty() {
            return Err(problems);
        }
        let state = State {
            seq: AtomicU64::new(image.seq),
            next_reservation: AtomicU64::new(image.next_reservation),
            accounts: Accounts::from_image(&image.accounts),
            catalog: Catalog::from_image(image.next_product, &image.products),
            wishlists: Wishlists::from_image(&image.wishlists),
            next_order: AtomicU64::new(image.next_order),
            order_users: OrderUsers::from_image(&image.order_users),
            ..Default::default()
        };
        state.accounts.restore_disabled(&image.disabled_users);
        for order in &image.orders {
            for line in &order.lines {
                state.order_owned.insert(line.reservation, order.id);
            }
            state
                .idempotency
                .insert(order.idempotency, (order.request, order.id, true));
            if order.status.is_unpaid() {
                state
                    .order_deadlines
                    .lock()
                    .insert((order.deadline_ms, order.id));
            }
            if let (OrderStatus::Delivered, Some(delivered)) = (order.status, order.delivered_ms) {
                state.return_windows.lock().insert((delivered, order.id));
            }
            state.track_settlement(order);
            state.orders.insert(order.id, order.clone());
        }
        for sku in &image.skus {
            state.skus.insert(
                sku.sku,
                SkuEntry {
                    counter: SkuCounter::new(StockCounts {
                        available: sku.available,
                        reserved: sku.reserved,
                        sold: sku.sold,
                    }),
                    per_user_limit: sku.per_user_limit,
                    stock_promised: AtomicU64::new(sku.stock_total),
                },
            );
        }
        let mut deadlines = state.deadlines.lock();
        for r in &image.reservations {
            let status = match r.closed {
                None => {
                    // Lines of an order expire with their order, not on their own.
                    if !state.order_owned.contains_key(&r.id) {
                        deadlines.insert((r.deadline_ms, r.id));
                    }
                    ReservationStatus::Active
                }
                Some(Closed::Committed) => ReservationStatus::Committed,
                Some(Closed::Released(reason)) => ReservationStatus::Released(reason),
            };
            state.reservations.insert(
                r.id,
                Reservation {
                    id: r.id,
                    sku: r.sku,
                    user: r.user,
                    quantity: r.quantity,
                    deadline_ms: r.deadline_ms,
                    status,
                    transition_queued: false,
                },
            );
        }
        drop(deadlines);
        for h in &image.holds {
            state.holds.insert((h.user, h.sku), AtomicU32::new(h.held));
        }
        for &(sku, units) in &image.retired.sold {
            state.retired_sold.insert(sku, units);
        }
        for &(user, sku, units) in &image.retired.held {
            state.retired_held.insert((user, sku), units);
        }
        Ok(state)
    }
}

/// Checks, per SKU: `available + reserved + sold == stock_total`; `reserved` equals the units of
/// its active reservations and `sold` those of its committed ones plus the retired; each
/// customer's allowance equals what they hold (retired included) and stays within the limit.
pub fn check_invariants(image: &StateImage) -> Vec<String> {
    let mut problems = Vec::new();
    #[derive(Default)]
    struct Sums {
        reserved: u64,
        sold: u64,
    }
    let mut sums: BTreeMap<Sku, Sums> = BTreeMap::new();
    let mut held: BTreeMap<(UserId, Sku), u64> = image
        .retired
        .held
        .iter()
        .map(|&(user, sku, units)| ((user, sku), u64::from(units)))
        .collect();
    for &(sku, units) in &image.retired.sold {
        sums.entry(sku).or_default().sold += units;
    }
    let limits: BTreeMap<Sku, Option<u32>> = image
        .skus
        .iter()
        .map(|s| (s.sku, s.per_user_limit))
        .collect();
    for r in &image.reservations {
        if r.id.0 >= image.next_reservation {
            problems.push(format!(
                "{} is not below the next id {}",
                r.id, image.next_reservation
            ));
        }
        let Some(limit) = limits.get(&r.sku) else {
            problems.push(format!("{} reserves unknown {}", r.id, r.sku));
            continue;
        };
        let sum = sums.entry(r.sku).or_default();
        match r.closed {
            None => sum.reserved += u64::from(r.quantity),
            Some(Closed::Committed) => sum.sold += u64::from(r.quantity),
            Some(Closed::Released(_)) => {}
        }
        if limit.is_some() && !matches!(r.closed, Some(Closed::Released(_))) {
            *held.entry((r.user, r.sku)).or_default() += u64::from(r.quantity);
        }
    }
    for sku in &image.skus {
        let total = u128::from(sku.available) + u128::from(sku.reserved) + u128::from(sku.sold);
        if total != u128::from(sku.stock_total) {
            problems.push(format!(
                "{}: available {} + reserved {} + sold {} != stock_total {}",
                sku.sku, sku.available, sku.reserved, sku.sold, sku.stock_total
            ));
        }
        if sku.stock_total > SKU_UNITS_MAX {
            problems.push(format!("{}: stock_total over the bound", sku.sku));
        }
        let sum = sums.remove(&sku.sku).unwrap_or_default();
        if sum.reserved != sku.reserved {
            problems.push(format!(
                "{}: reserved {} but its active reservations hold {}",
                sku.sku, sku.reserved, sum.reserved
            ));
        }
        if sum.sold != sku.sold {
            problems.push(format!(
                "{}: sold {} but its committed reservations hold {}",
                sku.sku, sku.sold, sum.sold
            ));
        }
    }
    for product in &image.products {
        if !limits.contains_key(&Sku(product.id.0)) {
            problems.push(format!("{} has no SKU", product.id));
        }
    }
    let recorded: BTreeMap<(UserId, Sku), u64> = image
        .holds
        .iter()
        .map(|h| ((h.user, h.sku), u64::from(h.held)))
        .collect();
    if recorded != held {
        problems.push("per-customer allowances disagree with the reservations held".into());
    }
    for ((user, sku), units) in &held {
        if let Some(Some(limit)) = limits.get(sku)
            && *units > u64::from(*limit)
        {
            problems.push(format!(
                "{user} holds {units} of {sku}, over its limit {limit}"
            ));
        }
    }
    problems
}
