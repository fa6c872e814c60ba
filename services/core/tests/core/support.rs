//! Test harness: a fresh database per site (cloned from a migrated template),
//! a fresh Redis key prefix, a token key pair, and the real core and registry
//! processes wired to each other.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::process::{Child, Command};

pub const CORE_BIN: &str = env!("CARGO_BIN_EXE_wharf-core");
pub const ADMIN_PASSWORD: &str = "Harbor12345";

/// The registry binary of this workspace, built on first use if needed.
/// Always ask cargo: a stale registry binary would test old policy code.
pub fn registry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        wharf_testkit::workspace_bin(Path::new(CORE_BIN), "wharf-registry", "wharf-registry")
    })
    .clone()
}

/// The jobservice binary of this workspace, built on first use if needed.
pub fn jobservice_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        wharf_testkit::workspace_bin(Path::new(CORE_BIN), "wharf-jobservice", "wharf-jobservice")
    })
    .clone()
}

/// A fresh migrated database per test, dropped when the test ends.
pub use wharf_testkit::TestDb;

pub use wharf_testkit::{redis_url, RedisPrefix};

fn keypair(dir: &Path) {
    wharf_testkit::self_signed_cert(
        &dir.join("token.key"),
        &dir.join("token.crt"),
        &["-subj", "/CN=wharf-test-token"],
    );
}

async fn spawn(bin: &Path, envs: &[(String, String)]) -> (Child, String) {
    wharf_testkit::spawn_service(Command::new(bin).envs(envs.iter().cloned())).await
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A running platform: core and registry sharing one catalogue, with core's
/// token service as the registry's realm.
/// Fields drop in order: the processes stop before their database goes.
pub struct Site {
    core_child: Option<Child>,
    registry_child: Option<Child>,
    jobservice_child: Option<Child>,
    pub jobservice: String,
    pub core: String,
    pub registry: String,
    pub registry_addr: String,
    pub dir: tempfile::TempDir,
    pub db: TestDb,
    pub redis: RedisPrefix,
    pub http: reqwest::Client,
    core_env: Vec<(String, String)>,
    core_addr: String,
}

pub const INTERNAL_SECRET: &str = "test-internal-secret-0123456789";

impl Site {
    pub async fn start() -> Site {
        let dir = tempfile::tempdir().unwrap();
        keypair(dir.path());
        let db = TestDb::new().await;
        let redis = RedisPrefix::unique();
        // Core's address must be known before the registry starts (it is the realm).
        let core_addr = free_addr();
        let registry_env = vec![
            ("WHARF_REGISTRY_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "WHARF_REGISTRY_DATA_DIR".to_owned(),
                dir.path().join("registry").display().to_string(),
            ),
            ("WHARF_REGISTRY_DATABASE__URL".to_owned(), db.url.clone()),
            ("WHARF_REGISTRY_LOG__LEVEL".to_owned(), "warn".to_owned()),
            (
                "WHARF_REGISTRY_AUTH__REALM".to_owned(),
                format!("http://{core_addr}/service/token"),
            ),
            (
                "WHARF_REGISTRY_AUTH__SERVICE".to_owned(),
                "harbor-registry".to_owned(),
            ),
            (
                "WHARF_REGISTRY_AUTH__ISSUER".to_owned(),
                "harbor-token-issuer".to_owned(),
            ),
            (
                "WHARF_REGISTRY_AUTH__CERTIFICATE".to_owned(),
                dir.path().join("token.crt").display().to_string(),
            ),
            (
                "WHARF_REGISTRY_INTERNAL_SECRET".to_owned(),
                INTERNAL_SECRET.to_owned(),
            ),
            // The same grace window as the site's jobservice, as install renders it.
            ("WHARF_REGISTRY_GC_GRACE_SECS".to_owned(), "0".to_owned()),
        ];
        let (registry_child, registry_addr) = spawn(&registry_bin(), &registry_env).await;
        let fp = dir.path().join("failpoints");
        std::fs::create_dir_all(&fp).unwrap();
        let jobservice_env = vec![
            (
                "WHARF_JOBSERVICE_LISTEN".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
            (
                "WHARF_JOBSERVICE_MAX_JOB_WORKERS".to_owned(),
                "2".to_owned(),
            ),
            ("WHARF_JOBSERVICE_DATABASE__URL".to_owned(), db.url.clone()),
            ("WHARF_JOBSERVICE_REDIS__URL".to_owned(), redis_url()),
            ("WHARF_JOBSERVICE_REDIS__PREFIX".to_owned(), redis.0.clone()),
            (
                "WHARF_JOBSERVICE_REGISTRY__URL".to_owned(),
                format!("http://{registry_addr}"),
            ),
            (
                "WHARF_JOBSERVICE_REGISTRY__INTERNAL_SECRET".to_owned(),
                INTERNAL_SECRET.to_owned(),
            ),
            ("WHARF_JOBSERVICE_GC__GRACE_SECS".to_owned(), "0".to_owned()),
            (
                "WHARF_JOBSERVICE_GC__RECOVER_AFTER_SECS".to_owned(),
                "2".to_owned(),
            ),
            (
                "WHARF_JOBSERVICE_QUEUE__HEARTBEAT_SECS".to_owned(),
                "1".to_owned(),
            ),
            (
                "WHARF_JOBSERVICE_QUEUE__LEASE_SECS".to_owned(),
                "4".to_owned(),
            ),
            (
                "WHARF_JOBSERVICE_QUEUE__SWEEP_INTERVAL_SECS".to_owned(),
                "1".to_owned(),
            ),
            ("WHARF_JOBSERVICE_LOG__LEVEL".to_owned(), "warn".to_owned()),
            ("WHARF_FAILPOINTS_DIR".to_owned(), fp.display().to_string()),
        ];
        let (jobservice_child, jobservice_addr) = spawn(&jobservice_bin(), &jobservice_env).await;
        let core_env = vec![
            ("WHARF_CORE_LISTEN".to_owned(), core_addr.clone()),
            (
                "WHARF_CORE_EXTERNAL_URL".to_owned(),
                format!("http://{core_addr}"),
            ),
            ("WHARF_CORE_DATABASE__URL".to_owned(), db.url.clone()),
            ("WHARF_CORE_REDIS__URL".to_owned(), redis_url()),
            ("WHARF_CORE_REDIS__PREFIX".to_owned(), redis.0.clone()),
            (
                "WHARF_CORE_TOKEN__PRIVATE_KEY".to_owned(),
                dir.path().join("token.key").display().to_string(),
            ),
            (
                "WHARF_CORE_ADMIN_INITIAL_PASSWORD".to_owned(),
                ADMIN_PASSWORD.to_owned(),
            ),
            (
                "WHARF_CORE_REGISTRY__URL".to_owned(),
                format!("http://{registry_addr}"),
            ),
            (
                "WHARF_CORE_REGISTRY__INTERNAL_SECRET".to_owned(),
                INTERNAL_SECRET.to_owned(),
            ),
            ("WHARF_CORE_LOG__LEVEL".to_owned(), "warn".to_owned()),
            (
                "WHARF_CORE_JOBSERVICE__URL".to_owned(),
                format!("http://{jobservice_addr}"),
            ),
        ];
        let (core_child, core_addr) = spawn(Path::new(CORE_BIN), &core_env).await;
        Site {
            core: format!("http://{core_addr}"),
            registry: format!("http://{registry_addr}"),
            registry_addr,
            dir,
            db,
            redis,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            core_child: Some(core_child),
            registry_child: Some(registry_child),
            jobservice_child: Some(jobservice_child),
            jobservice: format!("http://{jobservice_addr}"),
            core_env,
            core_addr,
        }
    }

    /// The directory the site's jobservice reads its failpoints from
    /// (`<name>.pause` arms one, `<name>.hit` says it was reached).
    pub fn failpoints(&self) -> PathBuf {
        self.dir.path().join("failpoints")
    }

    /// `kill -9` core (the registry keeps serving).
    pub async fn kill_core(&mut self) {
        if let Some(mut c) = self.core_child.take() {
            c.kill().await.unwrap();
        }
    }

    /// `kill -9` jobservice (queued jobs wait in Postgres).
    pub async fn kill_jobservice(&mut self) {
        if let Some(mut c) = self.jobservice_child.take() {
            c.kill().await.unwrap();
        }
    }

    /// `kill -9` the registry (core keeps serving).
    pub async fn kill_registry(&mut self) {
        if let Some(mut c) = self.registry_child.take() {
            c.kill().await.unwrap();
        }
    }

    /// Starts core again on the same address, database and Redis prefix.
    pub async fn restart_core(&mut self) {
        self.kill_core().await;
        let (child, _) = spawn(Path::new(CORE_BIN), &self.core_env).await;
        self.core_child = Some(child);
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v2.0{path}", self.core)
    }

    /// A request to the API as `admin`.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.api(path))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
    }

    pub fn as_user(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &str,
        password: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.api(path))
            .basic_auth(user, Some(password))
    }
}

pub use wharf_testkit::skopeo;

/// Writes a multi-layer OCI image layout with real tar+gzip layers; returns the manifest digest.
pub use wharf_testkit::oci::write_image as oci_image;
