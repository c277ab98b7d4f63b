//! The OpenAPI document's frame; paths and schemas come from the handlers' annotations.

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "allot",
        description = "Limited-edition drops, sold exactly and fast. Errors are application/problem+json with a stable `type`."
    ),
    modifiers(&Security),
    tags(
        (name = "accounts", description = "Email verification, signup, sessions and the profile"),
        (name = "catalog", description = "Products with live stock, and their administration"),
        (name = "wishlist", description = "The caller's wishlist"),
        (name = "orders", description = "Orders as durable sagas: place, pay, cancel, ship, deliver, return")
    )
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("access_token"))),
        );
    }
}
