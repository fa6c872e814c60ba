//! Test harness: a fresh database (cloned from a migrated template) and data
//! directory per registry, the real binary, and helpers that read like the
//! protocol.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest as _;
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_wharf-registry");

/// A fresh migrated database per test, dropped when the test ends.
pub use wharf_testkit::TestDb;

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
    wharf_testkit::self_signed_cert(
        &dir.join("key.pem"),
        &dir.join("cert.pem"),
        &["-subj", "/CN=wharf-test-token"],
    );
}

/// Fields drop in order: the process stops before its database goes.
pub struct Registry {
    child: Option<Child>,
    pub base: String,
    pub addr: String,
    pub data: tempfile::TempDir,
    pub db: TestDb,
    pub auth: Option<Auth>,
    pub http: reqwest::Client,
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
            .env("WHARF_REGISTRY_LOG__LEVEL", "warn");
        if let Some(a) = &self.auth {
            cmd.env("WHARF_REGISTRY_AUTH__REALM", &a.realm)
                .env("WHARF_REGISTRY_AUTH__SERVICE", &a.service)
                .env("WHARF_REGISTRY_AUTH__ISSUER", &a.issuer)
                .env("WHARF_REGISTRY_AUTH__CERTIFICATE", a.cert());
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let (child, addr) = wharf_testkit::spawn_service(&mut cmd).await;
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

pub use wharf_testkit::oci::{hex, random_bytes, sha256};

/// The `code` of the first OCI error in a response body.
pub async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("an OCI error body");
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An OCI image layout on disk with a multi-layer image, made with real tar+gzip layers.
pub use wharf_testkit::oci::write_image as oci_layout;
/// Writes one image per (tag, arch) into an OCI layout; returns their manifest digests.
pub use wharf_testkit::oci::write_images as write_image;

pub use wharf_testkit::skopeo;

/// Sorted file names under an OCI layout's blobs directory.
pub fn layout_blobs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Real clients: a token service, Debian's docker-registry, OCI layouts.

impl Registry {
    /// Starts the binary on an existing data directory and database, as an
    /// operator does after adopting a volume.
    pub async fn start_on(
        data: tempfile::TempDir,
        db: TestDb,
        auth: Option<Auth>,
        extra_env: Vec<(String, String)>,
    ) -> Registry {
        let mut r = Registry {
            base: String::new(),
            addr: String::new(),
            data,
            db,
            auth,
            http: plain_client(),
            child: None,
            extra_env,
        };
        r.spawn("127.0.0.1:0").await;
        r
    }

    /// The `docker://` reference skopeo uses for `repo:tag` here.
    pub fn docker_ref(&self, reference: &str) -> String {
        format!("docker://{}/{reference}", self.addr)
    }
}

/// An HTTP client that does not follow redirects, like the harness's own.
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A client that sends `token` as its bearer token on every request.
pub fn bearer_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The user the test token service knows with full rights, and one with pull only.
pub const WRITER: (&str, &str) = ("alice", "s3cret");
pub const READER: (&str, &str) = ("bob", "r3ader");

/// A Docker token service (`GET /service/token`) signing with the real
/// `wharf_token::Signer`: `alice` gets what she asks for, `bob` gets pull
/// only, a wrong password gets 401, and anonymous callers get pull on
/// `public/…` repositories only.
pub struct TokenService {
    pub auth: Auth,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

struct TokenState {
    signer: wharf_token::Signer,
    service: String,
}

impl TokenService {
    pub async fn start() -> TokenService {
        let dir = tempfile::tempdir().unwrap();
        keypair(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let auth = Auth {
            dir: dir.path().to_owned(),
            realm: format!("http://{addr}/service/token"),
            service: "wharf-test-registry".into(),
            issuer: "wharf-test-core".into(),
        };
        let state = std::sync::Arc::new(TokenState {
            signer: auth.signer(),
            service: auth.service.clone(),
        });
        let app = axum::Router::new()
            .route("/service/token", axum::routing::get(issue_token))
            .with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TokenService {
            auth,
            _dir: dir,
            task,
        }
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn basic_credentials(headers: &http::HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let (u, p) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

async fn issue_token(
    axum::extract::State(st): axum::extract::State<std::sync::Arc<TokenState>>,
    headers: http::HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if pairs
        .iter()
        .any(|(k, v)| k == "service" && *v != st.service)
    {
        return (http::StatusCode::BAD_REQUEST, "unknown service").into_response();
    }
    enum Who {
        Writer,
        Reader,
        Anonymous,
    }
    let (who, subject) = match basic_credentials(&headers) {
        None => (Who::Anonymous, String::new()),
        Some((u, p)) if (u.as_str(), p.as_str()) == WRITER => (Who::Writer, u),
        Some((u, p)) if (u.as_str(), p.as_str()) == READER => (Who::Reader, u),
        Some(_) => {
            return (
                http::StatusCode::UNAUTHORIZED,
                [(http::header::WWW_AUTHENTICATE, "Basic realm=\"wharf-test\"")],
                axum::Json(serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]})),
            )
                .into_response();
        }
    };
    let access: Vec<wharf_token::Access> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter_map(|s| wharf_token::Access::parse_scope(s).ok())
        .filter_map(|mut a| {
            match who {
                Who::Writer => {}
                Who::Reader => a.actions.retain(|x| x == "pull"),
                Who::Anonymous if a.kind == "repository" && a.name.starts_with("public/") => {
                    a.actions.retain(|x| x == "pull")
                }
                Who::Anonymous => a.actions.clear(),
            }
            (!a.actions.is_empty()).then_some(a)
        })
        .collect();
    match st.signer.issue(&subject, &st.service, access) {
        Ok(t) => axum::Json(t).into_response(),
        Err(e) => (http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Debian's `docker-registry` (distribution 2.8) serving `root` on a free port.
pub struct DockerRegistry {
    pub addr: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl DockerRegistry {
    pub async fn start(root: &Path) -> DockerRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: \"{}\"\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
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
            .expect("docker-registry is installed (.ci/run installs it)");
        let r = DockerRegistry {
            addr: format!("127.0.0.1:{port}"),
            child: Some(child),
            dir,
        };
        let http = plain_client();
        for _ in 0..150 {
            if let Ok(resp) = http.get(format!("http://{}/v2/", r.addr)).send().await {
                assert_eq!(resp.status(), 200, "docker-registry /v2/");
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("docker-registry did not start:\n{}", r.log());
    }

    pub fn docker_ref(&self, reference: &str) -> String {
        format!("docker://{}/{reference}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }
}

/// Writes a multi-arch image into an OCI layout: one image per architecture
/// under an OCI image index that the layout tags `tag`. Returns the index's
/// digest and its children's.
pub fn write_index(
    dir: &Path,
    tag: &str,
    archs: &[&str],
    layers: usize,
    layer_size: usize,
) -> (String, Vec<String>) {
    let names: Vec<String> = archs.iter().map(|a| format!("{tag}-{a}")).collect();
    let images: Vec<(&str, &str)> = names
        .iter()
        .zip(archs)
        .map(|(n, a)| (n.as_str(), *a))
        .collect();
    let children = write_image(dir, &images, layers, layer_size);
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifests: Vec<serde_json::Value> = layout["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.as_object_mut().unwrap().remove("annotations");
            m
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let digest = sha256(&index);
    std::fs::write(dir.join("blobs/sha256").join(&digest[7..]), &index).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
        .unwrap(),
    )
    .unwrap();
    (digest, children)
}

/// The digest an OCI layout's `index.json` gives `tag`.
pub fn layout_tag(dir: &Path, tag: &str) -> Option<String> {
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).ok()?).ok()?;
    layout["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .map(str::to_owned)
}

/// Every blob of an OCI layout whose bytes do not hash to its name.
pub fn layout_corrupt_blobs(dir: &Path) -> Vec<String> {
    layout_blobs(dir)
        .into_iter()
        .filter(|hex| {
            let bytes = std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap();
            sha256(&bytes)[7..] != **hex
        })
        .collect()
}

/// Scans a registry volume's `blobs/sha256/<xx>/<hex>/data` files; returns
/// how many there are and the paths of those whose bytes do not hash to
/// their name (a partial or torn blob).
pub fn scan_volume_blobs(data_dir: &Path) -> (usize, Vec<PathBuf>) {
    let root = data_dir.join("docker/registry/v2/blobs/sha256");
    let mut count = 0;
    let mut bad = vec![];
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return (0, bad);
    };
    for p in prefixes {
        let p = p.unwrap().path();
        for b in std::fs::read_dir(&p).unwrap() {
            let b = b.unwrap().path();
            let hex = b.file_name().unwrap().to_string_lossy().into_owned();
            let data = b.join("data");
            let Ok(bytes) = std::fs::read(&data) else {
                continue;
            };
            count += 1;
            let prefix = p.file_name().unwrap().to_string_lossy().into_owned();
            if !hex.starts_with(&prefix) || sha256(&bytes)[7..] != hex {
                bad.push(data);
            }
        }
    }
    (count, bad)
}

/// A request body sent in `chunk`-sized pieces with `pause` before each.
pub fn slow_body(data: Vec<u8>, chunk: usize, pause: Duration) -> reqwest::Body {
    let chunks: Vec<bytes::Bytes> = data
        .chunks(chunk)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let s = futures_util::stream::unfold(chunks.into_iter(), move |mut it| async move {
        let c = it.next()?;
        tokio::time::sleep(pause).await;
        Some((Ok::<_, std::io::Error>(c), it))
    });
    reqwest::Body::wrap_stream(s)
}

/// A request body that sends `data` and then fails, as a client that goes
/// away part way through a request.
pub fn failing_body(data: Vec<u8>, chunk: usize) -> reqwest::Body {
    let mut items: Vec<std::io::Result<bytes::Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    items.push(Err(std::io::Error::other("client went away")));
    let s = futures_util::stream::unfold(items.into_iter(), |mut it| async move {
        let item = it.next()?;
        // Give the server time to receive and write what was sent before the failure.
        let pause = if item.is_err() { 300 } else { 5 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        Some((item, it))
    });
    reqwest::Body::wrap_stream(s)
}

// ---- Helpers for the distribution API tests (tests/registry/api.rs). ----

/// A response read off a raw socket: for paths an HTTP client would normalise (`..`, `//`).
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `code` of the first OCI error in the body.
    pub fn error_code(&self) -> String {
        let json = match (self.body.find('{'), self.body.rfind('}')) {
            (Some(a), Some(b)) if a < b => &self.body[a..=b],
            _ => return String::new(),
        };
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl Registry {
    /// Resolves a `Location` header (absolute or relative) against the registry.
    pub fn abs(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            self.url(location)
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/`; asserts 202 and returns the absolute upload URL.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "start upload: {}", r.text().await.unwrap());
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        self.abs(&loc)
    }

    /// Sends `method path` byte for byte over a fresh connection, with an optional body.
    pub async fn raw(&self, method: &str, path: &str, body: &[u8]) -> RawResponse {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("an HTTP status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        RawResponse {
            status,
            headers,
            body: body.to_owned(),
        }
    }
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex(&sha2::Sha512::digest(data)))
}

/// `url` with `query` appended, whether or not it already has a query string.
pub fn with_query(url: &str, query: &str) -> String {
    if url.contains('?') {
        format!("{url}&{query}")
    } else {
        format!("{url}?{query}")
    }
}

/// A response header as a string ("" when absent).
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Status, first OCI error code and its message.
pub async fn error_parts(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.expect("an OCI error body");
    (
        status,
        v["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        v["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}
