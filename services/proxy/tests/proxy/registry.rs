//! `/v2/` through the proxy: skopeo round trips with digests unchanged, a
//! 200 MiB blob streamed both ways in flat memory, blob pulls sent from the
//! registry's volume (and relayed when the proxy cannot read it),
//! transfers that go on past the idle timeout while bytes flow, and podman
//! pushing and pulling through it.

use std::time::Duration;

use futures_util::StreamExt;
use sha2::Digest as _;

use crate::support::*;

async fn skopeo_ok(args: &[&str]) {
    let (ok, out) = skopeo(args).await;
    assert!(ok, "skopeo {args:?} failed:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_a_multi_layer_image_through_the_proxy() {
    let site = Site::start().await;
    let src = tempfile::tempdir().unwrap();
    let manifest = oci_image(src.path(), "v1", 3, 400_000);
    let oci_src = format!("oci:{}:v1", src.path().display());
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &oci_src,
        &site.docker_ref("library/app:v1"),
    ])
    .await;

    // The registry itself holds the manifest under the same digest.
    let r = site
        .http
        .head(site.registry_url("/v2/library/app/manifests/v1"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], manifest.as_str());

    let dst = tempfile::tempdir().unwrap();
    let oci_dst = format!("oci:{}:v1", dst.path().display());
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        "--preserve-digests",
        &site.docker_ref("library/app:v1"),
        &oci_dst,
    ])
    .await;
    assert_eq!(layout_blobs(src.path()), layout_blobs(dst.path()));
    assert_eq!(layout_corrupt_blobs(dst.path()), Vec::<String>::new());
    let (ok, out) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &site.docker_ref("library/app:v1"),
    ])
    .await;
    assert!(ok, "{out}");
    assert_eq!(format!("sha256:{}", sha256_hex(out.as_bytes())), manifest);

    // Every request got an access log line with its request id.
    let log = site.proxy_log();
    assert!(log.contains("access"), "{log}");
    assert!(
        log.contains("http.path=/v2/library/app/manifests/v1"),
        "{log}"
    );
}

const MIB: usize = 1 << 20;

/// A deterministic body of `mib` MiB in 1 MiB chunks and its digest.
fn big_body(
    mib: usize,
) -> (
    impl Fn(usize) -> bytes::Bytes + Clone + Send + 'static,
    String,
) {
    let base: Vec<u8> = (0..MIB).map(|_| rand::random::<u8>()).collect();
    let base = bytes::Bytes::from(base);
    let chunk = move |i: usize| {
        let mut c = base.to_vec();
        c[..8].copy_from_slice(&(i as u64).to_le_bytes());
        bytes::Bytes::from(c)
    };
    let mut h = sha2::Sha256::new();
    for i in 0..mib {
        h.update(chunk(i));
    }
    let digest = format!("sha256:{}", hex_of(&h.finalize()));
    (chunk, digest)
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_blob_streams_both_ways_in_flat_memory() {
    let site = Site::start().await;
    let mib = 200;
    let (chunk, digest) = big_body(mib);

    let r = site
        .http
        .post(site.url("/v2/big/blob/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let put_url = if location.starts_with('/') {
        site.url(&format!("{location}{sep}digest={digest}"))
    } else {
        format!("{location}{sep}digest={digest}")
    };
    let stream = futures_util::stream::iter(0..mib).map(move |i| Ok::<_, std::io::Error>(chunk(i)));
    let r = site
        .http
        .put(put_url)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // Pulled as installed (sent from the registry's volume) and through a
    // proxy that relays the registry's bytes: flat memory both ways.
    let relay = site.relay_proxy().await;
    for (proxy, base) in [
        (&site.proxy, site.url.clone()),
        (&relay, format!("http://{}", relay.addr)),
    ] {
        let r = site
            .http
            .get(format!("{base}/v2/big/blob/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut h = sha2::Sha256::new();
        let mut n = 0usize;
        let mut body = r.bytes_stream();
        while let Some(c) = body.next().await {
            let c = c.unwrap();
            n += c.len();
            h.update(&c);
        }
        assert_eq!(n, mib * MIB);
        assert_eq!(format!("sha256:{}", hex_of(&h.finalize())), digest);

        let peak_mib = proxy.peak_rss_kib() / 1024;
        eprintln!("proxy peak RSS after {mib} MiB through it: {peak_mib} MiB");
        assert!(
            peak_mib < 64,
            "the proxy's peak RSS grew to {peak_mib} MiB: it buffers bodies"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_outlives_the_idle_timeout_while_bytes_flow_and_a_stall_is_cut() {
    let site = Site::start_with(Options {
        proxy_env: vec![("WHARF_PROXY_TIMEOUTS__IDLE_SECS".into(), "2".into())],
        ..Options::default()
    })
    .await;
    let start = |site: &Site| {
        let http = site.http.clone();
        let url = site.url("/v2/slow/app/blobs/uploads/");
        async move {
            let r = http.post(url).send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    // Eight chunks 700 ms apart: 5 s in all, never 2 s without bytes.
    let location = start(&site).await;
    let stream = futures_util::stream::iter(0..8u8).then(|i| async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![i; 64 * 1024]))
    });
    let started = std::time::Instant::now();
    let r = site
        .http
        .patch(site.url(&location))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    assert!(started.elapsed() > Duration::from_secs(4));
    assert_eq!(r.headers()["range"], format!("0-{}", 8 * 64 * 1024 - 1));

    // A client that stalls for longer than the idle timeout is cut off.
    let location = start(&site).await;
    let stream = futures_util::stream::iter(0..2u8).then(|i| async move {
        if i == 1 {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![i; 1024]))
    });
    let started = std::time::Instant::now();
    let res = site
        .http
        .patch(site.url(&location))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    assert!(started.elapsed() < Duration::from_secs(5), "{res:?}");
    if let Ok(r) = res {
        assert!(!r.status().is_success(), "{r:?}");
    }
}

/// Pushes `body` as one blob of `repo` through the proxy; returns its digest.
async fn push_blob(site: &Site, repo: &str, body: Vec<u8>) -> String {
    let digest = format!("sha256:{}", sha256_hex(&body));
    let r = site
        .http
        .post(site.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    digest
}

const OFFLOAD: &str = "x-wharf-blob-offload";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_pulls_are_sent_from_the_registry_volume_and_relayed_when_it_is_unreadable() {
    let site = Site::start().await;
    let body: Vec<u8> = (0..3 * MIB + 17).map(|_| rand::random::<u8>()).collect();
    let digest = push_blob(&site, "off/load", body.clone()).await;
    let blob = format!("/v2/off/load/blobs/{digest}");

    // The protocol: asked by the proxy, the registry answers with the
    // approved range and no bytes ...
    let r = site
        .http
        .get(site.registry_url(&blob))
        .header(OFFLOAD, "1")
        .header("range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()[OFFLOAD].to_str().unwrap(),
        format!("{digest} 10 {}", body.len() - 10)
    );
    assert!(r.bytes().await.unwrap().is_empty());
    // ... and only for blobs the repository holds.
    let r = site
        .http
        .get(site.registry_url(&format!("/v2/other/repo/blobs/{digest}")))
        .header(OFFLOAD, "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get(OFFLOAD).is_none());

    // Through the proxy a client sees an ordinary blob response, whole or
    // ranged, even when it sends the header itself.
    let r = site
        .http
        .get(site.url(&blob))
        .header(OFFLOAD, "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get(OFFLOAD).is_none());
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(
        r.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), body);
    let r = site
        .http
        .get(site.url(&blob))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-1999/{}", body.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), body[1000..2000]);
    let r = site.http.head(site.url(&blob)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        body.len().to_string().as_str()
    );
    let log = site.proxy_log();
    assert!(
        log.contains(&format!("size_bytes={}", body.len())),
        "the access log counts the bytes sent from the file:\n{log}"
    );
    assert!(!log.contains("relaying it instead"), "{log}");

    // A proxy pointed at the wrong directory still serves every pull, by
    // relaying the registry's bytes, and says why in its log.
    let empty = tempfile::tempdir().unwrap();
    let site = Site::start_with(Options {
        proxy_env: vec![(
            "WHARF_PROXY_UPSTREAMS__REGISTRY_STORAGE".into(),
            empty.path().display().to_string(),
        )],
        ..Options::default()
    })
    .await;
    let digest = push_blob(&site, "off/load", body.clone()).await;
    let r = site
        .http
        .get(site.url(&format!("/v2/off/load/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get(OFFLOAD).is_none());
    assert_eq!(r.bytes().await.unwrap(), body);
    assert!(site.proxy_log().contains("relaying it instead"));
}

/// A fresh directory with an all-lowercase path, removed on drop.
struct LowercaseDir(std::path::PathBuf);

impl LowercaseDir {
    fn new() -> LowercaseDir {
        let p = std::path::Path::new("/tmp")
            .join(format!("wharf-podman-{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&p).unwrap();
        LowercaseDir(p)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for LowercaseDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs podman on its own storage under `dir` (vfs: no kernel overlay
/// needed); returns whether it succeeded and its output.
async fn podman(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("podman");
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs", "--events-backend", "none"])
        .args(args);
    wharf_testkit::run_client(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pushes_and_pulls_through_the_proxy() {
    let site = Site::start().await;
    // podman names an image pulled from a layout after its path, which must
    // then be lowercase: tempdir's random suffix is not.
    let src = LowercaseDir::new();
    oci_image(src.path(), "v1", 2, 300_000);
    let store = tempfile::tempdir().unwrap();
    let ok = |(ok, out): (bool, String), what: &str| {
        assert!(ok, "podman {what} failed:\n{out}");
        out
    };
    let id = ok(
        podman(
            store.path(),
            &["pull", "-q", &format!("oci:{}:v1", src.path().display())],
        )
        .await,
        "pull from the layout",
    )
    .trim()
    .to_owned();
    let reference = format!("{}/library/pod:v1", site.proxy.addr);
    ok(podman(store.path(), &["tag", &id, &reference]).await, "tag");
    ok(
        podman(
            store.path(),
            &["push", "--tls-verify=false", "-q", &reference],
        )
        .await,
        "push",
    );
    ok(podman(store.path(), &["rmi", "-a", "-f"]).await, "rmi");
    ok(
        podman(
            store.path(),
            &["pull", "--tls-verify=false", "-q", &reference],
        )
        .await,
        "pull through the proxy",
    );
    // The image that came back is the one pushed (its ID is its config's digest).
    let images = ok(
        podman(
            store.path(),
            &["images", "--no-trunc", "--format", "{{.ID}}"],
        )
        .await,
        "images",
    );
    assert_eq!(images.trim().trim_start_matches("sha256:"), id, "{images}");
    let r = site
        .http
        .head(site.registry_url("/v2/library/pod/manifests/v1"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
