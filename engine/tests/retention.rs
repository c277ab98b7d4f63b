//! Retention: what expired is forgotten, by records of its own, so memory does not grow with
//! every login, logout and email check ever made — and a replay forgets exactly the same.

use std::sync::Arc;

use allot_engine::{
    AccountError, EXPIRED_KEPT_MS, Email, Engine, EngineConfig, EngineError, ManualClock,
    testkit::{self, close_and_inspect, durable, key_of, request},
};

const T0: u64 = 1_800_000_000_000;
const SESSION_TTL: u64 = 60_000;

#[test]
fn expired_sessions_revocations_and_verifications_are_forgotten_and_replay_alike() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let config = testkit::config(dir.path());
    let engine = Engine::open(config.clone(), clock.clone()).unwrap();
    let mut refresh_tokens = Vec::new();
    // A precomputed hash stands in for a password: argon2 is slow in a debug build.
    let hash = allot_engine::hash_password("Tr0ub4dor&3-horse");
    for n in 0..20 {
        let email = Email::parse(&format!("staff{n}@example.com")).unwrap();
        let (user, t) = engine.create_admin(&email, hash.clone()).unwrap();
        t.wait().unwrap();
        let (token, t) = engine.start_session(user, SESSION_TTL).unwrap();
        t.wait().unwrap();
        refresh_tokens.push(token);
        engine
            .revoke_access(&format!("jti-{n}"), T0 + SESSION_TTL)
            .unwrap()
            .wait()
            .unwrap();
    }
    for n in 0..5 {
        let email = Email::parse(&format!("buyer{n}@example.com")).unwrap();
        durable(engine.request_verification(&email));
    }
    let held = |engine: &Engine| {
        let accounts = engine.image().accounts;
        (
            accounts.sessions.len(),
            accounts.revoked.len(),
            accounts.verifications.len(),
        )
    };
    assert_eq!(held(&engine), (20, 20, 5));

    // Expired, but within the margin: kept.
    clock.advance_ms(SESSION_TTL + 1);
    assert_eq!(engine.forget_expired_accounts().unwrap(), 0);
    // One session is kept alive past the margin by a refresh.
    let kept_alive = &refresh_tokens[0];
    clock.set_ms(T0 + 1_000);
    let allot_engine::RefreshOutcome::Rotated { ticket, .. } = engine
        .refresh_session(kept_alive, 10 * EXPIRED_KEPT_MS)
        .unwrap()
    else {
        panic!("a fresh token rotates");
    };
    ticket.wait().unwrap();
    // Past every expiry (the codes' is the latest) and the margin.
    clock.set_ms(T0 + allot_engine::VERIFICATION_CODE_TTL_MS + EXPIRED_KEPT_MS + 1);
    // The scheduler sweeps too (every minute of the clock): between them, each entry once.
    assert!(engine.forget_expired_accounts().unwrap() <= 19 + 20 + 5);
    engine.barrier().wait().unwrap();
    assert_eq!(held(&engine), (1, 0, 0));
    // A forgotten session's token is refused like any unknown one.
    assert!(matches!(
        engine.refresh_session(&refresh_tokens[1], SESSION_TTL),
        Err(EngineError::Account(AccountError::InvalidRefresh))
    ));
    assert!(!engine.is_access_revoked("jti-1"));

    let live = engine.image();
    assert_eq!(close_and_inspect(engine, dir.path()).image, live);
    let reopened = Engine::open(config, clock).unwrap();
    assert_eq!(reopened.image(), live);
    reopened.close().unwrap();
}

/// A closed order's Idempotency-Key answers it for `keys_kept_ms` after the close; pruned after a
/// checkpoint past that, the same key places a new order, and `db verify` stays clean.
#[test]
fn a_closed_orders_key_answers_it_while_kept_and_then_places_a_new_order() {
    use allot_engine::{LineRequest, Placement};
    use allot_engine::{NewProduct, ProductDetails, ProductKind, UserId};

    const KEPT: u64 = 24 * 60 * 60 * 1000;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let config = EngineConfig {
        keys_kept_ms: KEPT,
        ..testkit::config(dir.path())
    };
    let engine = Engine::open(config.clone(), clock.clone()).unwrap();
    let (view, t) = engine
        .create_product(NewProduct {
            kind: ProductKind::General,
            details: ProductDetails {
                name: "tee".into(),
                description: String::new(),
                price: 1_500,
                currency: "EUR".into(),
            },
            sale_opens_ms: None,
            sale_closes_ms: None,
            per_user_limit: None,
            stock_total: 100,
        })
        .unwrap();
    t.wait().unwrap();
    let lines = [LineRequest {
        product: view.product.id,
        quantity: 1,
    }];
    let place = |engine: &Engine, key: &str| {
        engine
            .place_order(UserId(1), &key_of(key), &request(&lines), 600_000)
            .unwrap()
    };
    // Two orders, closed half the time kept apart.
    let mut closed = Vec::new();
    for key in ["early", "late"] {
        if key == "late" {
            clock.advance_ms(KEPT / 2);
        }
        let Placement::Placed(order, t) = place(&engine, key) else {
            panic!("{key} replayed");
        };
        t.wait().unwrap();
        let (cancelled, t) = engine.cancel_order(order.id).unwrap();
        t.wait().unwrap();
        closed.push(cancelled);
    }
    // Within the time kept, a checkpoint prunes nothing.
    engine.snapshot_now().unwrap();
    assert!(matches!(place(&engine, "early"), Placement::Replayed(o) if o == closed[0]));
    // Past it for the first order only.
    clock.advance_ms(KEPT / 2 + 1);
    engine.snapshot_now().unwrap();
    assert!(matches!(place(&engine, "late"), Placement::Replayed(o) if o == closed[1]));
    let Placement::Placed(again, t) = place(&engine, "early") else {
        panic!("a key past its retention answered its old order");
    };
    t.wait().unwrap();
    assert_ne!(again.id, closed[0].id);
    // The old order itself is still there, and its steps are refused as before.
    assert_eq!(engine.order(closed[0].id).as_ref(), Some(&closed[0]));
    assert!(engine.cancel_order(closed[0].id).is_err());
    engine.close().unwrap();
    drop(engine);
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);

    // After a restart: the new order answers the key, the kept one still answers its order.
    let engine = Engine::open(config, clock.clone()).unwrap();
    assert!(matches!(place(&engine, "early"), Placement::Replayed(o) if o.id == again.id));
    assert!(matches!(place(&engine, "late"), Placement::Replayed(o) if o == closed[1]));
    engine.close().unwrap();
}
