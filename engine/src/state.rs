//! The in-memory views, and the only code that changes them.
//!
//! A record takes effect in two steps, and both a live run and a replay use the same two:
//!
//! 1. `prepare`: the decision. For a reservation it TAKES units (and the customer's allowance)
//!    eagerly, before the record is durable. For anything that gives units back it only marks
//!    the entity as having a transition queued.
//! 2. `complete`: the after-durable effects, applied by the log writer in log order once the
//!    batch is on disk: units go back, units are sold, deadlines enter the expiry index.
//!
//! "Take eagerly, give back only after the log says so": any reservation that used a returned
//! unit is therefore logged after that return, and a replayed log can never hold out more units
//! than exist. A replay runs `prepare` then `complete` for each record (`apply`).

mod image;
mod order_users;
mod orders;

pub use order_users::{OrderUsers, OrderUsersImage};
pub use orders::NewOrder;
pub(crate) use orders::{is_closed, order_placed, step as step_order};

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;

#[cfg(test)]
pub(crate) use image::{RetiredImage, SkuImageV1};
pub use image::{
    SkuImage, StateImage, StateImageV1, StateImageV2, StateImageV3,
    check_invariants as check_invariants_of,
};

use crate::accounts::Accounts;
use crate::catalog::{
    Catalog, CatalogError, NewProduct, Product, ProductChange, ProductVersion, validate_new,
};
use crate::clock::Millis;
use crate::counter::{CounterRefusal, SKU_UNITS_MAX, SkuCounter, StockCounts};
use crate::error::{ApplyError, EngineError, Internal};
use crate::ids::{OrderId, ProductId, ReservationId, Sku, UserId};
use crate::orders::Order;
use crate::record::{CatalogRecord, Digest, Record, ReleaseReason, Seq};
use crate::wal::Ticket;
use crate::wishlist::Wishlists;

/// Most units one reservation may take.
pub const RESERVATION_UNITS_MAX: u32 = 1_000;

/// How exactly a completion can check a SKU's conservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conservation {
    /// A live run: restocks may be promised and queued, not yet on the counter.
    AtMost,
    /// A replay: every record before this one is complete, so nothing is queued.
    Exact,
}

#[derive(Debug)]
pub struct SkuEntry {
    pub counter: SkuCounter,
    pub per_user_limit: Option<u32>,
    /// Units the log has promised this SKU (created + restocked), counting restocks that are
    /// queued but not yet durable, so two concurrent restocks cannot overrun the counter bound.
    stock_promised: AtomicU64,
}

/// Where a reservation is in its life: it holds units until it is committed (sold) or
/// released (the units are back on sale), each at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    /// Holding its units until its deadline.
    Active,
    /// Its units are sold.
    Committed,
    /// Its units went back on sale, for the reason given.
    Released(ReleaseReason),
}

impl ReservationStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Active => "active",
            ReservationStatus::Committed => "committed",
            ReservationStatus::Released(_) => "released",
        }
    }
}

/// Units of one SKU held for one customer until a deadline: taken at once, sold or given
/// back only through the log.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The reservation's id, unique for the life of the store.
    pub id: ReservationId,
    /// The SKU whose units it holds.
    pub sku: Sku,
    /// The customer it holds them for.
    pub user: UserId,
    /// Units held, 1 to `RESERVATION_UNITS_MAX`.
    pub quantity: u32,
    /// When an active reservation expires and its units go back (ms since the Unix epoch).
    pub deadline_ms: Millis,
    /// Where it is in its life.
    pub status: ReservationStatus,
    /// A commit or release is in the log queue, not yet durable: no second one may start.
    transition_queued: bool,
}

impl Reservation {
    /// A reservation that holds its units from now until `deadline_ms`.
    fn active(
        id: ReservationId,
        sku: Sku,
        user: UserId,
        quantity: u32,
        deadline_ms: Millis,
    ) -> Self {
        Self {
            id,
            sku,
            user,
            quantity,
            deadline_ms,
            status: ReservationStatus::Active,
            transition_queued: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    /// The last record whose effects are complete.
    seq: AtomicU64,
    skus: DashMap<Sku, SkuEntry>,
    reservations: DashMap<ReservationId, Reservation>,
    /// Units a customer holds (reserved or bought) of a SKU with a per-customer limit.
    holds: DashMap<(UserId, Sku), AtomicU32>,
    /// Deadlines of durable reservations, soonest first. Entries of reservations that were
    /// committed or released meanwhile are skipped when popped.
    deadlines: Mutex<BTreeSet<(Millis, ReservationId)>>,
    next_reservation: AtomicU64,
    pub accounts: Accounts,
    pub catalog: Catalog,
    pub wishlists: Wishlists,
    orders: DashMap<OrderId, Order>,
    /// Reservations that are lines of an order: they move only with their order.
    order_owned: DashMap<ReservationId, OrderId>,
    /// (user, Idempotency-Key) → (request, order, durable yet), for the live orders; the keys
    /// of closed orders are in the cold tier.
    idempotency: DashMap<Digest, (Digest, OrderId, bool)>,
    order_deadlines: Mutex<BTreeSet<(Millis, OrderId)>>,
    /// Delivered orders by delivery time: each leaves the hot tier when its return window
    /// passes. Entries of orders that moved on meanwhile (a return asked for) are skipped.
    return_windows: Mutex<BTreeSet<(Millis, OrderId)>>,
    /// Orders the payment resolver must look at: a payment answer outstanding, or a refund due.
    /// An index kept with every change of an order, so the resolver never scans every order.
    /// Lock order: an order's entry, then this; never the other way round.
    to_settle: Mutex<BTreeSet<OrderId>>,
    next_order: AtomicU64,
    /// Whose order every id is, closed ones included: where a read by id finds its cold key.
    pub order_users: OrderUsers,
    /// Units sold by orders that left the hot tier sold (their reservations went with them),
    /// per SKU and per customer of a SKU with a limit: what keeps the invariants checkable.
    retired_sold: DashMap<Sku, u64>,
    retired_held: DashMap<(UserId, Sku), u32>,
    /// The cold tier, where closed orders are read (a live state has one; a replay for a
    /// snapshot does not need one).
    cold: std::sync::OnceLock<crate::cold::Cold>,
}

/// Takes every entry at or before `through` out of a deadline index, soonest first.
fn pop_through<T: Ord + Copy>(
    index: &Mutex<BTreeSet<(Millis, T)>>,
    through: Millis,
) -> Vec<(Millis, T)> {
    let mut index = index.lock();
    let mut due = Vec::new();
    while let Some(&(at, item)) = index.first() {
        if at > through {
            break;
        }
        index.pop_first();
        due.push((at, item));
    }
    due
}

fn apply_error(seq: Seq, reason: impl Into<String>) -> ApplyError {
    ApplyError {
        seq,
        reason: reason.into(),
    }
}

impl State {
    pub fn new() -> Self {
        Self {
            next_reservation: AtomicU64::new(1),
            accounts: Accounts::new(),
            catalog: Catalog::new(),
            next_order: AtomicU64::new(1),
            ..Default::default()
        }
    }

    pub fn seq(&self) -> Seq {
        self.seq.load(Ordering::Acquire)
    }

    /// Gives a live state the cold tier, where it finds the orders it no longer holds.
    pub fn attach_cold(&self, cold: crate::cold::Cold) {
        let _ = self.cold.set(cold);
    }

    // ----- replay -------------------------------------------------------------------------

    /// Applies a durable record in full: what a live run did in two steps, in one.
    pub fn apply(&self, seq: Seq, record: &Record) -> Result<(), ApplyError> {
        if seq != self.seq() + 1 {
            return Err(apply_error(seq, format!("follows {}", self.seq())));
        }
        self.prepare_replayed(seq, record)?;
        self.complete_step(seq, record, Conservation::Exact)
    }

    fn prepare_replayed(&self, seq: Seq, record: &Record) -> Result<(), ApplyError> {
        match *record {
            Record::SkuCreated {
                sku,
                stock_total,
                per_user_limit,
            } => self
                .insert_sku(sku, stock_total, per_user_limit)
                .map_err(|e| apply_error(seq, e.to_string())),
            Record::StockReserved {
                reservation,
                sku,
                user,
                quantity,
                deadline_ms,
            } => {
                if self.reservations.contains_key(&reservation) {
                    return Err(apply_error(seq, format!("{reservation} reserved twice")));
                }
                let entry = self
                    .skus
                    .get(&sku)
                    .ok_or_else(|| apply_error(seq, format!("{sku} does not exist")))?;
                self.take_units(&entry, sku, user, quantity)
                    .map_err(|e| apply_error(seq, format!("{reservation}: {e}")))?;
                drop(entry);
                self.next_reservation
                    .fetch_max(reservation.0 + 1, Ordering::AcqRel);
                self.reservations.insert(
                    reservation,
                    Reservation::active(reservation, sku, user, quantity, deadline_ms),
                );
                Ok(())
            }
            Record::ReservationCommitted { reservation }
            | Record::ReservationReleased { reservation, .. } => {
                let mut entry = self
                    .reservations
                    .get_mut(&reservation)
                    .ok_or_else(|| apply_error(seq, format!("{reservation} does not exist")))?;
                Self::check_transition(&entry).map_err(|e| apply_error(seq, e.to_string()))?;
                entry.transition_queued = true;
                Ok(())
            }
            Record::Restocked { sku, quantity } => {
                let entry = self
                    .skus
                    .get(&sku)
                    .ok_or_else(|| apply_error(seq, format!("{sku} does not exist")))?;
                Self::promise_units(&entry, quantity).map_err(|e| apply_error(seq, e.to_string()))
            }
            Record::Account(ref account) => self.accounts.apply(seq, account),
            Record::Catalog(ref catalog) => self.apply_catalog(seq, catalog),
            Record::Order(ref order) => self.apply_order(seq, order),
        }
    }

    fn apply_catalog(&self, seq: Seq, record: &CatalogRecord) -> Result<(), ApplyError> {
        match record {
            CatalogRecord::ProductCreated {
                product,
                kind,
                details,
                sale_opens_ms,
                sale_closes_ms,
                per_user_limit,
                stock_total,
                created_ms,
            } => self
                .insert_sku(Sku(product.0), *stock_total, *per_user_limit)
                .and_then(|()| {
                    self.catalog.insert(Product {
                        id: *product,
                        kind: *kind,
                        per_user_limit: *per_user_limit,
                        created_ms: *created_ms,
                        versions: vec![ProductVersion {
                            version: 1,
                            details: details.clone(),
                            sale_opens_ms: *sale_opens_ms,
                            sale_closes_ms: *sale_closes_ms,
                            at_ms: *created_ms,
                        }],
                    })
                })
                .map_err(|e| apply_error(seq, format!("{product}: {e}"))),
            CatalogRecord::ProductVersioned {
                product,
                version,
                details,
                sale_opens_ms,
                sale_closes_ms,
                at_ms,
            } => {
                let version = ProductVersion {
                    version: *version,
                    details: details.clone(),
                    sale_opens_ms: *sale_opens_ms,
                    sale_closes_ms: *sale_closes_ms,
                    at_ms: *at_ms,
                };
                self.catalog
                    .add_version(
                        *product,
                        Some(version),
                        &ProductChange::default(),
                        *at_ms,
                        |_| Ok(()),
                    )
                    .map(drop)
                    .map_err(|e| apply_error(seq, format!("{product}: {e}")))
            }
            _ => {
                let applied = self.wishlists.apply(seq, record)?;
                debug_assert!(applied, "a catalog record nobody applies: {record:?}");
                Ok(())
            }
        }
    }

    /// The after-durable effects of a record. Called by the log writer in log order for a live
    /// run (restocks may be queued behind it), and by `apply` in a replay.
    pub fn complete(&self, seq: Seq, record: &Record) -> Result<(), ApplyError> {
        self.complete_step(seq, record, Conservation::AtMost)
    }

    fn complete_step(
        &self,
        seq: Seq,
        record: &Record,
        conservation: Conservation,
    ) -> Result<(), ApplyError> {
        match *record {
            Record::SkuCreated { .. } => {}
            Record::StockReserved {
                reservation,
                sku,
                deadline_ms,
                ..
            } => {
                // A take keeps the SKU's total; checked here, a counter that holds other units
                // than the log gave it is caught at the first reservation.
                if let Some(entry) = self.skus.get(&sku) {
                    entry
                        .check_conserved(sku, entry.counter.load(), conservation)
                        .map_err(|e| apply_error(seq, e))?;
                }
                self.deadlines.lock().insert((deadline_ms, reservation));
            }
            Record::ReservationCommitted { reservation } => {
                let to = ReservationStatus::Committed;
                self.finish_transition(seq, reservation, to, conservation)?;
            }
            Record::ReservationReleased {
                reservation,
                reason,
            } => {
                let to = ReservationStatus::Released(reason);
                self.finish_transition(seq, reservation, to, conservation)?;
            }
            Record::Restocked { sku, quantity } => {
                let entry = self
                    .skus
                    .get(&sku)
                    .ok_or_else(|| apply_error(seq, format!("{sku} does not exist")))?;
                let counts = entry
                    .counter
                    .restock(quantity)
                    .map_err(|_| apply_error(seq, format!("{sku} restock past its bound")))?;
                entry
                    .check_conserved(sku, counts, conservation)
                    .map_err(|e| apply_error(seq, e))?;
            }
            Record::Order(ref order) => self.complete_order(seq, order, conservation)?,
            // Account and catalog records take full effect when decided (under their lock).
            _ => {}
        }
        self.seq.store(seq, Ordering::Release);
        Ok(())
    }

    fn finish_transition(
        &self,
        seq: Seq,
        id: ReservationId,
        to: ReservationStatus,
        conservation: Conservation,
    ) -> Result<(), ApplyError> {
        let mut reservation = self.reservation_to_apply(seq, id)?;
        if reservation.status != ReservationStatus::Active || !reservation.transition_queued {
            return Err(apply_error(
                seq,
                format!(
                    "{id} is {}, cannot become {}",
                    reservation.status.as_str(),
                    to.as_str()
                ),
            ));
        }
        let sku = self
            .skus
            .get(&reservation.sku)
            .ok_or_else(|| apply_error(seq, format!("{} does not exist", reservation.sku)))?;
        let moved = match to {
            ReservationStatus::Committed => sku.counter.sell(reservation.quantity),
            _ => sku.counter.give_back(reservation.quantity),
        };
        let counts = moved
            .map_err(|_| apply_error(seq, format!("{id}: fewer units reserved than it holds")))?;
        sku.check_conserved(reservation.sku, counts, conservation)
            .map_err(|e| apply_error(seq, e))?;
        if matches!(to, ReservationStatus::Released(_)) && sku.per_user_limit.is_some() {
            self.return_allowance(reservation.user, reservation.sku, reservation.quantity);
        }
        reservation.status = to;
        reservation.transition_queued = false;
        Ok(())
    }

    // ----- live decisions -------------------------------------------------------------------
    //
    // Each takes `append`, which queues the record in the log, and calls it while holding the
    // lock of the entity it changes. A decision that could not be logged is undone at once:
    // nothing was logged, so nothing needs to be given back through the log.

    pub fn create_sku(
        &self,
        sku: Sku,
        stock_total: u32,
        per_user_limit: Option<u32>,
        append: impl FnOnce(Record) -> Result<Ticket, EngineError>,
    ) -> Result<Ticket, EngineError> {
        validate_new_sku(per_user_limit)?;
        // The shard stays locked until the record is queued, so any reservation of this SKU is
        // logged after its creation; a SKU whose creation was lost takes no durable reservation.
        match self.skus.entry(sku) {
            dashmap::Entry::Occupied(_) => Err(EngineError::Stock(StockError::SkuExists(sku))),
            dashmap::Entry::Vacant(slot) => {
                let ticket = append(Record::SkuCreated {
                    sku,
                    stock_total,
                    per_user_limit,
                })?;
                slot.insert(SkuEntry::new(stock_total, per_user_limit));
                Ok(ticket)
            }
        }
    }

    pub fn reserve(
        &self,
        user: UserId,
        sku: Sku,
        quantity: u32,
        deadline_ms: Millis,
        append: impl FnOnce(Record) -> Result<Ticket, EngineError>,
    ) -> Result<(ReservationId, Ticket), EngineError> {
        if quantity == 0 || quantity > RESERVATION_UNITS_MAX {
            return Err(StockError::InvalidQuantity {
                max: RESERVATION_UNITS_MAX,
            }
            .into());
        }
        {
            let entry = self.skus.get(&sku).ok_or(StockError::SkuNotFound(sku))?;
            self.take_units(&entry, sku, user, quantity)?;
        }
        let id = ReservationId(self.next_reservation.fetch_add(1, Ordering::AcqRel));
        // The entry stays locked until the record is queued: a commit or release of this id
        // (however it was learnt) can only be logged after the reservation itself.
        let dashmap::Entry::Vacant(slot) = self.reservations.entry(id) else {
            self.undo_take(sku, user, quantity);
            return Err(Internal::Defect(format!("{id} allocated twice")).into());
        };
        match append(Record::StockReserved {
            reservation: id,
            sku,
            user,
            quantity,
            deadline_ms,
        }) {
            Ok(ticket) => {
                slot.insert(Reservation::active(id, sku, user, quantity, deadline_ms));
                Ok((id, ticket))
            }
            Err(error) => {
                drop(slot);
                self.undo_take(sku, user, quantity);
                Err(error)
            }
        }
    }

    /// Sells the held units. Refused once the deadline has passed, even if the expiry has not
    /// been logged yet.
    pub fn commit(
        &self,
        id: ReservationId,
        now_ms: Millis,
        append: impl FnOnce(Record) -> Result<Ticket, EngineError>,
    ) -> Result<Ticket, EngineError> {
        let record = Record::ReservationCommitted { reservation: id };
        self.queue_transition(id, record, append, |reservation| {
            if now_ms > reservation.deadline_ms {
                return Err(StockError::ReservationExpired {
                    id,
                    deadline_ms: reservation.deadline_ms,
                });
            }
            Ok(())
        })
    }

    pub fn release(
        &self,
        id: ReservationId,
        reason: ReleaseReason,
        append: impl FnOnce(Record) -> Result<Ticket, EngineError>,
    ) -> Result<Ticket, EngineError> {
        let record = Record::ReservationReleased {
            reservation: id,
            reason,
        };
        self.queue_transition(id, record, append, |_| Ok(()))
    }

    /// Logs `record`, the end of a standalone reservation that is still active, has no end
    /// queued and passes `allowed`; from then on no other end may be queued for it.
    fn queue_transition(
        &self,
        id: ReservationId,
        record: Record,
        append: impl FnOnce(Record) -> Result<Ticket, EngineError>,
        allowed: impl FnOnce(&Reservation) -> Result<(), StockError>,
    ) -> Result<Ticket, EngineError> {
        self.refuse_order_owned(id)?;
        let mut reservation = self
            .reservations
            .get_mut(&id)
            .ok_or(StockError::ReservationNotFound(id))?;
        Self::check_transition(&reservation)?;
        allowed(&reservation)?;
        let ticket = append(record)?;
        reservation.transition_queued = true;
        Ok(ticket)
    }

    pub fn restock(
        &self,
        sku: Sku,
        quantity: u32,
        append: impl FnOnce(Record) -> Result<Ticket, EngineError>,
    ) -> Result<Ticket, EngineError> {
        if quantity == 0 {
            return Err(StockError::InvalidQuantity { max: u32::MAX }.into());
        }
        let entry = self.skus.get(&sku).ok_or(StockError::SkuNotFound(sku))?;
        Self::promise_units(&entry, quantity)?;
        append(Record::Restocked { sku, quantity }).inspect_err(|_| {
            entry
                .stock_promised
                .fetch_sub(u64::from(quantity), Ordering::AcqRel);
        })
    }

    pub fn create_product(
        &self,
        id: ProductId,
        new: NewProduct,
        now_ms: Millis,
        append: impl FnOnce(Record) -> Result<Ticket, EngineError>,
    ) -> Result<(Product, Ticket), EngineError> {
        validate_new(&new)?;
        // As with `create_sku`: the SKU's slot stays locked until the record is queued.
        let slot = match self.skus.entry(Sku(id.0)) {
            dashmap::Entry::Occupied(_) => {
                return Err(CatalogError::InvalidProduct("the product exists").into());
            }
            dashmap::Entry::Vacant(slot) => slot,
        };
        let product = Product {
            id,
            kind: new.kind,
            per_user_limit: new.per_user_limit,
            created_ms: now_ms,
            versions: vec![ProductVersion {
                version: 1,
                details: new.details.clone(),
                sale_opens_ms: new.sale_opens_ms,
                sale_closes_ms: new.sale_closes_ms,
                at_ms: now_ms,
            }],
        };
        let ticket = append(
            CatalogRecord::ProductCreated {
                product: id,
                kind: new.kind,
                details: new.details,
                sale_opens_ms: new.sale_opens_ms,
                sale_closes_ms: new.sale_closes_ms,
                per_user_limit: new.per_user_limit,
                stock_total: new.stock_total,
                created_ms: now_ms,
            }
            .into(),
        )?;
        slot.insert(SkuEntry::new(new.stock_total, new.per_user_limit));
        // Lock order: a SKU shard is never held while the catalog lock is taken (nor the other
        // way round), so the slot is released before the product is listed.
        self.catalog.insert(product.clone())?;
        Ok((product, ticket))
    }

    pub fn update_product(
        &self,
        id: ProductId,
        change: &ProductChange,
        now_ms: Millis,
        append: impl FnOnce(Record) -> Result<Ticket, EngineError>,
    ) -> Result<(ProductVersion, Option<Ticket>), EngineError> {
        let mut ticket = None;
        let version = self.catalog.add_version(id, None, change, now_ms, |v| {
            ticket = Some(append(
                CatalogRecord::ProductVersioned {
                    product: id,
                    version: v.version,
                    details: v.details.clone(),
                    sale_opens_ms: v.sale_opens_ms,
                    sale_closes_ms: v.sale_closes_ms,
                    at_ms: v.at_ms,
                }
                .into(),
            )?);
            Ok(())
        })?;
        Ok((version, ticket))
    }

    /// Pops the reservations whose deadline is at or before `now_ms` and that are still active.
    pub fn pop_expired(&self, now_ms: Millis) -> Vec<ReservationId> {
        let mut due: Vec<ReservationId> = pop_through(&self.deadlines, now_ms)
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        due.retain(|id| {
            self.reservations
                .get(id)
                .is_some_and(|r| r.status == ReservationStatus::Active)
        });
        due
    }

    /// Puts a reservation back in the expiry index, due at `at_ms` (its expiry could not be
    /// logged yet).
    pub fn recheck_reservation_later(&self, id: ReservationId, at_ms: Millis) {
        self.deadlines.lock().insert((at_ms, id));
    }

    /// The soonest deadline still in the expiry index.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.lock().first().map(|&(deadline, _)| deadline)
    }

    // ----- reads ----------------------------------------------------------------------------

    pub fn stock(&self, sku: Sku) -> Option<StockCounts> {
        self.skus.get(&sku).map(|entry| entry.counter.load())
    }

    pub fn reservation(&self, id: ReservationId) -> Option<Reservation> {
        self.reservations.get(&id).map(|r| r.clone())
    }

    pub fn held_by(&self, user: UserId, sku: Sku) -> u32 {
        self.holds
            .get(&(user, sku))
            .map_or(0, |held| held.load(Ordering::Acquire))
    }

    pub fn sku_count(&self) -> usize {
        self.skus.len()
    }

    pub fn reservation_count(&self) -> usize {
        self.reservations.len()
    }

    // ----- the pieces -----------------------------------------------------------------------

    fn insert_sku(
        &self,
        sku: Sku,
        stock_total: u32,
        per_user_limit: Option<u32>,
    ) -> Result<(), EngineError> {
        validate_new_sku(per_user_limit)?;
        match self.skus.entry(sku) {
            dashmap::Entry::Occupied(_) => Err(EngineError::Stock(StockError::SkuExists(sku))),
            dashmap::Entry::Vacant(slot) => {
                slot.insert(SkuEntry::new(stock_total, per_user_limit));
                Ok(())
            }
        }
    }

    /// Takes the customer's allowance first, then the units; gives the allowance back at once
    /// if the units are not there (nothing was logged).
    fn take_units(
        &self,
        entry: &SkuEntry,
        sku: Sku,
        user: UserId,
        quantity: u32,
    ) -> Result<(), EngineError> {
        if quantity == 0 || quantity > RESERVATION_UNITS_MAX {
            return Err(StockError::InvalidQuantity {
                max: RESERVATION_UNITS_MAX,
            }
            .into());
        }
        if let Some(limit) = entry.per_user_limit {
            self.take_allowance(user, sku, quantity, limit)?;
        }
        entry.counter.take(quantity).map(drop).map_err(|refusal| {
            if entry.per_user_limit.is_some() {
                self.return_allowance(user, sku, quantity);
            }
            match refusal {
                CounterRefusal::Short(counts) | CounterRefusal::Full(counts) => {
                    EngineError::Stock(StockError::SoldOut {
                        available: counts.available,
                    })
                }
            }
        })
    }

    fn undo_take(&self, sku: Sku, user: UserId, quantity: u32) {
        if let Some(entry) = self.skus.get(&sku) {
            let undone = entry.counter.give_back(quantity);
            // The units were taken a moment ago under the same lock: they must go back.
            assert!(
                undone.is_ok(),
                "undoing a take of {quantity} on {sku} failed"
            );
            if entry.per_user_limit.is_some() {
                self.return_allowance(user, sku, quantity);
            }
        }
    }

    fn take_allowance(
        &self,
        user: UserId,
        sku: Sku,
        quantity: u32,
        limit: u32,
    ) -> Result<(), EngineError> {
        let take = |held: &AtomicU32| {
            held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                h.checked_add(quantity).filter(|&next| next <= limit)
            })
            .map(drop)
            .map_err(|_| EngineError::Stock(StockError::PurchaseLimitExceeded { limit }))
        };
        if let Some(held) = self.holds.get(&(user, sku)) {
            return take(&held);
        }
        take(&self.holds.entry((user, sku)).or_default())
    }

    fn return_allowance(&self, user: UserId, sku: Sku, quantity: u32) {
        if let Some(held) = self.holds.get(&(user, sku)) {
            let returned = held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                h.checked_sub(quantity)
            });
            // Returning more than is held means a release counted twice: corrupt state.
            assert!(
                returned.is_ok(),
                "the allowance of {user} on {sku} was returned twice"
            );
        }
    }

    fn promise_units(entry: &SkuEntry, quantity: u32) -> Result<(), EngineError> {
        entry
            .stock_promised
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |promised| {
                promised
                    .checked_add(u64::from(quantity))
                    .filter(|&next| next <= SKU_UNITS_MAX)
            })
            .map(drop)
            .map_err(|_| EngineError::Stock(StockError::StockLimitExceeded { max: SKU_UNITS_MAX }))
    }

    /// The reservation record `seq` completes, which must exist.
    fn reservation_to_apply(
        &self,
        seq: Seq,
        id: ReservationId,
    ) -> Result<dashmap::mapref::one::RefMut<'_, ReservationId, Reservation>, ApplyError> {
        self.reservations
            .get_mut(&id)
            .ok_or_else(|| apply_error(seq, format!("{id} does not exist")))
    }

    fn refuse_order_owned(&self, id: ReservationId) -> Result<(), EngineError> {
        if self.order_owned.contains_key(&id) {
            return Err(StockError::ReservationNotActive {
                id,
                status: "a line of an order",
            }
            .into());
        }
        Ok(())
    }

    fn check_transition(reservation: &Reservation) -> Result<(), EngineError> {
        if reservation.status != ReservationStatus::Active || reservation.transition_queued {
            let status = if reservation.transition_queued {
                "closing"
            } else {
                reservation.status.as_str()
            };
            return Err(StockError::ReservationNotActive {
                id: reservation.id,
                status,
            }
            .into());
        }
        Ok(())
    }
}

impl SkuEntry {
    fn new(stock_total: u32, per_user_limit: Option<u32>) -> Self {
        Self {
            counter: SkuCounter::new(StockCounts {
                available: u64::from(stock_total),
                reserved: 0,
                sold: 0,
            }),
            per_user_limit,
            stock_promised: AtomicU64::new(u64::from(stock_total)),
        }
    }

    /// The units the log has given this SKU, including queued restocks.
    pub fn stock_promised(&self) -> u64 {
        self.stock_promised.load(Ordering::Acquire)
    }

    /// Conservation, checked after every completion that touches the SKU's units, in release
    /// builds too: the counter holds no more units than the log gave the SKU, and in a replay
    /// (`Conservation::Exact`, nothing queued) exactly as many. A break means the views no
    /// longer match the log; the caller turns it into an `ApplyError`, which stops the log
    /// writer (or the open) instead of selling from a counter that lies.
    pub(super) fn check_conserved(
        &self,
        sku: Sku,
        counts: StockCounts,
        conservation: Conservation,
    ) -> Result<(), String> {
        let promised = self.stock_promised();
        let total = counts.total();
        let exact = matches!(conservation, Conservation::Exact);
        if total > promised || (exact && total != promised) {
            return Err(format!(
                "{sku}: available {} + reserved {} + sold {} = {total}, but the log gave it \
                 {promised} units",
                counts.available, counts.reserved, counts.sold
            ));
        }
        Ok(())
    }
}

fn validate_new_sku(per_user_limit: Option<u32>) -> Result<(), EngineError> {
    if per_user_limit == Some(0) {
        return Err(StockError::InvalidQuantity {
            max: RESERVATION_UNITS_MAX,
        }
        .into());
    }
    Ok(())
}

/// Why the stock refused a step (see the module doc: units are taken at once, given back
/// only through the log).
#[derive(Debug, thiserror::Error)]
pub enum StockError {
    /// The caller named a SKU the engine does not know.
    #[error("SKU {0} does not exist")]
    SkuNotFound(Sku),
    /// The caller tried to create a SKU under an id that is taken.
    #[error("SKU {0} exists already")]
    SkuExists(Sku),
    /// Fewer units are available than were asked for; nothing was taken.
    #[error("only {available} unit(s) left")]
    SoldOut {
        /// The units available when the request was refused.
        available: u64,
    },
    /// The customer would hold more units of a SKU than its per-customer limit allows.
    #[error("the purchase limit of {limit} unit(s) per customer would be exceeded")]
    PurchaseLimitExceeded {
        /// The SKU's per-customer limit, in units.
        limit: u32,
    },
    /// The caller asked for 0 units or more than a single request may take (also a
    /// per-customer limit of 0 on a new SKU).
    #[error("quantity must be between 1 and {max}")]
    InvalidQuantity {
        /// The largest quantity accepted, in units.
        max: u32,
    },
    /// A restock would give the SKU more units than its counter can hold; nothing was added.
    #[error("a SKU holds at most {max} units over its lifetime")]
    StockLimitExceeded {
        /// The most units a SKU may ever be given (`SKU_UNITS_MAX`).
        max: u64,
    },
    /// The caller named a reservation the engine does not know.
    #[error("reservation {0} does not exist")]
    ReservationNotFound(ReservationId),
    /// The reservation can no longer be committed or released: it is closed, already closing,
    /// or belongs to an order (which handles it).
    #[error("reservation {id} is {status}, not active")]
    ReservationNotActive {
        /// The reservation asked about.
        id: ReservationId,
        /// Its state in words, such as "closing" or "a line of an order".
        status: &'static str,
    },
    /// A commit came after the reservation's deadline, even if its expiry is not logged yet.
    #[error("reservation {id} expired at {deadline_ms}")]
    ReservationExpired {
        /// The reservation asked about.
        id: ReservationId,
        /// When it expired, in ms since the Unix epoch.
        deadline_ms: Millis,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKU: Sku = Sku(7);

    fn created() -> State {
        let state = State::new();
        let record = Record::SkuCreated {
            sku: SKU,
            stock_total: 5,
            per_user_limit: None,
        };
        state.apply(1, &record).expect("a new SKU applies");
        state
    }

    fn reserve(id: u64) -> Record {
        Record::StockReserved {
            reservation: ReservationId(id),
            sku: SKU,
            user: UserId(1),
            quantity: 2,
            deadline_ms: 1_000,
        }
    }

    #[test]
    fn a_replay_step_that_breaks_conservation_is_refused() {
        let state = created();
        state.apply(2, &reserve(1)).expect("a reservation applies");
        // A defect that moved units outside the log: the counter holds more than was given.
        let entry = state.skus.get(&SKU).expect("the SKU exists");
        entry.counter.restock(1).expect("room in the counter");
        drop(entry);

        let refused = state
            .apply(
                3,
                &Record::ReservationCommitted {
                    reservation: ReservationId(1),
                },
            )
            .expect_err("the counter holds 6 units of 5");
        assert_eq!(refused.seq, 3);
        assert!(
            refused.reason.contains("= 6, but the log gave it 5 units"),
            "{refused}"
        );
    }

    #[test]
    fn a_replay_step_that_loses_units_is_refused() {
        let tampered = State::new();
        tampered
            .apply(
                1,
                &Record::SkuCreated {
                    sku: SKU,
                    stock_total: 5,
                    per_user_limit: None,
                },
            )
            .expect("a new SKU applies");
        tampered
            .skus
            .get(&SKU)
            .expect("the SKU exists")
            .stock_promised
            .fetch_add(1, Ordering::AcqRel);
        let refused = tampered
            .apply(2, &reserve(1))
            .expect_err("the log gave 6 but the counter holds 5");
        assert!(
            refused.reason.contains("= 5, but the log gave it 6 units"),
            "{refused}"
        );
    }

    #[test]
    fn conserved_steps_apply() {
        let state = created();
        state.apply(2, &reserve(1)).expect("a reservation applies");
        state
            .apply(
                3,
                &Record::Restocked {
                    sku: SKU,
                    quantity: 4,
                },
            )
            .expect("a restock applies");
        state
            .apply(
                4,
                &Record::ReservationCommitted {
                    reservation: ReservationId(1),
                },
            )
            .expect("a commit applies");
        let counts = state.stock(SKU).expect("the SKU exists");
        assert_eq!((counts.available, counts.reserved, counts.sold), (7, 0, 2));
    }
}
