//! A refund is recorded only once the provider confirms it, and is asked for again until it is.
//! The provider is the one part replaced here: a stand-in that charges like the simulator but
//! answers refunds as told, as a provider that is down (or whose own record failed) would.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use allot_engine::{
    Card, ChargeOutcome, ChargeStatus, Engine, EngineConfig, EngineError, ManualClock, OrderError,
    Paid, PaymentProvider, Payments, ProviderTimeout, UserId,
    testkit::{self, create, general, line},
};

const T0: u64 = 1_800_000_000_000;

/// Charges every card; refunds only while `refunds_work` is set.
#[derive(Default)]
struct Provider {
    charged: Mutex<HashMap<String, ChargeStatus>>,
    refunds_work: AtomicBool,
}

impl PaymentProvider for Provider {
    fn charge(
        &self,
        key: &str,
        _: u64,
        _: &str,
        _: &Card,
    ) -> Result<ChargeOutcome, ProviderTimeout> {
        self.charged
            .lock()
            .entry(key.to_owned())
            .or_insert(ChargeStatus::Charged);
        Ok(ChargeOutcome::Approved)
    }

    fn status(&self, key: &str) -> ChargeStatus {
        self.charged
            .lock()
            .get(key)
            .copied()
            .unwrap_or(ChargeStatus::NotCharged)
    }

    fn refund(&self, key: &str) -> ChargeStatus {
        let mut charged = self.charged.lock();
        let Some(status) = charged.get_mut(key) else {
            return ChargeStatus::NotCharged;
        };
        if *status == ChargeStatus::Charged && self.refunds_work.load(Ordering::Acquire) {
            *status = ChargeStatus::Refunded;
        }
        *status
    }
}

/// A paid order, cancelled: its refund is due. Answers the order.
fn paid_and_cancelled(engine: &Engine, payments: &Payments) -> allot_engine::Order {
    let tote = create(engine, general("Tote", 19_000, 10));
    let order = testkit::place(engine, UserId(1), "k1", &[line(tote, 1)], 600_000).unwrap();
    let card = Card::parse("4242 4242 4242 4242", "12/39", "123", T0).unwrap();
    assert!(matches!(
        engine.pay_order(payments, order.id, &card).unwrap(),
        Paid::Charged(_)
    ));
    let (cancelled, ticket) = engine.cancel_order(order.id).unwrap();
    ticket.wait().unwrap();
    assert!(cancelled.refund_due);
    cancelled
}

#[test]
fn a_refund_the_provider_did_not_confirm_is_not_recorded_and_is_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::open(EngineConfig::new(dir.path()), clock).unwrap();
    let provider = Arc::new(Provider::default());
    let payments = Payments::new(provider.clone());
    let order = paid_and_cancelled(&engine, &payments);

    // The provider does not refund: nothing is recorded, the refund stays due.
    assert!(matches!(
        engine.refund_order(&payments, order.id),
        Err(EngineError::Order(OrderError::RefundNotConfirmed(id))) if id == order.id
    ));
    assert_eq!(engine.resolve_payments(&payments), 0);
    let now = engine.order(order.id).unwrap();
    assert!(now.refund_due && !now.refunded, "{now:?}");

    // Once it does, the resolver's next look records it, once.
    provider.refunds_work.store(true, Ordering::Release);
    assert_eq!(engine.resolve_payments(&payments), 1);
    let now = engine.order(order.id).unwrap();
    assert!(now.refunded, "{now:?}");
    assert_eq!(engine.resolve_payments(&payments), 0);
    let key = order.payment_key(1);
    assert_eq!(provider.status(&key), ChargeStatus::Refunded);
    engine.close().unwrap();
}

/// The resolver works from an index of what is due, not a scan: the index must come back after
/// a restart, from the log alone and from a snapshot.
#[test]
fn a_refund_due_before_a_restart_is_made_after_it() {
    for snapshot_on_close in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = EngineConfig {
            snapshot_on_close,
            ..EngineConfig::new(dir.path())
        };
        let provider = Arc::new(Provider::default());
        let payments = Payments::new(provider.clone());
        let order = {
            let engine = Engine::open(config.clone(), Arc::new(ManualClock::new(T0))).unwrap();
            let order = paid_and_cancelled(&engine, &payments);
            engine.close().unwrap();
            order
        };
        let engine = Engine::open(config, Arc::new(ManualClock::new(T0))).unwrap();
        assert_eq!(
            engine.recovery_report().snapshot_seq.is_some(),
            snapshot_on_close
        );
        provider.refunds_work.store(true, Ordering::Release);
        assert_eq!(
            engine.resolve_payments(&payments),
            1,
            "snapshot: {snapshot_on_close}"
        );
        assert!(engine.order(order.id).unwrap().refunded);
        assert_eq!(engine.resolve_payments(&payments), 0);
        engine.close().unwrap();
    }
}
