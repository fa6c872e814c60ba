//! Pushes and pulls with skopeo through the token flow, against the
//! registry's write-path policy: roles, public and private projects, missing
//! projects, quotas and immutable tags.

use reqwest::Method;
use serde_json::json;

use crate::support::*;
use crate::tenants::*;

fn creds(u: &str) -> String {
    format!("{u}:{PASSWORD}")
}

fn admin() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

#[tokio::test]
async fn developer_pushes_guest_pulls_outsiders_see_nothing() {
    let site = Site::start().await;
    project(&site, "team", false).await;
    for (u, role) in [("dev", DEVELOPER), ("guest", GUEST)] {
        user(&site, u).await;
        member(&site, "team", u, role).await;
    }
    user(&site, "outsider").await;
    let dir = tempfile::tempdir().unwrap();
    image(dir.path(), "v1", 2, 4096);

    let (ok, out) = push(&site, dir.path(), "v1", "team/app:v1", Some(&creds("dev"))).await;
    assert!(ok, "developer push: {out}");
    let (ok, out) = pull(&site, "team/app:v1", Some(&creds("guest"))).await;
    assert!(ok, "guest pull: {out}");
    let (ok, out) = push(
        &site,
        dir.path(),
        "v1",
        "team/app:v2",
        Some(&creds("guest")),
    )
    .await;
    assert!(!ok, "a guest cannot push");
    assert!(
        out.to_lowercase().contains("unauthorized") || out.to_lowercase().contains("denied"),
        "{out}"
    );
    let (ok, _) = pull(&site, "team/app:v1", Some(&creds("outsider"))).await;
    assert!(!ok, "an outsider cannot pull a private project");
    let (ok, _) = pull(&site, "team/app:v1", None).await;
    assert!(!ok, "nor can an anonymous caller");

    // The project now holds a repository: it cannot be deleted.
    let (status, body) = get_json(site.admin(Method::DELETE, "/projects/team")).await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["errors"][0]["code"], "PRECONDITION");
    let (_, p) = get_json(site.admin(Method::GET, "/projects/team")).await;
    assert_eq!(p["repo_count"], 1);
}

#[tokio::test]
async fn anonymous_pulls_public_projects_only() {
    let site = Site::start().await;
    let dir = tempfile::tempdir().unwrap();
    image(dir.path(), "v1", 1, 4096);
    let (ok, out) = push(&site, dir.path(), "v1", "library/base:v1", Some(&admin())).await;
    assert!(ok, "{out}");
    let (ok, out) = pull(&site, "library/base:v1", None).await;
    assert!(ok, "anonymous pull of a public project: {out}");
    let (ok, _) = push(&site, dir.path(), "v1", "library/base:v2", None).await;
    assert!(!ok, "anonymous callers never push");
    // Private from now on: the same pull fails.
    let r = site
        .admin(Method::PUT, "/projects/library")
        .json(&json!({"metadata": {"public": "false"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (ok, _) = pull(&site, "library/base:v1", None).await;
    assert!(!ok, "anonymous pull of a private project");
}

#[tokio::test]
async fn pushes_to_missing_projects_are_denied() {
    let site = Site::start().await;
    let dir = tempfile::tempdir().unwrap();
    image(dir.path(), "v1", 1, 1024);
    let (ok, out) = push(&site, dir.path(), "v1", "nowhere/app:v1", Some(&admin())).await;
    assert!(!ok);
    assert!(out.contains("denied"), "{out}");
    assert!(out.contains("project \"nowhere\" does not exist"), "{out}");
    // Straight at the registry too: a repository must live inside a project.
    let (ok, out) = push(&site, dir.path(), "v1", "library:v1", Some(&admin())).await;
    assert!(!ok);
    assert!(out.contains("denied"), "{out}");
}

#[tokio::test]
async fn quotas_stop_pushes_and_count_shared_blobs_once() {
    let site = Site::start().await;
    let pid = project_with(
        &site,
        "q",
        json!({"project_name": "q", "storage_limit": 100_000}),
    )
    .await;
    let (qid, hard, used) = quota(&site, pid).await;
    assert_eq!((hard, used), (100_000, 0));

    let small = tempfile::tempdir().unwrap();
    let digest = image(small.path(), "v1", 1, 40_000);
    let (ok, out) = push(&site, small.path(), "v1", "q/app:v1", Some(&admin())).await;
    assert!(ok, "{out}");
    let (_, _, used) = quota(&site, pid).await;
    assert!(used > 40_000 && used < 45_000, "{used}");
    // The same content again, under another tag and in another repository:
    // nothing new is stored, nothing more is counted.
    let (ok, out) = push(&site, small.path(), "v1", "q/app:again", Some(&admin())).await;
    assert!(ok, "{out}");
    let (ok, out) = push(&site, small.path(), "v1", "q/copy:v1", Some(&admin())).await;
    assert!(ok, "{out}");
    assert_eq!(quota(&site, pid).await.2, used);

    // A layer that does not fit is refused, and the client is told why.
    let big = tempfile::tempdir().unwrap();
    image(big.path(), "v1", 1, 80_000);
    let (ok, out) = push(&site, big.path(), "v1", "q/big:v1", Some(&admin())).await;
    assert!(!ok);
    assert!(out.contains("quota exceeded"), "{out}");
    assert!(out.contains("project \"q\""), "{out}");
    assert_eq!(quota(&site, pid).await.2, used);
    // Two layers that fit one by one but not together: the manifest is refused.
    let pair = tempfile::tempdir().unwrap();
    image(pair.path(), "v1", 2, 35_000);
    let (ok, out) = push(&site, pair.path(), "v1", "q/pair:v1", Some(&admin())).await;
    assert!(!ok);
    assert!(out.contains("quota exceeded"), "{out}");

    // Deleting content lowers usage at once.
    let (_, access) = token(
        &site,
        Some(("admin", ADMIN_PASSWORD)),
        &["repository:q/app:delete", "repository:q/copy:delete"],
    )
    .await;
    assert_eq!(access.len(), 2);
    let r = site
        .http
        .get(format!("{}/service/token?service=harbor-registry&scope=repository:q/app:delete&scope=repository:q/copy:delete", site.core))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    let bearer = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for repo in ["q/app", "q/copy"] {
        let r = site
            .http
            .delete(format!("{}/v2/{repo}/manifests/{digest}", site.registry))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    }
    assert_eq!(quota(&site, pid).await.2, 0);
    let (ok, out) = push(&site, big.path(), "v1", "q/big:v1", Some(&admin())).await;
    assert!(ok, "fits once the space is freed: {out}");

    // Raising the limit through /quotas lets the pair in; bad bodies are refused.
    let r = site
        .admin(Method::PUT, &format!("/quotas/{qid}"))
        .json(&json!({"hard": {"storage": -1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (ok, out) = push(&site, pair.path(), "v1", "q/pair:v1", Some(&admin())).await;
    assert!(ok, "{out}");
    for bad in [
        json!({"hard": {"storage": -5}}),
        json!({"hard": {"count": 3}}),
        json!({}),
    ] {
        let (status, body) = get_json(
            site.admin(Method::PUT, &format!("/quotas/{qid}"))
                .json(&bad),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, q) = get_json(site.admin(Method::GET, &format!("/quotas/{qid}"))).await;
    assert_eq!(status, 200);
    assert_eq!(q["ref"]["name"], "q");
    assert_eq!(q["hard"]["storage"], -1);
    let r = site
        .admin(Method::GET, "/quotas?sort=-used.storage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], "2", "library and q");
    let list: serde_json::Value = r.json().await.unwrap();
    assert_eq!(list[0]["ref"]["name"], "q");
    // Quotas are for system administrators; non-admins may not set a limit.
    user(&site, "someone").await;
    let (status, _) = get_json(site.as_user(Method::GET, "/quotas", "someone", PASSWORD)).await;
    assert_eq!(status, 403);
    let (status, _) = get_json(
        site.as_user(Method::POST, "/projects", "someone", PASSWORD)
            .json(&json!({"project_name": "mine", "storage_limit": 10})),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn immutable_tags_cannot_be_overwritten() {
    let site = Site::start().await;
    let pid = project(&site, "rel", false).await;
    let base = format!("/projects/{pid}/immutabletagrules");
    let rule = json!({"disabled": false, "action": "immutable", "template": "immutable_template",
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v{1,2}.*"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}});
    let r = site
        .admin(Method::POST, &base)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rid = id_from_location(&r);
    let (status, _) = get_json(site.admin(Method::POST, &base).json(&rule)).await;
    assert_eq!(status, 409, "the same selectors twice");
    let mut bad = rule.clone();
    bad["tag_selectors"][0]["pattern"] = json!("v{1");
    let (status, body) = get_json(site.admin(Method::POST, &base).json(&bad)).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("pattern"), "{body}");
    let (status, list) = get_json(site.admin(Method::GET, &base)).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], rid);
    assert_eq!(list[0]["tag_selectors"][0]["pattern"], "v{1,2}.*");

    let one = tempfile::tempdir().unwrap();
    image(one.path(), "t", 1, 2048);
    let two = tempfile::tempdir().unwrap();
    image(two.path(), "t", 1, 2048);
    let a = admin();
    let (ok, out) = push(&site, one.path(), "t", "rel/team/app:v1.0", Some(&a)).await;
    assert!(ok, "a new protected tag may be pushed: {out}");
    let (ok, out) = push(&site, one.path(), "t", "rel/team/app:v1.0", Some(&a)).await;
    assert!(ok, "the same digest again is allowed: {out}");
    let (ok, out) = push(&site, two.path(), "t", "rel/team/app:v1.0", Some(&a)).await;
    assert!(!ok, "moving it is not");
    assert!(out.contains("immutable"), "{out}");
    assert!(out.contains(&format!("rule {rid}")), "{out}");
    let (ok, out) = push(&site, two.path(), "t", "rel/team/app:latest", Some(&a)).await;
    assert!(ok, "unprotected tags move freely: {out}");
    let (ok, out) = push(&site, one.path(), "t", "rel/team/app:latest", Some(&a)).await;
    assert!(ok, "{out}");

    // Disabled, the rule protects nothing; deleted, it is gone.
    let mut off = rule.clone();
    off["disabled"] = json!(true);
    let r = site
        .admin(Method::PUT, &format!("{base}/{rid}"))
        .json(&off)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (ok, out) = push(&site, two.path(), "t", "rel/team/app:v1.0", Some(&a)).await;
    assert!(ok, "{out}");
    let r = site
        .admin(Method::DELETE, &format!("{base}/{rid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = get_json(site.admin(Method::DELETE, &format!("{base}/{rid}"))).await;
    assert_eq!(status, 404);
}
