//! The proxy's one config struct: defaults, then the config file, then
//! `WHARF_PROXY_*` environment variables (nested keys joined by `__`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Plain HTTP address. With HTTPS configured it only redirects (308).
    pub listen_http: SocketAddr,
    /// HTTPS address; needs `tls`.
    pub listen_https: Option<SocketAddr>,
    pub tls: Option<Tls>,
    /// The address clients use (`https://registry.example.com`). When it is
    /// an `https` URL its port is the one the HTTP→HTTPS redirect names;
    /// otherwise the redirect names the port `listen_https` is bound to.
    pub external_url: Option<String>,
    pub upstreams: Upstreams,
    pub timeouts: Timeouts,
    pub log: Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM file with the server certificate (and its chain).
    pub certificate: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
}

/// Base URLs (`http://host:port`) of the services behind the proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstreams {
    pub registry: String,
    pub core: String,
    pub portal: String,
    /// The registry's `data_dir`, when the proxy can read it (same host, or
    /// the same volume mounted read-only). The registry then hands blob
    /// pulls it has authorised to the proxy, which sends the bytes from the
    /// file instead of relaying them over a second socket (see
    /// `wharf_storage::offload`). Unset: every blob is relayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_storage: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting to an upstream.
    pub connect_secs: u64,
    /// Longest wait for the next bytes, from the client or the upstream.
    /// There is no total request timeout: a transfer goes on while bytes flow.
    pub idle_secs: u64,
    /// Reading a client's request head.
    pub header_read_secs: u64,
    /// How long a finished upstream connection is kept for reuse.
    pub pool_idle_secs: u64,
}

pub use wharf_runtime::Log;

impl Default for Config {
    fn default() -> Config {
        Config {
            listen_http: "0.0.0.0:8080".parse().expect("valid address"),
            listen_https: None,
            tls: None,
            external_url: None,
            upstreams: Upstreams {
                registry: "http://127.0.0.1:5000".into(),
                core: "http://127.0.0.1:8080".into(),
                portal: "http://127.0.0.1:8081".into(),
                registry_storage: None,
            },
            timeouts: Timeouts {
                connect_secs: 5,
                idle_secs: 900,
                header_read_secs: 30,
                pool_idle_secs: 90,
            },
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
        let config: Config = wharf_runtime::load(file, "WHARF_PROXY_")?;
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        match (&self.listen_https, &self.tls) {
            (Some(_), None) => return Err("listen_https is set but tls is not".into()),
            (None, Some(_)) => return Err("tls is set but listen_https is not".into()),
            _ => {}
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("tls.certificate", &tls.certificate),
                ("tls.private_key", &tls.private_key),
            ] {
                if !path.is_file() {
                    return Err(format!("{key}: {} does not exist", path.display()));
                }
            }
        }
        if let Some(url) = &self.external_url {
            let u = url::Url::parse(url)
                .map_err(|e| format!("external_url: {url:?} is not a URL: {e}"))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(format!(
                    "external_url: {url:?} must be an http:// or https:// URL with a host"
                ));
            }
        }
        for (key, url) in [
            ("upstreams.registry", &self.upstreams.registry),
            ("upstreams.core", &self.upstreams.core),
            ("upstreams.portal", &self.upstreams.portal),
        ] {
            upstream_authority(url).map_err(|e| format!("{key}: {e}"))?;
        }
        if self.timeouts.connect_secs == 0 || self.timeouts.idle_secs == 0 {
            return Err("timeouts.connect_secs and timeouts.idle_secs must be at least 1".into());
        }
        Ok(())
    }

    /// The port the HTTP→HTTPS redirect names, given the bound HTTPS port.
    pub fn redirect_port(&self, bound: u16) -> u16 {
        self.external_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .filter(|u| u.scheme() == "https")
            .and_then(|u| u.port_or_known_default())
            .unwrap_or(bound)
    }
}

/// `host:port` of an upstream base URL; only plain `http://` with no path.
pub fn upstream_authority(url: &str) -> Result<http::uri::Authority, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if u.scheme() != "http" {
        return Err(format!("{url:?}: only http:// upstreams are supported"));
    }
    if !matches!(u.path(), "" | "/") || u.query().is_some() {
        return Err(format!("{url:?}: an upstream is a base URL without a path"));
    }
    let host = u
        .host()
        .ok_or_else(|| format!("{url:?} has no host"))?
        .to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("{url:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_needs_tls_and_upstreams_must_be_base_urls() {
        let mut c = Config {
            listen_https: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("tls"));
        c.listen_https = None;
        c.upstreams.core = "http://core:8080/api".into();
        assert!(c.validate().unwrap_err().contains("upstreams.core"));
        c.upstreams.core = "https://core:8080".into();
        assert!(c.validate().unwrap_err().contains("upstreams.core"));
        c.upstreams.core = "http://core:8080/".into();
        c.validate().unwrap();
        assert_eq!(
            upstream_authority("http://[::1]").unwrap().as_str(),
            "[::1]:80"
        );
    }

    #[test]
    fn redirect_port_prefers_an_https_external_url() {
        let mut c = Config::default();
        assert_eq!(c.redirect_port(8443), 8443);
        c.external_url = Some("https://r.example.com".into());
        assert_eq!(c.redirect_port(8443), 443);
        c.external_url = Some("https://r.example.com:9443".into());
        assert_eq!(c.redirect_port(8443), 9443);
        c.external_url = Some("http://r.example.com".into());
        assert_eq!(c.redirect_port(8443), 8443);
    }
}
