//! Harness: a fresh database and Redis prefix per test, the registry open
//! with the internal secret, and jobservice processes that can be killed and
//! started again on the same database and queue.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use tokio::process::{Child, Command};
use wharf_catalog::jobs::{self, Execution};
pub use wharf_testkit::{redis_url, RedisPrefix, TestDb};

pub const JOBSERVICE_BIN: &str = env!("CARGO_BIN_EXE_wharf-jobservice");
const SECRET: &str = "jobservice-test-secret";

fn registry_bin() -> PathBuf {
    wharf_testkit::workspace_bin(
        Path::new(JOBSERVICE_BIN),
        "wharf-registry",
        "wharf-registry",
    )
}

async fn spawn(cmd: &mut Command) -> (Child, String) {
    wharf_testkit::spawn_service(cmd).await
}

/// Fields drop in order: processes stop before their database goes.
pub struct Site {
    pub jobservices: Vec<Option<Child>>,
    registry: Child,
    pub registry_url: String,
    pub data: tempfile::TempDir,
    pub failpoints: tempfile::TempDir,
    pub pool: sqlx::PgPool,
    pub queue: wharf_jobs::Queue,
    pub redis: RedisPrefix,
    pub db: TestDb,
    pub http: reqwest::Client,
}

impl Site {
    pub async fn start() -> Site {
        let data = tempfile::tempdir().unwrap();
        let failpoints = tempfile::tempdir().unwrap();
        let db = TestDb::new().await;
        let redis = RedisPrefix::unique();
        let (registry, addr) = spawn(
            Command::new(registry_bin())
                .env("WHARF_REGISTRY_LISTEN", "127.0.0.1:0")
                .env("WHARF_REGISTRY_DATA_DIR", data.path())
                .env("WHARF_REGISTRY_DATABASE__URL", &db.url)
                .env("WHARF_REGISTRY_LOG__LEVEL", "warn")
                .env("WHARF_REGISTRY_GC_GRACE_SECS", "0")
                .env("WHARF_REGISTRY_INTERNAL_SECRET", SECRET)
                .env("WHARF_FAILPOINTS_DIR", failpoints.path()),
        )
        .await;
        let pool = db.connect().await;
        let queue = wharf_jobs::Queue::connect(&redis_url(), &redis.0)
            .await
            .unwrap();
        Site {
            jobservices: Vec::new(),
            registry,
            registry_url: format!("http://{addr}"),
            data,
            failpoints,
            pool,
            queue,
            redis,
            db,
            http: reqwest::Client::new(),
        }
    }

    /// Starts one more jobservice process; returns its index and address.
    pub async fn start_jobservice(&mut self) -> (usize, String) {
        let (child, addr) = spawn(
            Command::new(JOBSERVICE_BIN)
                .env("WHARF_JOBSERVICE_LISTEN", "127.0.0.1:0")
                .env("WHARF_JOBSERVICE_MAX_JOB_WORKERS", "2")
                .env("WHARF_JOBSERVICE_DATABASE__URL", &self.db.url)
                .env("WHARF_JOBSERVICE_REDIS__URL", redis_url())
                .env("WHARF_JOBSERVICE_REDIS__PREFIX", &self.redis.0)
                .env("WHARF_JOBSERVICE_REGISTRY__URL", &self.registry_url)
                .env("WHARF_JOBSERVICE_REGISTRY__INTERNAL_SECRET", SECRET)
                .env("WHARF_JOBSERVICE_GC__GRACE_SECS", "0")
                .env("WHARF_JOBSERVICE_GC__RECOVER_AFTER_SECS", "2")
                .env("WHARF_JOBSERVICE_QUEUE__HEARTBEAT_SECS", "1")
                .env("WHARF_JOBSERVICE_QUEUE__LEASE_SECS", "4")
                .env("WHARF_JOBSERVICE_QUEUE__SWEEP_INTERVAL_SECS", "1")
                .env("WHARF_JOBSERVICE_LOG__LEVEL", "warn")
                .env("WHARF_FAILPOINTS_DIR", self.failpoints.path()),
        )
        .await;
        self.jobservices.push(Some(child));
        (self.jobservices.len() - 1, format!("http://{addr}"))
    }

    /// `kill -9` of jobservice `i`.
    pub async fn kill_jobservice(&mut self, i: usize) {
        if let Some(mut c) = self.jobservices[i].take() {
            c.kill().await.unwrap();
        }
    }

    /// Deletes every key of this site's Redis prefix: what `FLUSHALL` does
    /// to a deployment, without touching other tests' keys.
    pub async fn flush_redis(&self) {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.redis.0))
            .query_async(&mut c)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    }

    /// A GC execution enqueued the way core's API enqueues it.
    pub async fn enqueue_gc(&self, params: serde_json::Value) -> i64 {
        wharf_jobs::enqueue(
            &self.pool,
            &self.queue,
            &wharf_jobs::Submit {
                job_name: wharf_jobs::GARBAGE_COLLECTION,
                trigger: wharf_jobs::TRIGGER_MANUAL,
                params: &params,
                max_attempts: 3,
                deadline_secs: 600,
            },
        )
        .await
        .unwrap()
    }

    pub async fn execution(&self, id: i64) -> Execution {
        jobs::get_execution(&self.pool, id).await.unwrap().unwrap()
    }

    /// Polls the execution until it has ended.
    pub async fn wait_ended(&self, id: i64, secs: u64) -> Execution {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let e = self.execution(id).await;
            if ["Success", "Error", "Stopped"].contains(&e.status.as_str()) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} still {}",
                e.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Pushes a blob no manifest references (garbage, with G = 0).
    pub async fn garbage(&self, data: &[u8]) -> String {
        let d = format!("sha256:{}", hex(&sha2::Sha256::digest(data)));
        let r = self
            .http
            .post(format!(
                "{}/v2/junk/blobs/uploads/?digest={d}",
                self.registry_url
            ))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        d
    }

    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.data.path().join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }

    pub fn failpoint(&self, name: &str) -> (PathBuf, PathBuf) {
        let d: &Path = self.failpoints.path();
        (
            d.join(format!("{name}.pause")),
            d.join(format!("{name}.hit")),
        )
    }

    pub fn registry_alive(&mut self) -> bool {
        self.registry.try_wait().unwrap().is_none()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Polls `check` until it holds, for at most `secs` seconds.
pub async fn until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
