//! The order saga on the state. Every transition goes through `check_step` (the rules) and
//! `step` (the one mutation), for a live decision and a replay alike; units move only in
//! `complete_order`, after the record is durable.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use const_format::concatcp;

use super::{Conservation, Reservation, ReservationStatus, State, StockError, apply_error};
use crate::catalog::CatalogError;
use crate::clock::Millis;
use crate::error::{ApplyError, EngineError, Internal};
use crate::ids::{OrderId, ReservationId, Sku, UserId};
use crate::orders::{
    LineRequest, ORDER_LINES_MAX, Order, OrderError, OrderStatus, PaymentOutcome, Placement,
};
use crate::record::{Digest, OrderLine, OrderRecord, Record, ReleaseReason, Sealed, Seq};
use crate::state::RESERVATION_UNITS_MAX;
use crate::wal::Ticket;

type Append<'a> = &'a dyn Fn(Record) -> Result<Ticket, EngineError>;

/// How a line's units move when its order settles.
#[derive(Clone, Copy)]
enum Settle {
    Sell,
    Release(ReleaseReason),
    Unsell(ReleaseReason),
}

/// A placement in progress: what is needed to log it.
pub struct NewOrder<'a> {
    pub user: UserId,
    pub idempotency: Digest,
    pub request: Digest,
    pub lines: &'a [LineRequest],
    pub shipping_address: Sealed,
    pub ttl_ms: Millis,
}

impl State {
    /// Takes every line's units at once (all or nothing), then logs the order in ONE record,
    /// so a multi-line order is never half placed, in memory or in the log.
    pub fn place_order(
        &self,
        id: OrderId,
        new: NewOrder<'_>,
        now_ms: Millis,
        append: Append<'_>,
    ) -> Result<Placement, EngineError> {
        validate_lines(new.lines)?;
        // The key's slot is the lock: a retry of the same request waits here for the first.
        let slot = match self.idempotency.entry(new.idempotency) {
            dashmap::Entry::Occupied(seen) => {
                let (request, order, durable) = *seen.get();
                if request != new.request {
                    return Err(OrderError::IdempotencyKeyReused.into());
                }
                if !durable {
                    return Err(OrderError::IdempotencyKeyInUse.into());
                }
                // Closing at this moment: the writer removes it from memory before its key (which
                // waits for this slot), and the cold tier holds it as it closed.
                let order = match self.order(order) {
                    Some(live) => live,
                    None => self
                        .closed_order(order)?
                        .ok_or(OrderError::OrderNotFound(order))?,
                };
                return Ok(Placement::Replayed(order));
            }
            dashmap::Entry::Vacant(slot) => slot,
        };
        // A closed order's key is in the cold tier; its slot above still serialises the retries.
        if let Some(order) = self.closed_order_of_key(&new.idempotency)? {
            if order.request != new.request {
                return Err(OrderError::IdempotencyKeyReused.into());
            }
            return Ok(Placement::Replayed(order));
        }
        let mut taken: Vec<(Sku, u32)> = Vec::with_capacity(new.lines.len());
        let mut lines = Vec::with_capacity(new.lines.len());
        let mut currency = None;
        let undo = |taken: &[(Sku, u32)]| {
            for &(sku, quantity) in taken {
                self.undo_take(sku, new.user, quantity);
            }
        };
        for line in new.lines {
            let result = self.take_line(new.user, line, now_ms, &mut currency);
            match result {
                Ok(placed) => {
                    taken.push((Sku(line.product.0), line.quantity));
                    lines.push(placed);
                }
                Err(error) => {
                    undo(&taken);
                    return Err(error);
                }
            }
        }
        let deadline_ms = now_ms.saturating_add(new.ttl_ms);
        let record = OrderRecord::OrderPlaced {
            order: id,
            user: new.user,
            idempotency: new.idempotency,
            request: new.request,
            lines: lines.clone(),
            currency: currency.unwrap_or_default(),
            shipping_address: new.shipping_address,
            deadline_ms,
            created_ms: now_ms,
        };
        let order = order_placed(&record).expect("an OrderPlaced record");
        let ticket = match append(record.into()) {
            Ok(ticket) => ticket,
            Err(error) => {
                undo(&taken);
                return Err(error);
            }
        };
        self.insert_order_lines(&order);
        self.next_order.fetch_max(id.0 + 1, Ordering::AcqRel);
        self.order_users.set(id, new.user);
        self.orders.insert(id, order.clone());
        slot.insert((new.request, id, false));
        Ok(Placement::Placed(order, ticket))
    }

    /// A refusal that placing `lines` for `user` would certainly give right now, read without
    /// taking anything: a product that does not exist, a sale that is not open, a purchase
    /// limit already used up, or too few units left. `None` when the placement may succeed
    /// (it alone decides). Refusing here is the same as a take refused at this moment, so a
    /// crowd hitting a sold-out drop is answered without the cost of a placement.
    pub fn certain_refusal(
        &self,
        user: UserId,
        lines: &[LineRequest],
        now_ms: Millis,
    ) -> Option<EngineError> {
        if let Err(error) = validate_lines(lines) {
            return Some(error);
        }
        let mut currency: Option<String> = None;
        for line in lines {
            let read = self.catalog.read(line.product, |product| {
                product.check_sale_open(now_ms)?;
                // Lines in two currencies: the placement refuses that with its own answer.
                let line_currency = &product.current().details.currency;
                let mixed = currency.get_or_insert_with(|| line_currency.clone()) != line_currency;
                Ok((product.sku(), mixed))
            });
            let (sku, mixed) = match read {
                None => {
                    return Some(EngineError::Catalog(CatalogError::ProductNotFound(
                        line.product,
                    )));
                }
                Some(Err(error)) => return Some(error),
                Some(Ok(read)) => read,
            };
            if mixed {
                return None;
            }
            let entry = self.skus.get(&sku)?;
            if let Some(limit) = entry.per_user_limit
                && self.held_by(user, sku).saturating_add(line.quantity) > limit
            {
                return Some(EngineError::Stock(StockError::PurchaseLimitExceeded {
                    limit,
                }));
            }
            let available = entry.counter.load().available;
            if available < u64::from(line.quantity) {
                return Some(EngineError::Stock(StockError::SoldOut { available }));
            }
        }
        None
    }

    /// Whether an Idempotency-Key (as its keyed hash) was used before. A cold tier that cannot
    /// be read answers "seen", so that the placement itself decides (and reports the fault).
    pub fn idempotency_key_seen(&self, idempotency: &Digest) -> bool {
        self.idempotency.contains_key(idempotency)
            || self
                .cold
                .get()
                .is_some_and(|cold| !matches!(cold.order_of_key(idempotency), Ok(None)))
    }

    /// An order as the cold tier holds it, with the last record folded into it, found through
    /// the map of users (the cold tier keys orders by (user, id)).
    pub(crate) fn stored_order(
        &self,
        id: OrderId,
    ) -> Result<Option<crate::cold::StoredOrder>, EngineError> {
        let (Some(cold), Some(user)) = (self.cold.get(), self.order_users.get(id)) else {
            return Ok(None);
        };
        Ok(cold.get(user, id)?)
    }

    fn closed_order(&self, id: OrderId) -> Result<Option<Order>, EngineError> {
        Ok(self.stored_order(id)?.map(|stored| stored.order))
    }

    /// The closed order an Idempotency-Key placed, from the cold tier.
    fn closed_order_of_key(&self, idempotency: &Digest) -> Result<Option<Order>, EngineError> {
        let Some(cold) = self.cold.get() else {
            return Ok(None);
        };
        let Some(id) = cold.order_of_key(idempotency)? else {
            return Ok(None);
        };
        self.closed_order(id)?.map(Some).ok_or_else(|| {
            EngineError::from(Internal::ColdTier(format!(
                "it indexes a key of {id} but not {id}"
            )))
        })
    }

    pub fn allocate_order_id(&self) -> OrderId {
        OrderId(self.next_order.fetch_add(1, Ordering::AcqRel))
    }

    /// Starts a payment attempt: logged before the provider is asked, so after a crash the
    /// same attempt is asked again with the same key.
    pub fn request_payment(
        &self,
        id: OrderId,
        now_ms: Millis,
        append: Append<'_>,
    ) -> Result<(Order, u32, Ticket), EngineError> {
        let (order, ticket) = self.transition(id, append, |order| {
            if order.status.is_unpaid() && order.payment_in_flight.is_some() {
                return Err(OrderError::PaymentInProgress.into());
            }
            let past_deadline = order.status.is_unpaid() && now_ms > order.deadline_ms;
            if past_deadline || order.status == OrderStatus::Expired {
                return Err(OrderError::OrderExpired.into());
            }
            Ok(OrderRecord::PaymentRequested {
                order: id,
                attempt: order.attempts + 1,
                at_ms: now_ms,
            })
        })?;
        let attempt = order.attempts;
        Ok((order, attempt, ticket))
    }

    /// Records what the provider answered for `attempt`.
    pub fn record_payment(
        &self,
        id: OrderId,
        attempt: u32,
        outcome: PaymentOutcome,
        now_ms: Millis,
        append: Append<'_>,
    ) -> Result<(Order, Ticket), EngineError> {
        self.transition(id, append, |_| {
            Ok(match outcome {
                PaymentOutcome::Charged => OrderRecord::PaymentSucceeded {
                    order: id,
                    attempt,
                    at_ms: now_ms,
                },
                PaymentOutcome::Failed(reason) => OrderRecord::PaymentFailed {
                    order: id,
                    attempt,
                    reason,
                    at_ms: now_ms,
                },
                PaymentOutcome::TimedOut => OrderRecord::PaymentTimedOut {
                    order: id,
                    attempt,
                    at_ms: now_ms,
                },
            })
        })
    }

    /// Expires an unpaid order past its deadline; never one whose payment is being asked.
    pub fn expire_order(
        &self,
        id: OrderId,
        now_ms: Millis,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        self.transition(id, append, |order| {
            if now_ms < order.deadline_ms {
                return Err(OrderError::OrderStateConflict("not due").into());
            }
            Ok(OrderRecord::OrderExpired {
                order: id,
                at_ms: now_ms,
            })
        })
        .map(|(_, ticket)| ticket)
    }

    /// Unpaid orders whose deadline is at or before `now_ms`.
    pub fn due_orders(&self, now_ms: Millis) -> Vec<OrderId> {
        super::pop_through(&self.order_deadlines, now_ms)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    /// Delivered orders whose return window (`window_ms` after delivery) has passed by
    /// `now_ms`, with their delivery time; taken out of the index (an order that moved on
    /// meanwhile is refused when it is closed, and so leaves it).
    pub fn returns_due(&self, now_ms: Millis, window_ms: Millis) -> Vec<(Millis, OrderId)> {
        // A return may be asked for up to and including the window's last millisecond: due are
        // the orders delivered before `now_ms - window_ms`.
        match now_ms.checked_sub(window_ms.saturating_add(1)) {
            Some(through) => super::pop_through(&self.return_windows, through),
            None => Vec::new(),
        }
    }

    /// Puts a delivered order back in the index of return windows (its closing was not logged).
    pub fn recheck_return_later(&self, delivered_ms: Millis, id: OrderId) {
        self.return_windows.lock().insert((delivered_ms, id));
    }

    /// Closes a delivered order whose return window has passed: no return can be asked for
    /// any more, and the order leaves the hot tier once the record is durable.
    pub fn close_returns(
        &self,
        id: OrderId,
        now_ms: Millis,
        window_ms: Millis,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        self.transition(id, append, |order| {
            let open = order
                .delivered_ms
                .is_none_or(|delivered| now_ms <= delivered.saturating_add(window_ms));
            if open {
                return Err(OrderError::OrderStateConflict("not due").into());
            }
            Ok(OrderRecord::ReturnWindowClosed {
                order: id,
                at_ms: now_ms,
            })
        })
        .map(|(_, ticket)| ticket)
    }

    /// Puts an order back in the expiry index (its payment was in flight when it fell due).
    pub fn recheck_order_later(&self, id: OrderId, at_ms: Millis) {
        self.order_deadlines.lock().insert((at_ms, id));
    }

    pub fn cancel_order(
        &self,
        id: OrderId,
        now_ms: Millis,
        append: Append<'_>,
    ) -> Result<(Order, Ticket), EngineError> {
        self.transition(id, append, |order| {
            Ok(OrderRecord::OrderCancelled {
                order: id,
                refund: order.status == OrderStatus::Paid,
                at_ms: now_ms,
            })
        })
    }

    /// A step whose record needs nothing of the order as it is: the rules of `check_step`
    /// decide whether it may follow the order's status.
    pub fn step(
        &self,
        id: OrderId,
        record: OrderRecord,
        append: Append<'_>,
    ) -> Result<(Order, Ticket), EngineError> {
        self.transition(id, append, |_| Ok(record))
    }

    /// A return may be asked for within `window_ms` of delivery.
    pub fn request_return(
        &self,
        id: OrderId,
        reason: String,
        now_ms: Millis,
        window_ms: Millis,
        append: Append<'_>,
    ) -> Result<(Order, Ticket), EngineError> {
        self.transition(id, append, |order| {
            if order
                .delivered_ms
                .is_some_and(|delivered| now_ms > delivered.saturating_add(window_ms))
            {
                return Err(OrderError::NotReturnable("the return window has passed").into());
            }
            Ok(OrderRecord::ReturnRequested {
                order: id,
                reason,
                at_ms: now_ms,
            })
        })
    }

    /// One step of an order's saga: under the order's lock, `record_for` makes the step's own
    /// checks and builds its record from the order as it is; the rules (`check_step`) are
    /// checked, the record queued and the step applied, and the order answered as it now is.
    fn transition(
        &self,
        id: OrderId,
        append: Append<'_>,
        record_for: impl FnOnce(&Order) -> Result<OrderRecord, EngineError>,
    ) -> Result<(Order, Ticket), EngineError> {
        let Some(mut order) = self.orders.get_mut(&id) else {
            return Err(self.refusal_of_closed(id, record_for));
        };
        let record = record_for(&order)?;
        check_step(&order, &record)?;
        let ticket = append(record.clone().into())?;
        step(&mut order, &record);
        self.track_settlement(&order);
        Ok((order.clone(), ticket))
    }

    /// Why a step of an order the hot tier does not hold is refused: it does not exist, or it
    /// is closed, and a closed order takes no step. The same rules answer (`record_for`, then
    /// `check_step`), read from the cold tier, so a closed order is refused as it always was.
    fn refusal_of_closed(
        &self,
        id: OrderId,
        record_for: impl FnOnce(&Order) -> Result<OrderRecord, EngineError>,
    ) -> EngineError {
        let order = match self.closed_order(id) {
            Ok(Some(order)) => order,
            Ok(None) => return EngineError::Order(OrderError::OrderNotFound(id)),
            Err(error) => return error,
        };
        let step =
            record_for(&order).and_then(|record| check_step(&order, &record).map(|()| record));
        match step {
            Err(refusal) => refusal,
            // Delivered, and closed when its return window passed: the window's rule answers.
            Ok(OrderRecord::ReturnRequested { .. }) if order.status == OrderStatus::Delivered => {
                EngineError::Order(OrderError::NotReturnable("the return window has passed"))
            }
            Ok(OrderRecord::ReturnWindowClosed { .. }) => {
                EngineError::Order(OrderError::OrderStateConflict(order.status.as_str()))
            }
            Ok(_) => Internal::Defect(format!("{id} is closed but its rules allow a step")).into(),
        }
    }

    /// Orders with a payment answer outstanding or a refund due, from the index: the cost
    /// follows how many there are, not how many orders were ever taken.
    pub fn orders_to_settle(&self) -> Vec<Order> {
        // The ids first, the index released: reading an order takes its entry's lock.
        let ids: Vec<OrderId> = self.to_settle.lock().iter().copied().collect();
        ids.into_iter().filter_map(|id| self.order(id)).collect()
    }

    /// Keeps `to_settle` in step with `order`; call with the order's entry held.
    pub(super) fn track_settlement(&self, order: &Order) {
        let mut to_settle = self.to_settle.lock();
        if order.payment_in_flight.is_some() || (order.refund_due && !order.refunded) {
            to_settle.insert(order.id);
        } else {
            to_settle.remove(&order.id);
        }
    }

    /// A live order as the hot tier holds it: decided, perhaps not durable yet. `None` for an
    /// order that is closed (read it from the cold tier) or does not exist.
    pub fn order(&self, id: OrderId) -> Option<Order> {
        self.orders.get(&id).map(|o| o.clone())
    }

    /// Every order the hot tier holds.
    pub fn hot_orders(&self) -> Vec<Order> {
        self.orders.iter().map(|o| o.clone()).collect()
    }

    /// How many orders the hot tier holds.
    pub fn live_order_count(&self) -> usize {
        self.orders.len()
    }

    /// How many orders of the hot tier are in each status (the sagas under way), counted
    /// without copying an order.
    pub fn live_orders_by_status(&self) -> BTreeMap<OrderStatus, usize> {
        let mut by_status = BTreeMap::new();
        for order in self.orders.iter() {
            *by_status.entry(order.status).or_insert(0) += 1;
        }
        by_status
    }

    /// Drops every closed order from the hot tier (after an upgrade from a store whose
    /// snapshots held every order; a running state drops each as it closes).
    pub fn evict_closed(&self) -> usize {
        let closed: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|o| is_closed(o))
            .map(|o| o.id)
            .collect();
        for &id in &closed {
            self.evict(id);
        }
        closed.len()
    }

    /// Removes a closed order, its lines' reservations and its key from the hot tier: it takes
    /// no step again, and the cold tier holds it as it closed (folded before its record was
    /// flushed, which happened before this after-durable step).
    fn evict(&self, id: OrderId) {
        let Some((_, order)) = self.orders.remove(&id) else {
            return;
        };
        for line in &order.lines {
            self.order_owned.remove(&line.reservation);
            let Some((_, reservation)) = self.reservations.remove(&line.reservation) else {
                continue;
            };
            // Delivered and kept: its units stay sold, and count against the limit.
            if reservation.status == ReservationStatus::Committed {
                *self.retired_sold.entry(reservation.sku).or_default() +=
                    u64::from(reservation.quantity);
                let limited = self
                    .skus
                    .get(&reservation.sku)
                    .is_some_and(|sku| sku.per_user_limit.is_some());
                if limited {
                    *self
                        .retired_held
                        .entry((reservation.user, reservation.sku))
                        .or_default() += reservation.quantity;
                }
            }
        }
        self.idempotency.remove(&order.idempotency);
        self.to_settle.lock().remove(&id);
    }

    // ----- replay and the after-durable step ---------------------------------------------

    pub(super) fn apply_order(&self, seq: Seq, record: &OrderRecord) -> Result<(), ApplyError> {
        if let OrderRecord::OrderPlaced {
            order: id,
            user,
            lines,
            ..
        } = record
        {
            if self.orders.contains_key(id) {
                return Err(apply_error(seq, format!("{id} placed twice")));
            }
            for line in lines {
                let entry = self
                    .skus
                    .get(&Sku(line.product.0))
                    .ok_or_else(|| apply_error(seq, format!("{}: no SKU", line.product)))?;
                self.take_units(&entry, Sku(line.product.0), *user, line.quantity)
                    .map_err(|e| apply_error(seq, format!("{id}: {e}")))?;
            }
            let order = order_placed(record).expect("an OrderPlaced record");
            self.insert_order_lines(&order);
            self.next_order.fetch_max(id.0 + 1, Ordering::AcqRel);
            self.order_users.set(*id, *user);
            self.idempotency
                .insert(order.idempotency, (order.request, *id, false));
            self.orders.insert(*id, order);
            return Ok(());
        }
        let id = record.order();
        let mut order = self
            .orders
            .get_mut(&id)
            .ok_or_else(|| apply_error(seq, format!("{id} does not exist")))?;
        check_step(&order, record).map_err(|e| apply_error(seq, format!("{id}: {e}")))?;
        step(&mut order, record);
        self.track_settlement(&order);
        Ok(())
    }

    /// Units move here, after the record is durable: sold on payment, back on sale on
    /// expiry, cancellation and return.
    pub(super) fn complete_order(
        &self,
        seq: Seq,
        record: &OrderRecord,
        conservation: Conservation,
    ) -> Result<(), ApplyError> {
        let id = record.order();
        let settle = match record {
            OrderRecord::OrderPlaced {
                idempotency,
                deadline_ms,
                ..
            } => {
                if let Some(mut seen) = self.idempotency.get_mut(idempotency) {
                    seen.2 = true;
                }
                self.order_deadlines.lock().insert((*deadline_ms, id));
                return Ok(());
            }
            OrderRecord::OrderDelivered { at_ms, .. } => {
                self.return_windows.lock().insert((*at_ms, id));
                return Ok(());
            }
            // The last step an order takes: it leaves the hot tier.
            OrderRecord::RefundIssued { .. } | OrderRecord::ReturnWindowClosed { .. } => {
                self.evict(id);
                return Ok(());
            }
            OrderRecord::PaymentSucceeded { .. } => Settle::Sell,
            OrderRecord::OrderExpired { .. } => Settle::Release(ReleaseReason::Expired),
            OrderRecord::OrderCancelled { refund: false, .. } => {
                Settle::Release(ReleaseReason::Cancelled)
            }
            OrderRecord::OrderCancelled { refund: true, .. } => {
                Settle::Unsell(ReleaseReason::Cancelled)
            }
            OrderRecord::ReturnApproved { .. } => Settle::Unsell(ReleaseReason::Returned),
            _ => return Ok(()),
        };
        let lines = self
            .orders
            .get(&id)
            .map(|o| o.lines.clone())
            .ok_or_else(|| apply_error(seq, format!("{id} does not exist")))?;
        for line in &lines {
            self.settle_line(seq, line.reservation, settle, conservation)?;
        }
        // Expired, or cancelled before payment: closed for good.
        if matches!(
            record,
            OrderRecord::OrderExpired { .. } | OrderRecord::OrderCancelled { refund: false, .. }
        ) {
            self.evict(id);
        }
        Ok(())
    }

    // ----- the pieces ----------------------------------------------------------------------

    fn take_line(
        &self,
        user: UserId,
        line: &LineRequest,
        now_ms: Millis,
        currency: &mut Option<String>,
    ) -> Result<OrderLine, EngineError> {
        // The current version only, and of it only what the line keeps.
        let (sku, version, name, unit_price) = self
            .catalog
            .read(line.product, |product| {
                product.check_sale_open(now_ms)?;
                let current = product.current();
                match currency {
                    Some(c) if *c != current.details.currency => {
                        return Err(EngineError::from(OrderError::InvalidOrder(
                            "all lines must be in one currency",
                        )));
                    }
                    Some(_) => {}
                    None => *currency = Some(current.details.currency.clone()),
                }
                Ok((
                    product.sku(),
                    current.version,
                    current.details.name.clone(),
                    current.details.price,
                ))
            })
            .ok_or(CatalogError::ProductNotFound(line.product))??;
        let entry = self
            .skus
            .get(&sku)
            .ok_or(CatalogError::ProductNotFound(line.product))?;
        self.take_units(&entry, sku, user, line.quantity)?;
        drop(entry);
        Ok(OrderLine {
            product: line.product,
            version,
            name,
            unit_price,
            quantity: line.quantity,
            reservation: ReservationId(self.next_reservation.fetch_add(1, Ordering::AcqRel)),
        })
    }

    /// The lines' reservations, owned by the order: they expire with it, not on their own.
    fn insert_order_lines(&self, order: &Order) {
        for line in &order.lines {
            self.next_reservation
                .fetch_max(line.reservation.0 + 1, Ordering::AcqRel);
            self.order_owned.insert(line.reservation, order.id);
            self.reservations.insert(
                line.reservation,
                Reservation::active(
                    line.reservation,
                    Sku(line.product.0),
                    order.user,
                    line.quantity,
                    order.deadline_ms,
                ),
            );
        }
    }

    fn settle_line(
        &self,
        seq: Seq,
        id: ReservationId,
        settle: Settle,
        conservation: Conservation,
    ) -> Result<(), ApplyError> {
        let mut reservation = self.reservation_to_apply(seq, id)?;
        let sku = self
            .skus
            .get(&reservation.sku)
            .ok_or_else(|| apply_error(seq, format!("{} does not exist", reservation.sku)))?;
        let (from, to, moved) = match settle {
            Settle::Sell => (
                ReservationStatus::Active,
                ReservationStatus::Committed,
                sku.counter.sell(reservation.quantity),
            ),
            Settle::Release(reason) => (
                ReservationStatus::Active,
                ReservationStatus::Released(reason),
                sku.counter.give_back(reservation.quantity),
            ),
            Settle::Unsell(reason) => (
                ReservationStatus::Committed,
                ReservationStatus::Released(reason),
                sku.counter.unsell(reservation.quantity),
            ),
        };
        if reservation.status != from {
            return Err(apply_error(
                seq,
                format!("{id} is {}", reservation.status.as_str()),
            ));
        }
        let counts = moved
            .map_err(|_| apply_error(seq, format!("{id}: the counter does not hold its units")))?;
        sku.check_conserved(reservation.sku, counts, conservation)
            .map_err(|e| apply_error(seq, e))?;
        if !matches!(settle, Settle::Sell) && sku.per_user_limit.is_some() {
            self.return_allowance(reservation.user, reservation.sku, reservation.quantity);
        }
        reservation.status = to;
        Ok(())
    }
}

/// Whether an order is closed for good: no rule lets it take another step (expired; cancelled
/// with nothing to refund; refunded).
pub(crate) fn is_closed(order: &Order) -> bool {
    match order.status {
        OrderStatus::Expired => true,
        OrderStatus::Cancelled | OrderStatus::Returned => !order.refund_due || order.refunded,
        _ => false,
    }
}

/// The rules of the saga: which step may follow which. One place, for decisions and replay.
fn check_step(order: &Order, record: &OrderRecord) -> Result<(), EngineError> {
    let status = order.status;
    let conflict = || EngineError::Order(OrderError::OrderStateConflict(status.as_str()));
    let ok = match record {
        OrderRecord::OrderPlaced { .. } => false,
        OrderRecord::PaymentRequested { attempt, .. } => {
            if !status.is_unpaid() {
                return Err(conflict());
            }
            order.payment_in_flight.is_none() && *attempt == order.attempts + 1
        }
        OrderRecord::PaymentSucceeded { attempt, .. }
        | OrderRecord::PaymentFailed { attempt, .. }
        | OrderRecord::PaymentTimedOut { attempt, .. } => order.payment_in_flight == Some(*attempt),
        OrderRecord::OrderExpired { .. } => {
            if order.payment_in_flight.is_some() {
                return Err(OrderError::PaymentInProgress.into());
            }
            status.is_unpaid()
        }
        OrderRecord::OrderCancelled { refund, .. } => {
            if status.is_unpaid() && order.payment_in_flight.is_some() {
                return Err(OrderError::PaymentInProgress.into());
            }
            let cancellable =
                (status.is_unpaid() && !refund) || (status == OrderStatus::Paid && *refund);
            if !cancellable {
                return Err(OrderError::NotCancellable(status.as_str()).into());
            }
            true
        }
        OrderRecord::OrderShipped { .. } => status == OrderStatus::Paid,
        OrderRecord::OrderDelivered { .. } => status == OrderStatus::Shipped,
        OrderRecord::ReturnRequested { .. } => {
            if status != OrderStatus::Delivered {
                return Err(
                    OrderError::NotReturnable("only a delivered order can be returned").into(),
                );
            }
            true
        }
        OrderRecord::ReturnApproved { .. } => status == OrderStatus::ReturnRequested,
        OrderRecord::RefundIssued { .. } => order.refund_due && !order.refunded,
        OrderRecord::ReturnWindowClosed { .. } => status == OrderStatus::Delivered,
    };
    if ok { Ok(()) } else { Err(conflict()) }
}

/// The one mutation of an order by a step record.
pub(crate) fn step(order: &mut Order, record: &OrderRecord) {
    match record {
        OrderRecord::OrderPlaced { .. } => {}
        OrderRecord::PaymentRequested { attempt, .. } => {
            order.attempts = *attempt;
            order.payment_in_flight = Some(*attempt);
        }
        OrderRecord::PaymentSucceeded { attempt, at_ms, .. } => {
            order.payment_in_flight = None;
            order.paid_attempt = Some(*attempt);
            order.last_failure = None;
            order.set_status(OrderStatus::Paid, *at_ms);
        }
        OrderRecord::PaymentFailed { reason, at_ms, .. } => {
            order.payment_in_flight = None;
            order.last_failure = Some(*reason);
            if order.status != OrderStatus::PaymentFailed {
                order.set_status(OrderStatus::PaymentFailed, *at_ms);
            }
        }
        OrderRecord::PaymentTimedOut { .. } => {}
        OrderRecord::OrderExpired { at_ms, .. } => order.set_status(OrderStatus::Expired, *at_ms),
        OrderRecord::OrderCancelled { refund, at_ms, .. } => {
            order.refund_due = *refund;
            order.set_status(OrderStatus::Cancelled, *at_ms);
        }
        OrderRecord::OrderShipped {
            carrier,
            tracking_number,
            at_ms,
            ..
        } => {
            order.tracking = Some((carrier.clone(), tracking_number.clone()));
            order.set_status(OrderStatus::Shipped, *at_ms);
        }
        OrderRecord::OrderDelivered { at_ms, .. } => {
            order.delivered_ms = Some(*at_ms);
            order.set_status(OrderStatus::Delivered, *at_ms);
        }
        OrderRecord::ReturnRequested { reason, at_ms, .. } => {
            order.return_reason = Some(reason.clone());
            order.set_status(OrderStatus::ReturnRequested, *at_ms);
        }
        OrderRecord::ReturnApproved { at_ms, .. } => {
            order.refund_due = true;
            order.set_status(OrderStatus::Returned, *at_ms);
        }
        OrderRecord::RefundIssued { .. } => order.refunded = true,
        // The order stays as it was delivered; the cold tier notes it closed.
        OrderRecord::ReturnWindowClosed { .. } => {}
    }
}

/// The order an `OrderPlaced` record creates.
pub(crate) fn order_placed(record: &OrderRecord) -> Option<Order> {
    let OrderRecord::OrderPlaced {
        order,
        user,
        idempotency,
        request,
        lines,
        currency,
        shipping_address,
        deadline_ms,
        created_ms,
    } = record
    else {
        return None;
    };
    Some(Order {
        id: *order,
        user: *user,
        total: lines
            .iter()
            .map(|l| l.unit_price * u64::from(l.quantity))
            .sum(),
        lines: lines.clone(),
        currency: currency.clone(),
        shipping_address: shipping_address.clone(),
        status: OrderStatus::PendingPayment,
        deadline_ms: *deadline_ms,
        created_ms: *created_ms,
        attempts: 0,
        payment_in_flight: None,
        last_failure: None,
        paid_attempt: None,
        refund_due: false,
        refunded: false,
        tracking: None,
        delivered_ms: None,
        return_reason: None,
        history: vec![(OrderStatus::PendingPayment, *created_ms)],
        idempotency: *idempotency,
        request: *request,
    })
}

fn validate_lines(lines: &[LineRequest]) -> Result<(), EngineError> {
    if lines.is_empty() || lines.len() > ORDER_LINES_MAX {
        return Err(OrderError::InvalidOrder(concatcp!(
            "an order has 1 to ",
            ORDER_LINES_MAX,
            " lines"
        ))
        .into());
    }
    for (i, line) in lines.iter().enumerate() {
        if line.quantity == 0 || line.quantity > RESERVATION_UNITS_MAX {
            return Err(StockError::InvalidQuantity {
                max: RESERVATION_UNITS_MAX,
            }
            .into());
        }
        if lines[..i].iter().any(|l| l.product == line.product) {
            return Err(
                OrderError::InvalidOrder("each product may appear on one line only").into(),
            );
        }
    }
    Ok(())
}
