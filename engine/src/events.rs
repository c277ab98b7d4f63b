//! Domain events: the log's order and catalog records, as consumers outside the engine read
//! them (`GET /admin/events`, the email notifier). Each event is named by the sequence number of
//! the record it comes from, so an event id is stable across restarts.
//!
//! The log's batches are pruned once a snapshot covers them, so events are kept in their own
//! sled tree: the writer inserts a batch's events together with the batch, before the flush
//! that makes both durable, and opening the directory re-derives the events of the replayed
//! tail and drops any past the last durable record. Readers see events only up to the log's
//! durable sequence number.

use crate::clock::Millis;
use crate::ids::{OrderId, ProductId};
use crate::record::{CatalogRecord, OrderRecord, Record, Seq};

/// Most events one read answers.
pub const PAGE_MAX: usize = 1_000;

/// What happened; the names are the API's event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    OrderPlaced,
    PaymentRequested,
    OrderPaid,
    PaymentFailed,
    PaymentTimedOut,
    OrderExpired,
    OrderCancelled,
    OrderShipped,
    OrderDelivered,
    ReturnRequested,
    OrderReturned,
    OrderRefunded,
    ProductCreated,
    ProductUpdated,
    ReturnWindowClosed,
}

/// Each kind's stored code is its place here: new kinds go at the end.
const KINDS: [EventKind; 15] = [
    EventKind::OrderPlaced,
    EventKind::PaymentRequested,
    EventKind::OrderPaid,
    EventKind::PaymentFailed,
    EventKind::PaymentTimedOut,
    EventKind::OrderExpired,
    EventKind::OrderCancelled,
    EventKind::OrderShipped,
    EventKind::OrderDelivered,
    EventKind::ReturnRequested,
    EventKind::OrderReturned,
    EventKind::OrderRefunded,
    EventKind::ProductCreated,
    EventKind::ProductUpdated,
    EventKind::ReturnWindowClosed,
];

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::OrderPlaced => "OrderPlaced",
            EventKind::PaymentRequested => "PaymentRequested",
            EventKind::OrderPaid => "OrderPaid",
            EventKind::PaymentFailed => "PaymentFailed",
            EventKind::PaymentTimedOut => "PaymentTimedOut",
            EventKind::OrderExpired => "OrderExpired",
            EventKind::OrderCancelled => "OrderCancelled",
            EventKind::OrderShipped => "OrderShipped",
            EventKind::OrderDelivered => "OrderDelivered",
            EventKind::ReturnRequested => "ReturnRequested",
            EventKind::OrderReturned => "OrderReturned",
            EventKind::OrderRefunded => "OrderRefunded",
            EventKind::ProductCreated => "ProductCreated",
            EventKind::ProductUpdated => "ProductUpdated",
            EventKind::ReturnWindowClosed => "ReturnWindowClosed",
        }
    }

    fn code(self) -> u8 {
        KINDS.iter().position(|k| *k == self).unwrap_or_default() as u8
    }

    fn from_code(code: u8) -> Option<Self> {
        KINDS.get(usize::from(code)).copied()
    }
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Order(OrderId),
    Product(ProductId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The sequence number of the record: the event's id and the consumers' offset.
    pub seq: Seq,
    pub kind: EventKind,
    pub subject: Subject,
    pub at_ms: Millis,
}

/// The event a record stands for, if it is a domain event.
pub fn event_of(seq: Seq, record: &Record) -> Option<Event> {
    let (kind, subject, at_ms) = match record {
        Record::Order(order) => order_event(order),
        Record::Catalog(catalog) => match catalog.as_ref() {
            CatalogRecord::ProductCreated {
                product,
                created_ms,
                ..
            } => (
                EventKind::ProductCreated,
                Subject::Product(*product),
                *created_ms,
            ),
            CatalogRecord::ProductVersioned { product, at_ms, .. } => (
                EventKind::ProductUpdated,
                Subject::Product(*product),
                *at_ms,
            ),
            _ => return None,
        },
        _ => return None,
    };
    Some(Event {
        seq,
        kind,
        subject,
        at_ms,
    })
}

fn order_event(record: &OrderRecord) -> (EventKind, Subject, Millis) {
    let (kind, order, at_ms) = match record {
        OrderRecord::OrderPlaced {
            order, created_ms, ..
        } => (EventKind::OrderPlaced, order, created_ms),
        OrderRecord::PaymentRequested { order, at_ms, .. } => {
            (EventKind::PaymentRequested, order, at_ms)
        }
        OrderRecord::PaymentSucceeded { order, at_ms, .. } => (EventKind::OrderPaid, order, at_ms),
        OrderRecord::PaymentFailed { order, at_ms, .. } => (EventKind::PaymentFailed, order, at_ms),
        OrderRecord::PaymentTimedOut { order, at_ms, .. } => {
            (EventKind::PaymentTimedOut, order, at_ms)
        }
        OrderRecord::OrderExpired { order, at_ms } => (EventKind::OrderExpired, order, at_ms),
        OrderRecord::OrderCancelled { order, at_ms, .. } => {
            (EventKind::OrderCancelled, order, at_ms)
        }
        OrderRecord::OrderShipped { order, at_ms, .. } => (EventKind::OrderShipped, order, at_ms),
        OrderRecord::OrderDelivered { order, at_ms } => (EventKind::OrderDelivered, order, at_ms),
        OrderRecord::ReturnRequested { order, at_ms, .. } => {
            (EventKind::ReturnRequested, order, at_ms)
        }
        OrderRecord::ReturnApproved { order, at_ms } => (EventKind::OrderReturned, order, at_ms),
        OrderRecord::RefundIssued { order, at_ms } => (EventKind::OrderRefunded, order, at_ms),
        OrderRecord::ReturnWindowClosed { order, at_ms } => {
            (EventKind::ReturnWindowClosed, order, at_ms)
        }
    };
    (kind, Subject::Order(*order), *at_ms)
}

// ----- storage: key = seq (big-endian), value = kind, subject kind, subject id, at -----------

const VALUE_BYTES: usize = 1 + 1 + 8 + 8;

pub(crate) fn key(seq: Seq) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn encode(event: &Event) -> [u8; VALUE_BYTES] {
    let (subject_kind, subject_id) = match event.subject {
        Subject::Order(id) => (0u8, id.0),
        Subject::Product(id) => (1u8, id.0),
    };
    let mut value = [0u8; VALUE_BYTES];
    value[0] = event.kind.code();
    value[1] = subject_kind;
    value[2..10].copy_from_slice(&subject_id.to_be_bytes());
    value[10..18].copy_from_slice(&event.at_ms.to_be_bytes());
    value
}

pub(crate) fn decode(key: &[u8], value: &[u8]) -> Option<Event> {
    let seq = Seq::from_be_bytes(key.try_into().ok()?);
    if value.len() != VALUE_BYTES {
        return None;
    }
    let kind = EventKind::from_code(value[0])?;
    let id = u64::from_be_bytes(value[2..10].try_into().ok()?);
    let subject = match value[1] {
        0 => Subject::Order(OrderId(id)),
        1 => Subject::Product(ProductId(id)),
        _ => return None,
    };
    let at_ms = Millis::from_be_bytes(value[10..18].try_into().ok()?);
    Some(Event {
        seq,
        kind,
        subject,
        at_ms,
    })
}

/// A sled batch inserting the events of the records `first_seq..`; `None` when there are none.
pub(crate) fn batch_for(first_seq: Seq, records: &[Record]) -> Option<sled::Batch> {
    let mut batch = None;
    for (offset, record) in records.iter().enumerate() {
        if let Some(event) = event_of(first_seq + offset as Seq, record) {
            batch
                .get_or_insert_with(sled::Batch::default)
                .insert(&key(event.seq), &encode(&event));
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_code_and_storage() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(EventKind::from_code(i as u8), Some(*kind));
            for subject in [Subject::Order(OrderId(7)), Subject::Product(ProductId(9))] {
                let event = Event {
                    seq: 42,
                    kind: *kind,
                    subject,
                    at_ms: 1_790_000_000_123,
                };
                assert_eq!(decode(&key(42), &encode(&event)), Some(event));
            }
        }
        assert_eq!(EventKind::from_code(KINDS.len() as u8), None);
        assert_eq!(decode(&key(1), &[0u8; 3]), None);
    }
}
