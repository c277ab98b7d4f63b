//! Who is calling: the access token (Bearer header or cookie), checked for signature, expiry,
//! revocation and CSRF, and for an account that still exists.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use allot_engine::UserId;

use crate::auth::{self, AccessClaims};
use crate::{AppState, Problem};

pub struct Authenticated {
    pub user: UserId,
    pub claims: AccessClaims,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ready = state.shared.ready.get().ok_or_else(Problem::not_ready)?;
        let (token, credential) =
            auth::access_token(&parts.headers).ok_or_else(Problem::unauthenticated)?;
        let claims = ready
            .signer
            .verify(token, ready.engine.now_ms())
            .map_err(|_| Problem::unauthenticated())?;
        if ready.engine.is_access_revoked(&claims.jti) {
            return Err(Problem::unauthenticated());
        }
        // A token outlives nothing: an account that is gone is logged out at once.
        if ready.engine.role_of(claims.user).is_none() {
            return Err(Problem::unauthenticated());
        }
        if !auth::csrf_ok(&parts.method, &parts.headers, credential) {
            return Err(Problem::csrf_failed());
        }
        Ok(Self {
            user: claims.user,
            claims,
        })
    }
}

/// An authenticated admin (their id); anyone else gets 403 `forbidden`. The role is read from
/// the engine, not trusted from the token, so a demotion takes effect at once.
pub struct Admin(pub UserId);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Authenticated::from_request_parts(parts, state).await?;
        let engine = state.engine().ok_or_else(Problem::not_ready)?;
        if engine.role_of(caller.user) != Some(allot_engine::Role::Admin) {
            return Err(Problem::forbidden());
        }
        Ok(Self(caller.user))
    }
}
