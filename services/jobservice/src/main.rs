//! `wharf-jobservice`: reads its config, wires state, runs workers, the
//! scheduler and the sweeper, and serves its health endpoint.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use wharf_jobservice::Config;

#[derive(Parser)]
#[command(
    name = "wharf-jobservice",
    version,
    about = "Wharf's job service: queue workers, cron scheduler, garbage collection"
)]
struct Cli {
    /// TOML config file; `WHARF_JOBSERVICE_*` environment variables override it.
    #[arg(long, short, env = "WHARF_JOBSERVICE_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    if cli.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.json {
        builder.json().init();
    } else {
        builder.init();
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(address = %addr, workers = config.max_job_workers, "wharf-jobservice listening");
    // A machine-readable ready line for supervisors and tests that bind port 0.
    println!("listening on {addr}");
    wharf_jobservice::run(config, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
