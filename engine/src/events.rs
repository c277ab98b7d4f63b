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
    /// An order was placed: its units are held until its deadline.
    OrderPlaced,
    /// The provider is about to be asked to charge an attempt.
    PaymentRequested,
    /// The charge succeeded: the order is paid.
    OrderPaid,
    /// A payment attempt did not charge; the order stays payable until its deadline.
    PaymentFailed,
    /// The provider did not answer a payment attempt; it will be asked again.
    PaymentTimedOut,
    /// The deadline passed unpaid: the units are back on sale.
    OrderExpired,
    /// The order was cancelled before shipping (with a refund due if it was paid).
    OrderCancelled,
    /// The order was handed to a carrier.
    OrderShipped,
    /// The order was delivered.
    OrderDelivered,
    /// The customer asked to return a delivered order.
    ReturnRequested,
    /// The return was approved: the units are back on sale, a refund is due.
    OrderReturned,
    /// The provider refunded the order's charge.
    OrderRefunded,
    /// A product was created.
    ProductCreated,
    /// A product got a new version (details or sale window).
    ProductUpdated,
    /// A delivered order's return window passed with no return asked for.
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
    /// The kind's name, as the API shows it: the variant's name (`OrderPlaced`, …).
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
    /// An order's step.
    Order(OrderId),
    /// A product's creation or change.
    Product(ProductId),
}

/// One domain event: what happened, to what, and when, named by its record's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The sequence number of the record: the event's id and the consumers' offset.
    pub seq: Seq,
    /// What happened.
    pub kind: EventKind,
    /// The order or product it happened to.
    pub subject: Subject,
    /// When it happened (ms since the epoch), as the record says.
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

// ----- storage: one entry per log batch ----------------------------------------------------
//
// The events of one log batch are one sled entry, keyed by the sequence number of the batch's
// first event (big-endian); the value is `PACK_TAG`, then each event as its seq (8 bytes,
// big-endian), kind, subject kind, subject id (8, big-endian) and time (8, big-endian). sled
// keeps about 45 bytes of memory for every entry it stores (its leaves split at 16 entries), so
// one entry a batch instead of one an event is what keeps a long history of events small.
// An entry of a build before packs (one event, 18 bytes, keyed by its own seq) still reads.

const EVENT_BYTES: usize = 1 + 1 + 8 + 8;
const PACKED_BYTES: usize = 8 + EVENT_BYTES;
const PACK_TAG: u8 = b'P';

pub(crate) fn key(seq: Seq) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_of_key(key: &[u8]) -> Option<Seq> {
    Some(Seq::from_be_bytes(key.try_into().ok()?))
}

fn encode_event(event: &Event, out: &mut Vec<u8>) {
    let (subject_kind, subject_id) = match event.subject {
        Subject::Order(id) => (0u8, id.0),
        Subject::Product(id) => (1u8, id.0),
    };
    out.push(event.kind.code());
    out.push(subject_kind);
    out.extend_from_slice(&subject_id.to_be_bytes());
    out.extend_from_slice(&event.at_ms.to_be_bytes());
}

fn decode_event(seq: Seq, value: &[u8]) -> Option<Event> {
    if value.len() != EVENT_BYTES {
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

/// The value of an entry holding `events` (in order of their seq).
pub(crate) fn encode_entry(events: &[Event]) -> Vec<u8> {
    let mut value = Vec::with_capacity(1 + events.len() * PACKED_BYTES);
    value.push(PACK_TAG);
    for event in events {
        value.extend_from_slice(&event.seq.to_be_bytes());
        encode_event(event, &mut value);
    }
    value
}

/// The events of one entry, in order; `None` if it does not decode.
pub(crate) fn decode_entry(key: &[u8], value: &[u8]) -> Option<Vec<Event>> {
    match value.split_first() {
        Some((&PACK_TAG, packed)) if packed.len() % PACKED_BYTES == 0 => packed
            .chunks_exact(PACKED_BYTES)
            .map(|chunk| {
                let (seq, event) = chunk.split_at(8);
                decode_event(seq_of_key(seq)?, event)
            })
            .collect(),
        _ => Some(vec![decode_event(seq_of_key(key)?, value)?]),
    }
}

/// The events of the records `first_seq..` (one log batch), as the entry that stores them;
/// `None` when none of them is an event.
pub(crate) fn entry_for(first_seq: Seq, records: &[Record]) -> Option<([u8; 8], Vec<u8>)> {
    let events: Vec<Event> = records
        .iter()
        .enumerate()
        .filter_map(|(offset, record)| event_of(first_seq + offset as Seq, record))
        .collect();
    let first = events.first()?;
    Some((key(first.seq), encode_entry(&events)))
}

/// The stored events failed: the store, or an entry that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum StoredEventsError {
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("the events stored under {0:?} cannot be decoded")]
    Unreadable(sled::IVec),
}

impl From<StoredEventsError> for crate::error::OpenError {
    fn from(error: StoredEventsError) -> Self {
        match error {
            StoredEventsError::Storage(error) => crate::error::OpenError::Storage(error),
            unreadable => crate::error::OpenError::Corrupt(unreadable.to_string()),
        }
    }
}

/// The events tree, read and trimmed entry by entry.
#[derive(Clone, Debug)]
pub struct StoredEvents(pub(crate) sled::Tree);

impl StoredEvents {
    /// Puts the entry of one log batch (the writer's: nothing is stored past the log's end).
    pub(crate) fn insert(&self, (key, value): ([u8; 8], Vec<u8>)) -> Result<(), sled::Error> {
        self.0.insert(key, value).map(|_| ())
    }

    /// Puts the entry of one log batch again (an open re-deriving a replayed batch's events):
    /// entries an older build wrote one event at a time inside its range go, so each event is
    /// stored once.
    pub(crate) fn replace(
        &self,
        (key, value): ([u8; 8], Vec<u8>),
    ) -> Result<(), StoredEventsError> {
        let events = decode_entry(&key, &value)
            .ok_or_else(|| StoredEventsError::Unreadable(key.to_vec().into()))?;
        if let (Some(first), Some(last)) = (events.first(), events.last())
            && last.seq > first.seq
        {
            let inside: Vec<sled::IVec> = self
                .0
                .range(self::key(first.seq + 1)..=self::key(last.seq))
                .keys()
                .collect::<Result<_, _>>()?;
            for stale in inside {
                self.0.remove(stale)?;
            }
        }
        self.0.insert(key, value)?;
        Ok(())
    }

    /// The entries from the one that holds `seq` (or the first after it) onwards.
    fn entries_from(
        &self,
        seq: Seq,
    ) -> Result<impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + '_, sled::Error>
    {
        let start = match self.0.range(..=key(seq)).next_back().transpose()? {
            Some((at, _)) => at.to_vec(),
            None => key(seq).to_vec(),
        };
        Ok(self.0.range(start..))
    }

    /// Up to `limit` events after `after` and at most `upto`, oldest first.
    pub fn read(
        &self,
        after: Seq,
        upto: Seq,
        limit: usize,
    ) -> Result<Vec<Event>, StoredEventsError> {
        let mut found = Vec::with_capacity(limit.min(64));
        if after >= upto || limit == 0 {
            return Ok(found);
        }
        // Seqs only grow: an event at or below the last one found is a copy (an entry of an
        // older build next to the entry that holds it again) and is skipped.
        let mut last = after;
        for item in self.entries_from(after + 1)? {
            let (key, value) = item?;
            if seq_of_key(&key).is_some_and(|first| first > upto) {
                break;
            }
            let events = decode_entry(&key, &value).ok_or(StoredEventsError::Unreadable(key))?;
            for event in events {
                if event.seq <= last || event.seq > upto {
                    continue;
                }
                last = event.seq;
                found.push(event);
                if found.len() == limit {
                    return Ok(found);
                }
            }
        }
        Ok(found)
    }

    /// The event of record `seq`, if it has one.
    pub fn at(&self, seq: Seq) -> Result<Option<Event>, StoredEventsError> {
        let Some((key, value)) = self.0.range(..=key(seq)).next_back().transpose()? else {
            return Ok(None);
        };
        let events = decode_entry(&key, &value).ok_or(StoredEventsError::Unreadable(key))?;
        Ok(events.into_iter().find(|e| e.seq == seq))
    }

    /// Every entry's events in order (`None` for an entry that does not decode, with its key).
    pub fn entries(
        &self,
    ) -> impl Iterator<Item = Result<(sled::IVec, Option<Vec<Event>>), sled::Error>> + '_ {
        self.0.iter().map(|item| {
            let (key, value) = item?;
            let events = decode_entry(&key, &value);
            Ok((key, events))
        })
    }

    /// Removes every event after `seq` (of records that never became durable, or were cut);
    /// answers how many.
    pub fn truncate_after(&self, seq: Seq) -> Result<u64, StoredEventsError> {
        let mut removed = 0;
        let entries: Vec<(sled::IVec, sled::IVec)> =
            self.entries_from(seq)?.collect::<Result<_, _>>()?;
        for (key, value) in entries {
            let events = decode_entry(&key, &value)
                .ok_or_else(|| StoredEventsError::Unreadable(key.clone()))?;
            let kept: Vec<Event> = events.iter().filter(|e| e.seq <= seq).copied().collect();
            if kept.len() == events.len() {
                continue;
            }
            removed += (events.len() - kept.len()) as u64;
            if kept.is_empty() {
                self.0.remove(key)?;
            } else {
                self.0.insert(key, encode_entry(&kept))?;
            }
        }
        Ok(removed)
    }

    /// Retention: removes, oldest first, each entry all of whose events are of records before
    /// `before_seq` and either of a record at or before `by_count` or older than
    /// `older_than_ms`; stops at the first entry it keeps. Answers how many events went.
    pub fn prune(
        &self,
        before_seq: Seq,
        by_count: Seq,
        older_than_ms: Millis,
    ) -> Result<u64, sled::Error> {
        let mut pruned = 0;
        let mut batch = sled::Batch::default();
        for item in self.0.iter() {
            let (key, value) = item?;
            let Some(events) = decode_entry(&key, &value) else {
                break; // an unreadable entry is `db verify`'s to report, not retention's to drop
            };
            let goes =
                |e: &Event| e.seq < before_seq && (e.seq <= by_count || e.at_ms < older_than_ms);
            if !events.iter().all(goes) {
                break;
            }
            batch.remove(key);
            pruned += events.len() as u64;
        }
        if pruned > 0 {
            self.0.apply_batch(batch)?;
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: Seq, kind: EventKind, subject: Subject) -> Event {
        Event {
            seq,
            kind,
            subject,
            at_ms: 1_790_000_000_000 + seq,
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_code_and_storage() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(EventKind::from_code(i as u8), Some(*kind));
            for subject in [Subject::Order(OrderId(7)), Subject::Product(ProductId(9))] {
                let event = event(42, *kind, subject);
                assert_eq!(
                    decode_entry(&key(42), &encode_entry(&[event])),
                    Some(vec![event])
                );
                // As a build before packs stored it: one event under its own seq.
                let mut single = Vec::new();
                encode_event(&event, &mut single);
                assert_eq!(decode_entry(&key(42), &single), Some(vec![event]));
            }
        }
        assert_eq!(EventKind::from_code(KINDS.len() as u8), None);
        assert_eq!(decode_entry(&key(1), &[0u8; 3]), None);
        assert_eq!(decode_entry(&key(1), &[PACK_TAG, 0, 1]), None);
    }

    #[test]
    fn packed_entries_read_by_range_trim_and_prune_event_by_event() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let events = StoredEvents(db.open_tree("events").unwrap());
        let order = |seq| event(seq, EventKind::OrderPlaced, Subject::Order(OrderId(seq)));
        // Three batches: events 1, 3, 4 (a record without an event between); 10..=12; 20.
        for batch in [vec![1, 3, 4], vec![10, 11, 12], vec![20]] {
            let stored: Vec<Event> = batch.into_iter().map(order).collect();
            events
                .insert((key(stored[0].seq), encode_entry(&stored)))
                .unwrap();
        }
        let seqs = |found: Vec<Event>| found.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(events.read(0, 100, 100).unwrap()),
            [1, 3, 4, 10, 11, 12, 20]
        );
        assert_eq!(seqs(events.read(3, 100, 3).unwrap()), [4, 10, 11]);
        assert_eq!(seqs(events.read(10, 11, 100).unwrap()), [11]);
        assert_eq!(seqs(events.read(12, 19, 100).unwrap()), Vec::<Seq>::new());
        assert_eq!(events.at(11).unwrap(), Some(order(11)));
        assert_eq!(events.at(12).unwrap(), Some(order(12)));
        assert_eq!(events.at(2).unwrap(), None);

        // A cut at 11 keeps 11 and everything before it.
        assert_eq!(events.truncate_after(11).unwrap(), 2);
        assert_eq!(seqs(events.read(0, 100, 100).unwrap()), [1, 3, 4, 10, 11]);

        // Retention takes whole entries only: 1..=4 may go, 10 may but 11 may not.
        assert_eq!(events.prune(11, 10, 0).unwrap(), 3);
        assert_eq!(seqs(events.read(0, 100, 100).unwrap()), [10, 11]);
        // By age: every event is older than this.
        assert_eq!(events.prune(100, 0, u64::MAX).unwrap(), 2);
        assert!(events.0.is_empty());

        // Events an older build stored one an entry, packed again by an open's replay: each is
        // stored once.
        for seq in [30, 31, 33] {
            let mut single = Vec::new();
            encode_event(&order(seq), &mut single);
            events.0.insert(key(seq), single).unwrap();
        }
        assert_eq!(seqs(events.read(0, 100, 100).unwrap()), [30, 31, 33]);
        let packed: Vec<Event> = [30, 31, 33].into_iter().map(order).collect();
        events.replace((key(30), encode_entry(&packed))).unwrap();
        assert_eq!(events.0.len(), 1);
        assert_eq!(seqs(events.read(0, 100, 100).unwrap()), [30, 31, 33]);
    }
}
