//! The internal API that core calls to change content: the shared secret,
//! tagging, copying (an index with its children) and deleting, each through
//! the write protocol with the caller's actor in the outbox.

use serde_json::json;

use crate::support::*;

const SECRET: &str = "internal-test-secret";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

async fn with_secret() -> Registry {
    Registry::start_with(
        None,
        vec![("WHARF_REGISTRY_INTERNAL_SECRET".into(), SECRET.into())],
    )
    .await
}

fn internal(reg: &Registry, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    reg.http
        .request(method, reg.url(&format!("/api/internal{path}")))
        .header("x-wharf-internal-secret", SECRET)
        .header("x-wharf-actor", "carol")
}

async fn manifest_status(reg: &Registry, repo: &str, reference: &str) -> (u16, String) {
    let r = reg
        .http
        .get(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    let digest = r
        .headers()
        .get("docker-content-digest")
        .map(|d| d.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), digest)
}

#[tokio::test]
async fn the_internal_api_needs_the_shared_secret() {
    let open = Registry::start().await;
    let r = open
        .http
        .delete(open.url("/api/internal/tags?repository=lib/app&tag=v1"))
        .header("x-wharf-internal-secret", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no secret configured: the API is off");

    let reg = with_secret().await;
    let path = "/api/internal/tags?repository=lib/app&tag=v1";
    let r = reg.http.delete(reg.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    for (h, v) in [
        ("x-wharf-internal-secret", "wrong"),
        ("authorization", "Bearer wrong"),
        ("authorization", "Bearer internal-test-secre"),
        ("authorization", "Basic aW50ZXJuYWw="),
    ] {
        let r = reg
            .http
            .delete(reg.url(path))
            .header(h, v)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{h}: {v}");
    }
    // The right secret either way gets through to the operation (no such tag).
    for (h, v) in [
        ("x-wharf-internal-secret", SECRET.to_owned()),
        ("authorization", format!("Bearer {SECRET}")),
    ] {
        let r = reg
            .http
            .delete(reg.url(path))
            .header(h, v)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{h}");
        assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    }
}

#[tokio::test]
async fn tag_copy_and_delete_through_the_internal_api() {
    let reg = with_secret().await;
    let layer = random_bytes(5000);
    let (digest, _) = reg.push_image("lib/app", "v1", &[&layer]).await;

    // Tag: a manifest PUT by tag with the stored bytes.
    let r = internal(&reg, reqwest::Method::PUT, "/tags")
        .json(&json!({"repository": "lib/app", "tag": "stable", "digest": digest}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        manifest_status(&reg, "lib/app", "stable").await,
        (200, digest.clone())
    );
    let r = internal(&reg, reqwest::Method::PUT, "/tags")
        .json(&json!({"repository": "lib/app", "tag": "x", "digest": sha256(b"nothing")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for bad in [
        json!({"repository": "lib/app", "tag": "-bad", "digest": digest}),
        json!({"repository": "Lib/App", "tag": "ok", "digest": digest}),
        json!({"repository": "lib/app", "tag": "ok", "digest": "sha256:00"}),
        json!({"repository": "lib/app"}),
    ] {
        let r = internal(&reg, reqwest::Method::PUT, "/tags")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    // Delete a tag: the manifest stays.
    let r = internal(
        &reg,
        reqwest::Method::DELETE,
        "/tags?repository=lib/app&tag=stable",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(manifest_status(&reg, "lib/app", "stable").await.0, 404);
    assert_eq!(manifest_status(&reg, "lib/app", "v1").await.0, 200);

    // Copy an image: its blobs are linked into the target, then it is tagged there.
    let r = internal(&reg, reqwest::Method::POST, "/copy")
        .json(&json!({"from": "lib/app", "reference": "v1", "to": "other/app", "tags": ["v1", "copied"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["digest"],
        digest
    );
    for reference in ["v1", "copied", digest.as_str()] {
        assert_eq!(
            manifest_status(&reg, "other/app", reference).await,
            (200, digest.clone())
        );
    }
    let r = reg
        .http
        .get(reg.url(&format!("/v2/other/app/blobs/{}", sha256(&layer))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), layer);

    // Copy an index: its children come along.
    let (a, am) = reg
        .push_image("lib/multi", "a", &[&random_bytes(300)])
        .await;
    let (b, bm) = reg
        .push_image("lib/multi", "b", &[&random_bytes(300)])
        .await;
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": a, "size": am.len(), "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": b, "size": bm.len(), "platform": {"architecture": "arm64", "os": "linux"}},
    ]}))
    .unwrap();
    let idx = reg
        .put_manifest("lib/multi", "all", &index, OCI_INDEX)
        .await;
    let r = internal(&reg, reqwest::Method::POST, "/copy")
        .json(&json!({"from": "lib/multi", "reference": idx, "to": "other/multi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for d in [&idx, &a, &b] {
        assert_eq!(manifest_status(&reg, "other/multi", d).await.0, 200, "{d}");
    }
    assert_eq!(
        manifest_status(&reg, "other/multi", "all").await.0,
        404,
        "no tags asked"
    );
    let r = internal(&reg, reqwest::Method::POST, "/copy")
        .json(&json!({"from": "lib/multi", "reference": "nope", "to": "other/multi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Delete an artifact: by digest, all its tags with it.
    let path = format!("/artifacts?repository=lib/app&digest={digest}");
    let r = internal(&reg, reqwest::Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(manifest_status(&reg, "lib/app", &digest).await.0, 404);
    assert_eq!(manifest_status(&reg, "lib/app", "v1").await.0, 404);
    assert_eq!(manifest_status(&reg, "other/app", &digest).await.0, 200);
    let r = internal(&reg, reqwest::Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = internal(
        &reg,
        reqwest::Method::DELETE,
        "/artifacts?repository=lib/app",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);

    // The outbox names the actor core passed on.
    let db = reg.db.connect().await;
    let actors: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT event_type, actor FROM outbox WHERE event_type IN ('push', 'delete', 'delete_tag') AND repository IN ('lib/app', 'other/app') ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let by_carol: Vec<&str> = actors
        .iter()
        .filter(|(_, a)| a.as_deref() == Some("carol"))
        .map(|(e, _)| e.as_str())
        .collect();
    assert_eq!(
        by_carol,
        ["push", "delete_tag", "push", "push", "push", "delete"]
    );
}
