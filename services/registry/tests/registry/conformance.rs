//! The public OCI distribution-spec conformance suite
//! (github.com/opencontainers/distribution-spec, `conformance/`), replayed
//! request for request against the real binary: the v1.1 ginkgo suite
//! (`setup.go`, `01_pull_test.go` … `04_management_test.go`) and the current
//! runner (`run.go`, `api.go`, `testdata.go`). Each test is named after the
//! suite's test it replays; a check collects every failure of a run and
//! reports them together, as the suite's report does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const MT_OCTET: &str = "application/octet-stream";
const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_OCI_IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MT_OCI_LAYER_PRE: &str = "application/vnd.oci.image.layer.v1.";
const MT_OCI_LAYER_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_OCI_LAYER_ND: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
const MT_OCI_LAYER_ND_GZ: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const MT_OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const MT_EXAMPLE1: &str = "application/vnd.example.oci.conformance.v1";
const MT_EXAMPLE2: &str = "application/vnd.example.oci.conformance.v2";
/// `config.go`'s `chunkMin`.
const CHUNK_MIN: usize = 1024;
/// The suite's repositories (`OCI_REPO1`/`OCI_NAMESPACE`, `OCI_REPO2`/`OCI_CROSSMOUNT_NAMESPACE`).
const REPO1: &str = "conformance/repo1";
const REPO2: &str = "conformance/repo2";

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

/// Records a failed check under the suite's test name.
fn note(errs: &mut Vec<String>, what: &str, r: Check) {
    if let Err(e) = r {
        errs.push(format!("{what}: {e}"));
    }
}

fn assert_clean(errs: Vec<String>) {
    assert!(
        errs.is_empty(),
        "{} conformance failure(s):\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

/// A response read in full.
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned()
    }

    /// `apiExpectStatus`.
    fn status_in(&self, what: &str, want: &[u16]) -> Check {
        ensure!(
            want.contains(&self.status),
            "{what}: status {} is not one of {want:?} ({})",
            self.status,
            self.text()
        );
        Ok(())
    }

    /// `apiExpectHeader`: present when `val` is empty, else one of its values equals `val`.
    fn has_header(&self, what: &str, name: &str, val: &str) -> Check {
        let cur = self.values(name);
        if val.is_empty() {
            ensure!(!cur.is_empty(), "{what}: missing header {name:?}");
        } else {
            ensure!(
                cur.contains(&val),
                "{what}: header {name:?} is {cur:?}, expected {val:?}"
            );
        }
        Ok(())
    }

    fn body_is(&self, what: &str, want: &[u8]) -> Check {
        ensure!(
            self.body == want,
            "{what}: body of {} bytes differs from the expected {} bytes ({})",
            self.body.len(),
            want.len(),
            self.text()
        );
        Ok(())
    }

    /// `VerifyDigest`: the Docker-Content-Digest header, when sent, names `dig`.
    fn digest_is(&self, what: &str, dig: &str) -> Check {
        if let Some(h) = self.header("docker-content-digest") {
            ensure!(
                h == dig,
                "{what}: Docker-Content-Digest {h:?}, expected {dig:?}"
            );
        }
        Ok(())
    }

    /// The first OCI error code of the body (`resp.Errors()`).
    fn error_code(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v["errors"][0]["code"].as_str().map(str::to_owned)
    }
}

/// `errorCodes` of `setup.go`.
const ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];

/// Percent-encodes a query value as Go's `url.Values.Encode` does.
fn q(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

fn detect_media_type(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
        .unwrap_or_else(|| MT_OCI_IMAGE.to_owned())
}

fn detect_subject(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["subject"]["digest"].as_str().map(str::to_owned))
}

/// `api.go`: the suite's HTTP calls, each verifying what the suite verifies.
struct Api<'a> {
    reg: &'a Registry,
    /// Rotates `TestPushBlobAny` over the push APIs.
    next_push: AtomicUsize,
}

impl<'a> Api<'a> {
    fn new(reg: &'a Registry) -> Api<'a> {
        Api {
            reg,
            next_push: AtomicUsize::new(0),
        }
    }

    async fn req(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<reqwest::Body>,
    ) -> Resp {
        let url = if url.starts_with('/') {
            self.reg.url(url)
        } else {
            url.to_owned()
        };
        let mut rb = self.reg.http.request(method, url);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let r = rb.send().await.expect("request sent");
        Resp {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await.expect("body read").to_vec(),
        }
    }

    /// A request with `Content-Length` and `Content-Type: application/octet-stream`.
    async fn send_bytes(
        &self,
        method: Method,
        url: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let len = body.len().to_string();
        let mut headers = vec![("content-type", MT_OCTET), ("content-length", len.as_str())];
        headers.extend_from_slice(extra);
        self.req(method, url, &headers, Some(body.to_vec().into()))
            .await
    }

    /// `POST /v2/<repo>/blobs/uploads/` with `Content-Length: 0`, as Go sends it.
    async fn post_upload(&self, repo: &str, query: &str) -> Resp {
        let mut url = format!("/v2/{repo}/blobs/uploads/");
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        self.req(
            Method::POST,
            &url,
            &[("content-length", "0")],
            Some(Vec::new().into()),
        )
        .await
    }

    fn location(&self, what: &str, r: &Resp) -> Result<String, String> {
        match r.header("location") {
            Some(l) if !l.is_empty() => Ok(self.reg.abs(l)),
            _ => Err(format!("{what}: no Location header")),
        }
    }

    /// `BlobVerifyLocation`.
    async fn verify_location(&self, loc: &str, body: &[u8]) -> Check {
        let r = self.req(Method::GET, loc, &[], None).await;
        r.status_in("GET the returned Location", &[200])?;
        r.body_is("GET the returned Location", body)
    }

    /// `BlobPostPut`.
    async fn blob_post_put(&self, repo: &str, dig: &str, body: &[u8], bad: bool) -> Check {
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Some(Vec::new().into()),
            )
            .await;
        r.status_in("blob post", &[202])?;
        let u = with_query(
            &self.location("blob post", &r)?,
            &format!("digest={}", q(dig)),
        );
        let r = self.send_bytes(Method::PUT, &u, &[], body).await;
        if bad {
            return r.status_in("blob put with a bad digest", &[400]);
        }
        r.status_in("blob put", &[201])?;
        r.digest_is("blob put", dig)?;
        self.verify_location(&self.location("blob put", &r)?, body)
            .await
    }

    /// `BlobPostOnly`; a 202 (the PUT fallback) counts as unsupported.
    async fn blob_post_only(&self, repo: &str, dig: &str, body: &[u8], bad: bool) -> Check {
        let url = format!("/v2/{repo}/blobs/uploads/?digest={}", q(dig));
        let r = self.send_bytes(Method::POST, &url, &[], body).await;
        if bad {
            r.status_in("blob post with a bad digest", &[400, 202])?;
            if r.status == 202 {
                return Err("registry does not support content in the POST".into());
            }
            return Ok(());
        }
        r.status_in("blob post", &[201])?;
        r.digest_is("blob post", dig)?;
        self.verify_location(&self.location("blob post", &r)?, body)
            .await
    }

    /// `BlobPatchStream`: the PATCH body is streamed, without a Content-Length.
    async fn blob_patch_stream(&self, repo: &str, dig: &str, body: &[u8], bad: bool) -> Check {
        let r = self.post_upload(repo, "").await;
        r.status_in("blob post", &[202])?;
        let u = self.location("blob post", &r)?;
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
            .chunks(700)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let r = self
            .req(
                Method::PATCH,
                &u,
                &[("content-type", MT_OCTET)],
                Some(stream),
            )
            .await;
        r.status_in("blob patch", &[202])?;
        let u = with_query(
            &self.location("blob patch", &r)?,
            &format!("digest={}", q(dig)),
        );
        let r = self.send_bytes(Method::PUT, &u, &[], &[]).await;
        if bad {
            return r.status_in("blob put with a bad digest", &[400]);
        }
        r.status_in("blob put", &[201])?;
        r.digest_is("blob put", dig)?;
        self.verify_location(&self.location("blob put", &r)?, body)
            .await
    }

    /// `BlobPatchChunked` with its `PutLastChunk`, `OutOfOrderChunks` and `ExpectBadDigest` flags.
    async fn blob_patch_chunked(
        &self,
        repo: &str,
        dig: &str,
        body: &[u8],
        put_last: bool,
        out_of_order: bool,
        bad: bool,
    ) -> Check {
        let r = self.post_upload(repo, "").await;
        r.status_in("blob post", &[202])?;
        let mut loc = self.location("blob post", &r)?;
        let mut chunk = body.len() / 3 + 1;
        if let Some(m) = r.header("oci-chunk-min-length") {
            let m: usize = m
                .parse()
                .map_err(|_| format!("OCI-Chunk-Min-Length {m:?} is not a number"))?;
            chunk = chunk.max(m);
        }
        let chunk = chunk.max(CHUNK_MIN).min(body.len()) as i64;
        let len = body.len() as i64;
        let digest_q = format!("digest={}", q(dig));
        let mut last_byte: i64 = -1;
        while last_byte < len - 1 {
            if out_of_order {
                let mut u = loc.clone();
                let mut bad_start = last_byte + 1 + chunk;
                if bad_start >= len {
                    bad_start = 0;
                }
                let bad_last = (bad_start + chunk - 1).min(len - 1);
                let mut method = Method::PATCH;
                if put_last && bad_last == len - 1 {
                    method = Method::PUT;
                    u = with_query(&u, &digest_q);
                }
                let range = format!("{bad_start}-{bad_last}");
                let r = self
                    .send_bytes(
                        method,
                        &u,
                        &[("content-range", &range)],
                        &body[bad_start as usize..=bad_last as usize],
                    )
                    .await;
                r.status_in(&format!("out-of-order chunk {range}"), &[416])?;
                if let Some(l) = r.header("location").filter(|l| !l.is_empty()) {
                    loc = self.reg.abs(l);
                }
                // Recover with a GET of the upload, as the suite does.
                let r = self.req(Method::GET, &u, &[], None).await;
                r.status_in("upload status after a 416", &[204])?;
                if let Some(l) = r.header("location").filter(|l| !l.is_empty()) {
                    loc = self.reg.abs(l);
                }
                let range = r.header("range").unwrap_or_default();
                let end = range
                    .strip_prefix("0-")
                    .ok_or_else(|| format!("Range {range:?} is missing the 0- prefix"))?;
                let end: i64 = end
                    .parse()
                    .map_err(|_| format!("Range {range:?} could not be parsed"))?;
                ensure!(
                    last_byte < 0 || end == last_byte,
                    "Range {range:?} after a 416, expected \"0-{last_byte}\""
                );
            }
            let start = last_byte + 1;
            last_byte = (start + chunk - 1).min(len - 1);
            let range = format!("{start}-{last_byte}");
            let part = &body[start as usize..=last_byte as usize];
            if put_last && last_byte == len - 1 {
                let u = with_query(&loc, &digest_q);
                let r = self
                    .send_bytes(Method::PUT, &u, &[("content-range", &range)], part)
                    .await;
                if bad {
                    return r.status_in("last chunk PUT with a bad digest", &[400]);
                }
                r.status_in(&format!("last chunk PUT {range}"), &[201])?;
                r.digest_is("last chunk PUT", dig)?;
                return self
                    .verify_location(&self.location("last chunk PUT", &r)?, body)
                    .await;
            }
            let r = self
                .send_bytes(Method::PATCH, &loc, &[("content-range", &range)], part)
                .await;
            r.status_in(&format!("chunk PATCH {range}"), &[202])?;
            loc = self.location("chunk PATCH", &r)?;
        }
        let u = with_query(&loc, &digest_q);
        let r = self.send_bytes(Method::PUT, &u, &[], &[]).await;
        if bad {
            return r.status_in("closing PUT with a bad digest", &[400]);
        }
        r.status_in("closing PUT", &[201])?;
        r.digest_is("closing PUT", dig)?;
        self.verify_location(&self.location("closing PUT", &r)?, body)
            .await
    }

    /// `BlobMount`; returns the mount's status, 202 after falling back to POST+PUT.
    async fn blob_mount(
        &self,
        repo: &str,
        from: Option<&str>,
        dig: &str,
        body: &[u8],
    ) -> Result<u16, String> {
        let mut query = format!("mount={}", q(dig));
        if let Some(f) = from {
            query.push_str(&format!("&from={}", q(f)));
        }
        let r = self.post_upload(repo, &query).await;
        r.status_in("blob mount", &[201, 202])?;
        let loc = self.location("blob mount", &r)?;
        if r.status == 202 {
            let u = with_query(&loc, &format!("digest={}", q(dig)));
            let p = self.send_bytes(Method::PUT, &u, &[], body).await;
            p.status_in("blob put after the mount fell back", &[201])?;
            self.verify_location(&self.location("blob put", &p)?, body)
                .await?;
            return Ok(202);
        }
        r.digest_is("blob mount", dig)?;
        self.verify_location(&loc, body).await?;
        Ok(201)
    }

    /// `BlobPostCancel`.
    async fn blob_post_cancel(&self, repo: &str) -> Check {
        let r = self.post_upload(repo, "").await;
        r.status_in("blob post", &[202])?;
        let u = self.location("blob post", &r)?;
        let r = self
            .req(Method::DELETE, &u, &[("content-length", "0")], None)
            .await;
        r.status_in("blob upload cancel", &[204])
    }

    /// `TestPushBlobAny`: any push API, rotating so each gets used.
    async fn push_blob_any(&self, repo: &str, dig: &str, body: &[u8]) -> Check {
        let mut errs = vec![];
        let first = self.next_push.fetch_add(1, Ordering::Relaxed);
        for i in 0..4 {
            let r = match (first + i) % 4 {
                0 => self.blob_post_put(repo, dig, body, false).await,
                1 => self.blob_post_only(repo, dig, body, false).await,
                2 => self.blob_patch_stream(repo, dig, body, false).await,
                _ => {
                    self.blob_patch_chunked(repo, dig, body, false, false, false)
                        .await
                }
            };
            match r {
                Ok(()) => {
                    return if errs.is_empty() {
                        Ok(())
                    } else {
                        Err(errs.join("; "))
                    }
                }
                Err(e) => errs.push(e),
            }
        }
        Err(errs.join("; "))
    }

    /// `BlobHeadExists`.
    async fn blob_head(&self, repo: &str, dig: &str, body: &[u8]) -> Check {
        let r = self
            .req(Method::HEAD, &format!("/v2/{repo}/blobs/{dig}"), &[], None)
            .await;
        r.status_in("blob head", &[200])?;
        r.body_is("blob head", &[])?;
        r.has_header("blob head", "content-length", &body.len().to_string())?;
        r.digest_is("blob head", dig)
    }

    /// `BlobGetExistsFull`.
    async fn blob_get(&self, repo: &str, dig: &str, body: &[u8]) -> Check {
        let r = self
            .req(Method::GET, &format!("/v2/{repo}/blobs/{dig}"), &[], None)
            .await;
        r.status_in("blob get", &[200])?;
        r.body_is("blob get", body)?;
        r.has_header("blob get", "content-length", &body.len().to_string())?;
        r.digest_is("blob get", dig)
    }

    /// `TestDeleteBlob`: the delete, then a HEAD that must be 404 at once.
    async fn blob_delete(&self, repo: &str, dig: &str) -> Check {
        let url = format!("/v2/{repo}/blobs/{dig}");
        let r = self.req(Method::DELETE, &url, &[], None).await;
        r.status_in("blob delete", &[202, 404])?;
        let r = self.req(Method::HEAD, &url, &[], None).await;
        r.status_in("blob head after its delete", &[404])
    }

    /// `ManifestPut`, with the OCI-Subject check the referrers tests add and
    /// the GET of the returned Location. Go sends this body without a
    /// Content-Length (`apiWithBody` alone), so it goes out chunked.
    async fn manifest_put(
        &self,
        repo: &str,
        reference: &str,
        dig: &str,
        body: &[u8],
        bad: bool,
    ) -> Check {
        let mt = detect_media_type(body);
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
            vec![Ok(bytes::Bytes::copy_from_slice(body))];
        let r = self
            .req(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("content-type", &mt)],
                Some(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
            )
            .await;
        if bad {
            return r.status_in("manifest put with a bad digest", &[400]);
        }
        r.status_in("manifest put", &[201])?;
        if let Some(subject) = detect_subject(body) {
            r.has_header("manifest put", "oci-subject", &subject)?;
        }
        r.digest_is("manifest put", dig)?;
        let loc = self.location("manifest put", &r)?;
        let g = self
            .req(
                Method::GET,
                &loc,
                &[("accept", MT_OCI_INDEX), ("accept", MT_OCI_IMAGE)],
                None,
            )
            .await;
        g.status_in("GET the returned Location", &[200])?;
        g.has_header("GET the returned Location", "content-type", &mt)?;
        g.has_header(
            "GET the returned Location",
            "content-length",
            &body.len().to_string(),
        )?;
        g.body_is("GET the returned Location", body)
    }

    /// `ManifestGetExists` / `ManifestHeadExists`.
    async fn manifest_exists(
        &self,
        repo: &str,
        reference: &str,
        dig: &str,
        body: &[u8],
        head: bool,
    ) -> Check {
        let method = if head { Method::HEAD } else { Method::GET };
        let what = if head {
            "manifest head"
        } else {
            "manifest get"
        };
        let r = self
            .req(
                method,
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("accept", MT_OCI_INDEX), ("accept", MT_OCI_IMAGE)],
                None,
            )
            .await;
        r.status_in(what, &[200])?;
        r.body_is(what, if head { &[] } else { body })?;
        r.has_header(what, "content-type", &detect_media_type(body))?;
        r.has_header(what, "content-length", &body.len().to_string())?;
        r.digest_is(what, dig)
    }

    /// `ManifestDelete` and the HEAD after it; 400 and 405 mean unsupported.
    async fn manifest_delete(&self, repo: &str, reference: &str) -> Check {
        let url = format!("/v2/{repo}/manifests/{reference}");
        let r = self.req(Method::DELETE, &url, &[], None).await;
        r.status_in("manifest delete", &[202, 404])?;
        let r = self
            .req(
                Method::HEAD,
                &url,
                &[("accept", MT_OCI_INDEX), ("accept", MT_OCI_IMAGE)],
                None,
            )
            .await;
        r.status_in("manifest head after its delete", &[404])
    }

    /// `TagList`: the tags, or `None` for a 404.
    async fn tag_list(&self, repo: &str, query: &str) -> Result<Option<Vec<String>>, String> {
        let mut url = format!("/v2/{repo}/tags/list");
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        let r = self.req(Method::GET, &url, &[], None).await;
        r.status_in("tag list", &[200, 404])?;
        if r.status == 404 {
            return Ok(None);
        }
        let v: Value =
            serde_json::from_slice(&r.body).map_err(|e| format!("tag list body: {e}"))?;
        Ok(Some(
            v["tags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        ))
    }

    /// `ReferrersList`: the index and the OCI-Filters-Applied header.
    async fn referrers(
        &self,
        repo: &str,
        subject: &str,
        artifact_type: Option<&str>,
    ) -> Result<(Value, String), String> {
        let mut url = format!("/v2/{repo}/referrers/{subject}");
        if let Some(t) = artifact_type {
            url = format!("{url}?artifactType={}", q(t));
        }
        let r = self.req(Method::GET, &url, &[], None).await;
        r.status_in("referrers", &[200])?;
        r.has_header("referrers", "content-type", MT_OCI_INDEX)?;
        let v: Value =
            serde_json::from_slice(&r.body).map_err(|e| format!("referrers body: {e}"))?;
        ensure!(
            v["mediaType"] == MT_OCI_INDEX && v["schemaVersion"] == 2,
            "referrers response is not a valid OCI index: {v}"
        );
        Ok((
            v,
            r.header("oci-filters-applied")
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}

// ---------------------------------------------------------------- testdata.go

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Algo {
    Sha256,
    Sha512,
}

fn digest_of(algo: Algo, b: &[u8]) -> String {
    match algo {
        Algo::Sha256 => sha256(b),
        Algo::Sha512 => sha512(b),
    }
}

fn rand_text() -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..26)
        .map(|_| A[rand::random::<usize>() % A.len()] as char)
        .collect()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `genOptS`.
#[derive(Clone)]
struct Gen {
    algo: Algo,
    annotations: BTreeMap<String, String>,
    annotation_uniq: bool,
    artifact_type: Option<String>,
    gzip: bool,
    config_bytes: Vec<u8>,
    config_media_type: String,
    extra_field: bool,
    layer_bytes: Option<Vec<u8>>,
    layer_count: usize,
    layer_media_type: Option<String>,
    platform: Value,
    platforms: Vec<Value>,
    set_data: bool,
    subject: Option<Value>,
    tag: Option<String>,
}

impl Default for Gen {
    fn default() -> Gen {
        Gen {
            algo: Algo::Sha256,
            annotations: BTreeMap::new(),
            annotation_uniq: false,
            artifact_type: None,
            gzip: true,
            config_bytes: vec![],
            config_media_type: MT_OCI_CONFIG.into(),
            extra_field: false,
            layer_bytes: None,
            layer_count: 2,
            layer_media_type: None,
            platform: json!({"architecture": "amd64", "os": "linux"}),
            platforms: vec![
                json!({"architecture": "amd64", "os": "linux"}),
                json!({"architecture": "arm64", "os": "linux"}),
            ],
            set_data: false,
            subject: None,
            tag: None,
        }
    }
}

impl Gen {
    /// An artifact of type `at` with the empty config and one layer of `layer_type`.
    fn artifact(at: &str, layer_type: &str) -> Gen {
        Gen {
            artifact_type: Some(at.into()),
            config_media_type: MT_OCI_EMPTY.into(),
            config_bytes: b"{}".to_vec(),
            layer_count: 1,
            layer_media_type: Some(layer_type.into()),
            ..Gen::default()
        }
    }

    fn annotated(mut self) -> Gen {
        self.annotations.insert(
            "org.opencontainers.conformance".into(),
            "hello conformance test".into(),
        );
        self.annotation_uniq = true;
        self
    }

    fn tagged(mut self, tag: &str) -> Gen {
        self.tag = Some(tag.into());
        self
    }
}

/// `genAddJSONFields`: a randomly named unknown field.
fn add_field(mut v: Value, g: &Gen) -> Value {
    if g.extra_field {
        v[format!("org.{}", rand_text())] = json!(rand_text());
    }
    v
}

/// `testData`: one data set's blobs, manifests, tags and expected referrers.
#[derive(Default)]
struct Data {
    name: String,
    tags: BTreeMap<String, String>,
    desc: HashMap<String, Value>,
    blobs: BTreeMap<String, Vec<u8>>,
    manifests: HashMap<String, Vec<u8>>,
    man_order: Vec<String>,
    referrers: BTreeMap<String, Vec<Value>>,
    /// Manifests pushed with the `ExpectBadDigest` flag (and `SkipPullTest`).
    bad: BTreeSet<String>,
}

impl Data {
    fn new(name: &str) -> Data {
        Data {
            name: name.into(),
            ..Data::default()
        }
    }

    fn add_blob(&mut self, b: &[u8], media_type: &str, g: &Gen) -> String {
        let dig = digest_of(g.algo, b);
        self.blobs.insert(dig.clone(), b.to_vec());
        let mut d = json!({"mediaType": media_type, "digest": dig, "size": b.len()});
        if g.set_data {
            d["data"] = json!(b64(b));
        }
        self.desc.insert(dig.clone(), d);
        dig
    }

    fn gen_blob(&mut self, size: usize, media_type: &str, g: &Gen) -> String {
        self.add_blob(&random_bytes(size), media_type, g)
    }

    fn gen_layer(&mut self, n: usize, g: &Gen) -> (String, String) {
        let file = format!(
            "Conformance test file contents for file number {n}.\nTodays lucky number is {}\n",
            rand::random::<i64>().unsigned_abs()
        );
        let mut tarball = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(file.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tarball
            .append_data(&mut h, format!("./conformance-{n}.txt"), file.as_bytes())
            .unwrap();
        let raw = tarball.into_inner().unwrap();
        let (body, mt) = if g.gzip {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&raw).unwrap();
            (gz.finish().unwrap(), MT_OCI_LAYER_GZ)
        } else {
            (raw.clone(), MT_OCI_LAYER)
        };
        (self.add_blob(&body, mt, g), digest_of(g.algo, &raw))
    }

    fn gen_config(&mut self, platform: &Value, diff_ids: &[String], g: &Gen) -> String {
        let mut config = json!({"author": "OCI Conformance Test",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}});
        config["architecture"] = platform["architecture"].clone();
        config["os"] = platform["os"].clone();
        let body = serde_json::to_vec(&add_field(config, g)).unwrap();
        self.add_blob(&body, &g.config_media_type, g)
    }

    fn annotations(&self, g: &Gen) -> Option<Value> {
        let mut a = g.annotations.clone();
        if g.annotation_uniq {
            a.insert(format!("org.example.{}", rand_text()), rand_text());
        }
        (!a.is_empty()).then(|| json!(a))
    }

    /// Records a generated manifest; returns its digest.
    fn add_manifest(&mut self, m: Value, g: &Gen, artifact_type: Option<Value>) -> String {
        let body = serde_json::to_vec(&add_field(m.clone(), g)).unwrap();
        let dig = digest_of(g.algo, &body);
        let mt = m["mediaType"].as_str().unwrap().to_owned();
        let mut d = json!({"mediaType": mt, "digest": dig, "size": body.len()});
        if g.set_data {
            d["data"] = json!(b64(&body));
        }
        self.desc.insert(dig.clone(), d);
        if let Some(s) = &g.subject {
            let mut r = json!({"mediaType": mt, "digest": dig, "size": body.len()});
            if let Some(at) = artifact_type.filter(|a| a.as_str() != Some("")) {
                r["artifactType"] = at;
            }
            if !m["annotations"].is_null() {
                r["annotations"] = m["annotations"].clone();
            }
            let subject = s["digest"].as_str().unwrap().to_owned();
            self.referrers.entry(subject).or_default().push(r);
        }
        if let Some(t) = &g.tag {
            self.tags.insert(t.clone(), dig.clone());
        }
        self.manifests.insert(dig.clone(), body);
        self.man_order.push(dig.clone());
        dig
    }

    fn gen_manifest(&mut self, config: Value, layers: Vec<Value>, g: &Gen) -> String {
        let mut m = json!({"schemaVersion": 2, "mediaType": MT_OCI_IMAGE, "config": config, "layers": layers});
        if let Some(at) = &g.artifact_type {
            m["artifactType"] = json!(at);
        }
        if let Some(s) = &g.subject {
            m["subject"] = s.clone();
        }
        if let Some(a) = self.annotations(g) {
            m["annotations"] = a;
        }
        let at = g
            .artifact_type
            .clone()
            .filter(|a| !a.is_empty())
            .map(Value::from)
            .or_else(|| Some(m["config"]["mediaType"].clone()));
        self.add_manifest(m, g, at)
    }

    fn gen_manifest_full(&mut self, g: &Gen) -> String {
        let mut digs = vec![];
        let mut diff_ids = vec![];
        for l in 0..g.layer_count {
            match &g.layer_media_type {
                Some(mt) if !mt.starts_with(MT_OCI_LAYER_PRE) => {
                    let d = match &g.layer_bytes {
                        Some(b) => self.add_blob(&b.clone(), mt, g),
                        None => self.gen_blob(2048, mt, g),
                    };
                    diff_ids.push(d.clone());
                    digs.push(d);
                }
                _ => {
                    let (c, u) = self.gen_layer(l, g);
                    digs.push(c);
                    diff_ids.push(u);
                }
            }
        }
        let config = if g.config_media_type == MT_OCI_CONFIG {
            self.gen_config(&g.platform, &diff_ids, g)
        } else {
            self.add_blob(&g.config_bytes.clone(), &g.config_media_type, g)
        };
        let layers = digs.iter().map(|d| self.desc[d].clone()).collect();
        let config = self.desc[&config].clone();
        self.gen_manifest(config, layers, g)
    }

    fn gen_index(&mut self, platforms: &[Option<Value>], manifests: &[String], g: &Gen) -> String {
        let descs: Vec<Value> = manifests
            .iter()
            .zip(platforms)
            .map(|(m, p)| {
                let mut d = self.desc[m].clone();
                if let Some(p) = p {
                    d["platform"] = p.clone();
                }
                d
            })
            .collect();
        let mut ind = json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": descs});
        if let Some(at) = &g.artifact_type {
            ind["artifactType"] = json!(at);
        }
        if let Some(s) = &g.subject {
            ind["subject"] = s.clone();
        }
        if let Some(a) = self.annotations(g) {
            ind["annotations"] = a;
        }
        let at = g.artifact_type.clone().map(Value::from);
        self.add_manifest(ind, g, at)
    }

    fn gen_index_full(&mut self, g: &Gen) -> String {
        let mut digs = vec![];
        for p in &g.platforms {
            let mut gi = g.clone();
            gi.platform = p.clone();
            digs.push(self.gen_manifest_full(&gi));
        }
        let platforms: Vec<Option<Value>> = g.platforms.iter().cloned().map(Some).collect();
        self.gen_index(&platforms, &digs, g)
    }
}

/// `GenerateData`: the data sets of the current runner, by name.
fn generate(name: &str) -> Data {
    let mut td = Data::new(name);
    match name {
        "image" => {
            td.gen_manifest_full(&Gen::default().tagged("image"));
        }
        "image-uncompressed" => {
            td.gen_manifest_full(&Gen {
                gzip: false,
                ..Gen::default().tagged("image-uncompressed")
            });
        }
        "large-manifest" => {
            let annotations = (0..390)
                .map(|i| (format!("large-annotation-{i}"), "A".repeat(10_000)))
                .collect();
            td.gen_manifest_full(&Gen {
                annotations,
                ..Gen::default().tagged("large-manifest")
            });
        }
        "index" => {
            td.gen_index_full(&Gen::default().tagged("index"));
        }
        "nested-index" => {
            let a = td.gen_index_full(&Gen::default());
            let b = td.gen_index_full(&Gen::default());
            td.gen_index(
                &[None, None],
                &[a, b],
                &Gen::default().tagged("index-of-index"),
            );
        }
        "empty-index" => {
            td.gen_index_full(&Gen {
                platforms: vec![],
                ..Gen::default().tagged("index")
            });
        }
        "artifact" => {
            td.gen_manifest_full(&Gen::artifact(MT_EXAMPLE1, MT_EXAMPLE1).tagged("artifact"));
        }
        "artifact-index" => {
            td.gen_index_full(&Gen::artifact(MT_EXAMPLE1, MT_EXAMPLE1).tagged("artifact-index"));
        }
        "artifact-without-layers" => {
            td.gen_manifest_full(&Gen {
                layer_bytes: Some(b"{}".to_vec()),
                ..Gen::artifact(MT_EXAMPLE1, MT_OCI_EMPTY).tagged("artifact-without-layers")
            });
        }
        "artifacts-with-subject" => {
            let subj = td.gen_manifest_full(&Gen::default().tagged("image"));
            let sd = td.desc[&subj].clone();
            td.gen_manifest_full(&Gen {
                subject: Some(sd.clone()),
                ..Gen::default()
            });
            td.gen_manifest_full(&Gen {
                subject: Some(sd.clone()),
                ..Gen::artifact(MT_EXAMPLE1, MT_EXAMPLE1)
                    .annotated()
                    .tagged("tagged-artifact1")
            });
            td.gen_manifest_full(&Gen {
                subject: Some(sd),
                ..Gen::artifact(MT_EXAMPLE2, MT_OCTET)
                    .annotated()
                    .tagged("tagged-artifact2")
            });
        }
        "index-with-subject" => {
            let subj = td.gen_index_full(&Gen::default().tagged("index"));
            let sd = td.desc[&subj].clone();
            td.gen_index_full(&Gen {
                subject: Some(sd),
                ..Gen::artifact(MT_EXAMPLE1, MT_EXAMPLE1)
                    .annotated()
                    .tagged("tagged-artifact")
            });
        }
        "missing-subject" => {
            let sd = json!({"mediaType": MT_OCI_IMAGE, "size": 123, "digest": sha256(b"missing content")});
            td.gen_manifest_full(&Gen {
                subject: Some(sd),
                ..Gen::artifact(MT_EXAMPLE1, MT_EXAMPLE1)
                    .annotated()
                    .tagged("tagged-artifact")
            });
        }
        "data-field" => {
            td.gen_manifest_full(&Gen {
                set_data: true,
                ..Gen::default().tagged("data-field")
            });
        }
        "non-distributable-layers" => {
            let g = Gen::default();
            let nd = |mt: &str, size: usize| {
                let d = sha256(&random_bytes(256));
                json!({"mediaType": mt, "digest": d, "size": size,
                    "urls": [format!("https://store.example.com/blobs/sha256/{}", &d[7..])]})
            };
            let (l0, l1) = (nd(MT_OCI_LAYER_ND_GZ, 123_456), nd(MT_OCI_LAYER_ND, 12_345));
            let (c, u) = td.gen_layer(1, &g);
            let diff_ids = [
                sha256(&random_bytes(256)),
                l1["digest"].as_str().unwrap().to_owned(),
                u,
            ];
            let conf = td.gen_config(&g.platform, &diff_ids, &g);
            let layers = vec![l0, l1, td.desc[&c].clone()];
            let conf = td.desc[&conf].clone();
            td.gen_manifest(conf, layers, &g.tagged("non-distributable-image"));
        }
        "custom-fields" => {
            td.gen_index_full(&Gen {
                extra_field: true,
                ..Gen::default().tagged("custom-fields")
            });
        }
        "no-layers" => {
            td.gen_manifest_full(&Gen {
                layer_count: 0,
                ..Gen::default().tagged("no-layers")
            });
        }
        "sha512" => {
            td.gen_index_full(&Gen {
                algo: Algo::Sha512,
                ..Gen::default()
            });
        }
        "bad-digest-image" => {
            let dig = td.gen_manifest_full(&Gen::default());
            td.manifests.get_mut(&dig).unwrap().extend_from_slice(b"  ");
            td.bad.insert(dig);
        }
        other => panic!("unknown data set {other}"),
    }
    td
}

/// The data sets `GenerateData` makes with the 1.1 defaults, in its order.
const DATA_SETS: &[&str] = &[
    "image",
    "image-uncompressed",
    "large-manifest",
    "index",
    "nested-index",
    "empty-index",
    "artifact",
    "artifact-index",
    "artifact-without-layers",
    "artifacts-with-subject",
    "index-with-subject",
    "missing-subject",
    "data-field",
    "non-distributable-layers",
    "custom-fields",
    "no-layers",
    "sha512",
    "bad-digest-image",
];

// ---------------------------------------------------------------- run.go

/// One data set through `TestPush`, `TestList`, `TestHead`, `TestPull`,
/// `TestReferrers` and `TestDelete`; returns every failure.
async fn run_data(api: &Api<'_>, repo: &str, td: &Data) -> Vec<String> {
    let mut errs = vec![];
    let name = &td.name;
    // push
    for (dig, b) in &td.blobs {
        note(
            &mut errs,
            &format!("{name}/push/blob {dig}"),
            api.push_blob_any(repo, dig, b).await,
        );
    }
    let mut pushed_tags = BTreeSet::new();
    for dig in &td.man_order {
        let bad = td.bad.contains(dig);
        note(
            &mut errs,
            &format!("{name}/push/manifest-by-digest {dig}"),
            api.manifest_put(repo, dig, dig, &td.manifests[dig], bad)
                .await,
        );
    }
    for (tag, dig) in &td.tags {
        let r = api
            .manifest_put(repo, tag, dig, &td.manifests[dig], false)
            .await;
        if r.is_ok() {
            pushed_tags.insert(tag.clone());
        }
        note(&mut errs, &format!("{name}/push/manifest-by-tag {tag}"), r);
    }
    // tag-list
    let list = async {
        let Some(tags) = api.tag_list(repo, "").await? else {
            ensure!(td.tags.is_empty(), "tag list is 404 with tags pushed");
            return Ok(());
        };
        for t in td.tags.keys() {
            ensure!(tags.contains(t), "missing tag {t:?} from listing {tags:?}");
        }
        if tags.len() >= 2 {
            let mut sorted = tags.clone();
            sorted.sort();
            let end = sorted.len() / 2;
            let last = &sorted[end - 1];
            let partial = api
                .tag_list(repo, &format!("last={}", q(last)))
                .await?
                .unwrap_or_default();
            for t in &sorted[..end] {
                ensure!(
                    !partial.contains(t),
                    "tag {t:?} returned when last set to {last:?}"
                );
            }
            for t in &sorted[end..] {
                ensure!(
                    partial.contains(t),
                    "tag {t:?} missing when last set to {last:?}"
                );
            }
        }
        Ok(())
    };
    note(&mut errs, &format!("{name}/tag-list"), list.await);
    // head and pull
    for head in [true, false] {
        let what = if head { "head" } else { "pull" };
        for (tag, dig) in &td.tags {
            if !td.bad.contains(dig) {
                let r = api
                    .manifest_exists(repo, tag, dig, &td.manifests[dig], head)
                    .await;
                note(
                    &mut errs,
                    &format!("{name}/{what}/manifest-by-tag {tag}"),
                    r,
                );
            }
        }
        for dig in td.man_order.iter().filter(|d| !td.bad.contains(*d)) {
            let r = api
                .manifest_exists(repo, dig, dig, &td.manifests[dig], head)
                .await;
            note(
                &mut errs,
                &format!("{name}/{what}/manifest-by-digest {dig}"),
                r,
            );
        }
        for (dig, b) in &td.blobs {
            let r = if head {
                api.blob_head(repo, dig, b).await
            } else {
                api.blob_get(repo, dig, b).await
            };
            note(&mut errs, &format!("{name}/{what}/blob {dig}"), r);
        }
    }
    // referrers
    for (subject, goals) in &td.referrers {
        let found = |list: &Value, goal: &Value| {
            list["manifests"].as_array().is_some_and(|ms| {
                ms.iter().any(|m| {
                    m["digest"] == goal["digest"]
                        && m["mediaType"] == goal["mediaType"]
                        && m["size"] == goal["size"]
                        && m["artifactType"] == goal["artifactType"]
                        && goal["annotations"]
                            .as_object()
                            .is_none_or(|a| a.iter().all(|(k, v)| m["annotations"][k] == *v))
                })
            })
        };
        let all = async {
            let (list, _) = api.referrers(repo, subject, None).await?;
            for g in goals {
                ensure!(
                    found(&list, g),
                    "entry missing from referrers list, subject {subject}, referrer {g}"
                );
            }
            Ok(())
        };
        note(&mut errs, &format!("{name}/referrers {subject}"), all.await);
        let types: BTreeSet<String> = goals
            .iter()
            .map(|g| g["artifactType"].as_str().unwrap_or_default().to_owned())
            .collect();
        for at in types {
            let filtered = async {
                let (list, filters) = api.referrers(repo, subject, Some(&at)).await?;
                ensure!(
                    filters.split(',').any(|f| f.trim() == "artifactType"),
                    "registry does not set OCI-Filters-Applied for the artifactType filter"
                );
                for g in goals.iter().filter(|g| g["artifactType"] == at.as_str()) {
                    ensure!(
                        found(&list, g),
                        "entry missing from filtered referrers, subject {subject}, referrer {g}"
                    );
                }
                for m in list["manifests"].as_array().into_iter().flatten() {
                    ensure!(
                        m["artifactType"] == at.as_str(),
                        "referrers filter for {at} included {m}"
                    );
                }
                Ok(())
            };
            note(
                &mut errs,
                &format!("{name}/referrers {subject}?artifactType={at}"),
                filtered.await,
            );
        }
    }
    // delete
    for tag in td.tags.keys().filter(|t| pushed_tags.contains(*t)) {
        note(
            &mut errs,
            &format!("{name}/delete/tag-delete {tag}"),
            api.manifest_delete(repo, tag).await,
        );
    }
    for dig in td.man_order.iter().rev() {
        note(
            &mut errs,
            &format!("{name}/delete/manifest-delete {dig}"),
            api.manifest_delete(repo, dig).await,
        );
    }
    for dig in td.blobs.keys() {
        note(
            &mut errs,
            &format!("{name}/delete/blob-delete {dig}"),
            api.blob_delete(repo, dig).await,
        );
    }
    errs
}

/// `TestBlobAPIs` for one digest algorithm.
async fn run_blob_apis(api: &Api<'_>, algo: Algo, repo: &str, repo2: &str) -> Vec<String> {
    let mut errs = vec![];
    let blob = |size: usize| {
        let b = random_bytes(size);
        (digest_of(algo, &b), b)
    };
    let (missing, _) = blob(512);
    let r = api
        .req(
            Method::GET,
            &format!("/v2/{repo}/blobs/{missing}"),
            &[],
            None,
        )
        .await;
    note(&mut errs, "get-missing", r.status_in("blob get", &[404]));
    let mut min_chunk = CHUNK_MIN;
    let tests = [
        "post only",
        "post+put",
        "chunked single",
        "stream",
        "mount",
        "mount anonymous",
        "mount missing",
        "post cancel",
        "chunked multi",
        "chunked multi and put chunk",
        "chunked out-of-order",
        "chunked out-of-order and put chunk",
    ];
    for name in tests {
        let (dig, body) = if name.starts_with("chunked") && name != "chunked single" {
            blob(min_chunk * 3 - 5)
        } else {
            blob(512)
        };
        let res: Check = match name {
            "post only" => api.blob_post_only(repo, &dig, &body, false).await,
            "post+put" => api.blob_post_put(repo, &dig, &body, false).await,
            "chunked single" => {
                let r = api.post_upload(repo, "").await;
                if let Some(m) = r
                    .header("oci-chunk-min-length")
                    .and_then(|m| m.parse().ok())
                {
                    min_chunk = min_chunk.max(m);
                }
                api.blob_patch_chunked(repo, &dig, &body, false, false, false)
                    .await
            }
            "chunked multi" => {
                api.blob_patch_chunked(repo, &dig, &body, false, false, false)
                    .await
            }
            "chunked multi and put chunk" => {
                api.blob_patch_chunked(repo, &dig, &body, true, false, false)
                    .await
            }
            "chunked out-of-order" => {
                api.blob_patch_chunked(repo, &dig, &body, false, true, false)
                    .await
            }
            "chunked out-of-order and put chunk" => {
                api.blob_patch_chunked(repo, &dig, &body, true, true, false)
                    .await
            }
            "stream" => api.blob_patch_stream(repo, &dig, &body, false).await,
            "post cancel" => api.blob_post_cancel(repo).await,
            "mount" => {
                async {
                    api.push_blob_any(repo2, &dig, &body).await?;
                    let s = api.blob_mount(repo, Some(repo2), &dig, &body).await?;
                    ensure!(
                        s == 201,
                        "registry returned status {s}, fell back to blob POST+PUT"
                    );
                    Ok(())
                }
                .await
            }
            "mount anonymous" => {
                async {
                    api.push_blob_any(repo2, &dig, &body).await?;
                    // A 202 here is the suite's "unsupported" (anonymous mounts are optional): not a failure.
                    api.blob_mount(repo, None, &dig, &body).await.map(|_| ())
                }
                .await
            }
            "mount missing" => {
                async {
                    let s = api.blob_mount(repo, Some(repo2), &dig, &body).await?;
                    ensure!(s == 202, "blob mount of missing blob incorrectly succeeded");
                    Ok(())
                }
                .await
            }
            _ => unreachable!(),
        };
        let ok = res.is_ok();
        note(&mut errs, name, res);
        if ok && name != "post cancel" {
            note(
                &mut errs,
                &format!("{name}/blob-head"),
                api.blob_head(repo, &dig, &body).await,
            );
            note(
                &mut errs,
                &format!("{name}/blob-get"),
                api.blob_get(repo, &dig, &body).await,
            );
        }
        note(
            &mut errs,
            &format!("{name}/blob-delete"),
            api.blob_delete(repo, &dig).await,
        );
        if name == "mount" || name == "mount anonymous" {
            note(
                &mut errs,
                &format!("{name}/blob-delete repo2"),
                api.blob_delete(repo2, &dig).await,
            );
        }
    }
    // range requests
    let (dig, body) = blob(2048);
    match api.push_blob_any(repo, &dig, &body).await {
        Err(e) => errs.push(format!("range requests: push: {e}")),
        Ok(()) => {
            let ranges: [(&str, Option<(usize, usize)>); 6] = [
                ("bytes=500-1499", Some((500, 1499))),
                ("bytes=500-", Some((500, 2047))),
                ("bytes=-500", Some((1548, 2047))),
                ("bytes=2000-5000", Some((2000, 2047))),
                ("bytes=500-0", None),
                ("bytes=5000-10000", None),
            ];
            for (range, want) in ranges {
                let r = api
                    .req(
                        Method::GET,
                        &format!("/v2/{repo}/blobs/{dig}"),
                        &[("range", range)],
                        None,
                    )
                    .await;
                let res = match want {
                    None => r.status_in(range, &[416]),
                    Some((a, b)) => (|| {
                        r.status_in(range, &[206])?;
                        r.body_is(range, &body[a..=b])?;
                        r.has_header(range, "content-length", &(b - a + 1).to_string())?;
                        let cr = r.header("content-range").unwrap_or_default();
                        ensure!(
                            cr == format!("bytes {a}-{b}/2048") || cr == format!("bytes {a}-{b}/*"),
                            "{range}: Content-Range {cr:?}"
                        );
                        Ok(())
                    })(),
                };
                note(&mut errs, &format!("range requests/{range}"), res);
            }
            note(
                &mut errs,
                "range requests/blob-delete",
                api.blob_delete(repo, &dig).await,
            );
        }
    }
    // well known contents
    for (name, val) in [("empty", &b""[..]), ("emptyJSON", &b"{}"[..])] {
        let dig = digest_of(algo, val);
        note(
            &mut errs,
            &format!("{name}/push"),
            api.push_blob_any(repo, &dig, val).await,
        );
        note(
            &mut errs,
            &format!("{name}/blob-head"),
            api.blob_head(repo, &dig, val).await,
        );
        note(
            &mut errs,
            &format!("{name}/blob-get"),
            api.blob_get(repo, &dig, val).await,
        );
        note(
            &mut errs,
            &format!("{name}/blob-delete"),
            api.blob_delete(repo, &dig).await,
        );
    }
    // bad digests: the bytes sent do not hash to the digest given
    for name in [
        "bad digest post only",
        "bad digest post+put",
        "bad digest chunked",
        "bad digest chunked and put chunk",
        "bad digest stream",
    ] {
        let (dig, mut body) = blob(min_chunk * 3 - 5);
        body.extend_from_slice(b"oh no");
        let res = match name {
            "bad digest post only" => api.blob_post_only(repo, &dig, &body, true).await,
            "bad digest post+put" => api.blob_post_put(repo, &dig, &body, true).await,
            "bad digest stream" => api.blob_patch_stream(repo, &dig, &body, true).await,
            _ => {
                api.blob_patch_chunked(repo, &dig, &body, false, false, true)
                    .await
            }
        };
        note(&mut errs, name, res);
    }
    errs
}

/// `TestManifestErrors`.
async fn run_manifest_errors(api: &Api<'_>, repo: &str) -> Vec<String> {
    let mut errs = vec![];
    let dig = sha256(&random_bytes(1024));
    let r = api
        .req(
            Method::GET,
            &format!("/v2/{repo}/manifests/{dig}"),
            &[("accept", MT_OCI_INDEX), ("accept", MT_OCI_IMAGE)],
            None,
        )
        .await;
    note(
        &mut errs,
        "missing-manifest/by-digest",
        r.status_in("manifest get", &[404]),
    );
    let tag = format!("missing-{}", &rand_text().to_lowercase()[..20]);
    let r = api
        .req(
            Method::GET,
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("accept", MT_OCI_INDEX), ("accept", MT_OCI_IMAGE)],
            None,
        )
        .await;
    note(
        &mut errs,
        "missing-manifest/by-tag",
        r.status_in("manifest get", &[404]),
    );

    let mut td = Data::new("invalid-manifest-digest");
    let man = td.gen_manifest_full(&Gen {
        layer_count: 1,
        ..Gen::default()
    });
    for (d, b) in &td.blobs {
        note(
            &mut errs,
            "invalid-digest-format/push blob",
            api.push_blob_any(repo, d, b).await,
        );
    }
    note(
        &mut errs,
        "invalid-digest-format/manifest-put",
        api.manifest_put(
            repo,
            "sha256:baddigeststring",
            &man,
            &td.manifests[&man],
            true,
        )
        .await,
    );
    let r = api
        .req(
            Method::GET,
            &format!("/v2/{repo}/manifests/sha256:baddigeststring"),
            &[("accept", MT_OCI_INDEX), ("accept", MT_OCI_IMAGE)],
            None,
        )
        .await;
    note(
        &mut errs,
        "invalid-digest-format/manifest-get",
        r.status_in("manifest get", &[404, 400]),
    );
    errs.extend(run_data_delete_only(api, repo, &td).await);
    errs
}

/// `TestDelete` alone (for data that was never fully pushed).
async fn run_data_delete_only(api: &Api<'_>, repo: &str, td: &Data) -> Vec<String> {
    let mut errs = vec![];
    for dig in td.man_order.iter().rev() {
        note(
            &mut errs,
            &format!("{}/manifest-delete", td.name),
            api.manifest_delete(repo, dig).await,
        );
    }
    for dig in td.blobs.keys() {
        note(
            &mut errs,
            &format!("{}/blob-delete", td.name),
            api.blob_delete(repo, dig).await,
        );
    }
    errs
}

#[tokio::test]
async fn ping() {
    let reg = Registry::start().await;
    let api = Api::new(&reg);
    let r = api.req(Method::GET, "/v2/", &[], None).await;
    assert_clean(r.status_in("ping", &[200]).err().into_iter().collect());
}

#[tokio::test]
async fn empty() {
    let reg = Registry::start().await;
    let api = Api::new(&reg);
    let mut errs = vec![];
    note(
        &mut errs,
        "empty/tag list",
        api.tag_list(REPO1, "").await.map(|_| ()),
    );
    let subject = sha256(rand_text().as_bytes());
    note(
        &mut errs,
        "empty/referrers",
        api.referrers(REPO1, &subject, None).await.map(|_| ()),
    );
    assert_clean(errs);
}

#[tokio::test]
async fn sha256_blobs() {
    let reg = Registry::start().await;
    let api = Api::new(&reg);
    assert_clean(run_blob_apis(&api, Algo::Sha256, REPO1, REPO2).await);
}

#[tokio::test]
async fn sha512_blobs() {
    let reg = Registry::start().await;
    let api = Api::new(&reg);
    assert_clean(run_blob_apis(&api, Algo::Sha512, REPO1, REPO2).await);
}

/// Every data set of `GenerateData`, one after another in one repository,
/// then the manifest error conditions, as `TestAll` runs them.
#[tokio::test]
async fn data_sets_and_manifest_errors() {
    let reg = Registry::start().await;
    let api = Api::new(&reg);
    let mut errs = vec![];
    for name in DATA_SETS {
        errs.extend(run_data(&api, REPO1, &generate(name)).await);
    }
    errs.extend(run_manifest_errors(&api, REPO1).await);
    assert_clean(errs);
}

// ------------------------------------------- the v1.1 suite (01_pull … 04_management)

/// `layerBase64String` of `setup.go`: a small tar+gzip layer.
const LAYER_B64: &str = "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qDjMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA";
const REF_TYPE_A: &str = "application/vnd.nhl.peanut.butter.bagel";
const REF_TYPE_B: &str = "application/vnd.nba.strawberry.jam.croissant";
const REF_TYPE_INDEX: &str = "application/vnd.food.stand";
const ANNOTATION_KEY: &str = "org.opencontainers.conformance.test";

/// A blob as `setup.go` keeps it.
#[derive(Clone)]
struct TestBlob {
    content: Vec<u8>,
    digest: String,
}

impl TestBlob {
    fn new(content: Vec<u8>) -> TestBlob {
        TestBlob {
            digest: sha256(&content),
            content,
        }
    }

    fn json(v: &Value) -> TestBlob {
        // MarshalIndent with tabs, as the suite sends it.
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(v, &mut ser).unwrap();
        TestBlob::new(out)
    }

    /// The suite's `descriptor`: `newUnspecifiedField` is never omitted.
    fn desc(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.content.len(), "newUnspecifiedField": null})
    }
}

/// The data `setup.go` makes in `init()`.
struct Setup {
    configs: Vec<TestBlob>,
    manifests: Vec<TestBlob>,
    layer: TestBlob,
    empty_layer_manifest: TestBlob,
    blob_a: TestBlob,
    blob_b: TestBlob,
    empty_json: TestBlob,
    ref_blob_a: TestBlob,
    ref_blob_b: TestBlob,
    refs_a_config: TestBlob,
    refs_b_config: TestBlob,
    refs_a_layer: TestBlob,
    refs_b_layer: TestBlob,
    refs_c_layer: TestBlob,
    refs_index: TestBlob,
    annotations: HashMap<String, String>,
    dummy_digest: String,
}

impl Setup {
    fn new() -> Setup {
        let configs: Vec<TestBlob> = (0..5)
            .map(|_| {
                let author: String = rand_text().chars().take(16).collect();
                TestBlob::json(
                    &json!({"author": author, "architecture": "amd64", "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": []}}),
                )
            })
            .collect();
        let layer = TestBlob::new(
            base64::engine::general_purpose::STANDARD
                .decode(LAYER_B64)
                .unwrap(),
        );
        let config_desc = |c: &TestBlob| {
            let mut d = c.desc(MT_OCI_CONFIG);
            d["data"] = json!(b64(&c.content));
            d["newUnspecifiedField"] = json!(b64(b"hello world"));
            d
        };
        let manifests = configs
            .iter()
            .map(|c| {
                TestBlob::json(&json!({"schemaVersion": 2, "mediaType": MT_OCI_IMAGE,
                    "config": config_desc(c), "layers": [layer.desc(MT_OCI_LAYER_GZ)]}))
            })
            .collect::<Vec<_>>();
        // No mediaType: it is omitted when empty.
        let empty_layer_manifest = TestBlob::json(
            &json!({"schemaVersion": 2, "config": config_desc(&configs[1]), "layers": []}),
        );
        let empty_json = TestBlob::new(b"{}".to_vec());
        let ref_blob_a = TestBlob::new(b"NHL Peanut Butter on my NHL bagel".to_vec());
        let ref_blob_b = TestBlob::new(b"NBA Strawberry Jam on my NBA croissant".to_vec());
        let subject = |m: &TestBlob| m.desc(MT_OCI_IMAGE);
        let empty_desc = {
            let mut d = empty_json.desc(MT_OCI_EMPTY);
            d.as_object_mut().unwrap().remove("newUnspecifiedField");
            d
        };
        let mut annotations = HashMap::new();
        let mut artifact = |v: Value, note: Option<&str>| {
            let mut v = v;
            if let Some(n) = note {
                v["annotations"] = json!({ANNOTATION_KEY: n});
            }
            let b = TestBlob::json(&v);
            if let Some(n) = note {
                annotations.insert(b.digest.clone(), n.to_owned());
            }
            b
        };
        let refs_a_config = artifact(
            json!({"schemaVersion": 2, "mediaType": MT_OCI_IMAGE, "config": ref_blob_a.desc(REF_TYPE_A),
                "subject": subject(&manifests[4]), "layers": [empty_desc]}),
            Some("test config a"),
        );
        let refs_b_config = artifact(
            json!({"schemaVersion": 2, "mediaType": MT_OCI_IMAGE, "config": ref_blob_b.desc(REF_TYPE_B),
                "subject": subject(&manifests[4]), "layers": [empty_desc]}),
            Some("test config b"),
        );
        let refs_a_layer = artifact(
            json!({"schemaVersion": 2, "mediaType": MT_OCI_IMAGE, "artifactType": REF_TYPE_A, "config": empty_desc,
                "subject": subject(&manifests[4]), "layers": [ref_blob_a.desc(REF_TYPE_A)]}),
            Some("test layer a"),
        );
        let refs_b_layer = artifact(
            json!({"schemaVersion": 2, "mediaType": MT_OCI_IMAGE, "artifactType": REF_TYPE_B, "config": empty_desc,
                "subject": subject(&manifests[4]), "layers": [ref_blob_b.desc(REF_TYPE_B)]}),
            Some("test layer b"),
        );
        let refs_c_layer = artifact(
            json!({"schemaVersion": 2, "mediaType": MT_OCI_IMAGE, "artifactType": REF_TYPE_B, "config": empty_desc,
                "subject": subject(&manifests[3]), "layers": [ref_blob_b.desc(REF_TYPE_B)]}),
            None,
        );
        let refs_index = artifact(
            json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "artifactType": REF_TYPE_INDEX,
                "manifests": [refs_a_config.desc(MT_OCI_IMAGE), refs_a_layer.desc(MT_OCI_IMAGE)],
                "subject": subject(&manifests[4])}),
            Some("test index"),
        );
        Setup {
            configs,
            manifests,
            layer,
            empty_layer_manifest,
            blob_a: TestBlob::new(random_bytes(42)),
            blob_b: TestBlob::new(random_bytes(42)),
            empty_json,
            ref_blob_a,
            ref_blob_b,
            refs_a_config,
            refs_b_config,
            refs_a_layer,
            refs_b_layer,
            refs_c_layer,
            refs_index,
            annotations,
            dummy_digest: sha256(b"hello world"),
        }
    }
}

/// The v1.1 suite's requests, made the way reggie (resty over net/http) makes them.
struct Classic<'a> {
    api: Api<'a>,
    name: String,
    cross: String,
    delete_manifest_before_blobs: bool,
    s: Setup,
    errs: Vec<String>,
}

impl Classic<'_> {
    fn check(&mut self, spec: &str, r: Check) {
        note(&mut self.errs, spec, r);
    }

    fn ok_2xx(r: &Resp, what: &str) -> Check {
        ensure!(
            (200..300).contains(&r.status),
            "{what}: status {} is not 2xx ({})",
            r.status,
            r.text()
        );
        Ok(())
    }

    fn ok_2xx_or(r: &Resp, what: &str, also: &[u16]) -> Check {
        if also.contains(&r.status) {
            return Ok(());
        }
        Classic::ok_2xx(r, what)
    }

    /// `POST /v2/<name>/blobs/uploads/` then `PUT <Location>?digest=`.
    async fn post_put(&self, name: &str, b: &TestBlob) -> Resp {
        let r = self
            .api
            .req(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/"),
                &[("content-length", "0")],
                Some(Vec::new().into()),
            )
            .await;
        let loc = self
            .api
            .reg
            .abs(r.header("location").unwrap_or("/missing-location"));
        let u = with_query(&loc, &format!("digest={}", q(&b.digest)));
        self.api.send_bytes(Method::PUT, &u, &[], &b.content).await
    }

    async fn put_manifest(&self, reference: &str, content_type: &str, b: &[u8]) -> Resp {
        self.api
            .req(
                Method::PUT,
                &format!("/v2/{}/manifests/{reference}", self.name),
                &[("content-type", content_type), ("accept", content_type)],
                Some(b.to_vec().into()),
            )
            .await
    }

    async fn get(&self, method: Method, path: &str, accept: Option<&str>) -> Resp {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        self.api.req(method, path, &headers, None).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.api.req(Method::DELETE, path, &[], None).await
    }

    /// DELETEs each path; 2xx or one of `also` is a pass.
    async fn delete_all(&self, paths: &[String], also: &[u16]) -> Vec<Check> {
        let mut out = vec![];
        for p in paths {
            let r = self.delete(p).await;
            out.push(Classic::ok_2xx_or(&r, &format!("DELETE {p}"), also));
        }
        out
    }

    async fn pull(&mut self) {
        let n = self.name.clone();
        let (config, manifest) = (self.s.configs[0].clone(), self.s.manifests[0].clone());
        let r = self.post_put(&n, &config).await;
        self.check(
            "Pull/Setup/Populate registry with test blob",
            Classic::ok_2xx(&r, "PUT"),
        );
        let layer = self.s.layer.clone();
        let r = self.post_put(&n, &layer).await;
        self.check(
            "Pull/Setup/Populate registry with test layer",
            Classic::ok_2xx(&r, "PUT"),
        );
        let r = self
            .put_manifest("tagtest0", MT_OCI_IMAGE, &manifest.content)
            .await;
        self.check(
            "Pull/Setup/Populate registry with test manifest",
            Classic::ok_2xx(&r, "PUT"),
        );
        let tags = self
            .api
            .tag_list(&n, "")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let tag = tags.first().cloned().unwrap_or_default();
        self.put_manifest(&tag, MT_OCI_IMAGE, &manifest.content)
            .await;

        let dummy = self.s.dummy_digest.clone();
        let r = self
            .get(Method::HEAD, &format!("/v2/{n}/blobs/{dummy}"), None)
            .await;
        self.check(
            "Pull/Pull blobs/HEAD request to nonexistent blob should result in 404 response",
            r.status_in("HEAD", &[404]),
        );
        let r = self
            .get(
                Method::HEAD,
                &format!("/v2/{n}/blobs/{}", config.digest),
                None,
            )
            .await;
        self.check(
            "Pull/Pull blobs/HEAD request to existing blob should yield 200",
            r.status_in("HEAD", &[200])
                .and(r.digest_is("HEAD", &config.digest)),
        );
        let r = self
            .get(Method::GET, &format!("/v2/{n}/blobs/{dummy}"), None)
            .await;
        self.check(
            "Pull/Pull blobs/GET nonexistent blob should result in 404 response",
            r.status_in("GET", &[404]),
        );
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/blobs/{}", config.digest),
                None,
            )
            .await;
        self.check(
            "Pull/Pull blobs/GET request to existing blob URL should yield 200",
            r.status_in("GET", &[200]),
        );

        let r = self
            .get(
                Method::HEAD,
                &format!("/v2/{n}/manifests/.INVALID_MANIFEST_NAME"),
                None,
            )
            .await;
        self.check(
            "Pull/Pull manifests/HEAD request to nonexistent manifest should return 404",
            r.status_in("HEAD", &[404]),
        );
        let r = self
            .get(
                Method::HEAD,
                &format!("/v2/{n}/manifests/{}", manifest.digest),
                Some(MT_OCI_IMAGE),
            )
            .await;
        self.check(
            "Pull/Pull manifests/HEAD request to manifest path (digest) should yield 200 response",
            r.status_in("HEAD", &[200])
                .and(r.digest_is("HEAD", &manifest.digest)),
        );
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/manifests/{tag}"),
                Some(MT_OCI_IMAGE),
            )
            .await;
        self.check(
            "Pull/Pull manifests/HEAD request to manifest path (tag) should yield 200 response",
            r.status_in("GET", &[200])
                .and(r.digest_is("GET", &manifest.digest)),
        );
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/manifests/.INVALID_MANIFEST_NAME"),
                None,
            )
            .await;
        self.check(
            "Pull/Pull manifests/GET nonexistent manifest should return 404",
            r.status_in("GET", &[404]),
        );
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/manifests/{}", manifest.digest),
                Some(MT_OCI_IMAGE),
            )
            .await;
        self.check(
            "Pull/Pull manifests/GET request to manifest path (digest) should yield 200 response",
            r.status_in("GET", &[200]),
        );
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/manifests/{tag}"),
                Some(MT_OCI_IMAGE),
            )
            .await;
        self.check(
            "Pull/Pull manifests/GET request to manifest path (tag) should yield 200 response",
            r.status_in("GET", &[200]),
        );

        let r = self
            .put_manifest("sha256:totallywrong", MT_OCI_IMAGE, b"blablabla")
            .await;
        let res = r.status_in("PUT", &[400, 404]).and_then(|()| {
            if r.status == 400 {
                let code = r.error_code().unwrap_or_default();
                ensure!(
                    ERROR_CODES.contains(&code.as_str()),
                    "error code {code:?} is not an OCI code"
                );
            }
            Ok(())
        });
        self.check(
            "Pull/Error codes/400 response body should contain OCI-conforming JSON message",
            res,
        );

        let manifest_path = format!("/v2/{n}/manifests/{}", manifest.digest);
        if self.delete_manifest_before_blobs {
            let r = self.delete(&manifest_path).await;
            self.check(
                "Pull/Teardown/Delete manifest created in setup",
                Classic::ok_2xx_or(&r, "DELETE", &[405]),
            );
        }
        let r = self
            .delete(&format!("/v2/{n}/blobs/{}", config.digest))
            .await;
        self.check(
            "Pull/Teardown/Delete config blob created in setup",
            Classic::ok_2xx_or(&r, "DELETE", &[405]),
        );
        let r = self
            .delete(&format!("/v2/{n}/blobs/{}", layer.digest))
            .await;
        self.check(
            "Pull/Teardown/Delete layer blob created in setup",
            Classic::ok_2xx_or(&r, "DELETE", &[405]),
        );
        if !self.delete_manifest_before_blobs {
            let r = self.delete(&manifest_path).await;
            self.check(
                "Pull/Teardown/Delete manifest created in setup",
                Classic::ok_2xx_or(&r, "DELETE", &[405]),
            );
        }
    }

    async fn push(&mut self) {
        let n = self.name.clone();
        let cross = self.cross.clone();
        let s = &self.s;
        let (empty_json, ref_a, blob_a, blob_b) = (
            s.empty_json.clone(),
            s.ref_blob_a.clone(),
            s.blob_a.clone(),
            s.blob_b.clone(),
        );
        let (config1, manifest1, layer) = (
            s.configs[1].clone(),
            s.manifests[1].clone(),
            s.layer.clone(),
        );
        let dummy = s.dummy_digest.clone();

        let r = self.post_put(&n, &empty_json).await;
        self.check(
            "Push/Setup/Upload empty JSON blob needed for further tests",
            Classic::ok_2xx(&r, "PUT"),
        );
        let r = self.post_put(&n, &ref_a).await;
        self.check(
            "Push/Setup/Upload blob needed for further tests",
            Classic::ok_2xx(&r, "PUT"),
        );

        // Blob Upload Streamed
        let r = self
            .api
            .req(
                Method::POST,
                &format!("/v2/{n}/blobs/uploads/"),
                &[("content-length", "0")],
                Some(Vec::new().into()),
            )
            .await;
        let loc = self.api.reg.abs(r.header("location").unwrap_or_default());
        let r = self
            .api
            .send_bytes(Method::PATCH, &loc, &[], &blob_a.content)
            .await;
        self.check(
            "Push/Blob Upload Streamed/PATCH request with blob in body should yield 202 response",
            r.status_in("PATCH", &[202]),
        );
        let loc = self.api.reg.abs(r.header("location").unwrap_or_default());
        let u = with_query(&loc, &format!("digest={}", q(&blob_a.digest)));
        let r = self.api.send_bytes(Method::PUT, &u, &[], &[]).await;
        self.check(
            "Push/Blob Upload Streamed/PUT request to session URL with digest should yield 201 response",
            r.status_in("PUT", &[201]).and(r.has_header("PUT", "location", "")),
        );

        // Blob Upload Monolithic
        let r = self
            .get(Method::GET, &format!("/v2/{n}/blobs/{dummy}"), None)
            .await;
        self.check(
            "Push/Blob Upload Monolithic/GET nonexistent blob should result in 404 response",
            r.status_in("GET", &[404]),
        );
        let r = self
            .api
            .send_bytes(
                Method::POST,
                &format!("/v2/{n}/blobs/uploads/?digest={}", q(&config1.digest)),
                &[],
                &config1.content,
            )
            .await;
        self.check(
            "Push/Blob Upload Monolithic/POST request with digest and blob should yield a 201 or 202",
            r.status_in("POST", &[201, 202]).and(r.has_header("POST", "location", "")),
        );
        let want = if r.status == 202 { 404 } else { 200 };
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/blobs/{}", config1.digest),
                None,
            )
            .await;
        self.check("Push/Blob Upload Monolithic/GET request to blob URL from prior request should yield 200 or 404 based on response code", r.status_in("GET", &[want]));
        let r = self.post_put(&n, &config1).await;
        self.check(
            "Push/Blob Upload Monolithic/PUT upload of a blob should yield a 201 Response",
            r.status_in("PUT", &[201])
                .and(r.has_header("PUT", "location", "")),
        );
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/blobs/{}", config1.digest),
                None,
            )
            .await;
        self.check(
            "Push/Blob Upload Monolithic/GET request to existing blob should yield 200 response",
            r.status_in("GET", &[200]),
        );
        let r = self.post_put(&n, &layer).await;
        self.check(
            "Push/Blob Upload Monolithic/PUT upload of a layer blob should yield a 201 Response",
            r.status_in("PUT", &[201])
                .and(r.has_header("PUT", "location", "")),
        );
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/blobs/{}", layer.digest),
                None,
            )
            .await;
        self.check(
            "Push/Blob Upload Monolithic/GET request to existing layer should yield 200 response",
            r.status_in("GET", &[200]),
        );

        // Blob Upload Chunked: 42 bytes in chunks of 22 and 20.
        let (chunk1, chunk2) = blob_b.content.split_at(22);
        let (range1, range2) = ("0-21", "22-41");
        let r = self.api.post_upload(&n, "").await;
        let min_ok = r
            .header("oci-chunk-min-length")
            .is_none_or(|m| m.parse::<usize>().is_ok_and(|m| m <= chunk1.len()));
        self.check(
            "Push/Blob Upload Chunked/OCI-Chunk-Min-Length fits the suite's chunks",
            if min_ok {
                Ok(())
            } else {
                Err(format!("{:?}", r.header("oci-chunk-min-length")))
            },
        );
        let loc = self.api.reg.abs(r.header("location").unwrap_or_default());
        let r = self
            .api
            .send_bytes(Method::PATCH, &loc, &[("content-range", range2)], chunk2)
            .await;
        self.check(
            "Push/Blob Upload Chunked/Out-of-order blob upload should return 416",
            r.status_in("PATCH", &[416]),
        );
        let r = self.api.post_upload(&n, "").await;
        let prev = self.api.reg.abs(r.header("location").unwrap_or_default());
        let r = self
            .api
            .send_bytes(Method::PATCH, &prev, &[("content-range", range1)], chunk1)
            .await;
        self.check(
            "Push/Blob Upload Chunked/PATCH request with first chunk should return 202",
            r.status_in("PATCH", &[202])
                .and(r.has_header("PATCH", "range", range1)),
        );
        let r = self
            .api
            .send_bytes(Method::PATCH, &prev, &[("content-range", range1)], chunk1)
            .await;
        self.check(
            "Push/Blob Upload Chunked/Retry previous blob chunk should return 416",
            r.status_in("PATCH", &[416]),
        );
        let r = self.get(Method::GET, &prev, None).await;
        self.check(
            "Push/Blob Upload Chunked/Get on stale blob upload should return 204 with a range and location",
            r.status_in("GET", &[204]).and(r.has_header("GET", "location", "")).and(r.has_header("GET", "range", range1)),
        );
        let loc = self.api.reg.abs(r.header("location").unwrap_or_default());
        let r = self
            .api
            .send_bytes(Method::PATCH, &loc, &[("content-range", range2)], chunk2)
            .await;
        self.check(
            "Push/Blob Upload Chunked/PATCH request with second chunk should return 202",
            r.status_in("PATCH", &[202])
                .and(r.has_header("PATCH", "range", "0-41"))
                .and(r.has_header("PATCH", "location", "")),
        );
        let loc = self.api.reg.abs(r.header("location").unwrap_or_default());
        let u = with_query(&loc, &format!("digest={}", q(&blob_b.digest)));
        let r = self.api.send_bytes(Method::PUT, &u, &[], &[]).await;
        self.check(
            "Push/Blob Upload Chunked/PUT request with digest should return 201",
            r.status_in("PUT", &[201])
                .and(r.has_header("PUT", "location", "")),
        );

        // Cross-Repository Blob Mount
        let r = self
            .api
            .post_upload(&cross, &format!("mount={}", q(&dummy)))
            .await;
        self.check(
            "Push/Cross-Repository Blob Mount/Cross-mounting of a blob without the from argument should yield session id",
            r.status_in("POST", &[202]).and(r.has_header("POST", "location", "")),
        );
        let r = self
            .api
            .post_upload(
                &cross,
                &format!("mount={}&from={}", q(&blob_a.digest), q(&n)),
            )
            .await;
        self.check(
            "Push/Cross-Repository Blob Mount/POST request to mount another repository's blob should return 201 or 202",
            r.status_in("POST", &[201, 202]),
        );
        let loc = r.header("location").unwrap_or_default().to_owned();
        if r.status == 201 {
            let want = format!("/v2/{cross}/blobs/{}", blob_a.digest);
            let g = self.get(Method::GET, &self.api.reg.abs(&loc), None).await;
            self.check(
                "Push/Cross-Repository Blob Mount/GET request to test digest within cross-mount namespace should return 200",
                if loc == want { g.status_in("GET", &[200]) } else { Err(format!("Location {loc:?}, expected {want:?}")) },
            );
            // OCI_AUTOMATIC_CROSSMOUNT=0: a mount without `from` is an upload.
            let r = self
                .api
                .post_upload(&cross, &format!("mount={}", q(&blob_a.digest)))
                .await;
            self.check(
                "Push/Cross-Repository Blob Mount/Cross-mounting without from, and automatic content discovery disabled should return a 202",
                r.status_in("POST", &[202]),
            );
        } else {
            let ok = loc.starts_with(&format!("/v2/{cross}/blobs/uploads/"));
            self.check("Push/Cross-Repository Blob Mount/Cross-mounting of nonexistent blob should yield session id", if ok { Ok(()) } else { Err(format!("Location {loc:?}")) });
        }

        // Manifest Upload
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/manifests/.INVALID_MANIFEST_NAME"),
                None,
            )
            .await;
        self.check(
            "Push/Manifest Upload/GET nonexistent manifest should return 404",
            r.status_in("GET", &[404]),
        );
        for i in 0..4 {
            let r = self
                .put_manifest(&format!("test{i}"), MT_OCI_IMAGE, &manifest1.content)
                .await;
            self.check(
                "Push/Manifest Upload/PUT should accept a manifest upload",
                r.status_in("PUT", &[201])
                    .and(r.has_header("PUT", "location", "")),
            );
        }
        let empty_layer = self.s.empty_layer_manifest.clone();
        let r = self
            .put_manifest("emptylayer", MT_OCI_IMAGE, &empty_layer.content)
            .await;
        self.check(
            "Push/Manifest Upload/Registry should accept a manifest upload with no layers",
            r.status_in("PUT", &[201])
                .and(r.has_header("PUT", "location", "")),
        );
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/manifests/{}", manifest1.digest),
                Some(MT_OCI_IMAGE),
            )
            .await;
        self.check(
            "Push/Manifest Upload/GET request to manifest URL (digest) should yield 200 response",
            r.status_in("GET", &[200]),
        );
        // Artifacts [OCI-Image v1.1]: a config type as the artifact type, and an artifactType.
        let (a_config, a_layer) = (self.s.refs_a_config.clone(), self.s.refs_a_layer.clone());
        let r = self
            .put_manifest(&a_config.digest, MT_OCI_IMAGE, &a_config.content)
            .await;
        self.check(
            "Push/Manifest Upload/Registry should accept a manifest upload with custom config/mediaType (as artifact type) [OCI-Image v1.1]",
            Classic::ok_2xx(&r, "PUT"),
        );
        let r = self
            .put_manifest(&a_layer.digest, MT_OCI_IMAGE, &a_layer.content)
            .await;
        self.check(
            "Push/Manifest Upload/Registry should accept a manifest upload with custom artifactType [OCI-Image v1.1]",
            Classic::ok_2xx(&r, "PUT"),
        );
        let (config0, manifest0) = (self.s.configs[0].clone(), self.s.manifests[0].clone());
        let r = self.post_put(&n, &config0).await;
        let r2 = self
            .put_manifest("tagtest0", MT_OCI_IMAGE, &manifest0.content)
            .await;
        let index = TestBlob::json(
            &json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "artifactType": REF_TYPE_INDEX,
            "manifests": [manifest0.desc(MT_OCI_IMAGE)], "annotations": {ANNOTATION_KEY: "test index"}}),
        );
        let r3 = self
            .put_manifest(&index.digest, MT_OCI_INDEX, &index.content)
            .await;
        self.check(
            "Push/Manifest Upload/Registry should accept a manifest upload with image index",
            Classic::ok_2xx(&r, "config PUT")
                .and(Classic::ok_2xx(&r2, "manifest PUT"))
                .and(Classic::ok_2xx(&r3, "index PUT")),
        );
        let nested = TestBlob::json(
            &json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "artifactType": REF_TYPE_INDEX,
            "manifests": [index.desc(MT_OCI_INDEX)], "annotations": {ANNOTATION_KEY: "test index"}}),
        );
        let r = self
            .put_manifest(&nested.digest, MT_OCI_INDEX, &nested.content)
            .await;
        self.check("Push/Manifest Upload/Registry should accept a manifest upload with nested image index [OCI-Image v1.1]", Classic::ok_2xx(&r, "PUT"));

        // Teardown
        let m1 = format!("/v2/{n}/manifests/{}", manifest1.digest);
        let paths: Vec<String> = [&empty_layer, &a_config, &a_layer]
            .iter()
            .map(|m| format!("/v2/{n}/manifests/{}", m.digest))
            .chain([m1])
            .collect();
        if self.delete_manifest_before_blobs {
            for r in self.delete_all(&paths, &[405]).await {
                self.check("Push/Teardown/Delete manifest created in tests", r);
            }
        }
        let r = self
            .delete(&format!("/v2/{n}/blobs/{}", config1.digest))
            .await;
        self.check(
            "Push/Teardown/Delete config blob created in tests",
            Classic::ok_2xx_or(&r, "DELETE", &[404, 405]),
        );
        let r = self
            .delete(&format!("/v2/{n}/blobs/{}", layer.digest))
            .await;
        let r2 = self
            .delete(&format!("/v2/{n}/blobs/{}", empty_json.digest))
            .await;
        self.check(
            "Push/Teardown/Delete layer blob created in setup",
            Classic::ok_2xx_or(&r, "DELETE", &[404, 405]).and(Classic::ok_2xx_or(
                &r2,
                "DELETE",
                &[404, 405],
            )),
        );
        if !self.delete_manifest_before_blobs {
            for r in self.delete_all(&paths, &[405]).await {
                self.check("Push/Teardown/Delete manifest created in tests", r);
            }
        }
    }

    async fn discovery(&mut self) {
        let n = self.name.clone();
        let s = &self.s;
        let (config2, manifest2, layer) = (
            s.configs[2].clone(),
            s.manifests[2].clone(),
            s.layer.clone(),
        );
        let (config4, manifest4, manifest3) = (
            s.configs[4].clone(),
            s.manifests[4].clone(),
            s.manifests[3].clone(),
        );
        let (empty_json, ref_a, ref_b) = (
            s.empty_json.clone(),
            s.ref_blob_a.clone(),
            s.ref_blob_b.clone(),
        );
        let (a_config, a_layer, index) = (
            s.refs_a_config.clone(),
            s.refs_a_layer.clone(),
            s.refs_index.clone(),
        );
        let (b_config, b_layer, c_layer) = (
            s.refs_b_config.clone(),
            s.refs_b_layer.clone(),
            s.refs_c_layer.clone(),
        );
        let annotations = s.annotations.clone();

        let r = self.post_put(&n, &config2).await;
        self.check(
            "Content Discovery/Setup/Populate registry with test blob",
            Classic::ok_2xx(&r, "PUT"),
        );
        let r = self.post_put(&n, &layer).await;
        self.check(
            "Content Discovery/Setup/Populate registry with test layer",
            Classic::ok_2xx(&r, "PUT"),
        );
        for i in 0..4 {
            let r = self
                .put_manifest(&format!("test{i}"), MT_OCI_IMAGE, &manifest2.content)
                .await;
            self.check(
                "Content Discovery/Setup/Populate registry with test tags",
                Classic::ok_2xx(&r, "PUT"),
            );
        }
        let subject_is = |r: &Resp, want: &str| -> Check {
            Classic::ok_2xx(r, "PUT")?;
            let got = r.header("oci-subject").unwrap_or_default();
            ensure!(got == want, "OCI-Subject {got:?}, expected {want:?}");
            Ok(())
        };
        let mut setup = vec![];
        setup.push(Classic::ok_2xx(
            &self.post_put(&n, &empty_json).await,
            "empty JSON PUT",
        ));
        setup.push(Classic::ok_2xx(
            &self.post_put(&n, &ref_a).await,
            "ref blob A PUT",
        ));
        setup.push(subject_is(
            &self
                .put_manifest(&a_config.digest, MT_OCI_IMAGE, &a_config.content)
                .await,
            &manifest4.digest,
        ));
        setup.push(subject_is(
            &self
                .put_manifest(&a_layer.digest, MT_OCI_IMAGE, &a_layer.content)
                .await,
            &manifest4.digest,
        ));
        setup.push(subject_is(
            &self
                .put_manifest(&index.digest, MT_OCI_INDEX, &index.content)
                .await,
            &manifest4.digest,
        ));
        setup.push(Classic::ok_2xx(
            &self.post_put(&n, &config4).await,
            "config PUT",
        ));
        setup.push(Classic::ok_2xx(
            &self.post_put(&n, &layer).await,
            "layer PUT",
        ));
        setup.push(Classic::ok_2xx(
            &self
                .put_manifest("tagtest0", MT_OCI_IMAGE, &manifest4.content)
                .await,
            "manifest PUT",
        ));
        setup.push(Classic::ok_2xx(
            &self.post_put(&n, &ref_b).await,
            "ref blob B PUT",
        ));
        setup.push(subject_is(
            &self
                .put_manifest(&b_config.digest, MT_OCI_IMAGE, &b_config.content)
                .await,
            &manifest4.digest,
        ));
        setup.push(subject_is(
            &self
                .put_manifest(&b_layer.digest, MT_OCI_IMAGE, &b_layer.content)
                .await,
            &manifest4.digest,
        ));
        setup.push(subject_is(
            &self
                .put_manifest(&c_layer.digest, MT_OCI_IMAGE, &c_layer.content)
                .await,
            &manifest3.digest,
        ));
        for r in setup {
            self.check("Content Discovery/Setup/References setup", r);
        }

        // Listing tags.
        let tags = self.api.tag_list(&n, "").await;
        self.check(
            "Content Discovery/listing tags/GET request to list tags should yield 200 response",
            tags.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let num = tags.ok().flatten().map_or(0, |t| t.len());
        let half = num / 2;
        let page = self.api.tag_list(&n, &format!("n={half}")).await;
        let page = page.and_then(|p| {
            let p = p.unwrap_or_default();
            ensure!(p.len() == half, "{} tags for n={half}", p.len());
            Ok(p)
        });
        let last = page.as_ref().ok().and_then(|p| p.last().cloned());
        self.check("Content Discovery/listing tags/GET number of tags should be limitable by `n` query parameter", page.map(|_| ()));
        if let Some(last) = last {
            let r = self
                .api
                .tag_list(&n, &format!("n={half}&last={}", q(&last)))
                .await
                .and_then(|p| {
                    let p = p.unwrap_or_default();
                    ensure!(
                        p.len() <= half && !p.contains(&last),
                        "{p:?} after last={last:?}"
                    );
                    Ok(())
                });
            self.check(
                "Content Discovery/listing tags/GET start of tag is set by `last` query parameter",
                r,
            );
        }

        // Listing referrers.
        let r = self
            .api
            .referrers(&n, &self.s.dummy_digest.clone(), None)
            .await
            .and_then(|(v, _)| {
                ensure!(v["manifests"].as_array().is_some_and(Vec::is_empty), "{v}");
                Ok(())
            });
        self.check("Content Discovery/listing references/GET request to nonexistent blob should result in empty 200 response", r);
        let annotated = |v: &Value| -> Check {
            for m in v["manifests"].as_array().into_iter().flatten() {
                let want = annotations.get(m["digest"].as_str().unwrap_or_default());
                let got = m["annotations"].as_object();
                ensure!(
                    got.is_some_and(|a| a.len() == 1)
                        && want.is_some_and(|w| m["annotations"][ANNOTATION_KEY] == w.as_str()),
                    "referrer {m} does not carry exactly its one annotation {want:?}"
                );
            }
            Ok(())
        };
        let r = self
            .api
            .referrers(&n, &manifest4.digest, None)
            .await
            .and_then(|(v, _)| {
                let ms = v["manifests"].as_array().cloned().unwrap_or_default();
                ensure!(ms.len() == 5, "{} referrers, expected 5: {v}", ms.len());
                ensure!(ms[0]["digest"] != ms[1]["digest"], "duplicate referrers");
                annotated(&v)
            });
        self.check(
            "Content Discovery/listing references/GET request to existing blob should yield 200",
            r,
        );
        let r = self
            .api
            .referrers(&n, &manifest4.digest, Some(REF_TYPE_A))
            .await
            .and_then(|(v, filters)| {
                let count = v["manifests"].as_array().map_or(0, Vec::len);
                if filters.is_empty() {
                    ensure!(count == 5, "{count} unfiltered referrers");
                } else {
                    ensure!(filters == "artifactType", "OCI-Filters-Applied {filters:?}");
                    ensure!(count == 2, "{count} referrers of type A, expected 2: {v}");
                }
                annotated(&v)
            });
        self.check("Content Discovery/listing references/GET request to existing blob with filter should yield 200", r);
        let r = self
            .api
            .referrers(&n, &manifest3.digest, None)
            .await
            .and_then(|(v, _)| {
                let ms = v["manifests"].as_array().cloned().unwrap_or_default();
                ensure!(
                    ms.len() == 1 && ms[0]["digest"] == c_layer.digest.as_str(),
                    "{v}"
                );
                Ok(())
            });
        self.check(
            "Content Discovery/listing references/GET request to missing manifest should yield 200",
            r,
        );

        // Teardown (404 is accepted throughout).
        let manifests = [
            &index, &manifest2, &manifest4, &a_config, &a_layer, &b_config, &b_layer, &c_layer,
        ];
        let paths: Vec<String> = manifests
            .iter()
            .map(|m| format!("/v2/{n}/manifests/{}", m.digest))
            .collect();
        if self.delete_manifest_before_blobs {
            for r in self.delete_all(&paths, &[404, 405]).await {
                self.check(
                    "Content Discovery/Teardown/Delete created manifest & associated tags",
                    r,
                );
            }
        }
        for b in [&config2, &layer, &config4, &ref_a, &ref_b, &empty_json] {
            let r = self.delete(&format!("/v2/{n}/blobs/{}", b.digest)).await;
            self.check(
                "Content Discovery/Teardown/Delete blobs created in setup",
                Classic::ok_2xx_or(&r, "DELETE", &[404, 405]),
            );
        }
        if !self.delete_manifest_before_blobs {
            for r in self.delete_all(&paths, &[404, 405]).await {
                self.check(
                    "Content Discovery/Teardown/Delete created manifest & associated tags",
                    r,
                );
            }
        }
    }

    async fn management(&mut self) {
        let n = self.name.clone();
        let (config3, manifest3, layer) = (
            self.s.configs[3].clone(),
            self.s.manifests[3].clone(),
            self.s.layer.clone(),
        );
        let manifest0 = self.s.manifests[0].clone();
        let r = self.post_put(&n, &config3).await;
        self.check(
            "Content Management/Setup/Populate registry with test config blob",
            Classic::ok_2xx(&r, "PUT"),
        );
        let r = self.post_put(&n, &layer).await;
        self.check(
            "Content Management/Setup/Populate registry with test layer",
            Classic::ok_2xx(&r, "PUT"),
        );
        let r = self
            .put_manifest("tagtest0", MT_OCI_IMAGE, &manifest3.content)
            .await;
        self.check(
            "Content Management/Setup/Populate registry with test tag",
            Classic::ok_2xx(&r, "PUT"),
        );
        let r = self
            .put_manifest(&manifest0.digest, MT_OCI_IMAGE, &manifest0.content)
            .await;
        self.check(
            "Content Management/Setup/Populate registry with test digest",
            Classic::ok_2xx(&r, "PUT"),
        );
        let num = self
            .api
            .tag_list(&n, "")
            .await
            .ok()
            .flatten()
            .map_or(0, |t| t.len());

        let r = self.delete(&format!("/v2/{n}/manifests/tagtest0")).await;
        self.check(
            "Content Management/Manifest delete/DELETE request to manifest tag should return 202",
            r.status_in("DELETE", &[202]),
        );
        let r = self
            .delete(&format!("/v2/{n}/manifests/{}", manifest0.digest))
            .await;
        self.check("Content Management/Manifest delete/DELETE request to manifest (digest) should return 202", r.status_in("DELETE", &[202]));
        let r = self.api.tag_list(&n, "").await.and_then(|t| {
            let got = t.map_or(0, |t| t.len());
            ensure!(got + 1 == num, "{got} tags after deleting one of {num}");
            Ok(())
        });
        self.check("Content Management/Manifest delete/GET request to tags list should reflect manifest deletion", r);
        let r = self
            .delete(&format!("/v2/{n}/blobs/{}", config3.digest))
            .await;
        self.check("Content Management/Blob delete/DELETE request to config blob URL should yield 202 response", r.status_in("DELETE", &[202]));
        let r = self
            .delete(&format!("/v2/{n}/blobs/{}", layer.digest))
            .await;
        self.check("Content Management/Blob delete/DELETE request to layer blob URL should yield 202 response", r.status_in("DELETE", &[202]));
        let r = self
            .get(
                Method::GET,
                &format!("/v2/{n}/blobs/{}", config3.digest),
                None,
            )
            .await;
        self.check("Content Management/Blob delete/GET request to deleted blob URL should yield 404 response", r.status_in("GET", &[404]));
    }
}

async fn run_classic(delete_manifest_before_blobs: bool) {
    let reg = Registry::start().await;
    let mut c = Classic {
        api: Api::new(&reg),
        name: "myorg/myrepo".into(),
        cross: "myorg/other".into(),
        delete_manifest_before_blobs,
        s: Setup::new(),
        errs: vec![],
    };
    c.pull().await;
    c.push().await;
    c.discovery().await;
    c.management().await;
    assert_clean(c.errs);
}

/// The v1.1 suite with its defaults (`OCI_DELETE_MANIFEST_BEFORE_BLOBS` unset,
/// `OCI_AUTOMATIC_CROSSMOUNT=0`).
#[tokio::test]
async fn v1_1_pull_push_discovery_management() {
    run_classic(true).await;
}

/// The v1.1 suite with `OCI_DELETE_MANIFEST_BEFORE_BLOBS=0`.
#[tokio::test]
async fn v1_1_with_blobs_deleted_before_manifests() {
    run_classic(false).await;
}

// ------------------------- the numbered layout (01_base_api_route … 09_blob_delete)

/// The numbered files' flow: base route, streamed, monolithic and chunked
/// uploads, manifest upload, tags list, error codes, manifest and blob
/// delete. Left out, because the current spec contradicts them: the
/// expectation that deleting a manifest by tag fails (`07_error_codes`'s
/// "DELETE request to manifest URL (tag) should have OCI-conforming code" and
/// `08_manifest_delete`'s "DELETE request to manifest URL (tag) MUST fail");
/// v1.1 registries answer 202 (`04_management`: "DELETE request to manifest
/// tag should return 202").
#[tokio::test]
async fn numbered_base_upload_manifest_tags_delete() {
    let reg = Registry::start().await;
    let api = Api::new(&reg);
    let n = "myorg/myrepo";
    let mut errs = vec![];
    let config = br#"
{
    "architecture": "amd64",
    "os": "linux",
    "rootfs": {
        "diff_ids": [],
        "type": "layers"
    }
}
"#;
    let config_digest = sha256(config);
    let manifest = format!(
        "{{ \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"config\":  {{ \"digest\": \"{config_digest}\", \
         \"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"size\": {} }}, \"layers\": [], \"schemaVersion\": 2 }}",
        config.len()
    );
    let manifest_digest = sha256(manifest.as_bytes());
    let blob_a = b"NBA Jam on my NBA toast";
    let blob_b = b"Hello, how are you today?";
    let dummy = sha256(b"hello world");

    let r = api.req(Method::GET, "/v2/", &[], None).await;
    note(
        &mut errs,
        "Base API Route/GET request to base API route must return 200 response",
        r.status_in("GET", &[200]),
    );

    // 02_blob_upload_streamed
    let r = api.post_upload(n, "").await;
    let loc = api.location("POST", &r).unwrap_or_default();
    let r = api.send_bytes(Method::PATCH, &loc, &[], blob_a).await;
    note(
        &mut errs,
        "Blob Upload Streamed/PATCH request with blob in body should yield 202 response",
        r.status_in("PATCH", &[202]),
    );
    let loc = api.location("PATCH", &r).unwrap_or_default();
    let r = api
        .send_bytes(
            Method::PUT,
            &with_query(&loc, &format!("digest={}", q(&sha256(blob_a)))),
            &[],
            &[],
        )
        .await;
    note(
        &mut errs,
        "Blob Upload Streamed/PUT request to session URL with digest should yield 201 response",
        r.status_in("PUT", &[201])
            .and(r.has_header("PUT", "location", "")),
    );

    // 03_blob_upload_monolithic
    let r = api
        .req(Method::GET, &format!("/v2/{n}/blobs/{dummy}"), &[], None)
        .await;
    note(
        &mut errs,
        "Blob Upload Monolithic/GET nonexistent blob should result in 404 response",
        r.status_in("GET", &[404]),
    );
    let r = api
        .send_bytes(
            Method::POST,
            &format!("/v2/{n}/blobs/uploads/?digest={}", q(&config_digest)),
            &[],
            config,
        )
        .await;
    note(
        &mut errs,
        "Blob Upload Monolithic/POST request with digest and blob should yield a 201",
        r.status_in("POST", &[201])
            .and(r.has_header("POST", "location", "")),
    );
    let r = api
        .req(
            Method::GET,
            &format!("/v2/{n}/blobs/{config_digest}"),
            &[],
            None,
        )
        .await;
    note(
        &mut errs,
        "Blob Upload Monolithic/GET request to blob URL from prior request should yield 200",
        r.status_in("GET", &[200]),
    );
    let r = api.post_upload(n, "").await;
    note(
        &mut errs,
        "Blob Upload Monolithic/POST request should yield a session ID",
        r.status_in("POST", &[202]),
    );
    let loc = api.location("POST", &r).unwrap_or_default();
    let r = api
        .send_bytes(
            Method::PUT,
            &with_query(&loc, &format!("digest={}", q(&config_digest))),
            &[],
            config,
        )
        .await;
    note(
        &mut errs,
        "Blob Upload Monolithic/PUT upload of a blob should yield a 201 Response",
        r.status_in("PUT", &[201])
            .and(r.has_header("PUT", "location", "")),
    );

    // 04_blob_upload_chunked: the final chunk comes with the PUT.
    let (c1, c2) = blob_b.split_at(3);
    let r = api.post_upload(n, "").await;
    let loc = api.location("POST", &r).unwrap_or_default();
    let r = api
        .send_bytes(Method::PATCH, &loc, &[("content-range", "3-24")], c2)
        .await;
    note(
        &mut errs,
        "Blob Upload Chunked/Out-of-order blob upload should return 416",
        r.status_in("PATCH", &[416]),
    );
    let r = api.post_upload(n, "").await;
    let loc = api.location("POST", &r).unwrap_or_default();
    let r = api
        .send_bytes(Method::PATCH, &loc, &[("content-range", "0-2")], c1)
        .await;
    note(
        &mut errs,
        "Blob Upload Chunked/PATCH request with first chunk should return 202",
        r.status_in("PATCH", &[202]),
    );
    let loc = api.location("PATCH", &r).unwrap_or_default();
    let u = with_query(&loc, &format!("digest={}", q(&sha256(blob_b))));
    let r = api
        .send_bytes(Method::PUT, &u, &[("content-range", "3-24")], c2)
        .await;
    note(
        &mut errs,
        "Blob Upload Chunked/PUT request with final chunk should return 201",
        r.status_in("PUT", &[201])
            .and(r.has_header("PUT", "location", "")),
    );

    // 05_manifest_upload
    let r = api
        .req(
            Method::GET,
            &format!("/v2/{n}/manifests/.INVALID_MANIFEST_NAME"),
            &[],
            None,
        )
        .await;
    note(
        &mut errs,
        "Manifest Upload/GET nonexistent manifest should return 404",
        r.status_in("GET", &[404]),
    );
    for i in 0..4 {
        let r = api
            .req(
                Method::PUT,
                &format!("/v2/{n}/manifests/test{i}"),
                &[("content-type", MT_OCI_IMAGE)],
                Some(manifest.clone().into_bytes().into()),
            )
            .await;
        note(
            &mut errs,
            "Manifest Upload/PUT should accept a manifest upload",
            r.status_in("PUT", &[201])
                .and(r.has_header("PUT", "location", "")),
        );
    }
    let by_digest = format!("/v2/{n}/manifests/{manifest_digest}");
    let r = api
        .req(Method::GET, &by_digest, &[("accept", MT_OCI_IMAGE)], None)
        .await;
    note(
        &mut errs,
        "Manifest Upload/GET request to manifest URL (digest) should yield 200 response",
        r.status_in("GET", &[200]),
    );

    // 06_tags_list
    let tags = api.tag_list(n, "").await.ok().flatten().unwrap_or_default();
    let num = tags.len();
    let r = match tags.first() {
        Some(t) => api
            .req(
                Method::GET,
                &format!("/v2/{n}/manifests/{t}"),
                &[("accept", MT_OCI_IMAGE)],
                None,
            )
            .await
            .status_in("GET", &[200]),
        None => Err("no tags listed".into()),
    };
    note(
        &mut errs,
        "Tags List/GET request to manifest URL (tag) should yield 200 response",
        r,
    );
    let half = num / 2;
    let page = api
        .tag_list(n, &format!("n={half}"))
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    note(
        &mut errs,
        "Tags List/GET number of tags should be limitable by `n` query parameter",
        if page.len() == half {
            Ok(())
        } else {
            Err(format!("{page:?} for n={half}"))
        },
    );
    let r = match page.last() {
        Some(last) => {
            let rest = api.tag_list(n, &format!("n={half}&last={}", q(last))).await;
            rest.and_then(|r| {
                let r = r.unwrap_or_default();
                ensure!(r.contains(&"test3".to_owned()), "{r:?} after last={last:?}");
                Ok(())
            })
        }
        None => Err("no page".into()),
    };
    note(
        &mut errs,
        "Tags List/GET start of tag is set by `last` query parameter",
        r,
    );

    // 07_error_codes (the part that agrees with v1.1)
    let r = api
        .req(
            Method::PUT,
            &format!("/v2/{n}/manifests/sha256:totallywrong"),
            &[("content-type", MT_OCI_IMAGE)],
            Some(b"blablabla".to_vec().into()),
        )
        .await;
    let res = r.status_in("PUT", &[400]).and_then(|()| {
        let code = r.error_code().unwrap_or_default();
        ensure!(ERROR_CODES.contains(&code.as_str()), "error code {code:?}");
        Ok(())
    });
    note(
        &mut errs,
        "Error codes/400 response body should contain OCI-conforming JSON message",
        res,
    );

    // 07_manifest_delete
    let r = api.req(Method::DELETE, &by_digest, &[], None).await;
    note(
        &mut errs,
        "Manifest Delete/DELETE request to manifest URL should yield 202 response",
        r.status_in("DELETE", &[202]),
    );
    let r = api.req(Method::GET, &by_digest, &[], None).await;
    note(
        &mut errs,
        "Manifest Delete/GET request to deleted manifest URL should yield 404 response",
        r.status_in("GET", &[404]),
    );
    let r = api.tag_list(n, "").await.and_then(|t| {
        let t = t.ok_or("tag list is 404")?;
        ensure!(t.len() < num, "{t:?} after the delete");
        Ok(())
    });
    note(
        &mut errs,
        "Manifest Delete/GET request to tags list should reflect manifest deletion",
        r,
    );

    // 09_blob_delete
    let r = api
        .req(
            Method::DELETE,
            &format!("/v2/{n}/blobs/{config_digest}"),
            &[],
            None,
        )
        .await;
    note(
        &mut errs,
        "Blob Delete/DELETE request to blob URL should yield 202 response",
        r.status_in("DELETE", &[202]),
    );
    let r = api
        .req(
            Method::GET,
            &format!("/v2/{n}/blobs/{config_digest}"),
            &[],
            None,
        )
        .await;
    note(
        &mut errs,
        "Blob Delete/GET request to deleted blob URL should yield 404 response",
        r.status_in("GET", &[404]),
    );
    assert_clean(errs);
}
