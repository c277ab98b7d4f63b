//! Orders: placing (with Idempotency-Key), paying through the provider, cancelling, returning,
//! reading one's own orders; and their administration (ship, deliver, approve a return).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use allot_engine::{
    AddressForm, Card, EngineError, Internal, Order, OrderError, OrderForm, OrderId, OrderRequest,
    OrderStatus, Paid, Placement, ReturnReason, Shipment, ShipmentForm, ShippingAddress, rfc3339,
};

use super::{Admin, Authenticated};
use crate::extract::{IdempotencyKeyHeader, OrderPath};
use crate::json::{ApiJson, ApiQuery};
use crate::problem::ProblemType;
use crate::{AppState, Problem, Ready};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(pay_order))
        .routes(routes!(cancel_order))
        .routes(routes!(return_order))
        .routes(routes!(admin_orders))
        .routes(routes!(admin_order))
        .routes(routes!(ship_order))
        .routes(routes!(deliver_order))
        .routes(routes!(approve_return))
}

// ----- shapes ----------------------------------------------------------------------------

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
    /// Null only for an order written by a tool without an address.
    #[schema(value_type = Option<AddressForm>)]
    shipping_address: Option<ShippingAddress>,
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
    let address = engine.shipping_address(order).ok().flatten();
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

/// The caller's own order as it is durably; anyone else's answers 404 as if it did not exist.
async fn own_order(
    engine: &allot_engine::Engine,
    caller: &Authenticated,
    id: OrderId,
) -> Result<Order, Problem> {
    engine
        .read_order(id)
        .await?
        .filter(|o| o.user == caller.user)
        .ok_or_else(|| OrderError::OrderNotFound(id).into())
}

/// Runs blocking engine work (log waits, the provider) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| Problem::from(EngineError::from(Internal::WorkerStopped)))?
        .map_err(Problem::from)
}

// ----- customers -------------------------------------------------------------------------

/// Places an order: every item's units are held at once (or none is) until
/// `reservation_expires_at`. The same Idempotency-Key with the same body answers the same order.
#[utoipa::path(post, path = "/orders", tag = "orders",
    params(("Idempotency-Key" = String, Header, description = "1 to 128 bytes, unique per intended order", min_length = 1, max_length = 128, pattern = "\\S")),
    request_body = OrderForm,
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
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(body): ApiJson<OrderForm>,
) -> Result<axum::response::Response, Problem> {
    let request = OrderRequest::try_from(body)?;
    // Once a drop is sold out nearly every attempt is refused: answer those before the cost
    // of a placement. A key used before always goes on, to answer its order again.
    if let Some(refusal) = engine.certain_refusal(caller.user, &key, request.lines()) {
        return Err(refusal.into());
    }
    let ttl = state.shared.config.reservation_ttl_ms;
    let (order, replayed) = match engine.place_order(caller.user, &key, &request, ttl)? {
        Placement::Placed(order, ticket) => {
            ticket.durable().await?;
            (order, false)
        }
        Placement::Replayed(order) => (engine.read_order(order.id).await?.unwrap_or(order), true),
    };
    let mut response = (StatusCode::CREATED, Json(order_json(&engine, &order))).into_response();
    if replayed {
        // Counted apart from new placements (`allot_placements_total{outcome="replayed"}`).
        response.extensions_mut().insert(crate::metrics::Replayed);
    }
    Ok(response)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page: orders older than this id.
    #[param(pattern = "^ord_(0|[1-9][0-9]*)$")]
    cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AdminPageQuery {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page: orders older than this id.
    #[param(pattern = "^ord_(0|[1-9][0-9]*)$")]
    cursor: Option<String>,
    /// Only orders in this status (the pattern is tied to [`ALL_STATUSES`] by a test).
    #[param(
        pattern = "^(pending_payment|payment_failed|paid|shipped|delivered|return_requested|returned|expired|cancelled)$"
    )]
    status: Option<String>,
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/orders", tag = "orders",
    params(PageQuery),
    responses((status = 200, body = OrderPage)))]
async fn list_orders(
    Ready(engine): Ready,
    caller: Authenticated,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<OrderPage>, Problem> {
    let (limit, before) = super::page_bounds(
        query.limit,
        query.cursor.as_deref(),
        OrderId::parse_position,
    )?;
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
    params(("id" = String, Path)),
    responses((status = 200, body = OrderJson), (status = 404, description = "`order_not_found`", body = Problem)))]
async fn get_order(
    Ready(engine): Ready,
    caller: Authenticated,
    OrderPath(id): OrderPath,
) -> Result<Json<OrderJson>, Problem> {
    let order = own_order(&engine, &caller, id).await?;
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
    params(("id" = String, Path)),
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
    OrderPath(id): OrderPath,
    ApiJson(body): ApiJson<CardRequest>,
) -> Result<Json<OrderJson>, Problem> {
    let order = own_order(&engine, &caller, id).await?;
    let card = Card::parse(&body.card_number, &body.expiry, &body.cvc, engine.now_ms())
        .map_err(|e| ProblemType::INVALID_CARD.with(e.reason))?;
    let payments = state.payments()?;
    let paying = engine.clone();
    let paid = blocking(move || paying.pay_order(&payments, order.id, &card)).await?;
    match paid {
        Paid::Charged(order) => Ok(Json(order_json(&engine, &order))),
        Paid::Failed(_, reason) => {
            let kind = match reason {
                allot_engine::PaymentFailure::CardLimitExceeded => ProblemType::CARD_LIMIT_EXCEEDED,
                _ => ProblemType::PAYMENT_DECLINED,
            };
            Err(kind.with(
                "the card was not charged; the order stays payable until reservation_expires_at",
            ))
        }
        Paid::TimedOut(_) => Err(ProblemType::PAYMENT_TIMEOUT.with(
            "the payment provider did not answer; the payment is settled in the background and \
             the order stays payable until reservation_expires_at",
        )),
    }
}

/// Cancels an order before it ships: its units go back on sale; a paid order is refunded.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = OrderJson),
        (status = 404, description = "`order_not_found`", body = Problem),
        (status = 409, description = "`not_cancellable`, `payment_in_progress`", body = Problem),
    ))]
async fn cancel_order(
    State(state): State<AppState>,
    Ready(engine): Ready,
    caller: Authenticated,
    OrderPath(id): OrderPath,
) -> Result<Json<OrderJson>, Problem> {
    let order = own_order(&engine, &caller, id).await?;
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
    params(("id" = String, Path)),
    request_body = ReturnRequest,
    responses(
        (status = 200, body = OrderJson),
        (status = 404, description = "`order_not_found`", body = Problem),
        (status = 409, description = "`not_returnable`", body = Problem),
    ))]
async fn return_order(
    Ready(engine): Ready,
    caller: Authenticated,
    OrderPath(id): OrderPath,
    ApiJson(body): ApiJson<ReturnRequest>,
) -> Result<Json<OrderJson>, Problem> {
    let order = own_order(&engine, &caller, id).await?;
    let reason = ReturnReason::try_from(body.reason).map_err(EngineError::from)?;
    let (order, ticket) = engine.request_return(order.id, reason)?;
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
    params(AdminPageQuery),
    responses((status = 200, body = OrderPage)))]
async fn admin_orders(
    Ready(engine): Ready,
    _admin: Admin,
    ApiQuery(query): ApiQuery<AdminPageQuery>,
) -> Result<Json<OrderPage>, Problem> {
    let (limit, before) = super::page_bounds(
        query.limit,
        query.cursor.as_deref(),
        OrderId::parse_position,
    )?;
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

/// Any customer's order, for the people who ship it.
#[utoipa::path(get, path = "/admin/orders/{id}", tag = "orders",
    params(("id" = String, Path)),
    responses((status = 200, body = OrderJson), (status = 404, description = "`order_not_found`", body = Problem)))]
async fn admin_order(
    Ready(engine): Ready,
    _admin: Admin,
    OrderPath(id): OrderPath,
) -> Result<Json<OrderJson>, Problem> {
    let order = engine
        .read_order(id)
        .await?
        .ok_or(OrderError::OrderNotFound(id))?;
    Ok(Json(order_json(&engine, &order)))
}

/// Marks a paid order shipped.
#[utoipa::path(post, path = "/admin/orders/{id}/ship", tag = "orders",
    params(("id" = String, Path)),
    request_body = ShipmentForm,
    responses(
        (status = 200, body = OrderJson),
        (status = 404, description = "`order_not_found`", body = Problem),
        (status = 409, description = "`invalid_transition`", body = Problem),
    ))]
async fn ship_order(
    Ready(engine): Ready,
    _admin: Admin,
    OrderPath(id): OrderPath,
    ApiJson(body): ApiJson<ShipmentForm>,
) -> Result<Json<OrderJson>, Problem> {
    let shipment = Shipment::try_from(body).map_err(EngineError::from)?;
    let (order, ticket) = engine.ship_order(id, shipment)?;
    ticket.durable().await?;
    Ok(Json(order_json(&engine, &order)))
}

/// Marks a shipped order delivered.
#[utoipa::path(post, path = "/admin/orders/{id}/deliver", tag = "orders",
    params(("id" = String, Path)),
    responses((status = 200, body = OrderJson), (status = 409, description = "`invalid_transition`", body = Problem)))]
async fn deliver_order(
    Ready(engine): Ready,
    _admin: Admin,
    OrderPath(id): OrderPath,
) -> Result<Json<OrderJson>, Problem> {
    let (order, ticket) = engine.deliver_order(id)?;
    ticket.durable().await?;
    Ok(Json(order_json(&engine, &order)))
}

/// Accepts a return: the units go back on sale and the order is refunded.
#[utoipa::path(post, path = "/admin/orders/{id}/return/approve", tag = "orders",
    params(("id" = String, Path)),
    responses((status = 200, body = OrderJson), (status = 409, description = "`invalid_transition`", body = Problem)))]
async fn approve_return(
    State(state): State<AppState>,
    Ready(engine): Ready,
    _admin: Admin,
    OrderPath(id): OrderPath,
) -> Result<Json<OrderJson>, Problem> {
    let (order, ticket) = engine.approve_return(id)?;
    ticket.durable().await?;
    let order = settle_refund(&state, &engine, order).await?;
    Ok(Json(order_json(&engine, &order)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_statuses_are_the_statuses() {
        let params = AdminPageQuery::into_params(|| None);
        let status = params
            .iter()
            .find(|p| p.name == "status")
            .map(|p| serde_json::to_value(p).expect("a parameter serialises"))
            .expect("the status parameter is documented");
        let names: Vec<&str> = ALL_STATUSES.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            status["schema"]["pattern"],
            format!("^({})$", names.join("|")),
        );
    }
}
