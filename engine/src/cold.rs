//! The cold tier: orders as sled trees, materialised by the log writer in the same flush as the
//! batch whose records made them, so a tree entry is durable exactly when its record is.
//!
//! Three trees:
//! - `orders`: (user, order id), both 8 bytes big-endian → the sequence number of the last
//!   record folded into it (8 bytes, big-endian), then the order as rkyv. The composite key is
//!   the index a SQL design would add: a customer's orders are one range, read backwards for
//!   "newest first" (order ids grow with creation). A read by id alone finds the user in the
//!   hot tier's dense order → user map (4 bytes an order).
//! - `order_keys`: the keyed hash of (user, Idempotency-Key) → order id, for CLOSED orders: a
//!   live order's key is in memory, and moves here with the record that closes the order, so a
//!   placement costs one tree write (sled spends about 10 µs of CPU on each).
//! - `order_keys_by_close`: (when the order closed, 8 bytes big-endian; the key's hash) → order
//!   id: the retention index. A closed order's key answers it for `keys_kept_ms` after the close
//!   ([`Cold::prune_keys`], after each checkpoint); then the same key places a new order. sled
//!   keeps about 45 bytes of memory for every entry it stores, so keys kept for ever would cost
//!   memory for every order ever closed.
//!
//! The trees are a fold of the log and nothing else: each record is applied with the saga's one
//! mutation (`step`) to the stored order. The writer inserts a batch into the log BEFORE its
//! effects here, and sled keeps writes in order across a crash, so after a crash the cold tier
//! can be behind the log (the open folds the missing records again: [`Cold::redo`]) but never
//! ahead of it, except when the log itself loses its tail (a cut, a lost write): then
//! [`Cold::repair`] puts the orders back as the recovered hot tier says they are.

use std::collections::HashMap;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::clock::Millis;
use crate::ids::{OrderId, UserId};
use crate::orders::Order;
use crate::record::{Digest, OrderRecord, Record, Seq};

/// Where the cold tier keeps how far it has folded the log.
const MATERIALISED_KEY: &[u8] = b"cold_materialised_through";
/// Where it keeps the cut-off of the last pruning of keys: orders closed before it may have no
/// key entry any more.
const KEYS_PRUNED_KEY: &[u8] = b"cold_keys_pruned_before_ms";

/// Handles to the cold trees; cheap to clone.
#[derive(Clone, Debug)]
pub struct Cold {
    orders: sled::Tree,
    order_keys: sled::Tree,
    keys_by_close: sled::Tree,
    meta: sled::Tree,
}

/// Whose order an id is: the hot tier's map, as of the records folded so far.
pub type UserOf<'a> = &'a dyn Fn(OrderId) -> Option<UserId>;

/// An order as the cold tier holds it, with the last record folded into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    pub seq: Seq,
    pub order: Order,
    /// Delivered, and its return window closed (`ReturnWindowClosed`): the order itself stays
    /// as it was delivered.
    pub returns_closed: bool,
}

impl StoredOrder {
    /// An order as the record `seq` left it.
    pub fn new(seq: Seq, order: Order) -> Self {
        Self {
            seq,
            order,
            returns_closed: false,
        }
    }

    /// Closed for good: no rule lets it take another step.
    pub fn closed(&self) -> bool {
        self.returns_closed || crate::state::is_closed(&self.order)
    }
}

/// The top bit of a stored order's header: its return window closed. Sequence numbers stay
/// below it, and a value written before the flag existed has it clear.
const RETURNS_CLOSED_BIT: u64 = 1 << 63;

/// What a fold of the log did to the trees.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    pub records: u64,
    /// Records already in the trees (a redo after a crash meets these).
    pub skipped: u64,
    /// Records for an order the trees do not hold: a defect, reported.
    pub orphans: u64,
}

impl Cold {
    pub fn open(db: &sled::Db, meta: sled::Tree) -> Result<Self, sled::Error> {
        Ok(Self {
            orders: db.open_tree("orders")?,
            order_keys: db.open_tree("order_keys")?,
            keys_by_close: db.open_tree("order_keys_by_close")?,
            meta,
        })
    }

    // ----- reads -----------------------------------------------------------------------------

    pub fn get(&self, user: UserId, id: OrderId) -> Result<Option<StoredOrder>, ColdError> {
        self.orders
            .get(order_key(user, id))?
            .map(|value| decode(&value))
            .transpose()
    }

    /// The closed order an Idempotency-Key (as its keyed hash) placed.
    pub fn order_of_key(&self, key: &Digest) -> Result<Option<OrderId>, ColdError> {
        Ok(self
            .order_keys
            .get(key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(|b| OrderId(u64::from_be_bytes(b))))
    }

    /// A customer's orders, newest first, older than `before`; at most `limit`. A range read of
    /// the composite index: the same cost for a customer with 5 orders or 10,000.
    pub fn orders_of(
        &self,
        user: UserId,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<StoredOrder>, ColdError> {
        let start = order_key(user, OrderId(0));
        let end = order_key(user, before.unwrap_or(OrderId(u64::MAX)));
        self.orders
            .range(start..end)
            .values()
            .rev()
            .take(limit)
            .map(|value| decode(&value?))
            .collect()
    }

    /// Every stored order, by user then id (for `db verify`).
    pub fn iter(&self) -> impl Iterator<Item = Result<StoredOrder, ColdError>> + '_ {
        self.orders.iter().values().map(|value| decode(&value?))
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    /// The end of the last batch with order records the trees have folded (0 before the first).
    pub fn materialised_through(&self) -> Result<Seq, sled::Error> {
        Ok(self
            .meta
            .get(MATERIALISED_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, Seq::from_be_bytes))
    }

    /// Whether a closed order's key entry is as it should be: present, or pruned by retention
    /// (the order's last change of status is before the last pruning's cut-off). A live order's
    /// key is in memory.
    pub fn indexed(&self, stored: &StoredOrder) -> Result<bool, ColdError> {
        if !stored.closed() {
            return Ok(true);
        }
        match self.order_of_key(&stored.order.idempotency)? {
            Some(id) => Ok(id == stored.order.id),
            None => {
                let last_change = stored.order.history.last().map_or(0, |&(_, at)| at);
                Ok(last_change < self.keys_pruned_before()?)
            }
        }
    }

    /// The cut-off of the last pruning of keys (0 before the first).
    pub fn keys_pruned_before(&self) -> Result<Millis, sled::Error> {
        Ok(self
            .meta
            .get(KEYS_PRUNED_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, Millis::from_be_bytes))
    }

    /// Retention of keys: every closed order's key whose order closed before `closed_before_ms`
    /// goes, so the same Idempotency-Key places a new order. Not flushed (the caller's next
    /// flush, or a later pruning again, completes it). Answers how many went.
    pub fn prune_keys(&self, closed_before_ms: Millis) -> Result<u64, ColdError> {
        let mut pruned = 0;
        let due: Vec<(sled::IVec, sled::IVec)> = self
            .keys_by_close
            .range(..closed_before_ms.to_be_bytes())
            .collect::<Result<_, _>>()?;
        let mut keys = sled::Batch::default();
        let mut index = sled::Batch::default();
        for (entry, order) in &due {
            let digest = &entry[8..];
            // Only the entry of the order it names: a key taken back by a repair and closed
            // again later has an entry of its own, at its own close.
            if self.order_keys.get(digest)?.as_ref() == Some(order) {
                keys.remove(digest);
                pruned += 1;
            }
            index.remove(entry);
        }
        self.order_keys.apply_batch(keys)?;
        self.keys_by_close.apply_batch(index)?;
        if closed_before_ms > self.keys_pruned_before()? {
            self.meta
                .insert(KEYS_PRUNED_KEY, &closed_before_ms.to_be_bytes())?;
        }
        Ok(pruned)
    }

    /// How many key entries there are (one per closed order, but for those pruned).
    pub fn key_count(&self) -> usize {
        self.order_keys.len()
    }

    // ----- writes: by the log writer, and by the open ----------------------------------------

    /// Folds one batch of the log into the trees (not flushed: the writer's flush makes it
    /// durable with the batch). Records already folded are skipped, so a redo is harmless.
    pub fn fold(
        &self,
        first_seq: Seq,
        records: &[Record],
        user_of: UserOf<'_>,
    ) -> Result<Folded, ColdError> {
        // Each order the batch touches, and whether this fold changed it (a redo after a crash
        // meets orders the trees already hold as the batch left them: those are not written).
        let mut touched: HashMap<OrderId, (StoredOrder, bool)> = HashMap::new();
        // When each order the batch touches took its last step here (the close, for one that
        // closes: a closed order takes no later step).
        let mut last_at: HashMap<OrderId, Millis> = HashMap::new();
        let mut folded = Folded::default();
        for (offset, record) in records.iter().enumerate() {
            let Record::Order(record) = record else {
                continue;
            };
            let seq = first_seq + offset as Seq;
            let id = record.order();
            last_at.insert(id, record.at_ms());
            // An order placed in this very batch is not in the map yet during a redo.
            let user = user_of(id).or(match &**record {
                OrderRecord::OrderPlaced { user, .. } => Some(*user),
                _ => None,
            });
            let (known, changed) = match (touched.remove(&id), user) {
                (Some((known, changed)), _) => (Some(known), changed),
                (None, Some(user)) => (self.get(user, id)?, false),
                (None, None) => (None, false),
            };
            if let Some(stored) = known.as_ref().filter(|s| s.seq >= seq) {
                // Folded before (a redo after a crash); its key is written again below.
                touched.insert(id, (stored.clone(), changed));
                folded.skipped += 1;
                continue;
            }
            let Some(next) = fold_record(known, seq, record) else {
                tracing::error!(order = %id, seq, "a record for an order the cold tier does not hold");
                folded.orphans += 1;
                continue;
            };
            touched.insert(id, (next, true));
            folded.records += 1;
        }
        let mut orders = sled::Batch::default();
        let mut keys = sled::Batch::default();
        let mut index = sled::Batch::default();
        let mut written = 0;
        for (id, (stored, changed)) in &touched {
            if *changed {
                written += 1;
                orders.insert(&order_key(stored.order.user, *id), encode(stored)?);
            }
            // The key moves out of memory with the record that closes the order (a closed
            // order takes no later record, so this is that record's batch, or its redo).
            if stored.closed() {
                keys.insert(&stored.order.idempotency, &id.0.to_be_bytes());
                let closed_ms = last_at.get(id).copied().unwrap_or_default();
                index.insert(
                    &by_close_key(closed_ms, &stored.order.idempotency)[..],
                    &id.0.to_be_bytes(),
                );
            }
        }
        self.orders.apply_batch(orders)?;
        self.order_keys.apply_batch(keys)?;
        self.keys_by_close.apply_batch(index)?;
        // How far the trees hold the log's orders: only batches with orders move it, so past the
        // log's end it means orders the log lost.
        let last = first_seq + records.len().saturating_sub(1) as Seq;
        if written > 0 && last > self.materialised_through()? {
            self.meta.insert(MATERIALISED_KEY, &last.to_be_bytes())?;
        }
        Ok(folded)
    }

    /// Puts `order` in the trees as it is at `seq`, with its index entries (an upgrade from a
    /// store without a cold tier, and [`repair`](Self::repair)).
    pub fn put(&self, seq: Seq, order: &Order) -> Result<(), ColdError> {
        let stored = StoredOrder::new(seq, order.clone());
        self.orders
            .insert(order_key(order.user, order.id), encode(&stored)?)?;
        if stored.closed() {
            self.order_keys
                .insert(order.idempotency, &order.id.0.to_be_bytes())?;
            // Closed as of its last change of status, as far as the order itself tells.
            let closed_ms = order.history.last().map_or(0, |&(_, at)| at);
            self.keys_by_close.insert(
                by_close_key(closed_ms, &order.idempotency),
                &order.id.0.to_be_bytes(),
            )?;
        }
        Ok(())
    }

    /// Puts `orders` in the trees as they are at `seq` and notes the trees as folded through
    /// `seq`: the upgrade of a store whose snapshots held every order. Answers how many.
    pub fn seed(&self, seq: Seq, orders: &[Order]) -> Result<u64, ColdError> {
        for order in orders {
            self.put(seq, order)?;
        }
        self.meta.insert(MATERIALISED_KEY, &seq.to_be_bytes())?;
        Ok(orders.len() as u64)
    }

    /// After the log lost its tail (a damaged batch cut, writes the disk dropped), the trees may
    /// hold the effects of records that are gone. Every order folded past `end` is put back as
    /// the recovered hot tier holds it (`hot`), or removed if the hot tier does not know it: an
    /// order that is not live accepts no more records, so one folded past `end` and not live
    /// was placed by a lost record. Scans every order, but runs only after a loss.
    pub fn repair(
        &self,
        end: Seq,
        hot: impl Fn(OrderId) -> Option<Order>,
    ) -> Result<Repaired, ColdError> {
        let mut repaired = Repaired::default();
        if self.materialised_through()? <= end {
            return Ok(repaired);
        }
        let past: Vec<StoredOrder> = self
            .iter()
            .filter(|s| s.as_ref().map_or(true, |s| s.seq > end))
            .collect::<Result<_, _>>()?;
        for stored in past {
            match hot(stored.order.id) {
                Some(order) => {
                    // A key the lost records moved here goes back to memory with its order.
                    if !crate::state::is_closed(&order) {
                        self.order_keys.remove(order.idempotency)?;
                    }
                    self.put(end, &order)?;
                    repaired.restored += 1;
                }
                None => {
                    self.orders
                        .remove(order_key(stored.order.user, stored.order.id))?;
                    self.order_keys.remove(stored.order.idempotency)?;
                    repaired.removed += 1;
                }
            }
        }
        self.meta.insert(MATERIALISED_KEY, &end.to_be_bytes())?;
        Ok(repaired)
    }
}

/// The one rule of the fold: record `seq` applied to the order as it was (`None` before its
/// placement) with the saga's one mutation. `None` for a step of an order never placed.
pub(crate) fn fold_record(
    known: Option<StoredOrder>,
    seq: Seq,
    record: &OrderRecord,
) -> Option<StoredOrder> {
    match known {
        Some(mut stored) => {
            crate::state::step_order(&mut stored.order, record);
            stored.seq = seq;
            stored.returns_closed |= matches!(record, OrderRecord::ReturnWindowClosed { .. });
            Some(stored)
        }
        None => crate::state::order_placed(record).map(|order| StoredOrder::new(seq, order)),
    }
}

/// What [`Cold::repair`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    pub restored: u64,
    pub removed: u64,
}

/// The cold tier failed: the store, or a value that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("a stored order is damaged: {0}")]
    Damaged(String),
}

impl ColdError {
    fn bad(reason: impl Into<String>) -> Self {
        ColdError::Damaged(reason.into())
    }
}

fn by_close_key(closed_ms: Millis, key: &Digest) -> [u8; 40] {
    let mut entry = [0; 40];
    entry[..8].copy_from_slice(&closed_ms.to_be_bytes());
    entry[8..].copy_from_slice(key);
    entry
}

fn order_key(user: UserId, order: OrderId) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&user.0.to_be_bytes());
    key[8..].copy_from_slice(&order.0.to_be_bytes());
    key
}

fn encode(stored: &StoredOrder) -> Result<Vec<u8>, ColdError> {
    let payload = rkyv::to_bytes::<rancor::Error>(&stored.order)
        .map_err(|e| ColdError::bad(format!("{} cannot be encoded: {e}", stored.order.id)))?;
    let mut value = Vec::with_capacity(8 + payload.len());
    let flags = if stored.returns_closed {
        RETURNS_CLOSED_BIT
    } else {
        0
    };
    value.extend_from_slice(&(stored.seq | flags).to_be_bytes());
    value.extend_from_slice(&payload);
    Ok(value)
}

fn decode(value: &[u8]) -> Result<StoredOrder, ColdError> {
    let (seq, payload) = value
        .split_first_chunk::<8>()
        .ok_or_else(|| ColdError::bad("shorter than its header"))?;
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let order = rkyv::from_bytes::<Order, rancor::Error>(&aligned)
        .map_err(|e| ColdError::bad(format!("undecodable: {e}")))?;
    let header = Seq::from_be_bytes(*seq);
    Ok(StoredOrder {
        seq: header & !RETURNS_CLOSED_BIT,
        order,
        returns_closed: header & RETURNS_CLOSED_BIT != 0,
    })
}

impl From<ColdError> for crate::error::OpenError {
    fn from(error: ColdError) -> Self {
        match error {
            ColdError::Storage(error) => crate::error::OpenError::Storage(error),
            ColdError::Damaged(reason) => crate::error::OpenError::Corrupt(reason),
        }
    }
}

impl From<ColdError> for crate::error::EngineError {
    fn from(error: ColdError) -> Self {
        crate::error::Internal::ColdTier(error.to_string()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ProductId, ReservationId};
    use crate::orders::OrderStatus;
    use crate::record::{OrderLine, ReleaseReason};

    fn placed(order: u64, user: u64) -> Record {
        OrderRecord::OrderPlaced {
            order: OrderId(order),
            user: UserId(user),
            idempotency: [order as u8; 32],
            request: [0; 32],
            lines: vec![OrderLine {
                product: ProductId(1),
                version: 1,
                name: "tee".into(),
                unit_price: 100,
                quantity: 1,
                reservation: ReservationId(order),
            }],
            currency: "EUR".into(),
            shipping_address: vec![],
            deadline_ms: 1_000,
            created_ms: 10,
        }
        .into()
    }

    fn cold() -> (tempfile::TempDir, Cold) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let meta = db.open_tree("meta").unwrap();
        let cold = Cold::open(&db, meta).unwrap();
        (dir, cold)
    }

    #[test]
    fn a_fold_is_the_saga_applied_and_a_redo_changes_nothing() {
        let (_dir, cold) = cold();
        let batch = vec![
            placed(1, 7),
            placed(2, 7),
            OrderRecord::OrderExpired {
                order: OrderId(1),
                at_ms: 2_000,
            }
            .into(),
            Record::ReservationReleased {
                reservation: ReservationId(99),
                reason: ReleaseReason::Expired,
            },
        ];
        let user_of = |_: OrderId| Some(UserId(7));
        let folded = cold.fold(1, &batch, &user_of).unwrap();
        assert_eq!((folded.records, folded.skipped), (3, 0));
        let first = cold.get(UserId(7), OrderId(1)).unwrap().unwrap();
        assert_eq!((first.seq, first.order.status), (3, OrderStatus::Expired));
        assert_eq!(cold.materialised_through().unwrap(), 4);
        let again = cold.fold(1, &batch, &user_of).unwrap();
        assert_eq!((again.records, again.skipped), (0, 3));
        assert_eq!(cold.get(UserId(7), OrderId(1)).unwrap().unwrap(), first);
        let newest: Vec<u64> = cold
            .orders_of(UserId(7), None, 10)
            .unwrap()
            .iter()
            .map(|s| s.order.id.0)
            .collect();
        assert_eq!(newest, [2, 1]);
        let older: Vec<u64> = cold
            .orders_of(UserId(7), Some(OrderId(2)), 10)
            .unwrap()
            .iter()
            .map(|s| s.order.id.0)
            .collect();
        assert_eq!(older, [1]);
        assert!(cold.orders_of(UserId(8), None, 10).unwrap().is_empty());
        // The closed order's key moved to the tree; the live one's stays in memory.
        assert_eq!(cold.order_of_key(&[1; 32]).unwrap(), Some(OrderId(1)));
        assert_eq!(cold.order_of_key(&[2; 32]).unwrap(), None);
    }

    #[test]
    fn repair_takes_back_what_a_lost_tail_folded() {
        let (_dir, cold) = cold();
        let user_of = |_: OrderId| Some(UserId(7));
        cold.fold(1, &[placed(1, 7)], &user_of).unwrap();
        let kept = cold.get(UserId(7), OrderId(1)).unwrap().unwrap().order;
        cold.fold(
            2,
            &[
                OrderRecord::OrderCancelled {
                    order: OrderId(1),
                    refund: false,
                    at_ms: 20,
                }
                .into(),
                placed(2, 7),
            ],
            &user_of,
        )
        .unwrap();
        assert_eq!(cold.order_of_key(&[1; 32]).unwrap(), Some(OrderId(1)));
        // The log ends at 1 after the loss: order 1 is live as placed, order 2 never was.
        let repaired = cold
            .repair(1, |id| (id == OrderId(1)).then(|| kept.clone()))
            .unwrap();
        assert_eq!((repaired.restored, repaired.removed), (1, 1));
        assert_eq!(
            cold.get(UserId(7), OrderId(1)).unwrap().unwrap().order,
            kept
        );
        assert!(cold.get(UserId(7), OrderId(2)).unwrap().is_none());
        assert_eq!(cold.order_of_key(&[1; 32]).unwrap(), None);
        assert_eq!(cold.order_of_key(&[2; 32]).unwrap(), None);
        assert_eq!((cold.len(), cold.key_count()), (1, 0));
        assert_eq!(cold.materialised_through().unwrap(), 1);
    }
}
