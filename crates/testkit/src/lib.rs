//! Test support shared by the services' integration tests: a fresh, migrated
//! Postgres database per test, dropped when the test ends, so nothing is left
//! on the server. Migrations run through the same code as `wharf-registry
//! migrate`.

pub mod oci;

use sqlx::Connection;

/// The server the tests use: `WHARF_TEST_DATABASE_URL`, or the local trust-auth Postgres.
pub fn admin_url() -> String {
    std::env::var("WHARF_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn db_url(name: &str) -> String {
    let base = admin_url();
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{prefix}/{name}")
}

async fn admin() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&admin_url())
        .await
        .expect("connect to the test Postgres (see README)")
}

pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Creates and migrates a database with a unique name.
    pub async fn new() -> TestDb {
        let name = format!("wharf_t_{}_{}", std::process::id(), rand::random::<u32>());
        let mut c = admin().await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .expect("create test database");
        let db = TestDb {
            url: db_url(&name),
            name,
        };
        let pool = db.connect().await;
        wharf_catalog::migrate(&pool)
            .await
            .expect("migrate test database");
        pool.close().await;
        db
    }

    pub async fn connect(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url)
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; a
        // thread with its own runtime does the async work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut c = admin().await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut c)
                    .await;
            });
        })
        .join();
    }
}

/// The Redis the tests use: `WHARF_TEST_REDIS_URL`, or the local server.
pub fn redis_url() -> String {
    std::env::var("WHARF_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A Redis key prefix of its own for one test; every key under it is
/// deleted when dropped.
pub struct RedisPrefix(pub String);

impl RedisPrefix {
    pub fn unique() -> RedisPrefix {
        RedisPrefix(format!(
            "wharf-test-{}-{}:",
            std::process::id(),
            rand::random::<u32>()
        ))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(client) = redis::Client::open(redis_url()) {
                if let Ok(mut c) = client.get_connection() {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{prefix}*"))
                        .query(&mut c)
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
                    }
                }
            }
        })
        .join();
    }
}

/// Writes an RSA key and a self-signed certificate with the openssl CLI;
/// `extra` carries the subject and any extensions.
pub fn self_signed_cert(key: &std::path::Path, cert: &std::path::Path, extra: &[&str]) {
    let st = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(extra)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(st.success(), "openssl could not make a certificate");
}

/// Starts a Wharf service binary (killed when dropped) and waits for the
/// `listening on ADDR` line it prints when ready; returns it and ADDR.
pub async fn spawn_service(cmd: &mut tokio::process::Command) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the service binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("the service printed its ready line within 60 s")
        .expect("reading the service's stdout")
        .expect("a ready line before the service exited");
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
        .to_owned();
    // Keep draining stdout so the service never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// The workspace binary `bin` of `package`, next to `sibling` (another
/// binary of the same build), built by cargo first so a test never runs a
/// stale one; when it is up to date that takes a moment.
pub fn workspace_bin(sibling: &std::path::Path, package: &str, bin: &str) -> std::path::PathBuf {
    let st = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .status()
        .expect("cargo runs");
    assert!(st.success(), "cargo build of {bin} failed");
    sibling.with_file_name(bin)
}

/// Runs skopeo (with `--insecure-policy`: test images are unsigned);
/// returns whether it succeeded and its stdout and stderr together.
pub async fn skopeo(args: &[&str]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("skopeo");
    cmd.arg("--insecure-policy").args(args);
    run_client(cmd).await
}

/// Runs a container client (skopeo, podman, ...) to the end; returns
/// whether it succeeded and its stdout and stderr together.
pub async fn run_client(mut cmd: tokio::process::Command) -> (bool, String) {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} runs (.ci/run installs it): {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
