//! Helpers for the catalogue tests: registry tokens signed with the site's
//! key (so content can be pushed while core is down), pushes with skopeo and
//! over plain HTTP, and polling until the outbox consumer has caught up.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::support::*;

/// A registry token for `scopes` (`repository:<name>:<actions>`), signed
/// with the site's key as core's token service would.
pub fn mint(site: &Site, subject: &str, scopes: &[&str]) -> String {
    let key = std::fs::read(site.dir.path().join("token.key")).unwrap();
    let signer = wharf_token::Signer::new(&key, "harbor-token-issuer", 600).unwrap();
    let access = scopes
        .iter()
        .map(|s| wharf_token::Access::parse_scope(s).unwrap())
        .collect();
    signer
        .issue(subject, "harbor-registry", access)
        .unwrap()
        .token
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(data)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `skopeo copy` of a fresh one-image layout to `<registry>/<dest>:<tag>`
/// with a minted token for `subject`; returns the manifest digest.
pub async fn skopeo_push(site: &Site, subject: &str, repo: &str, tag: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let digest = oci_image(dir.path(), tag, 2, 2048);
    let token = mint(site, subject, &[&format!("repository:{repo}:pull,push")]);
    let src = format!("oci:{}:{tag}", dir.path().display());
    let dst = format!("docker://{}/{repo}:{tag}", site.registry_addr);
    let (ok, out) = skopeo(&[
        "copy",
        "--retry-times",
        "0",
        &src,
        &dst,
        "--dest-tls-verify=false",
        "--dest-registry-token",
        &token,
    ])
    .await;
    assert!(ok, "skopeo push of {repo}:{tag}: {out}");
    digest
}

/// Plain HTTP pushes to the registry with a minted token.
pub struct Pusher<'a> {
    pub site: &'a Site,
    pub repo: String,
    token: String,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

impl<'a> Pusher<'a> {
    pub fn new(site: &'a Site, subject: &str, repo: &str) -> Pusher<'a> {
        Pusher {
            site,
            repo: repo.to_owned(),
            token: mint(
                site,
                subject,
                &[&format!("repository:{repo}:pull,push,delete")],
            ),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.site.registry, self.repo)
    }

    pub async fn blob(&self, data: &[u8]) -> String {
        let d = sha256(data);
        let r = self
            .site
            .http
            .post(self.url(&format!("blobs/uploads/?digest={d}")))
            .bearer_auth(&self.token)
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "blob push: {}", r.text().await.unwrap());
        d
    }

    /// PUTs a manifest by tag or digest; returns its digest.
    pub async fn manifest(&self, reference: &str, body: &[u8], media_type: &str) -> String {
        let r = self
            .site
            .http
            .put(self.url(&format!("manifests/{reference}")))
            .bearer_auth(&self.token)
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "manifest push: {}",
            r.text().await.unwrap()
        );
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// An image of one config (`arch`/`os`) and one layer; `note` makes it
    /// unique. Pushed by `tag`, or by its digest when `None`.
    pub async fn image(&self, tag: Option<&str>, arch: &str, note: &str) -> (String, Vec<u8>) {
        let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux",
            "created": "2024-05-06T07:08:09Z", "rootfs": {"type": "layers", "diff_ids": []}, "config": {"Env": [format!("NOTE={note}")]}}))
        .unwrap();
        let cd = self.blob(&config).await;
        let layer = format!("layer of {note}").into_bytes();
        let ld = self.blob(&layer).await;
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
        }))
        .unwrap();
        let reference = tag.map(str::to_owned).unwrap_or_else(|| sha256(&m));
        let d = self.manifest(&reference, &m, OCI_MANIFEST).await;
        (d, m)
    }

    /// An index of the given (digest, manifest bytes, architecture) children.
    pub async fn index(&self, reference: &str, children: &[(String, Vec<u8>, &str)]) -> String {
        let manifests: Vec<Value> = children
            .iter()
            .map(|(d, m, arch)| {
                json!({"mediaType": OCI_MANIFEST, "digest": d, "size": m.len(),
                "platform": {"architecture": arch, "os": "linux"}})
            })
            .collect();
        let body = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        )
        .unwrap();
        self.manifest(reference, &body, OCI_INDEX).await
    }

    /// GET of a manifest from the registry: its status.
    pub async fn manifest_status(&self, reference: &str) -> u16 {
        self.site
            .http
            .get(self.url(&format!("manifests/{reference}")))
            .bearer_auth(&self.token)
            .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn delete_manifest(&self, reference: &str) {
        let r = self
            .site
            .http
            .delete(self.url(&format!("manifests/{reference}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "delete: {}", r.text().await.unwrap());
    }
}

/// (status, body, headers) of an API call.
pub async fn call(req: reqwest::RequestBuilder) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

pub async fn admin_json(site: &Site, path: &str) -> (u16, Value) {
    let (s, v, _) = call(site.admin(Method::GET, path)).await;
    (s, v)
}

/// Polls `check` until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The audit entries for `resource` with `operation`, as admin sees them.
pub async fn audit_entries(site: &Site, operation: &str, resource: &str) -> Vec<Value> {
    let q = format!("operation={operation},resource={resource}");
    let (s, v, _) = call(
        site.admin(Method::GET, "/audit-logs")
            .query(&[("q", q.as_str()), ("page_size", "100")]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v.as_array().unwrap().clone()
}
