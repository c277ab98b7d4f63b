//! Rebuilding the state from disk: the newest readable snapshot, then the log's tail.

use std::time::{Duration, Instant};

use crate::cold::Repaired;
use crate::error::OpenError;
use crate::record::Seq;
use crate::state::State;
use crate::store::{BatchRead, SnapshotRefused, Store};

/// What an open found on disk and did to rebuild the state: shown by `allot db verify` and
/// logged at start, so an operator sees a cut tail or a refused snapshot.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// The snapshot the state was loaded from, if any.
    pub snapshot_seq: Option<Seq>,
    /// Snapshots that could not be used, and why.
    pub snapshots_refused: Vec<String>,
    /// Log batches applied after the snapshot.
    pub batches_replayed: u64,
    /// Records applied after the snapshot.
    pub records_replayed: u64,
    /// The last record in the recovered state.
    pub last_seq: Seq,
    /// A damaged tail the open removed, if any.
    pub tail_cut: Option<TailCut>,
    /// What a lost tail looks like: something durable claims records the log no longer holds
    /// (a consumer's offset or a snapshot past the log's end). Each entry says what and where.
    /// The open goes on from what the log and the snapshot hold; the claims are reported, loudly.
    pub lost_tail: Vec<String>,
    /// Records of the log's tail the cold tier did not hold yet, folded again on open.
    pub cold_folded: u64,
    /// What the cold tier held past the log's end, put back as the log says.
    pub cold_repaired: Repaired,
    /// Orders put in the cold tier from a snapshot of a build before it (an upgrade).
    pub cold_seeded: u64,
    /// How long the recovery took, snapshot load and replay together.
    pub elapsed: Duration,
}

/// A damaged tail found on open and removed: it was never applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    /// Key (first sequence number) of the first damaged batch.
    pub at_key: Seq,
    /// How many batches were removed from there to the end.
    pub batches_removed: usize,
    /// What is wrong with the first of them (a bad checksum, a record that does not decode).
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDefect {
    /// Opening for writing: cut the log at the first damaged batch.
    Cut,
    /// Reading only: stop there, change nothing.
    Stop,
}

/// Loads the newest snapshot that decodes and adds up, then replays the log after it.
pub fn recover(
    store: &Store,
    upto: Seq,
    on_defect: OnDefect,
) -> Result<(State, RecoveryReport), OpenError> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    let mut state = None;
    let mut refused = Vec::new();
    for seq in store.snapshot_seqs()? {
        let loaded = match store.read_snapshot(seq) {
            Ok(image) => State::from_image(&image).map_err(|p| p.join("; ")),
            Err(refused @ SnapshotRefused::UnknownFormat(_)) => {
                // Not damage: a newer allot wrote it, and the log may be pruned up to it.
                return Err(OpenError::Corrupt(format!(
                    "snapshot {seq}: {refused}; nothing was changed. Run the newer allot, or \
                     restore a backup this build wrote"
                )));
            }
            Err(SnapshotRefused::Unreadable(reason)) => Err(reason),
        };
        match loaded {
            Ok(loaded) => {
                report.snapshot_seq = Some(seq);
                state = Some(loaded);
                break;
            }
            Err(reason) => {
                tracing::warn!(seq, %reason, "snapshot refused");
                report
                    .snapshots_refused
                    .push(format!("snapshot {seq}: {reason}"));
                refused.push(seq);
            }
        }
    }
    let state = state.unwrap_or_else(State::new);
    // A snapshot of a build before the cold tier holds every order: they seed the cold tier
    // (when opening for writing), and from here on the hot tier holds the live ones only.
    let seed_cold = on_defect == OnDefect::Cut && store.needs_cold_seed()?;
    if seed_cold {
        report.cold_seeded = store.cold.seed(state.seq(), &state.hot_orders())?;
        tracing::info!(
            orders = report.cold_seeded,
            "cold tier seeded from the snapshot"
        );
    }
    state.evict_closed();
    let first_key = store.log_first_key()?;
    if let Some(first_key) = first_key
        && first_key > state.seq() + 1
    {
        return Err(OpenError::Corrupt(format!(
            "the log starts at {first_key} but the state only reaches {}; a snapshot is missing",
            state.seq()
        )));
    }
    replay(store, &state, upto, on_defect, &mut report)?;
    let cold_claim = cold_past_end(store, state.seq())?.filter(|_| report.tail_cut.is_none());
    if on_defect == OnDefect::Cut {
        // The tail of the log may have been folded into the cold tier before it was lost.
        let repaired = store.cold.repair(state.seq(), |id| state.order(id))?;
        if repaired != Repaired::default() {
            tracing::error!(
                restored = repaired.restored,
                removed = repaired.removed,
                "the cold tier held records the log no longer has; put back as the log says"
            );
        }
        report.cold_repaired = repaired;
    }
    if seed_cold {
        store.mark_current_format()?;
    }
    // Only now that the log is known to carry the state from the snapshot used (or from the
    // start) are the refused snapshots set aside, out of pruning's count. Never deleted: one may
    // hold what nothing else does, and a person may want it.
    if on_defect == OnDefect::Cut {
        for seq in refused {
            store.set_snapshot_aside(seq)?;
        }
    }
    if upto == Seq::MAX {
        report.lost_tail = lost_tail(store, report.snapshot_seq, state.seq())?;
        report.lost_tail.extend(cold_claim);
        for claim in &report.lost_tail {
            tracing::error!(%claim, "the log is shorter than what was durable before: a lost tail");
        }
    }
    if on_defect == OnDefect::Cut {
        // Events written with a batch that never became durable (or was cut) go too.
        store.events.truncate_after(state.seq())?;
        // A consumer past the cut would skip the records that take those numbers next.
        for (name, offset) in store.consumer_offsets()? {
            if offset > state.seq() {
                store.consumers.insert(name, &state.seq().to_be_bytes())?;
            }
        }
    }
    report.last_seq = state.seq();
    report.elapsed = started.elapsed();
    Ok((state, report))
}

/// Claims of durable state beyond the log's end: a consumer's offset, the newest snapshot. A
/// consumer only ever saves an offset the log had made durable, and a snapshot only covers
/// durable records, so either past the end means the disk lost writes it had acknowledged (or
/// the store was put back from an older copy than the rest).
/// `end` is the last record recovered; `snapshot_seq`, if given, the snapshot it started from.
pub fn lost_tail(
    store: &Store,
    snapshot_seq: Option<Seq>,
    end: Seq,
) -> Result<Vec<String>, OpenError> {
    let mut claims = Vec::new();
    if let Some(snapshot) = snapshot_seq
        && let Some(log_end) = store.log_last_seq()?
        && snapshot > log_end
    {
        claims.push(format!(
            "snapshot {snapshot} covers records up to {snapshot}, but the log ends at {log_end}: \
             records {}..={snapshot} are held by the snapshot only",
            log_end + 1
        ));
    }
    for (name, offset) in store.consumer_offsets()? {
        if offset > end {
            claims.push(format!(
                "consumer {:?} has finished with events up to {offset}, but the log ends at \
                 {end}: records {}..={offset} were durable once and are gone",
                String::from_utf8_lossy(&name),
                end + 1
            ));
        }
    }
    Ok(claims)
}

/// The claim of a cold tier folded past the log's end: the writer folds a batch only after
/// writing it to the log, so the log held those records once.
pub fn cold_past_end(store: &Store, end: Seq) -> Result<Option<String>, OpenError> {
    let through = store.cold.materialised_through()?;
    Ok((through > end).then(|| {
        format!(
            "the cold tier has folded records up to {through}, but the log ends at {end}: \
             records {}..={through} were in the log once and are gone",
            end + 1
        )
    }))
}

/// Applies the log's records after `state.seq()`, up to and including `upto`.
pub fn replay(
    store: &Store,
    state: &State,
    upto: Seq,
    on_defect: OnDefect,
    report: &mut RecoveryReport,
) -> Result<(), OpenError> {
    if state.seq() >= upto {
        return Ok(());
    }
    for read in store.batches_from(state.seq() + 1) {
        match read {
            BatchRead::Good { first_seq, records } => {
                // Opening for writing: the batch's events are written again, in case a crash
                // kept the batch but not them (they are keyed by seq, so this is idempotent).
                if on_defect == OnDefect::Cut
                    && let Some(events) = crate::events::entry_for(first_seq, &records)
                {
                    store.events.replace(events)?;
                }
                // And its orders folded again into the cold tier (records it holds are skipped).
                if on_defect == OnDefect::Cut {
                    let folded = store
                        .cold
                        .fold(first_seq, &records, &|id| state.order_users.get(id))?;
                    report.cold_folded += folded.records;
                }
                let mut applied = false;
                for (offset, record) in records.iter().enumerate() {
                    let seq = first_seq + offset as Seq;
                    if seq <= state.seq() {
                        continue;
                    }
                    if seq > upto {
                        return Ok(());
                    }
                    state
                        .apply(seq, record)
                        .map_err(|e| OpenError::Corrupt(e.to_string()))?;
                    report.records_replayed += 1;
                    applied = true;
                }
                report.batches_replayed += u64::from(applied);
                if state.seq() >= upto {
                    return Ok(());
                }
            }
            BatchRead::Unreadable(reason) => {
                return Err(OpenError::Corrupt(format!(
                    "the log cannot be read: {reason}; nothing was cut. Run `allot db verify`"
                )));
            }
            BatchRead::Defect { key, reason } => {
                if on_defect == OnDefect::Stop {
                    return Err(OpenError::Corrupt(format!("batch {key}: {reason}")));
                }
                // Only the newest batch can be torn by a crash. Damage with intact batches
                // after it is not a torn write, and cutting there would drop acknowledged,
                // durable records: refuse to open instead.
                if !store.is_last_batch(key)? {
                    return Err(OpenError::Corrupt(format!(
                        "log batch {key} is damaged ({reason}) and later batches follow; \
                         nothing was cut. Run `allot db verify` and restore from a backup"
                    )));
                }
                let batches_removed = store.cut_log_from(key)?;
                tracing::error!(
                    key,
                    %reason,
                    batches_removed,
                    "damaged log tail cut; its records were never applied"
                );
                report.tail_cut = Some(TailCut {
                    at_key: key,
                    batches_removed,
                    reason,
                });
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::config::EngineConfig;
    use crate::engine::Engine;
    use crate::orders::{OrderStatus, Placement};
    use crate::store::Store;
    use crate::testkit::{create, general, key_of, line, request};
    use crate::{ManualClock, UserId};

    /// A store of the format before the cold tier (its snapshot holds every order, and it has no
    /// cold trees) opens as the new format: the cold tier is seeded from the snapshot, the hot
    /// tier keeps the live orders only, and every order reads back.
    #[test]
    fn a_store_from_before_the_cold_tier_is_upgraded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let config = EngineConfig {
            snapshot_on_close: false,
            ..EngineConfig::new(dir.path())
        };
        let engine = Engine::open(config.clone(), clock.clone()).unwrap();
        let tee = create(&engine, general("tee", 100, 10));
        let lines = [line(tee, 1)];
        let mut orders = Vec::new();
        for key in ["a", "b", "c"] {
            let Placement::Placed(order, ticket) = engine
                .place_order(UserId(1), &key_of(key), &request(&lines), 60_000)
                .unwrap()
            else {
                panic!("replayed");
            };
            ticket.wait().unwrap();
            orders.push(order);
        }
        let (cancelled, ticket) = engine.cancel_order(orders[0].id).unwrap();
        ticket.wait().unwrap();
        let all: Vec<_> = engine.all_orders(None, 10, None);
        let mut image = engine.image();
        engine.close().unwrap();
        drop(engine);
        // What a build before the cold tier left: every order in the snapshot, no cold trees.
        image.orders = all.into_iter().rev().collect();
        {
            let store = Store::open(&config).unwrap();
            for tree in ["orders", "orders_by_user", "order_keys"] {
                store.db.drop_tree(tree).unwrap();
            }
            store.meta.remove("cold_materialised_through").unwrap();
            store.meta.insert("format", "allot-store-1").unwrap();
            store.write_snapshot(&image, 0).unwrap();
            store.flush().unwrap();
        }
        let engine = Engine::open(config.clone(), clock).unwrap();
        assert_eq!(engine.recovery_report().cold_seeded, 3);
        assert_eq!(engine.stats().live_orders, 2);
        assert_eq!(engine.order(cancelled.id), Some(cancelled.clone()));
        assert_eq!(
            engine.order(orders[2].id).unwrap().status,
            OrderStatus::PendingPayment
        );
        assert_eq!(engine.orders_of(UserId(1), None, 10).len(), 3);
        engine.close().unwrap();
        drop(engine);
        let store = Store::open(&config).unwrap();
        assert!(!store.needs_cold_seed().unwrap());
        drop(store);
        let inspection = crate::inspect(dir.path()).unwrap();
        assert!(inspection.is_clean(), "{:?}", inspection.problems);
    }
}
