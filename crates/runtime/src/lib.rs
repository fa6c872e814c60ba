//! What every Wharf binary shares at start-up: one way to load a service's
//! config (defaults, then the TOML file, then `WHARF_<SERVICE>_*` variables),
//! secret strings that never print, the log settings and their tracing
//! subscriber, and the signal that starts a graceful shutdown.

use std::io::IsTerminal as _;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A string that never shows in `Debug` output or logs.
#[derive(Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The `[database]` section of core and jobservice: the shared catalogue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub url: Secret,
    pub max_connections: u32,
}

/// The `[redis]` section of core and jobservice.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub url: Secret,
    /// Prefix of every key the service writes, so several deployments (or
    /// tests) share a server. Core's and jobservice's must be equal: core
    /// enqueues jobs under it.
    pub prefix: String,
}

/// The `[log]` section every service has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// A tracing filter, e.g. `info` or `wharf_registry=debug`.
    pub level: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

impl Default for Log {
    fn default() -> Log {
        Log {
            level: "info".into(),
            json: false,
        }
    }
}

/// Loads `T`: its defaults, then `file` if given (it must exist), then the
/// environment variables that start with `env_prefix` (`WHARF_CORE_`), nested
/// keys joined by `__`. `<prefix>CONFIG` names the file and is not a key.
pub fn load<T>(file: Option<&Path>, env_prefix: &str) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        anyhow::ensure!(
            file.exists(),
            "config file {} does not exist",
            file.display()
        );
        fig = fig.merge(Toml::file(file));
    }
    Ok(fig
        .merge(Env::prefixed(env_prefix).ignore(&["config"]).split("__"))
        .extract()?)
}

/// Logs go to stderr (stdout carries the ready line), coloured only on a terminal.
pub fn init_tracing(log: &Log) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&log.level).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if log.json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and `install.sh --stop` send).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        listen: String,
        password: Secret,
        log: Log,
    }

    impl Default for Demo {
        fn default() -> Demo {
            Demo {
                listen: "127.0.0.1:1".into(),
                password: Secret("default".into()),
                log: Log::default(),
            }
        }
    }

    #[test]
    fn file_over_defaults_and_environment_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("demo.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:2\"\n[log]\nlevel = \"debug\"\n").unwrap();
        // The only test of this crate that touches the environment, with
        // names no other process of the test run reads.
        std::env::set_var("WHARF_DEMO_LOG__JSON", "true");
        std::env::set_var("WHARF_DEMO_CONFIG", "ignored");
        let d: Demo = load(Some(&file), "WHARF_DEMO_").unwrap();
        assert_eq!(d.listen, "0.0.0.0:2");
        assert_eq!(d.log.level, "debug");
        assert!(d.log.json);
        assert_eq!(format!("{:?}", d.password), "<redacted>");
        let e = load::<Demo>(Some(&dir.path().join("missing.toml")), "WHARF_DEMO_").unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let e = load::<Demo>(Some(&file), "WHARF_DEMO_").unwrap_err();
        assert!(format!("{e:#}").contains("lisen"), "{e:#}");
    }
}
