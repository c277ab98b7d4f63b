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
        (name = "orders", description = "Orders as durable sagas: place, pay, cancel, ship, deliver, return"),
        (name = "operations", description = "Running the shop: online backups"),
        (name = "users", description = "The administration of accounts: look up, promote, demote, disable, enable")
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

/// The answers every route shares, added to the document from what each route is: the
/// extractors it runs decide them, so they are declared here once and not on each handler.
/// Also declares the login of the routes that need one, and the registry of problem types.
pub struct SharedAnswers;

/// Routes under these paths need a login (the `Authenticated` or `Admin` extractor); the API
/// test holds every documented route to it, anonymous and logged in.
const LOGIN_REQUIRED: [&str; 4] = [
    "/api/v1/me",
    "/api/v1/orders",
    "/api/v1/admin/",
    "/api/v1/auth/logout",
];

/// Routes under this path need an admin (the `Admin` extractor).
const ADMIN_ONLY: &str = "/api/v1/admin/";

/// Whether a documented path needs a login.
pub fn needs_login(path: &str) -> bool {
    LOGIN_REQUIRED.iter().any(|prefix| path.starts_with(prefix))
}

/// Whether a documented path needs an admin.
pub fn needs_admin(path: &str) -> bool {
    path.starts_with(ADMIN_ONLY)
}

const PROBLEM_JSON: &str = "application/problem+json";

/// The operations that take an order's id, linked from a placement's answer.
const ORDER_OPERATIONS: [&str; 8] = [
    "get_order",
    "pay_order",
    "cancel_order",
    "return_order",
    "admin_order",
    "ship_order",
    "deliver_order",
    "approve_return",
];

/// Links from `POST /orders`' 201 to every operation that takes the order's id (OpenAPI
/// links), so that a client, or a conformance fuzzer's stateful phase, can follow an order it
/// placed.
fn link_placed_orders(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::link::LinkBuilder;

    let Some(place) = openapi
        .paths
        .paths
        .get_mut("/api/v1/orders")
        .and_then(|item| item.post.as_mut())
    else {
        return;
    };
    let Some(RefOr::T(created)) = place.responses.responses.get_mut("201") else {
        return;
    };
    for operation in ORDER_OPERATIONS {
        // utoipa 5.5 writes `Link::operation_id` as `operation_id`, which OpenAPI does not know:
        // the field is set through the extensions, which are written as they are named.
        let link = LinkBuilder::new()
            .parameter("id", "$response.body#/id")
            .extensions(Some(utoipa::openapi::extensions::Extensions::from_iter([
                ("operationId", operation),
            ])))
            .build();
        created.links.insert(operation.to_string(), RefOr::T(link));
    }
}

impl utoipa::Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::HttpMethod;
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::security::SecurityRequirement;

        use crate::problem::ProblemType as T;

        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
                (HttpMethod::Patch, item.patch.as_mut()),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let write = method != HttpMethod::Get;
                let mut shared = vec![T::NOT_READY];
                if write {
                    shared.push(T::SHUTTING_DOWN);
                }
                if needs_login(path) {
                    operation.security = Some(vec![
                        SecurityRequirement::new("bearer", Vec::<String>::new()),
                        SecurityRequirement::new("cookie", Vec::<String>::new()),
                    ]);
                    shared.push(T::UNAUTHENTICATED);
                    if write {
                        shared.push(T::CSRF_FAILED);
                    }
                    if needs_admin(path) {
                        shared.push(T::FORBIDDEN);
                    }
                }
                // The path extractors: an id that names nothing answers its *_not_found.
                if path.contains("/orders/{id}") {
                    shared.push(T::ORDER_NOT_FOUND);
                } else if path.contains("/products/{id}")
                    || (path.contains("/wishlist/{product_id}") && method == HttpMethod::Put)
                {
                    shared.push(T::PRODUCT_NOT_FOUND);
                }
                if operation.request_body.is_some() {
                    shared.extend([
                        T::INVALID_JSON,
                        T::PAYLOAD_TOO_LARGE,
                        T::UNSUPPORTED_MEDIA_TYPE,
                        T::INVALID_REQUEST,
                    ]);
                }
                let has_query = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == ParameterIn::Query);
                if has_query {
                    shared.push(T::INVALID_QUERY);
                }
                for kind in shared {
                    add_problem(&mut operation.responses, kind);
                }
                problems_as_problem_json(&mut operation.responses);
            }
        }
        list_problem_types(openapi);
        link_placed_orders(openapi);
    }
}

fn problem_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::Ref::from_schema_name("Problem").into()
}

/// Adds `kind` to the answers of its status: a new answer, or its code named in the one there.
fn add_problem(responses: &mut utoipa::openapi::Responses, kind: crate::problem::ProblemType) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::content::Content;
    use utoipa::openapi::response::Response;

    let code = format!("`{}`", kind.code);
    let status = kind.status.as_u16().to_string();
    match responses.responses.get_mut(&status) {
        Some(RefOr::T(response)) => {
            if !response.description.contains(&code) {
                response.description = if response.description.is_empty() {
                    code
                } else {
                    format!("{}, {code}", response.description)
                };
            }
            response
                .content
                .entry(PROBLEM_JSON.to_string())
                .or_insert_with(|| Content::new(Some(problem_schema())));
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let mut response = Response::new(code);
            response.content.insert(
                PROBLEM_JSON.to_string(),
                Content::new(Some(problem_schema())),
            );
            responses.responses.insert(status, RefOr::T(response));
        }
    }
}

/// A problem is sent as `application/problem+json`, never as `application/json`.
fn problems_as_problem_json(responses: &mut utoipa::openapi::Responses) {
    use utoipa::openapi::RefOr;

    for response in responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let is_problem = |content: &utoipa::openapi::content::Content| matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"));
        if let Some(content) = response.content.get("application/json")
            && is_problem(content)
        {
            let content = response.content.shift_remove("application/json");
            if let Some(content) = content {
                response.content.insert(PROBLEM_JSON.to_string(), content);
            }
        }
    }
}

/// The registry in the document: the `type` of a Problem is one of its codes, and
/// `x-problem-types` gives each code's status and title.
fn list_problem_types(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::extensions::Extensions;
    use utoipa::openapi::schema::Schema;

    use crate::problem::PROBLEM_TYPES;

    let codes: Vec<serde_json::Value> = PROBLEM_TYPES.iter().map(|k| k.code.into()).collect();
    if let Some(components) = openapi.components.as_mut()
        && let Some(RefOr::T(Schema::Object(problem))) = components.schemas.get_mut("Problem")
        && let Some(RefOr::T(Schema::Object(kind))) = problem.properties.get_mut("type")
    {
        kind.enum_values = Some(codes);
    }
    let registry: Vec<serde_json::Value> = PROBLEM_TYPES
        .iter()
        .map(|k| {
            serde_json::json!({
                "type": k.code,
                "status": k.status.as_u16(),
                "title": k.title,
            })
        })
        .collect();
    let extensions = openapi.extensions.get_or_insert_with(Default::default);
    extensions.merge(
        Extensions::builder()
            .add("x-problem-types", registry)
            .build(),
    );
}
