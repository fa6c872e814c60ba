//! Wharf's prepare step (Harbor's `prepare`): reads and checks `harbor.yml`,
//! renders one config per service and creates the install's secrets under
//! `data_volume`, so that no service ever reads `harbor.yml` itself.
//!
//! `wharf-core prepare --config harbor.yml [--out DIR]` runs [`prepare`];
//! `install.sh` runs that, then starts the platform on the files it wrote.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

pub mod harbor;
pub mod render;
pub mod secrets;

pub use harbor::{HarborConfig, Ignored, Invalid};

/// Why prepare stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(#[from] harbor::ParseError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Secret(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What one prepare run did.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub config: HarborConfig,
    /// Keys of the file that Wharf does not use.
    pub ignored: Vec<Ignored>,
    /// Holds `config/` and `secret/`: `--out`, or `data_volume`.
    pub out: PathBuf,
    /// Every file written, configs first.
    pub written: Vec<PathBuf>,
    /// Secrets made by this run; empty when all were kept.
    pub created_secrets: Vec<PathBuf>,
}

/// The services that get a config file, in start order.
pub const SERVICES: [&str; 4] = ["registry", "core", "jobservice", "proxy"];

/// Reads `harbor_yml`, checks it, and writes `<out>/config/{core,registry,
/// jobservice,proxy}.toml`, `<out>/config/install.env` and the secrets in
/// `<out>/secret/` (kept when they exist). `out` defaults to `data_volume`.
/// Nothing is written when the file is invalid.
pub fn prepare(harbor_yml: &Path, out: Option<&Path>) -> Result<Prepared, Error> {
    let text = std::fs::read_to_string(harbor_yml).map_err(|source| Error::Read {
        path: harbor_yml.to_path_buf(),
        source,
    })?;
    let parsed = harbor::parse(&text)?;
    let c = parsed.config;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| c.data_volume.clone());
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let secrets = secrets::ensure(&out.join("secret"))?;
    let rendered = render::render(&c, &secrets);
    let config_dir = out.join("config");
    secrets::create_private_dir(&config_dir)?;
    let mut written = vec![];
    for (name, text) in [
        ("registry.toml", &rendered.registry),
        ("core.toml", &rendered.core),
        ("jobservice.toml", &rendered.jobservice),
        ("proxy.toml", &rendered.proxy),
        ("install.env", &rendered.install_env),
    ] {
        let path = config_dir.join(name);
        secrets::write_private(&path, text.as_bytes())?;
        written.push(path);
    }
    // The provided Postgres's superuser password (initdb --pwfile, and the
    // compose bundle's POSTGRES_PASSWORD_FILE); rendered on every run.
    if let harbor::Database::Provided { password, .. } = &c.database {
        let path = secrets.dir.join("database_password");
        secrets::write_private(&path, password.as_bytes())?;
        written.push(path);
    }
    // The proxy reads copies of the HTTPS files, so the Docker bundle needs
    // only data_volume mounted (as Harbor's prepare does).
    if let Some(h) = &c.https {
        let cert_dir = secrets.dir.join("cert");
        secrets::create_private_dir(&cert_dir)?;
        for (from, name) in [
            (&h.certificate, "server.crt"),
            (&h.private_key, "server.key"),
        ] {
            let bytes = std::fs::read(from).map_err(|e| Error::io(from, e))?;
            let path = cert_dir.join(name);
            secrets::write_private(&path, &bytes)?;
            written.push(path);
        }
    }
    Ok(Prepared {
        config: c,
        ignored: parsed.ignored,
        out,
        written,
        created_secrets: secrets.created,
    })
}

/// [`prepare`] for the command line: ignored keys and what was written go
/// to stderr, one line each; stdout gets the path of `install.env`, for
/// `install.sh`.
pub fn prepare_and_report(harbor_yml: &Path, out: Option<&Path>) -> Result<Prepared, Error> {
    let p = prepare(harbor_yml, out)?;
    for i in &p.ignored {
        eprintln!("harbor.yml: ignored {i}");
    }
    for f in &p.created_secrets {
        eprintln!("created secret {}", f.display());
    }
    eprintln!(
        "rendered {} for {} in {}",
        SERVICES.join(", "),
        p.config.external_url,
        p.out.join("config").display()
    );
    println!("{}", p.out.join("config/install.env").display());
    Ok(p)
}
