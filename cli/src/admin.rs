//! `allot admin …`: the running shop's products, drops, orders and accounts over its HTTP API
//! ([`crate::remote`]), and offline, on a stopped server's data directory, the first admin.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;

use allot_engine::{Email, Engine, EngineConfig, SystemClock, check_policy, hash_password};

use crate::DataDirArg;
use crate::remote::{self, Client, RemoteArgs, catalog, orders, users};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Offline: create an admin account, or promote an existing account to admin and set its
    /// password (the server must be stopped).
    ///
    /// Example: ALLOT_ADMIN_PASSWORD='…' allot admin create-admin --email ops@example.com
    CreateAdmin(CreateAdminArgs),
    /// Log in to a running server as an admin; the session is kept for that URL in the user's
    /// config directory (0600) for the commands after.
    ///
    /// Example: allot admin login --url http://127.0.0.1:8080 --email ops@example.com
    Login(LoginArgs),
    /// End the stored session for a server.
    ///
    /// Example: allot admin logout --url http://127.0.0.1:8080
    Logout(LogoutArgs),
    /// The catalog of a running server.
    ///
    /// Example: allot admin products list
    Products {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: catalog::ProductsCommand,
    },
    /// Drops (limited products with a sale window) of a running server.
    ///
    /// Example: allot admin drops schedule --name "Sneaker 01" --price 129000 --stock 100
    /// --opens 2026-12-24T12:00:00Z --closes 2026-12-24T13:00:00Z --limit 1
    Drops {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: catalog::DropsCommand,
    },
    /// The orders of a running server.
    ///
    /// Example: allot admin orders list --status paid
    Orders {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: orders::OrdersCommand,
    },
    /// The accounts of a running server.
    ///
    /// Example: allot admin users disable spammer@example.com
    Users {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: users::UsersCommand,
    },
}

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The admin's email. The password is read from `ALLOT_ADMIN_PASSWORD`, else asked for
    /// on the terminal (not echoed).
    #[arg(long)]
    email: String,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    remote: RemoteArgs,
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
    if let AdminCommand::CreateAdmin(args) = command {
        return create_admin(args);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_online(command))?;
    Ok(ExitCode::SUCCESS)
}

/// The commands that talk to a running server.
async fn run_online(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateAdmin(_) => bail!("create-admin works offline, on the data directory"),
        AdminCommand::Login(args) => {
            let password = match std::env::var("ALLOT_ADMIN_PASSWORD") {
                Ok(password) => password,
                Err(_) => rpassword::prompt_password(format!("password for {}: ", args.email))
                    .context("reading the password (or set ALLOT_ADMIN_PASSWORD)")?,
            };
            remote::login(&args.remote, &args.email, &password).await
        }
        AdminCommand::Logout(args) => remote::logout(&args.remote).await,
        AdminCommand::Products { remote, command } => {
            let mut client = Client::connect(&remote)?;
            catalog::run_products(&mut client, command).await
        }
        AdminCommand::Drops { remote, command } => {
            let mut client = Client::connect(&remote)?;
            catalog::run_drops(&mut client, command).await
        }
        AdminCommand::Orders { remote, command } => {
            let mut client = Client::connect(&remote)?;
            orders::run(&mut client, command).await
        }
        AdminCommand::Users { remote, command } => {
            let mut client = Client::connect(&remote)?;
            users::run(&mut client, command).await
        }
    }
}

fn create_admin(args: CreateAdminArgs) -> anyhow::Result<ExitCode> {
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
