//! A site is one install: a temp data_volume, a harbor.yml on free ports,
//! the debug binaries, and a guard that runs `install.sh --stop` however the
//! test ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub const ADMIN_PASSWORD: &str = "Adm1n-e2e-Pass";

const HARBOR_YML: &str = "\
hostname: 127.0.0.1
http:
  port: HTTP_PORT
harbor_admin_password: ADMIN_PASSWORD
database:
  password: 'db p@ss'
  max_open_conns: 10
  max_idle_conns: 5
data_volume: DATA_VOLUME
storage_service:
  filesystem:
jobservice:
  max_job_workers: 2
log:
  level: info
upload_purging:
  enabled: true
  age: 168h
  interval: 24h
  dryrun: false
trivy:
  ignore_unfixed: false
internal_ports:
  core: CORE_PORT
  registry: REGISTRY_PORT
  jobservice: JOBSERVICE_PORT
  portal: PORTAL_PORT
  database: DATABASE_PORT
  redis: REDIS_PORT
";

#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub core: u16,
    pub registry: u16,
    pub jobservice: u16,
    pub portal: u16,
    pub database: u16,
    pub redis: u16,
}

impl Ports {
    fn free() -> Ports {
        // Held together so no two are the same, released before install.
        let ls: Vec<std::net::TcpListener> = (0..7)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let p: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
        Ports {
            http: p[0],
            core: p[1],
            registry: p[2],
            jobservice: p[3],
            portal: p[4],
            database: p[5],
            redis: p[6],
        }
    }
}

pub struct Site {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub harbor_yml: PathBuf,
    pub ports: Ports,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// The repository root, where install.sh is.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the four service binaries once per test run (a no-op when cargo
/// test already built them) and returns their directory.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .current_dir(root())
            .args([
                "build",
                "-p",
                "wharf-core",
                "-p",
                "wharf-registry",
                "-p",
                "wharf-jobservice",
                "-p",
                "wharf-proxy",
            ])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the service binaries failed");
        // target/debug/deps/install-… → target/debug
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().to_path_buf()
    })
}

impl Site {
    pub fn new() -> Site {
        Site::with_harbor_yml(|s| s)
    }

    /// A site whose harbor.yml is the test's template (with its `HTTP_PORT`,
    /// `DATA_VOLUME`, … placeholders) passed through `edit`.
    pub fn with_harbor_yml(edit: impl FnOnce(String) -> String) -> Site {
        let dir = tempfile::tempdir().unwrap();
        // The provided Postgres runs as the `postgres` user, which must reach data_volume.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        let ports = Ports::free();
        let yml = edit(HARBOR_YML.to_owned())
            .replace("HTTP_PORT", &ports.http.to_string())
            .replace("CORE_PORT", &ports.core.to_string())
            .replace("REGISTRY_PORT", &ports.registry.to_string())
            .replace("JOBSERVICE_PORT", &ports.jobservice.to_string())
            .replace("PORTAL_PORT", &ports.portal.to_string())
            .replace("DATABASE_PORT", &ports.database.to_string())
            .replace("REDIS_PORT", &ports.redis.to_string())
            .replace("ADMIN_PASSWORD", ADMIN_PASSWORD)
            .replace("DATA_VOLUME", &data.display().to_string());
        let harbor_yml = dir.path().join("harbor.yml");
        std::fs::write(&harbor_yml, yml).unwrap();
        Site {
            dir,
            data,
            harbor_yml,
            ports,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// Runs install.sh with `args` and this site's harbor.yml; returns
    /// whether it succeeded and its stdout and stderr.
    pub fn run_install(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(root().join("install.sh"))
            .args(args)
            .arg("--config")
            .arg(&self.harbor_yml)
            .env("WHARF_BIN_DIR", bin_dir())
            .current_dir(self.dir.path())
            .output()
            .expect("run install.sh");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `./install.sh --native`, which must succeed.
    pub fn install(&self) -> String {
        let (ok, out) = self.run_install(&["--native"]);
        if !ok {
            let logs = self.logs();
            panic!("install.sh failed:\n{out}\n{logs}");
        }
        out
    }

    pub fn stop(&self) {
        let (ok, out) = self.run_install(&["--stop"]);
        assert!(ok, "install.sh --stop failed:\n{out}");
    }

    /// The tail of every log, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(dir) = std::fs::read_dir(self.data.join("logs")) {
            for e in dir.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                s.push_str(&format!("--- {}\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    pub fn docker_ref(&self, reference: &str) -> String {
        format!("docker://127.0.0.1:{}/{reference}", self.ports.http)
    }

    fn authfile(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    /// Sends one API request through the proxy (as admin when `admin`);
    /// returns the status, the Location header and the body.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        admin: bool,
        body: Option<serde_json::Value>,
    ) -> (u16, Option<String>, String) {
        self.rt.block_on(async {
            let mut r = self.http.request(method, format!("{}{path}", self.url()));
            if admin {
                r = r.basic_auth("admin", Some(ADMIN_PASSWORD));
            }
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, location, r.text().await.unwrap())
        })
    }

    pub fn status(&self, path: &str, admin: bool) -> u16 {
        self.call(reqwest::Method::GET, path, admin, None).0
    }

    pub fn get_json(&self, path: &str, admin: bool) -> serde_json::Value {
        let (status, _, text) = self.call(reqwest::Method::GET, path, admin, None);
        assert!((200..300).contains(&status), "GET {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }

    /// Runs skopeo with this site's auth file; fails the test if skopeo fails.
    pub fn skopeo_ok(&self, args: &[&str]) {
        let out = Command::new("skopeo")
            .arg("--insecure-policy")
            .args(args)
            .env("REGISTRY_AUTH_FILE", self.authfile())
            .output()
            .expect("skopeo is installed (.ci/run installs it)");
        assert!(
            out.status.success(),
            "skopeo {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `skopeo login` through the proxy, as a user does.
    pub fn skopeo_login(&self, password: &str) {
        let host = format!("127.0.0.1:{}", self.ports.http);
        let authfile = self.authfile().display().to_string();
        self.skopeo_ok(&[
            "login",
            "--tls-verify=false",
            "--authfile",
            &authfile,
            "-u",
            "admin",
            "-p",
            password,
            &host,
        ]);
    }

    /// Pulls `reference` into a new OCI layout.
    pub fn pull(&self, reference: &str) -> tempfile::TempDir {
        let dst = tempfile::tempdir().unwrap();
        let tag = reference.rsplit(':').next().unwrap();
        self.skopeo_ok(&[
            "copy",
            "--src-tls-verify=false",
            "--preserve-digests",
            &self.docker_ref(reference),
            &format!("oci:{}:{tag}", dst.path().display()),
        ]);
        dst
    }

    /// The bytes of every secret install made.
    pub fn secret_bytes(&self) -> Vec<(String, Vec<u8>)> {
        ["token.key", "token.crt", "internal_secret", "secretkey"]
            .iter()
            .map(|n| {
                let p = self.data.join("secret").join(n);
                (
                    n.to_string(),
                    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
                )
            })
            .collect()
    }
}

impl Drop for Site {
    /// Stops whatever the install started, pass or fail.
    fn drop(&mut self) {
        if self.data.join("config/install.env").exists() {
            let _ = self.run_install(&["--stop"]);
        }
    }
}

use wharf_testkit::oci::sha256;

/// Writes an OCI layout holding one image of `layers` gzip layers, tagged `tag`.
pub use wharf_testkit::oci::write_image;

fn layout_blobs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn layout_tag(dir: &Path, tag: &str) -> Option<String> {
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).ok()?).ok()?;
    layout["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .map(str::to_owned)
}

/// The same blobs by digest, each intact, and the tag naming the same manifest.
pub fn assert_same_image(src: &Path, dst: &Path, tag: &str, manifest: &str) {
    let (a, b) = (layout_blobs(src), layout_blobs(dst));
    assert_eq!(a.len(), 5, "3 layers, a config and a manifest");
    assert_eq!(a, b, "the pulled layout holds different digests");
    for hex in &b {
        let bytes = std::fs::read(dst.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(sha256(&bytes)[7..], **hex, "blob {hex} is corrupt");
    }
    assert_eq!(layout_tag(dst, tag).as_deref(), Some(manifest));
}
