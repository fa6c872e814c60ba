//! Listing the artifacts of a repository that holds 100,000 of them: a
//! fresh migrated database is filled directly with SQL (manifests, their
//! config and layer references, a tag each, some pull statistics, a
//! thousand indexes whose children are hidden from the list, and a noisy
//! neighbour repository), core is started in-process on port 0, and pages
//! are timed over HTTP. The budget is 100 ms for a page, first or deep.
//!
//! Run with `cargo bench -p wharf-core --bench artifacts`.
//!
//! Knobs (environment):
//! - `WHARF_BENCH_ARTIFACTS` (default 100000): artifacts in the repository.
//! - `WHARF_BENCH_RUNS` (default 30): timed requests per case.
//! - `WHARF_BENCH_DATABASE_URL` / `WHARF_TEST_DATABASE_URL`: the admin
//!   database (default `postgres://postgres@127.0.0.1:5432/postgres`); a
//!   fresh database is created next to it and dropped at the end.
//! - `WHARF_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/0`).
//! - `WHARF_BENCH_KEEP=1`: keep the database.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use sqlx::{Connection, PgConnection};

const BUDGET_MS: f64 = 100.0;
const ADMIN_PASSWORD: &str = "Harbor12345";
const INDEXES: i64 = 1_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn admin_url() -> String {
    std::env::var("WHARF_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("WHARF_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn db_url(name: &str) -> String {
    let base = admin_url();
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{prefix}/{name}")
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let n: i64 = env_or("WHARF_BENCH_ARTIFACTS", 100_000);
    ensure!(
        n >= 5_000,
        "WHARF_BENCH_ARTIFACTS must be at least 5000 (the indexes list 2000 of them)"
    );
    let runs: usize = env_or("WHARF_BENCH_RUNS", 30);
    let keep = std::env::var("WHARF_BENCH_KEEP").is_ok_and(|v| v == "1");
    let name = format!("wharf_bench_artifacts_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .context("connecting to the benchmark's Postgres")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    eprintln!("database {name}");
    let result = bench(&name, n, runs).await;
    if !keep {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
    }
    result
}

async fn bench(db_name: &str, n: i64, runs: usize) -> Result<()> {
    let url = db_url(db_name);
    let pool = wharf_catalog::connect(&url, 4).await?;
    wharf_catalog::migrate(&pool).await?;

    let dir = tempfile::tempdir()?;
    let key = dir.path().join("token.key");
    let st = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()
        .context("openssl is installed")?;
    ensure!(st.success(), "openssl genrsa failed");

    let mut config = wharf_core::Config::default();
    config.database.url = wharf_core::config::Secret(url.clone());
    config.redis.url = wharf_core::config::Secret(
        std::env::var("WHARF_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into()),
    );
    config.redis.prefix = format!("wharf-bench-{}:", std::process::id());
    config.token.private_key = key;
    config.admin_initial_password = wharf_core::config::Secret(ADMIN_PASSWORD.into());
    config.log.level = "warn".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    config.listen = addr;
    config.external_url = format!("http://{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wharf_core::run(config, listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/api/v2.0");
    // Core has bootstrapped `admin` once it answers.
    let started = Instant::now();
    while http.get(format!("{base}/ping")).send().await.is_err() {
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "core did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let t = Instant::now();
    fill(&pool, n).await?;
    eprintln!("filled {n} artifacts in {:.1} s", t.elapsed().as_secs_f64());

    let path = "/projects/bench/repositories/app/artifacts";
    let last_page_10 = (n - INDEXES * 2 + INDEXES + 9) / 10;
    let cases: Vec<(String, String, bool)> = vec![
        (
            "page 1 (page_size 10)".into(),
            format!("{path}?page=1&page_size=10"),
            true,
        ),
        (
            "page 1 (page_size 100)".into(),
            format!("{path}?page=1&page_size=100"),
            true,
        ),
        (
            format!("deep page {} (page_size 10)", last_page_10 / 2),
            format!("{path}?page={}&page_size=10", last_page_10 / 2),
            true,
        ),
        (
            format!("last page {last_page_10} (page_size 10)"),
            format!("{path}?page={last_page_10}&page_size=10"),
            true,
        ),
        (
            "oldest first, page 1".into(),
            format!("{path}?page=1&page_size=10&sort=push_time"),
            true,
        ),
        (
            "q=tags=<one tag>".into(),
            format!("{path}?q=tags%3Dv{}", n / 2),
            false,
        ),
        (
            "q=digest=<one digest>".into(),
            format!("{path}?q=digest%3D{}", digest_of(&pool, n / 3).await?),
            false,
        ),
        (
            "repository list (counts 100k)".into(),
            "/projects/bench/repositories".into(),
            false,
        ),
    ];

    println!("\nartifact listing over HTTP, {n} artifacts in one repository, {runs} runs each");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>8}",
        "case", "median", "p95", "max", "budget"
    );
    let mut over = vec![];
    for (label, p, budgeted) in &cases {
        let url = format!("{base}{p}");
        let get = || async {
            let r = http
                .get(&url)
                .basic_auth("admin", Some(ADMIN_PASSWORD))
                .send()
                .await?;
            ensure!(r.status().is_success(), "{url}: {}", r.status());
            let total = r
                .headers()
                .get("x-total-count")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let body: serde_json::Value = r.json().await?;
            Ok::<_, anyhow::Error>((total, body))
        };
        let (total, body) = get().await?;
        ensure!(
            body.as_array().is_some_and(|a| !a.is_empty()),
            "{label}: empty answer (total {total})"
        );
        for _ in 0..3 {
            get().await?;
        }
        let mut ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            get().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        let median = ms[ms.len() / 2];
        let p95 = ms[(ms.len() * 95 / 100).min(ms.len() - 1)];
        let max = ms[ms.len() - 1];
        let verdict = if !budgeted {
            "-"
        } else if median < BUDGET_MS {
            "ok"
        } else {
            over.push(label.clone());
            "OVER"
        };
        println!("{label:<34} {median:>7.1}ms {p95:>7.1}ms {max:>7.1}ms {verdict:>8}");
    }
    let _ = stop.send(());
    let _ = server.await;
    ensure!(over.is_empty(), "over the {BUDGET_MS} ms budget: {over:?}");
    Ok(())
}

async fn digest_of(pool: &sqlx::PgPool, i: i64) -> Result<String> {
    let hex: String = sqlx::query_scalar(
        "SELECT encode(sha256(convert_to('manifest ' || $1::text, 'UTF8')), 'hex')",
    )
    .bind(i)
    .fetch_one(pool)
    .await?;
    Ok(format!("sha256:{hex}"))
}

/// The catalogue as the registry would have written it, in bulk.
async fn fill(pool: &sqlx::PgPool, n: i64) -> Result<()> {
    let steps: &[&str] = &[
        "INSERT INTO project (name, owner_id) SELECT 'bench', user_id FROM harbor_user WHERE username = 'admin'",
        "INSERT INTO project_metadata (project_id, name, value) SELECT project_id, 'public', 'false' FROM project WHERE name = 'bench'",
        "INSERT INTO repository (name) VALUES ('bench/app'), ('bench/noise')",
        // A config and a layer that every image shares.
        "INSERT INTO blob (digest, size) VALUES (sha256('config'), 1500), (sha256('layer'), 3000000)",
        // The images: one manifest blob each, one second apart.
        "INSERT INTO blob (digest, size) SELECT sha256(convert_to('manifest ' || i, 'UTF8')), 500 FROM generate_series(1, $1) i",
        "INSERT INTO manifest (repo_id, digest, media_type, artifact_type, size, pushed_at)
           SELECT r.id, sha256(convert_to('manifest ' || i, 'UTF8')), 'application/vnd.oci.image.manifest.v1+json',
                  'application/vnd.oci.image.config.v1+json', 500, now() - make_interval(secs => $1 - i)
             FROM generate_series(1, $1) i, repository r WHERE r.name = 'bench/app'",
        "INSERT INTO manifest_ref (manifest_id, child_digest, kind)
           SELECT m.id, sha256('config'), 'config'::ref_kind FROM manifest m
           UNION ALL SELECT m.id, sha256('layer'), 'layer'::ref_kind FROM manifest m",
        // One tag per image: `v<i>`.
        "INSERT INTO tag (repo_id, name, manifest_id, pushed_at)
           SELECT m.repo_id, 'v' || i, m.id, m.pushed_at
             FROM generate_series(1, $1) i
             JOIN manifest m ON m.digest = sha256(convert_to('manifest ' || i, 'UTF8'))",
        // A thousand indexes, each listing two of the images (hidden from the list).
        "INSERT INTO blob (digest, size) SELECT sha256(convert_to('index ' || k, 'UTF8')), 700 FROM generate_series(1, 1000) k",
        "INSERT INTO manifest (repo_id, digest, media_type, size, pushed_at)
           SELECT r.id, sha256(convert_to('index ' || k, 'UTF8')), 'application/vnd.oci.image.index.v1+json', 700, now()
             FROM generate_series(1, 1000) k, repository r WHERE r.name = 'bench/app'",
        "INSERT INTO manifest_ref (manifest_id, child_digest, kind)
           SELECT ix.id, sha256(convert_to('manifest ' || (2 * k + c), 'UTF8')), 'manifest'::ref_kind
             FROM generate_series(1, 1000) k CROSS JOIN generate_series(0, 1) c
             JOIN manifest ix ON ix.digest = sha256(convert_to('index ' || k, 'UTF8'))",
        // Pull statistics for a tenth.
        "INSERT INTO pull_stat (repo_id, digest, pull_count, last_pulled_at)
           SELECT repo_id, digest, 3, now() FROM manifest WHERE id % 10 = 0",
        // A neighbour repository that shares nothing but the tables.
        "INSERT INTO blob (digest, size) SELECT sha256(convert_to('noise ' || i, 'UTF8')), 500 FROM generate_series(1, 20000) i",
        "INSERT INTO manifest (repo_id, digest, media_type, artifact_type, size)
           SELECT r.id, sha256(convert_to('noise ' || i, 'UTF8')), 'application/vnd.oci.image.manifest.v1+json',
                  'application/vnd.oci.image.config.v1+json', 500
             FROM generate_series(1, 20000) i, repository r WHERE r.name = 'bench/noise'",
    ];
    let mut tx = pool.begin().await?;
    for sql in steps {
        let q = sqlx::query(sql);
        let q = if sql.contains("$1") { q.bind(n) } else { q };
        q.execute(&mut *tx)
            .await
            .with_context(|| format!("filling: {sql}"))?;
    }
    tx.commit().await?;
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    Ok(())
}
