//! Harness: a fresh database per test (cloned from a migrated template), the
//! real `wharf-registry` binary with the internal secret and G = 0, and a
//! collector wired to both.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use sha2::Digest as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const SECRET: &str = "gc-test-secret";

/// `target/debug/wharf-registry`, next to this test binary's `deps/`; built if missing.
pub fn registry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap();
        let bin = dir.join("wharf-registry");
        if !bin.exists() {
            let st = std::process::Command::new(env!("CARGO"))
                .args(["build", "-p", "wharf-registry", "--bin", "wharf-registry"])
                .status()
                .expect("cargo build of wharf-registry");
            assert!(st.success());
        }
        bin
    })
    .clone()
}

/// A fresh migrated database per test, dropped when the test ends.
pub use wharf_testkit::TestDb;

/// The registry binary on a fresh volume and database, plus a pool and a collector.
pub struct Site {
    pub base: String,
    pub addr: String,
    pub data: tempfile::TempDir,
    pub pool: sqlx::PgPool,
    pub http: reqwest::Client,
    child: Child,
    pub db: TestDb,
}

impl Site {
    pub async fn start() -> Site {
        let data = tempfile::tempdir().unwrap();
        let db = TestDb::new().await;
        let mut child = Command::new(registry_bin())
            .env("WHARF_REGISTRY_LISTEN", "127.0.0.1:0")
            .env("WHARF_REGISTRY_DATA_DIR", data.path())
            .env("WHARF_REGISTRY_DATABASE__URL", &db.url)
            .env("WHARF_REGISTRY_LOG__LEVEL", "warn")
            .env("WHARF_REGISTRY_GC_GRACE_SECS", "0")
            .env("WHARF_REGISTRY_INTERNAL_SECRET", SECRET)
            .env("WHARF_REGISTRY_UPLOADS__PURGE_ENABLED", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("registry started")
            .unwrap()
            .expect("ready line");
        let addr = line
            .strip_prefix("listening on ")
            .expect("ready line")
            .to_owned();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
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
            child,
            db,
        }
    }

    pub fn collector(&self) -> wharf_gc::Collector {
        wharf_gc::Collector::new(
            self.pool.clone(),
            wharf_gc::RegistryClient::new(&self.base, SECRET),
        )
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
        let d = sha256(data);
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "push blob: {}", r.text().await.unwrap());
        d
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
        let r = self
            .http
            .put(self.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(m.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "put manifest: {}", r.text().await.unwrap());
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

/// Runs skopeo; returns (success, output).
pub async fn skopeo(args: &[&str]) -> (bool, String) {
    let out = Command::new("skopeo")
        .args(["--insecure-policy"])
        .args(args)
        .output()
        .await
        .expect("skopeo is installed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
