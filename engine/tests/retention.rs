//! Retention: what expired is forgotten, by records of its own, so memory does not grow with
//! every login, logout and email check ever made — and a replay forgets exactly the same.

use std::sync::Arc;

use allot_engine::accounts::EXPIRED_KEPT_MS;
use allot_engine::{Email, Engine, EngineConfig, EngineError, ManualClock};

const T0: u64 = 1_800_000_000_000;
const SESSION_TTL: u64 = 60_000;

#[test]
fn expired_sessions_revocations_and_verifications_are_forgotten_and_replay_alike() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let config = EngineConfig {
        snapshot_on_close: false,
        ..EngineConfig::new(dir.path())
    };
    let engine = Engine::open(config.clone(), clock.clone()).unwrap();
    let mut refresh_tokens = Vec::new();
    // A precomputed hash stands in for a password: argon2 is slow in a debug build.
    let hash = allot_engine::password::hash_password("Tr0ub4dor&3-horse");
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
        engine
            .request_verification(&email)
            .unwrap()
            .1
            .wait()
            .unwrap();
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
    clock.set_ms(T0 + allot_engine::accounts::VERIFICATION_CODE_TTL_MS + EXPIRED_KEPT_MS + 1);
    // The scheduler sweeps too (every minute of the clock): between them, each entry once.
    assert!(engine.forget_expired_accounts().unwrap() <= 19 + 20 + 5);
    engine.barrier().wait().unwrap();
    assert_eq!(held(&engine), (1, 0, 0));
    // A forgotten session's token is refused like any unknown one.
    assert!(matches!(
        engine.refresh_session(&refresh_tokens[1], SESSION_TTL),
        Err(EngineError::InvalidRefresh)
    ));
    assert!(!engine.is_access_revoked("jti-1"));

    let live = engine.image();
    engine.close().unwrap();
    drop(engine);
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
    assert_eq!(inspection.image, live);
    let reopened = Engine::open(config, clock).unwrap();
    assert_eq!(reopened.image(), live);
    reopened.close().unwrap();
}
