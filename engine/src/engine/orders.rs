//! The engine's order operations: keys and addresses become keyed hashes and sealed fields
//! here; the saga's rules live in `state/orders.rs`.

use crate::clock::Millis;
use crate::cold::StoredOrder;
use crate::error::{EngineError, Internal};
use crate::ids::{OrderId, UserId};
use crate::orders::{
    IdempotencyKey, LineRequest, Order, OrderRequest, PaymentOutcome, Placement, ReturnReason,
    Shipment, ShippingAddress,
};
use crate::record::OrderRecord;
use crate::state::NewOrder;
use crate::wal::Ticket;

use super::Engine;

const IDEMPOTENCY_PURPOSE: &str = "idempotency-key";
const REQUEST_PURPOSE: &str = "order-request";
/// How long an order whose payment was in flight at its deadline (or an expiry the log
/// refused) waits before it is looked at again.
pub(super) const EXPIRY_RECHECK_MS: Millis = 1_000;

impl Engine {
    /// Places an order: every line's units are taken at once or none is. The same
    /// `idempotency_key` with the same request (in its canonical form) answers the same order
    /// again; with another request it is refused.
    pub fn place_order(
        &self,
        user: UserId,
        idempotency_key: &IdempotencyKey,
        request: &OrderRequest,
        ttl_ms: Millis,
    ) -> Result<Placement, EngineError> {
        let keys = self.keys();
        let idempotency = self.idempotency_hash(user, idempotency_key);
        let lines = request.lines();
        let id = self.inner.state.allocate_order_id();
        let shipping_address = keys.cipher().encrypt(
            &id.to_string(),
            "shipping_address",
            &request.shipping_address().to_text(),
        );
        let request = keys.secret_hash(REQUEST_PURPOSE, &request.fingerprint());
        let wal = self.ready_wal()?;
        self.inner.state.place_order(
            id,
            NewOrder {
                user,
                idempotency,
                request,
                lines,
                shipping_address,
                ttl_ms,
            },
            self.now_ms(),
            &|r| wal.append(r),
        )
    }

    /// A refusal `place_order` would certainly give right now, found without the cost of a
    /// placement (no hashing of the request, no sealing of the address, nothing taken): for
    /// the crowd that keeps asking after a drop sold out. `None` if the placement may succeed,
    /// and always for a key used before, whose order is answered again whatever the stock.
    pub fn certain_refusal(
        &self,
        user: UserId,
        idempotency_key: &IdempotencyKey,
        lines: &[LineRequest],
    ) -> Option<EngineError> {
        let state = &self.inner.state;
        // The refusal first (memory only), the key only then: a placement that goes on pays
        // for no look-up of the cold tier here.
        let refusal = state.certain_refusal(user, lines, self.now_ms())?;
        if state.idempotency_key_seen(&self.idempotency_hash(user, idempotency_key)) {
            return None;
        }
        Some(refusal)
    }

    fn idempotency_hash(
        &self,
        user: UserId,
        idempotency_key: &IdempotencyKey,
    ) -> crate::record::Digest {
        let mut scoped = user.to_string().into_bytes();
        scoped.push(0);
        scoped.extend_from_slice(idempotency_key.as_str().as_bytes());
        self.keys().secret_hash(IDEMPOTENCY_PURPOSE, &scoped)
    }

    /// Starts a payment attempt; ask the provider only once the ticket is durable, with
    /// `order.payment_key(attempt)`.
    pub fn request_payment(&self, id: OrderId) -> Result<(Order, u32, Ticket), EngineError> {
        let wal = self.ready_wal()?;
        self.inner
            .state
            .request_payment(id, self.now_ms(), &|r| wal.append(r))
    }

    /// Records what the provider answered for `attempt`, the order's attempt in flight:
    /// charged, the order is paid and its units are sold; failed, it stays payable until its
    /// deadline; timed out, the attempt stays in flight and `resolve_payments` asks again.
    /// Answers the order as it now is and a `Ticket`: the outcome is durable once waited.
    ///
    /// Errors: `OrderNotFound`, `OrderStateConflict` if `attempt` is not the one in flight, and
    /// `ShuttingDown` or `LogFailed` when the log takes no writes.
    pub fn record_payment(
        &self,
        id: OrderId,
        attempt: u32,
        outcome: PaymentOutcome,
    ) -> Result<(Order, Ticket), EngineError> {
        let wal = self.ready_wal()?;
        self.inner
            .state
            .record_payment(id, attempt, outcome, self.now_ms(), &|r| wal.append(r))
    }

    /// Cancels an order: an unpaid one's units go back on sale, a paid one's too, and its
    /// refund falls due (`refund_order` makes it). Answers the order as it now is and a
    /// `Ticket`: the cancel (and the units' return) is durable once waited.
    ///
    /// Errors: `OrderNotFound`, `PaymentInProgress` while a payment attempt awaits its answer,
    /// `NotCancellable` once the order is past paid (or closed), and `ShuttingDown` or
    /// `LogFailed` when the log takes no writes.
    pub fn cancel_order(&self, id: OrderId) -> Result<(Order, Ticket), EngineError> {
        let wal = self.ready_wal()?;
        self.inner
            .state
            .cancel_order(id, self.now_ms(), &|r| wal.append(r))
    }

    /// Marks a paid order shipped, with the carrier and tracking number of `shipment`.
    /// Answers the order as it now is and a `Ticket`: the step is durable once waited.
    ///
    /// Errors: `OrderNotFound`, `OrderStateConflict` unless the order is paid, and
    /// `ShuttingDown` or `LogFailed` when the log takes no writes.
    pub fn ship_order(
        &self,
        id: OrderId,
        shipment: Shipment,
    ) -> Result<(Order, Ticket), EngineError> {
        let Shipment {
            carrier,
            tracking_number,
        } = shipment;
        self.order_step(id, |at_ms| OrderRecord::OrderShipped {
            order: id,
            carrier,
            tracking_number,
            at_ms,
        })
    }

    /// Marks a shipped order delivered; its return window starts now. Answers the order as it
    /// now is and a `Ticket`: the step is durable once waited.
    ///
    /// Errors: `OrderNotFound`, `OrderStateConflict` unless the order is shipped, and
    /// `ShuttingDown` or `LogFailed` when the log takes no writes.
    pub fn deliver_order(&self, id: OrderId) -> Result<(Order, Ticket), EngineError> {
        self.order_step(id, |at_ms| OrderRecord::OrderDelivered { order: id, at_ms })
    }

    /// Asks for a return of a delivered order, within the return window
    /// ([`EngineConfig::return_window_ms`](crate::EngineConfig::return_window_ms)) of delivery.
    pub fn request_return(
        &self,
        id: OrderId,
        reason: ReturnReason,
    ) -> Result<(Order, Ticket), EngineError> {
        let wal = self.ready_wal()?;
        let window_ms = self.inner.config.return_window_ms;
        let reason = reason.into_inner();
        self.inner
            .state
            .request_return(id, reason, self.now_ms(), window_ms, &|r| wal.append(r))
    }

    /// Approves a requested return: the order is returned, its units go back on sale and its
    /// refund falls due (`refund_order` makes it). Answers the order as it now is and a
    /// `Ticket`: the step is durable once waited.
    ///
    /// Errors: `OrderNotFound`, `OrderStateConflict` unless a return was requested, and
    /// `ShuttingDown` or `LogFailed` when the log takes no writes.
    pub fn approve_return(&self, id: OrderId) -> Result<(Order, Ticket), EngineError> {
        self.order_step(id, |at_ms| OrderRecord::ReturnApproved { order: id, at_ms })
    }

    /// Records that the provider refunded the order's due refund; call it only once the
    /// provider confirmed (`refund_order` does). The order is closed and leaves the hot tier
    /// once the `Ticket` is durable.
    ///
    /// Errors: `OrderNotFound`, `OrderStateConflict` unless a refund is due and not yet
    /// issued, and `ShuttingDown` or `LogFailed` when the log takes no writes.
    pub fn refund_issued(&self, id: OrderId) -> Result<Ticket, EngineError> {
        self.order_step(id, |at_ms| OrderRecord::RefundIssued { order: id, at_ms })
            .map(|(_, ticket)| ticket)
    }

    /// Logs the step `record_at(now)` of order `id`, if its status lets it follow.
    fn order_step(
        &self,
        id: OrderId,
        record_at: impl FnOnce(Millis) -> OrderRecord,
    ) -> Result<(Order, Ticket), EngineError> {
        let wal = self.ready_wal()?;
        self.inner
            .state
            .step(id, record_at(self.now_ms()), &|r| wal.append(r))
    }

    // ----- reads: from the cold tier, and only what is durable --------------------------
    //
    // The writer folds a batch into the cold tier just before its flush, so a reader can meet
    // an order whose last step is not durable yet: it then waits for that flush (a few ms),
    // and never shows a status that a crash could still undo.

    /// An order as it is durably, waiting (blocking) for the flush in progress if need be.
    pub fn order(&self, id: OrderId) -> Option<Order> {
        self.try_order(id)
            .inspect_err(|error| tracing::error!(%error, order = %id, "an order could not be read"))
            .ok()
            .flatten()
    }

    /// As [`order`](Self::order), with the store's failure as an error.
    pub fn try_order(&self, id: OrderId) -> Result<Option<Order>, EngineError> {
        let stored = self.inner.state.stored_order(id)?;
        if let Some(ticket) = self.durable_ticket(stored.iter()) {
            ticket.wait()?;
        }
        Ok(stored.map(|s| s.order))
    }

    /// As [`try_order`](Self::try_order), waiting without blocking the thread.
    pub async fn read_order(&self, id: OrderId) -> Result<Option<Order>, EngineError> {
        let stored = self.inner.state.stored_order(id)?;
        if let Some(ticket) = self.durable_ticket(stored.iter()) {
            ticket.durable().await?;
        }
        Ok(stored.map(|s| s.order))
    }

    /// Whose order it is (which never changes, so this read waits for nothing).
    pub fn order_owner(&self, id: OrderId) -> Option<UserId> {
        self.inner.state.order_users.get(id)
    }

    /// What a reader of `stored` must wait for: the newest record folded into any of them.
    fn durable_ticket<'a>(&self, stored: impl Iterator<Item = &'a StoredOrder>) -> Option<Ticket> {
        stored
            .map(|s| s.seq)
            .max()
            .map(|newest| self.inner.wal.ticket_at(newest))
    }

    /// Every order older than `before`, newest first, of `status` if given; at most `limit`.
    /// Walks the ids newest first (through the map of users) and reads each from the cold tier.
    fn stored_orders(
        &self,
        before: Option<OrderId>,
        limit: usize,
        status: Option<crate::orders::OrderStatus>,
    ) -> Result<Vec<StoredOrder>, EngineError> {
        const CHUNK: usize = 256;
        let mut found = Vec::new();
        let mut cursor = before;
        while found.len() < limit {
            let ids = self.inner.state.order_users.newest(cursor, CHUNK);
            let Some(&(last, _)) = ids.last() else {
                break;
            };
            for (id, user) in ids {
                if found.len() >= limit {
                    break;
                }
                if let Some(stored) = self.inner.store.cold.get(user, id)?
                    && status.is_none_or(|s| stored.order.status == s)
                {
                    found.push(stored);
                }
            }
            cursor = Some(last);
        }
        Ok(found)
    }

    /// The user's orders, newest first, older than `before`; at most `limit`. Blocks.
    pub fn orders_of(&self, user: UserId, before: Option<OrderId>, limit: usize) -> Vec<Order> {
        self.inner
            .store
            .cold
            .orders_of(user, before, limit)
            .map_err(EngineError::from)
            .and_then(|stored| self.durable_orders(stored))
            .inspect_err(|error| tracing::error!(%error, user = %user, "orders could not be read"))
            .unwrap_or_default()
    }

    /// As [`orders_of`](Self::orders_of), waiting without blocking the thread.
    pub async fn read_orders_of(
        &self,
        user: UserId,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, EngineError> {
        let stored = self.inner.store.cold.orders_of(user, before, limit)?;
        self.durable_orders_async(stored).await
    }

    /// Every order, newest first, older than `before`, of `status` if given (admin lists).
    pub fn all_orders(
        &self,
        before: Option<OrderId>,
        limit: usize,
        status: Option<crate::orders::OrderStatus>,
    ) -> Vec<Order> {
        self.stored_orders(before, limit, status)
            .and_then(|stored| self.durable_orders(stored))
            .inspect_err(|error| tracing::error!(%error, "orders could not be read"))
            .unwrap_or_default()
    }

    /// As [`all_orders`](Self::all_orders), waiting without blocking the thread.
    pub async fn read_all_orders(
        &self,
        before: Option<OrderId>,
        limit: usize,
        status: Option<crate::orders::OrderStatus>,
    ) -> Result<Vec<Order>, EngineError> {
        let stored = self.stored_orders(before, limit, status)?;
        self.durable_orders_async(stored).await
    }

    fn durable_orders(&self, stored: Vec<StoredOrder>) -> Result<Vec<Order>, EngineError> {
        if let Some(ticket) = self.durable_ticket(stored.iter()) {
            ticket.wait()?;
        }
        Ok(stored.into_iter().map(|s| s.order).collect())
    }

    async fn durable_orders_async(
        &self,
        stored: Vec<StoredOrder>,
    ) -> Result<Vec<Order>, EngineError> {
        if let Some(ticket) = self.durable_ticket(stored.iter()) {
            ticket.durable().await?;
        }
        Ok(stored.into_iter().map(|s| s.order).collect())
    }

    /// The shipping address, decrypted for the order's owner; `None` for an order a tool wrote
    /// with text that is no address.
    pub fn shipping_address(&self, order: &Order) -> Result<Option<ShippingAddress>, EngineError> {
        let text = self
            .keys()
            .cipher()
            .decrypt(
                &order.id.to_string(),
                "shipping_address",
                &order.shipping_address,
            )
            .map_err(|e| {
                EngineError::from(Internal::Sealed(format!(
                    "the address of {} ({e})",
                    order.id
                )))
            })?;
        Ok(ShippingAddress::from_text(&text))
    }

    /// Expires every unpaid order past its deadline; answers how many it queued. The
    /// scheduler calls this on its own.
    pub fn expire_due_orders(&self) -> usize {
        super::expire_due_orders(&self.inner.state, &self.inner.wal, self.now_ms())
    }

    /// Closes every delivered order whose return window has passed; answers how many it
    /// queued. The scheduler calls this on its own.
    pub fn close_due_returns(&self) -> usize {
        super::close_due_returns(
            &self.inner.state,
            &self.inner.wal,
            self.now_ms(),
            self.inner.config.return_window_ms,
        )
    }
}
