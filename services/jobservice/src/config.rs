//! Jobservice's one config struct: defaults, then the config file, then
//! `WHARF_JOBSERVICE_*` environment variables (nested keys joined by `__`).

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
pub use wharf_runtime::{Database, Log, Redis, Secret};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// Jobs run at the same time in this process (Harbor's `max_job_workers`).
    pub max_job_workers: usize,
    /// Job log lines older than this are deleted.
    pub job_log_retention_days: i64,
    pub database: Database,
    pub redis: Redis,
    pub registry: Registry,
    pub gc: Gc,
    pub queue: Queue,
    pub log: Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// The registry's internal address: GC asks it to unlink files.
    pub url: String,
    pub internal_secret: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gc {
    /// The grace window G (Harbor's `time_window`): unreferenced blobs newer
    /// than this are kept. Safety never depends on it (gc.md I5).
    pub grace_secs: i64,
    /// Phase 0 finishes deletes whose owner has been silent this long.
    pub recover_after_secs: i64,
    /// Also reconcile files that no row knows (Phase 4) on every run.
    pub reconcile: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// How often a running job renews its lease.
    pub heartbeat_secs: u64,
    /// A running task whose lease is older than this has lost its worker and
    /// is taken over.
    pub lease_secs: i64,
    /// How often the sweeper compares Redis with Postgres.
    pub sweep_interval_secs: u64,
    /// How long a stopped job may take to wind down before it is dropped.
    pub stop_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:8888".parse().expect("valid address"),
            max_job_workers: 10,
            job_log_retention_days: 14,
            database: Database {
                url: Secret("postgres://postgres@127.0.0.1:5432/wharf".into()),
                max_connections: 10,
            },
            redis: Redis {
                url: Secret("redis://127.0.0.1:6379/0".into()),
                prefix: "wharf:".into(),
            },
            registry: Registry {
                url: "http://127.0.0.1:5000".into(),
                internal_secret: Secret(String::new()),
            },
            gc: Gc {
                grace_secs: 2 * 3600,
                recover_after_secs: 60,
                reconcile: false,
            },
            queue: Queue {
                heartbeat_secs: 5,
                lease_secs: 30,
                sweep_interval_secs: 5,
                stop_grace_secs: 60,
            },
            log: Log {
                level: "info".into(),
                json: false,
            },
        }
    }
}

impl Config {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let config: Config = wharf_runtime::load(file, "WHARF_JOBSERVICE_")?;
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.max_job_workers == 0 || self.max_job_workers > 1000 {
            return Err(format!(
                "max_job_workers must be between 1 and 1000, got {}",
                self.max_job_workers
            ));
        }
        if self.database.max_connections < 2 {
            return Err("database.max_connections must be at least 2".into());
        }
        if self.registry.internal_secret.0.is_empty() {
            return Err(
                "registry.internal_secret must be set: GC calls the registry's internal API".into(),
            );
        }
        if self.gc.grace_secs < 0 {
            return Err("gc.grace_secs must not be negative".into());
        }
        if self.queue.heartbeat_secs == 0 {
            return Err("queue.heartbeat_secs must be at least 1".into());
        }
        if self.queue.lease_secs <= 2 * self.queue.heartbeat_secs as i64 {
            return Err(format!(
                "queue.lease_secs ({}) must be more than twice queue.heartbeat_secs ({})",
                self.queue.lease_secs, self.queue.heartbeat_secs
            ));
        }
        if self.job_log_retention_days < 1 {
            return Err("job_log_retention_days must be at least 1".into());
        }
        Ok(())
    }
}
