//! Pull throughput through the proxy against straight from the registry:
//! one large blob (1 GiB by default) pushed once, then pulled in turn
//! straight from the registry, through a proxy set up as install.sh sets it
//! up (it reads the registry's volume and sends the blobs the registry
//! authorised, see `wharf_storage::offload`), and through a proxy that only
//! relays (no access to the volume). Prints the throughputs and the ratios;
//! the target (at least 80%) is for the installed setup.
//!
//! Run with `cargo bench -p wharf-proxy --bench proxy`. Both servers are
//! release builds: the proxy from this bench build, the registry from
//! `target/release` (built first if missing).
//!
//! Knobs (environment):
//! - `WHARF_BENCH_MIB` (default 1024): blob size in MiB.
//! - `WHARF_BENCH_RUNS` (default 5): pulls per path, alternating; the best
//!   one counts for the target, the median is printed too.
//! - `WHARF_BENCH_DATABASE_URL` / `WHARF_TEST_DATABASE_URL`: the admin
//!   database (default `postgres://postgres@127.0.0.1:5432/postgres`); a fresh
//!   database is created next to it and dropped at the end.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use futures_util::StreamExt;
use sha2::Digest as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PROXY_BIN: &str = env!("CARGO_BIN_EXE_wharf-proxy");
const MIB: usize = 1 << 20;

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn registry_bin() -> Result<PathBuf> {
    let bin = PathBuf::from(PROXY_BIN).with_file_name("wharf-registry");
    if !bin.exists() {
        let st = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-p",
                "wharf-registry",
                "--bin",
                "wharf-registry",
            ])
            .status()?;
        ensure!(st.success(), "building wharf-registry failed");
    }
    Ok(bin)
}

async fn spawn(bin: &Path, envs: &[(&str, String)], log: &Path) -> Result<(Child, String)> {
    let mut child = Command::new(bin)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await??
            .with_context(|| format!("{} exited; see {}", bin.display(), log.display()))?;
        if let Some(addr) = line.strip_prefix("listening on ") {
            let addr = addr.to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((child, addr));
        }
    }
}

fn peak_rss_mib(child: &Child) -> u64 {
    child
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

/// User + system CPU seconds a process has used (clock ticks at 100 Hz).
fn cpu_secs(child: &Child) -> f64 {
    child.id().map_or(0.0, cpu_secs_pid)
}

fn cpu_secs_pid(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .map_or(0.0, |ticks| ticks / 100.0)
}

fn best_and_median(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| b.total_cmp(a));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (v[0], median)
}

struct Db {
    admin: String,
    name: String,
}

impl Db {
    async fn create() -> Result<(Db, String)> {
        use sqlx::Connection;
        let admin = std::env::var("WHARF_BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("WHARF_TEST_DATABASE_URL"))
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("wharf_pbench_{}", std::process::id());
        let mut c = sqlx::PgConnection::connect(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await?;
        let (prefix, _) = admin.rsplit_once('/').context("database URL has a path")?;
        let url = format!("{prefix}/{name}");
        Ok((Db { admin, name }, url))
    }

    async fn drop(self) {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut c)
            .await;
        }
    }
}

async fn run() -> Result<()> {
    let mib: usize = env_or("WHARF_BENCH_MIB", 1024);
    let runs: usize = env_or("WHARF_BENCH_RUNS", 5).max(1);
    let dir = tempfile::tempdir()?;
    eprintln!("work directory: {}", dir.path().display());
    let (db, db_url) = Db::create().await?;
    let result = bench(dir.path(), &db_url, mib, runs).await;
    db.drop().await;
    result
}

async fn bench(dir: &Path, db_url: &str, mib: usize, runs: usize) -> Result<()> {
    let registry = registry_bin()?;
    let out = Command::new(&registry)
        .arg("migrate")
        .env("WHARF_REGISTRY_DATABASE__URL", db_url)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (registry_child, registry_addr) = spawn(
        &registry,
        &[
            ("WHARF_REGISTRY_LISTEN", "127.0.0.1:0".into()),
            (
                "WHARF_REGISTRY_DATA_DIR",
                dir.join("data").display().to_string(),
            ),
            ("WHARF_REGISTRY_DATABASE__URL", db_url.into()),
            ("WHARF_REGISTRY_LOG__LEVEL", "warn".into()),
        ],
        &dir.join("registry.log"),
    )
    .await?;
    let proxy_env = |storage: Option<String>| {
        let mut env = vec![
            ("WHARF_PROXY_LISTEN_HTTP", "127.0.0.1:0".to_owned()),
            (
                "WHARF_PROXY_UPSTREAMS__REGISTRY",
                format!("http://{registry_addr}"),
            ),
            ("WHARF_PROXY_UPSTREAMS__CORE", "http://127.0.0.1:9".into()),
            ("WHARF_PROXY_UPSTREAMS__PORTAL", "http://127.0.0.1:9".into()),
            ("WHARF_PROXY_LOG__LEVEL", "info".into()),
        ];
        if let Some(dir) = storage {
            env.push(("WHARF_PROXY_UPSTREAMS__REGISTRY_STORAGE", dir));
        }
        env
    };
    let (proxy, proxy_addr) = spawn(
        Path::new(PROXY_BIN),
        &proxy_env(Some(dir.join("data").display().to_string())),
        &dir.join("proxy.log"),
    )
    .await?;
    let (relay, relay_addr) = spawn(
        Path::new(PROXY_BIN),
        &proxy_env(None),
        &dir.join("relay.log"),
    )
    .await?;
    let http = reqwest::Client::builder().build()?;

    // Push the blob once, straight to the registry.
    eprintln!("pushing a {mib} MiB blob");
    let base: Vec<u8> = (0..MIB).map(|_| rand::random::<u8>()).collect();
    let chunk = move |i: usize| {
        let mut c = base.clone();
        c[..8].copy_from_slice(&(i as u64).to_le_bytes());
        bytes::Bytes::from(c)
    };
    let mut h = sha2::Sha256::new();
    for i in 0..mib {
        h.update(chunk(i));
    }
    let digest = format!(
        "sha256:{}",
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let r = http
        .post(format!(
            "http://{registry_addr}/v2/bench/big/blobs/uploads/"
        ))
        .send()
        .await?;
    ensure!(r.status() == 202, "start upload: {}", r.status());
    let location = r.headers()["location"].to_str()?.to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let stream = futures_util::stream::iter(0..mib).map(move |i| Ok::<_, std::io::Error>(chunk(i)));
    let r = http
        .put(format!(
            "http://{registry_addr}{location}{sep}digest={digest}"
        ))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    ensure!(r.status() == 201, "finish upload: {}", r.status());

    let pull = |addr: String| {
        let http = http.clone();
        let digest = digest.clone();
        async move {
            let started = Instant::now();
            let r = http
                .get(format!("http://{addr}/v2/bench/big/blobs/{digest}"))
                .send()
                .await?;
            ensure!(r.status() == 200, "pull: {}", r.status());
            let mut n = 0usize;
            let mut body = r.bytes_stream();
            while let Some(c) = body.next().await {
                n += c?.len();
            }
            ensure!(n == mib * MIB, "pulled {n} bytes");
            Ok::<f64, anyhow::Error>(n as f64 / MIB as f64 / started.elapsed().as_secs_f64())
        }
    };
    // Warm the page cache and the connection pools.
    pull(registry_addr.clone()).await?;
    pull(proxy_addr.clone()).await?;
    pull(relay_addr.clone()).await?;
    let me = std::process::id();
    let (mut direct, mut proxied, mut relayed) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let (cpu_c, cpu_r) = (cpu_secs_pid(me), cpu_secs(&registry_child));
        let d = pull(registry_addr.clone()).await?;
        let (cpu_dc, cpu_dr) = (cpu_secs_pid(me) - cpu_c, cpu_secs(&registry_child) - cpu_r);
        let snap = |c: &Child| (cpu_secs_pid(me), cpu_secs(c), cpu_secs(&registry_child));
        let used = |c: &Child, b: (f64, f64, f64)| {
            let n = snap(c);
            (n.0 - b.0, n.1 - b.1, n.2 - b.2)
        };
        let before = snap(&proxy);
        let p = pull(proxy_addr.clone()).await?;
        let cpu_p = used(&proxy, before);
        let before = snap(&relay);
        let l = pull(relay_addr.clone()).await?;
        let cpu_l = used(&relay, before);
        eprintln!(
            "run {run}: direct {d:.0} MiB/s (CPU s: client {cpu_dc:.2}, registry {cpu_dr:.2}); \
             proxy {p:.0} MiB/s (client {:.2}, proxy {:.2}, registry {:.2}); \
             relay-only proxy {l:.0} MiB/s (client {:.2}, proxy {:.2}, registry {:.2})",
            cpu_p.0, cpu_p.1, cpu_p.2, cpu_l.0, cpu_l.1, cpu_l.2
        );
        direct.push(d);
        proxied.push(p);
        relayed.push(l);
    }
    let (best_d, med_d) = best_and_median(&mut direct);
    let (best_p, med_p) = best_and_median(&mut proxied);
    let (best_l, med_l) = best_and_median(&mut relayed);
    let ratio = best_p / best_d;
    println!("blob size:              {mib} MiB ({runs} runs each, interleaved)");
    println!("                            best    median");
    println!("straight from registry: {best_d:>8.0} {med_d:>8.0} MiB/s");
    println!("through wharf-proxy:    {best_p:>8.0} {med_p:>8.0} MiB/s  (as installed: reads the registry volume)");
    println!("relay-only proxy:       {best_l:>8.0} {med_l:>8.0} MiB/s  (no access to the volume)");
    println!(
        "ratio:                  {:>7.1}% {:>7.1}%  (target >= 80% on the best: {})",
        ratio * 100.0,
        med_p / med_d * 100.0,
        if ratio >= 0.8 { "met" } else { "NOT met" }
    );
    println!(
        "relay-only ratio:       {:>7.1}% {:>7.1}%",
        best_l / best_d * 100.0,
        med_l / med_d * 100.0
    );
    println!("proxy peak RSS:         {:>8} MiB", peak_rss_mib(&proxy));
    println!("relay-only peak RSS:    {:>8} MiB", peak_rss_mib(&relay));
    Ok(())
}
