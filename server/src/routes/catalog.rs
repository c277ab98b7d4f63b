//! The catalog (public reads with live stock), its administration, and the caller's wishlist.

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use allot_engine::{
    CatalogError, EngineError, NewProduct, ProductChange, ProductChangeForm, ProductForm,
    ProductId, ProductKind, ProductStatus, ProductVersion, ProductView, StockError, rfc3339,
};

use super::{Admin, Authenticated};
use crate::extract::{MaybeProductPath, ProductPath, ProductVersionPath};
use crate::json::{ApiJson, ApiQuery};
use crate::problem::ProblemType;
use crate::stock_feed::{KEEP_ALIVE_FRAME, StockEvent, StockFrame, StockJson};
use crate::{AppState, Problem, Ready};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products))
        .routes(routes!(get_product))
        .routes(routes!(get_product_version))
        .routes(routes!(get_stock))
        .routes(routes!(stream_stock))
        .routes(routes!(create_product))
        .routes(routes!(update_product))
        .routes(routes!(restock_product))
        .routes(routes!(get_wishlist))
        .routes(routes!(put_wishlist_item, delete_wishlist_item))
}

// ----- shapes ----------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
struct ProductJson {
    id: String,
    name: String,
    description: String,
    price: u64,
    currency: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sale_opens_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sale_closes_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_user_limit: Option<u32>,
    stock_total: u64,
    /// Read from the SKU counter at the moment of the answer.
    remaining: u64,
    status: &'static str,
    version: u32,
}

impl ProductJson {
    fn of(view: &ProductView) -> Self {
        Self::at(view, view.product.current())
    }

    fn at(view: &ProductView, version: &ProductVersion) -> Self {
        let product = &view.product;
        Self {
            id: product.id.to_string(),
            name: version.details.name.clone(),
            description: version.details.description.clone(),
            price: version.details.price,
            currency: version.details.currency.clone(),
            kind: product.kind.as_str(),
            sale_opens_at: version.sale_opens_ms.map(rfc3339),
            sale_closes_at: version.sale_closes_ms.map(rfc3339),
            per_user_limit: product.per_user_limit,
            stock_total: view.counts.total(),
            remaining: view.counts.available,
            status: view.status.as_str(),
            version: version.version,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct ProductPage {
    items: Vec<ProductJson>,
    next_cursor: Option<String>,
}

impl StockJson {
    fn of(view: &ProductView) -> Self {
        Self::new(view.product.id, view.counts, view.status, view.as_of_ms)
    }
}

// ----- reads -----------------------------------------------------------------------------

/// Unknown parameters (a tracking tag, say) are ignored; known ones must parse.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `general` or `limited`.
    #[param(pattern = "^(general|limited)$")]
    kind: Option<String>,
    /// `upcoming`, `on_sale`, `sold_out` or `closed`, as of the moment of the answer.
    #[param(pattern = "^(upcoming|on_sale|sold_out|closed)$")]
    status: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page: products after this id.
    #[param(pattern = "^prd_(0|[1-9][0-9]*)$")]
    cursor: Option<String>,
}

/// Lists products in id order, with live stock and status.
#[utoipa::path(get, path = "/products", tag = "catalog", params(ListQuery),
    responses((status = 200, body = ProductPage), (status = 400, description = "`invalid_query`", body = Problem)))]
async fn list_products(
    Ready(engine): Ready,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ProductPage>, Problem> {
    let kind = match query.kind.as_deref() {
        None => None,
        Some("general") => Some(ProductKind::General),
        Some("limited") => Some(ProductKind::Limited),
        Some(other) => return Err(Problem::invalid_query(format!("unknown kind {other:?}"))),
    };
    let status = query
        .status
        .as_deref()
        .map(|s| {
            ProductStatus::parse(s)
                .ok_or_else(|| Problem::invalid_query(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let (limit, after) = super::page_bounds(
        query.limit,
        query.cursor.as_deref(),
        ProductId::parse_position,
    )?;
    let mut views = engine.list_products(after, limit + 1, kind, status);
    let next_cursor = super::next_page(&mut views, limit, |v| v.product.id.to_string());
    Ok(Json(ProductPage {
        items: views.iter().map(ProductJson::of).collect(),
        next_cursor,
    }))
}

/// A product as it is now: its current version, live stock and status.
#[utoipa::path(get, path = "/products/{id}", tag = "catalog",
    params(("id" = String, Path, description = "`prd_…`")),
    responses((status = 200, body = ProductJson), (status = 404, description = "`product_not_found`", body = Problem)))]
async fn get_product(
    Ready(engine): Ready,
    ProductPath(id): ProductPath,
) -> Result<Json<ProductJson>, Problem> {
    let view = engine
        .product(id)
        .ok_or(CatalogError::ProductNotFound(id))?;
    Ok(Json(ProductJson::of(&view)))
}

/// An earlier (or the current) version of a product, as orders placed with it saw it.
#[utoipa::path(get, path = "/products/{id}/versions/{version}", tag = "catalog",
    params(("id" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = ProductJson), (status = 404, description = "`product_not_found`, `version_not_found`", body = Problem)))]
async fn get_product_version(
    Ready(engine): Ready,
    ProductVersionPath(id, version): ProductVersionPath,
) -> Result<Json<ProductJson>, Problem> {
    let view = engine
        .product(id)
        .ok_or(CatalogError::ProductNotFound(id))?;
    let version = version
        .ok()
        .and_then(|v| view.product.version(v).cloned())
        .ok_or_else(|| {
            ProblemType::VERSION_NOT_FOUND.with(format!(
                "{id} has versions 1 to {}",
                view.product.versions.len()
            ))
        })?;
    Ok(Json(ProductJson::at(&view, &version)))
}

/// The stock of a product, read from its counter at this moment.
#[utoipa::path(get, path = "/products/{id}/stock", tag = "catalog",
    params(("id" = String, Path)),
    responses((status = 200, body = StockJson), (status = 404, description = "`product_not_found`", body = Problem)))]
async fn get_stock(
    Ready(engine): Ready,
    ProductPath(id): ProductPath,
) -> Result<Json<StockJson>, Problem> {
    let view = engine
        .product(id)
        .ok_or(CatalogError::ProductNotFound(id))?;
    Ok(Json(StockJson::of(&view)))
}

/// Server-Sent Events: a `stock` event (the shape of GET /stock) at once and on every change of
/// the stock, coalesced (a slow client gets the latest value, never a backlog); `sale_opened`
/// and `sale_closed` when the sale window opens or closes; a comment when it has been quiet
/// for a while, so proxies keep the stream open.
#[utoipa::path(get, path = "/products/{id}/stock/stream", tag = "catalog",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "`text/event-stream` of `stock`, `sale_opened` and `sale_closed` events, each with a StockJson", content_type = "text/event-stream", body = StockFrame),
        (status = 404, description = "`product_not_found`", body = Problem),
    ))]
async fn stream_stock(
    State(state): State<AppState>,
    Ready(engine): Ready,
    ProductPath(id): ProductPath,
) -> Result<Response, Problem> {
    let mut updates = state
        .shared
        .stock_feed
        .subscribe(&engine, id)
        .ok_or(CatalogError::ProductNotFound(id))?;
    let first = updates.borrow_and_update().clone();
    // Each item hands on frames the feed rendered once for every subscriber.
    let frames = futures_util::stream::unfold(
        (updates, None::<StockEvent>, Some(first)),
        |(mut updates, last, pending)| async move {
            let now = match pending {
                Some(event) => event,
                None => {
                    updates.changed().await.ok()?;
                    updates.borrow_and_update().clone()
                }
            };
            let frames = stream_frames(last.as_ref(), &now);
            Some((frames, (updates, Some(now), None)))
        },
    )
    .flat_map(futures_util::stream::iter)
    .map(Ok::<_, Infallible>);
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response())
}

/// The frames for a new value of the feed after `last` (None: the stream's first).
fn stream_frames(last: Option<&StockEvent>, now: &StockEvent) -> Vec<Bytes> {
    if last.is_some_and(|last| last.change == now.change) {
        return vec![Bytes::from_static(KEEP_ALIVE_FRAME)];
    }
    let last_status = last.map(|l| l.status);
    let mut frames = Vec::with_capacity(2);
    let opened =
        last_status == Some(ProductStatus::Upcoming) && now.status != ProductStatus::Upcoming;
    let closed = last_status.is_some_and(|s| s != ProductStatus::Closed)
        && now.status == ProductStatus::Closed;
    if opened {
        frames.push(now.opened_frame.clone());
    }
    if closed {
        frames.push(now.closed_frame.clone());
    }
    frames.push(now.stock_frame.clone());
    frames
}

// ----- administration ----------------------------------------------------------------------

/// Creates a product (version 1) and its stock.
#[utoipa::path(post, path = "/admin/products", tag = "catalog",
    request_body = ProductForm,
    responses(
        (status = 201, body = ProductJson),
        (status = 422, description = "`invalid_product`, `stock_limit_exceeded`", body = Problem),
    ))]
async fn create_product(
    Ready(engine): Ready,
    _admin: Admin,
    ApiJson(body): ApiJson<ProductForm>,
) -> Result<(StatusCode, Json<ProductJson>), Problem> {
    let new = NewProduct::try_from(body)?;
    let (view, ticket) = engine.create_product(new)?;
    ticket.durable().await?;
    Ok((StatusCode::CREATED, Json(ProductJson::of(&view))))
}

/// Changes a product's details or sale window as a new version; earlier versions stay
/// readable and orders keep the version they were placed with.
#[utoipa::path(patch, path = "/admin/products/{id}", tag = "catalog",
    params(("id" = String, Path)),
    request_body = ProductChangeForm,
    responses(
        (status = 200, body = ProductJson),
        (status = 404, description = "`product_not_found`", body = Problem),
        (status = 422, description = "`invalid_product`", body = Problem),
    ))]
async fn update_product(
    Ready(engine): Ready,
    _admin: Admin,
    ProductPath(id): ProductPath,
    ApiJson(body): ApiJson<ProductChangeForm>,
) -> Result<Json<ProductJson>, Problem> {
    let change = ProductChange::try_from(body)?;
    if let Some(ticket) = engine.update_product(id, change)? {
        ticket.durable().await?;
    }
    let view = engine
        .product(id)
        .ok_or(CatalogError::ProductNotFound(id))?;
    Ok(Json(ProductJson::of(&view)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RestockRequest {
    #[schema(minimum = 1, maximum = 4_294_967_295_i64, format = Int64)]
    #[serde(deserialize_with = "allot_engine::wire::whole")]
    quantity: i64,
}

/// Adds units to a product's stock.
#[utoipa::path(post, path = "/admin/products/{id}/restock", tag = "catalog",
    params(("id" = String, Path)),
    request_body = RestockRequest,
    responses(
        (status = 200, body = StockJson),
        (status = 404, description = "`product_not_found`", body = Problem),
        (status = 422, description = "`invalid_quantity`, `stock_limit_exceeded`", body = Problem),
    ))]
async fn restock_product(
    Ready(engine): Ready,
    _admin: Admin,
    ProductPath(id): ProductPath,
    ApiJson(body): ApiJson<RestockRequest>,
) -> Result<Json<StockJson>, Problem> {
    let quantity = u32::try_from(body.quantity).map_err(|_| {
        Problem::from(EngineError::Stock(StockError::InvalidQuantity {
            max: u32::MAX,
        }))
    })?;
    engine.restock_product(id, quantity)?.durable().await?;
    let view = engine
        .product(id)
        .ok_or(CatalogError::ProductNotFound(id))?;
    Ok(Json(StockJson::of(&view)))
}

// ----- wishlist --------------------------------------------------------------------------

// The schema of `WishRequest` repeats the engine's limits as literals.
const _: () = assert!(
    allot_engine::WISHLIST_QUANTITY_MAX == 99 && allot_engine::WISHLIST_NOTE_CHARS_MAX == 500
);

#[derive(Serialize, ToSchema)]
struct WishProductJson {
    name: String,
    price: u64,
    remaining: u64,
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
struct WishItemJson {
    product_id: String,
    quantity: u32,
    note: String,
    added_at: String,
    product: Option<WishProductJson>,
}

#[derive(Serialize, ToSchema)]
struct WishlistPage {
    items: Vec<WishItemJson>,
    /// Always null: a wishlist (at most 200 items) is one page.
    next_cursor: Option<String>,
}

fn wish_item_json(item: &allot_engine::WishItem, view: Option<&ProductView>) -> WishItemJson {
    WishItemJson {
        product_id: item.product.to_string(),
        quantity: item.quantity,
        note: item.note.clone(),
        added_at: rfc3339(item.added_ms),
        product: view.map(|v| WishProductJson {
            name: v.product.current().details.name.clone(),
            price: v.product.current().details.price,
            remaining: v.counts.available,
            status: v.status.as_str(),
        }),
    }
}

/// The caller's wishlist, each product with its live price, stock and status.
#[utoipa::path(get, path = "/me/wishlist", tag = "wishlist",
    responses((status = 200, body = WishlistPage)))]
async fn get_wishlist(Ready(engine): Ready, caller: Authenticated) -> Json<WishlistPage> {
    let items = engine
        .wishlist(caller.user)
        .iter()
        .map(|(item, view)| wish_item_json(item, view.as_ref()))
        .collect();
    Json(WishlistPage {
        items,
        next_cursor: None,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WishRequest {
    /// 1 to 99; default 1.
    #[schema(minimum = 1, maximum = 99)]
    #[serde(default, deserialize_with = "allot_engine::wire::whole_option")]
    quantity: Option<u32>,
    /// At most 500 characters.
    #[schema(max_length = 500)]
    note: Option<String>,
}

/// Adds a product to the wishlist, or changes its quantity and note.
#[utoipa::path(put, path = "/me/wishlist/{product_id}", tag = "wishlist",
    params(("product_id" = String, Path)),
    request_body = WishRequest,
    responses(
        (status = 200, body = WishItemJson),
        (status = 404, description = "`product_not_found`", body = Problem),
        (status = 422, description = "`invalid_wishlist_item`", body = Problem),
    ))]
async fn put_wishlist_item(
    Ready(engine): Ready,
    caller: Authenticated,
    ProductPath(product): ProductPath,
    ApiJson(body): ApiJson<WishRequest>,
) -> Result<Json<WishItemJson>, Problem> {
    let (item, ticket) = engine.put_wishlist_item(
        caller.user,
        product,
        body.quantity.unwrap_or(1),
        body.note.unwrap_or_default(),
    )?;
    ticket.durable().await?;
    let view = engine.product(product);
    Ok(Json(wish_item_json(&item, view.as_ref())))
}

/// Removes a product from the wishlist (204 also when it was not there).
#[utoipa::path(delete, path = "/me/wishlist/{product_id}", tag = "wishlist",
    params(("product_id" = String, Path)),
    responses((status = 204)))]
async fn delete_wishlist_item(
    Ready(engine): Ready,
    caller: Authenticated,
    MaybeProductPath(product): MaybeProductPath,
) -> Result<StatusCode, Problem> {
    if let Some(product) = product
        && let Some(ticket) = engine.remove_wishlist_item(caller.user, product)?
    {
        ticket.durable().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use allot_engine::{ProductId, StockCounts};

    use super::*;

    fn event(status: ProductStatus, available: u64, change: u64) -> StockEvent {
        let counts = StockCounts {
            available,
            reserved: 0,
            sold: 0,
        };
        StockEvent::new(ProductId(3), counts, status, 1_800_000_000_000, change)
    }

    fn text(frames: &[Bytes]) -> Vec<String> {
        frames
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn frames_announce_changes_openings_closings_and_keep_quiet_streams_alive() {
        let upcoming = event(ProductStatus::Upcoming, 5, 0);
        let first = text(&stream_frames(None, &upcoming));
        assert_eq!(first.len(), 1);
        assert!(
            first[0].starts_with("event: stock\ndata: {\"product_id\":\"prd_3\",\"remaining\":5,"),
            "{first:?}"
        );
        assert!(first[0].ends_with("}\n\n"), "{first:?}");

        let beat = text(&stream_frames(Some(&upcoming), &upcoming));
        assert_eq!(beat, vec![":\n\n"]);

        let on_sale = event(ProductStatus::OnSale, 5, 1);
        let opened = text(&stream_frames(Some(&upcoming), &on_sale));
        assert_eq!(opened.len(), 2);
        assert!(opened[0].starts_with("event: sale_opened\n"), "{opened:?}");
        assert!(opened[1].starts_with("event: stock\n"), "{opened:?}");

        let closed = event(ProductStatus::Closed, 4, 2);
        let frames = text(&stream_frames(Some(&on_sale), &closed));
        assert!(frames[0].starts_with("event: sale_closed\n"), "{frames:?}");
        assert!(frames[1].contains("\"remaining\":4"), "{frames:?}");
    }
}
