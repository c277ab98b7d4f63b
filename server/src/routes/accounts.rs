//! Accounts: email verification, signup, login, refresh, logout, and the caller's profile.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use allot_engine::{
    AccountError, Email, EngineError, Profile, ProfileChange, RefreshOutcome, SignupProfile,
    check_policy, hash_password, rfc3339,
};

use super::Authenticated;
use crate::auth::{self, REFRESH_COOKIE, REFRESH_TOKEN_TTL_MS};
use crate::json::{ApiJson, double_option};
use crate::mail::OutgoingMail;
use crate::problem::ProblemType;
use crate::{AppState, Problem, Ready};

pub fn routes(state: AppState) -> OpenApiRouter<AppState> {
    let auth = OpenApiRouter::new()
        .routes(routes!(request_verification))
        .routes(routes!(confirm_verification))
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .route_layer(middleware::from_fn_with_state(state, ip_budget));
    OpenApiRouter::new()
        .merge(auth)
        .routes(routes!(get_me, patch_me))
}

/// The per-IP request budget of the auth endpoints (`--ip-rate-limit`).
async fn ip_budget(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let now_ms = state.engine().map_or(0, |e| e.now_ms());
    if let Some(ip) = peer
        && let Err(retry) = state.shared.ip_budget.check(ip, now_ms)
    {
        return Problem::rate_limited(retry.seconds).into_response();
    }
    next.run(request).await
}

// ----- email verification ----------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerificationRequest {
    /// ASCII (an international domain in its `xn--` form).
    #[schema(
        max_length = 254,
        pattern = r"^[\t\n\f\r ]*[!#-'*+\-./0-9=?A-Z^-~]{1,64}@[!#-'*+/0-9=?A-Z^-~]([!#-'*+\-/0-9=?A-Z^-~]*[!#-'*+/0-9=?A-Z^-~])?(\.[!#-'*+/0-9=?A-Z^-~]([!#-'*+\-/0-9=?A-Z^-~]*[!#-'*+/0-9=?A-Z^-~])?)+[\t\n\f\r ]*$"
    )]
    email: String,
}

#[derive(Serialize, ToSchema)]
struct Accepted {
    detail: &'static str,
}

/// Mails a 6-digit code. Always 202: the answer never tells whether the address has an account.
#[utoipa::path(post, path = "/auth/email-verifications", tag = "accounts",
    request_body = VerificationRequest,
    responses(
        (status = 202, body = Accepted),
        (status = 422, description = "`invalid_email`", body = Problem),
        (status = 429, description = "`rate_limited` (per IP)", body = Problem),
    ))]
async fn request_verification(
    State(state): State<AppState>,
    Ready(engine): Ready,
    ApiJson(body): ApiJson<VerificationRequest>,
) -> Result<(StatusCode, Json<Accepted>), Problem> {
    let email = Email::parse(&body.email)?;
    match engine.request_verification(&email) {
        Ok((code, ticket)) => {
            ticket.durable().await?;
            let mail = OutgoingMail {
                to: email.as_str().to_string(),
                subject: "Your allot verification code".into(),
                body_text: format!(
                    "Your allot verification code is {code}.\n\nIt is valid for 10 minutes. \
                     If you did not ask for it, ignore this mail.\n"
                ),
            };
            if let Err(error) = state.mailer().send(mail) {
                tracing::error!(%error, domain = email.domain(), "verification mail not queued");
            }
        }
        // Within the resend cooldown: no new mail, and the same answer.
        Err(EngineError::Account(AccountError::VerificationCooldown { .. })) => {}
        Err(error) => return Err(error.into()),
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            detail: "if the address can receive mail, a code is on its way",
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    email: String,
    code: String,
}

#[derive(Serialize, ToSchema)]
struct VerificationToken {
    verification_token: String,
}

/// Trades the mailed code for a single-use signup token.
#[utoipa::path(post, path = "/auth/email-verifications/confirm", tag = "accounts",
    request_body = ConfirmRequest,
    responses(
        (status = 200, body = VerificationToken),
        (status = 400, description = "`invalid_code`", body = Problem),
        (status = 410, description = "`code_expired`", body = Problem),
        (status = 429, description = "`too_many_attempts` (5 wrong codes), `rate_limited`", body = Problem),
    ))]
async fn confirm_verification(
    Ready(engine): Ready,
    ApiJson(body): ApiJson<ConfirmRequest>,
) -> Result<Json<VerificationToken>, Problem> {
    let email = Email::parse(&body.email).map_err(|_| Problem::from(AccountError::InvalidCode))?;
    let (token, ticket) = engine.confirm_verification(&email, &body.code)?;
    ticket.durable().await?;
    Ok(Json(VerificationToken {
        verification_token: token,
    }))
}

// ----- signup ----------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignupRequest {
    verification_token: String,
    password: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    #[schema(max_length = 32, pattern = r"^[ +().-]*([0-9][ +().-]*){5,20}$")]
    phone: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x09\x0b-\x1f\x7f-\x9f]*$"
    )]
    address: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct SignupResponse {
    user_id: String,
}

/// Creates a customer account for the verified address.
#[utoipa::path(post, path = "/auth/signup", tag = "accounts",
    request_body = SignupRequest,
    responses(
        (status = 201, body = SignupResponse),
        (status = 400, description = "`invalid_verification_token`", body = Problem),
        (status = 409, description = "`email_taken`", body = Problem),
        (status = 422, description = "`weak_password`, `invalid_profile`", body = Problem),
    ))]
async fn signup(
    State(state): State<AppState>,
    Ready(engine): Ready,
    ApiJson(body): ApiJson<SignupRequest>,
) -> Result<(StatusCode, Json<SignupResponse>), Problem> {
    // A made-up token must cost no argon2 work.
    if !engine.signup_token_is_live(&body.verification_token) {
        return Err(AccountError::InvalidVerificationToken.into());
    }
    check_policy(&body.password).map_err(|weak| ProblemType::WEAK_PASSWORD.with(weak.reason))?;
    let password = body.password;
    let password_hash = state
        .shared
        .passwords
        .run(move || hash_password(&password))
        .await
        .map_err(|_| Problem::busy())?;
    let profile = SignupProfile {
        name: body.name,
        phone: body.phone,
        address: body.address,
    };
    let (user, ticket) = engine.register(&body.verification_token, password_hash, profile)?;
    ticket.durable().await?;
    Ok((
        StatusCode::CREATED,
        Json(SignupResponse {
            user_id: user.to_string(),
        }),
    ))
}

// ----- sessions --------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

/// A session's tokens. Browsers use the cookies set alongside; API clients may use these
/// (`Authorization: Bearer`, and `{refresh_token}` on refresh).
#[derive(Serialize, ToSchema)]
struct SessionResponse {
    user_id: String,
    role: &'static str,
    access_token: String,
    access_token_expires_at: String,
    refresh_token: String,
}

/// Starts a session: sets the `access_token`, `refresh_token` and `csrf_token` cookies.
#[utoipa::path(post, path = "/auth/login", tag = "accounts",
    request_body = LoginRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, description = "`invalid_credentials` (also for an unknown email)", body = Problem),
        (status = 403, description = "`account_disabled`: the right password of an account an admin disabled", body = Problem),
        (status = 429, description = "`rate_limited`: 10 failed tries for one account within 15 minutes, or the per-IP budget", body = Problem),
    ))]
async fn login(
    State(state): State<AppState>,
    Ready(engine): Ready,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, Problem> {
    let now = engine.now_ms();
    let attempt = engine.begin_login(&body.email)?;
    let verified = state
        .shared
        .passwords
        .run(attempt.check(body.password))
        .await;
    let (user, role) = match verified {
        Ok(verified) => attempt.finish(verified)?,
        Err(_busy) => {
            attempt.abandon();
            return Err(Problem::busy());
        }
    };
    let (refresh_token, ticket) = engine.start_session(user, REFRESH_TOKEN_TTL_MS)?;
    ticket.durable().await?;
    Ok(session_response(&state, user, role, refresh_token, now))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// Exchanges the refresh token (cookie, or `{refresh_token}`) for new tokens. A token that was
/// already exchanged revokes its whole session family.
#[utoipa::path(post, path = "/auth/refresh", tag = "accounts",
    request_body(content = Option<RefreshRequest>, description = "Only without the refresh_token cookie"),
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, description = "`invalid_refresh`", body = Problem),
        (status = 403, description = "`csrf_failed` (cookie without X-CSRF-Token)", body = Problem),
    ))]
async fn refresh(
    State(state): State<AppState>,
    Ready(engine): Ready,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let (token, from_cookie) =
        refresh_token_of(&headers, &body)?.ok_or(AccountError::InvalidRefresh)?;
    // A cookie-authenticated write, like any other: the CSRF header must match.
    if from_cookie
        && !auth::csrf_ok(
            &axum::http::Method::POST,
            &headers,
            auth::Credential::Cookie,
        )
    {
        return Err(Problem::csrf_failed());
    }
    let (user, new_token) = match engine.refresh_session(&token, REFRESH_TOKEN_TTL_MS)? {
        RefreshOutcome::Rotated {
            user,
            token,
            ticket,
        } => {
            ticket.durable().await?;
            (user, token)
        }
        RefreshOutcome::FamilyRevoked { ticket } => {
            ticket.durable().await?;
            return Err(AccountError::InvalidRefresh.into());
        }
    };
    let role = engine.role_of(user).ok_or(AccountError::InvalidRefresh)?;
    Ok(session_response(
        &state,
        user,
        role,
        new_token,
        engine.now_ms(),
    ))
}

/// Ends the session: the access token is refused from now on, the refresh token deleted and
/// the cookies cleared.
#[utoipa::path(post, path = "/auth/logout", tag = "accounts",
    request_body(content = Option<RefreshRequest>, description = "Only without the refresh_token cookie"),
    responses(
        (status = 204),
    ))]
async fn logout(
    State(state): State<AppState>,
    Ready(engine): Ready,
    caller: Authenticated,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    engine
        .revoke_access(&caller.claims.jti, caller.claims.expires_ms)?
        .durable()
        .await?;
    if let Some((token, _)) = refresh_token_of(&headers, &body)?
        && let Some(ticket) = engine.end_session(&token)?
    {
        ticket.durable().await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    for cookie in state.shared.cookies.clear_cookies() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The refresh token, from the cookie or the JSON body, and whether it came from the cookie.
fn refresh_token_of(headers: &HeaderMap, body: &Bytes) -> Result<Option<(String, bool)>, Problem> {
    if let Some(token) = auth::cookie(headers, REFRESH_COOKIE) {
        return Ok(Some((token.to_string(), true)));
    }
    // The body is optional: nothing, or JSON `null`, means none was sent.
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(None);
    }
    let request: RefreshRequest =
        serde_json::from_slice(body).map_err(|e| ProblemType::INVALID_JSON.with(e.to_string()))?;
    Ok(Some((request.refresh_token, false)))
}

fn session_response(
    state: &AppState,
    user: allot_engine::UserId,
    role: allot_engine::Role,
    refresh_token: String,
    now_ms: u64,
) -> Response {
    let signer = &state
        .shared
        .ready
        .get()
        .expect("a session is only started once the engine is ready")
        .signer;
    let access = signer.issue(user, role, now_ms);
    let cookies = state
        .shared
        .cookies
        .session_cookies(&access, &refresh_token);
    let body = SessionResponse {
        user_id: user.to_string(),
        role: role.as_str(),
        access_token_expires_at: rfc3339(access.expires_ms),
        access_token: access.token,
        refresh_token,
    };
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ----- the profile -----------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
struct ProfileResponse {
    user_id: String,
    email: String,
    name: String,
    phone: Option<String>,
    address: Option<String>,
    role: &'static str,
    created_at: String,
}

impl From<Profile> for ProfileResponse {
    fn from(p: Profile) -> Self {
        Self {
            user_id: p.user_id.to_string(),
            email: p.email,
            name: p.name,
            phone: p.phone,
            address: p.address,
            role: p.role.as_str(),
            created_at: rfc3339(p.created_ms),
        }
    }
}

/// The caller's profile, decrypted for them alone.
#[utoipa::path(get, path = "/me", tag = "accounts",
    responses(
        (status = 200, body = ProfileResponse),
    ))]
async fn get_me(
    Ready(engine): Ready,
    caller: Authenticated,
) -> Result<Json<ProfileResponse>, Problem> {
    Ok(Json(engine.profile(caller.user)?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProfilePatchRequest {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: Option<String>,
    /// `null` removes the phone number.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 32, pattern = r"^[ +().-]*([0-9][ +().-]*){5,20}$")]
    phone: Option<Option<String>>,
    /// `null` removes the address.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x09\x0b-\x1f\x7f-\x9f]*$"
    )]
    address: Option<Option<String>>,
}

/// Changes the caller's name, phone or address.
#[utoipa::path(patch, path = "/me", tag = "accounts",
    request_body = ProfilePatchRequest,
    responses(
        (status = 200, body = ProfileResponse),
        (status = 422, description = "`invalid_profile`", body = Problem),
    ))]
async fn patch_me(
    Ready(engine): Ready,
    caller: Authenticated,
    ApiJson(body): ApiJson<ProfilePatchRequest>,
) -> Result<Json<ProfileResponse>, Problem> {
    let change = ProfileChange {
        name: body.name,
        phone: body.phone,
        address: body.address,
    };
    let (profile, ticket) = engine.update_profile(caller.user, change)?;
    ticket.durable().await?;
    Ok(Json(profile.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use allot_engine as engine;

    /// A property of a request body's documented schema, as JSON.
    fn documented<T: utoipa::PartialSchema>(field: &str) -> serde_json::Value {
        let schema = serde_json::to_value(T::schema()).expect("a schema serialises");
        schema["properties"][field].clone()
    }

    #[test]
    fn the_documented_rules_are_the_engines() {
        let profile_fields = [
            ("name", engine::NAME_PATTERN, engine::NAME_CHARS_MAX),
            ("phone", engine::PHONE_PATTERN, engine::PHONE_CHARS_MAX),
            (
                "address",
                engine::ADDRESS_PATTERN,
                engine::ADDRESS_CHARS_MAX,
            ),
        ];
        for (field, pattern, chars_max) in profile_fields {
            for schema in [
                documented::<SignupRequest>(field),
                documented::<ProfilePatchRequest>(field),
            ] {
                assert_eq!(schema["pattern"], pattern, "{field}");
                assert_eq!(schema["maxLength"], chars_max, "{field}");
            }
        }
        let email = documented::<VerificationRequest>("email");
        assert_eq!(email["pattern"], engine::EMAIL_PATTERN);
        assert_eq!(email["maxLength"], engine::EMAIL_BYTES_MAX);
    }
}
