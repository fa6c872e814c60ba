//! `wharf-proxy`: reads its config, binds HTTP (and HTTPS), serves.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use wharf_proxy::Config;

#[derive(Parser)]
#[command(name = "wharf-proxy", version, about = "Wharf's front door")]
struct Cli {
    /// TOML config file; `WHARF_PROXY_*` environment variables override it.
    #[arg(long, short, env = "WHARF_PROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration (including the TLS files) and exit.
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    if let Some(tls) = &config.tls {
        wharf_proxy::tls::acceptor(tls)?;
    }
    if cli.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    wharf_runtime::init_tracing(&config.log);
    let http = tokio::net::TcpListener::bind(config.listen_http)
        .await
        .with_context(|| format!("binding listen_http {}", config.listen_http))?;
    let https = match config.listen_https {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding listen_https {addr}"))?,
        ),
        None => None,
    };
    let http_addr = http.local_addr()?;
    // Machine-readable ready lines for supervisors and tests that bind port 0;
    // `listening on` comes last, once every listener is bound.
    if let Some(l) = &https {
        let addr = l.local_addr()?;
        tracing::info!(address = %addr, "wharf-proxy listening (https)");
        println!("https listening on {addr}");
    }
    tracing::info!(address = %http_addr, "wharf-proxy listening");
    println!("listening on {http_addr}");
    wharf_proxy::run(config, http, https, wharf_runtime::shutdown_signal()).await
}
