//! Orders: placing (with Idempotency-Key), paying through the provider, cancelling, returning,
//! reading one's own orders; and their administration (ship, deliver, approve a return).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use allot_engine::clock::rfc3339;
use allot_engine::orders::{LineRequest, Order, OrderStatus, Placement};
use allot_engine::payment::Card;
use allot_engine::{EngineError, OrderId, Paid, ProductId};

use super::{Admin, Authenticated};
use crate::json::{ApiJson, ApiQuery};
use crate::{AppState, Problem, Ready};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(pay_order))
        .routes(routes!(cancel_order))
        .routes(routes!(return_order))
        .routes(routes!(admin_orders))
        .routes(routes!(ship_order))
        .routes(routes!(deliver_order))
        .routes(routes!(approve_return))
}

// ----- shapes ----------------------------------------------------------------------------

/// A shipping address; personal data, stored sealed like the profile.
#[derive(Serialize, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
struct Address {
    recipient: String,
    phone: String,
    line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line2: Option<String>,
    city: String,
    postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `KR`.
    country: String,
}

impl Address {
    fn validate(&self) -> Result<(), Problem> {
        let field = |text: &str, max: usize| !text.trim().is_empty() && text.chars().count() <= max;
        let ok = field(&self.recipient, 100)
            && field(&self.phone, 32)
            && field(&self.line1, 200)
            && self
                .line2
                .as_deref()
                .is_none_or(|l| l.chars().count() <= 200)
            && field(&self.city, 100)
            && field(&self.postal_code, 20)
            && self.country.len() == 2
            && self.country.bytes().all(|b| b.is_ascii_uppercase());
        if ok {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_address",
                "Invalid address",
                "recipient, phone, line1, city and postal_code are required (at most 100, 32, \
                 200, 100 and 20 characters) and country is an ISO 3166-1 alpha-2 code such as KR",
            ))
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OrderItemRequest {
    product_id: String,
    quantity: u32,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PlaceOrderRequest {
    items: Vec<OrderItemRequest>,
    shipping_address: Address,
}

#[derive(Serialize, ToSchema)]
struct OrderItemJson {
    product_id: String,
    product_version: u32,
    name: String,
    unit_price: u64,
    quantity: u32,
}

#[derive(Serialize, ToSchema)]
struct PaymentJson {
    /// `none`, `pending`, `failed`, `succeeded`, `refund_pending` or `refunded`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<&'static str>,
}

#[derive(Serialize, ToSchema)]
struct TrackingJson {
    carrier: String,
    tracking_number: String,
}

#[derive(Serialize, ToSchema)]
struct HistoryJson {
    status: &'static str,
    at: String,
}

#[derive(Serialize, ToSchema)]
struct OrderJson {
    id: String,
    status: &'static str,
    items: Vec<OrderItemJson>,
    total: u64,
    currency: String,
    #[schema(value_type = Object)]
    shipping_address: serde_json::Value,
    payment: PaymentJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracking: Option<TrackingJson>,
    history: Vec<HistoryJson>,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
struct OrderPage {
    items: Vec<OrderJson>,
    next_cursor: Option<String>,
}

fn order_json(engine: &allot_engine::Engine, order: &Order) -> OrderJson {
    let payment = if order.refunded {
        ("refunded", None)
    } else if order.refund_due {
        ("refund_pending", None)
    } else if order.paid_attempt.is_some() {
        ("succeeded", None)
    } else if order.payment_in_flight.is_some() {
        ("pending", None)
    } else if let Some(failure) = order.last_failure {
        ("failed", Some(failure.as_str()))
    } else {
        ("none", None)
    };
    let address = engine
        .shipping_address(order)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(serde_json::Value::Null);
    OrderJson {
        id: order.id.to_string(),
        status: order.status.as_str(),
        items: order
            .lines
            .iter()
            .map(|l| OrderItemJson {
                product_id: l.product.to_string(),
                product_version: l.version,
                name: l.name.clone(),
                unit_price: l.unit_price,
                quantity: l.quantity,
            })
            .collect(),
        total: order.total,
        currency: order.currency.clone(),
        shipping_address: address,
        payment: PaymentJson {
            status: payment.0,
            failure_reason: payment.1,
        },
        reservation_expires_at: order.status.is_unpaid().then(|| rfc3339(order.deadline_ms)),
        tracking: order
            .tracking
            .as_ref()
            .map(|(carrier, number)| TrackingJson {
                carrier: carrier.clone(),
                tracking_number: number.clone(),
            }),
        history: order
            .history
            .iter()
            .map(|(status, at)| HistoryJson {
                status: status.as_str(),
                at: rfc3339(*at),
            })
            .collect(),
        created_at: rfc3339(order.created_ms),
    }
}

fn order_id(text: &str) -> Result<OrderId, Problem> {
    text.parse::<OrderId>()
        .map_err(|_| Problem::from(EngineError::OrderNotFound(OrderId(0))))
}

/// The caller's own order as it is durably; anyone else's answers 404 as if it did not exist.
async fn own_order(
    engine: &allot_engine::Engine,
    caller: &Authenticated,
    id: &str,
) -> Result<Order, Problem> {
    let id = order_id(id)?;
    engine
        .read_order(id)
        .await?
        .filter(|o| o.user == caller.user)
        .ok_or_else(|| EngineError::OrderNotFound(id).into())
}

/// Runs blocking engine work (log waits, the provider) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| Problem::from(EngineError::LogFailed("a worker stopped".into())))?
        .map_err(Problem::from)
}

// ----- customers -------------------------------------------------------------------------

/// Places an order: every item's units are held at once (or none is) until
/// `reservation_expires_at`. The same Idempotency-Key with the same body answers the same order.
#[utoipa::path(post, path = "/orders", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 128 bytes, unique per intended order")),
    request_body = PlaceOrderRequest,
    responses(
        (status = 201, body = OrderJson),
        (status = 400, description = "`idempotency_key_required`", body = Problem),
        (status = 404, description = "`product_not_found`", body = Problem),
        (status = 409, description = "`sold_out`, `sale_not_open`, `sale_closed`, `purchase_limit_exceeded`, `idempotency_key_in_use`", body = Problem),
        (status = 422, description = "`invalid_quantity`, `invalid_order`, `invalid_address`, `idempotency_key_reused`", body = Problem),
    ))]
async fn place_order(
    State(state): State<AppState>,
    Ready(engine): Ready,
    caller: Authenticated,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PlaceOrderRequest>,
) -> Result<(StatusCode, Json<OrderJson>), Problem> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "idempotency_key_required",
                "Idempotency-Key required",
                "send an Idempotency-Key header (unique per intended order) to place an order",
            )
        })?
        .to_string();
    body.shipping_address.validate()?;
    let mut lines = Vec::with_capacity(body.items.len());
    for item in &body.items {
        let product = item
            .product_id
            .parse::<ProductId>()
            .map_err(|_| Problem::from(EngineError::ProductNotFound(ProductId(0))))?;
        lines.push(LineRequest {
            product,
            quantity: item.quantity,
        });
    }
    // Once a drop is sold out nearly every attempt is refused: answer those before the cost
    // of a placement. A key used before always goes on, to answer its order again.
    if let Some(refusal) = engine.certain_refusal(caller.user, &key, &lines) {
        return Err(refusal.into());
    }
    // The request as parsed, re-serialised: the same body in another spelling is the same.
    let fingerprint = serde_json::to_vec(&body).unwrap_or_default();
    let address = serde_json::to_string(&body.shipping_address).unwrap_or_default();
    let ttl = state.shared.config.reservation_ttl_ms;
    let placement = engine.place_order(caller.user, &key, &fingerprint, &lines, &address, ttl)?;
    let order = match placement {
        Placement::Placed(order, ticket) => {
            ticket.durable().await?;
            order
        }
        Placement::Replayed(order) => engine.read_order(order.id).await?.unwrap_or(order),
    };
    Ok((StatusCode::CREATED, Json(order_json(&engine, &order))))
}

#[derive(Deserialize, IntoParams)]
struct PageQuery {
    /// 1 to 100, default 20.
    limit: Option<usize>,
    cursor: Option<String>,
    /// Admin lists only: an order status.
    status: Option<String>,
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/orders", tag = "orders",
    security(("bearer" = []), ("cookie" = [])), params(PageQuery),
    responses((status = 200, body = OrderPage), (status = 401, description = "`unauthenticated`", body = Problem)))]
async fn list_orders(
    Ready(engine): Ready,
    caller: Authenticated,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<OrderPage>, Problem> {
    let (limit, before) = super::page_bounds::<OrderId>(query.limit, query.cursor.as_deref())?;
    let mut orders = engine
        .read_orders_of(caller.user, before, limit + 1)
        .await?;
    let next_cursor = super::next_page(&mut orders, limit, |o| o.id.to_string());
    Ok(Json(OrderPage {
        items: orders.iter().map(|o| order_json(&engine, o)).collect(),
        next_cursor,
    }))
}

/// One of the caller's orders; another user's order is 404.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    security(("bearer" = []), ("cookie" = [])), params(("id" = String, Path)),
    responses((status = 200, body = OrderJson), (status = 404, description = "`order_not_found`", body = Problem)))]
async fn get_order(
    Ready(engine): Ready,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<OrderJson>, Problem> {
    let order = own_order(&engine, &caller, &id).await?;
    Ok(Json(order_json(&engine, &order)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CardRequest {
    card_number: String,
    /// `MM/YY`.
    expiry: String,
    cvc: String,
}

/// Pays with the built-in payment simulator (see API.md's card table).
#[utoipa::path(post, path = "/orders/{id}/payment", tag = "orders",
    security(("bearer" = []), ("cookie" = [])), params(("id" = String, Path)),
    request_body = CardRequest,
    responses(
        (status = 200, body = OrderJson),
        (status = 402, description = "`payment_declined`, `card_limit_exceeded`", body = Problem),
        (status = 404, description = "`order_not_found`", body = Problem),
        (status = 409, description = "`order_expired`, `payment_in_progress`, `invalid_transition`", body = Problem),
        (status = 422, description = "`invalid_card`", body = Problem),
        (status = 504, description = "`payment_timeout`: the order stays payable; the answer is settled in the background", body = Problem),
    ))]
async fn pay_order(
    State(state): State<AppState>,
    Ready(engine): Ready,
    caller: Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CardRequest>,
) -> Result<Json<OrderJson>, Problem> {
    let order = own_order(&engine, &caller, &id).await?;
    let card =
        Card::parse(&body.card_number, &body.expiry, &body.cvc, engine.now_ms()).map_err(|e| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_card",
                "Invalid card",
                e.reason,
            )
        })?;
    let payments = state.payments()?;
    let paying = engine.clone();
    let paid = blocking(move || paying.pay_order(&payments, order.id, &card)).await?;
    match paid {
        Paid::Charged(order) => Ok(Json(order_json(&engine, &order))),
        Paid::Failed(_, reason) => {
            let (kind, title) = match reason {
                allot_engine::record::PaymentFailure::CardLimitExceeded => {
                    ("card_limit_exceeded", "Card limit exceeded")
                }
                _ => ("payment_declined", "Payment declined"),
            };
            Err(Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                kind,
                title,
                "the card was not charged; the order stays payable until reservation_expires_at",
            ))
        }
        Paid::TimedOut(_) => Err(Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "payment_timeout",
            "Payment timeout",
            "the payment provider did not answer; the payment is settled in the background and \
             the order stays payable until reservation_expires_at",
        )),
    }
}

/// Cancels an order before it ships: its units go back on sale; a paid order is refunded.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders",
    security(("bearer" = []), ("cookie" = [])), params(("id" = String, Path)),
    responses(
        (status = 200, body = OrderJson),
        (status = 404, description = "`order_not_found`", body = Problem),
        (status = 409, description = "`not_cancellable`, `payment_in_progress`", body = Problem),
    ))]
async fn cancel_order(
    State(state): State<AppState>,
    Ready(engine): Ready,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<OrderJson>, Problem> {
    let order = own_order(&engine, &caller, &id).await?;
    let (order, ticket) = engine.cancel_order(order.id)?;
    ticket.durable().await?;
    let order = settle_refund(&state, &engine, order).await?;
    Ok(Json(order_json(&engine, &order)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReturnRequest {
    /// At most 500 characters.
    reason: String,
}

/// Asks to return a delivered order within the return window.
#[utoipa::path(post, path = "/orders/{id}/return", tag = "orders",
    security(("bearer" = []), ("cookie" = [])), params(("id" = String, Path)),
    request_body = ReturnRequest,
    responses(
        (status = 200, body = OrderJson),
        (status = 404, description = "`order_not_found`", body = Problem),
        (status = 409, description = "`not_returnable`", body = Problem),
    ))]
async fn return_order(
    Ready(engine): Ready,
    caller: Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReturnRequest>,
) -> Result<Json<OrderJson>, Problem> {
    let order = own_order(&engine, &caller, &id).await?;
    if body.reason.chars().count() > 500 {
        return Err(EngineError::InvalidOrder("the reason is over 500 characters").into());
    }
    let (order, ticket) = engine.request_return(order.id, body.reason)?;
    ticket.durable().await?;
    Ok(Json(order_json(&engine, &order)))
}

/// Refunds at once when a refund is due; if the provider cannot be reached now, the
/// background resolver does it and the order shows `refund_pending` meanwhile.
async fn settle_refund(
    state: &AppState,
    engine: &allot_engine::Engine,
    order: Order,
) -> Result<Order, Problem> {
    if !order.refund_due || order.refunded {
        return Ok(order);
    }
    let payments = state.payments()?;
    let refunding = engine.clone();
    let id = order.id;
    Ok(blocking(move || refunding.refund_order(&payments, id))
        .await
        .unwrap_or(order))
}

// ----- administration ----------------------------------------------------------------------

/// All orders, newest first, optionally of one status.
#[utoipa::path(get, path = "/admin/orders", tag = "orders",
    security(("bearer" = []), ("cookie" = [])), params(PageQuery),
    responses((status = 200, body = OrderPage), (status = 403, description = "`forbidden`", body = Problem)))]
async fn admin_orders(
    Ready(engine): Ready,
    _admin: Admin,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<OrderPage>, Problem> {
    let (limit, before) = super::page_bounds::<OrderId>(query.limit, query.cursor.as_deref())?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            ALL_STATUSES
                .into_iter()
                .find(|st| st.as_str() == s)
                .ok_or_else(|| Problem::invalid_query("unknown status"))
        })
        .transpose()?;
    let mut orders = engine.read_all_orders(before, limit + 1, status).await?;
    let next_cursor = super::next_page(&mut orders, limit, |o| o.id.to_string());
    Ok(Json(OrderPage {
        items: orders.iter().map(|o| order_json(&engine, o)).collect(),
        next_cursor,
    }))
}

const ALL_STATUSES: [OrderStatus; 9] = [
    OrderStatus::PendingPayment,
    OrderStatus::PaymentFailed,
    OrderStatus::Paid,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
    OrderStatus::ReturnRequested,
    OrderStatus::Returned,
    OrderStatus::Expired,
    OrderStatus::Cancelled,
];

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ShipRequest {
    carrier: String,
    tracking_number: String,
}

/// Marks a paid order shipped.
#[utoipa::path(post, path = "/admin/orders/{id}/ship", tag = "orders",
    security(("bearer" = []), ("cookie" = [])), params(("id" = String, Path)),
    request_body = ShipRequest,
    responses(
        (status = 200, body = OrderJson),
        (status = 404, description = "`order_not_found`", body = Problem),
        (status = 409, description = "`invalid_transition`", body = Problem),
    ))]
async fn ship_order(
    Ready(engine): Ready,
    _admin: Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ShipRequest>,
) -> Result<Json<OrderJson>, Problem> {
    let id = order_id(&id)?;
    let valid = |t: &str| !t.trim().is_empty() && t.chars().count() <= 100;
    if !valid(&body.carrier) || !valid(&body.tracking_number) {
        return Err(EngineError::InvalidOrder(
            "carrier and tracking_number are 1 to 100 characters",
        )
        .into());
    }
    let (order, ticket) = engine.ship_order(id, body.carrier, body.tracking_number)?;
    ticket.durable().await?;
    Ok(Json(order_json(&engine, &order)))
}

/// Marks a shipped order delivered.
#[utoipa::path(post, path = "/admin/orders/{id}/deliver", tag = "orders",
    security(("bearer" = []), ("cookie" = [])), params(("id" = String, Path)),
    responses((status = 200, body = OrderJson), (status = 409, description = "`invalid_transition`", body = Problem)))]
async fn deliver_order(
    Ready(engine): Ready,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<OrderJson>, Problem> {
    let (order, ticket) = engine.deliver_order(order_id(&id)?)?;
    ticket.durable().await?;
    Ok(Json(order_json(&engine, &order)))
}

/// Accepts a return: the units go back on sale and the order is refunded.
#[utoipa::path(post, path = "/admin/orders/{id}/return/approve", tag = "orders",
    security(("bearer" = []), ("cookie" = [])), params(("id" = String, Path)),
    responses((status = 200, body = OrderJson), (status = 409, description = "`invalid_transition`", body = Problem)))]
async fn approve_return(
    State(state): State<AppState>,
    Ready(engine): Ready,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<OrderJson>, Problem> {
    let (order, ticket) = engine.approve_return(order_id(&id)?)?;
    ticket.durable().await?;
    let order = settle_refund(&state, &engine, order).await?;
    Ok(Json(order_json(&engine, &order)))
}
