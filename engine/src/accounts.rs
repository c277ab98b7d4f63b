//! Accounts as views of the log: email verifications, users (personal data sealed), sessions
//! (refresh-token families) and revoked access tokens.
//!
//! Nothing here gives units back, so an account change is applied in memory under its entity's
//! lock while its record is queued (DESIGN.md: "Other entities change under their own small
//! lock"); a replay applies the very same mutation. The caller waits for the ticket before it
//! answers anyone.

mod email;
mod image;

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

pub use email::{EMAIL_BYTES_MAX, EMAIL_PATTERN, Email};
pub use image::AccountsImage;

use crate::clock::Millis;
use crate::crypto::constant_time_eq;
use crate::error::{ApplyError, EngineError};
use crate::ids::UserId;
use crate::record::{AccountRecord, Digest, Role, Sealed, Seq, SessionEnd};
use crate::wal::Ticket;

/// Wrong codes accepted before a code is locked.
pub const VERIFICATION_ATTEMPTS_MAX: u32 = 5;
/// How long a mailed code can be used.
pub const VERIFICATION_CODE_TTL_MS: Millis = 10 * 60 * 1000;
/// How soon another code may be mailed to the same address.
pub const VERIFICATION_RESEND_COOLDOWN_MS: Millis = 60 * 1000;
/// How long a confirmed email may be used to sign up.
pub const SIGNUP_TOKEN_TTL_MS: Millis = 30 * 60 * 1000;
/// How long past its expiry a session, a revocation or a verification is kept before retention
/// forgets it: a margin for a wall clock stepped back, under which an expired token would pass
/// for a live one again.
pub const EXPIRED_KEPT_MS: Millis = 60 * 60 * 1000;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email_index: Digest,
    pub email: Sealed,
    pub name: Sealed,
    pub phone: Option<Sealed>,
    pub address: Option<Sealed>,
    pub password_hash: String,
    pub role: Role,
    pub created_ms: Millis,
}

#[derive(Debug, Clone)]
struct Verification {
    email: Sealed,
    /// `None` once the code was used.
    code_hash: Option<Digest>,
    issued_ms: Millis,
    expires_ms: Millis,
    failed: u32,
    /// The signup token issued for the right code: its hash and expiry.
    token: Option<(Digest, Millis)>,
}

impl Verification {
    /// The last moment it can be used: its code, or the signup token the code gave.
    fn kept_until(&self) -> Millis {
        self.token
            .map_or(self.expires_ms, |(_, expires)| expires.max(self.expires_ms))
    }
}

#[derive(Debug, Clone)]
struct Session {
    user: UserId,
    current: Digest,
    expires_ms: Millis,
    /// Every token the family ever had, so a reused old one is recognised.
    issued: Vec<Digest>,
    ended: Option<SessionEnd>,
}

/// What a refresh token bought.
pub enum Refresh {
    /// A new token for this user; durable once the ticket is.
    Rotated(UserId, Ticket),
    /// The token was reused: its whole session family is revoked once the ticket is durable.
    FamilyRevoked(Ticket),
}

/// The signup token's verification, as `register` needs it.
#[derive(Debug, Clone)]
pub struct PendingSignup {
    pub email_index: Digest,
    pub sealed_email: Sealed,
}

/// Fields of a new account, sealed to its row by the caller.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub name: Sealed,
    pub email: Sealed,
    pub phone: Option<Sealed>,
    pub address: Option<Sealed>,
    pub password_hash: String,
    pub role: Role,
}

/// A profile change, sealed; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfilePatch {
    pub name: Option<Sealed>,
    pub phone: Option<Option<Sealed>>,
    pub address: Option<Option<Sealed>>,
}

#[derive(Debug, Default)]
pub struct Accounts {
    users: DashMap<UserId, User>,
    by_email: DashMap<Digest, UserId>,
    verifications: DashMap<Digest, Verification>,
    signup_tokens: DashMap<Digest, Digest>,
    sessions: DashMap<u64, Session>,
    session_tokens: DashMap<Digest, u64>,
    revoked: DashMap<Digest, Millis>,
    /// Accounts an admin disabled, and since when. Changed only under the user's entry lock in
    /// `users`, which a new session also takes, so no session starts for a disabled account.
    disabled: DashMap<UserId, Millis>,
    next_user: AtomicU64,
    next_family: AtomicU64,
}

type Append<'a> = &'a dyn Fn(AccountRecord) -> Result<Ticket, EngineError>;

/// Forgets up to `limit` entries of `map` that are `expired`: each one under its entry's lock,
/// checked again there, logged by its `record`, removed, then `cleanup` of what hung on it.
fn forget_where<K: Copy + Eq + std::hash::Hash, V>(
    map: &DashMap<K, V>,
    limit: usize,
    expired: impl Fn(&V) -> bool,
    record: impl Fn(K) -> AccountRecord,
    append: Append<'_>,
    mut cleanup: impl FnMut(K, V),
) -> Result<usize, EngineError> {
    let due: Vec<K> = map
        .iter()
        .filter(|entry| expired(entry.value()))
        .map(|entry| *entry.key())
        .take(limit)
        .collect();
    let mut forgotten = 0;
    for key in due {
        if let dashmap::Entry::Occupied(entry) = map.entry(key)
            && expired(entry.get())
        {
            // Nothing to wait for: a forgotten entry is one that no longer counts.
            let _forgotten = append(record(key))?;
            cleanup(key, entry.remove());
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

impl Accounts {
    pub fn new() -> Self {
        Self {
            next_user: AtomicU64::new(1),
            next_family: AtomicU64::new(1),
            ..Default::default()
        }
    }

    /// Applies an account record in a replay.
    pub fn apply(&self, seq: Seq, record: &AccountRecord) -> Result<(), ApplyError> {
        let fail = |reason: String| ApplyError { seq, reason };
        match record {
            AccountRecord::VerificationIssued {
                email_index,
                email,
                code_hash,
                issued_ms,
                expires_ms,
            } => self.replace_verification(
                self.verifications.entry(*email_index),
                Verification::new(email.clone(), *code_hash, *issued_ms, *expires_ms),
            ),
            AccountRecord::VerificationFailed { email_index } => {
                let mut v = self
                    .verifications
                    .get_mut(email_index)
                    .ok_or_else(|| fail("failed try of no verification".into()))?;
                v.failed += 1;
            }
            AccountRecord::VerificationConfirmed {
                email_index,
                token_hash,
                expires_ms,
            } => {
                let mut v = self
                    .verifications
                    .get_mut(email_index)
                    .ok_or_else(|| fail("confirmation of no verification".into()))?;
                self.confirm_in(&mut v, *email_index, *token_hash, *expires_ms);
            }
            AccountRecord::UserRegistered {
                user,
                email_index,
                email,
                name,
                phone,
                address,
                password_hash,
                role,
                created_ms,
            } => {
                let slot = match self.by_email.entry(*email_index) {
                    dashmap::Entry::Vacant(slot) if !self.users.contains_key(user) => slot,
                    _ => return Err(fail(format!("{user} registered twice"))),
                };
                self.insert_user_in(
                    slot,
                    User {
                        id: *user,
                        email_index: *email_index,
                        email: email.clone(),
                        name: name.clone(),
                        phone: phone.clone(),
                        address: address.clone(),
                        password_hash: password_hash.clone(),
                        role: *role,
                        created_ms: *created_ms,
                    },
                );
            }
            AccountRecord::ProfileUpdated { user, .. }
            | AccountRecord::RoleChanged { user, .. }
            | AccountRecord::PasswordChanged { user, .. } => {
                let mut u = self
                    .users
                    .get_mut(user)
                    .ok_or_else(|| fail(format!("{user} does not exist")))?;
                change_user_in(&mut u, record);
            }
            AccountRecord::SessionStarted {
                family,
                user,
                token_hash,
                expires_ms,
            } => {
                if self.sessions.contains_key(family) {
                    return Err(fail(format!("session family {family} started twice")));
                }
                self.start_session_in(*family, *user, *token_hash, *expires_ms);
            }
            AccountRecord::SessionRefreshed {
                family,
                token_hash,
                expires_ms,
            } => {
                let mut s = self
                    .sessions
                    .get_mut(family)
                    .ok_or_else(|| fail(format!("no session family {family}")))?;
                self.rotate_in(&mut s, *family, *token_hash, *expires_ms);
            }
            AccountRecord::SessionEnded { family, reason } => {
                let mut s = self
                    .sessions
                    .get_mut(family)
                    .ok_or_else(|| fail(format!("no session family {family}")))?;
                s.ended = Some(*reason);
            }
            AccountRecord::AccessRevoked { jti, expires_ms } => {
                self.revoked.insert(*jti, *expires_ms);
            }
            AccountRecord::SessionForgotten { family } => {
                let (_, session) = self
                    .sessions
                    .remove(family)
                    .ok_or_else(|| fail(format!("forgetting no session family {family}")))?;
                self.forget_tokens_of(*family, &session);
            }
            AccountRecord::RevocationForgotten { jti } => {
                self.revoked
                    .remove(jti)
                    .ok_or_else(|| fail("forgetting no revocation".into()))?;
            }
            AccountRecord::VerificationForgotten { email_index } => {
                let (_, v) = self
                    .verifications
                    .remove(email_index)
                    .ok_or_else(|| fail("forgetting no verification".into()))?;
                self.forget_signup_token_of(&v);
            }
            AccountRecord::UserDisabled { user, at_ms } => {
                if !self.users.contains_key(user) {
                    return Err(fail(format!("disabling {user}, who does not exist")));
                }
                if self.disabled.insert(*user, *at_ms).is_some() {
                    return Err(fail(format!("{user} disabled twice")));
                }
            }
            AccountRecord::UserEnabled { user } => {
                self.disabled
                    .remove(user)
                    .ok_or_else(|| fail(format!("enabling {user}, who is not disabled")))?;
            }
        }
        Ok(())
    }

    // ----- retention ------------------------------------------------------------------------

    /// Forgets what expired more than [`EXPIRED_KEPT_MS`] before `now_ms`: session families
    /// (with every token they had), revocations of access tokens, email verifications. Each is
    /// logged as its own record under the entry's lock, like any change of that entry, so a
    /// replay forgets exactly what the live run did, in the same order. Answers how many.
    /// At most `limit` are forgotten per call.
    pub fn forget_expired(
        &self,
        now_ms: Millis,
        limit: usize,
        append: Append<'_>,
    ) -> Result<usize, EngineError> {
        let cutoff = now_ms.saturating_sub(EXPIRED_KEPT_MS);
        let mut forgotten = forget_where(
            &self.sessions,
            limit,
            |session| session.expires_ms <= cutoff,
            |family| AccountRecord::SessionForgotten { family },
            append,
            |family, session| self.forget_tokens_of(family, &session),
        )?;
        forgotten += forget_where(
            &self.revoked,
            limit - forgotten,
            |&expires_ms| expires_ms <= cutoff,
            |jti| AccountRecord::RevocationForgotten { jti },
            append,
            |_, _| {},
        )?;
        forgotten += forget_where(
            &self.verifications,
            limit - forgotten,
            |v| v.kept_until() <= cutoff,
            |email_index| AccountRecord::VerificationForgotten { email_index },
            append,
            |_, v| self.forget_signup_token_of(&v),
        )?;
        Ok(forgotten)
    }

    fn forget_tokens_of(&self, family: u64, session: &Session) {
        for token in session.issued.iter().chain([&session.current]) {
            self.session_tokens.remove_if(token, |_, f| *f == family);
        }
    }

    fn forget_signup_token_of(&self, verification: &Verification) {
        if let Some((token, _)) = verification.token {
            self.signup_tokens.remove(&token);
        }
    }

    // ----- email verification ------------------------------------------------------------

    pub fn issue_verification(
        &self,
        email_index: Digest,
        sealed_email: Sealed,
        code_hash: Digest,
        now_ms: Millis,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        let entry = self.verifications.entry(email_index);
        if let dashmap::Entry::Occupied(existing) = &entry {
            let ready_at = existing
                .get()
                .issued_ms
                .saturating_add(VERIFICATION_RESEND_COOLDOWN_MS);
            if now_ms < ready_at {
                return Err(AccountError::VerificationCooldown {
                    retry_after_ms: ready_at - now_ms,
                }
                .into());
            }
        }
        let expires_ms = now_ms.saturating_add(VERIFICATION_CODE_TTL_MS);
        let ticket = append(AccountRecord::VerificationIssued {
            email_index,
            email: sealed_email.clone(),
            code_hash,
            issued_ms: now_ms,
            expires_ms,
        })?;
        self.replace_verification(
            entry,
            Verification::new(sealed_email, code_hash, now_ms, expires_ms),
        );
        Ok(ticket)
    }

    /// Checks a code. A wrong one is counted (and logged) before it is refused.
    pub fn confirm_verification(
        &self,
        email_index: Digest,
        code_hash: Digest,
        token_hash: Digest,
        now_ms: Millis,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        let mut v = self
            .verifications
            .get_mut(&email_index)
            .ok_or(AccountError::InvalidCode)?;
        let Some(expected) = v.code_hash else {
            return Err(AccountError::InvalidCode.into());
        };
        if v.failed >= VERIFICATION_ATTEMPTS_MAX {
            return Err(AccountError::TooManyAttempts.into());
        }
        if !constant_time_eq(&expected, &code_hash) {
            // Counted whether or not it becomes durable before the answer: a crash at that
            // instant can only give back one try.
            let _ = append(AccountRecord::VerificationFailed { email_index })?;
            v.failed += 1;
            return Err(AccountError::InvalidCode.into());
        }
        if now_ms > v.expires_ms {
            return Err(AccountError::CodeExpired.into());
        }
        let expires_ms = now_ms.saturating_add(SIGNUP_TOKEN_TTL_MS);
        let ticket = append(AccountRecord::VerificationConfirmed {
            email_index,
            token_hash,
            expires_ms,
        })?;
        self.confirm_in(&mut v, email_index, token_hash, expires_ms);
        Ok(ticket)
    }

    /// The verification a signup token belongs to, if the token is live.
    pub fn pending_signup(&self, token_hash: &Digest, now_ms: Millis) -> Option<PendingSignup> {
        let email_index = *self.signup_tokens.get(token_hash)?;
        let v = self.verifications.get(&email_index)?;
        let (hash, expires_ms) = v.token?;
        (hash == *token_hash && now_ms <= expires_ms).then(|| PendingSignup {
            email_index,
            sealed_email: v.email.clone(),
        })
    }

    pub fn allocate_user_id(&self) -> UserId {
        UserId(self.next_user.fetch_add(1, Ordering::AcqRel))
    }

    /// Creates the account, spending the signup token. Re-checks the token under the
    /// verification's lock, so one token makes at most one account.
    pub fn register(
        &self,
        token_hash: Digest,
        user: NewUser,
        now_ms: Millis,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        let email_index = *self
            .signup_tokens
            .get(&token_hash)
            .ok_or(AccountError::InvalidVerificationToken)?;
        // The email's slot is the lock: two signups for one address (or with one token)
        // serialise here, and the second finds the first's account.
        let slot = match self.by_email.entry(email_index) {
            dashmap::Entry::Occupied(_) => {
                return Err(AccountError::EmailTaken.into());
            }
            dashmap::Entry::Vacant(slot) => slot,
        };
        // The verification stays locked from the check to its removal, so a new code asked for
        // meanwhile is ordered entirely before or after this signup, in memory as in the log.
        let dashmap::Entry::Occupied(verification) = self.verifications.entry(email_index) else {
            return Err(AccountError::InvalidVerificationToken.into());
        };
        let live = matches!(
            verification.get().token,
            Some((hash, expires_ms)) if hash == token_hash && now_ms <= expires_ms
        );
        if !live {
            return Err(AccountError::InvalidVerificationToken.into());
        }
        let user = user.into_user(email_index, now_ms);
        let ticket = append(user.registered())?;
        let (_, spent) = verification.remove_entry();
        if let Some((token, _)) = spent.token {
            self.signup_tokens.remove(&token);
        }
        self.insert_user_in(slot, user);
        Ok(ticket)
    }

    /// Creates an account without email verification (the offline `create-admin`).
    pub fn register_direct(
        &self,
        email_index: Digest,
        user: NewUser,
        now_ms: Millis,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        let slot = match self.by_email.entry(email_index) {
            dashmap::Entry::Occupied(_) => {
                return Err(AccountError::EmailTaken.into());
            }
            dashmap::Entry::Vacant(slot) => slot,
        };
        let user = user.into_user(email_index, now_ms);
        let ticket = append(user.registered())?;
        self.insert_user_in(slot, user);
        Ok(ticket)
    }

    // ----- users -------------------------------------------------------------------------

    pub fn user(&self, id: UserId) -> Option<User> {
        self.users.get(&id).map(|u| u.clone())
    }

    pub fn user_by_email(&self, email_index: &Digest) -> Option<User> {
        let id = *self.by_email.get(email_index)?;
        self.user(id)
    }

    /// Since when the account is disabled, if it is.
    pub fn disabled_since(&self, id: UserId) -> Option<Millis> {
        self.disabled.get(&id).map(|at| *at)
    }

    /// The role of an account that may act: `None` for an unknown or a disabled one.
    pub fn active_role(&self, id: UserId) -> Option<Role> {
        let user = self.users.get(&id)?;
        (!self.disabled.contains_key(&id)).then_some(user.role)
    }

    /// Up to `limit` users with ids after `after`, in id order, of `role` if given; and
    /// whether more follow. A scan of every account: an admin's page, not a hot path.
    pub fn users_page(
        &self,
        after: Option<UserId>,
        role: Option<Role>,
        limit: usize,
    ) -> (Vec<User>, bool) {
        let mut ids: Vec<UserId> = self
            .users
            .iter()
            .filter(|u| after.is_none_or(|a| u.id > a) && role.is_none_or(|r| u.role == r))
            .map(|u| u.id)
            .collect();
        ids.sort_unstable();
        let more = ids.len() > limit;
        let page = ids
            .into_iter()
            .take(limit)
            .filter_map(|id| self.user(id))
            .collect();
        (page, more)
    }

    /// Live sessions of the account (started, not ended, not past their expiry at `now_ms`).
    pub fn live_sessions_of(&self, id: UserId, now_ms: Millis) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.user == id && s.ended.is_none() && s.expires_ms >= now_ms)
            .count()
    }

    /// Disables the account and ends each of its sessions (one record each, after the
    /// disabling's). Answers the last ticket; `None` if it was disabled already.
    pub fn disable(
        &self,
        id: UserId,
        at_ms: Millis,
        append: Append<'_>,
    ) -> Result<Option<Ticket>, EngineError> {
        let mut ticket = {
            // The user's entry lock: a login's `start_session` waits on it, and sees the flag.
            let _user = self
                .users
                .get_mut(&id)
                .ok_or(AccountError::UserNotFound(id))?;
            if self.disabled.contains_key(&id) {
                return Ok(None);
            }
            let ticket = append(AccountRecord::UserDisabled { user: id, at_ms })?;
            self.disabled.insert(id, at_ms);
            ticket
        };
        let families: Vec<u64> = self
            .sessions
            .iter()
            .filter(|s| s.user == id && s.ended.is_none())
            .map(|s| *s.key())
            .collect();
        for family in families {
            if let Some(mut session) = self.sessions.get_mut(&family)
                && session.ended.is_none()
            {
                ticket = append(AccountRecord::SessionEnded {
                    family,
                    reason: SessionEnd::AccountDisabled,
                })?;
                session.ended = Some(SessionEnd::AccountDisabled);
            }
        }
        Ok(Some(ticket))
    }

    /// Enables a disabled account; `None` if it was not disabled.
    pub fn enable(&self, id: UserId, append: Append<'_>) -> Result<Option<Ticket>, EngineError> {
        let _user = self
            .users
            .get_mut(&id)
            .ok_or(AccountError::UserNotFound(id))?;
        if !self.disabled.contains_key(&id) {
            return Ok(None);
        }
        let ticket = append(AccountRecord::UserEnabled { user: id })?;
        self.disabled.remove(&id);
        Ok(Some(ticket))
    }

    /// The disabled accounts, for a snapshot, by id.
    pub fn disabled_image(&self) -> Vec<(UserId, Millis)> {
        let mut disabled: Vec<(UserId, Millis)> = self
            .disabled
            .iter()
            .map(|d| (*d.key(), *d.value()))
            .collect();
        disabled.sort_unstable();
        disabled
    }

    /// Takes the disabled accounts of a snapshot.
    pub fn restore_disabled(&self, disabled: &[(UserId, Millis)]) {
        for (user, at_ms) in disabled {
            self.disabled.insert(*user, *at_ms);
        }
    }

    pub fn update_profile(
        &self,
        id: UserId,
        patch: ProfilePatch,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        self.change_user(
            AccountRecord::ProfileUpdated {
                user: id,
                name: patch.name,
                phone: patch.phone,
                address: patch.address,
            },
            append,
        )
    }

    pub fn change_role(
        &self,
        id: UserId,
        role: Role,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        self.change_user(AccountRecord::RoleChanged { user: id, role }, append)
    }

    pub fn change_password(
        &self,
        id: UserId,
        password_hash: String,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        self.change_user(
            AccountRecord::PasswordChanged {
                user: id,
                password_hash,
            },
            append,
        )
    }

    /// Queues a change of one user under that user's lock, then applies it exactly as a replay
    /// would.
    fn change_user(
        &self,
        record: AccountRecord,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        let Some(id) = user_of_change(&record) else {
            unreachable!("only user changes come here: {record:?}");
        };
        let mut user = self
            .users
            .get_mut(&id)
            .ok_or(AccountError::UserNotFound(id))?;
        let ticket = append(record.clone())?;
        change_user_in(&mut user, &record);
        Ok(ticket)
    }

    // ----- sessions ----------------------------------------------------------------------

    pub fn start_session(
        &self,
        user: UserId,
        token_hash: Digest,
        expires_ms: Millis,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        // Held to the end: `disable` takes it before it ends the account's sessions.
        let _user = self
            .users
            .get(&user)
            .ok_or(AccountError::UserNotFound(user))?;
        if self.disabled.contains_key(&user) {
            return Err(AccountError::UserDisabled(user).into());
        }
        let family = self.next_family.fetch_add(1, Ordering::AcqRel);
        let ticket = append(AccountRecord::SessionStarted {
            family,
            user,
            token_hash,
            expires_ms,
        })?;
        self.start_session_in(family, user, token_hash, expires_ms);
        Ok(ticket)
    }

    /// Exchanges a refresh token for a new one. A token that was already exchanged is a
    /// stolen copy or a replay: the whole family ends (`Refresh::FamilyRevoked`, whose ticket
    /// the caller waits on before refusing).
    pub fn refresh_session(
        &self,
        token_hash: Digest,
        new_hash: Digest,
        now_ms: Millis,
        expires_ms: Millis,
        append: Append<'_>,
    ) -> Result<Refresh, EngineError> {
        let family = *self
            .session_tokens
            .get(&token_hash)
            .ok_or(AccountError::InvalidRefresh)?;
        let mut session = self
            .sessions
            .get_mut(&family)
            .ok_or(AccountError::InvalidRefresh)?;
        if session.ended.is_some() {
            return Err(AccountError::InvalidRefresh.into());
        }
        if session.current != token_hash {
            let ticket = append(AccountRecord::SessionEnded {
                family,
                reason: SessionEnd::TokenReused,
            })?;
            session.ended = Some(SessionEnd::TokenReused);
            tracing::warn!(family, user = %session.user, "refresh token reused; session family revoked");
            return Ok(Refresh::FamilyRevoked(ticket));
        }
        if now_ms > session.expires_ms {
            return Err(AccountError::InvalidRefresh.into());
        }
        let ticket = append(AccountRecord::SessionRefreshed {
            family,
            token_hash: new_hash,
            expires_ms,
        })?;
        self.rotate_in(&mut session, family, new_hash, expires_ms);
        Ok(Refresh::Rotated(session.user, ticket))
    }

    /// Ends the session the refresh token belongs to (logout). Unknown tokens end nothing.
    pub fn end_session(
        &self,
        token_hash: Digest,
        append: Append<'_>,
    ) -> Result<Option<Ticket>, EngineError> {
        let Some(family) = self.session_tokens.get(&token_hash).map(|f| *f) else {
            return Ok(None);
        };
        let Some(mut session) = self.sessions.get_mut(&family) else {
            return Ok(None);
        };
        if session.ended.is_some() || session.current != token_hash {
            return Ok(None);
        }
        let ticket = append(AccountRecord::SessionEnded {
            family,
            reason: SessionEnd::Logout,
        })?;
        session.ended = Some(SessionEnd::Logout);
        Ok(Some(ticket))
    }

    pub fn revoke_access(
        &self,
        jti: Digest,
        expires_ms: Millis,
        append: Append<'_>,
    ) -> Result<Ticket, EngineError> {
        // Under the entry's lock, as retention forgets one (`forget_expired`).
        let entry = self.revoked.entry(jti);
        let ticket = append(AccountRecord::AccessRevoked { jti, expires_ms })?;
        entry.insert(expires_ms);
        Ok(ticket)
    }

    pub fn is_access_revoked(&self, jti: &Digest) -> bool {
        self.revoked.contains_key(jti)
    }

    // ----- the mutations both paths share ------------------------------------------------

    /// A new code voids any earlier code and the signup token it gave.
    fn replace_verification(
        &self,
        entry: dashmap::Entry<'_, Digest, Verification>,
        verification: Verification,
    ) {
        match entry {
            dashmap::Entry::Occupied(mut old) => {
                if let Some((token, _)) = old.get().token {
                    self.signup_tokens.remove(&token);
                }
                old.insert(verification);
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(verification);
            }
        }
    }

    fn confirm_in(
        &self,
        v: &mut Verification,
        email_index: Digest,
        token_hash: Digest,
        expires_ms: Millis,
    ) {
        v.code_hash = None;
        if let Some((old, _)) = v.token.replace((token_hash, expires_ms)) {
            self.signup_tokens.remove(&old);
        }
        self.signup_tokens.insert(token_hash, email_index);
    }

    fn insert_user_in(
        &self,
        slot: dashmap::mapref::entry::VacantEntry<'_, Digest, UserId>,
        user: User,
    ) {
        // The verification is spent with the signup.
        if let Some((_, v)) = self.verifications.remove(&user.email_index)
            && let Some((token, _)) = v.token
        {
            self.signup_tokens.remove(&token);
        }
        self.next_user.fetch_max(user.id.0 + 1, Ordering::AcqRel);
        slot.insert(user.id);
        self.users.insert(user.id, user);
    }

    fn start_session_in(&self, family: u64, user: UserId, token_hash: Digest, expires_ms: Millis) {
        self.next_family.fetch_max(family + 1, Ordering::AcqRel);
        self.session_tokens.insert(token_hash, family);
        self.sessions.insert(
            family,
            Session {
                user,
                current: token_hash,
                expires_ms,
                issued: vec![token_hash],
                ended: None,
            },
        );
    }

    fn rotate_in(
        &self,
        session: &mut Session,
        family: u64,
        token_hash: Digest,
        expires_ms: Millis,
    ) {
        session.current = token_hash;
        session.expires_ms = expires_ms;
        session.issued.push(token_hash);
        self.session_tokens.insert(token_hash, family);
    }
}

impl Verification {
    fn new(email: Sealed, code_hash: Digest, issued_ms: Millis, expires_ms: Millis) -> Self {
        Self {
            email,
            code_hash: Some(code_hash),
            issued_ms,
            expires_ms,
            failed: 0,
            token: None,
        }
    }
}

impl NewUser {
    fn into_user(self, email_index: Digest, created_ms: Millis) -> User {
        User {
            id: self.id,
            email_index,
            email: self.email,
            name: self.name,
            phone: self.phone,
            address: self.address,
            password_hash: self.password_hash,
            role: self.role,
            created_ms,
        }
    }
}

impl User {
    fn registered(&self) -> AccountRecord {
        AccountRecord::UserRegistered {
            user: self.id,
            email_index: self.email_index,
            email: self.email.clone(),
            name: self.name.clone(),
            phone: self.phone.clone(),
            address: self.address.clone(),
            password_hash: self.password_hash.clone(),
            role: self.role,
            created_ms: self.created_ms,
        }
    }
}

/// The one mutation of a user by a user-change record, for the live path and replay alike.
fn change_user_in(user: &mut User, record: &AccountRecord) {
    match record {
        AccountRecord::ProfileUpdated {
            name,
            phone,
            address,
            ..
        } => {
            if let Some(name) = name {
                user.name = name.clone();
            }
            if let Some(phone) = phone {
                user.phone = phone.clone();
            }
            if let Some(address) = address {
                user.address = address.clone();
            }
        }
        AccountRecord::RoleChanged { role, .. } => user.role = *role,
        AccountRecord::PasswordChanged { password_hash, .. } => {
            user.password_hash = password_hash.clone()
        }
        _ => {}
    }
}

fn user_of_change(record: &AccountRecord) -> Option<UserId> {
    match record {
        AccountRecord::ProfileUpdated { user, .. }
        | AccountRecord::RoleChanged { user, .. }
        | AccountRecord::PasswordChanged { user, .. } => Some(*user),
        _ => None,
    }
}

/// Why an account step was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The caller sent an email address that fails the engine's address rules.
    #[error("that is not a valid email address")]
    InvalidEmail,
    /// The verification code is wrong, or no code was asked for this address; a wrong code is
    /// counted against the attempts.
    #[error("wrong or unknown code")]
    InvalidCode,
    /// The verification code was right but its lifetime has passed.
    #[error("the code has expired; request a new one")]
    CodeExpired,
    /// The code was refused too often (`VERIFICATION_ATTEMPTS_MAX`); only a new code helps.
    #[error("too many wrong codes; request a new code")]
    TooManyAttempts,
    /// The caller asked for a new code too soon after the last one for the same address.
    #[error("a code was sent moments ago; wait {retry_after_ms} ms before asking again")]
    VerificationCooldown {
        /// How long to wait before asking again, in ms.
        retry_after_ms: Millis,
    },
    /// The signup token is unknown, was spent on an account, or has expired.
    #[error("the verification token is invalid, used or expired")]
    InvalidVerificationToken,
    /// A signup for an address that already has an account.
    #[error("an account with this email exists")]
    EmailTaken,
    /// A profile field (name, phone, address) broke its rule; the text names the rule.
    #[error("{0}")]
    InvalidProfile(&'static str),
    /// The caller named a user the engine does not know.
    #[error("user {0} does not exist")]
    UserNotFound(UserId),
    /// The refresh token is unknown, past its expiry, or its session has ended; the client has
    /// to log in again.
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefresh,
    /// A login's email or password is wrong (an unknown address answers the same); the try
    /// counts against the account's failure budget.
    #[error("the email or the password is wrong")]
    InvalidCredentials,
    /// The account failed too many logins lately (`LOGIN_FAILURES_MAX` within
    /// `LOGIN_FAILURE_WINDOW_MS`); nothing was checked.
    #[error("too many failed logins; try again in {retry_after_s} s")]
    LoginThrottled {
        /// Whole seconds until the oldest counted failure leaves the window.
        retry_after_s: u64,
    },
    /// The account is disabled: it cannot log in.
    #[error("account {0} is disabled")]
    UserDisabled(UserId),
    /// An admin asked to disable or demote their own account, which would lock them out.
    #[error("an admin cannot disable or demote their own account")]
    SelfLockout,
}
