//! Domain events: every order step is an event named by its record's sequence number, kept
//! when the log batches holding it are pruned, the same after a restart, and readable only once
//! durable; consumers' offsets survive restarts.

use std::sync::Arc;

use allot_engine::testkit::internals::open_sled;
use allot_engine::{
    Engine, EngineConfig, Event, EventKind, LineRequest, ManualClock, OrderId, PaymentOutcome,
    Placement, ProductId, Subject, UserId,
    testkit::{self, close_and_inspect, config, create, general, key_of, request, shipment},
};

const T0: u64 = 1_800_000_000_000;
const TTL: u64 = 600_000;

fn open(config: &EngineConfig) -> Engine {
    Engine::open(config.clone(), Arc::new(ManualClock::new(T0))).unwrap()
}

fn product(engine: &Engine) -> ProductId {
    create(engine, general("Canvas Tote", 39_000, 100))
}

fn place(engine: &Engine, user: u64, key: &str, product: ProductId) -> OrderId {
    let lines = [LineRequest {
        product,
        quantity: 1,
    }];
    match engine
        .place_order(UserId(user), &key_of(key), &request(&lines), TTL)
        .unwrap()
    {
        Placement::Placed(order, ticket) => {
            ticket.wait().unwrap();
            order.id
        }
        Placement::Replayed(order) => panic!("{} replayed", order.id),
    }
}

fn kinds(events: &[Event]) -> Vec<(EventKind, Subject)> {
    events.iter().map(|e| (e.kind, e.subject)).collect()
}

#[test]
fn order_steps_are_events_in_log_order_and_survive_pruning_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let engine = open(&config);
    let tote = product(&engine);
    let first = place(&engine, 1, "a", tote);
    testkit::pay(&engine, first, PaymentOutcome::Charged);
    let (_, ticket) = engine
        .ship_order(first, shipment("CJ Logistics", "6543-2109"))
        .unwrap();
    ticket.wait().unwrap();
    let second = place(&engine, 2, "b", tote);
    let (_, ticket) = engine.cancel_order(second).unwrap();
    ticket.wait().unwrap();

    let expected = vec![
        (EventKind::ProductCreated, Subject::Product(tote)),
        (EventKind::OrderPlaced, Subject::Order(first)),
        (EventKind::PaymentRequested, Subject::Order(first)),
        (EventKind::OrderPaid, Subject::Order(first)),
        (EventKind::OrderShipped, Subject::Order(first)),
        (EventKind::OrderPlaced, Subject::Order(second)),
        (EventKind::OrderCancelled, Subject::Order(second)),
    ];
    let all = engine.events(0, 100).unwrap();
    assert_eq!(kinds(&all), expected);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");
    assert!(all.iter().all(|e| e.seq <= engine.durable_seq()));
    assert!(all.iter().all(|e| e.at_ms == T0), "{all:?}");

    // Paging: `after` is the last seq seen.
    let page = engine.events(0, 3).unwrap();
    assert_eq!(page, all[..3]);
    let rest = engine.events(page[2].seq, 100).unwrap();
    assert_eq!(rest, all[3..]);
    assert!(engine.events(all[6].seq, 100).unwrap().is_empty());

    // Two snapshots: the batches the older covers are pruned, the events stay.
    engine.snapshot_now().unwrap();
    let third = place(&engine, 3, "c", tote);
    engine.snapshot_now().unwrap();
    assert!(
        engine
            .stats()
            .log_first_seq
            .is_some_and(|first| first > all[0].seq),
        "{:?}",
        engine.stats()
    );
    engine.save_consumer_offset("test", all[4].seq).unwrap();
    engine.close().unwrap();
    drop(engine);

    let engine = open(&config);
    let mut expected_after = all.clone();
    let reopened = engine.events(0, 100).unwrap();
    expected_after.push(*reopened.last().unwrap());
    assert_eq!(reopened, expected_after);
    assert_eq!(
        (reopened[7].kind, reopened[7].subject),
        (EventKind::OrderPlaced, Subject::Order(third))
    );
    assert_eq!(engine.consumer_offset("test").unwrap(), all[4].seq);
    assert_eq!(engine.consumer_offset("another").unwrap(), 0);

    // A consumer new to the directory starts at its end, and stays where it saved itself.
    assert_eq!(engine.start_consumer("test").unwrap(), all[4].seq);
    let end = engine.durable_seq();
    assert_eq!(engine.start_consumer("newcomer").unwrap(), end);
    place(&engine, 4, "d", tote);
    assert_eq!(engine.start_consumer("newcomer").unwrap(), end);
    assert_eq!(engine.events(end, 100).unwrap().len(), 1);
}

#[test]
fn a_cut_tail_takes_its_events_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let engine = open(&config);
    let tote = product(&engine);
    let kept = place(&engine, 1, "kept", tote);
    engine.close().unwrap();
    drop(engine);

    // The newest batch is damaged: reopening cuts it, and its event (written with it) goes.
    let engine = open(&config);
    let lost = place(&engine, 2, "lost", tote);
    assert_eq!(engine.events(0, 100).unwrap().len(), 3);
    let lost_seq = engine.durable_seq();
    engine.save_consumer_offset("test", lost_seq).unwrap();
    engine.close().unwrap();
    drop(engine);
    damage_newest_batch(dir.path());

    let engine = open(&config);
    assert!(engine.recovery_report().tail_cut.is_some());
    // A consumer that had read the cut event goes back to the end of the log, so it does not
    // skip the next event, which takes the cut one's number.
    assert_eq!(engine.consumer_offset("test").unwrap(), lost_seq - 1);
    assert_eq!(engine.durable_seq(), lost_seq - 1);
    let events = engine.events(0, 100).unwrap();
    assert_eq!(
        kinds(&events),
        vec![
            (EventKind::ProductCreated, Subject::Product(tote)),
            (EventKind::OrderPlaced, Subject::Order(kept)),
        ],
        "{lost} was cut"
    );
    // The next record reuses the cut seq: its event is the new one, not the cut one's.
    let again = place(&engine, 3, "again", tote);
    let events = engine.events(0, 100).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].subject, Subject::Order(again));
}

/// Flips a byte in the newest log batch's stored value.
fn damage_newest_batch(dir: &std::path::Path) {
    let db = open_sled(dir);
    let log = db.open_tree("log").unwrap();
    let (key, value) = log.last().unwrap().unwrap();
    let mut value = value.to_vec();
    let middle = value.len() / 2;
    value[middle] ^= 0xff;
    log.insert(key, value).unwrap();
    db.flush().unwrap();
}

#[test]
fn verify_compares_the_events_with_the_log_and_leaves_what_a_crash_leaves_to_opening() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let engine = open(&config);
    let tote = product(&engine);
    let first = place(&engine, 1, "first", tote);
    testkit::pay(&engine, first, PaymentOutcome::Charged);
    place(&engine, 2, "second", tote);
    let last = engine.durable_seq();
    let clean = close_and_inspect(engine, dir.path());
    assert_eq!(clean.events_checked, last);
    assert_eq!(clean.events_past_end, 0);

    // An event a crash left past the end of the log is no problem; opening drops it.
    let stored = |change: &dyn Fn(&sled::Tree)| {
        let db = open_sled(dir.path());
        change(&db.open_tree("events").unwrap());
        db.flush().unwrap();
    };
    let key = |seq: u64| seq.to_be_bytes();
    // The event of record `last` as a build before packed entries stored it, which still reads:
    // its 18 bytes alone, keyed by its seq. Its batch's entry is a tag, the seq, then those.
    let placed = {
        let db = open_sled(dir.path());
        let events = db.open_tree("events").unwrap();
        let packed = events.get(key(last)).unwrap().unwrap();
        assert_eq!((packed[0], packed.len()), (b'P', 1 + 8 + 18));
        sled::IVec::from(&packed[9..])
    };
    stored(&|events| {
        events.insert(key(last + 1), placed.clone()).unwrap();
    });
    let past = allot_engine::inspect(dir.path()).unwrap();
    assert!(past.is_clean(), "{:?}", past.problems);
    assert_eq!(past.events_past_end, 1);
    let engine = open(&config);
    assert_eq!(engine.events(0, 100).unwrap().len() as u64, last);
    engine.close().unwrap();
    drop(engine);
    assert_eq!(
        allot_engine::inspect(dir.path()).unwrap().events_past_end,
        0
    );

    // A crash can keep a batch but not its events (two writes): missing after the newest
    // snapshot, they are counted, and opening writes them again.
    stored(&|events| {
        events.remove(key(last)).unwrap();
    });
    let missing = allot_engine::inspect(dir.path()).unwrap();
    assert!(missing.is_clean(), "{:?}", missing.problems);
    assert_eq!(missing.events_missing_after_snapshot, 1);
    let engine = open(&config);
    engine.close().unwrap();
    drop(engine);
    let repaired = allot_engine::inspect(dir.path()).unwrap();
    assert!(repaired.is_clean(), "{:?}", repaired.problems);
    assert_eq!(repaired.events_missing_after_snapshot, 0);

    // An event other than the log's is named.
    stored(&|events| {
        events.insert(key(1), placed.clone()).unwrap();
        events.insert(key(2), placed.clone()).unwrap();
    });
    let damaged = allot_engine::inspect(dir.path()).unwrap();
    assert_eq!(damaged.problems.len(), 2, "{:?}", damaged.problems);
    for seq in [1, 2] {
        let found = format!("holds Event {{ seq: {seq}, kind: OrderPlaced");
        assert!(
            damaged
                .problems
                .iter()
                .any(|p| p.starts_with(&format!("event {seq}: ")) && p.contains(&found)),
            "event {seq} not named: {:?}",
            damaged.problems
        );
    }
    // And an entry nobody can read.
    stored(&|events| {
        events.insert(key(last), &b"garbage"[..]).unwrap();
    });
    let unreadable = allot_engine::inspect(dir.path()).unwrap();
    assert!(
        unreadable.problems.iter().any(|p| p.contains("unreadable")),
        "{:?}",
        unreadable.problems
    );
}

/// Retention: after a snapshot, events beyond the newest `events_kept_records` records, and those
/// older than `events_kept_ms`, go, but never one whose record the log still holds nor one a consumer
/// has not finished with; the log keeps `log_tail_kept_records` before the older snapshot.
#[test]
fn old_events_are_pruned_within_their_retention_and_the_log_keeps_its_tail() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        events_kept_records: 3,
        events_kept_ms: 60_000,
        log_tail_kept_records: 2,
        batch_records_max: 1,
        ..config(dir.path())
    };
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::open(config.clone(), clock.clone()).unwrap();
    let tote = product(&engine);
    for n in 0..4 {
        place(&engine, n, &format!("a{n}"), tote);
    }
    let old = engine.events(0, 100).unwrap();
    // The notifier has finished with all but the last two of these.
    let finished = old[old.len() - 3].seq;
    engine.save_consumer_offset("notifier", finished).unwrap();
    // Time passes: these are past their age now; the next ones are young.
    clock.advance_ms(120_000);
    for n in 0..4 {
        place(&engine, 10 + n, &format!("b{n}"), tote);
    }
    let first_snapshot = engine.snapshot_now().unwrap();
    place(&engine, 20, "c", tote);
    engine.snapshot_now().unwrap();
    let durable = engine.durable_seq();

    // The log keeps two records before the end of the older snapshot (one batch a record).
    let log_first = engine.stats().log_first_seq.unwrap();
    assert_eq!(
        log_first,
        first_snapshot - 1,
        "the older snapshot is at {first_snapshot}"
    );
    let seqs = |engine: &Engine| -> Vec<u64> {
        engine
            .events(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    // Old and finished with: gone. Old but not finished with (the last two): kept. Young: kept.
    let kept = seqs(&engine);
    assert!(kept.iter().all(|&seq| seq > finished), "{kept:?}");
    assert!(kept.contains(&old[old.len() - 2].seq) && kept.contains(&old[old.len() - 1].seq));
    assert_eq!(kept.len(), 2 + 4 + 1, "{kept:?}");

    // The consumer moves on. Now only the log's tail and the newest three records protect an
    // event: the old ones go, and of the young ones those before both.
    engine.save_consumer_offset("notifier", durable).unwrap();
    engine.snapshot_now().unwrap();
    let after = seqs(&engine);
    let protected_from = engine
        .stats()
        .log_first_seq
        .unwrap()
        .min(engine.durable_seq() - 3 + 1);
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|&seq| seq >= protected_from),
        "{after:?} from {protected_from}"
    );
    assert!(
        kept.iter()
            .filter(|&&seq| seq >= protected_from)
            .all(|seq| after.contains(seq)),
        "{after:?}"
    );
    engine.close().unwrap();
    drop(engine);
    let inspection = allot_engine::inspect(dir.path()).unwrap();
    assert!(inspection.is_clean(), "{:?}", inspection.problems);
}
