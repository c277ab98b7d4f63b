//! Every route, and the OpenAPI document generated from their annotations.

mod accounts;
mod backups;
mod catalog;
mod events;
mod ops;
mod orders;
mod session;
mod users;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::AppState;
use crate::openapi::ApiDoc;

pub use session::{Admin, Authenticated};

use crate::Problem;

/// Default and largest page of a list.
pub const PAGE_ITEMS_DEFAULT: usize = 20;
pub const PAGE_ITEMS_MAX: usize = 100;

/// A list's `limit` (1 to 100, default 20) and `cursor` (the last id of the previous page).
fn page_bounds<Id>(
    limit: Option<usize>,
    cursor: Option<&str>,
    parse_position: fn(&str) -> Result<Id, allot_engine::InvalidId>,
) -> Result<(usize, Option<Id>), Problem> {
    let limit = limit.unwrap_or(PAGE_ITEMS_DEFAULT);
    if !(1..=PAGE_ITEMS_MAX).contains(&limit) {
        return Err(Problem::invalid_query("limit must be 1 to 100"));
    }
    let cursor = cursor
        .map(|c| {
            parse_position(c).map_err(|e| Problem::invalid_query(format!("cursor {c:?} is {e}")))
        })
        .transpose()?;
    Ok((limit, cursor))
}

/// Cuts a list fetched with `limit + 1` items to `limit` and answers the next page's cursor:
/// the last id shown, if more items follow.
fn next_page<T>(items: &mut Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> Option<String> {
    let more = items.len() > limit;
    items.truncate(limit);
    more.then(|| items.last().map(id)).flatten()
}

pub(crate) use ops::not_found;

pub fn router(state: AppState) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            accounts::routes(state.clone())
                .merge(catalog::routes())
                .merge(orders::routes())
                .merge(users::routes())
                .merge(backups::routes())
                .merge(events::routes()),
        )
        .split_for_parts();
    let mut doc = doc;
    utoipa::Modify::modify(&crate::openapi::SharedAnswers, &mut doc);
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(api)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .fallback(ops::not_found)
        .with_state(state)
}
