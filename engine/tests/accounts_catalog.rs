//! Accounts, catalog and wishlists are views of the log like the inventory: replaying it (from
//! the start, or from a snapshot) rebuilds exactly the state the live run had.

use std::sync::Arc;

use allot_engine::testkit::durable;
use allot_engine::{
    AccountError, CatalogError, Email, Engine, EngineConfig, EngineError, ManualClock, NewProduct,
    ProductChange, ProductDetails, ProductKind, ProductStatus, ProfileChange, SignupProfile,
    UserId, hash_password,
};

const T0: u64 = 1_800_000_000_000;

fn details(name: &str, price: u64) -> ProductDetails {
    ProductDetails {
        name: name.into(),
        description: "d".into(),
        price,
        currency: "KRW".into(),
    }
}

/// Runs a little of everything and answers the live image after a clean close.
fn exercise(engine: &Engine, clock: &ManualClock) {
    let email = Email::parse("Sora@Example.com").unwrap();
    let (code, t) = engine.request_verification(&email).unwrap();
    t.wait().unwrap();
    assert!(matches!(
        engine.request_verification(&email),
        Err(EngineError::Account(
            AccountError::VerificationCooldown { .. }
        ))
    ));
    assert!(matches!(
        engine.confirm_verification(&email, "000000x"),
        Err(EngineError::Account(AccountError::InvalidCode))
    ));
    let (token, t) = engine.confirm_verification(&email, &code).unwrap();
    t.wait().unwrap();
    // Argon2 is slow in tests; one hash serves every account here.
    let hash = hash_password("Tr0ub4dor&3-horse");
    let profile = SignupProfile {
        name: "Sora".into(),
        phone: Some("010-1234-5678".into()),
        address: None,
    };
    let (user, t) = engine
        .register(&token, hash.clone(), profile.clone())
        .unwrap();
    t.wait().unwrap();
    assert!(matches!(
        engine.register(&token, hash.clone(), profile),
        Err(EngineError::Account(AccountError::InvalidVerificationToken))
    ));
    let (refresh, t) = engine.start_session(user, 60_000).unwrap();
    t.wait().unwrap();
    let allot_engine::RefreshOutcome::Rotated {
        token: rotated,
        ticket,
        ..
    } = engine.refresh_session(&refresh, 60_000).unwrap()
    else {
        panic!("a fresh token rotates");
    };
    ticket.wait().unwrap();
    let allot_engine::RefreshOutcome::FamilyRevoked { ticket } =
        engine.refresh_session(&refresh, 60_000).unwrap()
    else {
        panic!("a reused token revokes the family");
    };
    ticket.wait().unwrap();
    assert!(matches!(
        engine.refresh_session(&rotated, 60_000),
        Err(EngineError::Account(AccountError::InvalidRefresh))
    ));
    engine
        .revoke_access("some-jti", T0 + 900_000)
        .unwrap()
        .wait()
        .unwrap();
    assert!(engine.is_access_revoked("some-jti"));
    let change = ProfileChange {
        address: Some(Some("1 Main St".into())),
        phone: Some(None),
        ..ProfileChange::default()
    };
    let (profile, t) = engine.update_profile(user, change).unwrap();
    t.wait().unwrap();
    assert_eq!(
        (profile.phone, profile.address.as_deref()),
        (None, Some("1 Main St"))
    );
    let admin = Email::parse("boss@example.com").unwrap();
    let boss = durable(engine.create_admin(&admin, hash.clone()));

    // An admin disables an account: its role passes no check, its live sessions end (a
    // refresh is refused), a new session is refused. Another is disabled and enabled again.
    let jun = allot_engine::testkit::create_customer(engine, "jun@example.com", "Jun", &hash);
    let (jun_refresh, t) = engine.start_session(jun, 60_000).unwrap();
    t.wait().unwrap();
    assert_eq!(engine.live_sessions(jun), 1);
    assert!(matches!(
        engine.disable_user(jun, jun),
        Err(EngineError::Account(AccountError::SelfLockout))
    ));
    engine
        .disable_user(boss, jun)
        .unwrap()
        .unwrap()
        .wait()
        .unwrap();
    assert!(engine.disable_user(boss, jun).unwrap().is_none(), "once");
    assert_eq!(engine.role_of(jun), None);
    assert_eq!(engine.live_sessions(jun), 0);
    assert_eq!(engine.profile(jun).unwrap().disabled_ms, Some(T0));
    assert!(matches!(
        engine.refresh_session(&jun_refresh, 60_000),
        Err(EngineError::Account(AccountError::InvalidRefresh))
    ));
    assert!(matches!(
        engine.start_session(jun, 60_000),
        Err(EngineError::Account(AccountError::UserDisabled(_)))
    ));
    let mina = allot_engine::testkit::create_customer(engine, "mina@example.com", "Mina", &hash);
    engine
        .disable_user(boss, mina)
        .unwrap()
        .unwrap()
        .wait()
        .unwrap();
    engine.enable_user(mina).unwrap().unwrap().wait().unwrap();
    assert!(engine.enable_user(mina).unwrap().is_none(), "once");
    assert_eq!(engine.role_of(mina), Some(allot_engine::Role::Customer));
    durable(engine.start_session(mina, 60_000));
    // Promotion and demotion; an admin cannot demote themselves.
    engine
        .set_role(boss, mina, allot_engine::Role::Admin)
        .unwrap()
        .unwrap()
        .wait()
        .unwrap();
    assert!(
        engine
            .set_role(boss, mina, allot_engine::Role::Admin)
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        engine.set_role(boss, boss, allot_engine::Role::Customer),
        Err(EngineError::Account(AccountError::SelfLockout))
    ));
    // The offline way back in: create-admin on a disabled account enables it.
    engine
        .disable_user(mina, boss)
        .unwrap()
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(engine.role_of(boss), None);
    durable(engine.create_admin(&admin, hash.clone()));
    assert_eq!(engine.role_of(boss), Some(allot_engine::Role::Admin));
    let (page, more) = engine.users_page(None, None, 2).unwrap();
    assert!(more);
    assert_eq!(page.len(), 2);
    assert!(page[0].user_id < page[1].user_id);
    let (admins, _) = engine
        .users_page(None, Some(allot_engine::Role::Admin), 10)
        .unwrap();
    assert_eq!(
        admins.iter().map(|p| p.user_id).collect::<Vec<_>>(),
        vec![boss, mina]
    );

    let (tote, t) = engine
        .create_product(NewProduct {
            kind: ProductKind::General,
            details: details("Tote", 39_000),
            sale_opens_ms: None,
            sale_closes_ms: None,
            per_user_limit: None,
            stock_total: 10,
        })
        .unwrap();
    t.wait().unwrap();
    let (drop, t) = engine
        .create_product(NewProduct {
            kind: ProductKind::Limited,
            details: details("Drop", 250_000),
            sale_opens_ms: Some(T0 + 1_000),
            sale_closes_ms: Some(T0 + 2_000),
            per_user_limit: Some(1),
            stock_total: 3,
        })
        .unwrap();
    t.wait().unwrap();
    let drop = drop.product.id;
    for price in [260_000, 270_000] {
        let change = ProductChange {
            price: Some(price),
            ..ProductChange::default()
        };
        engine
            .update_product(drop, change)
            .unwrap()
            .unwrap()
            .wait()
            .unwrap();
    }
    let bad = ProductChange {
        sale_closes_ms: Some(T0),
        ..ProductChange::default()
    };
    assert!(matches!(
        engine.update_product(drop, bad),
        Err(EngineError::Catalog(CatalogError::InvalidProduct(_)))
    ));
    // Free is not a price: no provider charges 0, so such an order could never be paid.
    let free = ProductChange {
        price: Some(0),
        ..ProductChange::default()
    };
    assert!(matches!(
        engine.update_product(drop, free),
        Err(EngineError::Catalog(CatalogError::InvalidProduct(reason))) if reason.contains("at least 1")
    ));
    assert!(matches!(
        engine.create_product(NewProduct {
            kind: ProductKind::General,
            details: details("Freebie", 0),
            sale_opens_ms: None,
            sale_closes_ms: None,
            per_user_limit: None,
            stock_total: 10,
        }),
        Err(EngineError::Catalog(CatalogError::InvalidProduct(reason))) if reason.contains("at least 1")
    ));
    assert_eq!(
        engine.product_version(drop, 1).unwrap().details.price,
        250_000
    );
    assert_eq!(
        engine
            .product(drop)
            .unwrap()
            .product
            .current()
            .details
            .price,
        270_000
    );
    assert_eq!(
        engine.product(drop).unwrap().status,
        ProductStatus::Upcoming
    );
    clock.set_ms(T0 + 1_000);
    assert_eq!(engine.product(drop).unwrap().status, ProductStatus::OnSale);
    clock.set_ms(T0 + 2_000);
    assert_eq!(engine.product(drop).unwrap().status, ProductStatus::Closed);

    durable(engine.put_wishlist_item(user, drop, 1, "size 270".into()));
    durable(engine.put_wishlist_item(user, tote.product.id, 2, String::new()));
    engine
        .remove_wishlist_item(user, tote.product.id)
        .unwrap()
        .unwrap()
        .wait()
        .unwrap();
    assert!(matches!(
        engine.put_wishlist_item(user, allot_engine::ProductId(99), 1, String::new()),
        Err(EngineError::Catalog(CatalogError::ProductNotFound(_)))
    ));
    assert!(matches!(
        engine.put_wishlist_item(UserId(9), drop, 0, String::new()),
        Err(EngineError::Catalog(CatalogError::InvalidWishlistItem(_)))
    ));
    assert_eq!(engine.wishlist(user).len(), 1);
}

#[test]
fn accounts_catalog_and_wishlists_replay_to_the_live_state() {
    for snapshot_on_close in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let config = EngineConfig {
            snapshot_on_close,
            ..EngineConfig::new(dir.path())
        };
        let engine = Engine::open(config.clone(), clock.clone()).unwrap();
        exercise(&engine, &clock);
        engine.close().unwrap();
        let live = engine.image();
        drop(engine);

        let inspection = allot_engine::inspect(dir.path()).unwrap();
        assert!(inspection.is_clean(), "{:?}", inspection.problems);
        assert_eq!(inspection.image, live);
        let reopened = Engine::open(config, clock).unwrap();
        assert_eq!(
            reopened.image(),
            live,
            "snapshot_on_close = {snapshot_on_close}"
        );
        let email = Email::parse("sora@example.com").unwrap();
        let (user, _, _) = reopened.account_by_email(&email).unwrap();
        let profile = reopened.profile(user).unwrap();
        assert_eq!(
            (profile.email.as_str(), profile.name.as_str()),
            ("sora@example.com", "Sora")
        );
        let boss = reopened
            .account_by_email(&Email::parse("boss@example.com").unwrap())
            .unwrap();
        assert_eq!(boss.1, allot_engine::Role::Admin);
        let jun = reopened
            .profile_by_email(&Email::parse("jun@example.com").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(jun.disabled_ms, Some(T0));
        assert_eq!(reopened.role_of(jun.user_id), None);
        let mina = reopened
            .profile_by_email(&Email::parse("mina@example.com").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            (mina.disabled_ms, reopened.role_of(mina.user_id)),
            (None, Some(allot_engine::Role::Admin))
        );
    }
}

/// A login is the engine's protocol: each try is counted before its password is checked, ten
/// failures within the window refuse the account (an unknown address alike, so a refusal
/// tells nothing), a try that never ran is taken back, and a success clears the count.
#[test]
fn logins_are_throttled_per_account_and_a_success_clears_the_count() {
    use allot_engine::testkit::{PASSWORD, create_customer};
    use allot_engine::{LOGIN_FAILURE_WINDOW_MS, LOGIN_FAILURES_MAX, Role};

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::open(EngineConfig::new(dir.path()), clock.clone()).unwrap();
    let user = create_customer(&engine, "kim@example.com", "Kim", &hash_password(PASSWORD));
    let wrong = |email: &str| {
        let attempt = engine.begin_login(email).expect("not throttled yet");
        assert!(matches!(
            attempt.finish(false),
            Err(EngineError::Account(AccountError::InvalidCredentials))
        ));
    };

    for _ in 0..LOGIN_FAILURES_MAX - 1 {
        wrong("kim@example.com");
    }
    // A try the pool never ran does not count: two abandoned, still one left.
    engine.begin_login("kim@example.com").unwrap().abandon();
    engine.begin_login(" KIM@example.com ").unwrap().abandon();
    // The same address in another spelling is the same account.
    wrong(" KIM@example.com ");
    assert!(matches!(
        engine.begin_login("kim@example.com"),
        Err(EngineError::Account(AccountError::LoginThrottled { retry_after_s })) if retry_after_s == LOGIN_FAILURE_WINDOW_MS / 1000
    ));

    // Another account, and an address with no account, are counted on their own.
    for _ in 0..LOGIN_FAILURES_MAX {
        wrong("nobody@example.com");
    }
    assert!(matches!(
        engine.begin_login("nobody@example.com"),
        Err(EngineError::Account(AccountError::LoginThrottled { .. }))
    ));

    // Once the failures leave the window the account may try again; the right password
    // gets in and clears the count, so ten more wrong tries are allowed at once.
    clock.advance_ms(LOGIN_FAILURE_WINDOW_MS);
    let attempt = engine.begin_login("kim@example.com").unwrap();
    let verified = attempt.check(PASSWORD.to_string())();
    assert_eq!(attempt.finish(verified).unwrap(), (user, Role::Customer));
    for _ in 0..LOGIN_FAILURES_MAX {
        wrong("kim@example.com");
    }

    // An unknown address checks against the dummy hash and never gets in.
    let attempt = engine.begin_login("ghost@example.com").unwrap();
    let verified = attempt.check(PASSWORD.to_string())();
    assert!(!verified);
    assert!(matches!(
        attempt.finish(verified),
        Err(EngineError::Account(AccountError::InvalidCredentials))
    ));
}
