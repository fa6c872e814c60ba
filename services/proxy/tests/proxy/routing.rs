//! Where requests go: core's API, token service and login through the
//! proxy, internal paths refused in every spelling, and clear answers when
//! an upstream is down.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_and_login_reach_the_real_core() {
    let site = Site::start_with(Options {
        core: true,
        ..Options::default()
    })
    .await;
    let r = site
        .http
        .get(site.url("/api/v2.0/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "Pong");

    let r = site
        .http
        .get(site.url("/api/v2.0/systeminfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let info: serde_json::Value = r.json().await.unwrap();
    assert!(info.is_object(), "{info}");

    let r =
        site.http
            .get(site.url(
                "/service/token?service=harbor-registry&scope=repository:library/app:pull,push",
            ))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let token: serde_json::Value = r.json().await.unwrap();
    assert!(
        token["token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "{token}"
    );

    let r = site
        .http
        .post(site.url("/c/login"))
        .form(&[("principal", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(r.headers().get("set-cookie").is_some());

    // The API answers through the proxy for an authenticated user.
    let r = site
        .http
        .get(site.url("/api/v2.0/users/current"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["username"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_paths_are_refused_however_they_are_spelled() {
    let site = Site::start().await;
    // The registry's internal API exists (it asks for the secret) ...
    let r = site
        .http
        .get(site.registry_url("/api/internal/health"))
        .send()
        .await
        .unwrap();
    let direct = r.status();
    // ... but no spelling of it gets through the proxy.
    for path in [
        "/api/internal/health",
        "/api/internal/",
        "/API/INTERNAL/health",
        "//api//internal/health",
        "/api/./internal/health",
        "/api/v2.0/../internal/health",
        "/v2/../api/internal/health",
        "/api/%69nternal/health",
        "/api%2finternal/health",
        "/api/v2.0/%2e%2e/internal/health",
        "/api/v2.0/%252e%252e/internal/health",
        "/api;x/internal/health",
    ] {
        let r = site.http.get(site.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path} (direct: {direct})");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "NOT_FOUND", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_upstream_gets_a_quick_clear_answer() {
    let mut site = Site::start().await;

    // No portal is running: a 503 page that says so.
    let started = Instant::now();
    let r = site
        .http
        .get(site.url("/harbor/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(page.contains("Wharf portal is not running"), "{page}");

    // No core: the API answers 502 in the Harbor error envelope.
    let r = site
        .http
        .get(site.url("/api/v2.0/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("core is not reachable"));
    let r = site
        .http
        .get(site.url("/service/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);

    // The registry answers, then goes down: 502 with an OCI error.
    let r = site.http.get(site.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    site.kill_registry().await;
    let r = site.http.get(site.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("registry is not reachable"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answers must not hang"
    );

    // The v1 API is not served.
    let r = site.http.get(site.url("/v1/_ping")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
