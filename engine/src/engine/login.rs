//! A login, as one protocol the engine owns: the account's failure budget is checked and
//! spent in one step, the password is checked (against a dummy hash for an unknown address,
//! so the answer and its timing say nothing about who has an account), and a success clears
//! the budget. The slow part, argon2, runs wherever the caller runs slow work (the server's
//! bounded pool): the engine hands it out as a closure and is told how it went.

use crate::accounts::{AccountError, Email};
use crate::clock::Millis;
use crate::error::EngineError;
use crate::ids::UserId;
use crate::password::{verify_dummy, verify_password};
use crate::record::Role;

use super::Engine;

/// A login that has begun: counted as a failure of its account until [`finish`] says the
/// password was right, or [`abandon`] takes the count back because it never ran.
///
/// Dropping it unfinished leaves the failure counted, the safe side: a caller that loses
/// track of an attempt cannot give a guesser a free try.
///
/// [`finish`]: LoginAttempt::finish
/// [`abandon`]: LoginAttempt::abandon
#[must_use = "a login is decided by `finish` (or taken back by `abandon`)"]
pub struct LoginAttempt {
    engine: Engine,
    /// The throttle's key: the blind index of the address as sent (normalised if it parses).
    key: [u8; 32],
    at_ms: Millis,
    /// The account and its password hash, if the address has one.
    account: Option<(UserId, Role, String)>,
}

impl Engine {
    /// Begins a login for `email` as sent. Unknown and malformed addresses are throttled like
    /// known ones, so a refusal does not tell whether an account exists.
    ///
    /// Refuses with `LoginThrottled` once the account has failed `LOGIN_FAILURES_MAX` times
    /// within `LOGIN_FAILURE_WINDOW_MS`, until the oldest of those failures leaves the window.
    pub fn begin_login(&self, email: &str) -> Result<LoginAttempt, EngineError> {
        let at_ms = self.now_ms();
        let parsed = Email::parse(email).ok();
        let key = self
            .keys()
            .blind_index(parsed.as_ref().map_or(email.trim(), Email::as_str));
        self.inner
            .login_throttle
            .begin_attempt(&key, at_ms)
            .map_err(|retry| {
                EngineError::Account(AccountError::LoginThrottled {
                    retry_after_s: retry.seconds,
                })
            })?;
        let account = parsed.as_ref().and_then(|e| self.account_by_email(e));
        Ok(LoginAttempt {
            engine: self.clone(),
            key,
            at_ms,
            account,
        })
    }
}

impl LoginAttempt {
    /// The password check, to run where slow work runs: argon2 against the account's hash,
    /// or against a dummy hash when there is no account (the same cost either way).
    pub fn check(&self, password: String) -> impl FnOnce() -> bool + Send + 'static {
        let stored = self.account.as_ref().map(|(_, _, hash)| hash.clone());
        move || match stored {
            Some(hash) => verify_password(&password, &hash),
            None => {
                verify_dummy(&password);
                false
            }
        }
    }

    /// Decides the login from what [`check`](LoginAttempt::check) answered: the account and
    /// its role, with the failure budget cleared; or `InvalidCredentials`, the failure kept.
    /// The right password of a disabled account is `UserDisabled` (told only to whoever knows
    /// the password).
    pub fn finish(self, verified: bool) -> Result<(UserId, Role), EngineError> {
        match self.account {
            Some((user, role, _)) if verified => {
                self.engine.inner.login_throttle.clear(&self.key);
                if self
                    .engine
                    .inner
                    .state
                    .accounts
                    .disabled_since(user)
                    .is_some()
                {
                    return Err(AccountError::UserDisabled(user).into());
                }
                Ok((user, role))
            }
            _ => Err(EngineError::Account(AccountError::InvalidCredentials)),
        }
    }

    /// Takes the attempt back: the password was never checked (the pool was busy), so it
    /// must not count against the account.
    pub fn abandon(self) {
        self.engine
            .inner
            .login_throttle
            .forget_attempt(&self.key, self.at_ms);
    }
}
