//! `wharf-registry`: reads its config, wires state, serves. Subcommands run
//! the catalogue migrations and adopt an existing registry volume.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wharf_registry::Config;

#[derive(Parser)]
#[command(
    name = "wharf-registry",
    version,
    about = "Wharf's OCI distribution registry"
)]
struct Cli {
    /// TOML config file; `WHARF_REGISTRY_*` environment variables override it.
    #[arg(long, short, env = "WHARF_REGISTRY_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry (the default).
    Serve,
    /// Apply the catalogue's database migrations and exit.
    Migrate,
    /// Build the storage index from the files of an existing registry volume.
    Import,
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
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            let addr = listener.local_addr()?;
            tracing::info!(address = %addr, data_dir = %config.data_dir.display(), "wharf-registry listening");
            // A machine-readable ready line for supervisors and tests that bind port 0.
            println!("listening on {addr}");
            wharf_registry::run(config, listener, wharf_runtime::shutdown_signal()).await
        }
        Command::Migrate => {
            wharf_catalog::ensure_database(&config.database.url).await?;
            let db = wharf_catalog::connect(&config.database.url, 2).await?;
            wharf_catalog::migrate(&db).await?;
            println!("catalogue migrations applied");
            Ok(())
        }
        Command::Import => {
            let db = wharf_catalog::connect(&config.database.url, 4).await?;
            let store = wharf_storage::Store::open(&config.data_dir)?;
            let report = wharf_registry::import::import(&db, &store).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}
