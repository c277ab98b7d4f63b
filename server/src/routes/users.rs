//! The administration of accounts: list and look up users, promote or demote them, disable an
//! account (it cannot log in, its tokens stop working at once, its sessions end) and enable it
//! again.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use allot_engine::{AccountError, Email, Engine, EngineError, Profile, Role, UserId, rfc3339};

use super::Admin;
use crate::extract::UserPath;
use crate::json::ApiQuery;
use crate::problem::ProblemType;
use crate::{AppState, Problem, Ready};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(get_user))
        .routes(routes!(promote_user))
        .routes(routes!(demote_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
}

/// An account as an admin sees it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserJson {
    /// `usr_…`
    pub id: String,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub address: Option<String>,
    /// `customer` or `admin`.
    pub role: String,
    /// `active`, or `disabled` (no login, no working token).
    pub status: String,
    pub created_at: String,
    /// When an admin disabled it, if it is.
    pub disabled_at: Option<String>,
    /// Sessions (refresh-token families) live now.
    pub live_sessions: usize,
}

/// One page of accounts, by id.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserJson>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

fn user_json(engine: &Engine, profile: Profile) -> UserJson {
    UserJson {
        id: profile.user_id.to_string(),
        live_sessions: engine.live_sessions(profile.user_id),
        email: profile.email,
        name: profile.name,
        phone: profile.phone,
        address: profile.address,
        role: profile.role.as_str().to_string(),
        status: if profile.disabled_ms.is_some() {
            "disabled"
        } else {
            "active"
        }
        .to_string(),
        created_at: rfc3339(profile.created_ms),
        disabled_at: profile.disabled_ms.map(rfc3339),
    }
}

/// The account `id`, or 404 `user_not_found` (the engine's `UserNotFound` means a stale token
/// elsewhere; here it is the admin's wrong id).
fn user_answer(engine: &Engine, id: UserId) -> Result<UserJson, Problem> {
    match engine.profile(id) {
        Ok(profile) => Ok(user_json(engine, profile)),
        Err(EngineError::Account(AccountError::UserNotFound(_))) => Err(not_found(id)),
        Err(other) => Err(other.into()),
    }
}

fn not_found(id: UserId) -> Problem {
    ProblemType::USER_NOT_FOUND.with(format!("user {id} does not exist"))
}

/// A change of `id` the engine refused or queued, then the account as it is once durable.
async fn changed(
    engine: &Engine,
    id: UserId,
    change: Result<Option<allot_engine::Ticket>, EngineError>,
) -> Result<Json<UserJson>, Problem> {
    match change {
        Ok(Some(ticket)) => ticket.durable().await?,
        Ok(None) => {}
        Err(EngineError::Account(AccountError::UserNotFound(_))) => return Err(not_found(id)),
        Err(other) => return Err(other.into()),
    }
    user_answer(engine, id).map(Json)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UsersQuery {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page: accounts after this id.
    #[param(pattern = "^usr_(0|[1-9][0-9]*)$")]
    cursor: Option<String>,
    /// Only accounts of this role.
    #[param(pattern = "^(customer|admin)$")]
    role: Option<String>,
    /// The one account with this email address (a page of one, or none). The pattern is the
    /// engine's `EMAIL_PATTERN` (a test holds the two to agree).
    #[param(
        max_length = 254,
        pattern = r"^[\t\n\f\r ]*[!#-'*+\-./0-9=?A-Z^-~]{1,64}@[!#-'*+/0-9=?A-Z^-~]([!#-'*+\-/0-9=?A-Z^-~]*[!#-'*+/0-9=?A-Z^-~])?(\.[!#-'*+/0-9=?A-Z^-~]([!#-'*+\-/0-9=?A-Z^-~]*[!#-'*+/0-9=?A-Z^-~])?)+[\t\n\f\r ]*$"
    )]
    email: Option<String>,
}

/// Accounts in id order, optionally of one role; or the one with an email address.
#[utoipa::path(get, path = "/admin/users", tag = "users",
    params(UsersQuery),
    responses((status = 200, body = UserPage)))]
async fn list_users(
    Ready(engine): Ready,
    _admin: Admin,
    ApiQuery(query): ApiQuery<UsersQuery>,
) -> Result<Json<UserPage>, Problem> {
    let (limit, after) =
        super::page_bounds(query.limit, query.cursor.as_deref(), UserId::parse_position)?;
    let role = query
        .role
        .as_deref()
        .map(|r| match r {
            "customer" => Ok(Role::Customer),
            "admin" => Ok(Role::Admin),
            _ => Err(Problem::invalid_query("role is customer or admin")),
        })
        .transpose()?;
    if let Some(email) = query.email.as_deref() {
        let email =
            Email::parse(email).map_err(|_| Problem::invalid_query("email is not an address"))?;
        let items = engine
            .profile_by_email(&email)?
            .filter(|p| role.is_none_or(|r| p.role == r))
            .map(|p| user_json(&engine, p))
            .into_iter()
            .collect();
        return Ok(Json(UserPage {
            items,
            next_cursor: None,
        }));
    }
    let (profiles, more) = engine.users_page(after, role, limit)?;
    let items: Vec<UserJson> = profiles
        .into_iter()
        .map(|p| user_json(&engine, p))
        .collect();
    let next_cursor = more.then(|| items.last().map(|u| u.id.clone())).flatten();
    Ok(Json(UserPage { items, next_cursor }))
}

/// One account.
#[utoipa::path(get, path = "/admin/users/{id}", tag = "users",
    params(("id" = String, Path)),
    responses((status = 200, body = UserJson), (status = 404, description = "`user_not_found`", body = Problem)))]
async fn get_user(
    Ready(engine): Ready,
    _admin: Admin,
    UserPath(id): UserPath,
) -> Result<Json<UserJson>, Problem> {
    user_answer(&engine, id).map(Json)
}

/// Makes the account an admin (already one: unchanged).
#[utoipa::path(post, path = "/admin/users/{id}/promote", tag = "users",
    params(("id" = String, Path)),
    responses((status = 200, body = UserJson), (status = 404, description = "`user_not_found`", body = Problem)))]
async fn promote_user(
    Ready(engine): Ready,
    Admin(by): Admin,
    UserPath(id): UserPath,
) -> Result<Json<UserJson>, Problem> {
    changed(&engine, id, engine.set_role(by, id, Role::Admin)).await
}

/// Makes the account a customer again (already one: unchanged). An admin cannot demote
/// themselves.
#[utoipa::path(post, path = "/admin/users/{id}/demote", tag = "users",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = UserJson),
        (status = 404, description = "`user_not_found`", body = Problem),
        (status = 409, description = "`self_lockout`", body = Problem),
    ))]
async fn demote_user(
    Ready(engine): Ready,
    Admin(by): Admin,
    UserPath(id): UserPath,
) -> Result<Json<UserJson>, Problem> {
    changed(&engine, id, engine.set_role(by, id, Role::Customer)).await
}

/// Disables the account: its login answers `account_disabled`, its access tokens stop
/// working at once and its sessions end (already disabled: unchanged). An admin cannot
/// disable themselves.
#[utoipa::path(post, path = "/admin/users/{id}/disable", tag = "users",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = UserJson),
        (status = 404, description = "`user_not_found`", body = Problem),
        (status = 409, description = "`self_lockout`", body = Problem),
    ))]
async fn disable_user(
    Ready(engine): Ready,
    Admin(by): Admin,
    UserPath(id): UserPath,
) -> Result<Json<UserJson>, Problem> {
    changed(&engine, id, engine.disable_user(by, id)).await
}

/// Enables a disabled account: it may log in again (not disabled: unchanged).
#[utoipa::path(post, path = "/admin/users/{id}/enable", tag = "users",
    params(("id" = String, Path)),
    responses((status = 200, body = UserJson), (status = 404, description = "`user_not_found`", body = Problem)))]
async fn enable_user(
    Ready(engine): Ready,
    _admin: Admin,
    UserPath(id): UserPath,
) -> Result<Json<UserJson>, Problem> {
    changed(&engine, id, engine.enable_user(id)).await
}
