//! `allot`: serves the shop, administers a data directory offline, and drives load.

mod admin;
mod bench;
mod config;
mod db;
mod demo;
mod load;
mod progress;
mod remote;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

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
    /// How log lines are written to standard error: `text` for people, `json` (one object a
    /// line) for log shippers.
    #[arg(long, env = "ALLOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Whether a running server is ready (`GET /readyz`): exit 0 if it is, 1 if not (for a
    /// container's HEALTHCHECK, or a script waiting for a start).
    ///
    /// Example: allot ready --url http://127.0.0.1:8080
    Ready(ReadyArgs),
    /// Benchmarks against a shop: an open-loop drop with its invariants checked.
    ///
    /// Example: allot bench drop --rate 2000 --duration 10 --report drop.html
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Tools for tests: a purchase load against a data directory.
    #[command(subcommand, hide = true)]
    Debug(load::DebugCommand),
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (definition_before, serve) = definition();
    let file = match config::load_file(&serve, &args) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("allot: {error:#}");
            return ExitCode::from(2);
        }
    };
    // Anew if a file set variables: clap reads each flag's variable when the flag is defined.
    let (mut definition, serve) = if file.variables.is_empty() {
        (definition_before, serve)
    } else {
        definition()
    };
    let matches = match definition.try_get_matches_from_mut(&args) {
        Ok(matches) => matches,
        Err(error) => {
            if let Some(path) = &file.path
                && !file.variables.is_empty()
            {
                eprintln!(
                    "allot: settings from {} are read as their variables ({})",
                    path.display(),
                    file.variables.join(", ")
                );
            }
            error.exit();
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if let Command::Serve(args) = &cli.command
        && args.print_config
    {
        let serve_matches = matches
            .subcommand_matches("serve")
            .expect("the serve command was parsed");
        print!("{}", config::print(&serve, serve_matches, &file));
        return ExitCode::SUCCESS;
    }
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Db(command) => db::run(command),
        Command::Admin(command) => admin::run(command),
        Command::Bench(command) => bench::run(command),
        Command::Debug(command) => load::run(command),
        Command::Ready(args) => ready(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("allot: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command line's definition, built (global flags in place), and its `serve` command.
fn definition() -> (clap::Command, clap::Command) {
    let mut definition = Cli::command();
    definition.build();
    let serve = definition
        .find_subcommand("serve")
        .expect("allot has a serve command")
        .clone();
    (definition, serve)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALLOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

#[derive(clap::Args)]
struct ReadyArgs {
    /// The server's base URL.
    #[arg(long, env = "ALLOT_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// How long to wait for an answer, in seconds.
    #[arg(long, default_value_t = 5)]
    timeout_s: u64,
}

/// `allot ready`: the server's `/readyz`, said in one line.
fn ready(args: &ReadyArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/readyz", args.url.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(args.timeout_s))
            .build()?;
        let response = http.get(&url).send().await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        anyhow::Ok((status, body))
    });
    match answer {
        Ok((status, body)) if status.is_success() => {
            println!("ready at seq {}", body["last_seq"]);
            Ok(ExitCode::SUCCESS)
        }
        Ok((status, body)) => {
            println!(
                "not ready ({status}): {}",
                body["detail"].as_str().unwrap_or("no detail")
            );
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            println!("not ready: {url}: {error:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The `--data-dir` flag every command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct DataDirArg {
    /// The data directory (created on first start).
    #[arg(long, env = "ALLOT_DATA_DIR", default_value = DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
}
