//! The domain event stream for external consumers: `GET /admin/events?after=<seq>&limit=`.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use allot_engine::{Engine, Event, Subject, rfc3339};

use super::Admin;
use crate::json::ApiQuery;
use crate::{AppState, Problem, Ready};

/// Events one read answers by default, and at most.
const EVENTS_DEFAULT: usize = 100;
const EVENTS_MAX: usize = allot_engine::EVENTS_PAGE_MAX;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// The last event seen (its `seq`); 0 or absent: from the oldest.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    after: Option<u64>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One domain event. `seq` is its id: stable and increasing. (Only if a damaged log tail is
/// cut at a restart are the numbers of the events cut with it given to later ones.)
#[derive(Serialize, ToSchema)]
struct EventJson {
    seq: u64,
    /// `OrderPlaced`, `PaymentRequested`, `OrderPaid`, `PaymentFailed`, `PaymentTimedOut`,
    /// `OrderExpired`, `OrderCancelled`, `OrderShipped`, `OrderDelivered`, `ReturnRequested`,
    /// `OrderReturned`, `OrderRefunded`, `ProductCreated`, `ProductUpdated`, `ReturnWindowClosed`.
    #[serde(rename = "type")]
    kind: &'static str,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    /// The order's customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct EventPage {
    items: Vec<EventJson>,
    /// Pass as `after` to read on; equal to the request's `after` when nothing new is there.
    next_after: u64,
}

/// The log's domain events after `after`, oldest first. Only durable events are shown; they
/// are kept when the log itself is compacted.
#[utoipa::path(get, path = "/admin/events", tag = "orders",
    params(EventsQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "`invalid_query`", body = Problem),
    ))]
async fn events(
    Ready(engine): Ready,
    _admin: Admin,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<EventPage>, Problem> {
    let after = query.after.unwrap_or(0);
    // The document says int64, as JSON clients read it; no event is numbered past that.
    if after > i64::MAX as u64 {
        return Err(Problem::invalid_query(format!(
            "after must be 0 to {}",
            i64::MAX
        )));
    }
    let limit = query.limit.unwrap_or(EVENTS_DEFAULT);
    if !(1..=EVENTS_MAX).contains(&limit) {
        return Err(Problem::invalid_query("limit must be 1 to 1000"));
    }
    let events = engine.events(after, limit)?;
    Ok(Json(EventPage {
        next_after: events.last().map_or(after, |e| e.seq),
        items: events.iter().map(|e| event_json(&engine, e)).collect(),
    }))
}

fn event_json(engine: &Engine, event: &Event) -> EventJson {
    let (order_id, user_id, product_id) = match event.subject {
        Subject::Order(id) => (
            Some(id.to_string()),
            engine.order_owner(id).map(|user| user.to_string()),
            None,
        ),
        Subject::Product(id) => (None, None, Some(id.to_string())),
    };
    EventJson {
        seq: event.seq,
        kind: event.kind.as_str(),
        at: rfc3339(event.at_ms),
        order_id,
        user_id,
        product_id,
    }
}
