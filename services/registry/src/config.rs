//! The registry's one config struct: defaults, then the config file, then
//! `WHARF_REGISTRY_*` environment variables (nested keys joined by `__`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Root of the storage volume (holds `docker/registry/v2`).
    pub data_dir: PathBuf,
    pub database: Database,
    /// Bearer-token auth; without it the registry runs open, for standalone use.
    pub auth: Option<TokenAuth>,
    pub uploads: UploadPurging,
    /// GC's grace window in seconds (Harbor's `time_window`): how long a blob
    /// no manifest references yet is kept after its last push.
    pub gc_grace_secs: i64,
    /// Shared secret that core and jobservice present on `/api/internal/`
    /// calls; without it the internal API is off.
    pub internal_secret: Option<InternalSecret>,
    pub log: Log,
}

/// The internal secret, kept out of `Debug` output.
pub type InternalSecret = wharf_runtime::Secret;

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `postgres://…` URL of the shared catalogue. Kept out of `Debug`: it may hold a password.
    pub url: String,
    pub max_connections: u32,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAuth {
    /// Where clients get tokens, e.g. `https://registry.example.com/service/token`.
    pub realm: String,
    /// The `service` clients ask for, and the `aud` tokens must carry.
    pub service: String,
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// PEM file with the certificate (or public key) whose private key signs tokens.
    pub certificate: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadPurging {
    pub purge_enabled: bool,
    /// Uploads started longer ago than this are deleted.
    pub max_age_secs: u64,
    pub interval_secs: u64,
}

pub use wharf_runtime::Log;

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:5000".parse().expect("valid address"),
            data_dir: PathBuf::from("./data/registry"),
            database: Database {
                url: "postgres://postgres@127.0.0.1:5432/wharf".into(),
                max_connections: 20,
            },
            auth: None,
            uploads: UploadPurging {
                purge_enabled: true,
                max_age_secs: 7 * 24 * 3600,
                interval_secs: 24 * 3600,
            },
            gc_grace_secs: 2 * 3600,
            internal_secret: None,
            log: Log {
                level: "info".into(),
                json: false,
            },
        }
    }
}

impl Config {
    /// Loads the file (if given) over the defaults, then the environment over both.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let config: Config = wharf_runtime::load(file, "WHARF_REGISTRY_")?;
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.database.max_connections == 0 {
            return Err("database.max_connections must be at least 1".into());
        }
        if self.gc_grace_secs < 0 {
            return Err("gc_grace_secs must not be negative".into());
        }
        if let Some(a) = &self.auth {
            if a.realm.is_empty() || a.service.is_empty() || a.issuer.is_empty() {
                return Err("auth.realm, auth.service and auth.issuer must not be empty".into());
            }
            if !a.certificate.exists() {
                return Err(format!(
                    "auth.certificate: {} does not exist",
                    a.certificate.display()
                ));
            }
        }
        Ok(())
    }
}
