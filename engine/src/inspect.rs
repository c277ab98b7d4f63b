//! Offline inspection of a data directory, for `allot db verify` and `allot db stats`: replays
//! the whole retained log from the oldest usable snapshot, checks every batch's checksum and
//! order, every record against the state it follows (no unit sold twice, no reservation released
//! twice), every newer snapshot against the replayed state, the invariants at the end, and the
//! cold tier against the log's orders folded again.
//! It changes nothing: a damaged tail is reported, not cut.

use std::collections::BTreeMap;
use std::path::Path;

use crate::progress::Progress;

use crate::config::EngineConfig;
use crate::error::OpenError;
use crate::ids::OrderId;
use crate::record::{Record, Seq};
use crate::state::{State, StateImage, check_invariants_of};
use crate::store::{BatchRead, DirLock, Store};

/// One stored snapshot, as an inspection found it.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    /// The last record the snapshot includes.
    pub seq: Seq,
    /// Its stored size in bytes (0 if it cannot be read).
    pub bytes: u64,
    /// Why it could not be used, if it could not.
    pub problem: Option<String>,
}

/// What `inspect` found in a data directory: the figures of `db stats` and the problems of
/// `db verify`.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Every stored snapshot, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// The snapshot the replay started from; `None` when it started from an empty state.
    pub replayed_from: Option<Seq>,
    /// The batches the log holds.
    pub log_batches: usize,
    /// The batches replayed after the starting snapshot.
    pub batches_replayed: u64,
    /// The records replayed after the starting snapshot.
    pub records_replayed: u64,
    /// Newer snapshots that were compared with the replayed state (and matched, unless a
    /// problem says otherwise).
    pub snapshots_compared: Vec<Seq>,
    /// The last record the replay applied: where the replayed state stands.
    pub last_seq: Seq,
    /// Replayed records whose event (or absence of one) was compared with the events tree.
    pub events_checked: u64,
    /// Events stored past the end of the log: written with a batch that a crash kept from
    /// becoming durable. Opening drops them; they are not a problem.
    pub events_past_end: u64,
    /// Events missing for records after the newest snapshot: a crash can keep a batch but not
    /// its events (they are two writes). Opening writes them again; they are not a problem.
    pub events_missing_after_snapshot: u64,
    /// The store's size on disk in bytes, as sled reports it (0 if it cannot tell).
    pub disk_bytes: u64,
    /// Snapshots an open could not use, set aside (tree `snapshots_refused`) and kept: not a
    /// problem of the directory, which recovered without them.
    pub snapshots_set_aside: Vec<Seq>,
    /// The cold tier compared with a fold of the replayed log.
    pub cold: ColdCheck,
    /// Everything found wrong, one sentence each; empty for a sound directory.
    pub problems: Vec<String>,
    /// The state at the end of the replay.
    pub image: StateImage,
}

impl Inspection {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Inspects the data directory at `data_dir` without changing its data (see the module docs).
/// Takes the directory's lock, so it fails with `OpenError::Locked` while an engine has it
/// open; a directory with no `store` in it is `OpenError::Corrupt`. Damage found in the data is
/// reported in `Inspection::problems`, not as an error. Reads every batch: for offline tools.
pub fn inspect(data_dir: &Path) -> Result<Inspection, OpenError> {
    inspect_with(data_dir, &crate::progress::Silent)
}

/// [`inspect`], telling `progress` how far the replay of the log has come (in batches).
pub fn inspect_with(data_dir: &Path, progress: &dyn Progress) -> Result<Inspection, OpenError> {
    if !data_dir.join("store").is_dir() {
        return Err(OpenError::Corrupt(format!(
            "{} is not an allot data directory",
            data_dir.display()
        )));
    }
    let _lock = DirLock::acquire(data_dir)?;
    let store = Store::open(&EngineConfig::new(data_dir))?;
    let mut problems = Vec::new();

    let mut snapshots: Vec<(SnapshotInfo, Option<StateImage>)> = store
        .snapshot_seqs()?
        .into_iter()
        .rev()
        .map(|seq| {
            let read = store
                .read_snapshot(seq)
                .map_err(|e| e.to_string())
                .and_then(|image| {
                    let broken = check_invariants_of(&image);
                    if broken.is_empty() {
                        Ok(image)
                    } else {
                        Err(broken.join("; "))
                    }
                });
            let info = SnapshotInfo {
                seq,
                bytes: store.snapshot_bytes(seq),
                problem: read.as_ref().err().cloned(),
            };
            (info, read.ok())
        })
        .collect();
    for (info, _) in &snapshots {
        if let Some(problem) = &info.problem {
            problems.push(format!("snapshot {}: {problem}", info.seq));
        }
    }

    // Start from the oldest usable snapshot that the log continues from, to check the most;
    // failing that, the newest usable one (a missing stretch of log is reported below).
    let (first_key, log_batches) = store.log_extent()?;
    let usable = || snapshots.iter().filter(|(_, image)| image.is_some());
    let base = usable()
        .find(|(info, _)| first_key.is_none_or(|k| k <= info.seq + 1))
        .or_else(|| usable().next_back());
    let (state, replayed_from) = match base {
        Some((info, Some(image))) => (
            State::from_image(image).map_err(|p| OpenError::Corrupt(p.join("; ")))?,
            Some(info.seq),
        ),
        _ => (State::new(), None),
    };
    if let Some(k) = first_key
        && k > state.seq() + 1
    {
        problems.push(format!(
            "the log starts at {k} but no usable snapshot reaches {}",
            k - 1
        ));
    }

    let mut batches_replayed = 0;
    let mut records_replayed = 0;
    let mut events = EventCheck {
        // What opening replays, and so writes the events of again.
        rewritten_after: usable().next().map_or(0, |(info, _)| info.seq),
        ..EventCheck::default()
    };
    let mut cold = ColdFold::new(&state);
    let mut snapshots_compared = Vec::new();
    snapshots.retain(|(info, image)| image.is_some() && info.seq > state.seq());
    let mut pending = snapshots.into_iter().peekable();
    progress.start("replaying the log (batches)", log_batches as u64);
    'batches: for read in store.batches_from(state.seq() + 1) {
        progress.advance(1);
        match read {
            BatchRead::Good { first_seq, records } => {
                for (offset, record) in records.iter().enumerate() {
                    let seq = first_seq + offset as Seq;
                    if seq <= state.seq() {
                        continue;
                    }
                    if let Err(error) = state.apply(seq, record) {
                        problems.push(format!("record {seq} cannot be applied: {}", error.reason));
                        break 'batches;
                    }
                    records_replayed += 1;
                    events.compare(&store, seq, record)?;
                    cold.fold(seq, record);
                }
                batches_replayed += 1;
                while let Some((info, image)) = pending.next_if(|(i, _)| i.seq <= state.seq()) {
                    if info.seq == state.seq() {
                        if image.as_ref() != Some(&state.image()) {
                            problems.push(format!(
                                "snapshot {} differs from the replayed log",
                                info.seq
                            ));
                        }
                        snapshots_compared.push(info.seq);
                    }
                }
            }
            BatchRead::Defect { key, reason } => {
                let fate = if store.is_last_batch(key)? {
                    "it is the newest batch: opening cuts it as a torn write"
                } else {
                    "later batches follow: opening refuses the directory"
                };
                problems.push(format!("log batch {key}: {reason} ({fate})"));
                break;
            }
            BatchRead::Unreadable(reason) => {
                problems.push(format!("the log cannot be read: {reason}"));
                break;
            }
        }
    }
    for (info, _) in pending {
        problems.push(format!(
            "snapshot {} is beyond the end of the log at {}: a lost tail (the disk lost \
             acknowledged writes, or the log comes from an older copy than the snapshot)",
            info.seq,
            state.seq()
        ));
    }
    problems.extend(
        crate::recovery::lost_tail(&store, replayed_from, state.seq())?
            .into_iter()
            .map(|claim| format!("a lost tail: {claim}")),
    );
    problems.extend(events.problems());
    let newest_damaged = store
        .log
        .last()?
        .and_then(|(k, _)| crate::wal::batch::seq_of_key(&k))
        .is_some_and(|key| key > state.seq());
    if !newest_damaged && !store.needs_cold_seed()? {
        problems.extend(
            crate::recovery::cold_past_end(&store, state.seq())?
                .map(|claim| format!("a lost tail: {claim}")),
        );
    }
    let mut events_past_end = 0;
    for entry in store.events.entries() {
        match entry? {
            (_, Some(events)) => {
                events_past_end += events.iter().filter(|e| e.seq > state.seq()).count() as u64;
            }
            (key, None) => {
                problems.push(format!("the events tree holds an unreadable entry {key:?}"));
            }
        }
    }
    let image = state.image();
    problems.extend(check_invariants_of(&image));
    // A store of a build before the cold tier has none yet: opening it seeds one.
    let cold = if store.needs_cold_seed()? {
        ColdCheck::default()
    } else {
        cold.check(&store, &state, events.rewritten_after, &mut problems)?
    };
    Ok(Inspection {
        snapshots: store
            .snapshot_seqs()?
            .into_iter()
            .rev()
            .map(|seq| SnapshotInfo {
                seq,
                bytes: store.snapshot_bytes(seq),
                problem: store.read_snapshot(seq).err().map(|e| e.to_string()),
            })
            .collect(),
        replayed_from,
        log_batches,
        batches_replayed,
        records_replayed,
        snapshots_compared,
        last_seq: state.seq(),
        events_checked: events.checked,
        events_past_end,
        events_missing_after_snapshot: events.missing_after_snapshot,
        disk_bytes: store.size_on_disk(),
        snapshots_set_aside: store.refused_snapshot_seqs()?,
        cold,
        problems,
        image,
    })
}

/// Compares each replayed record's event with the events tree, which the log writer fills
/// with the same batch: every event present and equal, none where a record has none.
#[derive(Default)]
struct EventCheck {
    rewritten_after: Seq,
    checked: u64,
    missing_after_snapshot: u64,
    mismatches: u64,
    first: Vec<String>,
}

impl EventCheck {
    /// Mismatches named one by one; the rest are counted.
    const NAMED_MAX: usize = 10;

    fn compare(&mut self, store: &Store, seq: Seq, record: &Record) -> Result<(), OpenError> {
        self.checked += 1;
        let expected = crate::events::event_of(seq, record);
        let stored = match store.events.at(seq) {
            Ok(stored) => Ok(stored),
            Err(crate::events::StoredEventsError::Storage(error)) => return Err(error.into()),
            Err(unreadable) => Err(unreadable.to_string()),
        };
        let agrees = match (&expected, &stored) {
            (Some(event), Ok(Some(found))) => event == found,
            (None, Ok(None)) => true,
            (Some(_), Ok(None)) if seq > self.rewritten_after => {
                self.missing_after_snapshot += 1;
                true
            }
            _ => false,
        };
        if !agrees {
            self.mismatches += 1;
            if self.first.len() < Self::NAMED_MAX {
                let found = match &stored {
                    Ok(Some(event)) => format!("{event:?}"),
                    Ok(None) => "none".to_string(),
                    Err(unreadable) => unreadable.clone(),
                };
                self.first.push(format!(
                    "event {seq}: the log makes it {}, the events tree holds {found}",
                    expected.map_or("none".to_string(), |e| format!("{e:?}")),
                ));
            }
        }
        Ok(())
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = self.first.clone();
        let unnamed = self.mismatches - self.first.len() as u64;
        if unnamed > 0 {
            problems.push(format!("{unnamed} more event(s) disagree with the log"));
        }
        problems
    }
}

/// What `db verify` found in the cold tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColdCheck {
    /// Orders stored in the cold tier.
    pub orders: u64,
    /// Orders the replayed log folded and that were compared with the cold tier.
    pub compared: u64,
    /// Orders whose last records (after the newest snapshot) the cold tier does not hold yet:
    /// a crash kept a batch but not its fold. Opening folds them again; not a problem.
    pub behind_after_snapshot: u64,
    /// Orders folded past the log's end (a lost tail): opening puts them back as the log says.
    pub past_end: u64,
}

/// The log's order records folded the way the writer folds them, from the orders the replay
/// started with, to compare with the cold tier at the end.
struct ColdFold {
    orders: BTreeMap<OrderId, crate::cold::StoredOrder>,
    /// Records whose order neither the base state nor the log placed (already a replay error).
    unknown: u64,
}

impl ColdFold {
    fn new(base: &State) -> Self {
        let orders = base
            .hot_orders()
            .into_iter()
            .map(|order| {
                let stored = crate::cold::StoredOrder::new(base.seq(), order);
                (stored.order.id, stored)
            })
            .collect();
        Self { orders, unknown: 0 }
    }

    fn fold(&mut self, seq: Seq, record: &Record) {
        let Record::Order(record) = record else {
            return;
        };
        let id = record.order();
        match crate::cold::fold_record(self.orders.remove(&id), seq, record) {
            Some(stored) => {
                self.orders.insert(id, stored);
            }
            None => self.unknown += 1,
        }
    }

    fn check(
        self,
        store: &Store,
        state: &State,
        rewritten_after: Seq,
        problems: &mut Vec<String>,
    ) -> Result<ColdCheck, OpenError> {
        const NAMED_MAX: usize = 10;
        let mut named = 0;
        let mut unnamed = 0;
        let mut report = |problem: String, problems: &mut Vec<String>| {
            if named < NAMED_MAX {
                named += 1;
                problems.push(problem);
            } else {
                unnamed += 1;
            }
        };
        let mut check = ColdCheck::default();
        let end = state.seq();
        for (id, folded) in &self.orders {
            check.compared += 1;
            match store.cold.get(folded.order.user, *id)? {
                Some(stored)
                    if stored.order == folded.order
                        && stored.returns_closed == folded.returns_closed => {}
                Some(stored) if stored.seq < folded.seq && folded.seq > rewritten_after => {
                    check.behind_after_snapshot += 1;
                }
                None if folded.seq > rewritten_after => check.behind_after_snapshot += 1,
                Some(stored) if stored.seq > end => check.past_end += 1,
                Some(stored) => report(
                    format!(
                        "cold order {id} (at record {}) differs from the log's fold (at {})",
                        stored.seq, folded.seq
                    ),
                    problems,
                ),
                None => report(format!("cold tier lacks order {id}"), problems),
            }
        }
        let mut keyed = 0;
        for stored in store.cold.iter() {
            let stored = stored?;
            check.orders += 1;
            // Closed orders whose key entry is there (retention may have pruned others').
            keyed += u64::from(
                stored.closed()
                    && store.cold.order_of_key(&stored.order.idempotency)? == Some(stored.order.id),
            );
            if state.order_users.get(stored.order.id) != Some(stored.order.user)
                && stored.seq <= end
            {
                report(
                    format!("cold order {} is not in the map of users", stored.order.id),
                    problems,
                );
            }
            if !store.cold.indexed(&stored)? {
                report(
                    format!("cold order {} misses an index entry", stored.order.id),
                    problems,
                );
            }
            // Orders the log's fold touched were judged above.
            let judged = self.orders.contains_key(&stored.order.id);
            if stored.seq > end && !judged {
                check.past_end += 1;
            }
            if !judged && state.order(stored.order.id).is_none() && !stored.closed() {
                report(
                    format!(
                        "cold order {} is {} but the replayed state does not hold it live",
                        stored.order.id,
                        stored.order.status.as_str()
                    ),
                    problems,
                );
            }
        }
        let keys = store.cold.key_count() as u64;
        if keys != keyed {
            report(
                format!("the cold tier holds {keyed} closed orders' keys but {keys} key entries"),
                problems,
            );
        }
        let mapped = state.order_users.len() as u64;
        if mapped != check.orders {
            report(
                format!(
                    "the cold tier holds {} orders, the map of their users {mapped}",
                    check.orders
                ),
                problems,
            );
        }
        if self.unknown > 0 {
            report(
                format!("{} order records for orders never placed", self.unknown),
                problems,
            );
        }
        if unnamed > 0 {
            problems.push(format!("{unnamed} more cold tier problem(s)"));
        }
        Ok(check)
    }
}
