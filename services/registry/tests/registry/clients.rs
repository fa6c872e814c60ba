//! Real clients against the real binary: skopeo pushing and pulling images
//! and multi-arch indexes (open and behind token auth), Debian's
//! docker-registry reading Wharf's volume and the reverse, bearer-token edge
//! cases, crashes, disconnects and a full disk during uploads, upload purging and
//! `--check-config`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Runs skopeo and fails the test with its output if it fails.
async fn skopeo_ok(args: &[&str]) {
    let (ok, out) = skopeo(args).await;
    assert!(ok, "skopeo {args:?} failed:\n{out}");
}

/// `oci:<dir>:<tag>`
fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Copies `src` into `dest` (a `docker://` reference); `extra` are more skopeo flags.
async fn push(src: &str, dest: &str, extra: &[&str]) {
    let mut args = vec!["copy", "--dest-tls-verify=false", "--preserve-digests"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[src, dest]);
    skopeo_ok(&args).await;
}

/// Copies `src` (a `docker://` reference) out to `dest`.
async fn pull(src: &str, dest: &str, extra: &[&str]) {
    let mut args = vec!["copy", "--src-tls-verify=false", "--preserve-digests"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[src, dest]);
    skopeo_ok(&args).await;
}

/// What a user compares after a round trip: the same blobs by digest, each
/// intact, and the tag naming the same manifest or index.
fn assert_same_image(src: &Path, dst: &Path, tag: &str, top: &str) {
    let (a, b) = (layout_blobs(src), layout_blobs(dst));
    assert!(!a.is_empty());
    assert_eq!(a, b, "the copied layout holds different digests");
    assert_eq!(layout_corrupt_blobs(dst), Vec::<String>::new());
    assert_eq!(layout_tag(dst, tag).as_deref(), Some(top));
}

/// `Docker-Content-Digest` and `Content-Type` of a manifest GET.
async fn manifest_head(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
) -> (u16, String, String) {
    let mut req = http
        .get(url)
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let h = |k: &str| {
        r.headers()
            .get(k)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (
        r.status().as_u16(),
        h("docker-content-digest"),
        h("content-type"),
    )
}

async fn tags(http: &reqwest::Client, url: String, token: Option<&str>) -> (u16, Vec<String>) {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    if status != 200 {
        return (status, vec![]);
    }
    let v: serde_json::Value = r.json().await.unwrap();
    let tags = v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    (status, tags)
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// 1. skopeo in and out of an open registry

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_images_and_indexes_in_and_out_with_digests_unchanged() {
    let reg = Registry::start().await;

    let src = tempfile::tempdir().unwrap();
    let manifest = oci_layout(src.path(), "v1", 3, 300_000);
    push(&oci(src.path(), "v1"), &reg.docker_ref("lib/app:v1"), &[]).await;
    let (status, digest, ctype) =
        manifest_head(&reg.http, reg.url("/v2/lib/app/manifests/v1"), None).await;
    assert_eq!(status, 200);
    assert_eq!(digest, manifest);
    assert_eq!(ctype, OCI_MANIFEST);
    assert_eq!(
        tags(&reg.http, reg.url("/v2/lib/app/tags/list"), None).await,
        (200, vec!["v1".to_owned()])
    );
    let dst = tempfile::tempdir().unwrap();
    pull(&reg.docker_ref("lib/app:v1"), &oci(dst.path(), "v1"), &[]).await;
    assert_same_image(src.path(), dst.path(), "v1", &manifest);

    // A multi-arch index with two platforms, copied with --all.
    let src = tempfile::tempdir().unwrap();
    let (index, children) = write_index(src.path(), "v1", &["amd64", "arm64"], 2, 100_000);
    push(
        &oci(src.path(), "v1"),
        &reg.docker_ref("lib/multi:v1"),
        &["--all"],
    )
    .await;
    let (status, digest, ctype) =
        manifest_head(&reg.http, reg.url("/v2/lib/multi/manifests/v1"), None).await;
    assert_eq!(
        (status, digest.as_str(), ctype.as_str()),
        (200, index.as_str(), OCI_INDEX)
    );
    for child in &children {
        let (status, digest, ctype) = manifest_head(
            &reg.http,
            reg.url(&format!("/v2/lib/multi/manifests/{child}")),
            None,
        )
        .await;
        assert_eq!(
            (status, digest.as_str(), ctype.as_str()),
            (200, child.as_str(), OCI_MANIFEST)
        );
    }
    let dst = tempfile::tempdir().unwrap();
    pull(
        &reg.docker_ref("lib/multi:v1"),
        &oci(dst.path(), "v1"),
        &["--all"],
    )
    .await;
    assert_same_image(src.path(), dst.path(), "v1", &index);
}

// ---------------------------------------------------------------------------
// 2. skopeo behind token auth, with a Docker token service on the real signer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_through_token_auth() {
    let ts = TokenService::start().await;
    let auth = ts.auth.clone();
    let reg = Registry::start_with(Some(auth.clone()), vec![]).await;
    let alice = format!("{}:{}", WRITER.0, WRITER.1);
    let bob = format!("{}:{}", READER.0, READER.1);

    // The registry sends clients to the token service.
    let r = reg
        .http
        .get(reg.url("/v2/lib/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").contains(&format!("realm=\"{}\"", auth.realm)));

    let src = tempfile::tempdir().unwrap();
    let manifest = oci_layout(src.path(), "v1", 2, 200_000);
    push(
        &oci(src.path(), "v1"),
        &reg.docker_ref("lib/app:v1"),
        &["--dest-creds", &alice],
    )
    .await;
    let dst = tempfile::tempdir().unwrap();
    pull(
        &reg.docker_ref("lib/app:v1"),
        &oci(dst.path(), "v1"),
        &["--src-creds", &alice],
    )
    .await;
    assert_same_image(src.path(), dst.path(), "v1", &manifest);

    // A reader pulls too.
    let dst = tempfile::tempdir().unwrap();
    pull(
        &reg.docker_ref("lib/app:v1"),
        &oci(dst.path(), "v1"),
        &["--src-creds", &bob],
    )
    .await;
    assert_same_image(src.path(), dst.path(), "v1", &manifest);

    // Multi-arch through auth.
    let msrc = tempfile::tempdir().unwrap();
    let (index, _) = write_index(msrc.path(), "v1", &["amd64", "arm64"], 2, 50_000);
    push(
        &oci(msrc.path(), "v1"),
        &reg.docker_ref("lib/multi:v1"),
        &["--all", "--dest-creds", &alice],
    )
    .await;
    let mdst = tempfile::tempdir().unwrap();
    pull(
        &reg.docker_ref("lib/multi:v1"),
        &oci(mdst.path(), "v1"),
        &["--all", "--src-creds", &alice],
    )
    .await;
    assert_same_image(msrc.path(), mdst.path(), "v1", &index);

    // Wrong password: the token service says 401 and skopeo fails both ways.
    let wrong = format!("{}:wrong", WRITER.0);
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &wrong,
        &oci(src.path(), "v1"),
        &reg.docker_ref("lib/app:wrong"),
    ])
    .await;
    assert!(!ok, "a push with a wrong password succeeded:\n{out}");
    assert!(
        out.to_lowercase().contains("unauthorized") || out.contains("401"),
        "{out}"
    );
    let nowhere = tempfile::tempdir().unwrap();
    let (ok, out) = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &wrong,
        &reg.docker_ref("lib/app:v1"),
        &oci(nowhere.path(), "v1"),
    ])
    .await;
    assert!(!ok, "a pull with a wrong password succeeded:\n{out}");

    // Anonymous pull of a private repository fails; of a public one it works.
    let (ok, out) = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-no-creds",
        &reg.docker_ref("lib/app:v1"),
        &oci(nowhere.path(), "v1"),
    ])
    .await;
    assert!(
        !ok,
        "an anonymous pull of a private repository succeeded:\n{out}"
    );
    assert!(
        out.to_lowercase().contains("unauthorized") || out.contains("401"),
        "{out}"
    );
    assert_eq!(layout_tag(nowhere.path(), "v1"), None);
    push(
        &oci(src.path(), "v1"),
        &reg.docker_ref("public/app:v1"),
        &["--dest-creds", &alice],
    )
    .await;
    let pdst = tempfile::tempdir().unwrap();
    pull(
        &reg.docker_ref("public/app:v1"),
        &oci(pdst.path(), "v1"),
        &["--src-no-creds"],
    )
    .await;
    assert_same_image(src.path(), pdst.path(), "v1", &manifest);

    // Pull rights do not let anyone push: not a reader, not an anonymous caller on a public repository.
    let other = tempfile::tempdir().unwrap();
    oci_layout(other.path(), "v2", 1, 10_000);
    for (repo, creds) in [
        ("lib/app:v2", vec!["--dest-creds", bob.as_str()]),
        ("public/app:v2", vec!["--dest-no-creds"]),
    ] {
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        args.extend(creds);
        let (src_ref, dest_ref) = (oci(other.path(), "v2"), reg.docker_ref(repo));
        args.extend([src_ref.as_str(), dest_ref.as_str()]);
        let (ok, out) = skopeo(&args).await;
        assert!(
            !ok,
            "a push to {repo} without push rights succeeded:\n{out}"
        );
    }
    let pull_token = auth.token(&["repository:lib/app:pull", "repository:public/app:pull"]);
    for repo in ["lib/app", "public/app"] {
        assert_eq!(
            tags(
                &reg.http,
                reg.url(&format!("/v2/{repo}/tags/list")),
                Some(&pull_token)
            )
            .await,
            (200, vec!["v1".to_owned()]),
            "{repo} changed although the push was refused"
        );
    }

    // Over plain HTTP, a reader's token cannot start an upload or delete.
    let reader = auth.token(&["repository:lib/app:pull"]);
    let r = reg
        .http
        .post(reg.url("/v2/lib/app/blobs/uploads/"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = header(&r, "www-authenticate");
    assert!(
        challenge.contains("scope=\"repository:lib/app:pull,push\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    let r = reg
        .http
        .delete(reg.url(&format!("/v2/lib/app/manifests/{manifest}")))
        .bearer_auth(auth.token(&["repository:lib/app:pull,push"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, ..) = manifest_head(
        &reg.http,
        reg.url("/v2/lib/app/manifests/v1"),
        Some(&reader),
    )
    .await;
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------
// 3. Bearer-token edge cases over plain HTTP

fn claims(auth: &Auth, scopes: &[&str]) -> wharf_token::Claims {
    let now = chrono::Utc::now().timestamp();
    wharf_token::Claims {
        iss: auth.issuer.clone(),
        sub: "tester".into(),
        aud: auth.service.clone(),
        exp: now + 300,
        nbf: now - 1,
        iat: now,
        jti: format!("{:x}", rand::random::<u64>()),
        access: scopes
            .iter()
            .map(|s| wharf_token::Access::parse_scope(s).unwrap())
            .collect(),
    }
}

fn sign(claims: &wharf_token::Claims, key_pem: &Path) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(key_pem).unwrap()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        claims,
        &key,
    )
    .unwrap()
}

#[tokio::test]
async fn bearer_token_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    keypair(dir.path());
    let auth = Auth {
        dir: dir.path().to_owned(),
        realm: "https://wharf.example.test/service/token".into(),
        service: "wharf-registry".into(),
        issuer: "wharf-core".into(),
    };
    let mut reg = Registry::start_with(Some(auth.clone()), vec![]).await;
    reg.http = bearer_client(&auth.token(&["repository:lib/a:pull,push"]));
    let (a_digest, _) = reg.push_image("lib/a", "v1", &[&random_bytes(1000)]).await;
    reg.http = bearer_client(&auth.token(&["repository:lib/b:pull,push"]));
    let b_layer = random_bytes(1000);
    reg.push_image("lib/b", "v1", &[&b_layer]).await;
    reg.http = plain_client();
    let get = |path: &str, token: Option<String>| {
        let mut req = reg.http.get(reg.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    // No token: a challenge naming the realm, the service and the scope needed.
    let r = get("/v2/lib/a/manifests/v1", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "www-authenticate"),
        format!(
            "Bearer realm=\"{}\",service=\"{}\",scope=\"repository:lib/a:pull\"",
            auth.realm, auth.service
        )
    );
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let r = reg
        .http
        .post(reg.url("/v2/lib/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").ends_with(",scope=\"repository:lib/a:pull,push\""));
    let r = get("/v2/", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "www-authenticate"),
        format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            auth.realm, auth.service
        )
    );
    // Any valid token opens the base endpoint.
    assert_eq!(
        get("/v2/", Some(auth.token(&[]))).await.unwrap().status(),
        200
    );

    // A well-formed token built here is accepted, so each case below fails for its one flaw.
    let good = claims(&auth, &["repository:lib/a:pull"]);
    let r = get("/v2/lib/a/manifests/v1", Some(sign(&good, &auth.key())))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), a_digest);

    let other = tempfile::tempdir().unwrap();
    keypair(other.path());
    let now = chrono::Utc::now().timestamp();
    let b64 = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(&std::fs::read(auth.cert()).unwrap()),
    )
    .unwrap();
    let bad: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(
                &wharf_token::Claims {
                    exp: now - 60,
                    nbf: now - 400,
                    iat: now - 400,
                    ..good.clone()
                },
                &auth.key(),
            ),
        ),
        (
            "not yet valid",
            sign(
                &wharf_token::Claims {
                    nbf: now + 600,
                    exp: now + 900,
                    ..good.clone()
                },
                &auth.key(),
            ),
        ),
        (
            "for another audience",
            sign(
                &wharf_token::Claims {
                    aud: "another-registry".into(),
                    ..good.clone()
                },
                &auth.key(),
            ),
        ),
        (
            "from another issuer",
            sign(
                &wharf_token::Claims {
                    iss: "someone-else".into(),
                    ..good.clone()
                },
                &auth.key(),
            ),
        ),
        (
            "signed by another key",
            sign(&good, &other.path().join("key.pem")),
        ),
        ("HS256 keyed with the public certificate", hs256),
        (
            "unsigned (alg none)",
            format!(
                "{}.{}.",
                b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
                b64(&serde_json::to_value(&good).unwrap())
            ),
        ),
        ("not a JWT", "not-a-token".into()),
    ];
    for (what, token) in bad {
        let r = get("/v2/lib/a/manifests/v1", Some(token)).await.unwrap();
        assert_eq!(r.status(), 401, "a token {what} was accepted");
        let challenge = header(&r, "www-authenticate");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "token {what}: {challenge}"
        );
        assert_eq!(error_code(r).await, "UNAUTHORIZED", "token {what}");
    }

    // A token that worked stops working once it expires (beyond the 5 s clock-skew leeway).
    let short = sign(
        &wharf_token::Claims {
            exp: chrono::Utc::now().timestamp() + 1,
            ..good.clone()
        },
        &auth.key(),
    );
    let r = get("/v2/lib/a/manifests/v1", Some(short.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let r = get("/v2/lib/a/manifests/v1", Some(short)).await.unwrap();
    assert_eq!(r.status(), 401, "an expired token still works");

    // A token for lib/a opens nothing in lib/b, nor in names that merely start with lib/a.
    let token_a = auth.token(&["repository:lib/a:pull"]);
    let r = get("/v2/lib/b/manifests/v1", Some(token_a.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = header(&r, "www-authenticate");
    assert!(
        challenge.contains("scope=\"repository:lib/b:pull\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    let b_blob = format!("/v2/lib/b/blobs/{}", sha256(&b_layer));
    assert_eq!(
        get(&b_blob, Some(token_a.clone())).await.unwrap().status(),
        401
    );
    assert_eq!(
        get(&b_blob, Some(auth.token(&["repository:lib/b:pull"])))
            .await
            .unwrap()
            .status(),
        200
    );
    for path in ["/v2/lib/a/sub/tags/list", "/v2/lib/ab/tags/list"] {
        assert_eq!(
            get(path, Some(token_a.clone())).await.unwrap().status(),
            401,
            "{path}"
        );
    }

    // The catalogue needs registry:catalog:*.
    let r = get("/v2/_catalog", Some(token_a.clone())).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").contains("scope=\"registry:catalog:*\""));
    let r = get("/v2/_catalog", Some(auth.token(&["registry:catalog:*"])))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["lib/a", "lib/b"]));
}

// ---------------------------------------------------------------------------
// 4. The on-disk layout, both ways with Debian's docker-registry

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_registry_serves_a_wharf_volume() {
    let reg = Registry::start().await;
    let src = tempfile::tempdir().unwrap();
    let manifest = oci_layout(src.path(), "v1", 3, 200_000);
    push(&oci(src.path(), "v1"), &reg.docker_ref("lib/app:v1"), &[]).await;
    let msrc = tempfile::tempdir().unwrap();
    let (index, _) = write_index(msrc.path(), "v1", &["amd64", "arm64"], 2, 50_000);
    push(
        &oci(msrc.path(), "v1"),
        &reg.docker_ref("lib/multi:v1"),
        &["--all"],
    )
    .await;

    // Wharf keeps running; docker-registry reads the same directory.
    let dr = DockerRegistry::start(reg.data.path()).await;
    let http = plain_client();
    assert_eq!(
        tags(&http, dr.url("/v2/lib/app/tags/list"), None).await,
        (200, vec!["v1".to_owned()]),
        "{}",
        dr.log()
    );
    let dst = tempfile::tempdir().unwrap();
    pull(&dr.docker_ref("lib/app:v1"), &oci(dst.path(), "v1"), &[]).await;
    assert_same_image(src.path(), dst.path(), "v1", &manifest);
    let mdst = tempfile::tempdir().unwrap();
    pull(
        &dr.docker_ref("lib/multi:v1"),
        &oci(mdst.path(), "v1"),
        &["--all"],
    )
    .await;
    assert_same_image(msrc.path(), mdst.path(), "v1", &index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wharf_adopts_a_docker_registry_volume() {
    let volume = tempfile::tempdir().unwrap();
    let mut dr = DockerRegistry::start(volume.path()).await;
    let src = tempfile::tempdir().unwrap();
    let manifest = oci_layout(src.path(), "v1", 3, 200_000);
    push(&oci(src.path(), "v1"), &dr.docker_ref("lib/app:v1"), &[]).await;
    push(&oci(src.path(), "v1"), &dr.docker_ref("lib/app:v2"), &[]).await;
    let msrc = tempfile::tempdir().unwrap();
    let (index, children) = write_index(msrc.path(), "v1", &["amd64", "arm64"], 2, 50_000);
    push(
        &oci(msrc.path(), "v1"),
        &dr.docker_ref("lib/multi:v1"),
        &["--all"],
    )
    .await;
    dr.stop().await;

    let db = TestDb::new().await;
    let out = tokio::process::Command::new(BIN)
        .arg("import")
        .env("WHARF_REGISTRY_DATA_DIR", volume.path())
        .env("WHARF_REGISTRY_DATABASE__URL", &db.url)
        .env("WHARF_REGISTRY_LOG__LEVEL", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["skipped"], serde_json::json!([]), "{report}");
    assert_eq!(report["repositories"], 2, "{report}");
    assert_eq!(report["manifests"], 2 + children.len(), "{report}");
    assert_eq!(report["tags"], 3, "{report}");

    let reg = Registry::start_on(volume, db, None, vec![]).await;
    let dst = tempfile::tempdir().unwrap();
    pull(&reg.docker_ref("lib/app:v1"), &oci(dst.path(), "v1"), &[]).await;
    assert_same_image(src.path(), dst.path(), "v1", &manifest);
    let mdst = tempfile::tempdir().unwrap();
    pull(
        &reg.docker_ref("lib/multi:v1"),
        &oci(mdst.path(), "v1"),
        &["--all"],
    )
    .await;
    assert_same_image(msrc.path(), mdst.path(), "v1", &index);

    let r = reg.http.get(reg.url("/v2/_catalog")).send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!(["lib/app", "lib/multi"])
    );
    assert_eq!(
        tags(&reg.http, reg.url("/v2/lib/app/tags/list"), None).await,
        (200, vec!["v1".to_owned(), "v2".to_owned()])
    );

    let (ok, out) = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &reg.docker_ref("lib/app"),
    ])
    .await;
    assert!(ok, "{out}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["Tags"], serde_json::json!(["v1", "v2"]));

    // Deleting the adopted manifest (skopeo resolves the tag and deletes by digest) removes it and both its tags.
    skopeo_ok(&[
        "delete",
        "--tls-verify=false",
        &reg.docker_ref("lib/app:v1"),
    ])
    .await;
    let (status, ..) = manifest_head(
        &reg.http,
        reg.url(&format!("/v2/lib/app/manifests/{manifest}")),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, ..) = manifest_head(&reg.http, reg.url("/v2/lib/app/manifests/v1"), None).await;
    assert_eq!(status, 404);
    let (status, ..) = manifest_head(&reg.http, reg.url("/v2/lib/app/manifests/v2"), None).await;
    assert_eq!(status, 404);
    assert_eq!(
        tags(&reg.http, reg.url("/v2/lib/app/tags/list"), None).await,
        (200, vec![])
    );
    let gone = tempfile::tempdir().unwrap();
    let (ok, out) = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &reg.docker_ref("lib/app:v1"),
        &oci(gone.path(), "v1"),
    ])
    .await;
    assert!(!ok, "a deleted tag still pulls:\n{out}");

    // And the image can be pushed again.
    push(&oci(src.path(), "v1"), &reg.docker_ref("lib/app:v3"), &[]).await;
    let again = tempfile::tempdir().unwrap();
    pull(&reg.docker_ref("lib/app:v3"), &oci(again.path(), "v3"), &[]).await;
    let (a, b) = (layout_blobs(src.path()), layout_blobs(again.path()));
    assert_eq!(a, b);
    assert_eq!(
        layout_tag(again.path(), "v3").as_deref(),
        Some(manifest.as_str())
    );
}

// ---------------------------------------------------------------------------
// 5. Crashes, disconnects and a full disk during uploads

/// Starts an upload session; returns its `Location`.
async fn start_upload(reg: &Registry, repo: &str) -> String {
    let r = reg
        .http
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    header(&r, "location")
}

async fn patch_chunk(reg: &Registry, location: &str, start: usize, chunk: &[u8]) -> String {
    let r = reg
        .http
        .patch(reg.url(location))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{start}-{}", start + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "PATCH: {}", r.text().await.unwrap());
    let range = header(&r, "range");
    assert_eq!(range, format!("0-{}", start + chunk.len() - 1));
    header(&r, "location")
}

/// The `Range` an upload's status reports, or its HTTP status if not 204.
async fn upload_range(reg: &Registry, location: &str) -> Result<String, u16> {
    let r = reg.http.get(reg.url(location)).send().await.unwrap();
    if r.status() != 204 {
        return Err(r.status().as_u16());
    }
    Ok(header(&r, "range"))
}

async fn finish_upload(reg: &Registry, location: &str, digest: &str) {
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = reg
        .http
        .put(reg.url(&format!("{location}{sep}digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "PUT: {}", r.text().await.unwrap());
    assert_eq!(header(&r, "docker-content-digest"), digest);
}

async fn blob_status(reg: &Registry, repo: &str, digest: &str) -> u16 {
    reg.http
        .head(reg.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn fetch_blob(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let r = reg
        .http
        .get(reg.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET blob {digest}");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn chunked_upload_resumes_after_kill_9() {
    let mut reg = Registry::start().await;
    let data = random_bytes(3 << 20);
    let digest = sha256(&data);
    let half = data.len() / 2;
    let location = start_upload(&reg, "lib/app").await;
    let location = patch_chunk(&reg, &location, 0, &data[..half]).await;

    reg.restart().await;

    assert_eq!(
        upload_range(&reg, &location).await,
        Ok(format!("0-{}", half - 1)),
        "the upload's progress did not survive the crash"
    );
    let location = patch_chunk(&reg, &location, half, &data[half..]).await;
    finish_upload(&reg, &location, &digest).await;
    assert!(fetch_blob(&reg, "lib/app", &digest).await == data);
    assert_eq!(
        scan_volume_blobs(reg.data.path()).1,
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_patch_leaves_no_blob_and_the_session_continues() {
    let reg = Registry::start().await;
    let data = random_bytes(1 << 20);
    let digest = sha256(&data);
    let half = data.len() / 2;
    let location = start_upload(&reg, "lib/app").await;
    let location = patch_chunk(&reg, &location, 0, &data[..half]).await;
    let expected = Ok(format!("0-{}", half - 1));

    // A client sends more than the rest of the blob, then goes away.
    let junk = random_bytes(data.len());
    let res = reg
        .http
        .patch(reg.url(&location))
        .header("content-type", "application/octet-stream")
        .body(failing_body(junk.clone(), 64 << 10))
        .send()
        .await;
    assert!(res.is_err(), "the failed body was accepted: {res:?}");
    // Another, on HTTP/2, drops its request part way: the stream is reset, not the connection.
    let stalled = futures_util::StreamExt::chain(
        futures_util::stream::iter(
            junk.chunks(64 << 10)
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        ),
        futures_util::stream::pending(),
    );
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let request = tokio::spawn(
        h2.patch(reg.url(&location))
            .body(reqwest::Body::wrap_stream(stalled))
            .send(),
    );
    // Wait until the registry has written more than the blob's rest to the session, then go away.
    let id = location.rsplit('/').next().unwrap();
    let session_data = reg.data.path().join(format!(
        "docker/registry/v2/repositories/lib/app/_uploads/{id}/data"
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    let written = || std::fs::metadata(&session_data).map_or(0, |m| m.len() as usize);
    while written() < data.len() + (64 << 10) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        written() > data.len(),
        "the registry never received the junk"
    );
    assert!(!request.is_finished(), "the stalled request finished");
    request.abort();

    // Neither left anything: the upload still holds only the first half, and no blob appeared.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut range = upload_range(&reg, &location).await;
    while range != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        range = upload_range(&reg, &location).await;
    }
    assert_eq!(range, expected);
    assert_eq!(blob_status(&reg, "lib/app", &sha256(&junk)).await, 404);
    assert_eq!(blob_status(&reg, "lib/app", &digest).await, 404);

    // The session goes on to the right blob.
    let location = patch_chunk(&reg, &location, half, &data[half..]).await;
    finish_upload(&reg, &location, &digest).await;
    assert!(
        fetch_blob(&reg, "lib/app", &digest).await == data,
        "the blob holds bytes from the failed requests"
    );

    // A monolithic push whose client goes away leaves no blob either.
    let lost = random_bytes(512 << 10);
    let lost_digest = sha256(&lost);
    let res = reg
        .http
        .post(reg.url(&format!("/v2/lib/app/blobs/uploads/?digest={lost_digest}")))
        .body(failing_body(lost[..300 << 10].to_vec(), 64 << 10))
        .send()
        .await;
    assert!(res.is_err());
    assert_eq!(blob_status(&reg, "lib/app", &lost_digest).await, 404);
    let (count, bad) = scan_volume_blobs(reg.data.path());
    assert_eq!(bad, Vec::<std::path::PathBuf>::new());
    assert_eq!(count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_uploads_leaves_no_partial_blob() {
    let mut reg = Registry::start().await;
    let mut acked: Vec<(String, Vec<u8>)> = vec![];
    for round in 0..3 {
        // Several clients push blobs in a loop, slowly, while the registry is killed.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
        let mut clients = vec![];
        for _ in 0..4 {
            let (http, url, tx) = (
                reg.http.clone(),
                reg.url("/v2/lib/app/blobs/uploads/"),
                tx.clone(),
            );
            clients.push(tokio::spawn(async move {
                loop {
                    let data = random_bytes(256 * 1024 + rand::random::<usize>() % (1 << 20));
                    let d = sha256(&data);
                    let r = http
                        .post(format!("{url}?digest={d}"))
                        .body(slow_body(data.clone(), 64 << 10, Duration::from_millis(10)))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            let _ = tx.send((d, data));
                        }
                        _ => return,
                    }
                }
            }));
        }
        drop(tx);
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        reg.kill().await;
        for c in clients {
            let _ = c.await;
        }
        while let Ok(a) = rx.try_recv() {
            acked.push(a);
        }

        let (count, bad) = scan_volume_blobs(reg.data.path());
        assert_eq!(
            bad,
            Vec::<std::path::PathBuf>::new(),
            "partial blobs after kill -9"
        );
        assert!(count >= acked.len());

        reg.restart().await;
        // Every acknowledged blob survived the crash, intact.
        for (d, data) in &acked {
            assert!(fetch_blob(&reg, "lib/app", d).await == *data, "blob {d}");
        }
    }
    assert!(!acked.is_empty(), "no upload finished before the kills");
}

/// A tmpfs of `mib` MiB mounted at `dir` (tests run as root, as CI does),
/// unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(
            st.success(),
            "mounting a tmpfs at {} needs root",
            dir.display()
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

#[tokio::test]
async fn a_full_disk_mid_upload_leaves_no_blob_and_frees_its_space() {
    let data = tempfile::tempdir().unwrap();
    let vol = data.path().join("vol");
    let _tmpfs = Tmpfs::mount(&vol, 24);
    let reg = Registry::start_on(
        data,
        TestDb::new().await,
        None,
        vec![("WHARF_REGISTRY_DATA_DIR".into(), vol.display().to_string())],
    )
    .await;
    let kept = random_bytes(1 << 20);
    let kept_digest = reg.push_blob("lib/app", &kept).await;

    // 40 MiB into a 24 MiB volume, in one request, then in a chunk. The
    // registry answers 507 as soon as a write fails; a client still sending
    // may see the connection close instead.
    let big = random_bytes(40 << 20);
    let big_digest = sha256(&big);
    let r = reg
        .http
        .post(reg.url(&format!("/v2/lib/app/blobs/uploads/?digest={big_digest}")))
        .body(big.clone())
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 507, "monolithic upload to a full disk");
        let body = r.text().await.unwrap();
        assert!(body.contains("full"), "{body}");
    }
    let location = start_upload(&reg, "lib/app").await;
    let r = reg
        .http
        .patch(reg.url(&location))
        .header("content-type", "application/octet-stream")
        .body(big.clone())
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 507, "chunk to a full disk");
    }

    // Nothing half-written is visible, and what was there is intact.
    assert_eq!(blob_status(&reg, "lib/app", &big_digest).await, 404);
    let (count, bad) = scan_volume_blobs(&vol);
    assert_eq!(bad, Vec::<std::path::PathBuf>::new(), "partial blobs");
    assert_eq!(count, 1);
    assert_eq!(fetch_blob(&reg, "lib/app", &kept_digest).await, kept);

    // The failed uploads gave their space back: 16 MiB more fits.
    let more = random_bytes(16 << 20);
    let more_digest = reg.push_blob("lib/app", &more).await;
    assert_eq!(fetch_blob(&reg, "lib/app", &more_digest).await, more);
}

// ---------------------------------------------------------------------------
// 6. Abandoned uploads are purged

#[tokio::test]
async fn abandoned_uploads_are_purged() {
    let reg = Registry::start_with(
        None,
        vec![
            ("WHARF_REGISTRY_UPLOADS__MAX_AGE_SECS".into(), "1".into()),
            ("WHARF_REGISTRY_UPLOADS__INTERVAL_SECS".into(), "1".into()),
        ],
    )
    .await;
    let kept = reg.push_blob("lib/app", &random_bytes(10_000)).await;
    let location = start_upload(&reg, "lib/app").await;
    let location = patch_chunk(&reg, &location, 0, &random_bytes(1000)).await;
    let id = location.rsplit('/').next().unwrap().to_owned();
    let dir = reg
        .data
        .path()
        .join("docker/registry/v2/repositories/lib/app/_uploads")
        .join(&id);
    assert!(dir.join("data").is_file());

    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!dir.exists(), "the abandoned upload was not purged");
    let r = reg.http.get(reg.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = reg
        .http
        .patch(reg.url(&location))
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(blob_status(&reg, "lib/app", &kept).await, 200);
}

// ---------------------------------------------------------------------------
// 7. --check-config

/// Runs `wharf-registry --check-config` with only the given WHARF_REGISTRY_* variables.
async fn check_config(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--check-config").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("WHARF_REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("--check-config exits")
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn check_config_accepts_a_valid_file_and_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    keypair(dir.path());
    let valid = format!(
        r#"listen = "127.0.0.1:5999"
data_dir = "{data}"
gc_grace_secs = 3600

[database]
url = "postgres://postgres@127.0.0.1:5432/wharf"
max_connections = 4

[auth]
realm = "https://wharf.example.test/service/token"
service = "wharf-registry"
issuer = "wharf-core"
certificate = "{cert}"

[uploads]
purge_enabled = true
max_age_secs = 86400
interval_secs = 3600

[log]
level = "info"
json = true
"#,
        data = dir.path().join("data").display(),
        cert = dir.path().join("cert.pem").display(),
    );
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let good = write("registry.toml", &valid);
    let (ok, out) = check_config(&["--config", &good], &[]).await;
    assert!(ok, "{out}");
    assert!(out.contains("configuration is valid"), "{out}");
    // The same file named by WHARF_REGISTRY_CONFIG, as the --help says.
    let (ok, out) = check_config(&[], &[("WHARF_REGISTRY_CONFIG", &good)]).await;
    assert!(ok, "WHARF_REGISTRY_CONFIG: {out}");

    let cases = [
        (
            "an unknown key",
            valid.replace("max_age_secs = 86400", "max_age = 86400"),
            "max_age",
        ),
        (
            "an unknown top-level key",
            format!("listen_address = \"0.0.0.0:5000\"\n{valid}"),
            "listen_address",
        ),
        (
            "a missing certificate",
            valid.replace("cert.pem", "missing.pem"),
            "auth.certificate",
        ),
        (
            "a value of the wrong type",
            valid.replace("max_connections = 4", "max_connections = \"many\""),
            "max_connections",
        ),
        (
            "zero connections",
            valid.replace("max_connections = 4", "max_connections = 0"),
            "database.max_connections",
        ),
    ];
    for (what, text, key) in cases {
        let path = write("bad.toml", &text);
        let (ok, out) = check_config(&["--config", &path], &[]).await;
        assert!(!ok, "a config with {what} was accepted");
        assert!(
            out.contains(key),
            "the error for {what} does not name {key}:\n{out}"
        );
    }
    let (ok, out) = check_config(
        &["--config", &good],
        &[("WHARF_REGISTRY_LISTEN", "not-an-address")],
    )
    .await;
    assert!(!ok, "an invalid WHARF_REGISTRY_LISTEN was accepted");
    assert!(out.to_lowercase().contains("listen"), "{out}");
    let (ok, out) = check_config(&["--config", "/nonexistent/registry.toml"], &[]).await;
    assert!(!ok);
    assert!(out.contains("/nonexistent/registry.toml"), "{out}");
}
