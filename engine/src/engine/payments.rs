//! The payment step of the saga. The provider is asked only once `PaymentRequested` is durable,
//! with the attempt's own key (`ord_N/attempt`), so asking again after a crash never charges
//! twice. Answers that were lost (a timeout, a crash) and refunds that are due are settled by
//! `resolve_payments`, which a background task runs, and which runs after every restart.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::EngineError;
use crate::ids::OrderId;
use crate::orders::{Order, OrderError, PaymentOutcome};
use crate::payment::{Card, ChargeOutcome, ChargeStatus, PaymentProvider};
use crate::record::PaymentFailure;

use super::Engine;

/// The provider, and which orders a live request is paying right now (the resolver keeps out
/// of those: it would otherwise settle an attempt whose charge is still on its way).
pub struct Payments {
    provider: Arc<dyn PaymentProvider>,
    live: Mutex<HashSet<OrderId>>,
}

/// How a payment request ended.
#[derive(Debug)]
pub enum Paid {
    /// The provider approved the charge: the order, now paid.
    Charged(Order),
    /// The provider refused the charge: the order (payable again until its deadline) and why.
    Failed(Order, PaymentFailure),
    /// The provider did not answer; the order stays payable and is settled in the background.
    TimedOut(Order),
}

struct Live<'a>(&'a Payments, OrderId);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.live.lock().remove(&self.1);
    }
}

impl Payments {
    /// Payments through `provider`, with no payment in progress.
    pub fn new(provider: Arc<dyn PaymentProvider>) -> Self {
        Self {
            provider,
            live: Mutex::new(HashSet::new()),
        }
    }
}

impl Engine {
    /// Pays an order with `card`: blocks on the log and on the provider, so call it from a
    /// blocking context.
    pub fn pay_order(
        &self,
        payments: &Payments,
        id: OrderId,
        card: &Card,
    ) -> Result<Paid, EngineError> {
        if !payments.live.lock().insert(id) {
            return Err(OrderError::PaymentInProgress.into());
        }
        let _live = Live(payments, id);
        let (order, attempt, ticket) = self.request_payment(id)?;
        ticket.wait()?;
        let key = order.payment_key(attempt);
        let outcome = match payments
            .provider
            .charge(&key, order.total, &order.currency, card)
        {
            Ok(ChargeOutcome::Approved) => PaymentOutcome::Charged,
            Ok(ChargeOutcome::Declined) => PaymentOutcome::Failed(PaymentFailure::Declined),
            Ok(ChargeOutcome::LimitExceeded) => {
                PaymentOutcome::Failed(PaymentFailure::CardLimitExceeded)
            }
            Err(_timeout) => PaymentOutcome::TimedOut,
        };
        let (order, ticket) = self.record_payment(id, attempt, outcome)?;
        ticket.wait()?;
        Ok(match outcome {
            PaymentOutcome::Charged => Paid::Charged(order),
            PaymentOutcome::Failed(reason) => Paid::Failed(order, reason),
            PaymentOutcome::TimedOut => Paid::TimedOut(order),
        })
    }

    /// Refunds an order whose refund is due (cancelled after payment, or returned); blocks.
    /// `RefundIssued` is recorded only once the provider confirms the refund; until then this
    /// answers [`OrderError::RefundNotConfirmed`], the refund stays due, and the resolver asks
    /// again (the provider refunds a key once, so asking again never refunds twice).
    pub fn refund_order(&self, payments: &Payments, id: OrderId) -> Result<Order, EngineError> {
        let order = self.order(id).ok_or(OrderError::OrderNotFound(id))?;
        if let (true, false, Some(attempt)) = (order.refund_due, order.refunded, order.paid_attempt)
        {
            let key = order.payment_key(attempt);
            match payments.provider.refund(&key) {
                ChargeStatus::Refunded => self.refund_issued(id)?.wait()?,
                status => {
                    tracing::warn!(order = %id, key, ?status, "the provider did not confirm a refund; will ask again");
                    return Err(OrderError::RefundNotConfirmed(id).into());
                }
            }
        }
        self.order(id)
            .ok_or(EngineError::Order(OrderError::OrderNotFound(id)))
    }

    /// Settles what is unfinished: attempts whose answer is unknown are asked again (charged →
    /// paid, even past the deadline; not charged → failed, payable again until the deadline),
    /// and due refunds are made. Answers how many orders it settled. Blocks.
    pub fn resolve_payments(&self, payments: &Payments) -> usize {
        let mut settled = 0;
        for listed in self.inner.state.orders_to_settle() {
            if payments.live.lock().contains(&listed.id) {
                continue;
            }
            // Read again: a live payment may have settled it since the list was taken (and
            // a new one cannot start while an attempt is in flight).
            let Some(order) = self.order(listed.id) else {
                continue;
            };
            let unanswered = order.payment_in_flight.is_some()
                && order.payment_in_flight == listed.payment_in_flight;
            let refund_owed = order.refund_due && !order.refunded;
            if !unanswered && !refund_owed {
                continue;
            }
            let result = if let Some(attempt) = order.payment_in_flight {
                let outcome = match payments.provider.status(&order.payment_key(attempt)) {
                    ChargeStatus::Charged => PaymentOutcome::Charged,
                    ChargeStatus::NotCharged | ChargeStatus::Refunded => {
                        PaymentOutcome::Failed(PaymentFailure::TimedOut)
                    }
                };
                self.record_payment(order.id, attempt, outcome)
                    .and_then(|(_, ticket)| ticket.wait())
            } else {
                self.refund_order(payments, order.id).map(drop)
            };
            match result {
                Ok(()) => settled += 1,
                Err(error) => {
                    tracing::warn!(%error, order = %order.id, "payment not settled; will retry")
                }
            }
        }
        settled
    }
}
