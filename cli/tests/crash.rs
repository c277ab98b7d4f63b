//! A child process runs a purchase load on a real data directory and is killed with SIGKILL at
//! a random moment, twice per seed; then the directory is reopened and every outcome the child
//! had acknowledged (written to a side file after its durable ack) must be there, and
//! `allot db verify` must pass.
//!
//! Seeds are random per run and printed; `ALLOT_CRASH_SEEDS=1,2,3` replays given ones.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use allot_engine::{
    Engine, EngineConfig, ManualClock, ReleaseReason, ReservationId, ReservationStatus, Sku,
};

mod support;

use support::{ALLOT, assert_db_verify, next, seeds, spawn_until_first_line};

/// Random seeds per run (printed; `ALLOT_CRASH_SEEDS` replays given ones).
const SEEDS: u64 = 3;
const KILLS_PER_SEED: u64 = 2;

fn run_and_kill(dir: &Path, acks: &Path, seed: u64, kill_after: Duration) {
    let (mut child, line) = spawn_until_first_line(
        Command::new(ALLOT)
            .args(["debug", "load", "--seconds", "60", "--threads", "4"])
            .arg("--data-dir")
            .arg(dir)
            .arg("--acks")
            .arg(acks)
            .arg("--seed")
            .arg(seed.to_string())
            .env("ALLOT_LOG", "warn"),
    );
    assert_eq!(line.trim(), "ready", "the load did not start");
    std::thread::sleep(kill_after);
    // std's kill() is SIGKILL on Unix: no destructor, no flush, no snapshot.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child ended before it was killed");
}

#[test]
fn acknowledged_outcomes_survive_sigkill() {
    for seed in seeds("ALLOT_CRASH_SEEDS", SEEDS) {
        println!("crash seed {seed} (rerun with ALLOT_CRASH_SEEDS={seed})");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("db");
        let mut rng = seed.max(1);
        let mut ack_files = Vec::new();
        for round in 0..KILLS_PER_SEED {
            let acks = dir.path().join(format!("acks-{round}"));
            let kill_after = Duration::from_millis(150 + next(&mut rng) % 900);
            run_and_kill(&data, &acks, seed * 10 + round, kill_after);
            ack_files.push(acks);
        }
        check_acknowledged(&data, &ack_files, seed);

        assert_db_verify(&data, &format!("seed {seed}"));
    }
}

fn check_acknowledged(data: &Path, ack_files: &[std::path::PathBuf], seed: u64) {
    // A clock at the epoch: the reopened engine expires nothing while we look.
    let engine = Engine::open(EngineConfig::new(data), Arc::new(ManualClock::new(0))).unwrap();
    let mut restocked: HashMap<u64, u32> = HashMap::new();
    let mut counted = 0;
    for file in ack_files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines() {
            let fields: Vec<u64> = line[2..].split(' ').map(|f| f.parse().unwrap()).collect();
            let status = |id: u64| {
                engine
                    .reservation(ReservationId(id))
                    .unwrap_or_else(|| panic!("seed {seed}: acknowledged rsv_{id} lost"))
                    .status
            };
            match &line[..1] {
                "R" => {
                    let reservation = engine.reservation(ReservationId(fields[0]));
                    let reservation = reservation
                        .unwrap_or_else(|| panic!("seed {seed}: acknowledged {line:?} lost"));
                    assert_eq!(
                        (reservation.sku.0, reservation.user.0, reservation.quantity),
                        (fields[1], fields[2], fields[3] as u32)
                    );
                }
                "C" => assert_eq!(
                    status(fields[0]),
                    ReservationStatus::Committed,
                    "seed {seed}: {line}"
                ),
                "X" => assert_eq!(
                    status(fields[0]),
                    ReservationStatus::Released(ReleaseReason::Cancelled),
                    "seed {seed}: {line}"
                ),
                "S" => *restocked.entry(fields[0]).or_default() += fields[1] as u32,
                other => panic!("unknown ack {other}"),
            }
            counted += 1;
        }
    }
    assert!(
        counted > 0,
        "seed {seed}: the child acknowledged nothing before it was killed"
    );
    let image = engine.image();
    for sku in &image.skus {
        let acked = restocked.get(&sku.sku.0).copied().unwrap_or(0);
        assert!(
            sku.stock_total >= 300 + u64::from(acked),
            "seed {seed}: {} lost an acknowledged restock",
            sku.sku
        );
        let counts = engine.stock(Sku(sku.sku.0)).unwrap();
        assert_eq!(counts.total(), sku.stock_total);
    }
    println!("seed {seed}: {counted} acknowledged outcomes all present");
    engine.close().unwrap();
}
