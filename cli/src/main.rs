//! `allot`: serves the shop, administers a data directory offline, and drives load.

mod admin;
mod db;
mod demo;
mod load;
mod remote;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Where `allot` keeps its state unless told otherwise: inside the checkout, git-ignored.
pub const DATA_DIR_DEFAULT: &str = "./data/db";

#[derive(Parser)]
#[command(
    name = "allot",
    version,
    about = "Sell limited-edition drops exactly and fast"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve(serve::ServeArgs),
    /// Offline maintenance of a data directory (the server must be stopped).
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Administration: products, drops and orders of a running server; offline, the first
    /// admin account.
    ///
    /// Example: allot admin login --email ops@example.com, then allot admin orders list
    /// --status paid
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Tools for tests: a purchase load against a data directory.
    #[command(subcommand, hide = true)]
    Debug(load::DebugCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Db(command) => db::run(command),
        Command::Admin(command) => admin::run(command),
        Command::Debug(command) => load::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("allot: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALLOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The `--data-dir` flag every command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct DataDirArg {
    /// The data directory (created on first start).
    #[arg(long, env = "ALLOT_DATA_DIR", default_value = DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
}
