//! `allot bench drop`: an open-loop drop simulator.
//!
//! A crowd of verified customers arrives at a fixed rate (or a ramp) when a limited product's
//! sale opens. Every attempt's latency counts from the moment it was meant to be sent, not from
//! when a connection was free, so a server that falls behind shows its queue; a closed-loop
//! tool such as wrk sends the next request only when the last one came back and hides it. A
//! share of the placed orders is paid for with a mix of the simulator's cards (declined cards
//! are tried again with a good one), the rest walk away and their holds expire. Afterwards the
//! invariants are checked through the API (`check`), the figures printed (or written as JSON),
//! and an HTML report drawn (`report`).
//!
//! Without `--url` the shop is set up offline, fast, in `--data-dir` or a temporary directory
//! (`shop`): customers and an admin made in the engine, their access tokens signed with the data
//! directory's key. A child `allot serve` then serves it, and `allot db verify`'s check runs
//! on the directory once it has stopped.

mod check;
mod crowd;
mod report;
mod shop;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::Subcommand;

use crate::progress::Bar;

/// The longest drop the simulator runs (its figures are kept in memory).
const DURATION_S_MAX: f64 = 3_600.0;
/// The highest arrival rate it is asked for, attempts a second.
const RATE_MAX: f64 = 1_000_000.0;
/// The most customers an offline shop is made with.
const CUSTOMERS_MAX: usize = 1_000_000;
/// How long before the opening the crowd is ready and the stock watched.
const OPENING_LEAD: Duration = Duration::from_millis(1_500);

#[derive(Subcommand)]
pub enum BenchCommand {
    /// An open-loop drop: a limited product, a crowd arriving at a fixed rate or a ramp when
    /// its sale opens, payments with a mix of cards, and the invariants checked at the end.
    ///
    /// Example: allot bench drop --customers 2000 --stock 100 --rate 3000 --duration 20
    /// --report drop.html
    Drop(DropArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct DropArgs {
    /// A running server to drop on; its customers are `--tokens`, and the drop is a product
    /// made with `--admin-token` or the existing `--product`. Without it, a shop is set up
    /// offline and served by a child `allot serve`.
    #[arg(long, requires = "tokens")]
    url: Option<String>,
    /// With `--url`: a file of customers' access tokens, one a line (loadtest/setup_users.py
    /// writes one).
    #[arg(long, requires = "url")]
    tokens: Option<PathBuf>,
    /// With `--url`: an admin's access token, to create the drop's product.
    #[arg(long, requires = "url", conflicts_with = "product")]
    admin_token: Option<String>,
    /// With `--url`: drop on this existing limited product (for instance one scheduled with
    /// `allot admin drops schedule`) instead of creating one; its stock, limit and opening are
    /// read from the API. Its buyers must all be in `--tokens`, or the count of paid units
    /// cannot add up.
    #[arg(long, requires = "url")]
    product: Option<String>,
    /// Offline: the stopped data directory to set the shop up in and serve (kept afterwards);
    /// default a temporary directory, removed at the end.
    #[arg(long, conflicts_with = "url")]
    data_dir: Option<PathBuf>,
    /// Offline: how many verified customers the crowd is made of.
    #[arg(long, default_value_t = 1_000)]
    customers: usize,
    /// Units of the limited product.
    #[arg(long, default_value_t = 100)]
    stock: u32,
    /// Units a customer may hold or own of it.
    #[arg(long, default_value_t = 2)]
    limit: u32,
    /// Purchase attempts a second from the opening (at the start of a ramp).
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Ramp the arrival rate linearly from `--rate` to this over the drop.
    #[arg(long)]
    ramp_to: Option<f64>,
    /// Seconds of arrivals after the opening.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Requests in flight at most (connections to the server); an attempt due while all are
    /// busy waits, and its latency includes the wait.
    #[arg(long, default_value_t = 512)]
    connections: usize,
    /// Share of the placed orders that the crowd pays for (0 to 1); the others walk away.
    #[arg(long, default_value_t = 0.7)]
    pay_share: f64,
    /// Offline: seconds a placed order holds its units (the server's `--reservation-ttl`).
    #[arg(long, default_value_t = 5)]
    hold_seconds: u64,
    /// Seed of the crowd's choices (who, how many, which card, when).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write an HTML report (latency, throughput and stock over time) to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl DropArgs {
    fn check(&self) -> anyhow::Result<()> {
        let rate_ok = |rate: f64| rate.is_finite() && rate > 0.0 && rate <= RATE_MAX;
        ensure!(
            rate_ok(self.rate),
            "--rate must be above 0 and at most {RATE_MAX}"
        );
        if let Some(to) = self.ramp_to {
            ensure!(
                rate_ok(to),
                "--ramp-to must be above 0 and at most {RATE_MAX}"
            );
        }
        ensure!(
            self.duration.is_finite() && self.duration > 0.0 && self.duration <= DURATION_S_MAX,
            "--duration must be above 0 and at most {DURATION_S_MAX} seconds"
        );
        ensure!(
            (1..=CUSTOMERS_MAX).contains(&self.customers),
            "--customers must be 1 to {CUSTOMERS_MAX}"
        );
        ensure!(
            self.url.is_none() || self.admin_token.is_some() || self.product.is_some(),
            "--url needs --admin-token (to create the drop's product) or --product (an existing one)"
        );
        ensure!(self.stock >= 1, "--stock must be at least 1");
        ensure!(self.limit >= 1, "--limit must be at least 1");
        ensure!(self.connections >= 1, "--connections must be at least 1");
        ensure!(
            (0.0..=1.0).contains(&self.pay_share),
            "--pay-share must be 0 to 1"
        );
        ensure!(
            (1..=3_600).contains(&self.hold_seconds),
            "--hold-seconds must be 1 to 3600"
        );
        ensure!(
            (1..=64).contains(&self.threads),
            "--threads must be 1 to 64"
        );
        Ok(())
    }

    fn plan(&self) -> crowd::Plan {
        crowd::Plan {
            rate: self.rate,
            ramp_to: self.ramp_to,
            duration: Duration::from_secs_f64(self.duration),
            connections: self.connections,
            pay_share: self.pay_share,
            limit: self.limit,
            seed: self.seed,
        }
    }
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Drop(args) => {
            args.check()?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.threads)
                .enable_all()
                .build()
                .context("start the generator's runtime")?
                .block_on(drop_bench(args))
        }
    }
}

async fn drop_bench(args: DropArgs) -> anyhow::Result<ExitCode> {
    let mut shop = match &args.url {
        Some(url) => shop::Shop::remote(url, args.tokens.as_deref(), args.admin_token.as_deref())?,
        None => {
            shop::Shop::offline(args.data_dir.as_deref(), args.customers, args.hold_seconds).await?
        }
    };
    let outcome = drop_on(&args, &shop).await;
    // The server stops (and the offline directory is verified) whatever the drop's outcome.
    let verified = shop.stop().await;
    let (mut figures, mut checks) = outcome?;
    checks.extend(verified?);
    figures.checks = checks;
    if let Some(path) = &args.report {
        report::write_html(path, &figures)
            .with_context(|| format!("write the report {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures.to_json())?);
    } else {
        print!("{}", report::table(&figures));
    }
    Ok(if figures.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The drop itself on a ready shop: the product, the crowd, the checks.
async fn drop_on(
    args: &DropArgs,
    shop: &shop::Shop,
) -> anyhow::Result<(report::Figures, Vec<check::Check>)> {
    let api = shop.api();
    let plan = args.plan();
    let sale = match &args.product {
        Some(product) => api.existing_drop(product).await?,
        None => {
            api.create_drop(args.stock, args.limit, OPENING_LEAD, plan.duration)
                .await?
        }
    };
    let watcher = check::Watcher::start(api.clone(), sale.product.clone(), sale.opens_at);
    let bar = Bar::new();
    let tally = crowd::run(&api, &sale, &shop.customers, &plan, &bar).await;
    std::mem::drop(bar);
    let tally = tally?;
    let settled = check::settle(&api, &sale, &shop.customers, tally.holds_until_ms).await;
    let samples = watcher.stop().await;
    let settled = settled?;
    let checks = check::all(&sale, &samples, &settled, &tally);
    let figures = report::Figures::new(args, shop.customers.len(), &sale, tally, samples, &settled);
    Ok((figures, checks))
}
