//! End to end, as a new user: write a harbor.yml, run `./install.sh --native`
//! (Wharf's own Postgres and Redis, the four services, the proxy in front),
//! log in with skopeo through the proxy, create a project, push and pull a
//! multi-layer image, list it, run GC through the API, stop, and start again
//! over the same data.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn install_push_pull_gc_stop_and_reinstall_over_the_same_data() {
    let site = Site::new();
    let out = site.install();
    // Keys Wharf does not support are named, not dropped silently.
    assert!(
        out.contains("ignored trivy") && out.contains("ignored database.max_idle_conns"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Wharf is running at {}", site.url())),
        "{out}"
    );
    let health = site.get_json("/api/v2.0/health", false);
    assert_eq!(health["status"], "healthy", "{health}");
    // The proxy answers for the portal, which is not part of Wharf yet.
    assert_eq!(site.status("/", false), 503);

    site.skopeo_login(ADMIN_PASSWORD);
    let (status, _, body) = site.call(
        reqwest::Method::POST,
        "/api/v2.0/projects",
        true,
        Some(serde_json::json!({"project_name": "e2e", "metadata": {"public": "false"}})),
    );
    assert_eq!(status, 201, "{body}");

    let src = tempfile::tempdir().unwrap();
    let manifest = write_image(src.path(), "v1", 3, 300_000);
    site.skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &format!("oci:{}:v1", src.path().display()),
        &site.docker_ref("e2e/app:v1"),
    ]);
    let pulled = site.pull("e2e/app:v1");
    assert_same_image(src.path(), pulled.path(), "v1", &manifest);
    // The installed proxy reads the registry's volume: it sent the layers
    // from the files, never falling back to relaying them.
    let proxy_log = std::fs::read_to_string(site.data.join("logs/proxy.log")).unwrap();
    assert!(proxy_log.contains("access"), "{proxy_log}");
    assert!(!proxy_log.contains("relaying it instead"), "{proxy_log}");

    let repos = site.get_json("/api/v2.0/projects/e2e/repositories", true);
    let repo = repos
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "e2e/app"))
        .unwrap_or_else(|| panic!("e2e/app is not listed: {repos}"));
    assert_eq!(repo["artifact_count"], 1, "{repo}");

    // GC through the API, to the end.
    let (status, location, body) = site.call(
        reqwest::Method::POST,
        "/api/v2.0/system/gc/schedule",
        true,
        Some(serde_json::json!({"schedule": {"type": "Manual"}, "parameters": {"delete_untagged": true, "dry_run": false, "workers": 1}})),
    );
    assert_eq!(status, 201, "{body}");
    let location = location.expect("a Location header");
    let path = location
        .strip_prefix(&site.url())
        .unwrap_or(&location)
        .to_owned();
    let started = Instant::now();
    loop {
        let gc = site.get_json(&path, true);
        match gc["job_status"].as_str() {
            Some("Success") => break,
            Some("Error") | Some("Stopped") => panic!("GC ended badly: {gc}"),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "GC did not finish: {gc}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The tagged image survives GC.
    let pulled = site.pull("e2e/app:v1");
    assert_same_image(src.path(), pulled.path(), "v1", &manifest);

    let secrets = site.secret_bytes();
    site.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", site.ports.http)).is_err(),
        "the proxy still answers after --stop"
    );
    for f in ["registry", "core", "jobservice", "proxy", "redis"] {
        assert!(
            !site.data.join(format!("run/{f}.pid")).exists(),
            "{f}.pid is left"
        );
    }

    // A second install over the same data keeps users, images and secrets.
    site.install();
    assert_eq!(site.secret_bytes(), secrets, "secrets changed on a re-run");
    site.skopeo_login(ADMIN_PASSWORD);
    let pulled = site.pull("e2e/app:v1");
    assert_same_image(src.path(), pulled.path(), "v1", &manifest);
    site.stop();
}

#[test]
fn an_invalid_harbor_yml_stops_the_install_naming_the_key() {
    let site = Site::with_harbor_yml(|yml| yml.replace("  port: HTTP_PORT\n", "  port: abc\n"));
    let (ok, out) = site.run_install(&["--native"]);
    assert!(!ok, "install.sh accepted an invalid harbor.yml:\n{out}");
    assert!(
        out.contains(r#"http.port: must be a port number 1-65535, got "abc""#),
        "{out}"
    );
    assert!(
        !site.data.join("config").exists(),
        "configs were written for an invalid file"
    );
    assert!(started_nothing(&site));
}

/// Nothing listens on the ports of a site whose install failed.
fn started_nothing(site: &Site) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", site.ports.core)).is_err()
}
