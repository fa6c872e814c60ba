//! The distribution API, row by row of the spec table, with its error cases.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn base_and_monolithic_push_and_pull() {
    let reg = Registry::start().await;
    let r = reg.http.get(reg.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    let layer = random_bytes(200_000);
    let (digest, manifest) = reg.push_image("lib/app", "v1", &[&layer]).await;
    let r = reg
        .http
        .get(reg.url("/v2/lib/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), manifest);

    let ld = sha256(&layer);
    let r = reg
        .http
        .get(reg.url(&format!("/v2/lib/app/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), layer);
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The digest of the two-byte empty JSON blob `{}` (image-spec's empty descriptor).
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

fn j(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn desc(media_type: &str, digest: &str, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

async fn get(reg: &Registry, path: &str) -> reqwest::Response {
    reg.http.get(reg.url(path)).send().await.unwrap()
}

async fn head(reg: &Registry, path: &str) -> reqwest::Response {
    reg.http.head(reg.url(path)).send().await.unwrap()
}

async fn delete(reg: &Registry, path: &str) -> reqwest::Response {
    reg.http.delete(reg.url(path)).send().await.unwrap()
}

/// `PUT /v2/<repo>/manifests/<reference>` without asserting the outcome.
async fn put_manifest(
    reg: &Registry,
    repo: &str,
    reference: &str,
    body: &[u8],
    content_type: &str,
) -> reqwest::Response {
    reg.http
        .put(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("content-type", content_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Asserts status and OCI error code.
async fn expect_error(r: reqwest::Response, status: u16, code: &str) {
    let got = r.status().as_u16();
    let what = r.url().to_string();
    let (_, c, m) = error_parts(r).await;
    assert_eq!((got, c.as_str()), (status, code), "{what}: message {m:?}");
}

/// Pushes a config and one layer to `repo` and returns an image manifest over them
/// (Docker schema 2 or OCI), not pushed.
async fn image_body(reg: &Registry, repo: &str, docker: bool, arch: &str) -> Vec<u8> {
    let config = j(json!({"architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}, "nonce": rand::random::<u64>()}));
    let layer = random_bytes(4096);
    let cd = reg.push_blob(repo, &config).await;
    let ld = reg.push_blob(repo, &layer).await;
    let (mt, ct, lt) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
    } else {
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
    };
    j(json!({"schemaVersion": 2, "mediaType": mt,
        "config": desc(ct, &cd, config.len()),
        "layers": [desc(lt, &ld, layer.len())]}))
}

/// The `rel="next"` target of a `Link` header, if any.
fn next_link(r: &reqwest::Response) -> Option<String> {
    let v = r.headers().get("link")?.to_str().unwrap().to_owned();
    assert!(v.contains("rel=\"next\""), "Link without rel=next: {v}");
    let (start, end) = (v.find('<').unwrap() + 1, v.find('>').unwrap());
    Some(v[start..end].to_owned())
}

async fn tags_of(r: reqwest::Response) -> Vec<String> {
    let v: Value = r.json().await.unwrap();
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

fn upload_id(location: &str) -> String {
    location
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

// ---------------------------------------------------------------- base

#[tokio::test]
async fn base_get_and_head_carry_the_api_version() {
    let reg = Registry::start().await;
    for path in ["/v2/", "/v2"] {
        let r = get(&reg, path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            header(&r, "docker-distribution-api-version"),
            "registry/2.0"
        );
        let r = head(&reg, path).await;
        assert_eq!(r.status(), 200, "HEAD {path}");
        assert_eq!(
            header(&r, "docker-distribution-api-version"),
            "registry/2.0"
        );
        assert!(r.bytes().await.unwrap().is_empty());
    }
    // Error responses carry it too.
    let r = get(&reg, "/v2/nope/manifests/latest").await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    expect_error(r, 404, "MANIFEST_UNKNOWN").await;
}

#[tokio::test]
async fn unsupported_methods_and_unknown_paths_are_4xx() {
    let reg = Registry::start().await;
    let d = sha256(b"x");
    for (method, path, status) in [
        ("POST", "/v2/r/manifests/latest".to_owned(), 405),
        ("PATCH", format!("/v2/r/blobs/{d}"), 405),
        ("PUT", format!("/v2/r/blobs/{d}"), 405),
        ("DELETE", "/v2/".to_owned(), 405),
        ("PUT", "/v2/r/tags/list".to_owned(), 405),
        ("DELETE", "/v2/_catalog".to_owned(), 405),
        ("GET", "/v2/r/blobs/uploads/".to_owned(), 405),
        ("GET", "/v2/r/unknown/thing".to_owned(), 404),
        ("GET", "/v2/manifests/latest".to_owned(), 404),
    ] {
        let r = reg.raw(method, &path, b"").await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
}

// ---------------------------------------------------------------- pull

#[tokio::test]
async fn pull_manifest_by_tag_and_digest_get_and_head() {
    let reg = Registry::start().await;
    let (digest, body) = reg
        .push_image("lib/pull", "v1", &[&random_bytes(1000)])
        .await;
    assert_eq!(digest, sha256(&body));
    for reference in ["v1", digest.as_str()] {
        let path = format!("/v2/lib/pull/manifests/{reference}");
        let r = get(&reg, &path).await;
        assert_eq!(r.status(), 200, "GET {reference}");
        assert_eq!(header(&r, "docker-content-digest"), digest);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "content-length"), body.len().to_string());
        assert_eq!(r.bytes().await.unwrap().to_vec(), body);

        let r = head(&reg, &path).await;
        assert_eq!(r.status(), 200, "HEAD {reference}");
        assert_eq!(header(&r, "docker-content-digest"), digest);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "content-length"), body.len().to_string());
        assert!(r.bytes().await.unwrap().is_empty());
    }
    // Unknown tag, unknown digest, unknown repository: 404 MANIFEST_UNKNOWN (HEAD: 404, no body).
    for path in [
        "/v2/lib/pull/manifests/v2".to_owned(),
        format!("/v2/lib/pull/manifests/{}", sha256(b"nothing")),
        "/v2/lib/other/manifests/v1".to_owned(),
        format!("/v2/lib/other/manifests/{digest}"),
    ] {
        expect_error(get(&reg, &path).await, 404, "MANIFEST_UNKNOWN").await;
        let r = head(&reg, &path).await;
        assert_eq!(r.status(), 404, "HEAD {path}");
    }
}

#[tokio::test]
async fn manifest_get_honours_accept() {
    let reg = Registry::start().await;
    let (digest, body) = reg.push_image("acc/app", "v1", &[b"layer"]).await;
    let path = "/v2/acc/app/manifests/v1";
    let with = |accept: &'static str| reg.http.get(reg.url(path)).header("accept", accept).send();
    for accept in [
        OCI_MANIFEST,
        "*/*",
        "application/*",
        "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json;q=0.9",
    ] {
        let r = with(accept).await.unwrap();
        assert_eq!(r.status(), 200, "Accept: {accept}");
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    }
    // Several Accept headers are one list.
    let r = reg
        .http
        .get(reg.url(path))
        .header("accept", DOCKER_MANIFEST)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // No Accept header at all: the manifest as stored.
    let r = reg.raw("GET", path, b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    // A client that only takes types this manifest is not gets no manifest (as distribution does).
    for accept in [DOCKER_MANIFEST, "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json"] {
        expect_error(with(accept).await.unwrap(), 404, "MANIFEST_UNKNOWN").await;
        let r = reg
            .http
            .head(reg.url(path))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "HEAD Accept: {accept}");
    }
}

#[tokio::test]
async fn blob_get_and_head_are_repository_scoped() {
    let reg = Registry::start().await;
    let data = random_bytes(70_000);
    let d = reg.push_blob("b/one", &data).await;
    let r = get(&reg, &format!("/v2/b/one/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    let r = head(&reg, &format!("/v2/b/one/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    assert!(r.bytes().await.unwrap().is_empty());
    // Present in the registry, but not linked into this repository.
    expect_error(
        get(&reg, &format!("/v2/b/two/blobs/{d}")).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(
        head(&reg, &format!("/v2/b/two/blobs/{d}")).await.status(),
        404
    );
    let unknown = sha256(b"never pushed");
    expect_error(
        get(&reg, &format!("/v2/b/one/blobs/{unknown}")).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(
        head(&reg, &format!("/v2/b/one/blobs/{unknown}"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn blob_range_requests() {
    let reg = Registry::start().await;
    let data = random_bytes(1000);
    let d = reg.push_blob("rng/app", &data).await;
    let path = format!("/v2/rng/app/blobs/{d}");
    let ranged = |range: &'static str| reg.http.get(reg.url(&path)).header("range", range).send();
    for (range, start, end) in [
        ("bytes=10-19", 10usize, 19usize),
        ("bytes=0-0", 0, 0),
        ("bytes=-100", 900, 999),
        ("bytes=990-", 990, 999),
        ("bytes=900-5000", 900, 999),
        ("bytes=0-999", 0, 999),
    ] {
        let r = ranged(range).await.unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {start}-{end}/1000"),
            "{range}"
        );
        assert_eq!(header(&r, "content-length"), (end - start + 1).to_string());
        assert_eq!(
            r.bytes().await.unwrap().to_vec(),
            data[start..=end].to_vec(),
            "{range}"
        );
    }
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let r = ranged(range).await.unwrap();
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(header(&r, "content-range"), "bytes */1000", "{range}");
    }
    let r = get(&reg, &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "accept-ranges"), "bytes");
}

// ---------------------------------------------------------------- push: blobs

#[tokio::test]
async fn monolithic_post_push() {
    let reg = Registry::start().await;
    let data = random_bytes(300_000);
    let d = sha256(&data);
    let r = reg
        .http
        .post(reg.url(&format!("/v2/mono/app/blobs/uploads/?digest={d}")))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/mono/app/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d);
    let r = get(&reg, &header(&r, "location")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    // Pushing it again is harmless.
    assert_eq!(reg.push_blob("mono/app", &data).await, d);
    // The empty blob is a blob like any other.
    let e = reg.push_blob("mono/app", b"").await;
    let r = get(&reg, &format!("/v2/mono/app/blobs/{e}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "0");
    assert!(r.bytes().await.unwrap().is_empty());
    // A body that does not match the digest is refused and leaves nothing behind.
    let other = random_bytes(100);
    let wrong = sha256(b"something else");
    let r = reg
        .http
        .post(reg.url(&format!("/v2/mono/app/blobs/uploads/?digest={wrong}")))
        .body(other)
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "DIGEST_INVALID").await;
    assert_eq!(
        head(&reg, &format!("/v2/mono/app/blobs/{wrong}"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn post_then_single_put() {
    let reg = Registry::start().await;
    let r = reg
        .http
        .post(reg.url("/v2/pp/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = header(&r, "location");
    assert!(loc.starts_with("/v2/pp/app/blobs/uploads/"), "{loc}");
    assert_eq!(header(&r, "range"), "0-0");
    assert_eq!(header(&r, "docker-upload-uuid"), upload_id(&loc));
    assert_eq!(header(&r, "content-length"), "0");
    let data = random_bytes(123_457);
    let d = sha256(&data);
    let r = reg
        .http
        .put(with_query(&reg.abs(&loc), &format!("digest={d}")))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/pp/app/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d);
    let r = get(&reg, &format!("/v2/pp/app/blobs/{d}")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    // The session is finished.
    expect_error(
        reg.http.get(reg.abs(&loc)).send().await.unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn chunked_push_with_content_range() {
    let reg = Registry::start().await;
    let data = random_bytes(3 * 100_000 + 123);
    let d = sha256(&data);
    let mut loc = reg.start_upload("chunk/app").await;
    let id = upload_id(&loc);
    for (i, chunk) in data.chunks(100_000).enumerate() {
        let start = i * 100_000;
        let end = start + chunk.len() - 1;
        let r = reg
            .http
            .patch(&loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{end}"))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk {i}");
        assert_eq!(header(&r, "range"), format!("0-{end}"));
        assert_eq!(header(&r, "docker-upload-uuid"), id);
        assert_eq!(header(&r, "content-length"), "0");
        loc = reg.abs(&header(&r, "location"));
        assert_eq!(upload_id(&loc), id);
    }
    let r = reg
        .http
        .put(with_query(&loc, &format!("digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/chunk/app/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d);
    let r = get(&reg, &format!("/v2/chunk/app/blobs/{d}")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
}

#[tokio::test]
async fn chunked_push_with_the_last_chunk_in_the_put() {
    let reg = Registry::start().await;
    let data = random_bytes(50_000);
    let d = sha256(&data);
    let loc = reg.start_upload("chunk/last").await;
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "0-29999")
        .body(data[..30_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = reg.abs(&header(&r, "location"));
    let r = reg
        .http
        .put(with_query(&loc, &format!("digest={d}")))
        .header("content-range", "30000-49999")
        .body(data[30_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = get(&reg, &format!("/v2/chunk/last/blobs/{d}")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
}

#[tokio::test]
async fn out_of_order_chunks_get_416_with_range_and_location() {
    let reg = Registry::start().await;
    let data = random_bytes(200);
    let d = sha256(&data);
    let loc = reg.start_upload("ooo/app").await;
    let patch = |range: &'static str, body: Vec<u8>| {
        reg.http
            .patch(&loc)
            .header("content-range", range)
            .body(body)
            .send()
    };
    // The second chunk first.
    let r = patch("100-199", data[100..].to_vec()).await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-0");
    assert_eq!(reg.abs(&header(&r, "location")), loc);
    let r = patch("0-99", data[..100].to_vec()).await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-99");
    // The same chunk again, and one that leaves a gap.
    for (range, body) in [("0-99", &data[..100]), ("150-199", &data[150..])] {
        let r = patch(range, body.to_vec()).await.unwrap();
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(header(&r, "range"), "0-99", "{range}");
        assert_eq!(reg.abs(&header(&r, "location")), loc);
    }
    let r = patch("100-199", data[100..].to_vec()).await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-199");
    let r = reg
        .http
        .put(with_query(&loc, &format!("digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = get(&reg, &format!("/v2/ooo/app/blobs/{d}")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
}

#[tokio::test]
async fn streamed_patch_without_content_range() {
    let reg = Registry::start().await;
    let parts: Vec<Vec<u8>> = (0..3).map(|_| random_bytes(64 * 1024 + 7)).collect();
    let all: Vec<u8> = parts.concat();
    let d = sha256(&all);
    let mut loc = reg.start_upload("stream/app").await;
    let mut total = 0;
    for p in &parts {
        // A chunked-transfer body: no Content-Length, no Content-Range.
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
            p.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
        let r = reg
            .http
            .patch(&loc)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        total += p.len();
        assert_eq!(header(&r, "range"), format!("0-{}", total - 1));
        loc = reg.abs(&header(&r, "location"));
    }
    let r = reg
        .http
        .put(with_query(&loc, &format!("digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = get(&reg, &format!("/v2/stream/app/blobs/{d}")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), all);
}

#[tokio::test]
async fn upload_status_then_resume() {
    let reg = Registry::start().await;
    let data = random_bytes(2000);
    let d = sha256(&data);
    let loc = reg.start_upload("status/app").await;
    let id = upload_id(&loc);
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "0-999")
        .body(data[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // A client that lost track asks where the upload stands.
    let r = reg.http.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-999");
    assert_eq!(header(&r, "docker-upload-uuid"), id);
    let resume = reg.abs(&header(&r, "location"));
    assert_eq!(upload_id(&resume), id);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = reg.http.head(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-999");
    // Resume from the reported offset.
    let r = reg
        .http
        .patch(&resume)
        .header("content-range", "1000-1999")
        .body(data[1000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-1999");
    let r = reg
        .http
        .put(with_query(&resume, &format!("digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = get(&reg, &format!("/v2/status/app/blobs/{d}")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
}

#[tokio::test]
async fn cancelled_upload_is_gone() {
    let reg = Registry::start().await;
    let data = random_bytes(500);
    let d = sha256(&data);
    let loc = reg.start_upload("cancel/app").await;
    let r = reg
        .http
        .patch(&loc)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = reg.http.delete(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    expect_error(
        reg.http.get(&loc).send().await.unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    expect_error(
        reg.http
            .patch(&loc)
            .body(data.clone())
            .send()
            .await
            .unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    expect_error(
        reg.http
            .put(with_query(&loc, &format!("digest={d}")))
            .send()
            .await
            .unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    expect_error(
        reg.http.delete(&loc).send().await.unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_eq!(
        head(&reg, &format!("/v2/cancel/app/blobs/{d}"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn put_with_a_wrong_or_missing_digest_is_refused() {
    let reg = Registry::start().await;
    let data = random_bytes(1000);
    let d = sha256(&data);
    // No digest, then a malformed one: 400, and the session is still usable.
    let loc = reg.start_upload("dig/app").await;
    let r = reg.http.put(&loc).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    expect_error(
        reg.http.put(&loc).body(data.clone()).send().await.unwrap(),
        400,
        "DIGEST_INVALID",
    )
    .await;
    expect_error(
        reg.http
            .put(with_query(&loc, "digest=sha256:nothex"))
            .body(data.clone())
            .send()
            .await
            .unwrap(),
        400,
        "DIGEST_INVALID",
    )
    .await;
    let r = reg.http.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-0");
    let r = reg
        .http
        .put(with_query(&loc, &format!("digest={d}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A digest the content does not have.
    let loc = reg.start_upload("dig/app").await;
    let wrong = sha256(b"other content");
    expect_error(
        reg.http
            .put(with_query(&loc, &format!("digest={wrong}")))
            .body(random_bytes(1000))
            .send()
            .await
            .unwrap(),
        400,
        "DIGEST_INVALID",
    )
    .await;
    assert_eq!(
        head(&reg, &format!("/v2/dig/app/blobs/{wrong}"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn sha512_blobs() {
    let reg = Registry::start().await;
    let data = random_bytes(50_000);
    let d = sha512(&data);
    let r = reg
        .http
        .post(reg.url(&format!("/v2/s512/app/blobs/uploads/?digest={d}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(header(&r, "location"), format!("/v2/s512/app/blobs/{d}"));
    let r = get(&reg, &format!("/v2/s512/app/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    let r = head(&reg, &format!("/v2/s512/app/blobs/{d}")).await;
    assert_eq!(header(&r, "content-length"), "50000");
    // The same bytes under sha256 were never pushed.
    assert_eq!(
        head(&reg, &format!("/v2/s512/app/blobs/{}", sha256(&data)))
            .await
            .status(),
        404
    );

    // Chunked, finished with a sha512 digest.
    let data2 = random_bytes(30_000);
    let d2 = sha512(&data2);
    let loc = reg.start_upload("s512/app").await;
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "0-14999")
        .body(data2[..15_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "15000-29999")
        .body(data2[15_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = reg
        .http
        .put(with_query(&loc, &format!("digest={d2}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = get(&reg, &format!("/v2/s512/app/blobs/{d2}")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data2);

    // A wrong sha512 is refused.
    let r = reg
        .http
        .post(reg.url(&format!(
            "/v2/s512/app/blobs/uploads/?digest={}",
            sha512(b"not this")
        )))
        .body(random_bytes(10))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "DIGEST_INVALID").await;

    // A manifest may reference sha512 blobs, and may itself be pushed by a sha512 digest.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = reg.push_blob("s512/app", config).await;
    let m = j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &cd, config.len()),
        "layers": [desc(OCI_LAYER, &d, data.len()), desc(OCI_LAYER, &d2, data2.len())]}));
    let md = sha512(&m);
    let r = put_manifest(&reg, "s512/app", &md, &m, OCI_MANIFEST).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), md);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/s512/app/manifests/{md}")
    );
    let r = get(&reg, &format!("/v2/s512/app/manifests/{md}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), md);
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
    let tagged = reg.put_manifest("s512/app", "v1", &m, OCI_MANIFEST).await;
    assert_eq!(tagged, sha256(&m));
}

// ---------------------------------------------------------------- mount

#[tokio::test]
async fn cross_repository_mount() {
    let reg = Registry::start().await;
    let data = random_bytes(40_000);
    let d = reg.push_blob("src/app", &data).await;
    let r = reg
        .http
        .post(reg.url(&format!(
            "/v2/dst/app/blobs/uploads/?mount={d}&from=src/app"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/dst/app/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d);
    let r = get(&reg, &format!("/v2/dst/app/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    // The mounted blob can be used by a manifest in the target repository.
    let config = random_bytes(10);
    let cd = reg.push_blob("dst/app", &config).await;
    let m = j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &cd, config.len()), "layers": [desc(OCI_LAYER, &d, data.len())]}));
    reg.put_manifest("dst/app", "v1", &m, OCI_MANIFEST).await;
}

#[tokio::test]
async fn mount_that_cannot_happen_starts_an_upload() {
    let reg = Registry::start().await;
    let data = random_bytes(1000);
    let d = sha256(&data);
    // Elsewhere in the registry, but not in the named source.
    reg.push_blob("third/app", &data).await;
    reg.push_blob("src/app", b"something else").await;
    for query in [
        format!("mount={d}&from=src/app"),
        format!("mount={d}&from=never/pushed"),
        format!("mount={d}"),
    ] {
        let r = reg
            .http
            .post(reg.url(&format!("/v2/dst/app/blobs/uploads/?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{query}");
        let loc = header(&r, "location");
        assert!(
            loc.starts_with("/v2/dst/app/blobs/uploads/"),
            "{query}: {loc}"
        );
        assert_eq!(header(&r, "docker-upload-uuid"), upload_id(&loc));
        assert_eq!(header(&r, "range"), "0-0");
        assert_eq!(
            head(&reg, &format!("/v2/dst/app/blobs/{d}")).await.status(),
            404
        );
        // The session it started works.
        let r = reg
            .http
            .put(with_query(&reg.abs(&loc), &format!("digest={d}")))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{query}");
        let r = delete(&reg, &format!("/v2/dst/app/blobs/{d}")).await;
        assert_eq!(r.status(), 202);
    }
    // Malformed mount arguments are client errors, not server errors.
    let r = reg
        .http
        .post(reg.url("/v2/dst/app/blobs/uploads/?mount=sha256:zz&from=src/app"))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "DIGEST_INVALID").await;
    let r = reg
        .http
        .post(reg.url(&format!(
            "/v2/dst/app/blobs/uploads/?mount={d}&from=Bad/Name"
        )))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "NAME_INVALID").await;
}

// ---------------------------------------------------------------- push: manifests

#[tokio::test]
async fn manifest_put_returns_location_and_digest() {
    let reg = Registry::start().await;
    let m = image_body(&reg, "mp/app", false, "amd64").await;
    let d = sha256(&m);
    let r = put_manifest(&reg, "mp/app", "v1", &m, OCI_MANIFEST).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/mp/app/manifests/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(header(&r, "oci-subject"), "", "no subject, no OCI-Subject");
    // The Location is pullable.
    let r = get(&reg, &format!("/v2/mp/app/manifests/{d}")).await;
    assert_eq!(r.status(), 200);
    // By digest: the digest must be the body's.
    let m2 = image_body(&reg, "mp/app", false, "arm64").await;
    let d2 = sha256(&m2);
    let r = put_manifest(&reg, "mp/app", &d2, &m2, OCI_MANIFEST).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/mp/app/manifests/{d2}"));
    assert_eq!(header(&r, "docker-content-digest"), d2);
    let m3 = image_body(&reg, "mp/app", false, "s390x").await;
    let r = put_manifest(&reg, "mp/app", &d2, &m3, OCI_MANIFEST).await;
    expect_error(r, 400, "DIGEST_INVALID").await;
    expect_error(
        get(&reg, &format!("/v2/mp/app/manifests/{}", sha256(&m3))).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    // Content-Type parameters are ignored.
    let r = put_manifest(
        &reg,
        "mp/app",
        "v3",
        &m3,
        "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
    )
    .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn manifest_bytes_are_stored_exactly_and_tags_move() {
    let reg = Registry::start().await;
    let config = random_bytes(20);
    let cd = reg.push_blob("exact/app", &config).await;
    // Odd whitespace and key order: the digest is of these exact bytes.
    let body = format!(
        "{{\n   \"layers\" : [ ],\n\t\"config\": {{ \"size\": {}, \"digest\": \"{cd}\", \"mediaType\": \"{OCI_CONFIG}\" }},\n  \"schemaVersion\":2, \"mediaType\": \"{OCI_MANIFEST}\"\n}}\n",
        config.len()
    )
    .into_bytes();
    let d = reg
        .put_manifest("exact/app", "v1", &body, OCI_MANIFEST)
        .await;
    assert_eq!(d, sha256(&body));
    let r = get(&reg, "/v2/exact/app/manifests/v1").await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    // Moving the tag: v1 now names another manifest, the first stays reachable by digest.
    let other = image_body(&reg, "exact/app", false, "amd64").await;
    let d2 = reg
        .put_manifest("exact/app", "v1", &other, OCI_MANIFEST)
        .await;
    let r = get(&reg, "/v2/exact/app/manifests/v1").await;
    assert_eq!(header(&r, "docker-content-digest"), d2);
    assert_eq!(r.bytes().await.unwrap().to_vec(), other);
    let r = get(&reg, &format!("/v2/exact/app/manifests/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    // Pushing the same manifest again is fine.
    assert_eq!(
        reg.put_manifest("exact/app", "v1", &other, OCI_MANIFEST)
            .await,
        d2
    );
}

#[tokio::test]
async fn manifest_referencing_missing_blobs_is_refused() {
    let reg = Registry::start().await;
    let config = random_bytes(30);
    let layer = random_bytes(3000);
    let (cd, ld) = (sha256(&config), sha256(&layer));
    let m = j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &cd, config.len()), "layers": [desc(OCI_LAYER, &ld, layer.len())]}));
    // Nothing pushed.
    expect_error(
        put_manifest(&reg, "miss/app", "v1", &m, OCI_MANIFEST).await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    // Config pushed, layer missing.
    reg.push_blob("miss/app", &config).await;
    expect_error(
        put_manifest(&reg, "miss/app", "v1", &m, OCI_MANIFEST).await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    // The layer exists, but in another repository.
    reg.push_blob("other/app", &layer).await;
    expect_error(
        put_manifest(&reg, "miss/app", "v1", &m, OCI_MANIFEST).await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    expect_error(
        get(&reg, "/v2/miss/app/manifests/v1").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    // Once it is in this repository the push succeeds.
    reg.push_blob("miss/app", &layer).await;
    reg.put_manifest("miss/app", "v1", &m, OCI_MANIFEST).await;
    // Foreign layers (with urls) live elsewhere and need not be pushed.
    let foreign = j(json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG, &cd, config.len()),
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": sha256(b"windows base"), "size": 12, "urls": ["https://example.com/layer"]}]}));
    reg.put_manifest("miss/app", "foreign", &foreign, DOCKER_MANIFEST)
        .await;
}

#[tokio::test]
async fn index_referencing_a_missing_manifest_is_refused() {
    let reg = Registry::start().await;
    let child = image_body(&reg, "idx/app", false, "amd64").await;
    let cd = sha256(&child);
    let index = j(json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": cd, "size": child.len(),
            "platform": {"architecture": "amd64", "os": "linux"}}]}));
    expect_error(
        put_manifest(&reg, "idx/app", "multi", &index, OCI_INDEX).await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    // In another repository only.
    let other = image_body(&reg, "idx/other", false, "amd64").await;
    let od = reg
        .put_manifest("idx/other", "x", &other, OCI_MANIFEST)
        .await;
    let index2 = j(json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": od, "size": other.len()}]}));
    expect_error(
        put_manifest(&reg, "idx/app", "multi", &index2, OCI_INDEX).await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    // A blob of this repository is not a manifest.
    let blob = random_bytes(100);
    let bd = reg.push_blob("idx/app", &blob).await;
    let index3 = j(json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": bd, "size": blob.len()}]}));
    expect_error(
        put_manifest(&reg, "idx/app", "multi", &index3, OCI_INDEX).await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    // With the child pushed (untagged, by digest) the index goes in.
    reg.put_manifest("idx/app", &cd, &child, OCI_MANIFEST).await;
    reg.put_manifest("idx/app", "multi", &index, OCI_INDEX)
        .await;
}

#[tokio::test]
async fn docker_schema2_and_manifest_list() {
    let reg = Registry::start().await;
    let amd = image_body(&reg, "dock/app", true, "amd64").await;
    let arm = image_body(&reg, "dock/app", true, "arm64").await;
    let ad = reg
        .put_manifest("dock/app", "amd64", &amd, DOCKER_MANIFEST)
        .await;
    let rd = reg
        .put_manifest("dock/app", &sha256(&arm), &arm, DOCKER_MANIFEST)
        .await;
    let r = get(&reg, "/v2/dock/app/manifests/amd64").await;
    assert_eq!(header(&r, "content-type"), DOCKER_MANIFEST);
    assert_eq!(header(&r, "docker-content-digest"), ad);
    assert_eq!(r.bytes().await.unwrap().to_vec(), amd);
    let list = j(
        json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": ad, "size": amd.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": DOCKER_MANIFEST, "digest": rd, "size": arm.len(), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ]}),
    );
    let ld = reg
        .put_manifest("dock/app", "latest", &list, DOCKER_LIST)
        .await;
    for reference in ["latest", ld.as_str()] {
        let r = get(&reg, &format!("/v2/dock/app/manifests/{reference}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), DOCKER_LIST);
        assert_eq!(header(&r, "docker-content-digest"), ld);
        assert_eq!(r.bytes().await.unwrap().to_vec(), list);
        let r = head(&reg, &format!("/v2/dock/app/manifests/{reference}")).await;
        assert_eq!(header(&r, "content-type"), DOCKER_LIST);
        assert_eq!(header(&r, "content-length"), list.len().to_string());
    }
    let r = get(&reg, &format!("/v2/dock/app/manifests/{rd}")).await;
    assert_eq!(header(&r, "content-type"), DOCKER_MANIFEST);
    assert_eq!(r.bytes().await.unwrap().to_vec(), arm);
}

#[tokio::test]
async fn oci_index_multi_arch() {
    let reg = Registry::start().await;
    let mut entries = vec![];
    let mut children = vec![];
    for arch in ["amd64", "arm64", "ppc64le"] {
        let m = image_body(&reg, "multi/app", false, arch).await;
        let d = reg
            .put_manifest("multi/app", &sha256(&m), &m, OCI_MANIFEST)
            .await;
        entries.push(
            json!({"mediaType": OCI_MANIFEST, "digest": d, "size": m.len(),
            "platform": {"architecture": arch, "os": "linux"}}),
        );
        children.push((d, m));
    }
    // An index without a mediaType field, pushed with its Content-Type.
    let index = j(json!({"schemaVersion": 2, "manifests": entries,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}));
    let id = reg
        .put_manifest("multi/app", "latest", &index, OCI_INDEX)
        .await;
    let r = get(&reg, "/v2/multi/app/manifests/latest").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert_eq!(header(&r, "docker-content-digest"), id);
    let got: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(got["manifests"].as_array().unwrap().len(), 3);
    for (d, m) in &children {
        let r = get(&reg, &format!("/v2/multi/app/manifests/{d}")).await;
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(r.bytes().await.unwrap().to_vec(), *m);
    }
    // Content negotiation on an index.
    let r = reg
        .http
        .get(reg.url("/v2/multi/app/manifests/latest"))
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    let r = reg
        .http
        .get(reg.url("/v2/multi/app/manifests/latest"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "MANIFEST_UNKNOWN").await;
}

#[tokio::test]
async fn oci_artifact_with_the_empty_config() {
    let reg = Registry::start().await;
    let e = reg.push_blob("art/app", b"{}").await;
    assert_eq!(e, EMPTY_DIGEST);
    let payload = random_bytes(5000);
    let pd = reg.push_blob("art/app", &payload).await;
    let m = j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.thing.v1",
        "config": desc(OCI_EMPTY, EMPTY_DIGEST, 2),
        "layers": [desc("application/vnd.example.thing.layer.v1+tar", &pd, payload.len())],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}));
    let d = reg.put_manifest("art/app", "thing", &m, OCI_MANIFEST).await;
    let r = get(&reg, "/v2/art/app/manifests/thing").await;
    assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
    let r = get(&reg, &format!("/v2/art/app/blobs/{EMPTY_DIGEST}")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), b"{}");
    // An artifact whose only layer is the empty descriptor too.
    let m2 = j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.marker.v1",
        "config": desc(OCI_EMPTY, EMPTY_DIGEST, 2),
        "layers": [desc(OCI_EMPTY, EMPTY_DIGEST, 2)]}));
    reg.put_manifest("art/app", "marker", &m2, OCI_MANIFEST)
        .await;
    // Without the empty blob in the repository the artifact is refused like any manifest.
    let r = put_manifest(&reg, "art/other", "marker", &m2, OCI_MANIFEST).await;
    expect_error(r, 400, "MANIFEST_BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn schema1_manifests_are_refused_clearly() {
    let reg = Registry::start().await;
    let schema1 = j(
        json!({"schemaVersion": 1, "name": "old/app", "tag": "v1", "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(b"l")}], "history": [{"v1Compatibility": "{}"}],
        "signatures": [{"header": {"alg": "ES256"}, "signature": "x", "protected": "y"}]}),
    );
    for ct in [
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/json",
        "",
        OCI_MANIFEST,
    ] {
        let r = put_manifest(&reg, "old/app", "v1", &schema1, ct).await;
        let (status, code, message) = error_parts(r).await;
        assert_eq!((status, code.as_str()), (400, "MANIFEST_INVALID"), "{ct:?}");
        assert!(
            message.to_lowercase().contains("schema 1"),
            "{ct:?}: {message}"
        );
    }
    // The signed content type is refused whatever the body says.
    let r = put_manifest(
        &reg,
        "old/app",
        "v1",
        &image_body(&reg, "old/app", true, "amd64").await,
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    )
    .await;
    let (status, code, message) = error_parts(r).await;
    assert_eq!((status, code.as_str()), (400, "MANIFEST_INVALID"));
    assert!(message.to_lowercase().contains("schema 1"), "{message}");
    expect_error(
        get(&reg, "/v2/old/app/manifests/v1").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

// ---------------------------------------------------------------- referrers

#[tokio::test]
async fn referrers_api() {
    let reg = Registry::start().await;
    let repo = "ref/app";
    let (subject, sbody) = reg.push_image(repo, "v1", &[b"base layer"]).await;
    let subj = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": sbody.len()});
    reg.push_blob(repo, b"{}").await;
    let sbom = random_bytes(300);
    let sbom_d = reg.push_blob(repo, &sbom).await;
    // A: artifactType set, empty config.
    let a = j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": desc(OCI_EMPTY, EMPTY_DIGEST, 2),
        "layers": [desc("application/json", &sbom_d, sbom.len())],
        "subject": subj, "annotations": {"org.example.kind": "sbom"}}));
    let ad = sha256(&a);
    let r = put_manifest(&reg, repo, &ad, &a, OCI_MANIFEST).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "oci-subject"), subject);
    // B: no artifactType: the config's media type stands in.
    let sig_config = br#"{"sig":true}"#;
    let sig_cd = reg.push_blob(repo, sig_config).await;
    let b = j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.example.signature.config.v1+json", &sig_cd, sig_config.len()),
        "layers": [], "subject": subj, "annotations": {"org.example.kind": "signature"}}));
    let bd = sha256(&b);
    let r = put_manifest(&reg, repo, "sig", &b, OCI_MANIFEST).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "oci-subject"), subject);
    // C: an index with a subject and no artifactType: artifactType is omitted.
    let c = j(
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
        "subject": subj, "annotations": {"org.example.kind": "index"}}),
    );
    let cd = sha256(&c);
    let r = put_manifest(&reg, repo, &cd, &c, OCI_INDEX).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "oci-subject"), subject);
    // Not referrers: a manifest without subject, and a referrer in another repository.
    reg.push_image(repo, "v2", &[b"other"]).await;
    reg.push_blob("ref/elsewhere", b"{}").await;
    reg.push_blob("ref/elsewhere", &sbom).await;
    reg.put_manifest("ref/elsewhere", &sha256(&a), &a, OCI_MANIFEST)
        .await;

    let path = format!("/v2/{repo}/referrers/{subject}");
    let r = get(&reg, &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert_eq!(header(&r, "oci-filters-applied"), "");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{v}");
    let find = |d: &str| {
        list.iter()
            .find(|m| m["digest"] == d)
            .unwrap_or_else(|| panic!("{d} not in {v}"))
    };
    let ea = find(&ad);
    assert_eq!(ea["mediaType"], OCI_MANIFEST);
    assert_eq!(ea["size"], a.len());
    assert_eq!(ea["artifactType"], "application/vnd.example.sbom.v1");
    assert_eq!(ea["annotations"], json!({"org.example.kind": "sbom"}));
    let eb = find(&bd);
    assert_eq!(
        eb["artifactType"],
        "application/vnd.example.signature.config.v1+json"
    );
    assert_eq!(eb["annotations"], json!({"org.example.kind": "signature"}));
    let ec = find(&cd);
    assert_eq!(ec["mediaType"], OCI_INDEX);
    assert!(ec.get("artifactType").is_none(), "{ec}");
    assert_eq!(ec["annotations"], json!({"org.example.kind": "index"}));

    // Filtered by artifactType.
    let r = get(
        &reg,
        &format!("{path}?artifactType=application/vnd.example.sbom.v1"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: Value = r.json().await.unwrap();
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["digest"], ad);
    // Percent-encoded, as clients send it.
    let r = get(
        &reg,
        &format!("{path}?artifactType=application%2Fvnd.example.signature.config.v1%2Bjson"),
    )
    .await;
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["manifests"][0]["digest"], bd);
    let r = get(
        &reg,
        &format!("{path}?artifactType=application/vnd.example.none"),
    )
    .await;
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"], json!([]));

    // HEAD works like GET.
    let r = head(&reg, &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);

    // A deleted referrer is no longer listed.
    assert_eq!(
        delete(&reg, &format!("/v2/{repo}/manifests/{ad}"))
            .await
            .status(),
        202
    );
    let v: Value = get(&reg, &path).await.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2, "{v}");

    // Unknown subject, unknown repository: 200 with an empty index.
    for p in [
        format!("/v2/{repo}/referrers/{}", sha256(b"nothing refers to this")),
        format!("/v2/ref/unknown/referrers/{subject}"),
    ] {
        let r = get(&reg, &p).await;
        assert_eq!(r.status(), 200, "{p}");
        assert_eq!(header(&r, "content-type"), OCI_INDEX);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(v["manifests"], json!([]), "{p}");
    }
    // A malformed digest is a 400.
    expect_error(
        get(&reg, &format!("/v2/{repo}/referrers/sha256:zz")).await,
        400,
        "DIGEST_INVALID",
    )
    .await;
    expect_error(
        get(&reg, &format!("/v2/{repo}/referrers/v1")).await,
        400,
        "DIGEST_INVALID",
    )
    .await;
}

#[tokio::test]
async fn referrer_pushed_before_its_subject() {
    let reg = Registry::start().await;
    let repo = "early/app";
    reg.push_blob(repo, b"{}").await;
    // The subject does not exist (yet): the push is accepted all the same.
    let future = sha256(b"a manifest pushed later");
    let m = j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.early.v1",
        "config": desc(OCI_EMPTY, EMPTY_DIGEST, 2), "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": future, "size": 100}}));
    let r = put_manifest(&reg, repo, "early", &m, OCI_MANIFEST).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "oci-subject"), future);
    let v: Value = get(&reg, &format!("/v2/{repo}/referrers/{future}"))
        .await
        .json()
        .await
        .unwrap();
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], sha256(&m));
    assert_eq!(list[0]["artifactType"], "application/vnd.example.early.v1");
    assert!(list[0].get("annotations").is_none(), "{v}");
}

#[tokio::test]
async fn empty_artifact_type_falls_back_to_the_config_media_type() {
    let reg = Registry::start().await;
    let repo = "emptyat/app";
    let (subject, sbody) = reg.push_image(repo, "v1", &[b"l"]).await;
    let cfg = br#"{"x":1}"#;
    let cd = reg.push_blob(repo, cfg).await;
    let m = j(
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "",
        "config": desc("application/vnd.example.cfg.v1+json", &cd, cfg.len()), "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": sbody.len()}}),
    );
    reg.put_manifest(repo, "a", &m, OCI_MANIFEST).await;
    let v: Value = get(&reg, &format!("/v2/{repo}/referrers/{subject}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["manifests"][0]["artifactType"], "application/vnd.example.cfg.v1+json",
        "{v}"
    );
}

// ---------------------------------------------------------------- delete

#[tokio::test]
async fn delete_manifest_by_digest_removes_its_tags() {
    let reg = Registry::start().await;
    let layer = random_bytes(2000);
    let (d, m) = reg.push_image("del/app", "one", &[&layer]).await;
    reg.put_manifest("del/app", "two", &m, OCI_MANIFEST).await;
    let (keep, _) = reg.push_image("del/app", "keep", &[&layer]).await;
    let r = delete(&reg, &format!("/v2/del/app/manifests/{d}")).await;
    assert_eq!(r.status(), 202);
    for reference in [d.as_str(), "one", "two"] {
        expect_error(
            get(&reg, &format!("/v2/del/app/manifests/{reference}")).await,
            404,
            "MANIFEST_UNKNOWN",
        )
        .await;
        assert_eq!(
            head(&reg, &format!("/v2/del/app/manifests/{reference}"))
                .await
                .status(),
            404
        );
    }
    assert_eq!(
        tags_of(get(&reg, "/v2/del/app/tags/list").await).await,
        vec!["keep"]
    );
    let r = get(&reg, "/v2/del/app/manifests/keep").await;
    assert_eq!(header(&r, "docker-content-digest"), keep);
    // Its blobs are still there (deleting a manifest unlinks no blob).
    assert_eq!(
        get(&reg, &format!("/v2/del/app/blobs/{}", sha256(&layer)))
            .await
            .status(),
        200
    );
    // A second delete: 404.
    expect_error(
        delete(&reg, &format!("/v2/del/app/manifests/{d}")).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    // It can be pushed again.
    assert_eq!(
        reg.put_manifest("del/app", "again", &m, OCI_MANIFEST).await,
        d
    );
    let r = get(&reg, "/v2/del/app/manifests/again").await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
}

#[tokio::test]
async fn delete_by_tag_removes_only_the_tag() {
    let reg = Registry::start().await;
    let (d, m) = reg.push_image("dtag/app", "a", &[b"x"]).await;
    reg.put_manifest("dtag/app", "b", &m, OCI_MANIFEST).await;
    let r = delete(&reg, "/v2/dtag/app/manifests/a").await;
    assert_eq!(r.status(), 202);
    expect_error(
        get(&reg, "/v2/dtag/app/manifests/a").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let r = get(&reg, "/v2/dtag/app/manifests/b").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), d);
    let r = get(&reg, &format!("/v2/dtag/app/manifests/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
    assert_eq!(
        tags_of(get(&reg, "/v2/dtag/app/tags/list").await).await,
        vec!["b"]
    );
    expect_error(
        delete(&reg, "/v2/dtag/app/manifests/a").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(delete(&reg, "/v2/dtag/app/manifests/b").await.status(), 202);
    let r = get(&reg, "/v2/dtag/app/tags/list").await;
    assert_eq!(r.status(), 200);
    assert!(tags_of(r).await.is_empty());
    assert_eq!(
        get(&reg, &format!("/v2/dtag/app/manifests/{d}"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn delete_blob_unlinks_it_from_that_repository_only() {
    let reg = Registry::start().await;
    let data = random_bytes(5000);
    let d = reg.push_blob("dblob/one", &data).await;
    reg.push_blob("dblob/two", &data).await;
    let r = delete(&reg, &format!("/v2/dblob/one/blobs/{d}")).await;
    assert_eq!(r.status(), 202);
    expect_error(
        get(&reg, &format!("/v2/dblob/one/blobs/{d}")).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(
        head(&reg, &format!("/v2/dblob/one/blobs/{d}"))
            .await
            .status(),
        404
    );
    let r = get(&reg, &format!("/v2/dblob/two/blobs/{d}")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    expect_error(
        delete(&reg, &format!("/v2/dblob/one/blobs/{d}")).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
    // A manifest can no longer use it there.
    let config = random_bytes(10);
    let cd = reg.push_blob("dblob/one", &config).await;
    let m = j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &cd, config.len()), "layers": [desc(OCI_LAYER, &d, data.len())]}));
    expect_error(
        put_manifest(&reg, "dblob/one", "v1", &m, OCI_MANIFEST).await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn deleting_unknown_things_is_404() {
    let reg = Registry::start().await;
    reg.push_image("known/app", "v1", &[b"l"]).await;
    let nothing = sha256(b"nothing");
    for (path, code) in [
        (
            format!("/v2/known/app/manifests/{nothing}"),
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/known/app/manifests/nosuchtag".to_owned(),
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("/v2/unknown/app/manifests/{nothing}"),
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/unknown/app/manifests/v1".to_owned(),
            "MANIFEST_UNKNOWN",
        ),
        (format!("/v2/known/app/blobs/{nothing}"), "BLOB_UNKNOWN"),
        (format!("/v2/unknown/app/blobs/{nothing}"), "BLOB_UNKNOWN"),
    ] {
        expect_error(delete(&reg, &path).await, 404, code).await;
    }
}

// ---------------------------------------------------------------- listing

#[tokio::test]
async fn tags_list_is_ordered_and_paginated() {
    let reg = Registry::start().await;
    let (_, m) = reg.push_image("tags/app", "v10", &[b"l"]).await;
    for t in ["v2", "alpha", "Beta", "latest", "v1", "_x", "1.0"] {
        reg.put_manifest("tags/app", t, &m, OCI_MANIFEST).await;
    }
    // Lexical, case-insensitive order (distribution-spec v1.1, "Listing Tags").
    let all = ["1.0", "_x", "alpha", "Beta", "latest", "v1", "v10", "v2"];
    let r = get(&reg, "/v2/tags/app/tags/list").await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("application/json"));
    assert!(next_link(&r).is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["name"], "tags/app");
    assert_eq!(v["tags"], json!(all));

    // Follow Link headers three at a time.
    let mut url = reg.url("/v2/tags/app/tags/list?n=3");
    let mut pages = vec![];
    loop {
        let r = reg.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let next = next_link(&r);
        pages.push(tags_of(r).await);
        match next {
            Some(n) => {
                assert!(n.starts_with("/v2/tags/app/tags/list?"), "{n}");
                url = reg.abs(&n);
            }
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(
        pages,
        vec![all[..3].to_vec(), all[3..6].to_vec(), all[6..].to_vec()]
    );

    // n and last on their own; n exactly the count; n = 0.
    let r = get(&reg, "/v2/tags/app/tags/list?n=8").await;
    assert!(next_link(&r).is_none());
    assert_eq!(tags_of(r).await, all);
    let r = get(&reg, "/v2/tags/app/tags/list?n=7").await;
    assert!(next_link(&r).is_some());
    assert_eq!(tags_of(r).await, all[..7]);
    let r = get(&reg, "/v2/tags/app/tags/list?last=latest").await;
    assert!(next_link(&r).is_none());
    assert_eq!(tags_of(r).await, ["v1", "v10", "v2"]);
    let r = get(&reg, "/v2/tags/app/tags/list?n=2&last=alpha").await;
    assert!(next_link(&r).is_some());
    assert_eq!(tags_of(r).await, ["Beta", "latest"]);
    let r = get(&reg, "/v2/tags/app/tags/list?last=v2").await;
    assert!(tags_of(r).await.is_empty());
    let r = get(&reg, "/v2/tags/app/tags/list?n=0").await;
    assert_eq!(r.status(), 200);
    assert!(next_link(&r).is_none(), "n=0 must not have a Link");
    assert!(tags_of(r).await.is_empty());
    let r = get(&reg, "/v2/tags/app/tags/list?n=many").await;
    assert_eq!(r.status(), 400);

    // HEAD, and an unknown repository.
    let r = head(&reg, "/v2/tags/app/tags/list").await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    expect_error(
        get(&reg, "/v2/tags/unknown/tags/list").await,
        404,
        "NAME_UNKNOWN",
    )
    .await;
    assert_eq!(head(&reg, "/v2/tags/unknown/tags/list").await.status(), 404);
    // A parent path of a repository is not a repository.
    expect_error(get(&reg, "/v2/tags/tags/list").await, 404, "NAME_UNKNOWN").await;
}

#[tokio::test]
async fn catalog_is_paginated() {
    let reg = Registry::start().await;
    let names = ["cat/a", "cat/b", "cat/c", "cat/d", "zeta"];
    for n in names.iter().rev() {
        reg.push_blob(n, b"x").await;
    }
    // Starting an upload alone does not make a repository.
    reg.start_upload("cat/empty").await;
    let r = get(&reg, "/v2/_catalog").await;
    assert_eq!(r.status(), 200);
    assert!(next_link(&r).is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], json!(names));
    let mut url = reg.url("/v2/_catalog?n=2");
    let mut pages: Vec<Vec<String>> = vec![];
    loop {
        let r = reg.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let next = next_link(&r);
        let v: Value = r.json().await.unwrap();
        pages.push(serde_json::from_value(v["repositories"].clone()).unwrap());
        match next {
            Some(n) => url = reg.abs(&n),
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(
        pages,
        vec![vec!["cat/a", "cat/b"], vec!["cat/c", "cat/d"], vec!["zeta"]]
    );
    let v: Value = get(&reg, "/v2/_catalog?n=10&last=cat/c")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], json!(["cat/d", "zeta"]));
    let r = head(&reg, "/v2/_catalog").await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
}

// ---------------------------------------------------------------- malformed input

#[tokio::test]
async fn invalid_repository_names_are_name_invalid() {
    let reg = Registry::start().await;
    let d = sha256(b"x");
    let long = "a".repeat(256);
    let names = [
        "Upper",
        "lib/App",
        "a/../b",
        "..",
        "a/.",
        "a/",
        "a//b",
        "-a",
        "a-",
        "a___b",
        "a..b",
        "a%2Fb",
        "a:b",
        long.as_str(),
    ];
    for name in names {
        for (method, path) in [
            ("GET", format!("/v2/{name}/manifests/latest")),
            ("PUT", format!("/v2/{name}/manifests/latest")),
            ("DELETE", format!("/v2/{name}/manifests/{d}")),
            ("GET", format!("/v2/{name}/blobs/{d}")),
            ("DELETE", format!("/v2/{name}/blobs/{d}")),
            ("POST", format!("/v2/{name}/blobs/uploads/")),
            ("GET", format!("/v2/{name}/tags/list")),
            ("GET", format!("/v2/{name}/referrers/{d}")),
        ] {
            let r = reg.raw(method, &path, b"{}").await;
            assert_eq!(r.status, 400, "{method} {path}: {}", r.body);
            assert_eq!(r.error_code(), "NAME_INVALID", "{method} {path}");
        }
        let r = reg
            .raw("HEAD", &format!("/v2/{name}/manifests/latest"), b"")
            .await;
        assert_eq!(r.status, 400, "HEAD {name}");
    }
}

#[tokio::test]
async fn malformed_digests_are_digest_invalid() {
    let reg = Registry::start().await;
    let bad = [
        "sha256:zz".to_owned(),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha512:{}", "a".repeat(64)),
        "md5:d41d8cd98f00b204e9800998ecf8427e".to_owned(),
        "sha256:".to_owned(),
        ":abc".to_owned(),
        "notadigest".to_owned(),
    ];
    for b in &bad {
        for (method, path) in [
            ("GET", format!("/v2/r/blobs/{b}")),
            ("DELETE", format!("/v2/r/blobs/{b}")),
            ("GET", format!("/v2/r/referrers/{b}")),
            ("POST", format!("/v2/r/blobs/uploads/?digest={b}")),
        ] {
            let r = reg.raw(method, &path, b"data").await;
            assert_eq!(r.status, 400, "{method} {path}: {}", r.body);
            assert_eq!(r.error_code(), "DIGEST_INVALID", "{method} {path}");
        }
        assert_eq!(
            reg.raw("HEAD", &format!("/v2/r/blobs/{b}"), b"")
                .await
                .status,
            400
        );
        // As a manifest reference, anything with a ':' must be a digest.
        if b.contains(':') {
            for method in ["GET", "PUT", "DELETE"] {
                let path = format!("/v2/r/manifests/{b}");
                let r = reg.raw(method, &path, b"{}").await;
                assert_eq!(r.status, 400, "{method} {path}: {}", r.body);
                assert_eq!(r.error_code(), "DIGEST_INVALID", "{method} {path}");
            }
        }
    }
    // The conformance suite's own example.
    let r = put_manifest(&reg, "r", "sha256:totallywrong", b"{}", OCI_MANIFEST).await;
    expect_error(r, 400, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn invalid_tags_are_400() {
    let reg = Registry::start().await;
    let m = image_body(&reg, "badtag/app", false, "amd64").await;
    let long = "a".repeat(129);
    for tag in ["-bad", ".bad", long.as_str(), "bad%21", "ba%20d", "%C3%BC"] {
        for method in ["PUT", "DELETE"] {
            let r = reg
                .raw(method, &format!("/v2/badtag/app/manifests/{tag}"), &m)
                .await;
            assert_eq!(r.status, 400, "{method} {tag}: {}", r.body);
            assert!(!r.error_code().is_empty(), "{method} {tag}: {}", r.body);
        }
        // No manifest has an invalid tag: a pull of one is a 404 (the
        // conformance suite's `.INVALID_MANIFEST_NAME`).
        let r = reg
            .raw("GET", &format!("/v2/badtag/app/manifests/{tag}"), b"")
            .await;
        assert_eq!(r.status, 404, "GET {tag}: {}", r.body);
        assert_eq!(r.error_code(), "MANIFEST_UNKNOWN", "GET {tag}: {}", r.body);
    }
    // The longest valid tag, and the other characters a tag may hold.
    let max = "A".repeat(128);
    for tag in [max.as_str(), "_under", "v1.2.3-rc_1"] {
        reg.put_manifest("badtag/app", tag, &m, OCI_MANIFEST).await;
        assert_eq!(
            get(&reg, &format!("/v2/badtag/app/manifests/{tag}"))
                .await
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn garbage_manifests_are_manifest_invalid() {
    let reg = Registry::start().await;
    let config = random_bytes(10);
    let cd = reg.push_blob("junk/app", &config).await;
    let cfg = desc(OCI_CONFIG, &cd, config.len());
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), OCI_MANIFEST),
        (b"".to_vec(), OCI_MANIFEST),
        (b"[]".to_vec(), OCI_MANIFEST),
        (b"{}".to_vec(), OCI_MANIFEST),
        (b"null".to_vec(), OCI_MANIFEST),
        (b"\xff\xfe\x00garbage".to_vec(), OCI_MANIFEST),
        (b"{\"schemaVersion\":2,".to_vec(), OCI_MANIFEST),
        (deep.into_bytes(), OCI_MANIFEST),
        (j(json!({"schemaVersion": 2})), OCI_MANIFEST),
        (
            j(json!({"schemaVersion": "2", "config": cfg})),
            OCI_MANIFEST,
        ),
        (j(json!({"schemaVersion": 3, "config": cfg})), OCI_MANIFEST),
        (
            j(json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})),
            OCI_MANIFEST,
        ),
        (
            j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg})),
            OCI_INDEX,
        ),
        (
            j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": {}})),
            OCI_MANIFEST,
        ),
        (
            j(
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": "sha256:00", "size": 1}}),
            ),
            OCI_MANIFEST,
        ),
        (
            j(
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": -1}}),
            ),
            OCI_MANIFEST,
        ),
        (
            j(
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": cd, "size": 10}}),
            ),
            OCI_MANIFEST,
        ),
        (
            j(
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [{"mediaType": OCI_LAYER, "size": 1}]}),
            ),
            OCI_MANIFEST,
        ),
        (
            j(
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "manifests": []}),
            ),
            OCI_MANIFEST,
        ),
        (
            j(json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "config": cfg, "manifests": []})),
            OCI_INDEX,
        ),
        (
            j(json!({"schemaVersion": 2, "mediaType": OCI_INDEX})),
            OCI_INDEX,
        ),
        (
            j(json!({"schemaVersion": 2, "config": cfg})),
            "application/vnd.example.not-a-manifest+json",
        ),
        (
            j(json!({"schemaVersion": 2, "mediaType": "text/plain", "config": cfg})),
            "text/plain",
        ),
        (
            j(
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "subject": {"mediaType": OCI_MANIFEST, "digest": "sha256:zz", "size": 1}}),
            ),
            OCI_MANIFEST,
        ),
    ];
    // Control characters where the catalogue would store the text.
    cases.push((
        j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x\u{0}y",
            "config": cfg, "layers": []})),
        OCI_MANIFEST,
    ));
    cases.push((
        j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/x\u{0}y", "digest": cd, "size": config.len()}, "layers": []})),
        OCI_MANIFEST,
    ));
    cases.push((
        j(json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "a/\u{7}b", "manifests": []})),
        OCI_INDEX,
    ));
    for (i, (body, ct)) in cases.iter().enumerate() {
        let r = put_manifest(&reg, "junk/app", "v1", body, ct).await;
        let status = r.status().as_u16();
        let (_, code, message) = error_parts(r).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "MANIFEST_INVALID"),
            "case {i}: {message}"
        );
    }
    // Nothing was tagged.
    expect_error(
        get(&reg, "/v2/junk/app/manifests/v1").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    expect_error(
        get(&reg, "/v2/junk/app/tags/list").await,
        404,
        "NAME_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn bad_content_range_is_a_client_error_and_leaves_the_upload_intact() {
    let reg = Registry::start().await;
    let data = random_bytes(10);
    let d = sha256(&data);
    let loc = reg.start_upload("crange/app").await;
    for cr in [
        "abc",
        "5-2",
        "bytes=x-y",
        "-5",
        "0-",
        "1-2-3",
        "18446744073709551616-18446744073709551617",
        "0-18446744073709551615",
        "1-18446744073709551615",
        "0-99",
        "0-0",
        "é",
    ] {
        let r = reg
            .http
            .patch(&loc)
            .header("content-range", cr)
            .body(data.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status == 400 || status == 416, "{cr:?}: {status}");
        let r = reg.http.get(&loc).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(header(&r, "range"), "0-0", "after {cr:?}");
    }
    // The RFC 9110 form is understood.
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "bytes 0-9/10")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-9");
    let r = reg
        .http
        .put(with_query(&loc, &format!("digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn unknown_upload_sessions_are_blob_upload_unknown() {
    let reg = Registry::start().await;
    let d = sha256(b"x");
    reg.push_blob("up/app", b"x").await;
    for id in ["3b241101-e2bb-4255-8caf-4136c566a962", "not-a-uuid", ".."] {
        let base = format!("/v2/up/app/blobs/uploads/{id}");
        for (method, path) in [
            ("GET", base.clone()),
            ("PATCH", base.clone()),
            ("PUT", format!("{base}?digest={d}")),
            ("DELETE", base.clone()),
        ] {
            let r = reg.raw(method, &path, b"x").await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
            assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN", "{method} {path}");
        }
    }
}

#[tokio::test]
async fn an_upload_belongs_to_its_repository() {
    let reg = Registry::start().await;
    let data = random_bytes(100);
    let d = sha256(&data);
    let loc = reg.start_upload("own/repo").await;
    let id = upload_id(&loc);
    let stolen = reg.url(&format!("/v2/other/repo/blobs/uploads/{id}"));
    expect_error(
        reg.http.get(&stolen).send().await.unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    expect_error(
        reg.http
            .patch(&stolen)
            .body(data.clone())
            .send()
            .await
            .unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    expect_error(
        reg.http
            .put(with_query(&stolen, &format!("digest={d}")))
            .body(data.clone())
            .send()
            .await
            .unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    expect_error(
        reg.http.delete(&stolen).send().await.unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_eq!(
        head(&reg, &format!("/v2/other/repo/blobs/{d}"))
            .await
            .status(),
        404
    );
    // The owner's session is untouched.
    let r = reg
        .http
        .put(with_query(&loc, &format!("digest={d}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        get(&reg, &format!("/v2/own/repo/blobs/{d}")).await.status(),
        200
    );
}

#[tokio::test]
async fn manifest_size_limit() {
    let reg = Registry::start().await;
    let config = random_bytes(10);
    let cd = reg.push_blob("big/app", &config).await;
    let with_note = |n: usize| {
        j(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(OCI_CONFIG, &cd, config.len()), "layers": [],
            "annotations": {"note": "x".repeat(n)}}))
    };
    // Well past 1 MiB but under 4 MiB: accepted and served unchanged.
    let ok = with_note(3 << 20);
    reg.put_manifest("big/app", "big", &ok, OCI_MANIFEST).await;
    let r = get(&reg, "/v2/big/app/manifests/big").await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), ok);
    // Over 4 MiB: 413.
    let too_big = with_note((4 << 20) + 1);
    let r = put_manifest(&reg, "big/app", "huge", &too_big, OCI_MANIFEST).await;
    assert_eq!(r.status(), 413);
    expect_error(
        get(&reg, "/v2/big/app/manifests/huge").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

// ---------------------------------------------------------------- concurrency and pull counts

#[tokio::test]
async fn concurrent_pushes_sharing_base_layers() {
    let reg = Registry::start().await;
    let base: Vec<Vec<u8>> = (0..3).map(|_| random_bytes(256 * 1024)).collect();
    let pushes = (0..8).map(|i| {
        let (reg, base) = (&reg, &base);
        async move {
            let repo = format!("conc/r{}", i % 3);
            let own = random_bytes(32 * 1024);
            let layers: Vec<&[u8]> = base
                .iter()
                .map(Vec::as_slice)
                .chain(std::iter::once(own.as_slice()))
                .collect();
            let tag = format!("t{i}");
            let (d, m) = reg.push_image(&repo, &tag, &layers).await;
            (repo, tag, d, m, own)
        }
    });
    let pushed = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(pushes),
    )
    .await
    .expect("eight concurrent pushes finish (no deadlock)");
    for (repo, tag, d, m, own) in &pushed {
        let r = get(&reg, &format!("/v2/{repo}/manifests/{tag}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "docker-content-digest"), *d);
        assert_eq!(r.bytes().await.unwrap().to_vec(), *m);
        for layer in base.iter().chain(std::iter::once(own)) {
            let r = get(&reg, &format!("/v2/{repo}/blobs/{}", sha256(layer))).await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.bytes().await.unwrap().to_vec(), *layer);
        }
        let tags = tags_of(get(&reg, &format!("/v2/{repo}/tags/list")).await).await;
        assert!(tags.contains(tag), "{tags:?}");
    }
    let v: Value = get(&reg, "/v2/_catalog").await.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["conc/r0", "conc/r1", "conc/r2"]));
}

#[tokio::test]
async fn manifest_pulls_are_counted() {
    let reg = Registry::start().await;
    let (d, _) = reg.push_image("pulls/app", "v1", &[b"layer"]).await;
    // HEADs are not pulls; they go first so that any count they made would show with the GETs.
    for _ in 0..3 {
        assert_eq!(head(&reg, "/v2/pulls/app/manifests/v1").await.status(), 200);
    }
    assert_eq!(get(&reg, "/v2/pulls/app/manifests/v1").await.status(), 200);
    assert_eq!(
        get(&reg, &format!("/v2/pulls/app/manifests/{d}"))
            .await
            .status(),
        200
    );
    let db = reg.db.connect().await;
    let started = std::time::Instant::now();
    let count = loop {
        let c: Option<i64> = sqlx::query_scalar(
            "SELECT ps.pull_count FROM pull_stat ps JOIN repository r ON r.id = ps.repo_id
              WHERE r.name = $1 AND ps.digest = decode($2, 'hex')",
        )
        .bind("pulls/app")
        .bind(&d["sha256:".len()..])
        .fetch_optional(&db)
        .await
        .unwrap();
        if let Some(c) = c {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the pulls were not recorded within 8 s (they are flushed every 5 s)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(count, 2);
}

#[tokio::test]
async fn a_layer_digest_is_not_a_manifest_reference() {
    let reg = Registry::start().await;
    let layer = random_bytes(100);
    let (d, _) = reg.push_image("kinds/app", "v1", &[&layer]).await;
    let ld = sha256(&layer);
    expect_error(
        get(&reg, &format!("/v2/kinds/app/manifests/{ld}")).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    expect_error(
        delete(&reg, &format!("/v2/kinds/app/manifests/{ld}")).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    // Still there after the failed delete.
    assert_eq!(
        get(&reg, &format!("/v2/kinds/app/blobs/{ld}"))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&reg, &format!("/v2/kinds/app/manifests/{d}"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn chunked_upload_resumes_across_a_restart() {
    let mut reg = Registry::start().await;
    let data = random_bytes(300_000);
    let d = sha256(&data);
    let loc = reg.start_upload("restart/app").await;
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "0-99999")
        .body(data[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    reg.restart().await;
    let r = reg.http.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-99999");
    let loc = reg.abs(&header(&r, "location"));
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "100000-299999")
        .body(data[100_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-299999");
    let r = reg
        .http
        .put(with_query(&loc, &format!("digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = get(&reg, &format!("/v2/restart/app/blobs/{d}")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
}

#[tokio::test]
async fn concurrent_pushes_to_one_tag_and_of_one_manifest() {
    let reg = Registry::start().await;
    let base: Vec<Vec<u8>> = (0..3).map(|_| random_bytes(128 * 1024)).collect();
    let layers: Vec<&[u8]> = base.iter().map(Vec::as_slice).collect();
    // Different images racing for the same tag: every push succeeds, the tag names one of them.
    let racing = (0..6).map(|_| reg.push_image("race/app", "latest", &layers));
    let pushed = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(racing),
    )
    .await
    .expect("no deadlock");
    let r = get(&reg, "/v2/race/app/manifests/latest").await;
    assert_eq!(r.status(), 200);
    let winner = header(&r, "docker-content-digest");
    let body = r.bytes().await.unwrap().to_vec();
    assert!(
        pushed.iter().any(|(d, m)| *d == winner && *m == body),
        "latest is none of the pushed manifests"
    );
    for (d, m) in &pushed {
        let r = get(&reg, &format!("/v2/race/app/manifests/{d}")).await;
        assert_eq!(r.bytes().await.unwrap().to_vec(), *m);
    }
    // One manifest pushed under many tags at once.
    let (_, m) = &pushed[0];
    let tags: Vec<String> = (0..6).map(|i| format!("same{i}")).collect();
    let same = tags
        .iter()
        .map(|t| put_manifest(&reg, "race/app", t, m, OCI_MANIFEST));
    for r in tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(same),
    )
    .await
    .expect("no deadlock")
    {
        assert_eq!(r.status(), 201);
    }
    let listed = tags_of(get(&reg, "/v2/race/app/tags/list").await).await;
    for t in &tags {
        assert!(listed.contains(t), "{t} not in {listed:?}");
    }
}

#[tokio::test]
async fn odd_pagination_parameters_are_not_server_errors() {
    let reg = Registry::start().await;
    reg.push_image("page/app", "v1", &[b"l"]).await;
    for path in [
        "/v2/_catalog?last=%00",
        "/v2/_catalog?last=a%00b&n=1",
        "/v2/_catalog?last=%FF%FE",
        "/v2/_catalog?n=0",
        "/v2/page/app/tags/list?last=%00",
        "/v2/page/app/tags/list?last=%FF",
        "/v2/page/app/referrers/sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a?artifactType=%00",
    ] {
        let r = get(&reg, path).await;
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }
    for path in [
        "/v2/_catalog?n=-1",
        "/v2/_catalog?n=99999999999999999999999",
        "/v2/page/app/tags/list?n=1.5",
    ] {
        let r = get(&reg, path).await;
        assert_eq!(r.status(), 400, "{path}");
    }
    let v: Value = get(&reg, "/v2/_catalog?last=page%00")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], json!(["page/app"]));
}
