//! Test harness: the real `wharf-proxy` in front of the real registry and
//! core processes, on port 0, with a fresh database (cloned from a migrated
//! template) and a fresh Redis key prefix per test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_wharf-proxy");
pub const ADMIN_PASSWORD: &str = "Harbor12345";

/// A sibling binary of this workspace, built by cargo first so a stale one
/// is never tested.
fn workspace_bin(package: &str) -> PathBuf {
    wharf_testkit::workspace_bin(Path::new(PROXY_BIN), package, package)
}

pub fn registry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("wharf-registry")).clone()
}

pub fn core_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("wharf-core")).clone()
}

/// A fresh migrated database per test, dropped when the test ends.
pub use wharf_testkit::TestDb;

pub use wharf_testkit::{redis_url, RedisPrefix};

/// `openssl req -x509` with the extra arguments; writes `<name>.key` and `<name>.crt`.
fn openssl_cert(dir: &Path, name: &str, extra: &[&str]) {
    wharf_testkit::self_signed_cert(
        &dir.join(format!("{name}.key")),
        &dir.join(format!("{name}.crt")),
        extra,
    );
}

/// A running process and the addresses its ready lines named.
pub struct Proc {
    pub child: Child,
    pub addr: String,
    pub https_addr: Option<String>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("process is running")
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }
}

async fn spawn(bin: &Path, envs: &[(String, String)], stderr: Option<&Path>) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.envs(envs.iter().cloned())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    match stderr {
        Some(p) => cmd.stderr(std::fs::File::create(p).unwrap()),
        None => cmd.stderr(Stdio::inherit()),
    };
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut https_addr = None;
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{} started", bin.display()))
            .unwrap()
            .unwrap_or_else(|| panic!("{} printed its ready line", bin.display()));
        if let Some(a) = line.strip_prefix("https listening on ") {
            https_addr = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("listening on ") {
            break a.to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Proc {
        child,
        addr,
        https_addr,
    }
}

/// An address nothing listens on (connections are refused).
pub fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// What a test wants running behind the proxy.
#[derive(Default)]
pub struct Options {
    pub core: bool,
    pub tls: bool,
    /// The portal upstream; a dead address when `None` (no portal yet).
    pub portal: Option<String>,
    /// Applied after the defaults, so a test can override them. By default
    /// the proxy reads the registry's volume, as install.sh sets it up.
    pub proxy_env: Vec<(String, String)>,
}

/// The platform behind the proxy: an open registry, optionally core.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub db: TestDb,
    pub redis: RedisPrefix,
    pub registry: Option<Proc>,
    pub core: Option<Proc>,
    pub proxy: Proc,
    proxy_env: Vec<(String, String)>,
    /// `http://<proxy http addr>`
    pub url: String,
    pub http: reqwest::Client,
}

impl Site {
    pub async fn start() -> Site {
        Site::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new().await;
        let redis = RedisPrefix::unique();
        let registry_env = vec![
            ("WHARF_REGISTRY_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "WHARF_REGISTRY_DATA_DIR".to_owned(),
                dir.path().join("registry").display().to_string(),
            ),
            ("WHARF_REGISTRY_DATABASE__URL".to_owned(), db.url.clone()),
            ("WHARF_REGISTRY_LOG__LEVEL".to_owned(), "warn".to_owned()),
        ];
        let registry = spawn(&registry_bin(), &registry_env, None).await;
        let core = if opts.core {
            openssl_cert(dir.path(), "token", &["-subj", "/CN=wharf-test-token"]);
            let env = vec![
                ("WHARF_CORE_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
                (
                    "WHARF_CORE_EXTERNAL_URL".to_owned(),
                    "http://wharf.test".to_owned(),
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
                    format!("http://{}", registry.addr),
                ),
                ("WHARF_CORE_LOG__LEVEL".to_owned(), "warn".to_owned()),
            ];
            Some(spawn(&core_bin(), &env, None).await)
        } else {
            None
        };
        let mut env = vec![
            (
                "WHARF_PROXY_LISTEN_HTTP".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
            (
                "WHARF_PROXY_UPSTREAMS__REGISTRY".to_owned(),
                format!("http://{}", registry.addr),
            ),
            (
                "WHARF_PROXY_UPSTREAMS__CORE".to_owned(),
                format!(
                    "http://{}",
                    core.as_ref().map_or_else(dead_addr, |c| c.addr.clone())
                ),
            ),
            (
                "WHARF_PROXY_UPSTREAMS__PORTAL".to_owned(),
                format!("http://{}", opts.portal.clone().unwrap_or_else(dead_addr)),
            ),
            (
                "WHARF_PROXY_UPSTREAMS__REGISTRY_STORAGE".to_owned(),
                dir.path().join("registry").display().to_string(),
            ),
            ("WHARF_PROXY_LOG__LEVEL".to_owned(), "info".to_owned()),
        ];
        if opts.tls {
            openssl_cert(
                dir.path(),
                "proxy",
                &[
                    "-subj",
                    "/CN=localhost",
                    "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-addext",
                    "basicConstraints=critical,CA:FALSE",
                ],
            );
            env.extend([
                (
                    "WHARF_PROXY_LISTEN_HTTPS".to_owned(),
                    "127.0.0.1:0".to_owned(),
                ),
                (
                    "WHARF_PROXY_TLS__CERTIFICATE".to_owned(),
                    dir.path().join("proxy.crt").display().to_string(),
                ),
                (
                    "WHARF_PROXY_TLS__PRIVATE_KEY".to_owned(),
                    dir.path().join("proxy.key").display().to_string(),
                ),
            ]);
        }
        env.extend(opts.proxy_env);
        let proxy_env = env.clone();
        let proxy = spawn(
            Path::new(PROXY_BIN),
            &env,
            Some(&dir.path().join("proxy.log")),
        )
        .await;
        Site {
            url: format!("http://{}", proxy.addr),
            dir,
            db,
            redis,
            registry: Some(registry),
            core,
            proxy,
            proxy_env,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A second proxy in front of the same services that cannot read the
    /// registry's volume, so it relays every blob; logs to `relay.log`.
    pub async fn relay_proxy(&self) -> Proc {
        let mut env = self.proxy_env.clone();
        env.retain(|(k, _)| k != "WHARF_PROXY_UPSTREAMS__REGISTRY_STORAGE");
        spawn(
            Path::new(PROXY_BIN),
            &env,
            Some(&self.dir.path().join("relay.log")),
        )
        .await
    }

    /// `docker://<proxy>/<reference>` for skopeo.
    pub fn docker_ref(&self, reference: &str) -> String {
        format!("docker://{}/{reference}", self.proxy.addr)
    }

    pub fn registry_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.registry.as_ref().unwrap().addr)
    }

    /// The proxy's log so far (stderr, where the access log goes).
    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    pub fn proxy_cert(&self) -> PathBuf {
        self.dir.path().join("proxy.crt")
    }

    pub async fn kill_registry(&mut self) {
        if let Some(mut c) = self.registry.take() {
            c.child.kill().await.unwrap();
        }
    }

    pub async fn kill_core(&mut self) {
        if let Some(mut c) = self.core.take() {
            c.child.kill().await.unwrap();
        }
    }
}

pub use wharf_testkit::skopeo;

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Writes a multi-layer OCI image layout with real tar+gzip layers; returns the manifest digest.
pub use wharf_testkit::oci::write_image as oci_image;

/// The blob digests of an OCI layout, sorted.
pub fn layout_blobs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Blobs whose content does not hash to their name.
pub fn layout_corrupt_blobs(dir: &Path) -> Vec<String> {
    layout_blobs(dir)
        .into_iter()
        .filter(|h| sha256_hex(&std::fs::read(dir.join("blobs/sha256").join(h)).unwrap()) != *h)
        .collect()
}

/// A tiny HTTP/1.1 server that answers every request with the request head
/// it received as JSON (`{"headers": [[name, value]…], "target": …}`): a
/// stand-in upstream that lets a test see exactly what the proxy sent.
pub async fn echo_upstream() -> String {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                loop {
                    let Ok(Some(target)) = lines.next_line().await else {
                        return;
                    };
                    let mut headers = vec![];
                    while let Ok(Some(l)) = lines.next_line().await {
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                        }
                    }
                    let body =
                        serde_json::json!({"target": target, "headers": headers}).to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-upstream-hop: 1\r\nconnection: keep-alive, x-upstream-hop\r\n\r\n{body}",
                        body.len()
                    );
                    if w.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
