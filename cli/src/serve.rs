//! `allot serve`: bind, answer `/healthz` at once, recover the engine, then report ready.
//! SIGTERM or Ctrl-C: stop accepting, finish in-flight requests, close the engine (which
//! writes a snapshot), exit 0.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use allot_engine::{Engine, EngineConfig, SystemClock};
use allot_server::mail::{MailConfig, MailTransportConfig, Mailer};
use allot_server::stock_feed::StockFeedConfig;
use allot_server::{AppState, ServerConfig};

use crate::DataDirArg;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// A TOML file of settings: the flags' names without `--` (`cache_mb = 512`). A flag beats
    /// its variable, a variable beats the file, the file beats the default.
    #[arg(long, env = "ALLOT_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Print the configuration in effect (as TOML, each setting with its source, secrets
    /// redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, env = "ALLOT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Also serve `GET /metrics` (Prometheus text) without a login on this address, for a
    /// scraper on the loopback or a private network (the address is logged on start). On
    /// `--listen`, `/metrics` answers admins only.
    #[arg(long, env = "ALLOT_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    data: DataDirArg,
    /// Cookies without `Secure`, for plain-HTTP local use (never behind a public address).
    #[arg(long, env = "ALLOT_INSECURE_COOKIES")]
    insecure_cookies: bool,
    /// Requests per minute and client IP on the auth endpoints; 0 turns the budget off (load
    /// tests from one machine). Per-account login limits stay on.
    #[arg(long, env = "ALLOT_IP_RATE_LIMIT", default_value_t = 60)]
    ip_rate_limit: u32,
    /// Send mail over SMTP: `smtp://host:port` (local relay), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS) or `smtps://user:pass@host:465`. Without it, mails are written as `.eml` files
    /// under `<data-dir>/mail/`.
    #[arg(long, env = "ALLOT_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// How long a placed order holds its units before it expires unpaid, in seconds.
    #[arg(long, env = "ALLOT_RESERVATION_TTL", default_value_t = 600)]
    reservation_ttl: u64,
    /// How many days after delivery a return may be asked for; then the order is closed for
    /// good and leaves memory.
    #[arg(long, env = "ALLOT_RETURN_WINDOW_DAYS", default_value_t = 7)]
    return_window_days: u64,
    /// About how many live stock events per second all stream subscribers together are sent at
    /// most: with more subscribers, each product's new counts are sent less often (openings
    /// and closings are always sent at once).
    #[arg(long, env = "ALLOT_STREAM_EVENTS_PER_SEC", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    stream_events_per_sec: u64,
    /// The longest, in milliseconds, a stream subscriber waits for new counts however many
    /// listen (100 to 15,000).
    #[arg(long, env = "ALLOT_STREAM_PACE_MAX_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(100..=15_000))]
    stream_pace_max_ms: u64,
    /// A snapshot (checkpoint) of the state is written once this many records were logged since
    /// the last one; log batches it covers are then pruned.
    #[arg(long, env = "ALLOT_SNAPSHOT_EVERY_RECORDS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every_records: u64,
    /// …or this many seconds after the last one, if anything was logged since.
    #[arg(long, env = "ALLOT_SNAPSHOT_EVERY_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    snapshot_every_secs: u64,
    /// Log records kept before the oldest kept snapshot when the log is pruned (0: all that a
    /// snapshot covers is pruned).
    #[arg(long, env = "ALLOT_LOG_TAIL_KEPT_RECORDS", default_value_t = 0)]
    log_tail_kept_records: u64,
    /// At most the events of the newest this many records are kept: older ones are pruned
    /// after a snapshot, whatever their age…
    #[arg(long, env = "ALLOT_EVENTS_KEPT_RECORDS",
          default_value_t = allot_engine::EVENTS_KEPT_RECORDS_DEFAULT)]
    events_kept_records: u64,
    /// …and none older than this many days, whatever their number (never one a consumer has
    /// not finished with, nor one whose record the log still holds).
    #[arg(long, env = "ALLOT_EVENTS_KEPT_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    events_kept_days: u64,
    /// How many days a closed order's Idempotency-Key still answers it (a live order's always
    /// does); then the same key places a new order.
    #[arg(long, env = "ALLOT_IDEMPOTENCY_KEPT_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    idempotency_kept_days: u64,
    /// sled's page cache, in MiB.
    #[arg(long, env = "ALLOT_CACHE_MB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(8..=65_536))]
    cache_mb: u64,
    /// Where `allot db backup --url` (POST /admin/backups) writes its copies, each in a
    /// directory of its name. Default: `backups/` beside the data directory.
    #[arg(long, env = "ALLOT_BACKUP_DIR")]
    backup_dir: Option<std::path::PathBuf>,
    /// Do not load the demo catalog into an empty catalog.
    #[arg(long, env = "ALLOT_NO_DEMO_CATALOG")]
    no_demo_catalog: bool,
    /// The From address of outgoing mail.
    #[arg(
        long,
        env = "ALLOT_MAIL_FROM",
        default_value = "allot <no-reply@allot.local>"
    )]
    mail_from: String,
}

/// How long a clean stop waits for queued mail.
const MAIL_DRAIN_MS: u64 = 5_000;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("allot-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    // Tests and scripts read this line to learn the port.
    println!("allot listening on http://{address}");
    let metrics_listener = match args.metrics_listen {
        Some(metrics_address) => {
            let listener = tokio::net::TcpListener::bind(metrics_address)
                .await
                .with_context(|| format!("binding --metrics-listen {metrics_address}"))?;
            // Logged, not printed: the first line of stdout is the one scripts read.
            let metrics_address = listener.local_addr()?;
            tracing::info!(%metrics_address, "serving /metrics without a login");
            Some(listener)
        }
        None => None,
    };
    tracing::info!(%address, data_dir = %args.data.data_dir.display(), "listening; recovering");

    let transport = match &args.smtp_url {
        Some(url) => MailTransportConfig::Smtp { url: url.clone() },
        None => MailTransportConfig::Files {
            dir: args.data.data_dir.join("mail"),
        },
    };
    let mailer = Mailer::start(MailConfig {
        transport,
        from: args.mail_from.clone(),
    })
    .context("configuring mail")?;
    anyhow::ensure!(
        (1..=7 * 24 * 3600).contains(&args.reservation_ttl),
        "--reservation-ttl must be 1 to 604800 seconds"
    );
    let config = ServerConfig {
        insecure_cookies: args.insecure_cookies,
        ip_rate_limit_per_min: args.ip_rate_limit,
        reservation_ttl_ms: args.reservation_ttl * 1_000,
        stock_feed: StockFeedConfig {
            events_per_sec_max: args.stream_events_per_sec,
            pace_max_ms: args.stream_pace_max_ms,
        },
        backup_dir: args.backup_dir.clone(),
        ..ServerConfig::default()
    };
    let state = AppState::new(&config, mailer.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut stop_rx: watch::Receiver<bool>| async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn(allot_server::serve(
        listener,
        state.clone(),
        stopped(stop_rx.clone()),
    ));
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(allot_server::serve_metrics(
            listener,
            state.clone(),
            stopped(stop_rx.clone()),
        ))
    });
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
        let _ = stop_tx.send(true);
    });

    let config = EngineConfig {
        snapshot_every_records: args.snapshot_every_records,
        snapshot_every_ms: args.snapshot_every_secs * 1_000,
        log_tail_kept_records: args.log_tail_kept_records,
        events_kept_records: args.events_kept_records,
        events_kept_ms: args.events_kept_days * 24 * 60 * 60 * 1_000,
        return_window_ms: args.return_window_days.saturating_mul(24 * 60 * 60 * 1_000),
        keys_kept_ms: args.idempotency_kept_days * 24 * 60 * 60 * 1_000,
        cache_bytes: args.cache_mb << 20,
        ..EngineConfig::new(&args.data.data_dir)
    };
    let opened =
        tokio::task::spawn_blocking(move || Engine::open(config, Arc::new(SystemClock::new())))
            .await
            .context("recovery task")?;
    let engine = match opened {
        Ok(engine) => engine,
        Err(error) => {
            tracing::error!(%error, "could not open the data directory");
            server.abort();
            if let Some(metrics_server) = &metrics_server {
                metrics_server.abort();
            }
            return Err(error).context("opening the data directory");
        }
    };
    if !args.no_demo_catalog {
        let seeding = engine.clone();
        let seeded = tokio::task::spawn_blocking(move || crate::demo::seed_if_empty(&seeding))
            .await
            .context("seeding task")?
            .context("loading the demo catalog")?;
        if seeded > 0 {
            tracing::info!(products = seeded, "demo catalog loaded");
        }
    }
    let report = engine.recovery_report();
    if let Some(cut) = &report.tail_cut {
        tracing::warn!(at = cut.at_key, batches = cut.batches_removed, reason = %cut.reason, "a damaged log tail was cut");
    }
    for claim in &report.lost_tail {
        tracing::error!(%claim, "LOST TAIL: the log is shorter than what was durable before; \
            check the disk's write cache and the data directory's origin (`allot db verify`)");
    }
    // The built-in payment simulator keeps its own durable record of charges, like a provider.
    let simulator =
        allot_engine::PaymentSimulator::open(&args.data.data_dir.join("payment-simulator"))
            .context("opening the payment simulator")?;
    let payments = Arc::new(allot_engine::Payments::new(Arc::new(simulator)));
    state.install_engine(engine.clone(), payments);
    // The first dummy check computes its hash; pay that now, not in the first unknown login.
    tokio::task::spawn_blocking(|| allot_engine::verify_dummy(""));
    tracing::info!(last_seq = report.last_seq, "ready");

    server.await.context("server task")?.context("serving")?;
    if let Some(metrics_server) = metrics_server {
        metrics_server
            .await
            .context("metrics server task")?
            .context("serving metrics")?;
    }
    mailer
        .shutdown(std::time::Duration::from_millis(MAIL_DRAIN_MS))
        .await;
    tokio::task::spawn_blocking(move || engine.close())
        .await
        .context("closing the engine")?
        .context("closing the engine")?;
    tracing::info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
