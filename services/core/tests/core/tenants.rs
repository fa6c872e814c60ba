//! Helpers for the tenancy tests: users, projects and members made through
//! the API, registry tokens decoded and verified, and skopeo pushes and pulls
//! through the token flow.

use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

/// Every test user's password (it meets the password policy).
pub const PASSWORD: &str = "Pass1234";

/// Harbor's role ids.
pub const PROJECT_ADMIN: i32 = 1;
pub const DEVELOPER: i32 = 2;
pub const GUEST: i32 = 3;
pub const MAINTAINER: i32 = 4;
pub const LIMITED_GUEST: i32 = 5;

/// Creates a user through the API; returns its id.
pub async fn user(site: &Site, name: &str) -> i64 {
    let r = site
        .admin(Method::POST, "/users")
        .json(
            &json!({"username": name, "email": format!("{name}@example.com"),
                      "realname": name, "password": PASSWORD, "comment": ""}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "creating user {name}: {}",
        r.text().await.unwrap()
    );
    id_from_location(&r)
}

pub fn id_from_location(r: &reqwest::Response) -> i64 {
    let loc = r
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap();
    loc.rsplit('/').next().unwrap().parse().unwrap()
}

/// Creates a project as `admin`; returns its id.
pub async fn project(site: &Site, name: &str, public: bool) -> i64 {
    project_with(
        site,
        name,
        json!({"project_name": name, "metadata": {"public": public.to_string()}}),
    )
    .await
}

pub async fn project_with(site: &Site, name: &str, body: Value) -> i64 {
    let r = site
        .admin(Method::POST, "/projects")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "creating project {name}: {}",
        r.text().await.unwrap()
    );
    id_from_location(&r)
}

/// Adds `username` to `project` (by name) with `role`, as `admin`.
pub async fn member(site: &Site, project: &str, username: &str, role: i32) {
    let r = site
        .admin(Method::POST, &format!("/projects/{project}/members"))
        .header("X-Is-Resource-Name", "true")
        .json(&json!({"role_id": role, "member_user": {"username": username}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "adding {username}: {}",
        r.text().await.unwrap()
    );
}

/// Asks the token service for `scopes`; returns the status and, on success,
/// the verified claims' access list as (type, name, actions).
pub async fn token(
    site: &Site,
    creds: Option<(&str, &str)>,
    scopes: &[&str],
) -> (u16, Vec<(String, String, Vec<String>)>) {
    let mut query: Vec<(&str, &str)> = vec![("service", "harbor-registry")];
    for s in scopes {
        query.push(("scope", s));
    }
    let mut req = site
        .http
        .get(format!("{}/service/token", site.core))
        .query(&query);
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    if status != 200 {
        return (status, vec![]);
    }
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert!(body["issued_at"].as_str().is_some());
    let pem = std::fs::read(site.dir.path().join("token.crt")).unwrap();
    let verifier =
        wharf_token::Verifier::new(&pem, "harbor-token-issuer", "harbor-registry").unwrap();
    let claims = verifier
        .verify(body["token"].as_str().unwrap())
        .expect("a token the registry accepts");
    (
        status,
        claims
            .access
            .iter()
            .map(|a| (a.kind.clone(), a.name.clone(), a.actions.clone()))
            .collect(),
    )
}

/// The actions granted for the one scope asked.
pub async fn granted(site: &Site, creds: Option<(&str, &str)>, scope: &str) -> Vec<String> {
    let (status, access) = token(site, creds, &[scope]).await;
    assert_eq!(status, 200, "token for {scope}");
    assert_eq!(access.len(), 1);
    access[0].2.clone()
}

/// Writes an OCI layout with one image of `layers` random layers of `size` bytes.
pub fn image(dir: &Path, tag: &str, layers: usize, size: usize) -> String {
    oci_image(dir, tag, layers, size)
}

/// `skopeo copy` from a local layout to `<registry>/<dest>` with `creds`
/// (`user:password`, or anonymous).
pub async fn push(
    site: &Site,
    layout: &Path,
    tag: &str,
    dest: &str,
    creds: Option<&str>,
) -> (bool, String) {
    let src = format!("oci:{}:{tag}", layout.display());
    let dst = format!("docker://{}/{dest}", site.registry_addr);
    let mut args = vec![
        "copy",
        "--retry-times",
        "0",
        &src,
        &dst,
        "--dest-tls-verify=false",
    ];
    match creds {
        Some(c) => args.extend(["--dest-creds", c]),
        None => args.push("--dest-no-creds"),
    }
    unescaped(skopeo(&args).await)
}

/// skopeo logs its error as a quoted string; undo the quoting of `"`.
fn unescaped((ok, out): (bool, String)) -> (bool, String) {
    (ok, out.replace("\\\"", "\""))
}

/// `skopeo copy` from `<registry>/<src>` into a fresh local layout.
pub async fn pull(site: &Site, src: &str, creds: Option<&str>) -> (bool, String) {
    let out = tempfile::tempdir().unwrap();
    let src = format!("docker://{}/{src}", site.registry_addr);
    let dst = format!("oci:{}:pulled", out.path().display());
    let mut args = vec![
        "copy",
        "--retry-times",
        "0",
        &src,
        &dst,
        "--src-tls-verify=false",
    ];
    match creds {
        Some(c) => args.extend(["--src-creds", c]),
        None => args.push("--src-no-creds"),
    }
    unescaped(skopeo(&args).await)
}

pub async fn get_json(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The project's quota as `/quotas` reports it: (id, hard, used).
pub async fn quota(site: &Site, project_id: i64) -> (i64, i64, i64) {
    let (status, body) = get_json(site.admin(
        Method::GET,
        &format!("/quotas?reference=project&reference_id={project_id}"),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let q = &body[0];
    assert_eq!(q["ref"]["id"], project_id);
    (
        q["id"].as_i64().unwrap(),
        q["hard"]["storage"].as_i64().unwrap(),
        q["used"]["storage"].as_i64().unwrap(),
    )
}
