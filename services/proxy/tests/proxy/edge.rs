//! The edge itself: TLS (HTTP/1.1 and HTTP/2), the HTTP→HTTPS redirect,
//! request ids, forwarding headers and `--check-config`.

use crate::support::*;

fn https_client(site: &Site) -> reqwest::Client {
    let pem = std::fs::read(site.proxy_cert()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_platform_and_plain_http_redirects_to_it() {
    let site = Site::start_with(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    let https_addr = site.proxy.https_addr.clone().expect("an https listener");
    let port = https_addr.rsplit_once(':').unwrap().1;
    let client = https_client(&site);

    let r = client
        .get(format!("https://localhost:{port}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    let h1 = reqwest::Client::builder()
        .http1_only()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(site.proxy_cert()).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let r = h1
        .get(format!("https://127.0.0.1:{port}/v2/_catalog"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);

    // Plain HTTP: 308 to the same host on the HTTPS port, path and query kept.
    let http_port = site.proxy.addr.rsplit_once(':').unwrap().1;
    let r = site
        .http
        .put(format!(
            "http://localhost:{http_port}/v2/library/app/manifests/v1?x=1&y=2"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://localhost:{port}/v2/library/app/manifests/v1?x=1&y=2").as_str()
    );

    // A client that follows redirects lands on the registry over TLS.
    let follow = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(site.proxy_cert()).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let r = follow
        .get(format!("http://localhost:{http_port}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.url().scheme(), "https");

    // skopeo pushes over HTTPS, trusting the proxy's certificate.
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(site.proxy_cert(), certs.path().join("ca.crt")).unwrap();
    let src = tempfile::tempdir().unwrap();
    oci_image(src.path(), "v1", 2, 100_000);
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-cert-dir",
        certs.path().to_str().unwrap(),
        &format!("oci:{}:v1", src.path().display()),
        &format!("docker://localhost:{port}/tls/app:v1"),
    ])
    .await;
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_and_forwarding_headers_reach_the_upstream() {
    let echo = echo_upstream().await;
    let site = Site::start_with(Options {
        portal: Some(echo),
        ..Options::default()
    })
    .await;

    let r = site
        .http
        .get(site.url("/harbor/projects?page=2"))
        .header("host", "wharf.example.test:8443")
        .header("x-request-id", "client-chosen-id-42")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "x-private-hop")
        .header("x-private-hop", "secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "client-chosen-id-42");
    assert!(
        r.headers().get("x-upstream-hop").is_none(),
        "hop-by-hop from upstream is stripped"
    );
    let seen: serde_json::Value = r.json().await.unwrap();
    let header = |name: &str| -> Vec<String> {
        seen["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(seen["target"], "GET /harbor/projects?page=2 HTTP/1.1");
    assert_eq!(header("host"), ["wharf.example.test:8443"]);
    assert_eq!(header("x-forwarded-host"), ["wharf.example.test:8443"]);
    assert_eq!(header("x-forwarded-proto"), ["http"]);
    assert_eq!(header("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(header("x-request-id"), ["client-chosen-id-42"]);
    assert!(header("x-private-hop").is_empty());
    assert!(header("connection")
        .iter()
        .all(|c| !c.contains("x-private-hop")));

    // Without an id from the client, the proxy makes one, sends it upstream and echoes it.
    let r = site.http.get(site.url("/")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let seen: serde_json::Value = r.json().await.unwrap();
    assert!(seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == "x-request-id" && h[1] == id.as_str()));

    // The registry gets the same id (it echoes what it received).
    let r = site
        .http
        .get(site.url("/v2/"))
        .header("x-request-id", "via-registry-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "via-registry-7");

    // One access log line per request, with method, path, status, bytes, duration and id.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = site.proxy_log();
    let line = log
        .lines()
        .find(|l| l.contains("request_id=client-chosen-id-42"))
        .unwrap_or_else(|| panic!("no access line:\n{log}"));
    for part in [
        "http.method=GET",
        "http.path=/harbor/projects",
        "http.status=200",
        "size_bytes=",
        "duration_ms=",
    ] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
    assert!(log.contains(&format!("request_id={id}")));
}

#[tokio::test]
async fn check_config_names_the_bad_key() {
    let out = tokio::process::Command::new(PROXY_BIN)
        .arg("--check-config")
        .env("WHARF_PROXY_UPSTREAMS__CORE", "http://core:8080/api")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("upstreams.core"), "{err}");

    let out = tokio::process::Command::new(PROXY_BIN)
        .arg("--check-config")
        .env("WHARF_PROXY_LISTEN_HTTPS", "127.0.0.1:0")
        .env("WHARF_PROXY_TLS__CERTIFICATE", "/nonexistent/cert.pem")
        .env("WHARF_PROXY_TLS__PRIVATE_KEY", "/nonexistent/key.pem")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls.certificate"));

    let out = tokio::process::Command::new(PROXY_BIN)
        .arg("--check-config")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
}
