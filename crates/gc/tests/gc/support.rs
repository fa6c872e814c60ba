//! Harness: a fresh database per test (cloned from a migrated template), the
//! real `wharf-registry` binary with the internal secret and G = 0, and a
//! collector wired to both; failpoint control, a small registry client, and
//! the checks of I1, I2 and reclaim that the race and soak tests share.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use sha2::Digest as _;
use tokio::process::{Child, Command};

pub const SECRET: &str = "gc-test-secret";

/// `target/<profile>/wharf-registry`, next to this test (or bench) binary's
/// `deps/`, built by cargo first in the same profile so that a stale binary
/// is never tested.
pub fn registry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap();
        let bin = dir.join("wharf-registry");
        let mut args = vec![
            "build",
            "--quiet",
            "-p",
            "wharf-registry",
            "--bin",
            "wharf-registry",
        ];
        if dir.ends_with("release") {
            args.push("--release");
        }
        let st = std::process::Command::new(env!("CARGO"))
            .args(&args)
            .status()
            .expect("cargo build of wharf-registry");
        assert!(st.success());
        bin
    })
    .clone()
}

/// The collector as the race and crash tests run it: G = 0, recovery at
/// once, untagged manifests go, reconcile on.
pub fn eager_params() -> wharf_gc::Params {
    wharf_gc::Params {
        grace_secs: 0,
        recover_after_secs: 0,
        delete_untagged: true,
        reconcile: true,
        workers: 2,
        ..wharf_gc::Params::default()
    }
}

/// A fresh migrated database per test, dropped when the test ends.
pub use wharf_testkit::TestDb;

/// The registry binary with the internal secret and G = 0; returns it and
/// the address from its ready line.
async fn spawn_registry(data: &Path, db_url: &str, failpoints: &Path) -> (Child, String) {
    wharf_testkit::spawn_service(
        Command::new(registry_bin())
            .env("WHARF_REGISTRY_LISTEN", "127.0.0.1:0")
            .env("WHARF_REGISTRY_DATA_DIR", data)
            .env("WHARF_REGISTRY_DATABASE__URL", db_url)
            .env("WHARF_REGISTRY_LOG__LEVEL", "warn")
            .env("WHARF_REGISTRY_GC_GRACE_SECS", "0")
            .env("WHARF_REGISTRY_INTERNAL_SECRET", SECRET)
            .env("WHARF_REGISTRY_UPLOADS__PURGE_ENABLED", "false")
            .env(wharf_storage::failpoint::ENV, failpoints),
    )
    .await
}

/// The registry binary on a fresh volume and database, plus a pool and a collector.
pub struct Site {
    pub base: String,
    pub addr: String,
    pub data: tempfile::TempDir,
    pub pool: sqlx::PgPool,
    pub http: reqwest::Client,
    /// The registry's `WHARF_FAILPOINTS_DIR`, and this site's collectors'.
    pub fp: Failpoints,
    child: Child,
    pub db: TestDb,
}

impl Site {
    pub async fn start() -> Site {
        let data = tempfile::tempdir().unwrap();
        let db = TestDb::new().await;
        let fp = Failpoints::new();
        let (child, addr) = spawn_registry(data.path(), &db.url, fp.path()).await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(12)
            .connect(&db.url)
            .await
            .unwrap();
        Site {
            base: format!("http://{addr}"),
            addr,
            data,
            pool,
            http: reqwest::Client::new(),
            fp,
            child,
            db,
        }
    }

    /// `kill -9` of the registry, wherever it is (a paused failpoint too).
    pub async fn crash_registry(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// A new registry process on the same volume, database and failpoints.
    pub async fn restart_registry(&mut self) {
        let (child, addr) = spawn_registry(self.data.path(), &self.db.url, self.fp.path()).await;
        self.child = child;
        self.base = format!("http://{addr}");
        self.addr = addr;
    }

    /// A collector whose failpoints (G1, G3) are this site's, so that tests
    /// running side by side in this process never pause each other's.
    pub fn collector(&self) -> wharf_gc::Collector {
        wharf_gc::Collector::new(
            self.pool.clone(),
            wharf_gc::RegistryClient::new(&self.base, SECRET),
        )
        .with_failpoints(self.fp.path())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn v2(&self) -> PathBuf {
        self.data.path().join("docker/registry/v2")
    }

    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.v2()
            .join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    pub fn layer_link(&self, repo: &str, digest: &str) -> PathBuf {
        self.v2().join(format!(
            "repositories/{repo}/_layers/sha256/{}/link",
            &digest[7..]
        ))
    }

    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let (status, body) = self.upload(repo, data).await;
        assert_eq!(status, 201, "push blob: {body}");
        sha256(data)
    }

    /// Monolithic upload (`POST …?digest=`); the answer, unchecked.
    pub async fn upload(&self, repo: &str, data: &[u8]) -> (StatusCode, String) {
        let d = sha256(data);
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Chunked upload: POST, one PATCH per `chunk` bytes, PUT `?digest=`.
    pub async fn upload_chunked(
        &self,
        repo: &str,
        data: &[u8],
        chunk: usize,
    ) -> (StatusCode, String) {
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        if r.status() != 202 {
            return (r.status(), r.text().await.unwrap());
        }
        let mut loc = self.location(&r);
        let mut offset = 0;
        for part in data.chunks(chunk.max(1)) {
            let r = self
                .http
                .patch(&loc)
                .header("content-type", "application/octet-stream")
                .header(
                    "content-range",
                    format!("{offset}-{}", offset + part.len() - 1),
                )
                .body(part.to_vec())
                .send()
                .await
                .unwrap();
            if r.status() != 202 {
                return (r.status(), r.text().await.unwrap());
            }
            offset += part.len();
            loc = self.location(&r);
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .http
            .put(format!("{loc}{sep}digest={}", sha256(data)))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    fn location(&self, r: &reqwest::Response) -> String {
        let loc = r.headers()["location"].to_str().unwrap();
        if loc.starts_with("http://") {
            loc.to_owned()
        } else {
            self.url(loc)
        }
    }

    /// Cross-repository mount: 201 mounted, 202 fell back to an upload session.
    pub async fn mount(&self, repo: &str, from: &str, digest: &str) -> StatusCode {
        self.http
            .post(self.url(&format!(
                "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
            )))
            .send()
            .await
            .unwrap()
            .status()
    }

    pub async fn head_blob(&self, repo: &str, digest: &str) -> StatusCode {
        self.http
            .head(self.url(&format!("/v2/{repo}/blobs/{digest}")))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// `Some(bytes)` on 200, `None` on 404; anything else fails the test.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let r = self
            .http
            .get(self.url(&format!("/v2/{repo}/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => Some(r.bytes().await.unwrap().to_vec()),
            404 => None,
            s => panic!("GET blob {repo}@{digest}: {s} {}", r.text().await.unwrap()),
        }
    }

    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Option<Vec<u8>> {
        let r = self
            .http
            .get(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => Some(r.bytes().await.unwrap().to_vec()),
            404 => None,
            s => panic!(
                "GET manifest {repo}:{reference}: {s} {}",
                r.text().await.unwrap()
            ),
        }
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &[u8],
    ) -> (StatusCode, String) {
        let r = self
            .http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_vec())
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// DELETE of a manifest by digest, or of a tag.
    pub async fn delete_reference(&self, repo: &str, reference: &str) -> StatusCode {
        self.http
            .delete(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Pulls `repo:reference` completely, blob by blob, verifying every
    /// digest (I1 as a client sees it). `Err` says what is missing or wrong.
    pub async fn pull_verified(&self, repo: &str, reference: &str) -> Result<(), String> {
        let m = self
            .get_manifest(repo, reference)
            .await
            .ok_or_else(|| format!("manifest {repo}:{reference} is missing"))?;
        if reference.starts_with("sha256:") && sha256(&m) != reference {
            return Err(format!(
                "manifest {repo}@{reference} has digest {}",
                sha256(&m)
            ));
        }
        for d in manifest_blobs(&m) {
            match self.get_blob(repo, &d).await {
                None => return Err(format!("{repo}:{reference}: blob {d} is missing (404)")),
                Some(b) if sha256(&b) != d => {
                    return Err(format!(
                        "{repo}:{reference}: blob {d} has digest {}",
                        sha256(&b)
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// What the index says about a digest, for failure messages.
    pub async fn explain_blob(&self, digest: &str) -> String {
        let key = hex_decode(&digest[7..]);
        let row: Option<(String, i64, i64, i64, Option<f64>)> = sqlx::query_as(
            "SELECT b.state::text,
                    (SELECT count(*) FROM manifest m WHERE m.digest = b.digest),
                    (SELECT count(*) FROM manifest_ref r WHERE r.child_digest = b.digest),
                    (SELECT count(*) FROM repo_blob p WHERE p.digest = b.digest),
                    (SELECT extract(epoch FROM q.review_after - now())::float8 FROM gc_queue q
                      WHERE q.kind = 'blob' AND q.key = b.digest)
               FROM blob b WHERE b.digest = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .unwrap();
        match row {
            None => format!("{digest}: no row"),
            Some((state, m, r, p, q)) => format!(
                "{digest}: {state}, {m} manifest rows, {r} refs, {p} links, queued {q:?} s from now"
            ),
        }
    }

    /// Sessions of this database waiting for a lock another one holds.
    pub async fn lock_waiters(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Every blob data file under the volume, as digests.
    pub fn blob_files(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let root = self.v2().join("blobs/sha256");
        let Ok(prefixes) = std::fs::read_dir(&root) else {
            return out;
        };
        for p in prefixes.flatten() {
            for b in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
                if b.path().join("data").exists() {
                    out.insert(format!("sha256:{}", b.file_name().to_string_lossy()));
                }
            }
        }
        out
    }

    /// I2 and the index's own consistency: every `live` row has its file, no
    /// row is left `deleting`, every reference of a manifest row is live.
    pub async fn assert_index_consistent(&self) {
        let live: Vec<Vec<u8>> = sqlx::query_scalar("SELECT digest FROM blob WHERE state = 'live'")
            .fetch_all(&self.pool)
            .await
            .unwrap();
        let files = self.blob_files();
        for k in &live {
            let d = format!("sha256:{}", hex(k));
            assert!(files.contains(&d), "I2: live row {d} has no file");
        }
        let deleting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM blob WHERE state = 'deleting'")
                .fetch_one(&self.pool)
                .await
                .unwrap();
        assert_eq!(deleting, 0, "rows left `deleting`");
        let dangling: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM manifest_ref r LEFT JOIN blob b ON b.digest = r.child_digest
              WHERE b.digest IS NULL OR b.state <> 'live'",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap();
        assert_eq!(dangling, 0, "I1: manifest references without a live blob");
    }

    /// Pushes a real (tar+gzip) image: config plus `layers`; returns
    /// (manifest digest, config digest, layer digests).
    pub async fn push_image(&self, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Image {
        let mut ls = vec![];
        let mut layer_digests = vec![];
        let mut diff_ids = vec![];
        for l in layers {
            let (gz, diff) = tar_gz(l);
            let d = self.push_blob(repo, &gz).await;
            diff_ids.push(diff);
            ls.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": gz.len()}));
            layer_digests.push(d);
        }
        let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}, "n": rand::random::<u64>()}))
        .unwrap();
        let config_digest = self.push_blob(repo, &config).await;
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": ls,
        }))
        .unwrap();
        let (status, body) = self.put_manifest(repo, tag, &m).await;
        assert_eq!(status, 201, "put manifest: {body}");
        Image {
            manifest: sha256(&m),
            config: config_digest,
            layers: layer_digests,
        }
    }

    pub async fn delete_manifest(&self, repo: &str, digest: &str) {
        let r = self
            .http
            .delete(self.url(&format!("/v2/{repo}/manifests/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            202,
            "delete manifest: {}",
            r.text().await.unwrap()
        );
    }

    pub async fn blob_state(&self, digest: &str) -> Option<String> {
        let bytes = hex_decode(&digest[7..]);
        sqlx::query_scalar("SELECT state::text FROM blob WHERE digest = $1")
            .bind(bytes)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
    }

    /// Present in the index as live and on disk.
    pub async fn assert_live(&self, digest: &str) {
        assert_eq!(
            self.blob_state(digest).await.as_deref(),
            Some("live"),
            "{digest} row"
        );
        assert!(self.blob_file(digest).exists(), "{digest} file");
    }

    /// Neither a row nor a file.
    pub async fn assert_gone(&self, digest: &str) {
        assert_eq!(self.blob_state(digest).await, None, "{digest} row");
        assert!(!self.blob_file(digest).exists(), "{digest} file");
    }
}

/// Test-side control of `wharf_storage::failpoint`: `arm` makes the named
/// point pause, `wait_hit` sees that something paused there, `release` lets
/// it go on.
pub struct Failpoints {
    dir: tempfile::TempDir,
}

impl Failpoints {
    pub fn new() -> Failpoints {
        Failpoints {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn arm(&self, name: &str) {
        let _ = std::fs::remove_file(self.path().join(format!("{name}.hit")));
        std::fs::write(self.path().join(format!("{name}.pause")), b"").unwrap();
    }

    pub fn release(&self, name: &str) {
        let _ = std::fs::remove_file(self.path().join(format!("{name}.pause")));
    }

    pub fn was_hit(&self, name: &str) -> bool {
        self.path().join(format!("{name}.hit")).exists()
    }

    /// Waits until `name` is hit or `done()` holds; false on timeout.
    pub async fn wait_hit_or(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn() -> bool,
    ) -> bool {
        wait_until(timeout, || self.was_hit(name) || done()).await
    }
}

impl Default for Failpoints {
    fn default() -> Failpoints {
        Failpoints::new()
    }
}

/// Polls `f` every 10 ms until it holds (true) or `timeout` passes (false).
pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A layer (tar+gzip) and its diff id.
pub struct Layer {
    pub gz: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
}

impl Layer {
    pub fn random(size: usize) -> Layer {
        let (gz, diff_id) = tar_gz(&random_bytes(size));
        Layer {
            digest: sha256(&gz),
            gz,
            diff_id,
        }
    }
}

/// A fresh (unique) image config and the manifest naming it and `layers`.
pub fn image_of(layers: &[&Layer]) -> (Vec<u8>, Vec<u8>) {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}, "n": rand::random::<u64>()}))
    .unwrap();
    let ls: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l.digest, "size": l.gz.len()}))
        .collect();
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": ls,
    }))
    .unwrap();
    (config, m)
}

/// The config and layer digests an image manifest names.
pub fn manifest_blobs(m: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(m).expect("manifest JSON");
    let mut out = vec![v["config"]["digest"].as_str().unwrap().to_owned()];
    for l in v["layers"].as_array().into_iter().flatten() {
        out.push(l["digest"].as_str().unwrap().to_owned());
    }
    out
}

/// Whether an answer is the refusal gc.md allows for a manifest PUT.
pub fn is_blob_unknown(status: StatusCode, body: &str) -> bool {
    status == 400 && body.contains("MANIFEST_BLOB_UNKNOWN")
}

pub struct Image {
    pub manifest: String,
    pub config: String,
    pub layers: Vec<String>,
}

impl Image {
    pub fn all(&self) -> Vec<String> {
        let mut v = vec![self.manifest.clone(), self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }
}

pub fn tar_gz(content: &[u8]) -> (Vec<u8>, String) {
    use std::io::Write;
    // A minimal ustar archive with one file, then gzip.
    let mut header = [0u8; 512];
    header[..8].copy_from_slice(b"file.bin");
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    let size = format!("{:011o}\0", content.len());
    header[124..136].copy_from_slice(size.as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| *b as u32).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut raw = header.to_vec();
    raw.extend_from_slice(content);
    raw.resize(raw.len().div_ceil(512) * 512 + 1024, 0);
    let diff = sha256(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), diff)
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(data)))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's `docker-registry` (distribution 2.8) serving `root` on a free port.
pub struct DockerRegistry {
    pub addr: String,
    _child: Child,
    dir: tempfile::TempDir,
}

impl DockerRegistry {
    pub async fn start(root: &Path) -> DockerRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: \"{}\"\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            root.display()
        );
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("docker-registry is installed");
        let r = DockerRegistry {
            addr: format!("127.0.0.1:{port}"),
            _child: child,
            dir,
        };
        let http = reqwest::Client::new();
        for _ in 0..150 {
            if http
                .get(format!("http://{}/v2/", r.addr))
                .send()
                .await
                .is_ok()
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("docker-registry did not start:\n{}", r.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

#[allow(
    unused_imports,
    reason = "the GC bench includes this file and pulls nothing with skopeo"
)]
pub use wharf_testkit::skopeo;
