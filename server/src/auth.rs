//! Who is calling, and how much they may ask: access tokens (HS512 JWTs), the session cookies and
//! their CSRF double-submit check, and the bounded pool that runs password hashing. The limits
//! they apply (the per-IP budget, the per-account login throttle) are the engine's.
//!
//! Everything here is mechanism at the HTTP edge; which user exists, which refresh token is
//! valid and which `jti` is revoked are the engine's business.

mod cookies;
mod jwt;
mod password_pool;

pub use allot_engine::IpBudget;
pub use cookies::{
    ACCESS_COOKIE, CSRF_COOKIE, CSRF_HEADER, CookiePolicy, Credential, REFRESH_COOKIE,
    REFRESH_COOKIE_PATH, access_token, cookie, csrf_ok,
};
pub use jwt::{
    ACCESS_TOKEN_BYTES_MAX, AccessClaims, IssuedToken, TOKEN_AUDIENCE, TOKEN_ISSUER, TokenRejected,
    TokenSigner,
};
pub use password_pool::{PASSWORD_QUEUE_MAX_DEFAULT, PasswordPool, PoolBusy};

/// How long an access token (and its cookie) is good for.
pub const ACCESS_TOKEN_TTL_MS: u64 = 15 * 60 * 1000;
/// How long a refresh token (and its cookie) is good for.
pub const REFRESH_TOKEN_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;
