//! The role matrix in practice: each role against the project API's
//! guarded operations, and the permissions core lists for a project.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;
use crate::tenants::*;

const ROLES: [(&str, i32); 5] = [
    ("padmin", PROJECT_ADMIN),
    ("maint", MAINTAINER),
    ("dev", DEVELOPER),
    ("guest", GUEST),
    ("limited", LIMITED_GUEST),
];

/// (what, method, path, body, roles allowed)
type Check<'a> = (&'a str, Method, String, Option<Value>, &'a [i32]);

fn rule(pattern: &str) -> Value {
    json!({"tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": pattern}],
           "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}})
}

#[tokio::test]
async fn every_role_against_the_project_api() {
    let site = Site::start().await;
    let pid = project(&site, "proj", false).await;
    for (u, role) in ROLES {
        user(&site, u).await;
        member(&site, "proj", u, role).await;
    }
    user(&site, "spare").await;

    // Each operation is guarded by one pair of Harbor's matrix.
    let admin_only = [PROJECT_ADMIN];
    let maintainers = [PROJECT_ADMIN, MAINTAINER];
    let guests = [PROJECT_ADMIN, MAINTAINER, DEVELOPER, GUEST];
    let everyone = [PROJECT_ADMIN, MAINTAINER, DEVELOPER, GUEST, LIMITED_GUEST];
    let checks: Vec<Check> = vec![
        (
            "project read",
            Method::GET,
            "/projects/proj".into(),
            None,
            &everyone,
        ),
        (
            "summary",
            Method::GET,
            "/projects/proj/summary".into(),
            None,
            &everyone,
        ),
        (
            "member list",
            Method::GET,
            "/projects/proj/members".into(),
            None,
            &guests,
        ),
        (
            "metadata read",
            Method::GET,
            "/projects/proj/metadatas/".into(),
            None,
            &maintainers,
        ),
        (
            "metadata update",
            Method::PUT,
            "/projects/proj/metadatas/auto_scan".into(),
            Some(json!({"auto_scan": "true"})),
            &maintainers,
        ),
        (
            "immutable list",
            Method::GET,
            "/projects/proj/immutabletagrules".into(),
            None,
            &maintainers,
        ),
        (
            "project update",
            Method::PUT,
            "/projects/proj".into(),
            Some(json!({"metadata": {"auto_scan": "false"}})),
            &admin_only,
        ),
        (
            "deletable",
            Method::GET,
            "/projects/proj/_deletable".into(),
            None,
            &admin_only,
        ),
    ];
    for (what, method, path, body, allowed) in &checks {
        for (u, role) in ROLES {
            let mut req = site.as_user(method.clone(), path, u, PASSWORD);
            if let Some(b) = body {
                req = req.json(b);
            }
            let (status, resp) = get_json(req).await;
            let want = if allowed.contains(&role) { 200 } else { 403 };
            assert_eq!(status, want, "{what} as {u}: {resp}");
        }
    }
    // Creations: an immutability rule per allowed role (distinct selectors),
    // a member by the project admin only.
    for (u, role) in ROLES {
        let r = site
            .as_user(
                Method::POST,
                "/projects/proj/immutabletagrules",
                u,
                PASSWORD,
            )
            .json(&rule(&format!("{u}-*")))
            .send()
            .await
            .unwrap();
        let want = if maintainers.contains(&role) {
            201
        } else {
            403
        };
        assert_eq!(r.status(), want, "immutable create as {u}");
        let r = site
            .as_user(Method::POST, "/projects/proj/members", u, PASSWORD)
            .json(&json!({"role_id": GUEST, "member_user": {"username": "spare"}}))
            .send()
            .await
            .unwrap();
        let want = if role == PROJECT_ADMIN { 201 } else { 403 };
        assert_eq!(r.status(), want, "member create as {u}");
    }
    // A limited guest sees the quota but not the member counts.
    let (_, s) =
        get_json(site.as_user(Method::GET, "/projects/proj/summary", "limited", PASSWORD)).await;
    assert!(s.get("guest_count").is_none(), "{s}");
    assert!(s.get("quota").is_some(), "{s}");
    // Only the project admin deletes the project.
    for (u, role) in ROLES.iter().rev() {
        let r = site
            .as_user(Method::DELETE, &format!("/projects/{pid}"), u, PASSWORD)
            .send()
            .await
            .unwrap();
        let want = if *role == PROJECT_ADMIN { 200 } else { 403 };
        assert_eq!(r.status(), want, "delete as {u}");
    }
}

#[tokio::test]
async fn current_user_permissions_in_a_project() {
    let site = Site::start().await;
    let pid = project(&site, "proj", false).await;
    let public = project(&site, "open", true).await;
    user(&site, "dev").await;
    user(&site, "limited").await;
    member(&site, "proj", "dev", DEVELOPER).await;
    member(&site, "proj", "limited", LIMITED_GUEST).await;
    let perms = |u: &str, p: i64, relative: bool| {
        site.as_user(
            Method::GET,
            &format!("/users/current/permissions?scope=/project/{p}&relative={relative}"),
            u,
            PASSWORD,
        )
    };
    let has = |v: &Value, r: &str, a: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .any(|p| p["resource"] == r && p["action"] == a)
    };
    let (status, dev) = get_json(perms("dev", pid, true)).await;
    assert_eq!(status, 200, "{dev}");
    assert!(has(&dev, "repository", "push"));
    assert!(has(&dev, "tag-retention", "operate"));
    assert!(!has(&dev, "repository", "delete"));
    assert!(!has(&dev, "member", "create"));
    let (_, limited) = get_json(perms("limited", pid, true)).await;
    assert!(has(&limited, "repository", "pull"));
    assert!(!has(&limited, "member", "list"));
    let (_, absolute) = get_json(perms("dev", pid, false)).await;
    assert!(
        has(&absolute, &format!("/project/{pid}/repository"), "push"),
        "{absolute}"
    );
    // An outsider of a public project holds what the public is granted.
    let (_, open) = get_json(perms("limited", public, true)).await;
    assert!(has(&open, "repository", "pull"));
    assert!(!has(&open, "repository", "push"));
}
