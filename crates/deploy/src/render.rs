//! One TOML config per service, in the exact shape each service's `Config`
//! reads (they deny unknown keys), plus the shell/compose variables
//! `install.sh` and `docker-compose.yml` use.

use std::path::Path;

use serde::Serialize;

use crate::harbor::{Database, HarborConfig, Redis};
use crate::secrets::Secrets;

/// The Redis key prefix core enqueues jobs under and jobservice reads.
pub const REDIS_PREFIX: &str = "wharf:";
/// The database name of the provided Postgres (Harbor's name).
pub const PROVIDED_DB_NAME: &str = "registry";
const TOKEN_ISSUER: &str = "harbor-token-issuer";
const TOKEN_SERVICE: &str = "harbor-registry";

/// The rendered files' text, by service.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub core: String,
    pub registry: String,
    pub jobservice: String,
    pub proxy: String,
    /// `KEY=value` lines for `install.sh` (sourced) and `docker compose --env-file`.
    pub install_env: String,
}

#[derive(Serialize)]
struct Log<'a> {
    level: &'a str,
    json: bool,
}

#[derive(Serialize)]
struct Db {
    url: String,
    max_connections: u32,
}

#[derive(Serialize)]
struct CoreToml<'a> {
    listen: String,
    external_url: &'a str,
    admin_initial_password: &'a str,
    database: Db,
    redis: CoreRedis,
    token: CoreTokenToml,
    registry: InternalRegistry<'a>,
    jobservice: Url,
    log: Log<'a>,
}

#[derive(Serialize)]
struct CoreRedis {
    url: String,
    prefix: &'static str,
}

#[derive(Serialize)]
struct CoreTokenToml {
    private_key: String,
    issuer: &'static str,
    service: &'static str,
}

#[derive(Serialize)]
struct InternalRegistry<'a> {
    url: String,
    internal_secret: &'a str,
}

#[derive(Serialize)]
struct Url {
    url: String,
}

#[derive(Serialize)]
struct RegistryToml<'a> {
    listen: String,
    data_dir: String,
    internal_secret: &'a str,
    database: Db,
    auth: RegistryAuth,
    uploads: Uploads,
    log: Log<'a>,
}

#[derive(Serialize)]
struct RegistryAuth {
    realm: String,
    service: &'static str,
    issuer: &'static str,
    certificate: String,
}

#[derive(Serialize)]
struct Uploads {
    purge_enabled: bool,
    max_age_secs: u64,
    interval_secs: u64,
}

#[derive(Serialize)]
struct JobserviceToml<'a> {
    listen: String,
    max_job_workers: u32,
    job_log_retention_days: u32,
    database: Db,
    redis: CoreRedis,
    registry: InternalRegistry<'a>,
    log: Log<'a>,
}

#[derive(Serialize)]
struct ProxyToml<'a> {
    listen_http: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_https: Option<String>,
    external_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<ProxyTls>,
    upstreams: Upstreams,
    log: Log<'a>,
}

#[derive(Serialize)]
struct ProxyTls {
    certificate: String,
    private_key: String,
}

#[derive(Serialize)]
struct Upstreams {
    registry: String,
    core: String,
    portal: String,
    /// The registry's data_dir: the proxy runs on the same host (or mounts
    /// the same volume) and sends the blob pulls the registry authorised.
    registry_storage: String,
}

fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn http(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The catalogue URL every service connects with.
pub fn database_url(c: &HarborConfig) -> String {
    let mut u = match &c.database {
        Database::Provided { .. } => {
            url::Url::parse(&format!("postgres://127.0.0.1:{}/", c.ports.database)).expect("valid")
        }
        Database::External { host, port, .. } => {
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            url::Url::parse(&format!("postgres://{host}:{port}/")).expect("checked host")
        }
    };
    match &c.database {
        Database::Provided { password, .. } => {
            let _ = u.set_username("postgres");
            let _ = u.set_password(Some(password));
            u.set_path(PROVIDED_DB_NAME);
        }
        Database::External {
            db_name,
            username,
            password,
            ssl_mode,
            ..
        } => {
            let _ = u.set_username(username);
            if !password.is_empty() {
                let _ = u.set_password(Some(password));
            }
            u.set_path(db_name);
            u.query_pairs_mut().append_pair("sslmode", ssl_mode);
        }
    }
    u.to_string()
}

/// The Redis URL core and jobservice share.
pub fn redis_url(c: &HarborConfig) -> String {
    match &c.redis {
        Redis::Provided => format!("redis://127.0.0.1:{}/0", c.ports.redis),
        Redis::External {
            host,
            port,
            username,
            password,
            db_index,
        } => {
            let mut u = url::Url::parse(&format!("redis://{host}:{port}/")).expect("checked host");
            if let Some(user) = username {
                let _ = u.set_username(user);
            }
            if let Some(pw) = password {
                let _ = u.set_password(Some(pw));
            }
            u.set_path(&db_index.to_string());
            u.to_string()
        }
    }
}

/// Renders every file. `out` is where `config/` and `secret/` live.
pub fn render(c: &HarborConfig, secrets: &Secrets) -> Rendered {
    let p = &c.ports;
    let log = || Log {
        level: &c.log_level,
        json: false,
    };
    let db = || Db {
        url: database_url(c),
        max_connections: c.database.max_open_conns(),
    };
    let redis = || CoreRedis {
        url: redis_url(c),
        prefix: REDIS_PREFIX,
    };
    let registry = || InternalRegistry {
        url: http(p.registry),
        internal_secret: &secrets.internal_secret,
    };
    let core = CoreToml {
        listen: local(p.core),
        external_url: &c.external_url,
        admin_initial_password: &c.admin_password,
        database: db(),
        redis: redis(),
        token: CoreTokenToml {
            private_key: path(&secrets.token_key),
            issuer: TOKEN_ISSUER,
            service: TOKEN_SERVICE,
        },
        registry: registry(),
        jobservice: Url {
            url: http(p.jobservice),
        },
        log: log(),
    };
    let registry_data = path(&c.data_volume.join("registry"));
    let registry_toml = RegistryToml {
        listen: local(p.registry),
        data_dir: registry_data.clone(),
        internal_secret: &secrets.internal_secret,
        database: db(),
        auth: RegistryAuth {
            realm: format!("{}/service/token", c.external_url),
            service: TOKEN_SERVICE,
            issuer: TOKEN_ISSUER,
            certificate: path(&secrets.token_crt),
        },
        uploads: Uploads {
            purge_enabled: c.upload_purging.enabled,
            max_age_secs: c.upload_purging.age_secs,
            interval_secs: c.upload_purging.interval_secs,
        },
        log: log(),
    };
    let jobservice = JobserviceToml {
        listen: local(p.jobservice),
        max_job_workers: c.max_job_workers,
        job_log_retention_days: c.job_log_retention_days,
        database: db(),
        redis: redis(),
        registry: registry(),
        log: log(),
    };
    let proxy = ProxyToml {
        listen_http: format!("0.0.0.0:{}", c.http_port),
        listen_https: c.https.as_ref().map(|h| format!("0.0.0.0:{}", h.port)),
        external_url: &c.external_url,
        tls: c.https.as_ref().map(|_| ProxyTls {
            certificate: path(&secrets.dir.join("cert/server.crt")),
            private_key: path(&secrets.dir.join("cert/server.key")),
        }),
        upstreams: Upstreams {
            registry: http(p.registry),
            core: http(p.core),
            portal: http(p.portal),
            registry_storage: registry_data,
        },
        log: log(),
    };
    Rendered {
        core: to_toml(&core),
        registry: to_toml(&registry_toml),
        jobservice: to_toml(&jobservice),
        proxy: to_toml(&proxy),
        install_env: install_env(c),
    }
}

/// Variables for `install.sh` and `docker compose --env-file`: no secrets,
/// plain values (data_volume is checked to need no quoting). None starts
/// with a service's `WHARF_<SERVICE>_` prefix, which would read as a config key.
fn install_env(c: &HarborConfig) -> String {
    let p = &c.ports;
    let provided_db = matches!(c.database, Database::Provided { .. });
    let provided_redis = matches!(c.redis, Redis::Provided);
    // Each of core, registry and jobservice opens up to max_open_conns.
    let pg_max = 3 * c.database.max_open_conns() + 10;
    let lines = [
        ("WHARF_DATA_VOLUME", path(&c.data_volume)),
        ("WHARF_EXTERNAL_URL", c.external_url.clone()),
        ("WHARF_PORT_HTTP", c.http_port.to_string()),
        (
            "WHARF_PORT_HTTPS",
            c.https
                .as_ref()
                .map(|h| h.port.to_string())
                .unwrap_or_default(),
        ),
        ("WHARF_PORT_CORE", p.core.to_string()),
        ("WHARF_PORT_REGISTRY", p.registry.to_string()),
        ("WHARF_PORT_JOBSERVICE", p.jobservice.to_string()),
        ("WHARF_PROVIDED_DATABASE", u8::from(provided_db).to_string()),
        ("WHARF_PORT_DATABASE", p.database.to_string()),
        ("WHARF_DATABASE_MAX_CONNECTIONS", pg_max.to_string()),
        ("WHARF_PROVIDED_REDIS", u8::from(provided_redis).to_string()),
        ("WHARF_PORT_REDIS", p.redis.to_string()),
    ];
    let mut s = String::from(
        "# Generated by `wharf-core prepare`; read by install.sh and docker compose.\n",
    );
    for (k, v) in lines {
        s.push_str(&format!("{k}={v}\n"));
    }
    s
}

fn to_toml<T: Serialize>(v: &T) -> String {
    format!(
        "# Generated by `wharf-core prepare` from harbor.yml: edit harbor.yml and run ./install.sh again.\n{}",
        toml::to_string(v).expect("config structs serialize to TOML")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harbor::parse;

    fn secrets() -> Secrets {
        Secrets {
            dir: "/data/secret".into(),
            token_key: "/data/secret/token.key".into(),
            token_crt: "/data/secret/token.crt".into(),
            internal_secret: "s3cr3t".into(),
            secret_key: "/data/secret/secretkey".into(),
            created: vec![],
        }
    }

    #[test]
    fn configs_carry_ports_urls_and_secrets() {
        let c = parse("hostname: reg.example.com\nhttp:\n  port: 8000\nharbor_admin_password: Harbor12345\ndatabase:\n  password: 'p@ss word'\n  max_open_conns: 40\ndata_volume: /data\ninternal_ports:\n  core: 9080\n")
            .unwrap()
            .config;
        let r = render(&c, &secrets());
        let core: toml::Value = toml::from_str(&r.core).unwrap();
        assert_eq!(core["listen"].as_str(), Some("127.0.0.1:9080"));
        assert_eq!(
            core["external_url"].as_str(),
            Some("http://reg.example.com:8000")
        );
        assert_eq!(
            core["database"]["url"].as_str(),
            Some("postgres://postgres:p%40ss%20word@127.0.0.1:5433/registry")
        );
        assert_eq!(core["database"]["max_connections"].as_integer(), Some(40));
        assert_eq!(
            core["redis"]["url"].as_str(),
            Some("redis://127.0.0.1:6380/0")
        );
        assert_eq!(
            core["jobservice"]["url"].as_str(),
            Some("http://127.0.0.1:8888")
        );
        assert_eq!(core["registry"]["internal_secret"].as_str(), Some("s3cr3t"));
        let reg: toml::Value = toml::from_str(&r.registry).unwrap();
        assert_eq!(reg["data_dir"].as_str(), Some("/data/registry"));
        assert_eq!(
            reg["auth"]["realm"].as_str(),
            Some("http://reg.example.com:8000/service/token")
        );
        let js: toml::Value = toml::from_str(&r.jobservice).unwrap();
        assert_eq!(
            js["redis"]["prefix"].as_str(),
            core["redis"]["prefix"].as_str()
        );
        assert_eq!(js["max_job_workers"].as_integer(), Some(10));
        let proxy: toml::Value = toml::from_str(&r.proxy).unwrap();
        assert_eq!(proxy["listen_http"].as_str(), Some("0.0.0.0:8000"));
        assert!(proxy.get("tls").is_none());
        assert_eq!(
            proxy["upstreams"]["core"].as_str(),
            Some("http://127.0.0.1:9080")
        );
        assert_eq!(
            proxy["upstreams"]["registry_storage"].as_str(),
            reg["data_dir"].as_str()
        );
        assert!(r
            .install_env
            .contains("WHARF_DATABASE_MAX_CONNECTIONS=130\n"));
        assert!(r.install_env.contains("WHARF_PROVIDED_DATABASE=1\n"));
    }

    #[test]
    fn external_database_and_redis_urls() {
        let c = parse("hostname: h\nharbor_admin_password: x\ndata_volume: /d\nexternal_database:\n  harbor:\n    host: db\n    port: 5432\n    db_name: harbor\n    username: u\n    password: p/w\n    ssl_mode: disable\nexternal_redis:\n  host: r:6379\n  password: 'a:b'\n  harbor_db_index: 3\n")
            .unwrap()
            .config;
        assert_eq!(
            database_url(&c),
            "postgres://u:p%2Fw@db:5432/harbor?sslmode=disable"
        );
        assert_eq!(redis_url(&c), "redis://:a%3Ab@r:6379/3");
    }
}
