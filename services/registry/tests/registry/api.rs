//! The distribution API, row by row of the spec table, with its error cases.

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
