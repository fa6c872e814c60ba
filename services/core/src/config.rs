//! Core's one config struct: defaults, then the config file, then
//! `WHARF_CORE_*` environment variables (nested keys joined by `__`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
pub use wharf_runtime::{Database, Log, Redis, Secret};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// How clients reach the platform (`https://registry.example.com`); the
    /// token realm and links are built from it.
    pub external_url: String,
    pub database: Database,
    pub redis: Redis,
    pub token: Token,
    /// The first `admin` password; used only when no admin exists yet.
    pub admin_initial_password: Secret,
    pub session_timeout_secs: u64,
    pub registry: Registry,
    pub jobservice: Jobservice,
    pub robot_name_prefix: String,
    pub log: Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// PEM RSA private key that signs registry tokens.
    pub private_key: PathBuf,
    pub issuer: String,
    /// The registry's `service` name; tokens carry it as `aud`.
    pub service: String,
    pub lifetime_secs: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// The registry's internal address (not through the proxy).
    pub url: String,
    /// Shared secret for internal calls between services.
    pub internal_secret: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jobservice {
    /// Jobservice's internal address; `/health` reports it. Jobs themselves
    /// go through Redis (`redis.prefix`), not this address.
    pub url: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            external_url: "http://127.0.0.1:8080".into(),
            database: Database {
                url: Secret("postgres://postgres@127.0.0.1:5432/wharf".into()),
                max_connections: 20,
            },
            redis: Redis {
                url: Secret("redis://127.0.0.1:6379/0".into()),
                prefix: "wharf:".into(),
            },
            token: Token {
                private_key: PathBuf::from("./data/secret/token.key"),
                issuer: "harbor-token-issuer".into(),
                service: "harbor-registry".into(),
                lifetime_secs: 1800,
            },
            admin_initial_password: Secret("Harbor12345".into()),
            session_timeout_secs: 1800,
            registry: Registry {
                url: "http://127.0.0.1:5000".into(),
                internal_secret: Secret(String::new()),
            },
            jobservice: Jobservice {
                url: "http://127.0.0.1:8888".into(),
            },
            robot_name_prefix: "robot$".into(),
            log: Log {
                level: "info".into(),
                json: false,
            },
        }
    }
}

impl Config {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let config: Config = wharf_runtime::load(file, "WHARF_CORE_")?;
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if url::Url::parse(&self.external_url).is_err() {
            return Err(format!(
                "external_url: {:?} is not a URL",
                self.external_url
            ));
        }
        if self.token.lifetime_secs < 60 {
            return Err("token.lifetime_secs must be at least 60".into());
        }
        if self.admin_initial_password.0.is_empty() {
            return Err("admin_initial_password must not be empty".into());
        }
        if self.database.max_connections == 0 {
            return Err("database.max_connections must be at least 1".into());
        }
        Ok(())
    }

    /// The token realm clients are sent to.
    pub fn realm(&self) -> String {
        format!("{}/service/token", self.external_url.trim_end_matches('/'))
    }
}
