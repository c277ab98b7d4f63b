//! `allot db …`: offline tools on a stopped server's data directory.

use std::process::ExitCode;
use std::sync::Arc;

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use allot_engine::{CopyReport, Engine, EngineConfig, SystemClock, inspect, inspect_with};

use crate::DataDirArg;

#[derive(Subcommand)]
pub enum DbCommand {
    /// Replay the log and check every invariant: checksums and order of every batch, no unit
    /// sold twice, no reservation released twice, stock conserved per SKU, snapshots and the
    /// domain events agreeing with the log. Exits 1 if anything is wrong.
    Verify(DbArgs),
    /// Print figures about the data directory.
    Stats(DbArgs),
    /// Write a snapshot now (recovery then replays only what comes after it).
    Snapshot(DbArgs),
    /// Copy the whole data directory (store, key file, mail, payment journal) to a new
    /// directory, then verify the copy. Exits 1 if the copy has problems (it is kept).
    /// Offline on a stopped server's directory, or with --url from a running server, which
    /// writes the copy on its own machine while it keeps selling.
    ///
    /// Example: allot db backup --to nightly-2026-12-24 --url http://127.0.0.1:8080
    Backup(BackupArgs),
    /// Replace the data directory with a copy of a backup, once the copy verifies clean and its
    /// key file reads. A non-empty data directory is replaced only with --force, and is moved
    /// aside (`<dir>.before-restore-<ms>`), never deleted.
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// The directory to write the backup to; it must not exist. With --url, the backup's
    /// name in the server's backup directory (`allot serve --backup-dir`).
    #[arg(long)]
    to: PathBuf,
    /// Take the backup online, from the server at this URL (an admin's session of `allot
    /// admin login`, or --token): the server writes it on its own machine.
    #[arg(long)]
    url: Option<String>,
    /// An admin's access token, with --url.
    #[arg(long, env = "ALLOT_TOKEN", hide_env_values = true, requires = "url")]
    token: Option<String>,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// The backup to restore (a directory `allot db backup` wrote).
    #[arg(long)]
    from: PathBuf,
    /// Replace a data directory that is not empty (it is moved aside).
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct DbArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Verify(args) => verify(&args),
        DbCommand::Stats(args) => stats(&args),
        DbCommand::Snapshot(args) => snapshot(&args),
        DbCommand::Backup(args) => backup(&args),
        DbCommand::Restore(args) => restore(&args),
    }
}

fn verify(args: &DbArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.data.data_dir;
    let inspection = {
        let bar = crate::progress::Bar::new();
        inspect_with(dir, &bar).with_context(|| format!("reading {}", dir.display()))?
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "clean": inspection.is_clean(),
                "problems": inspection.problems,
                "last_seq": inspection.last_seq,
                "records_replayed": inspection.records_replayed,
                "replayed_from_snapshot": inspection.replayed_from,
                "snapshots_compared": inspection.snapshots_compared,
                "events_checked": inspection.events_checked,
                "events_past_end": inspection.events_past_end,
                "events_missing_after_snapshot": inspection.events_missing_after_snapshot,
                "snapshots_set_aside": inspection.snapshots_set_aside,
                "cold": {
                    "orders": inspection.cold.orders,
                    "compared": inspection.cold.compared,
                    "behind_after_snapshot": inspection.cold.behind_after_snapshot,
                    "past_end": inspection.cold.past_end,
                },
            })
        );
    } else {
        println!(
            "replayed {} record(s) in {} batch(es) from {}, up to seq {}",
            inspection.records_replayed,
            inspection.batches_replayed,
            inspection
                .replayed_from
                .map_or("the beginning".to_string(), |s| format!("snapshot {s}")),
            inspection.last_seq
        );
        for seq in &inspection.snapshots_compared {
            println!("snapshot {seq} agrees with the log");
        }
        for seq in &inspection.snapshots_set_aside {
            println!(
                "snapshot {seq} was set aside by an open that could not use it (kept in tree \
                 snapshots_refused; the directory recovered without it)"
            );
        }
        println!(
            "{} replayed record(s) compared with the events tree",
            inspection.events_checked
        );
        if inspection.events_past_end > 0 {
            println!(
                "{} event(s) past the end of the replayed log{}",
                inspection.events_past_end,
                if inspection.is_clean() {
                    ", from a batch a crash kept from becoming durable: opening drops them"
                } else {
                    ""
                }
            );
        }
        if inspection.events_missing_after_snapshot > 0 {
            println!(
                "{} event(s) missing after the newest snapshot, as a crash can leave them: opening writes them",
                inspection.events_missing_after_snapshot
            );
        }
        let cold = &inspection.cold;
        println!(
            "cold tier: {} order(s); {} compared with the log's fold",
            cold.orders, cold.compared
        );
        if cold.behind_after_snapshot > 0 {
            println!(
                "{} order(s) in the cold tier behind the log after the newest snapshot, as a \
                 crash can leave them: opening folds them again",
                cold.behind_after_snapshot
            );
        }
        if cold.past_end > 0 {
            println!(
                "{} order(s) in the cold tier past the end of the log: opening puts them back as \
                 the log says",
                cold.past_end
            );
        }
        for sku in &inspection.image.skus {
            println!(
                "{}: stock {} = available {} + reserved {} + sold {}",
                sku.sku, sku.stock_total, sku.available, sku.reserved, sku.sold
            );
        }
        for problem in &inspection.problems {
            println!("PROBLEM: {problem}");
        }
        println!(
            "{}",
            if inspection.is_clean() {
                "verify: clean"
            } else {
                "verify: FAILED"
            }
        );
    }
    Ok(if inspection.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn stats(args: &DbArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.data.data_dir;
    let inspection = inspect(dir).with_context(|| format!("reading {}", dir.display()))?;
    let image = &inspection.image;
    let active = image
        .reservations
        .iter()
        .filter(|r| r.closed.is_none())
        .count();
    let closed = image.reservations.len() - active;
    let units = |f: fn(&allot_engine::SkuImage) -> u64| -> u64 { image.skus.iter().map(f).sum() };
    let figures = serde_json::json!({
        "last_seq": inspection.last_seq,
        "log_batches": inspection.log_batches,
        "snapshots": inspection.snapshots.iter().map(|s| serde_json::json!({
            "seq": s.seq, "bytes": s.bytes, "problem": s.problem,
        })).collect::<Vec<_>>(),
        "skus": image.skus.len(),
        "units": {
            "stock_total": units(|s| s.stock_total),
            "available": units(|s| s.available),
            "reserved": units(|s| s.reserved),
            "sold": units(|s| s.sold),
        },
        "reservations": { "active": active, "closed": closed },
        "orders": {
            "hot": image.orders.len(),
            "cold": inspection.cold.orders,
        },
        "newest_snapshot_bytes": inspection.snapshots.last().map_or(0, |s| s.bytes),
        "disk_bytes": inspection.disk_bytes,
        "clean": inspection.is_clean(),
    });
    if args.json {
        println!("{figures}");
    } else {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn snapshot(args: &DbArgs) -> anyhow::Result<ExitCode> {
    let config = EngineConfig {
        run_expiry: false,
        ..EngineConfig::new(&args.data.data_dir)
    };
    let engine = Engine::open(config, Arc::new(SystemClock::new()))
        .with_context(|| format!("opening {}", args.data.data_dir.display()))?;
    let seq = engine.snapshot_now()?;
    engine.close()?;
    println!("snapshot written at seq {seq}");
    Ok(ExitCode::SUCCESS)
}

fn backup(args: &BackupArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.url {
        return online_backup(args, url);
    }
    let dir = &args.data.data_dir;
    let report = allot_engine::backup_with(dir, &args.to, &crate::progress::Bar::new())
        .with_context(|| format!("backing up {}", dir.display()))?;
    println!(
        "backed up {} to {}: {}",
        dir.display(),
        args.to.display(),
        summary(&report)
    );
    Ok(verdict(&report))
}

/// How long an online backup may take before the command gives up waiting (the server
/// finishes it regardless).
const BACKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6 * 60 * 60);

/// `db backup --url`: the server copies its own data directory (`POST /admin/backups`).
fn online_backup(args: &BackupArgs, url: &str) -> anyhow::Result<ExitCode> {
    let name = args.to.to_str().context("a backup's name is plain text")?;
    let remote = crate::remote::RemoteArgs {
        url: url.to_string(),
        token: args.token.clone(),
        json: false,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let mut client = crate::remote::Client::connect(&remote)?.patient(BACKUP_TIMEOUT);
        let body = serde_json::json!({ "name": name });
        client.post("/admin/backups", Some(&body)).await
    })?;
    println!(
        "backed up the shop at {url} to {}: {} entries, {} byte(s), up to seq {} in {} ms; verify: {}",
        report["path"].as_str().unwrap_or(name),
        report["entries"],
        report["bytes"],
        report["last_seq"],
        report["elapsed_ms"],
        if report["clean"] == true {
            "clean"
        } else {
            "FAILED"
        }
    );
    for problem in report["problems"].as_array().into_iter().flatten() {
        println!("PROBLEM: {}", problem.as_str().unwrap_or_default());
    }
    Ok(if report["clean"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn restore(args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.data.data_dir;
    let report =
        allot_engine::restore_with(&args.from, dir, args.force, &crate::progress::Bar::new())
            .with_context(|| format!("restoring {} into {}", args.from.display(), dir.display()))?;
    println!(
        "restored {} into {}: {}",
        args.from.display(),
        dir.display(),
        summary(&report)
    );
    if report.tail_cut {
        println!("the backup's torn newest batch was cut, as opening it would have");
    }
    if let Some(aside) = &report.moved_aside {
        println!("the directory it replaced is now {}", aside.display());
    }
    Ok(verdict(&report))
}

fn summary(report: &CopyReport) -> String {
    format!(
        "{} file(s), {} byte(s), up to seq {}; verify: {}",
        report.files,
        report.bytes,
        report.last_seq,
        if report.problems.is_empty() {
            "clean"
        } else {
            "FAILED"
        }
    )
}

fn verdict(report: &CopyReport) -> ExitCode {
    if let Some(error) = &report.unsynced {
        eprintln!("allot: warning: done, but the rename may not survive a power cut: {error}");
    }
    for problem in &report.problems {
        println!("PROBLEM: {problem}");
    }
    if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
