//! The engine's account operations, in plaintext at this boundary: here personal data is
//! sealed to its row and field, emails are turned into blind indexes, codes and tokens are
//! generated and only their keyed hashes kept.

use crate::accounts::{AccountError, Email, NewUser, ProfilePatch, Refresh, User};
use crate::clock::Millis;
use crate::crypto::{random_code, random_token};
use crate::error::{EngineError, Internal};
use crate::ids::UserId;
use crate::record::{Digest, Role};
use crate::wal::Ticket;
use const_format::concatcp;

use super::Engine;

/// The longest name a profile takes, in characters as sent (blanks around included).
pub const NAME_CHARS_MAX: usize = 100;
/// The longest phone number a profile takes, in characters as sent (blanks around included).
pub const PHONE_CHARS_MAX: usize = 32;
/// The longest address a profile takes, in characters as sent (blanks around included).
pub const ADDRESS_CHARS_MAX: usize = 500;

/// The rules of a profile's fields as the API documents them (JSON Schema patterns, with the
/// `maxLength`s above); a test holds each to agree with its check here.
///
/// A name: no control characters, something besides blanks.
pub const NAME_PATTERN: &str =
    r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// A phone number: 5 to 20 digits, with spaces and `+ - ( ) .` around and between them.
pub const PHONE_PATTERN: &str = concatcp!(
    r"^[ +().-]*([0-9][ +().-]*){",
    PHONE_DIGITS_MIN,
    ",",
    PHONE_DIGITS_MAX,
    "}$"
);
/// Fewest digits in a phone number.
pub const PHONE_DIGITS_MIN: usize = 5;
/// Most digits in a phone number.
pub const PHONE_DIGITS_MAX: usize = 20;
/// An address: like a name, and it may span lines.
pub const ADDRESS_PATTERN: &str =
    r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x09\x0b-\x1f\x7f-\x9f]*$";

/// What a refresh token bought.
pub enum RefreshOutcome {
    /// The token was current: it is spent and a new one takes its place.
    Rotated {
        /// The session's user.
        user: UserId,
        /// The new refresh token, to hand to the client once `ticket` is durable.
        token: String,
        /// Wait on it before answering: the rotation is durable once waited.
        ticket: Ticket,
    },
    /// The token had been used before: the session family is revoked (once `ticket` is durable).
    FamilyRevoked {
        /// Wait on it before refusing: the revocation is durable once waited.
        ticket: Ticket,
    },
}

/// What signup takes besides the token and the password.
#[derive(Debug, Clone, Default)]
pub struct SignupProfile {
    /// The account holder's name (see `NAME_PATTERN`, at most `NAME_CHARS_MAX` characters).
    pub name: String,
    /// A phone number, if given (see `PHONE_PATTERN`, at most `PHONE_CHARS_MAX` characters).
    pub phone: Option<String>,
    /// A postal address, if given (see `ADDRESS_PATTERN`, at most `ADDRESS_CHARS_MAX` characters).
    pub address: Option<String>,
}

/// A profile change; `None` leaves a field, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// A new name; a name cannot be cleared.
    pub name: Option<String>,
    /// A new phone number, or `Some(None)` to clear it.
    pub phone: Option<Option<String>>,
    /// A new address, or `Some(None)` to clear it.
    pub address: Option<Option<String>>,
}

/// An account's data, decrypted for its owner.
#[derive(Clone, PartialEq, Eq)]
pub struct Profile {
    /// The account's id.
    pub user_id: UserId,
    /// The account's email address.
    pub email: String,
    /// The account holder's name.
    pub name: String,
    /// The phone number, if one is set.
    pub phone: Option<String>,
    /// The postal address, if one is set.
    pub address: Option<String>,
    /// What the account may do.
    pub role: Role,
    /// When the account was created, in ms since the Unix epoch.
    pub created_ms: Millis,
    /// Since when an admin has the account disabled, in ms since the Unix epoch, if it is.
    pub disabled_ms: Option<Millis>,
}

/// The most accounts one page of [`Engine::users_page`] answers.
pub const USERS_PAGE_MAX: usize = 200;

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("user_id", &self.user_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

const CODE_PURPOSE: &str = "verification-code";
const SIGNUP_TOKEN_PURPOSE: &str = "signup-token";
const REFRESH_TOKEN_PURPOSE: &str = "refresh-token";
const JTI_PURPOSE: &str = "access-token-id";

/// Most entries one retention sweep forgets (the log's queue is asked for room once a sweep).
pub const FORGET_PER_SWEEP_MAX: usize = 10_000;

impl Engine {
    /// Issues a code for `email` and answers it (for the mailer). A second request within the
    /// cooldown is refused with `VerificationCooldown`; the HTTP layer answers both alike.
    pub fn request_verification(&self, email: &Email) -> Result<(String, Ticket), EngineError> {
        let keys = self.keys();
        let email_index = keys.blind_index(email.as_str());
        let code = random_code();
        let code_hash = self.code_hash(&email_index, &code);
        let sealed =
            keys.cipher()
                .encrypt(&verification_row(&email_index), "email", email.as_str());
        let wal = self.ready_wal()?;
        let ticket = self.inner.state.accounts.issue_verification(
            email_index,
            sealed,
            code_hash,
            self.now_ms(),
            &|r| wal.append(r.into()),
        )?;
        Ok((code, ticket))
    }

    /// Checks a code; the right one yields a single-use signup token.
    pub fn confirm_verification(
        &self,
        email: &Email,
        code: &str,
    ) -> Result<(String, Ticket), EngineError> {
        let email_index = self.keys().blind_index(email.as_str());
        let token = random_token();
        let token_hash = self
            .keys()
            .secret_hash(SIGNUP_TOKEN_PURPOSE, token.as_bytes());
        let code_hash = self.code_hash(&email_index, code);
        let wal = self.ready_wal()?;
        let ticket = self.inner.state.accounts.confirm_verification(
            email_index,
            code_hash,
            token_hash,
            self.now_ms(),
            &|r| wal.append(r.into()),
        )?;
        Ok((token, ticket))
    }

    /// Creates a customer account from a signup token. The password was checked against the
    /// policy and hashed by the caller (on its bounded pool).
    pub fn register(
        &self,
        signup_token: &str,
        password_hash: String,
        profile: SignupProfile,
    ) -> Result<(UserId, Ticket), EngineError> {
        let token_hash = self
            .keys()
            .secret_hash(SIGNUP_TOKEN_PURPOSE, signup_token.as_bytes());
        let pending = self
            .inner
            .state
            .accounts
            .pending_signup(&token_hash, self.now_ms())
            .ok_or(AccountError::InvalidVerificationToken)?;
        let email = self
            .keys()
            .cipher()
            .decrypt(
                &verification_row(&pending.email_index),
                "email",
                &pending.sealed_email,
            )
            .map_err(|e| Internal::Sealed(format!("a sealed email ({e})")))?;
        let user = self.new_user(&email, password_hash, profile, Role::Customer)?;
        let id = user.id;
        let wal = self.ready_wal()?;
        let ticket = self
            .inner
            .state
            .accounts
            .register(token_hash, user, self.now_ms(), &|r| wal.append(r.into()))?;
        Ok((id, ticket))
    }

    /// Creates an admin account, or promotes an existing one, sets its password and enables it
    /// if an admin had disabled it (the way back in for an operator locked out).
    pub fn create_admin(
        &self,
        email: &Email,
        password_hash: String,
    ) -> Result<(UserId, Ticket), EngineError> {
        let email_index = self.keys().blind_index(email.as_str());
        let accounts = &self.inner.state.accounts;
        if let Some(existing) = accounts.user_by_email(&email_index) {
            let wal = self.ready_wal()?;
            let _ = accounts.change_role(existing.id, Role::Admin, &|r| wal.append(r.into()))?;
            let _ = accounts.enable(existing.id, &|r| wal.append(r.into()))?;
            let ticket =
                accounts.change_password(existing.id, password_hash, &|r| wal.append(r.into()))?;
            return Ok((existing.id, ticket));
        }
        let profile = SignupProfile {
            name: "Administrator".into(),
            ..SignupProfile::default()
        };
        let user = self.new_user(email.as_str(), password_hash, profile, Role::Admin)?;
        let id = user.id;
        let wal = self.ready_wal()?;
        let ticket = accounts
            .register_direct(email_index, user, self.now_ms(), &|r| wal.append(r.into()))?;
        Ok((id, ticket))
    }

    /// The account behind an email, for login: its id, role and password hash.
    pub fn account_by_email(&self, email: &Email) -> Option<(UserId, Role, String)> {
        let email_index = self.keys().blind_index(email.as_str());
        self.inner
            .state
            .accounts
            .user_by_email(&email_index)
            .map(|u| (u.id, u.role, u.password_hash))
    }

    /// The account's role; `None` for a user the engine does not know or an admin disabled,
    /// so a token of an account that is gone or disabled passes no check.
    pub fn role_of(&self, user: UserId) -> Option<Role> {
        self.inner.state.accounts.active_role(user)
    }

    /// Up to `limit` (at most [`USERS_PAGE_MAX`]) accounts with ids after `after`, in id
    /// order, of `role` if given, decrypted for an admin; and whether more follow.
    pub fn users_page(
        &self,
        after: Option<UserId>,
        role: Option<Role>,
        limit: usize,
    ) -> Result<(Vec<Profile>, bool), EngineError> {
        let (users, more) =
            self.inner
                .state
                .accounts
                .users_page(after, role, limit.clamp(1, USERS_PAGE_MAX));
        let profiles = users
            .iter()
            .map(|u| self.open_profile(u))
            .collect::<Result<_, _>>()?;
        Ok((profiles, more))
    }

    /// The account behind an email address, decrypted for an admin.
    pub fn profile_by_email(&self, email: &Email) -> Result<Option<Profile>, EngineError> {
        let email_index = self.keys().blind_index(email.as_str());
        self.inner
            .state
            .accounts
            .user_by_email(&email_index)
            .map(|u| self.open_profile(&u))
            .transpose()
    }

    /// How many sessions of the account are live now.
    pub fn live_sessions(&self, user: UserId) -> usize {
        self.inner
            .state
            .accounts
            .live_sessions_of(user, self.now_ms())
    }

    /// Gives `user` the `role`, on behalf of the admin `by`. An admin cannot demote
    /// themselves (`SelfLockout`). `None` when the account has that role already.
    pub fn set_role(
        &self,
        by: UserId,
        user: UserId,
        role: Role,
    ) -> Result<Option<Ticket>, EngineError> {
        let accounts = &self.inner.state.accounts;
        let current = accounts
            .user(user)
            .ok_or(AccountError::UserNotFound(user))?
            .role;
        if current == role {
            return Ok(None);
        }
        if by == user {
            return Err(AccountError::SelfLockout.into());
        }
        let wal = self.ready_wal()?;
        accounts
            .change_role(user, role, &|r| wal.append(r.into()))
            .map(Some)
    }

    /// Disables `user` on behalf of the admin `by`: from the record on, it cannot log in, its
    /// access tokens pass no check, and its sessions end. Refused for the admin's own account
    /// (`SelfLockout`); `None` for one disabled already.
    pub fn disable_user(&self, by: UserId, user: UserId) -> Result<Option<Ticket>, EngineError> {
        if by == user {
            return Err(AccountError::SelfLockout.into());
        }
        let wal = self.ready_wal()?;
        self.inner
            .state
            .accounts
            .disable(user, self.now_ms(), &|r| wal.append(r.into()))
    }

    /// Enables a disabled account: it may log in again (`None` if it was not disabled).
    pub fn enable_user(&self, user: UserId) -> Result<Option<Ticket>, EngineError> {
        let wal = self.ready_wal()?;
        self.inner
            .state
            .accounts
            .enable(user, &|r| wal.append(r.into()))
    }

    /// The account's data, decrypted for its owner.
    ///
    /// Errors: `UserNotFound`, and `Internal` (`Sealed`) if a field does not decrypt with the
    /// keys.
    pub fn profile(&self, user: UserId) -> Result<Profile, EngineError> {
        let user = self
            .inner
            .state
            .accounts
            .user(user)
            .ok_or(AccountError::UserNotFound(user))?;
        self.open_profile(&user)
    }

    /// Changes the fields `change` names, each checked and sealed. Answers the profile as it
    /// now is and a `Ticket`: the change is durable once it is waited on.
    ///
    /// Errors: `InvalidProfile` for a field that breaks its rule, `UserNotFound`, `Internal`
    /// (`Sealed`) if the profile does not decrypt, and `ShuttingDown` or `LogFailed` when the
    /// log takes no writes.
    pub fn update_profile(
        &self,
        user: UserId,
        change: ProfileChange,
    ) -> Result<(Profile, Ticket), EngineError> {
        let row = user.to_string();
        let cipher = self.keys().cipher();
        let mut patch = ProfilePatch::default();
        if let Some(name) = &change.name {
            patch.name = Some(cipher.encrypt(&row, "name", &valid_name(name)?));
        }
        if let Some(phone) = &change.phone {
            patch.phone = Some(match phone {
                Some(phone) => Some(cipher.encrypt(&row, "phone", &valid_phone(phone)?)),
                None => None,
            });
        }
        if let Some(address) = &change.address {
            patch.address = Some(match address {
                Some(address) => Some(cipher.encrypt(&row, "address", &valid_address(address)?)),
                None => None,
            });
        }
        let wal = self.ready_wal()?;
        let ticket = self
            .inner
            .state
            .accounts
            .update_profile(user, patch, &|r| wal.append(r.into()))?;
        Ok((self.profile(user)?, ticket))
    }

    // ----- sessions ----------------------------------------------------------------------

    /// Starts a session (a refresh-token family) and answers its first refresh token.
    pub fn start_session(
        &self,
        user: UserId,
        ttl_ms: Millis,
    ) -> Result<(String, Ticket), EngineError> {
        let token = random_token();
        let token_hash = self
            .keys()
            .secret_hash(REFRESH_TOKEN_PURPOSE, token.as_bytes());
        let expires_ms = self.now_ms().saturating_add(ttl_ms);
        let wal = self.ready_wal()?;
        let ticket =
            self.inner
                .state
                .accounts
                .start_session(user, token_hash, expires_ms, &|r| wal.append(r.into()))?;
        Ok((token, ticket))
    }

    /// Rotates a refresh token. A reused token revokes its whole family instead: wait on that
    /// ticket too before refusing, so the revocation is durable when the caller hears of it.
    pub fn refresh_session(
        &self,
        token: &str,
        ttl_ms: Millis,
    ) -> Result<RefreshOutcome, EngineError> {
        let keys = self.keys();
        let token_hash = keys.secret_hash(REFRESH_TOKEN_PURPOSE, token.as_bytes());
        let new_token = random_token();
        let new_hash = keys.secret_hash(REFRESH_TOKEN_PURPOSE, new_token.as_bytes());
        let now = self.now_ms();
        let wal = self.ready_wal()?;
        let refresh = self.inner.state.accounts.refresh_session(
            token_hash,
            new_hash,
            now,
            now.saturating_add(ttl_ms),
            &|r| wal.append(r.into()),
        )?;
        Ok(match refresh {
            Refresh::Rotated(user, ticket) => RefreshOutcome::Rotated {
                user,
                token: new_token,
                ticket,
            },
            Refresh::FamilyRevoked(ticket) => RefreshOutcome::FamilyRevoked { ticket },
        })
    }

    /// Whether a signup token can still be used: checked before the password is hashed, so a
    /// made-up token costs no argon2 work.
    pub fn signup_token_is_live(&self, signup_token: &str) -> bool {
        let token_hash = self
            .keys()
            .secret_hash(SIGNUP_TOKEN_PURPOSE, signup_token.as_bytes());
        self.inner
            .state
            .accounts
            .pending_signup(&token_hash, self.now_ms())
            .is_some()
    }

    /// Ends the session of a refresh token (logout); unknown or spent tokens end nothing.
    pub fn end_session(&self, token: &str) -> Result<Option<Ticket>, EngineError> {
        let token_hash = self
            .keys()
            .secret_hash(REFRESH_TOKEN_PURPOSE, token.as_bytes());
        let wal = self.ready_wal()?;
        self.inner
            .state
            .accounts
            .end_session(token_hash, &|r| wal.append(r.into()))
    }

    /// Refuses an access token's id until `expires_ms`.
    pub fn revoke_access(&self, jti: &str, expires_ms: Millis) -> Result<Ticket, EngineError> {
        let jti_hash = self.keys().secret_hash(JTI_PURPOSE, jti.as_bytes());
        let wal = self.ready_wal()?;
        self.inner
            .state
            .accounts
            .revoke_access(jti_hash, expires_ms, &|r| wal.append(r.into()))
    }

    /// Retention: forgets sessions, revocations and verifications that expired more than
    /// [`EXPIRED_KEPT_MS`](crate::accounts::EXPIRED_KEPT_MS) ago, at most
    /// `FORGET_PER_SWEEP_MAX` a call. The scheduler calls this every minute; answers how many.
    pub fn forget_expired_accounts(&self) -> Result<usize, EngineError> {
        super::forget_expired_accounts(&self.inner.state, &self.inner.wal, self.now_ms())
    }

    /// Whether an access token's id was revoked (see `revoke_access`) and the revocation is
    /// still kept.
    pub fn is_access_revoked(&self, jti: &str) -> bool {
        let jti_hash = self.keys().secret_hash(JTI_PURPOSE, jti.as_bytes());
        self.inner.state.accounts.is_access_revoked(&jti_hash)
    }

    // ----- the pieces ----------------------------------------------------------------------

    fn code_hash(&self, email_index: &Digest, code: &str) -> Digest {
        // Bound to the address, so a code mailed to one address never confirms another.
        let mut input = Vec::with_capacity(email_index.len() + code.len());
        input.extend_from_slice(email_index);
        input.extend_from_slice(code.trim().as_bytes());
        self.keys().secret_hash(CODE_PURPOSE, &input)
    }

    fn new_user(
        &self,
        email: &str,
        password_hash: String,
        profile: SignupProfile,
        role: Role,
    ) -> Result<NewUser, EngineError> {
        let name = valid_name(&profile.name)?;
        let phone = profile.phone.as_deref().map(valid_phone).transpose()?;
        let address = profile.address.as_deref().map(valid_address).transpose()?;
        let id = self.inner.state.accounts.allocate_user_id();
        let row = id.to_string();
        let cipher = self.keys().cipher();
        Ok(NewUser {
            id,
            email: cipher.encrypt(&row, "email", email),
            name: cipher.encrypt(&row, "name", &name),
            phone: phone.map(|p| cipher.encrypt(&row, "phone", &p)),
            address: address.map(|a| cipher.encrypt(&row, "address", &a)),
            password_hash,
            role,
        })
    }

    fn open_profile(&self, user: &User) -> Result<Profile, EngineError> {
        let row = user.id.to_string();
        let cipher = self.keys().cipher();
        let open = |field: &str, sealed: &[u8]| {
            cipher
                .decrypt(&row, field, sealed)
                .map_err(|e| EngineError::from(Internal::Sealed(format!("{row}.{field} ({e})"))))
        };
        Ok(Profile {
            user_id: user.id,
            email: open("email", &user.email)?,
            name: open("name", &user.name)?,
            phone: user
                .phone
                .as_deref()
                .map(|p| open("phone", p))
                .transpose()?,
            address: user
                .address
                .as_deref()
                .map(|a| open("address", a))
                .transpose()?,
            role: user.role,
            created_ms: user.created_ms,
            disabled_ms: self.inner.state.accounts.disabled_since(user.id),
        })
    }
}

fn verification_row(email_index: &Digest) -> String {
    let hex: String = email_index.iter().map(|b| format!("{b:02x}")).collect();
    format!("vrf_{hex}")
}

fn valid_name(name: &str) -> Result<String, EngineError> {
    if name.chars().count() > NAME_CHARS_MAX
        || name.chars().any(char::is_control)
        || name.trim().is_empty()
    {
        return Err(AccountError::InvalidProfile(concatcp!(
            "name must be 1 to ",
            NAME_CHARS_MAX,
            " characters, none of them control characters"
        ))
        .into());
    }
    Ok(name.trim().to_string())
}

fn valid_phone(phone: &str) -> Result<String, EngineError> {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let allowed = phone
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if !allowed
        || !(PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits)
        || phone.chars().count() > PHONE_CHARS_MAX
    {
        return Err(AccountError::InvalidProfile(concatcp!(
            "phone must be ",
            PHONE_DIGITS_MIN,
            " to ",
            PHONE_DIGITS_MAX,
            " digits, optionally with + - ( ) . and spaces, at most ",
            PHONE_CHARS_MAX,
            " characters"
        ))
        .into());
    }
    Ok(phone.trim_matches(' ').to_string())
}

fn valid_address(address: &str) -> Result<String, EngineError> {
    if address.chars().count() > ADDRESS_CHARS_MAX
        || address.chars().any(|c| c.is_control() && c != '\n')
        || address.trim().is_empty()
    {
        return Err(AccountError::InvalidProfile(concatcp!(
            "address must be 1 to ",
            ADDRESS_CHARS_MAX,
            " characters, no control characters but line breaks"
        ))
        .into());
    }
    Ok(address.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `text` is what the document says: the pattern, within the length.
    fn documented(pattern: &str, chars_max: usize, text: &str) -> bool {
        let pattern = regex::Regex::new(pattern).expect("the pattern compiles");
        pattern.is_match(text) && text.chars().count() <= chars_max
    }

    proptest::proptest! {
        #[test]
        fn the_name_pattern_is_the_rule(text in r"[ \ta\u{e9}\u{a0}\u{3000}\x01\x7f\u{85}\n]{0,6}") {
            proptest::prop_assert_eq!(
                valid_name(&text).is_ok(),
                documented(NAME_PATTERN, NAME_CHARS_MAX, &text),
                "{:?}", text
            );
        }

        #[test]
        fn the_phone_pattern_is_the_rule(text in r"[ 0-9+().\-x\t]{0,34}") {
            proptest::prop_assert_eq!(
                valid_phone(&text).is_ok(),
                documented(PHONE_PATTERN, PHONE_CHARS_MAX, &text),
                "{:?}", text
            );
        }

        #[test]
        fn the_address_pattern_is_the_rule(text in r"[ \ta\u{e9}\u{a0}\x01\r\n]{0,6}") {
            proptest::prop_assert_eq!(
                valid_address(&text).is_ok(),
                documented(ADDRESS_PATTERN, ADDRESS_CHARS_MAX, &text),
                "{:?}", text
            );
        }
    }

    #[test]
    fn lengths_count_what_was_sent() {
        let padded = format!(" {} ", "a".repeat(NAME_CHARS_MAX - 2));
        assert_eq!(valid_name(&padded).ok().as_deref(), Some(padded.trim()));
        let too_long = format!(" {}", "a".repeat(NAME_CHARS_MAX));
        assert!(valid_name(&too_long).is_err());
        assert_eq!(
            valid_phone(" +82 (10) 1234-5678 ").ok().as_deref(),
            Some("+82 (10) 1234-5678")
        );
        assert!(valid_phone("\t0101234567").is_err());
    }
}
