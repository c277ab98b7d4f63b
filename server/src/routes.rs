//! Every route, and the OpenAPI document generated from their annotations.

mod accounts;
mod catalog;
mod ops;
mod orders;
mod session;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::AppState;
use crate::openapi::ApiDoc;

pub use session::{Admin, Authenticated};

pub fn router(state: AppState) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            accounts::routes(state.clone())
                .merge(catalog::routes())
                .merge(orders::routes()),
        )
        .split_for_parts();
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .merge(api)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .fallback(ops::not_found)
        .with_state(state)
}
