//! `allot debug load`: a purchase load against a data directory, for the crash test. Every
//! outcome is written to the acknowledgement file only AFTER its record is durable, one line
//! per outcome, so a test that kills this process can check that nothing acknowledged was lost:
//!
//! ```text
//! R <reservation> <sku> <user> <quantity>   reserved
//! C <reservation>                           committed (sold)
//! X <reservation>                           released by the customer
//! S <sku> <quantity>                        restocked
//! ```

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;

use allot_engine::{
    Engine, EngineConfig, EngineError, ReleaseReason, ReservationId, Sku, StockError, SystemClock,
    UserId,
};

use crate::DataDirArg;

/// SKUs the load buys from; the first two have a per-customer limit.
const LOAD_SKUS: u64 = 4;
const LOAD_STOCK: u32 = 300;
const LOAD_LIMIT: u32 = 2;
const LOAD_USERS: u64 = 40;

#[derive(Subcommand)]
pub enum DebugCommand {
    /// Buy, sell, cancel and restock at random until killed or `--seconds` pass.
    Load(LoadArgs),
}

#[derive(clap::Args)]
pub struct LoadArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// Where acknowledged outcomes are appended.
    #[arg(long)]
    acks: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 4)]
    threads: u64,
    /// Stop by itself after this long.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

pub fn run(command: DebugCommand) -> anyhow::Result<ExitCode> {
    let DebugCommand::Load(args) = command;
    let engine = Engine::open(
        EngineConfig::new(&args.data.data_dir),
        Arc::new(SystemClock::new()),
    )
    .context("opening the data directory")?;
    for n in 1..=LOAD_SKUS {
        let limit = (n <= 2).then_some(LOAD_LIMIT);
        match engine.create_sku(Sku(n), LOAD_STOCK, limit) {
            Ok(ticket) => ticket.wait()?,
            Err(EngineError::Stock(StockError::SkuExists(_))) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let acks = Arc::new(Mutex::new(
        File::options()
            .create(true)
            .append(true)
            .open(&args.acks)
            .context("opening the acknowledgement file")?,
    ));
    println!("ready");
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let workers: Vec<_> = (0..args.threads)
        .map(|t| {
            let (engine, acks) = (engine.clone(), acks.clone());
            let seed = args.seed.wrapping_mul(1_000).wrapping_add(t);
            std::thread::spawn(move || worker(&engine, &acks, seed, until))
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
    }
    engine.close()?;
    Ok(ExitCode::SUCCESS)
}

fn worker(engine: &Engine, acks: &Mutex<File>, seed: u64, until: Instant) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mine: Vec<ReservationId> = Vec::new();
    let ack = |line: String| -> anyhow::Result<()> {
        // One write per line on an O_APPEND file: lines from threads never interleave, and
        // what was written survives the process being killed.
        acks.lock()
            .map_err(|_| anyhow::anyhow!("ack file lock poisoned"))?
            .write_all(line.as_bytes())?;
        Ok(())
    };
    while Instant::now() < until {
        let roll = rng.random_range(0..100);
        if roll < 60 || mine.is_empty() {
            let user = UserId(rng.random_range(0..LOAD_USERS));
            let sku = Sku(rng.random_range(1..=LOAD_SKUS));
            let quantity = rng.random_range(1..=2);
            let ttl_ms = rng.random_range(100..2_000);
            if let Ok((id, ticket)) = engine.reserve(user, sku, quantity, ttl_ms) {
                ticket.wait()?;
                ack(format!("R {} {} {} {}\n", id.0, sku.0, user.0, quantity))?;
                mine.push(id);
            }
        } else if roll < 95 {
            let id = mine.swap_remove(rng.random_range(0..mine.len()));
            if roll < 85 {
                if let Ok(ticket) = engine.commit(id) {
                    ticket.wait()?;
                    ack(format!("C {}\n", id.0))?;
                }
            } else if let Ok(ticket) = engine.release(id, ReleaseReason::Cancelled) {
                ticket.wait()?;
                ack(format!("X {}\n", id.0))?;
            }
        } else {
            let sku = Sku(rng.random_range(1..=LOAD_SKUS));
            let quantity = rng.random_range(1..=5);
            if let Ok(ticket) = engine.restock(sku, quantity) {
                ticket.wait()?;
                ack(format!("S {} {}\n", sku.0, quantity))?;
            }
        }
    }
    Ok(())
}
