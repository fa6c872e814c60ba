//! `harbor.yml`: the typed model of the keys Wharf reads, and the reader that
//! fills it, checks every value, and lists every key it does not use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

/// What `harbor.yml` says, checked. Everything install needs comes from here.
#[derive(Debug, Clone, PartialEq)]
pub struct HarborConfig {
    pub hostname: String,
    /// `http.port`; the proxy's plain HTTP port.
    pub http_port: u16,
    pub https: Option<Https>,
    /// How clients reach the platform: `external_url`, or built from
    /// `hostname` and the HTTP(S) port.
    pub external_url: String,
    pub admin_password: String,
    pub database: Database,
    pub data_volume: PathBuf,
    pub max_job_workers: u32,
    pub job_log_retention_days: u32,
    /// A tracing filter (`info`, `warn`, …) mapped from Harbor's levels.
    pub log_level: String,
    pub redis: Redis,
    pub upload_purging: UploadPurging,
    pub ports: InternalPorts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Https {
    pub port: u16,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// The Postgres every service uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Database {
    /// Wharf runs its own Postgres on `internal_ports.database`; the `postgres`
    /// user's password is `database.password`.
    Provided {
        password: String,
        max_open_conns: u32,
    },
    /// `external_database.harbor`.
    External {
        host: String,
        port: u16,
        db_name: String,
        username: String,
        password: String,
        ssl_mode: String,
        max_open_conns: u32,
    },
}

/// The Redis core and jobservice share (sessions and the job queue).
#[derive(Debug, Clone, PartialEq)]
pub enum Redis {
    /// Wharf runs its own Redis on `internal_ports.redis`.
    Provided,
    /// `external_redis`.
    External {
        host: String,
        port: u16,
        username: Option<String>,
        password: Option<String>,
        db_index: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct UploadPurging {
    pub enabled: bool,
    pub age_secs: u64,
    pub interval_secs: u64,
}

/// Loopback ports of the services behind the proxy (a Wharf key: Harbor
/// fixes these inside its containers).
#[derive(Debug, Clone, PartialEq)]
pub struct InternalPorts {
    pub core: u16,
    pub registry: u16,
    pub jobservice: u16,
    pub portal: u16,
    /// The provided Postgres (unused with `external_database`).
    pub database: u16,
    /// The provided Redis (unused with `external_redis`).
    pub redis: u16,
}

impl Default for InternalPorts {
    fn default() -> InternalPorts {
        InternalPorts {
            core: 8080,
            registry: 5000,
            jobservice: 8888,
            portal: 8081,
            database: 5433,
            redis: 6380,
        }
    }
}

impl Database {
    pub fn max_open_conns(&self) -> u32 {
        match self {
            Database::Provided { max_open_conns, .. }
            | Database::External { max_open_conns, .. } => *max_open_conns,
        }
    }
}

/// One invalid value: the key's dotted path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A key in the file that Wharf does not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub key: String,
    pub reason: &'static str,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.key, self.reason)
    }
}

/// A parsed file: the model and the keys it ignored.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub config: HarborConfig,
    pub ignored: Vec<Ignored>,
}

/// Why a file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("harbor.yml is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("harbor.yml must be a mapping of keys to values")]
    NotAMapping,
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Invalid>),
}

/// Harbor keys Wharf knows and does not support, with the reason printed
/// next to them. Keys in no list are reported as unknown.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("trivy", "Wharf has no vulnerability scanner yet"),
    ("metric", "Wharf exposes no Prometheus metrics yet"),
    (
        "notification",
        "webhook retry settings are not configurable yet",
    ),
    ("cache", "Wharf has no API cache layer to configure"),
    (
        "proxy",
        "outbound HTTP proxy settings are not supported yet",
    ),
    ("uaa", "UAA authentication is not supported"),
    ("oidc", "OIDC authentication is not supported yet"),
    (
        "internal_tls",
        "services talk over loopback without TLS; only the proxy terminates TLS",
    ),
    (
        "https.strong_ssl_ciphers",
        "the proxy's rustls cipher suites are fixed",
    ),
    (
        "database.max_idle_conns",
        "Wharf's pools keep no fixed number of idle connections",
    ),
    ("database.conn_max_lifetime", "not configurable in Wharf"),
    ("database.conn_max_idle_time", "not configurable in Wharf"),
    (
        "external_database.harbor.max_idle_conns",
        "Wharf's pools keep no fixed number of idle connections",
    ),
    (
        "external_database.harbor.conn_max_lifetime",
        "not configurable in Wharf",
    ),
    (
        "external_database.harbor.conn_max_idle_time",
        "not configurable in Wharf",
    ),
    ("external_database.notary_signer", "Wharf has no Notary"),
    ("external_database.notary_server", "Wharf has no Notary"),
    (
        "external_redis.registry_db_index",
        "core and jobservice share harbor_db_index; the registry does not use Redis",
    ),
    (
        "external_redis.jobservice_db_index",
        "the job queue lives in harbor_db_index next to core, which enqueues to it",
    ),
    (
        "external_redis.trivy_db_index",
        "Wharf has no vulnerability scanner yet",
    ),
    (
        "external_redis.cache_layer_db_index",
        "Wharf has no cache layer",
    ),
    (
        "external_redis.idle_timeout_seconds",
        "not configurable in Wharf",
    ),
    (
        "jobservice.job_loggers",
        "job logs are kept in the database",
    ),
    (
        "jobservice.max_job_duration_hours",
        "not configurable in Wharf yet",
    ),
    (
        "log.local",
        "services log to <data_volume>/logs (native) or to the container log (Docker)",
    ),
    (
        "log.external_endpoint",
        "syslog forwarding is not supported",
    ),
    (
        "storage_service.filesystem",
        "the registry always stores under <data_volume>/registry",
    ),
    (
        "storage_service.ca_bundle",
        "only filesystem storage is supported",
    ),
    (
        "storage_service.redirect",
        "only filesystem storage is supported",
    ),
    (
        "upload_purging.dryrun",
        "only `false` is accepted: Wharf's purge has no dry run",
    ),
];

/// Storage drivers Harbor knows and Wharf does not have yet: naming one is
/// an error, since silently storing elsewhere would surprise the operator.
const STORAGE_DRIVERS: &[&str] = &["s3", "azure", "gcs", "swift", "oss"];

/// Parses and checks `harbor.yml`'s text; every invalid value is reported,
/// not only the first.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let root: Value = serde_norway::from_str(text)?;
    let Value::Mapping(root) = root else {
        return Err(ParseError::NotAMapping);
    };
    let mut r = Reader::default();
    let config = read_config(&mut r, &root);
    if !r.invalid.is_empty() {
        return Err(ParseError::Invalid(r.invalid));
    }
    Ok(Parsed {
        config: config.expect("no errors means a config"),
        ignored: r.ignored,
    })
}

/// Collects invalid values and ignored keys while the model is read.
#[derive(Default)]
struct Reader {
    invalid: Vec<Invalid>,
    ignored: Vec<Ignored>,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// How a value shows in a message: strings quoted, others as written.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "nothing".into(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => show(&t.value),
    }
}

impl Reader {
    fn bad(&mut self, key: &str, message: impl Into<String>) {
        self.invalid.push(Invalid {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Reports the keys of `map` that are not in `known` as ignored.
    fn leftovers(&mut self, map: &Mapping, prefix: &str, known: &[&str]) {
        let known: BTreeSet<&str> = known.iter().copied().collect();
        for k in map.keys() {
            let name = match k {
                Value::String(s) => s.clone(),
                other => show(other),
            };
            if known.contains(name.as_str()) {
                continue;
            }
            let key = join(prefix, &name);
            let reason = UNSUPPORTED
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, r)| *r)
                .unwrap_or("not a key Wharf knows");
            self.ignored.push(Ignored { key, reason });
        }
    }

    /// A sub-mapping; absent or empty (`key:` with nothing) is `None`.
    fn section<'a>(&mut self, map: &'a Mapping, prefix: &str, key: &str) -> Option<&'a Mapping> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                self.bad(
                    &join(prefix, key),
                    format!("must be a mapping of keys, got {}", show(other)),
                );
                None
            }
        }
    }

    fn string(&mut self, map: &Mapping, prefix: &str, key: &str) -> Option<String> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // YAML reads `password: 123456` as a number; take it as written.
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                self.bad(
                    &join(prefix, key),
                    format!("must be a string, got {}", show(other)),
                );
                None
            }
        }
    }

    fn required_string(&mut self, map: &Mapping, prefix: &str, key: &str) -> Option<String> {
        let v = self.string(map, prefix, key);
        match v {
            Some(s) if !s.trim().is_empty() => Some(s),
            _ => {
                self.bad(&join(prefix, key), "is required and must not be empty");
                None
            }
        }
    }

    fn bool(&mut self, map: &Mapping, prefix: &str, key: &str, default: bool) -> bool {
        match map.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.bad(
                    &join(prefix, key),
                    format!("must be true or false, got {}", show(other)),
                );
                default
            }
        }
    }

    /// An integer in `min..=max`.
    fn int(
        &mut self,
        map: &Mapping,
        prefix: &str,
        key: &str,
        (min, max): (u64, u64),
        default: u64,
    ) -> u64 {
        let what = || format!("must be a whole number {min}-{max}");
        match map.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => v,
                _ => {
                    self.bad(&join(prefix, key), format!("{}, got {n}", what()));
                    default
                }
            },
            Some(other) => {
                self.bad(
                    &join(prefix, key),
                    format!("{}, got {}", what(), show(other)),
                );
                default
            }
        }
    }

    fn port(&mut self, map: &Mapping, prefix: &str, key: &str, default: u16) -> u16 {
        match map.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|p| (1..=65535).contains(&p)) => {
                n.as_u64().expect("checked") as u16
            }
            Some(other) => {
                self.bad(
                    &join(prefix, key),
                    format!("must be a port number 1-65535, got {}", show(other)),
                );
                default
            }
        }
    }

    /// A Go duration (`168h`, `30m`, `1h30m`, `90s`) in seconds.
    fn duration(&mut self, map: &Mapping, prefix: &str, key: &str, default: u64) -> u64 {
        let value = match map.get(key) {
            None | Some(Value::Null) => return default,
            Some(v) => v,
        };
        let parsed = match value {
            Value::String(s) => parse_duration(s),
            _ => None,
        };
        match parsed {
            Some(secs) if secs > 0 => secs,
            _ => {
                self.bad(
                    &join(prefix, key),
                    format!(
                        "must be a duration such as \"168h\", \"30m\" or \"1h30m\", got {}",
                        show(value)
                    ),
                );
                default
            }
        }
    }

    /// An existing file named by an absolute path.
    fn file(&mut self, map: &Mapping, prefix: &str, key: &str) -> Option<PathBuf> {
        let s = self.required_string(map, prefix, key)?;
        let p = PathBuf::from(&s);
        if !p.is_absolute() {
            self.bad(
                &join(prefix, key),
                format!("must be an absolute path, got {s:?}"),
            );
            return None;
        }
        if !p.is_file() {
            self.bad(
                &join(prefix, key),
                format!("{s} does not exist or is not a file"),
            );
            return None;
        }
        Some(p)
    }
}

/// Parses a Go duration of whole `h`, `m` and `s` parts.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    digits.is_empty().then_some(total)
}

/// `key` must hold a bare host name or IP address (IPv6 with or without
/// brackets): what the rendered URLs put between `//` and `:port`.
fn check_hostname(r: &mut Reader, key: &str, hostname: &str) -> bool {
    let bracketed = if hostname.contains(':') && !hostname.starts_with('[') {
        format!("[{hostname}]")
    } else {
        hostname.to_owned()
    };
    let ok = !hostname.contains("://")
        && !hostname.contains('/')
        && !hostname.chars().any(char::is_whitespace)
        && url::Url::parse(&format!("http://{bracketed}"))
            .ok()
            .is_some_and(|u| u.host_str().is_some() && u.port().is_none() && u.path() == "/");
    if !ok {
        r.bad(
            key,
            format!(
                "must be a host name or IP address without scheme, port or path, got {hostname:?}"
            ),
        );
    }
    ok
}

fn check_data_volume(r: &mut Reader, s: &str) -> Option<PathBuf> {
    let p = Path::new(s);
    if !p.is_absolute() {
        r.bad(
            "data_volume",
            format!("must be an absolute path, got {s:?}"),
        );
        return None;
    }
    // The path goes into shell and compose variables unquoted.
    if s.chars()
        .any(|c| c.is_whitespace() || "\"'$`\\#".contains(c) || c.is_control())
    {
        r.bad(
            "data_volume",
            format!("must not contain spaces, quotes, `$`, `#` or backslashes, got {s:?}"),
        );
        return None;
    }
    Some(p.to_path_buf())
}

fn log_level(r: &mut Reader, map: Option<&Mapping>) -> String {
    let Some(map) = map else {
        return "info".into();
    };
    let level = r
        .string(map, "log", "level")
        .unwrap_or_else(|| "info".into());
    r.leftovers(map, "log", &["level"]);
    match level.to_ascii_lowercase().as_str() {
        "trace" => "trace".into(),
        "debug" => "debug".into(),
        "info" => "info".into(),
        "warning" | "warn" => "warn".into(),
        "error" | "fatal" => "error".into(),
        _ => {
            r.bad(
                "log.level",
                format!("must be one of debug, info, warning, error, fatal, got {level:?}"),
            );
            "info".into()
        }
    }
}

fn read_config(r: &mut Reader, root: &Mapping) -> Option<HarborConfig> {
    let hostname = r.required_string(root, "", "hostname");
    if let Some(h) = &hostname {
        check_hostname(r, "hostname", h);
    }

    let http_port = match r.section(root, "", "http") {
        Some(http) => {
            let p = r.port(http, "http", "port", 80);
            r.leftovers(http, "http", &["port"]);
            p
        }
        None => 80,
    };

    let https = r.section(root, "", "https").and_then(|m| {
        let port = r.port(m, "https", "port", 443);
        let certificate = r.file(m, "https", "certificate");
        let private_key = r.file(m, "https", "private_key");
        r.leftovers(m, "https", &["port", "certificate", "private_key"]);
        Some(Https {
            port,
            certificate: certificate?,
            private_key: private_key?,
        })
    });

    let external_url = match r.string(root, "", "external_url") {
        Some(u) => {
            match url::Url::parse(&u) {
                Ok(parsed)
                    if matches!(parsed.scheme(), "http" | "https")
                        && parsed.host_str().is_some()
                        && matches!(parsed.path(), "" | "/") => {}
                _ => r.bad(
                    "external_url",
                    format!(
                        "must be an http:// or https:// URL with a host and no path, got {u:?}"
                    ),
                ),
            }
            u.trim_end_matches('/').to_owned()
        }
        None => {
            let host = hostname.clone().unwrap_or_default();
            match &https {
                Some(h) if h.port == 443 => format!("https://{host}"),
                Some(h) => format!("https://{host}:{}", h.port),
                None if http_port == 80 => format!("http://{host}"),
                None => format!("http://{host}:{http_port}"),
            }
        }
    };

    let admin_password = r.required_string(root, "", "harbor_admin_password");

    let data_volume = r
        .required_string(root, "", "data_volume")
        .and_then(|s| check_data_volume(r, &s));

    // storage_service: filesystem only.
    if let Some(storage) = r.section(root, "", "storage_service") {
        for driver in STORAGE_DRIVERS {
            if storage.contains_key(*driver) {
                r.bad(
                    &format!("storage_service.{driver}"),
                    "is not supported yet: Wharf stores images on the filesystem under <data_volume>/registry; remove this section",
                );
            }
        }
        let mut known = STORAGE_DRIVERS.to_vec();
        known.push("filesystem");
        // `filesystem:` with nothing under it is the plain choice and needs no note.
        if matches!(storage.get("filesystem"), Some(Value::Mapping(m)) if !m.is_empty()) {
            known.retain(|k| *k != "filesystem");
        }
        r.leftovers(storage, "storage_service", &known);
    }

    let (max_job_workers, job_log_retention_days) = match r.section(root, "", "jobservice") {
        Some(m) => {
            let w = r.int(m, "jobservice", "max_job_workers", (1, 1000), 10) as u32;
            // Harbor's `logger_sweeper_duration` is in days.
            let d = r.int(m, "jobservice", "logger_sweeper_duration", (1, 3650), 14) as u32;
            r.leftovers(
                m,
                "jobservice",
                &["max_job_workers", "logger_sweeper_duration"],
            );
            (w, d)
        }
        None => (10, 14),
    };

    let log = r.section(root, "", "log");
    let log_level = log_level(r, log);

    // database, and external_database.harbor when given.
    let db_section = r.section(root, "", "database");
    let external_db = r.section(root, "", "external_database");
    let external_harbor = external_db.and_then(|m| {
        let h = r.section(m, "external_database", "harbor");
        r.leftovers(m, "external_database", &["harbor"]);
        h
    });
    let database = match external_harbor {
        Some(m) => {
            let p = "external_database.harbor";
            let host = r
                .required_string(m, p, "host")
                .filter(|h| check_hostname(r, &join(p, "host"), h));
            let port = r.port(m, p, "port", 5432);
            let db_name = r
                .string(m, p, "db_name")
                .unwrap_or_else(|| "registry".into());
            let username = r
                .string(m, p, "username")
                .unwrap_or_else(|| "postgres".into());
            let password = r.string(m, p, "password").unwrap_or_default();
            let ssl_mode = r
                .string(m, p, "ssl_mode")
                .unwrap_or_else(|| "disable".into());
            if !matches!(ssl_mode.as_str(), "disable" | "allow" | "prefer") {
                r.bad(
                    &join(p, "ssl_mode"),
                    format!("Wharf's Postgres client is built without TLS: use disable, allow or prefer, got {ssl_mode:?}"),
                );
            }
            let max_open_conns = r.int(m, p, "max_open_conns", (1, 1000), 20) as u32;
            r.leftovers(
                m,
                p,
                &[
                    "host",
                    "port",
                    "db_name",
                    "username",
                    "password",
                    "ssl_mode",
                    "max_open_conns",
                ],
            );
            if let Some(d) = db_section {
                for k in d.keys() {
                    let name = k.as_str().unwrap_or("?");
                    r.ignored.push(Ignored {
                        key: format!("database.{name}"),
                        reason: "external_database is used instead",
                    });
                }
            }
            host.map(|host| Database::External {
                host,
                port,
                db_name,
                username,
                password,
                ssl_mode,
                max_open_conns,
            })
        }
        None => {
            let empty = Mapping::new();
            let d = match db_section {
                Some(d) => d,
                None => {
                    r.bad("database", "is required (or set external_database.harbor)");
                    &empty
                }
            };
            let password = if db_section.is_some() {
                r.required_string(d, "database", "password")
            } else {
                None
            };
            let max_open_conns = r.int(d, "database", "max_open_conns", (1, 1000), 100) as u32;
            r.leftovers(d, "database", &["password", "max_open_conns"]);
            password.map(|password| Database::Provided {
                password,
                max_open_conns,
            })
        }
    };

    let redis = match r.section(root, "", "external_redis") {
        Some(m) => {
            let p = "external_redis";
            let host = r.required_string(m, p, "host");
            let parsed = host.as_deref().and_then(|h| {
                let u = url::Url::parse(&format!("redis://{h}")).ok()?;
                (u.path() == "" || u.path() == "/").then_some(())?;
                Some((u.host_str()?.to_owned(), u.port().unwrap_or(6379)))
            });
            if host.is_some() && parsed.is_none() {
                r.bad(
                    "external_redis.host",
                    format!(
                        "must be host:port, got {:?}",
                        host.clone().unwrap_or_default()
                    ),
                );
            }
            if let Some(s) = r.string(m, p, "sentinel_master_set") {
                if !s.is_empty() {
                    r.bad(
                        "external_redis.sentinel_master_set",
                        "Redis Sentinel is not supported yet; name one Redis server in host",
                    );
                }
            }
            let username = r.string(m, p, "username").filter(|s| !s.is_empty());
            let password = r.string(m, p, "password").filter(|s| !s.is_empty());
            let db_index = r.int(m, p, "harbor_db_index", (0, 15), 0) as u32;
            r.leftovers(
                m,
                p,
                &[
                    "host",
                    "username",
                    "password",
                    "harbor_db_index",
                    "sentinel_master_set",
                ],
            );
            parsed.map(|(host, port)| Redis::External {
                host,
                port,
                username,
                password,
                db_index,
            })
        }
        None => Some(Redis::Provided),
    };

    let upload_purging = match r.section(root, "", "upload_purging") {
        Some(m) => {
            let p = "upload_purging";
            let enabled = r.bool(m, p, "enabled", true);
            let age_secs = r.duration(m, p, "age", 168 * 3600);
            let interval_secs = r.duration(m, p, "interval", 24 * 3600);
            if r.bool(m, p, "dryrun", false) {
                r.bad(
                    "upload_purging.dryrun",
                    "Wharf's upload purge has no dry run: set it to false, or set enabled: false",
                );
            }
            r.leftovers(m, p, &["enabled", "age", "interval", "dryrun"]);
            UploadPurging {
                enabled,
                age_secs,
                interval_secs,
            }
        }
        None => UploadPurging {
            enabled: true,
            age_secs: 168 * 3600,
            interval_secs: 24 * 3600,
        },
    };

    let ports = match r.section(root, "", "internal_ports") {
        Some(m) => {
            let d = InternalPorts::default();
            let p = "internal_ports";
            let ports = InternalPorts {
                core: r.port(m, p, "core", d.core),
                registry: r.port(m, p, "registry", d.registry),
                jobservice: r.port(m, p, "jobservice", d.jobservice),
                portal: r.port(m, p, "portal", d.portal),
                database: r.port(m, p, "database", d.database),
                redis: r.port(m, p, "redis", d.redis),
            };
            r.leftovers(
                m,
                p,
                &[
                    "core",
                    "registry",
                    "jobservice",
                    "portal",
                    "database",
                    "redis",
                ],
            );
            ports
        }
        None => InternalPorts::default(),
    };
    check_ports(r, http_port, https.as_ref(), &ports, &database, &redis);

    r.leftovers(
        root,
        "",
        &[
            "_version",
            "hostname",
            "http",
            "https",
            "external_url",
            "harbor_admin_password",
            "database",
            "data_volume",
            "storage_service",
            "jobservice",
            "log",
            "external_database",
            "external_redis",
            "upload_purging",
            "internal_ports",
        ],
    );

    Some(HarborConfig {
        hostname: hostname?,
        http_port,
        https,
        external_url,
        admin_password: admin_password?,
        database: database?,
        data_volume: data_volume?,
        max_job_workers,
        job_log_retention_days,
        log_level,
        redis: redis?,
        upload_purging,
        ports,
    })
}

/// Every listening port on this host is used once.
fn check_ports(
    r: &mut Reader,
    http: u16,
    https: Option<&Https>,
    p: &InternalPorts,
    db: &Option<Database>,
    redis: &Option<Redis>,
) {
    let mut used: Vec<(&str, u16)> = vec![("http.port", http)];
    if let Some(h) = https {
        used.push(("https.port", h.port));
    }
    used.extend([
        ("internal_ports.core", p.core),
        ("internal_ports.registry", p.registry),
        ("internal_ports.jobservice", p.jobservice),
        ("internal_ports.portal", p.portal),
    ]);
    if matches!(db, Some(Database::Provided { .. })) {
        used.push(("internal_ports.database", p.database));
    }
    if matches!(redis, Some(Redis::Provided)) {
        used.push(("internal_ports.redis", p.redis));
    }
    for (i, (key, port)) in used.iter().enumerate() {
        if let Some((other, _)) = used[..i].iter().find(|(_, q)| q == port) {
            r.bad(key, format!("{port} is already used by {other}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "hostname: reg.example.com\nharbor_admin_password: Harbor12345\ndatabase:\n  password: root123\ndata_volume: /data\n";

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Err(ParseError::Invalid(v)) => v.iter().map(ToString::to_string).collect(),
            other => panic!("expected invalid values, got {other:?}"),
        }
    }

    #[test]
    fn minimal_file_gets_harbor_defaults() {
        let p = parse(MINIMAL).unwrap();
        let c = p.config;
        assert_eq!(c.http_port, 80);
        assert_eq!(c.external_url, "http://reg.example.com");
        assert_eq!(c.ports, InternalPorts::default());
        assert_eq!(c.redis, Redis::Provided);
        assert_eq!(
            c.database,
            Database::Provided {
                password: "root123".into(),
                max_open_conns: 100
            }
        );
        assert_eq!(c.upload_purging.age_secs, 168 * 3600);
        assert!(p.ignored.is_empty(), "{:?}", p.ignored);
    }

    #[test]
    fn invalid_values_name_the_key_and_the_value() {
        let e = errors(&format!("{MINIMAL}http:\n  port: abc\n"));
        assert_eq!(
            e,
            vec![r#"http.port: must be a port number 1-65535, got "abc""#]
        );
        let e = errors(&format!("{MINIMAL}http:\n  port: 70000\njobservice:\n  max_job_workers: 0\nlog:\n  level: loud\nupload_purging:\n  age: forever\n"));
        assert_eq!(
            e,
            vec![
                "http.port: must be a port number 1-65535, got 70000",
                "jobservice.max_job_workers: must be a whole number 1-1000, got 0",
                r#"log.level: must be one of debug, info, warning, error, fatal, got "loud""#,
                r#"upload_purging.age: must be a duration such as "168h", "30m" or "1h30m", got "forever""#,
            ]
        );
        let e = errors("hostname: https://x.example.com/\ndata_volume: data\n");
        assert!(
            e.iter()
                .any(|m| m.starts_with("hostname: must be a host name")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m == "harbor_admin_password: is required and must not be empty"),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m == r#"data_volume: must be an absolute path, got "data""#),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.starts_with("database: is required")),
            "{e:?}"
        );
        let e = errors(&format!("{MINIMAL}https:\n  port: 443\n  certificate: /nonexistent/cert.pem\n  private_key: /nonexistent/key.pem\n"));
        assert_eq!(
            e[0],
            "https.certificate: /nonexistent/cert.pem does not exist or is not a file"
        );
        let e = errors(&format!(
            "{MINIMAL}storage_service:\n  s3:\n    bucket: b\n"
        ));
        assert!(
            e[0].starts_with("storage_service.s3: is not supported yet"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{MINIMAL}external_database:\n  harbor:\n    host: \"db host/x\"\n    password: p\n"
        ));
        assert_eq!(
            e,
            vec![
                r#"external_database.harbor.host: must be a host name or IP address without scheme, port or path, got "db host/x""#
            ]
        );
        let e = errors(&format!("{MINIMAL}internal_ports:\n  core: 80\n"));
        assert_eq!(
            e,
            vec!["internal_ports.core: 80 is already used by http.port"]
        );
    }

    #[test]
    fn unsupported_and_unknown_keys_are_listed_by_name() {
        let p = parse(&format!("{MINIMAL}trivy:\n  ignore_unfixed: false\nmetric:\n  enabled: true\ndatabase_typo: 1\nlog:\n  level: warning\n  local:\n    rotate_count: 50\n")).unwrap();
        let keys: Vec<&str> = p.ignored.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, vec!["log.local", "trivy", "metric", "database_typo"]);
        assert_eq!(p.ignored[3].reason, "not a key Wharf knows");
        assert_eq!(p.config.log_level, "warn");
    }

    #[test]
    fn external_services_and_https_build_their_urls() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "x").unwrap();
        let text = format!(
            "hostname: reg.example.com\nharbor_admin_password: pw\ndata_volume: /data\nhttps:\n  port: 8443\n  certificate: {c}\n  private_key: {c}\nexternal_database:\n  harbor:\n    host: db.example.com\n    port: 5432\n    db_name: registry\n    username: harbor\n    password: s3cr3t\n    ssl_mode: disable\n    max_open_conns: 30\n    max_idle_conns: 2\nexternal_redis:\n  host: redis.example.com:6390\n  password: rpw\n  registry_db_index: 1\n",
            c = cert.display()
        );
        let p = parse(&text).unwrap();
        assert_eq!(p.config.external_url, "https://reg.example.com:8443");
        assert!(
            matches!(p.config.database, Database::External { ref host, max_open_conns: 30, .. } if host == "db.example.com")
        );
        assert_eq!(
            p.config.redis,
            Redis::External {
                host: "redis.example.com".into(),
                port: 6390,
                username: None,
                password: Some("rpw".into()),
                db_index: 0
            }
        );
        let keys: Vec<&str> = p.ignored.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "external_database.harbor.max_idle_conns",
                "external_redis.registry_db_index"
            ]
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("168h"), Some(168 * 3600));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("1d"), None);
    }
}
