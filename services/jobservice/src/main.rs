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
    wharf_runtime::init_tracing(&config.log);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(address = %addr, workers = config.max_job_workers, "wharf-jobservice listening");
    // A machine-readable ready line for supervisors and tests that bind port 0.
    println!("listening on {addr}");
    wharf_jobservice::run(config, listener, wharf_runtime::shutdown_signal()).await
}
