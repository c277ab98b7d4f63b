//! `allot admin …`: offline administration of a stopped server's data directory.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;

use allot_engine::{Email, Engine, EngineConfig, SystemClock, check_policy, hash_password};

use crate::DataDirArg;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an admin account, or promote an existing account to admin and set its password.
    CreateAdmin(CreateAdminArgs),
}

#[derive(clap::Args)]
pub struct CreateAdminArgs {
    #[arg(long)]
    email: String,
    /// The password (8+ characters with a letter, a digit and a special character). Prefer
    /// `ALLOT_ADMIN_PASSWORD` over the flag: flags show in the process list.
    #[arg(long, env = "ALLOT_ADMIN_PASSWORD", hide_env_values = true)]
    password: String,
    #[command(flatten)]
    data: DataDirArg,
}

pub fn run(command: AdminCommand) -> anyhow::Result<ExitCode> {
    let AdminCommand::CreateAdmin(args) = command;
    let Ok(email) = Email::parse(&args.email) else {
        bail!("{:?} is not a valid email address", args.email);
    };
    if let Err(weak) = check_policy(&args.password) {
        bail!("weak password: {weak}");
    }
    let engine = Engine::open(
        EngineConfig {
            run_expiry: false,
            ..EngineConfig::new(&args.data.data_dir)
        },
        Arc::new(SystemClock::new()),
    )
    .with_context(|| {
        format!(
            "opening {} (is the server stopped?)",
            args.data.data_dir.display()
        )
    })?;
    let (user, ticket) = engine.create_admin(&email, hash_password(&args.password))?;
    ticket.wait()?;
    engine.close()?;
    println!("{user} is an admin");
    Ok(ExitCode::SUCCESS)
}
