//! Side-by-side throughput benchmark: `wharf-registry` (release build, token
//! auth, fresh Postgres database) against Debian's `docker-registry`
//! (distribution 2.8) when it is on `PATH`.
//!
//! Run with `cargo bench -p wharf-registry --bench registry`.
//!
//! Knobs (environment):
//! - `WHARF_BENCH_SCALE` (default 1): multiplies blob sizes, e.g. 0.1 for a quick run.
//! - `WHARF_BENCH_HEAD_SECS` (default 10): length of the manifest HEAD phase.
//! - `WHARF_BENCH_HEAD_CONCURRENCY` (default 16).
//! - `WHARF_BENCH_RUNS` (default 1): repeat every phase, each time with new
//!   blobs, and report the best throughput, the least CPU and the highest
//!   peak RSS (useful on a shared, noisy machine).
//! - `WHARF_BENCH_DOCKER=0`: skip docker-registry even when it is installed.
//! - `WHARF_BENCH_DOCKER_AUTH=0`: run docker-registry without token auth.
//! - `WHARF_BENCH_KEEP=1`: keep the work directory (data, logs, configs).
//! - `WHARF_BENCH_LOG` (default `warn`): log level of both servers.
//! - `WHARF_BENCH_DATABASE_URL` / `WHARF_TEST_DATABASE_URL`: the admin
//!   database (default `postgres://postgres@127.0.0.1:5432/postgres`); a fresh
//!   database is created next to it and dropped at the end.
//!
//! Both servers' stderr goes to log files in a temporary directory whose path
//! is printed at start; progress goes to stderr and the result table to stdout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rand::{RngCore, SeedableRng};
use sha2::Digest as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_wharf-registry");
const REPO: &str = "bench/app";
const TAG: &str = "bench";
const SERVICE: &str = "wharf-bench";
const ISSUER: &str = "wharf-bench-issuer";
const MIB: usize = 1 << 20;
const BLOBS: usize = 8;
const BLOB_CONCURRENCY: usize = 4;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

struct Knobs {
    scale: f64,
    head_secs: f64,
    head_concurrency: usize,
    runs: usize,
    docker: bool,
    docker_auth: bool,
    keep: bool,
    log: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not valid")),
        _ => Ok(default),
    }
}

impl Knobs {
    fn from_env() -> Result<Knobs> {
        let scale: f64 = env_or("WHARF_BENCH_SCALE", 1.0)?;
        let head_secs: f64 = env_or("WHARF_BENCH_HEAD_SECS", 10.0)?;
        ensure!(scale > 0.0, "WHARF_BENCH_SCALE must be positive");
        ensure!(head_secs > 0.0, "WHARF_BENCH_HEAD_SECS must be positive");
        Ok(Knobs {
            scale,
            head_secs,
            head_concurrency: env_or("WHARF_BENCH_HEAD_CONCURRENCY", 16usize)?.max(1),
            runs: env_or("WHARF_BENCH_RUNS", 1usize)?.max(1),
            docker: std::env::var("WHARF_BENCH_DOCKER").map_or(true, |v| v != "0"),
            docker_auth: std::env::var("WHARF_BENCH_DOCKER_AUTH").map_or(true, |v| v != "0"),
            keep: std::env::var("WHARF_BENCH_KEEP").is_ok_and(|v| v == "1"),
            log: std::env::var("WHARF_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        })
    }
}

async fn run() -> Result<()> {
    let knobs = Knobs::from_env()?;
    let tmp = tempfile::Builder::new().prefix("wharf-bench-").tempdir()?;
    eprintln!("work directory: {}", tmp.path().display());
    keypair(tmp.path())?;
    let db = Database::create().await?;
    let res = bench(&knobs, tmp.path(), &db).await;
    if let Err(e) = db.drop_it().await {
        eprintln!("dropping database {}: {e:#}", db.name);
    }
    if res.is_err() {
        for log in ["wharf.log", "docker-registry.log"] {
            if let Ok(s) = std::fs::read_to_string(tmp.path().join(log)) {
                let tail: Vec<&str> = s.lines().rev().take(20).collect();
                eprintln!("--- last lines of {log}:");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
    if knobs.keep {
        eprintln!("kept {}", tmp.keep().display());
    }
    res
}

// ---------------------------------------------------------------- database

struct Database {
    name: String,
    admin: String,
    url: String,
}

impl Database {
    fn admin_url() -> String {
        std::env::var("WHARF_BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("WHARF_TEST_DATABASE_URL"))
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    async fn create() -> Result<Database> {
        use sqlx::Connection;
        let admin = Database::admin_url();
        let name = format!(
            "wharf_bench_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let (prefix, _) = admin
            .rsplit_once('/')
            .context("the database URL has a path")?;
        let url = format!("{prefix}/{name}");
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .with_context(|| format!("connecting to {admin}"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await?;
        c.close().await?;
        Ok(Database { name, admin, url })
    }

    async fn drop_it(&self) -> Result<()> {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.admin).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut c)
        .await?;
        c.close().await?;
        Ok(())
    }
}

// ---------------------------------------------------------------- keys and tokens

/// An RSA key and a self-signed certificate, made with the openssl CLI.
fn keypair(dir: &Path) -> Result<()> {
    let st = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=wharf-bench-token"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .context("running openssl")?;
    ensure!(st.success(), "openssl req failed");
    Ok(())
}

fn access() -> Vec<wharf_token::Access> {
    vec![
        wharf_token::Access::parse_scope(&format!("repository:{REPO}:pull,push"))
            .expect("valid scope"),
    ]
}

/// A token from wharf's own signer, as core would issue it.
fn wharf_token(dir: &Path) -> Result<String> {
    let signer = wharf_token::Signer::new(&std::fs::read(dir.join("key.pem"))?, ISSUER, 3600)?;
    Ok(signer.issue("bench", SERVICE, access())?.token)
}

/// The libtrust key id distribution looks tokens' `kid` up by: the SHA-256 of
/// the DER SubjectPublicKeyInfo, cut to 240 bits, base32, in groups of four.
fn libtrust_kid(cert: &Path) -> Result<String> {
    let pubkey = std::process::Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(cert)
        .output()?;
    ensure!(pubkey.status.success(), "openssl x509 -pubkey failed");
    let mut child = std::process::Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(&pubkey.stdout)?;
    }
    let der = child.wait_with_output()?;
    ensure!(der.status.success(), "openssl pkey -outform DER failed");
    let sum = sha2::Sha256::digest(&der.stdout);
    let b32 = base32(&sum[..30]);
    Ok(b32
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// RFC 4648 base32 without padding.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The same claims, signed with a `kid` header so distribution can find the key.
fn distribution_token(dir: &Path) -> Result<String> {
    let kid = libtrust_kid(&dir.join("cert.pem"))?;
    let now = chrono::Utc::now().timestamp();
    let claims = wharf_token::Claims {
        iss: ISSUER.into(),
        sub: "bench".into(),
        aud: SERVICE.into(),
        exp: now + 3600,
        nbf: now - 1,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        access: access(),
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid);
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(dir.join("key.pem"))?)?;
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

// ---------------------------------------------------------------- servers

/// Where a running server is and how to call it; shared with worker tasks.
struct Target {
    name: &'static str,
    base: String,
    addr: String,
    pid: u32,
    /// `Bearer …`, or `None` when the server runs without auth.
    auth: Option<HeaderValue>,
}

struct Server {
    t: Arc<Target>,
    child: Child,
}

impl Server {
    fn new(t: Target, child: Child) -> Server {
        Server {
            t: Arc::new(t),
            child,
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Target {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorize(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(a) => r.header(AUTHORIZATION, a.clone()),
            None => r,
        }
    }
}

fn bearer(token: &str) -> Result<HeaderValue> {
    Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
}

fn log_file(dir: &Path, name: &str) -> Result<Stdio> {
    Ok(Stdio::from(std::fs::File::create(dir.join(name))?))
}

async fn start_wharf(knobs: &Knobs, dir: &Path, db: &Database) -> Result<Server> {
    let out = Command::new(BIN)
        .arg("migrate")
        .env("WHARF_REGISTRY_DATABASE__URL", &db.url)
        .env("WHARF_REGISTRY_LOG__LEVEL", "warn")
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "wharf-registry migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = dir.join("wharf-data");
    std::fs::create_dir_all(&data)?;
    let mut child = Command::new(BIN)
        .env("WHARF_REGISTRY_LISTEN", "127.0.0.1:0")
        .env("WHARF_REGISTRY_DATA_DIR", &data)
        .env("WHARF_REGISTRY_DATABASE__URL", &db.url)
        .env("WHARF_REGISTRY_LOG__LEVEL", &knobs.log)
        .env("WHARF_REGISTRY_AUTH__REALM", "http://127.0.0.1/token")
        .env("WHARF_REGISTRY_AUTH__SERVICE", SERVICE)
        .env("WHARF_REGISTRY_AUTH__ISSUER", ISSUER)
        .env("WHARF_REGISTRY_AUTH__CERTIFICATE", dir.join("cert.pem"))
        .stdout(Stdio::piped())
        .stderr(log_file(dir, "wharf.log")?)
        .kill_on_drop(true)
        .spawn()
        .context("starting wharf-registry")?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("wharf-registry did not print its address in 30 s")??
        .context("wharf-registry exited before listening")?;
    let addr = line
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected ready line {line:?}"))?
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = child.id().context("wharf-registry pid")?;
    let t = Target {
        name: "wharf",
        base: format!("http://{addr}"),
        addr,
        pid,
        auth: Some(bearer(&wharf_token(dir)?)?),
    };
    Ok(Server::new(t, child))
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

async fn start_distribution(
    knobs: &Knobs,
    dir: &Path,
    bin: &Path,
    http: &reqwest::Client,
    with_auth: bool,
) -> Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let data = dir.join("distribution-data");
    std::fs::create_dir_all(&data)?;
    let level = match knobs.log.as_str() {
        "warn" | "error" | "info" | "debug" => knobs.log.as_str(),
        _ => "warn",
    };
    let mut cfg = format!(
        "version: 0.1
log:
  level: {level}
  accesslog:
    disabled: {}
storage:
  filesystem:
    rootdirectory: {}
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
",
        level != "info" && level != "debug",
        data.display(),
    );
    if with_auth {
        write!(
            cfg,
            "auth:
  token:
    realm: http://127.0.0.1/token
    service: {SERVICE}
    issuer: {ISSUER}
    rootcertbundle: {}
",
            dir.join("cert.pem").display()
        )?;
    }
    let cfg_path = dir.join("distribution.yml");
    std::fs::write(&cfg_path, cfg)?;
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(log_file(dir, "docker-registry.log")?)
        .kill_on_drop(true)
        .spawn()
        .context("starting docker-registry")?;
    let pid = child.id().context("docker-registry pid")?;
    let base = format!("http://{addr}");
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/v2/")).send().await {
            if r.status() == StatusCode::OK || r.status() == StatusCode::UNAUTHORIZED {
                break;
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "docker-registry did not answer on {addr} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let auth = if with_auth {
        Some(bearer(&distribution_token(dir)?)?)
    } else {
        None
    };
    let t = Target {
        name: "docker-registry",
        base,
        addr,
        pid,
        auth,
    };
    Ok(Server::new(t, child))
}

/// Does the server demand a token, and accept ours for a push?
async fn check_auth(http: &reqwest::Client, s: &Target) -> Result<()> {
    if s.auth.is_some() {
        let r = http
            .post(s.url(&format!("/v2/{REPO}/blobs/uploads/")))
            .header(CONTENT_LENGTH, 0)
            .send()
            .await?;
        ensure!(
            r.status() == StatusCode::UNAUTHORIZED,
            "{}: an upload without a token got {}, not 401",
            s.name,
            r.status()
        );
    }
    let r = s
        .authorize(http.post(s.url(&format!("/v2/{REPO}/blobs/uploads/"))))
        .header(CONTENT_LENGTH, 0)
        .send()
        .await?;
    let status = r.status();
    if status != StatusCode::ACCEPTED {
        bail!(
            "{}: starting an upload with the token got {status}: {}",
            s.name,
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- process stats

#[derive(Clone, Copy, Default)]
struct Cpu(f64);

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU seconds of a process (`self` for the client).
fn cpu_seconds(pid: &str, ticks: f64) -> Cpu {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Cpu(f64::NAN);
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    match (t(14), t(15)) {
        (Some(u), Some(s)) => Cpu((u + s) / ticks),
        _ => Cpu(f64::NAN),
    }
}

/// Peak resident set size in MiB since start or since the last [`reset_peak`].
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets VmHWM to the current RSS (`clear_refs` 5), so each phase reports its own peak.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Flushes dirty pages so one server's write-back does not land in the next
/// measurement (distribution does not fsync; wharf does).
async fn sync_disks() {
    let _ = Command::new("sync").status().await;
}

// ---------------------------------------------------------------- data

/// Random bytes generated once; every blob is a zero-copy slice of them.
struct Data {
    pool: Bytes,
    blob_len: usize,
    big_len: usize,
    big_chunk: usize,
}

/// The blobs of one run: each run shifts its slices by a few pages, so the
/// registries never see a blob they already hold.
struct Set {
    blobs: Vec<(Bytes, String)>,
    run: usize,
    big_digest: String,
}

fn sha256_hex(parts: impl Iterator<Item = Bytes>) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(&p);
    }
    let mut s = String::from("sha256:");
    for b in h.finalize() {
        write!(s, "{b:02x}").expect("write to a String");
    }
    s
}

const RUN_SHIFT: usize = 4096 * 3;

impl Data {
    fn generate(blob_len: usize, big_len: usize, runs: usize) -> Data {
        let mut buf = vec![0u8; blob_len * BLOBS + runs * RUN_SHIFT];
        rand::rngs::StdRng::seed_from_u64(0x5748_4152_4642_454e).fill_bytes(&mut buf);
        let pool = Bytes::from(buf);
        Data {
            big_chunk: MIB.min(big_len).min(blob_len * BLOBS),
            pool,
            blob_len,
            big_len,
        }
    }

    /// The blobs and digests of run `run` (hashing happens here, outside any timing).
    fn set(&self, run: usize) -> Set {
        let base = run * RUN_SHIFT;
        let blobs = (0..BLOBS)
            .map(|i| {
                let start = base + i * self.blob_len;
                let b = self.pool.slice(start..start + self.blob_len);
                let d = sha256_hex(std::iter::once(b.clone()));
                (b, d)
            })
            .collect();
        Set {
            blobs,
            run,
            big_digest: sha256_hex(self.big_chunks(run)),
        }
    }

    /// The big blob of run `run` as a sequence of slices of the pool: nothing
    /// is copied, and the whole blob never sits in memory.
    fn big_chunks(&self, run: usize) -> impl Iterator<Item = Bytes> + Send + Sync + 'static {
        let pool = self
            .pool
            .slice(run * RUN_SHIFT..run * RUN_SHIFT + self.blob_len * BLOBS);
        let (len, chunk) = (self.big_len, self.big_chunk);
        // Offsets step by a prime number of pages so the blob is not the pool repeated.
        let span = pool.len() - chunk + 1;
        (0..len.div_ceil(chunk)).map(move |i| {
            let n = chunk.min(len - i * chunk);
            let off = (i * (chunk + 4096 * 7)) % span;
            pool.slice(off..off + n)
        })
    }
}

fn human(n: usize) -> String {
    let (v, unit) = if n >= 1 << 30 {
        (n as f64 / (1u64 << 30) as f64, "GiB")
    } else if n >= MIB {
        (n as f64 / MIB as f64, "MiB")
    } else {
        (n as f64 / 1024.0, "KiB")
    };
    if (v - v.round()).abs() < 0.05 {
        format!("{v:.0}{unit}")
    } else {
        format!("{v:.1}{unit}")
    }
}

/// Rounds to whole pages, at least one.
fn scaled(n: usize, scale: f64) -> usize {
    (((n as f64 * scale) as usize) / 4096).max(1) * 4096
}

// ---------------------------------------------------------------- operations

/// POST an upload session, then PUT the whole body with `?digest=`: the
/// protocol both registries implement (distribution ignores a POST body).
async fn push_blob(
    http: &reqwest::Client,
    s: &Target,
    digest: &str,
    body: reqwest::Body,
    len: usize,
) -> Result<()> {
    let r = s
        .authorize(http.post(s.url(&format!("/v2/{REPO}/blobs/uploads/"))))
        .header(CONTENT_LENGTH, 0)
        .send()
        .await?;
    ensure!(
        r.status() == StatusCode::ACCEPTED,
        "{}: POST upload got {}",
        s.name,
        r.status()
    );
    let loc = r
        .headers()
        .get(LOCATION)
        .context("upload without Location")?
        .to_str()?;
    let mut url = if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_owned()
    } else {
        s.url(loc)
    };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str("digest=");
    url.push_str(digest);
    let r = s
        .authorize(http.put(url))
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, len)
        .body(body)
        .send()
        .await?;
    let status = r.status();
    if status != StatusCode::CREATED {
        bail!(
            "{}: PUT upload got {status}: {}",
            s.name,
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// GETs a blob, discarding the bytes; returns how many arrived.
async fn pull_blob(http: &reqwest::Client, s: &Target, digest: &str) -> Result<u64> {
    let mut r = s
        .authorize(http.get(s.url(&format!("/v2/{REPO}/blobs/{digest}"))))
        .send()
        .await?;
    ensure!(
        r.status() == StatusCode::OK,
        "{}: GET blob got {}",
        s.name,
        r.status()
    );
    let mut n = 0u64;
    while let Some(chunk) = r.chunk().await? {
        n += chunk.len() as u64;
    }
    Ok(n)
}

/// Runs `op(i)` for i in 0..count on `concurrency` worker tasks.
async fn fan_out<F, Fut>(count: usize, concurrency: usize, op: F) -> Result<u64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut total = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(total);
                }
                total += op(i).await?;
            }
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await??;
    }
    Ok(total)
}

/// Pushes a small config and an image manifest tagged [`TAG`] for the HEAD phase.
async fn push_manifest(http: &reqwest::Client, s: &Target, data: &Set) -> Result<()> {
    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let cd = sha256_hex(std::iter::once(config.clone()));
    push_blob(http, s, &cd, config.clone().into(), config.len()).await?;
    let (layer, ld) = &data.blobs[0];
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
    }))?;
    let r = s
        .authorize(http.put(s.url(&format!("/v2/{REPO}/manifests/{TAG}"))))
        .header(CONTENT_TYPE, OCI_MANIFEST)
        .body(manifest)
        .send()
        .await?;
    let status = r.status();
    if status != StatusCode::CREATED {
        bail!(
            "{}: PUT manifest got {status}: {}",
            s.name,
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

struct HeadResult {
    rps: f64,
    errors: u64,
    client_cpu: f64,
    server_cpu: f64,
}

/// HEADs the tagged manifest on `concurrency` keep-alive HTTP/1.1
/// connections (bare hyper, so the client costs as little as possible):
/// a short warm-up, then `secs` measured.
async fn head_manifests(
    s: &Target,
    concurrency: usize,
    secs: f64,
    ticks: f64,
) -> Result<HeadResult> {
    let uri: Uri = format!("/v2/{REPO}/manifests/{TAG}").parse()?;
    let host = HeaderValue::from_str(&s.addr)?;
    let accept = HeaderValue::from_static(OCI_MANIFEST);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let stream = tokio::net::TcpStream::connect(&s.addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let (uri, host, accept, auth) = (uri.clone(), host.clone(), accept.clone(), s.auth.clone());
        let (measuring, stop, ok, errors) =
            (measuring.clone(), stop.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let (mut n_ok, mut n_err) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                sender.ready().await?;
                let mut req = Request::builder()
                    .method(Method::HEAD)
                    .uri(uri.clone())
                    .header(HOST, host.clone())
                    .header(ACCEPT, accept.clone());
                if let Some(a) = &auth {
                    req = req.header(AUTHORIZATION, a.clone());
                }
                let resp = sender
                    .send_request(req.body(Empty::<Bytes>::new())?)
                    .await?;
                if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    if resp.status() == StatusCode::OK {
                        n_ok += 1;
                    } else {
                        n_err += 1;
                    }
                }
            }
            ok.fetch_add(n_ok, Ordering::Relaxed);
            errors.fetch_add(n_err, Ordering::Relaxed);
            Ok::<_, anyhow::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64((secs / 5.0).min(1.0))).await;
    let (c0, s0) = (
        cpu_seconds("self", ticks),
        cpu_seconds(&s.pid.to_string(), ticks),
    );
    let started = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let (c1, s1) = (
        cpu_seconds("self", ticks),
        cpu_seconds(&s.pid.to_string(), ticks),
    );
    for t in tasks {
        t.await??;
    }
    Ok(HeadResult {
        rps: ok.load(Ordering::Relaxed) as f64 / elapsed,
        errors: errors.load(Ordering::Relaxed),
        client_cpu: c1.0 - c0.0,
        server_cpu: s1.0 - s0.0,
    })
}

// ---------------------------------------------------------------- the run

/// How repeated runs combine into one number.
#[derive(Clone, Copy, PartialEq)]
enum Keep {
    /// Best throughput (higher is better).
    Max,
    /// Least CPU (lower is better).
    Min,
    /// Worst peak memory (lower is better, but report the worst seen).
    Worst,
}

struct Row {
    metric: String,
    values: [Option<f64>; 2],
    keep: Keep,
}

struct Table {
    rows: Vec<Row>,
}

impl Table {
    fn set(&mut self, metric: &str, keep: Keep, server: usize, v: f64) {
        let i = match self.rows.iter().position(|r| r.metric == metric) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    metric: metric.to_owned(),
                    values: [None, None],
                    keep,
                });
                self.rows.len() - 1
            }
        };
        let slot = &mut self.rows[i].values[server];
        *slot = Some(match (*slot, keep) {
            (None, _) => v,
            (Some(old), Keep::Max | Keep::Worst) => old.max(v),
            (Some(old), Keep::Min) => old.min(v),
        });
    }

    fn get(&self, metric: &str, server: usize) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.metric == metric)
            .and_then(|r| r.values[server])
    }

    fn print(&self, docker_label: &str, runs: usize) {
        let fmt = |v: Option<f64>| match v {
            Some(v) if v.is_nan() => "n/a".to_owned(),
            Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
            Some(v) => format!("{v:.2}"),
            None => "-".to_owned(),
        };
        let w = self
            .rows
            .iter()
            .map(|r| r.metric.len() + 4)
            .max()
            .unwrap_or(10);
        println!();
        println!(
            "{:<w$} | {:>10} | {:>15} | {:>7}",
            "metric", "wharf", docker_label, "ratio"
        );
        println!(
            "{}-|-{}-|-{}-|-{}",
            "-".repeat(w),
            "-".repeat(10),
            "-".repeat(15),
            "-".repeat(7)
        );
        for r in &self.rows {
            let ratio = match r.values {
                [Some(a), Some(b)] if b != 0.0 && a.is_finite() && b.is_finite() => {
                    format!("{:.2}x", a / b)
                }
                _ => "-".to_owned(),
            };
            let label = format!(
                "{} {}",
                r.metric,
                if r.keep == Keep::Max { "(+)" } else { "(-)" }
            );
            println!(
                "{label:<w$} | {:>10} | {:>15} | {:>7}",
                fmt(r.values[0]),
                fmt(r.values[1]),
                ratio
            );
        }
        println!("(+) higher is better, (-) lower is better; ratio = wharf / docker-registry");
        if runs > 1 {
            println!("best of {runs} runs: highest throughput, least CPU, highest peak RSS");
        }
    }
}

async fn bench(knobs: &Knobs, dir: &Path, db: &Database) -> Result<()> {
    let ticks = clock_ticks();
    let blob_len = scaled(64 * MIB, knobs.scale);
    let big_len = scaled(1 << 30, knobs.scale);
    eprintln!(
        "generating {BLOBS} blobs of {} and a {} stream ...",
        human(blob_len),
        human(big_len)
    );
    let data = Data::generate(blob_len, big_len, knobs.runs);

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_max_idle_per_host(64)
        .build()?;

    let mut servers = vec![start_wharf(knobs, dir, db).await?];
    check_auth(&http, &servers[0].t).await?;
    eprintln!(
        "wharf-registry pid {} on {} (token auth)",
        servers[0].t.pid, servers[0].t.addr
    );
    let mut docker_label = "docker-registry".to_owned();
    let docker_bin = which("docker-registry").filter(|_| knobs.docker);
    if let Some(bin) = &docker_bin {
        let s = start_distribution(knobs, dir, bin, &http, knobs.docker_auth).await?;
        let s = match check_auth(&http, &s.t).await {
            Ok(()) => {
                let how = if knobs.docker_auth {
                    "token auth"
                } else {
                    docker_label = "docker-reg(noauth)".into();
                    "no auth, as asked"
                };
                eprintln!("docker-registry pid {} on {} ({how})", s.t.pid, s.t.addr);
                s
            }
            Err(e) => {
                eprintln!("docker-registry refused our token ({e:#}); running it without auth");
                s.stop().await;
                docker_label = "docker-reg(noauth)".into();
                start_distribution(knobs, dir, bin, &http, false).await?
            }
        };
        servers.push(s);
    } else {
        eprintln!("docker-registry is not on PATH (or WHARF_BENCH_DOCKER=0): wharf only");
    }

    let mut table = Table { rows: Vec::new() };
    let n_blobs = format!("{BLOBS}x{}", human(blob_len));
    let big = human(big_len);
    let phases: [(&str, String); 5] = [
        ("push8", format!("push {n_blobs} c{BLOB_CONCURRENCY}")),
        ("pull8", format!("pull {n_blobs} c{BLOB_CONCURRENCY}")),
        ("pushbig", format!("push 1x{big} streamed")),
        ("pullbig", format!("pull 1x{big}")),
        (
            "head",
            format!(
                "manifest HEAD c{} {}s",
                knobs.head_concurrency, knobs.head_secs
            ),
        ),
    ];
    for run in 0..knobs.runs {
        let set = Arc::new(data.set(run));
        for (phase, label) in &phases {
            for (si, server) in servers.iter().enumerate() {
                run_phase(
                    &mut table, knobs, &data, &set, &http, server, si, phase, label, ticks,
                )
                .await?;
            }
        }
    }

    table.print(&docker_label, knobs.runs);
    if servers.len() > 1 {
        println!();
        println!("targets (wharf / docker-registry):");
        for (label, unit, want) in [
            (&phases[0].1, "MiB/s", 2.0),
            (&phases[1].1, "MiB/s", 1.0),
            (&phases[2].1, "MiB/s", 2.0),
            (&phases[3].1, "MiB/s", 1.0),
            (&phases[4].1, "req/s", 8.0),
        ] {
            let m = format!("{label} ({unit})");
            if let (Some(a), Some(b)) = (table.get(&m, 0), table.get(&m, 1)) {
                let r = a / b;
                println!(
                    "  {m:<44} {r:>6.2}x  (target >= {want}x: {})",
                    if r >= want { "met" } else { "NOT met" }
                );
            }
        }
    }
    for s in servers {
        s.stop().await;
    }
    Ok(())
}

/// One phase against one server; records its numbers in `table`.
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    table: &mut Table,
    knobs: &Knobs,
    data: &Data,
    set: &Arc<Set>,
    http: &reqwest::Client,
    server: &Server,
    si: usize,
    phase: &str,
    label: &str,
    ticks: f64,
) -> Result<()> {
    let mib = |n: u64| n as f64 / MIB as f64;
    let s = &server.t;
    sync_disks().await;
    let rss_reset = reset_peak(s.pid);
    let pid = s.pid.to_string();
    let (c0, s0) = (cpu_seconds("self", ticks), cpu_seconds(&pid, ticks));
    let started = Instant::now();
    let throughput = match phase {
        "push8" => {
            let total = fan_out(BLOBS, BLOB_CONCURRENCY, {
                let (set, http) = (set.clone(), http.clone());
                let s = s.clone();
                move |i| {
                    let (set, http, s) = (set.clone(), http.clone(), s.clone());
                    async move {
                        let (b, d) = &set.blobs[i];
                        push_blob(&http, &s, d, b.clone().into(), b.len()).await?;
                        Ok(b.len() as u64)
                    }
                }
            })
            .await?;
            mib(total) / started.elapsed().as_secs_f64()
        }
        "pull8" => {
            let total = fan_out(BLOBS, BLOB_CONCURRENCY, {
                let (set, http) = (set.clone(), http.clone());
                let s = s.clone();
                move |i| {
                    let (set, http, s) = (set.clone(), http.clone(), s.clone());
                    async move {
                        let (b, d) = &set.blobs[i];
                        let n = pull_blob(&http, &s, d).await?;
                        ensure!(n == b.len() as u64, "short read: {n} of {}", b.len());
                        Ok(n)
                    }
                }
            })
            .await?;
            mib(total) / started.elapsed().as_secs_f64()
        }
        "pushbig" => {
            let chunks = data.big_chunks(set.run).map(Ok::<Bytes, std::io::Error>);
            let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
            push_blob(http, s, &set.big_digest, body, data.big_len).await?;
            mib(data.big_len as u64) / started.elapsed().as_secs_f64()
        }
        "pullbig" => {
            let n = pull_blob(http, s, &set.big_digest).await?;
            ensure!(
                n == data.big_len as u64,
                "short read: {n} of {}",
                data.big_len
            );
            mib(n) / started.elapsed().as_secs_f64()
        }
        "head" => {
            push_manifest(http, s, set).await?;
            let h = head_manifests(s, knobs.head_concurrency, knobs.head_secs, ticks).await?;
            ensure!(h.errors == 0, "{}: {} HEADs failed", s.name, h.errors);
            table.set("  HEAD client CPU (s)", Keep::Min, si, h.client_cpu);
            table.set("  HEAD server CPU (s)", Keep::Min, si, h.server_cpu);
            h.rps
        }
        _ => unreachable!(),
    };
    let secs = started.elapsed().as_secs_f64();
    let (c1, s1) = (cpu_seconds("self", ticks), cpu_seconds(&pid, ticks));
    let rss = peak_rss_mib(s.pid);
    let unit = if phase == "head" { "req/s" } else { "MiB/s" };
    eprintln!(
        "{:<16} {}{label:<34} {throughput:>10.1} {unit}  {secs:>6.2} s  server CPU {:>6.2} s  client CPU {:>6.2} s  peak RSS {rss:.0} MiB{}",
        s.name,
        if knobs.runs > 1 { format!("run {} ", set.run + 1) } else { String::new() },
        s1.0 - s0.0,
        c1.0 - c0.0,
        if rss_reset { "" } else { " (since start)" }
    );
    table.set(&format!("{label} ({unit})"), Keep::Max, si, throughput);
    if phase != "head" {
        table.set(
            &format!("  {label} server CPU (s)"),
            Keep::Min,
            si,
            s1.0 - s0.0,
        );
    }
    table.set(
        &format!("  peak RSS after {phase} (MiB)"),
        Keep::Worst,
        si,
        rss,
    );
    Ok(())
}
