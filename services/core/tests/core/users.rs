//! Users: create, list with pagination and `q`, search, get, update, delete,
//! password rules, system admin toggling, `/users/current` and its
//! permissions, with the 400/401/403/404/409 answers and the audit trail.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::*;

/// The password every test user starts with (it meets the policy).
pub const PW: &str = "Secret123";

/// Creates `name` through the API as admin; returns its id from `Location`.
pub async fn create_user(site: &Site, name: &str) -> i64 {
    let r = site
        .admin(Method::POST, "/users")
        .json(
            &json!({"username": name, "email": format!("{name}@example.com"),
                      "realname": format!("{name} tester"), "password": PW}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with("/api/v2.0/users/"), "{loc}");
    loc.rsplit('/').next().unwrap().parse().unwrap()
}

/// Status and JSON body (Null when empty).
pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// The message of a Harbor error body.
pub fn message(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// The audit entries as (operation, resource_type, resource, username).
pub async fn audit(site: &Site) -> Vec<(String, String, String, String)> {
    let db = site.db.connect().await;
    let rows = sqlx::query_as(
        "SELECT operation, resource_type, resource, username FROM audit_log ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    rows
}

fn entry(op: &str, ty: &str, res: &str, who: &str) -> (String, String, String, String) {
    (op.into(), ty.into(), res.into(), who.into())
}

#[tokio::test]
async fn user_lifecycle() {
    let site = Site::start().await;
    let alice = create_user(&site, "alice").await;

    // The shape is Harbor's UserResp, with no password in it.
    let (s, u) = send(site.admin(Method::GET, &format!("/users/{alice}"))).await;
    assert_eq!(s, 200);
    let mut keys: Vec<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "admin_role_in_auth",
            "comment",
            "creation_time",
            "email",
            "realname",
            "sysadmin_flag",
            "update_time",
            "user_id",
            "username"
        ]
    );
    assert_eq!(u["username"], "alice");
    assert_eq!(u["email"], "alice@example.com");
    assert_eq!(u["sysadmin_flag"], false);
    assert!(chrono::DateTime::parse_from_rfc3339(u["creation_time"].as_str().unwrap()).is_ok());

    // Conflicts, whatever the case.
    for body in [
        json!({"username": "ALICE", "email": "other@example.com", "realname": "x", "password": PW}),
        json!({"username": "alice2", "email": "Alice@Example.com", "realname": "x", "password": PW}),
    ] {
        let (s, b) = send(site.admin(Method::POST, "/users").json(&body)).await;
        assert_eq!(s, 409, "{b}");
        assert_eq!(b["errors"][0]["code"], "CONFLICT");
    }

    // Bad input: 400 with a message a person can act on.
    for (body, needle) in [
        (
            json!({"username": "bob", "email": "bob@example.com", "realname": "Bob", "password": "weak"}),
            "password",
        ),
        (
            json!({"username": "bob", "email": "bob@example.com", "realname": "Bob"}),
            "password",
        ),
        (
            json!({"username": "bob", "email": "not-an-email", "realname": "Bob", "password": PW}),
            "email",
        ),
        (
            json!({"username": "bob", "realname": "Bob", "password": PW}),
            "email",
        ),
        (
            json!({"email": "bob@example.com", "realname": "Bob", "password": PW}),
            "username",
        ),
        (
            json!({"username": "bo$b", "email": "bob@example.com", "realname": "Bob", "password": PW}),
            "username",
        ),
        (
            json!({"username": "bob", "email": "bob@example.com", "password": PW}),
            "realname",
        ),
        (
            json!({"username": "bob", "email": "bob@example.com", "realname": "Bob", "password": PW,
                "comment": "x".repeat(31)}),
            "comment",
        ),
        (
            json!({"username": 7, "email": "bob@example.com", "realname": "Bob", "password": PW}),
            "invalid request body",
        ),
    ] {
        let (s, b) = send(site.admin(Method::POST, "/users").json(&body)).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert_eq!(b["errors"][0]["code"], "BAD_REQUEST");
        assert!(message(&b).contains(needle), "{body}: {b}");
    }
    let r = site
        .admin(Method::POST, "/users")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Who may do what.
    let (s, _) = send(site.http.post(site.api("/users")).json(&json!({}))).await;
    assert_eq!(s, 401);
    let (s, _) = send(site.as_user(Method::POST, "/users", "alice", PW).json(
        &json!({"username": "eve", "email": "eve@example.com", "realname": "Eve", "password": PW}),
    ))
    .await;
    assert_eq!(s, 403);
    let (s, me) = send(site.as_user(Method::GET, &format!("/users/{alice}"), "alice", PW)).await;
    assert_eq!(
        (s, me["username"].as_str()),
        (StatusCode::OK, Some("alice"))
    );
    let (s, _) = send(site.as_user(Method::GET, "/users/1", "alice", PW)).await;
    assert_eq!(s, 403);
    let (s, _) = send(site.http.get(site.api(&format!("/users/{alice}")))).await;
    assert_eq!(s, 401);
    let (s, b) = send(site.admin(Method::GET, "/users/abc")).await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = send(site.admin(Method::GET, "/users/999999")).await;
    assert_eq!(s, 404);

    // Profile updates: self or admin; a field left out keeps its value.
    let (s, _) = send(
        site.as_user(Method::PUT, &format!("/users/{alice}"), "alice", PW)
            .json(&json!({"realname": "Alice A.", "comment": "hi"})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, u) = send(site.admin(Method::GET, &format!("/users/{alice}"))).await;
    assert_eq!(
        (
            u["realname"].as_str(),
            u["comment"].as_str(),
            u["email"].as_str()
        ),
        (Some("Alice A."), Some("hi"), Some("alice@example.com"))
    );
    let bob = create_user(&site, "bob").await;
    let (s, _) = send(
        site.as_user(Method::PUT, &format!("/users/{bob}"), "alice", PW)
            .json(&json!({"comment": "pwned"})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(
        site.as_user(Method::PUT, &format!("/users/{alice}"), "alice", PW)
            .json(&json!({"email": "BOB@example.com"})),
    )
    .await;
    assert_eq!(s, 409);
    let (s, b) = send(
        site.admin(Method::PUT, &format!("/users/{bob}"))
            .json(&json!({"email": "bob@", "realname": "Bob"})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = send(
        site.admin(Method::PUT, &format!("/users/{bob}"))
            .json(&json!({"email": "robert@example.com"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(site.admin(Method::PUT, "/users/999999").json(&json!({}))).await;
    assert_eq!(s, 404);

    // Deletion: admin only, never yourself or the admin user.
    let (s, _) = send(site.as_user(Method::DELETE, &format!("/users/{bob}"), "alice", PW)).await;
    assert_eq!(s, 403);
    let (s, b) = send(site.admin(Method::DELETE, "/users/1")).await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = send(site.admin(Method::DELETE, &format!("/users/{bob}"))).await;
    assert_eq!(s, 200);
    let (s, _) = send(site.admin(Method::GET, &format!("/users/{bob}"))).await;
    assert_eq!(s, 404);
    let (s, _) = send(site.admin(Method::DELETE, &format!("/users/{bob}"))).await;
    assert_eq!(s, 404);
    // A deleted user's credentials stop working at once.
    let (s, _) = send(site.as_user(Method::GET, "/users/current", "bob", PW)).await;
    assert_eq!(s, 401);
    // The name is free again.
    create_user(&site, "bob").await;

    let log = audit(&site).await;
    for e in [
        entry("create", "user", "alice", "admin"),
        entry("update", "user", "alice", "alice"),
        entry("update", "user", "bob", "admin"),
        entry("delete", "user", "bob", "admin"),
    ] {
        assert!(log.contains(&e), "{e:?} in {log:?}");
    }
    // Refused changes leave no trace.
    assert!(!log.iter().any(|e| e.2 == "eve"));
}

#[tokio::test]
async fn admin_cannot_delete_itself_when_not_user_one() {
    let site = Site::start().await;
    let root = create_user(&site, "root").await;
    let (s, _) = send(
        site.admin(Method::PUT, &format!("/users/{root}/sysadmin"))
            .json(&json!({"sysadmin_flag": true})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = send(site.as_user(Method::DELETE, &format!("/users/{root}"), "root", PW)).await;
    assert_eq!(s, 403);
    assert!(message(&b).contains("yourself"), "{b}");
}

#[tokio::test]
async fn list_paginate_filter_sort_and_search() {
    let site = Site::start().await;
    // 150 users, created concurrently through the API.
    let names: Vec<String> = (0..150).map(|i| format!("user-{i:03}")).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in names.chunks(15) {
        let chunk = chunk.to_vec();
        let http = site.http.clone();
        let url = site.api("/users");
        tasks.spawn(async move {
            for name in chunk {
                let r = http
                    .post(&url)
                    .basic_auth("admin", Some(ADMIN_PASSWORD))
                    .json(
                        &json!({"username": name, "email": format!("{name}@wharf.test"),
                                  "realname": "Tester", "password": PW}),
                    )
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }

    // 151 with admin, in pages.
    let r = site
        .admin(Method::GET, "/users?page=1&page_size=100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-total-count"], "151");
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains("</api/v2.0/users?page=2&page_size=100>; rel=\"next\""),
        "{link}"
    );
    let page1: Vec<Value> = r.json().await.unwrap();
    assert_eq!(page1.len(), 100);
    assert_eq!(page1[0]["username"], "admin");
    let r = site
        .admin(Method::GET, "/users?page=2&page_size=100")
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains("rel=\"prev\"") && !link.contains("rel=\"next\""),
        "{link}"
    );
    let page2: Vec<Value> = r.json().await.unwrap();
    assert_eq!(page2.len(), 51);
    let mut all: Vec<i64> = page1
        .iter()
        .chain(&page2)
        .map(|u| u["user_id"].as_i64().unwrap())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 151, "pages do not overlap");
    // Default page size is 10.
    let r = site.admin(Method::GET, "/users").send().await.unwrap();
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 10);

    // q: fuzzy username, exact email, lists, ranges; the Link keeps q.
    let r = site
        .admin(Method::GET, "/users?q=username%3D~user-01&page_size=5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], "10");
    assert!(r.headers()["link"].to_str().unwrap().contains("q=username"));
    let (_, b) = send(site.admin(Method::GET, "/users?q=email%3Duser-042%40WHARF.test")).await;
    assert_eq!(b.as_array().unwrap().len(), 1);
    assert_eq!(b[0]["username"], "user-042");
    let (_, b) =
        send(site.admin(Method::GET, "/users?q=username%3D%7Buser-001%20user-149%7D")).await;
    assert_eq!(b.as_array().unwrap().len(), 2);
    let (_, b) = send(site.admin(Method::GET, "/users?q=sysadmin_flag%3Dtrue")).await;
    assert_eq!(b.as_array().unwrap().len(), 1);
    let (_, b) = send(site.admin(Method::GET, "/users?q=user_id%3D%5B2~4%5D")).await;
    assert_eq!(b.as_array().unwrap().len(), 3);
    let (_, b) = send(site.admin(
        Method::GET,
        "/users?q=creation_time%3D%5B2000-01-01%2000%3A00%3A00~%5D&page_size=1",
    ))
    .await;
    assert_eq!(b.as_array().unwrap().len(), 1);
    // Harbor's plain username/email parameters.
    let r = site
        .admin(Method::GET, "/users?email=user-14")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], "10");

    // Sort.
    let (_, b) = send(site.admin(Method::GET, "/users?sort=-username&page_size=2")).await;
    assert_eq!(b[0]["username"], "user-149");
    assert_eq!(b[1]["username"], "user-148");
    let (_, b) = send(site.admin(Method::GET, "/users?sort=username&page_size=1")).await;
    assert_eq!(b[0]["username"], "admin");

    // Bad lists.
    for (q, needle) in [
        ("q=password%3Dx", "cannot filter"),
        ("q=username", "invalid q term"),
        ("q=user_id%3Dabc", "integer"),
        ("sort=password", "cannot sort"),
        ("page=0", "page"),
        ("page_size=101", "page_size"),
        ("page=x", "invalid query"),
    ] {
        let (s, b) = send(site.admin(Method::GET, &format!("/users?{q}"))).await;
        assert_eq!(s, 400, "{q}: {b}");
        assert!(message(&b).contains(needle), "{q}: {b}");
    }
    let (s, _) = send(site.as_user(Method::GET, "/users", "user-001", PW)).await;
    assert_eq!(s, 403);
    let (s, _) = send(site.http.get(site.api("/users"))).await;
    assert_eq!(s, 401);

    // Search: any signed-in user, ids and names only.
    let r = site
        .as_user(
            Method::GET,
            "/users/search?username=user-12&page_size=3",
            "user-001",
            PW,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-total-count"], "10");
    let found: Vec<Value> = r.json().await.unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(found[0]["username"], "user-120");
    let keys: Vec<&String> = found[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["user_id", "username"]);
    let (s, _) = send(site.as_user(Method::GET, "/users/search", "user-001", PW)).await;
    assert_eq!(s, 400);
    let (s, _) = send(site.http.get(site.api("/users/search?username=user"))).await;
    assert_eq!(s, 401);
    // LIKE wildcards are taken literally.
    let (_, b) = send(site.admin(Method::GET, "/users/search?username=user_0")).await;
    assert_eq!(b.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn password_rules() {
    let site = Site::start().await;
    let alice = create_user(&site, "alice").await;
    let bob = create_user(&site, "bob").await;
    let path = format!("/users/{alice}/password");
    let change =
        |user: &str, pw: &str, body: Value| site.as_user(Method::PUT, &path, user, pw).json(&body);

    // Changing your own password needs the current one.
    let (s, b) = send(change("alice", PW, json!({"new_password": "Newpass123"}))).await;
    assert_eq!(s, 400, "{b}");
    assert!(message(&b).contains("old_password"));
    let (s, b) = send(change(
        "alice",
        PW,
        json!({"old_password": "Wrong1234", "new_password": "Newpass123"}),
    ))
    .await;
    assert_eq!(s, 403, "{b}");
    assert!(message(&b).contains("incorrect"));
    let (s, b) = send(change(
        "alice",
        PW,
        json!({"old_password": PW, "new_password": PW}),
    ))
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(message(&b).contains("differ"));
    let (s, b) = send(change(
        "alice",
        PW,
        json!({"old_password": PW, "new_password": "short"}),
    ))
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(message(&b).contains("8 to 128"));
    let (s, _) = send(change("alice", PW, json!({"old_password": PW}))).await;
    assert_eq!(s, 400);

    // Warm the credential cache with the old password, then change it.
    let (s, _) = send(site.as_user(Method::GET, "/users/current", "alice", PW)).await;
    assert_eq!(s, 200);
    let (s, _) = send(change(
        "alice",
        PW,
        json!({"old_password": PW, "new_password": "Newpass123"}),
    ))
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(site.as_user(Method::GET, "/users/current", "alice", PW)).await;
    assert_eq!(s, 401, "the old password stops working at once");
    let (s, _) = send(site.as_user(Method::GET, "/users/current", "alice", "Newpass123")).await;
    assert_eq!(s, 200);

    // Others: only an admin, and without the old password.
    let (s, _) = send(
        site.as_user(
            Method::PUT,
            &format!("/users/{bob}/password"),
            "alice",
            "Newpass123",
        )
        .json(&json!({"old_password": PW, "new_password": "Hacked123"})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(
        site.admin(Method::PUT, &path)
            .json(&json!({"new_password": "Admin5et1"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(site.as_user(Method::GET, "/users/current", "alice", "Admin5et1")).await;
    assert_eq!(s, 200);
    // An admin changing their own password gives the old one too.
    let (s, _) = send(
        site.admin(Method::PUT, "/users/1/password")
            .json(&json!({"new_password": "Other1234"})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = send(
        site.admin(Method::PUT, "/users/999999/password")
            .json(&json!({"new_password": "Other1234"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = send(
        site.admin(Method::PUT, "/users/x/password")
            .json(&json!({"new_password": "Other1234"})),
    )
    .await;
    assert_eq!(s, 400);

    let log = audit(&site).await;
    assert!(log.contains(&entry("update", "user", "alice", "alice")));
    assert!(log.contains(&entry("update", "user", "alice", "admin")));
}

#[tokio::test]
async fn sysadmin_flag() {
    let site = Site::start().await;
    let bob = create_user(&site, "bob").await;
    let path = format!("/users/{bob}/sysadmin");
    let (s, _) = send(site.as_user(Method::GET, "/users", "bob", PW)).await;
    assert_eq!(s, 403);
    let (s, _) = send(
        site.as_user(Method::PUT, &path, "bob", PW)
            .json(&json!({"sysadmin_flag": true})),
    )
    .await;
    assert_eq!(s, 403);

    let (s, _) = send(
        site.admin(Method::PUT, &path)
            .json(&json!({"sysadmin_flag": true})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(site.as_user(Method::GET, "/users", "bob", PW)).await;
    assert_eq!(s, 200, "takes effect at once, cached credentials or not");
    let (_, me) = send(site.as_user(Method::GET, "/users/current", "bob", PW)).await;
    assert_eq!(me["sysadmin_flag"], true);
    // An admin cannot demote the admin user or themself.
    let (s, _) = send(
        site.as_user(Method::PUT, "/users/1/sysadmin", "bob", PW)
            .json(&json!({"sysadmin_flag": false})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(
        site.as_user(Method::PUT, &path, "bob", PW)
            .json(&json!({"sysadmin_flag": false})),
    )
    .await;
    assert_eq!(s, 403);

    let (s, _) = send(
        site.admin(Method::PUT, &path)
            .json(&json!({"sysadmin_flag": false})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(site.as_user(Method::GET, "/users", "bob", PW)).await;
    assert_eq!(s, 403);

    let (s, _) = send(site.admin(Method::PUT, &path).json(&json!({}))).await;
    assert_eq!(s, 400);
    let (s, _) = send(
        site.admin(Method::PUT, &path)
            .json(&json!({"sysadmin_flag": "yes"})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = send(
        site.admin(Method::PUT, "/users/999999/sysadmin")
            .json(&json!({"sysadmin_flag": true})),
    )
    .await;
    assert_eq!(s, 404);
    let log = audit(&site).await;
    assert_eq!(
        log.iter()
            .filter(|e| e.0 == "update" && e.2 == "bob")
            .count(),
        2,
        "{log:?}"
    );
}

#[tokio::test]
async fn current_user_and_permissions() {
    let site = Site::start().await;
    create_user(&site, "carol").await;
    let (s, me) = send(site.admin(Method::GET, "/users/current")).await;
    assert_eq!(s, 200);
    assert_eq!(
        (me["user_id"].as_i64(), me["username"].as_str()),
        (Some(1), Some("admin"))
    );
    assert_eq!(me["sysadmin_flag"], true);
    let (s, b) = send(site.http.get(site.api("/users/current"))).await;
    assert_eq!(s, 401);
    assert_eq!(b["errors"][0]["code"], "UNAUTHORIZED");

    let (s, perms) = send(site.admin(
        Method::GET,
        "/users/current/permissions?scope=/system&relative=true",
    ))
    .await;
    assert_eq!(s, 200);
    let perms = perms.as_array().unwrap();
    assert!(perms.contains(&json!({"resource": "user", "action": "create"})));
    assert!(perms.contains(&json!({"resource": "robot", "action": "create"})));
    let (_, perms) =
        send(site.admin(Method::GET, "/users/current/permissions?scope=/system")).await;
    assert!(perms
        .as_array()
        .unwrap()
        .contains(&json!({"resource": "/system/user", "action": "list"})));
    let (_, perms) = send(site.as_user(
        Method::GET,
        "/users/current/permissions?scope=/system&relative=true",
        "carol",
        PW,
    ))
    .await;
    assert_eq!(perms, json!([]));
    let (s, _) = send(site.admin(Method::GET, "/users/current/permissions?scope=/galaxy")).await;
    assert_eq!(s, 400);
    let (s, _) =
        send(site.admin(Method::GET, "/users/current/permissions?scope=/project/abc")).await;
    assert_eq!(s, 400);
    let (s, _) = send(site.admin(Method::GET, "/users/current/permissions?relative=maybe")).await;
    assert_eq!(s, 400);
    let (s, _) = send(site.http.get(site.api("/users/current/permissions"))).await;
    assert_eq!(s, 401);
    // A project that does not exist grants nothing.
    let (s, perms) = send(site.admin(
        Method::GET,
        "/users/current/permissions?scope=/project/99999&relative=true",
    ))
    .await;
    assert_eq!((s, perms), (StatusCode::OK, json!([])));
}
