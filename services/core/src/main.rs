//! `wharf-core`: reads its config, wires state, serves. `prepare` renders
//! every service's config from harbor.yml (see `wharf-deploy`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wharf_core::Config;

#[derive(Parser)]
#[command(
    name = "wharf-core",
    version,
    about = "Wharf's core API and token service"
)]
struct Cli {
    /// TOML config file; `WHARF_CORE_*` environment variables override it.
    #[arg(long, short, env = "WHARF_CORE_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check harbor.yml, render each service's config and create the secrets, then exit.
    Prepare {
        /// The operator's harbor.yml.
        #[arg(long = "config", default_value = "harbor.yml")]
        harbor_yml: PathBuf,
        /// Where `config/` and `secret/` go (default: harbor.yml's data_volume).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Prepare { harbor_yml, out }) = &cli.command {
        wharf_deploy::prepare_and_report(harbor_yml, out.as_deref())?;
        return Ok(());
    }
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
    tracing::info!(address = %addr, "wharf-core listening");
    println!("listening on {addr}");
    wharf_core::run(config, listener, wharf_runtime::shutdown_signal()).await
}
