//! Test harness: a fresh database (cloned from a migrated template) and data
//! directory per registry, the real binary, and helpers that read like the
//! protocol.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use sha2::Digest as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

pub const BIN: &str = env!("CARGO_BIN_EXE_wharf-registry");

pub fn admin_url() -> String {
    std::env::var("WHARF_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn db_url(name: &str) -> String {
    let base = admin_url();
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{prefix}/{name}")
}

static TEMPLATE: OnceLock<Mutex<Option<String>>> = OnceLock::new();

async fn admin() -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(&admin_url())
        .await
        .expect("connect to the test Postgres (see README)")
}

/// A migrated template database, made once per test binary by the real `migrate` command.
async fn template() -> String {
    let lock = TEMPLATE.get_or_init(|| Mutex::new(None));
    let mut guard = lock.lock().await;
    if let Some(t) = guard.as_ref() {
        return t.clone();
    }
    let name = format!("wharf_tpl_{}_{}", std::process::id(), rand::random::<u32>());
    let mut c = admin().await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    let out = Command::new(BIN)
        .arg("migrate")
        .env("WHARF_REGISTRY_DATABASE__URL", db_url(&name))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    *guard = Some(name.clone());
    name
}

pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let tpl = template().await;
        let name = format!("wharf_t_{}_{}", std::process::id(), rand::random::<u32>());
        let mut c = admin().await;
        // Cloning needs the template idle; serialise clones within this binary.
        let lock = TEMPLATE.get().expect("template made").lock().await;
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {tpl}"))
            .execute(&mut c)
            .await
            .unwrap();
        drop(lock);
        TestDb {
            url: db_url(&name),
            name,
        }
    }

    pub async fn connect(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
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

/// Token settings for a registry under test.
#[derive(Clone)]
pub struct Auth {
    pub dir: PathBuf,
    pub realm: String,
    pub service: String,
    pub issuer: String,
}

impl Auth {
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    pub fn signer(&self) -> wharf_token::Signer {
        wharf_token::Signer::new(&std::fs::read(self.key()).unwrap(), &self.issuer, 300).unwrap()
    }
    /// A token granting exactly `scopes` (`type:name:actions`).
    pub fn token(&self, scopes: &[&str]) -> String {
        let access = scopes
            .iter()
            .map(|s| wharf_token::Access::parse_scope(s).unwrap())
            .collect();
        self.signer()
            .issue("tester", &self.service, access)
            .unwrap()
            .token
    }
}

/// Makes an RSA key and self-signed certificate with the openssl CLI.
pub fn keypair(dir: &Path) {
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=wharf-test-token",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(st.success());
}

pub struct Registry {
    pub base: String,
    pub addr: String,
    pub data: tempfile::TempDir,
    pub db: TestDb,
    pub auth: Option<Auth>,
    pub http: reqwest::Client,
    child: Option<Child>,
    extra_env: Vec<(String, String)>,
}

impl Registry {
    pub async fn start() -> Registry {
        Registry::start_with(None, vec![]).await
    }

    pub async fn start_with(auth: Option<Auth>, extra_env: Vec<(String, String)>) -> Registry {
        let data = tempfile::tempdir().unwrap();
        let db = TestDb::new().await;
        let mut r = Registry {
            base: String::new(),
            addr: String::new(),
            data,
            db,
            auth,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            child: None,
            extra_env,
        };
        r.spawn("127.0.0.1:0").await;
        r
    }

    async fn spawn(&mut self, listen: &str) {
        let mut cmd = Command::new(BIN);
        cmd.env("WHARF_REGISTRY_LISTEN", listen)
            .env("WHARF_REGISTRY_DATA_DIR", self.data.path())
            .env("WHARF_REGISTRY_DATABASE__URL", &self.db.url)
            .env("WHARF_REGISTRY_LOG__LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(a) = &self.auth {
            cmd.env("WHARF_REGISTRY_AUTH__REALM", &a.realm)
                .env("WHARF_REGISTRY_AUTH__SERVICE", &a.service)
                .env("WHARF_REGISTRY_AUTH__ISSUER", &a.issuer)
                .env("WHARF_REGISTRY_AUTH__CERTIFICATE", a.cert());
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
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
        self.base = format!("http://{addr}");
        self.addr = addr;
        self.child = Some(child);
    }

    /// `kill -9`, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    /// Starts the binary again on the same address, data and database.
    pub async fn restart(&mut self) {
        self.kill().await;
        let addr = self.addr.clone();
        self.spawn(&addr).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Pushes a blob monolithically; returns its digest.
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

    /// Pushes an image manifest with one config and the given layers; returns (digest, bytes).
    pub async fn push_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (String, Vec<u8>) {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"n":{}}}"#,
            rand::random::<u64>()
        );
        let cd = self.push_blob(repo, config.as_bytes()).await;
        let mut ls = vec![];
        for l in layers {
            let d = self.push_blob(repo, l).await;
            ls.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": l.len()}));
        }
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": ls,
        }))
        .unwrap();
        let d = self
            .put_manifest(repo, tag, &m, "application/vnd.oci.image.manifest.v1+json")
            .await;
        (d, m)
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: &[u8],
        media_type: &str,
    ) -> String {
        let r = self
            .http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "put manifest: {}", r.text().await.unwrap());
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned()
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(data)))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// The `code` of the first OCI error in a response body.
pub async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("an OCI error body");
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An OCI image layout on disk with a multi-layer image, made with real tar+gzip layers.
pub fn oci_layout(dir: &Path, tag: &str, layers: usize, layer_size: usize) -> String {
    write_image(dir, &[(tag, "amd64")], layers, layer_size).remove(0)
}

/// Writes one image per (tag, arch) into an OCI layout; returns their manifest digests.
pub fn write_image(
    dir: &Path,
    images: &[(&str, &str)],
    layers: usize,
    layer_size: usize,
) -> Vec<String> {
    use std::io::Write;
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |b: &[u8]| -> (String, usize) {
        let d = sha256(b);
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
        (d, b.len())
    };
    let mut index = vec![];
    let mut digests = vec![];
    for (tag, arch) in images {
        let mut ls = vec![];
        let mut diff_ids = vec![];
        for i in 0..layers {
            let mut tarball = tar::Builder::new(Vec::new());
            let content = random_bytes(layer_size);
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tarball
                .append_data(&mut h, format!("layer{i}.bin"), &content[..])
                .unwrap();
            let raw = tarball.into_inner().unwrap();
            diff_ids.push(sha256(&raw));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&raw).unwrap();
            let (d, n) = put(&gz.finish().unwrap());
            ls.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}));
        }
        let config = serde_json::to_vec(&serde_json::json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}})).unwrap();
        let (cd, cn) = put(&config);
        let m = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn}, "layers": ls})).unwrap();
        let (md, mn) = put(&m);
        index.push(serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
            "platform": {"architecture": arch, "os": "linux"}, "annotations": {"org.opencontainers.image.ref.name": tag}}));
        digests.push(md);
    }
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": index})).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    digests
}

/// Runs skopeo with the given arguments; returns (success, stderr).
pub async fn skopeo(args: &[&str]) -> (bool, String) {
    let out = Command::new("skopeo")
        .args(["--insecure-policy"])
        .args(args)
        .output()
        .await
        .expect("skopeo is installed (.ci/run installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Sorted file names under an OCI layout's blobs directory.
pub fn layout_blobs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
