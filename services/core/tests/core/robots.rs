//! Robot accounts: system and project level, who may manage them, the
//! secret shown once and refreshed, disable and expiry, bad input, audit.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::*;
use crate::users::{audit, create_user, message, send, PW};

/// Creates a robot as admin; returns (id, full name, secret).
async fn create_robot(site: &Site, body: Value) -> (i64, String, String) {
    let r = site
        .admin(Method::POST, "/robots")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let b: Value = r.json().await.unwrap();
    let id = b["id"].as_i64().unwrap();
    assert_eq!(loc, format!("/api/v2.0/robots/{id}"));
    (
        id,
        b["name"].as_str().unwrap().to_owned(),
        b["secret"].as_str().unwrap().to_owned(),
    )
}

/// The status a robot's credentials get on an authenticated API call.
async fn robot_status(site: &Site, name: &str, secret: &str) -> StatusCode {
    site.as_user(Method::GET, "/users/current/permissions", name, secret)
        .send()
        .await
        .unwrap()
        .status()
}

fn pull_all() -> Value {
    json!([{"kind": "project", "namespace": "*", "access": [{"resource": "repository", "action": "pull"}]}])
}

async fn project(site: &Site, name: &str, public: bool) -> i64 {
    let r = site
        .admin(Method::POST, "/projects")
        .json(&json!({"project_name": name, "metadata": {"public": public.to_string()}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    loc.rsplit('/').next().unwrap().parse().unwrap()
}

async fn member(site: &Site, project: &str, username: &str, role: i32) {
    let r = site
        .admin(Method::POST, &format!("/projects/{project}/members"))
        .header("X-Is-Resource-Name", "true")
        .json(&json!({"role_id": role, "member_user": {"username": username}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn system_robot_lifecycle() {
    let site = Site::start().await;
    let before = chrono::Utc::now().timestamp();
    let (id, name, secret) = create_robot(
        &site,
        json!({"name": "ci", "description": "CI pulls", "level": "system", "duration": -1,
               "permissions": [
                   {"kind": "project", "namespace": "*", "access": [{"resource": "repository", "action": "pull"}]},
                   {"kind": "system", "namespace": "/", "access": [{"resource": "user", "action": "list"},
                                                                   {"resource": "audit-log", "action": "list"}]}]}),
    )
    .await;
    assert_eq!(name, "robot$ci");
    assert_eq!(secret.len(), 32);
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(secret.chars().any(|c| c.is_ascii_uppercase()));
    assert!(secret.chars().any(|c| c.is_ascii_lowercase()));
    assert!(secret.chars().any(|c| c.is_ascii_digit()));

    // The robot as Harbor shows it: never its secret.
    let (s, r) = send(site.admin(Method::GET, &format!("/robots/{id}"))).await;
    assert_eq!(s, 200);
    assert!(r.get("secret").is_none(), "{r}");
    assert_eq!(r["name"], "robot$ci");
    assert_eq!(r["description"], "CI pulls");
    assert_eq!(r["level"], "system");
    assert_eq!(
        (r["duration"].as_i64(), r["expires_at"].as_i64()),
        (Some(-1), Some(-1))
    );
    assert_eq!(
        (r["editable"].as_bool(), r["disable"].as_bool()),
        (Some(true), Some(false))
    );
    let created =
        chrono::DateTime::parse_from_rfc3339(r["creation_time"].as_str().unwrap()).unwrap();
    assert!(created.timestamp() >= before - 1);
    assert_eq!(
        r["permissions"],
        json!([
            {"kind": "project", "namespace": "*", "access": [{"resource": "repository", "action": "pull"}]},
            {"kind": "system", "namespace": "/", "access": [{"resource": "audit-log", "action": "list"},
                                                            {"resource": "user", "action": "list"}]}
        ])
    );

    // A robot authenticates with basic credentials, but is no user.
    let (s, info) = send(site.as_user(Method::GET, "/systeminfo", &name, &secret)).await;
    assert_eq!(s, 200);
    assert!(
        info.get("registry_url").is_some(),
        "authenticated view: {info}"
    );
    let (s, b) = send(site.as_user(Method::GET, "/users/current", &name, &secret)).await;
    assert_eq!(s, 412, "{b}");
    assert!(message(&b).contains("robot account"), "{b}");
    let (s, perms) = send(site.as_user(
        Method::GET,
        "/users/current/permissions?scope=/system&relative=true",
        &name,
        &secret,
    ))
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        perms,
        json!([{"resource": "audit-log", "action": "list"}, {"resource": "user", "action": "list"}])
    );
    let (s, _) = send(
        site.as_user(Method::POST, "/robots", &name, &secret)
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(site.as_user(Method::GET, &format!("/robots/{id}"), &name, &secret)).await;
    assert_eq!(s, 403);
    let (s, _) = send(
        site.as_user(Method::PUT, "/users/1/password", &name, &secret)
            .json(&json!({"new_password": "Robot1234"})),
    )
    .await;
    assert_eq!(s, 403);

    // Names are unique.
    let (s, b) =
        send(site.admin(Method::POST, "/robots").json(
            &json!({"name": "ci", "level": "system", "duration": 5, "permissions": pull_all()}),
        ))
        .await;
    assert_eq!(s, 409, "{b}");

    // Listing: system robots by default.
    create_robot(
        &site,
        json!({"name": "nightly", "level": "system", "permissions": pull_all()}),
    )
    .await;
    let r = site.admin(Method::GET, "/robots").send().await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "2");
    let list: Vec<Value> = r.json().await.unwrap();
    assert_eq!(list[0]["name"], "robot$ci");
    assert!(list.iter().all(|r| r.get("secret").is_none()));
    assert_eq!(
        list[1]["duration"], 30,
        "duration 0 or none is Harbor's default, 30 days"
    );
    for (q, n) in [
        ("q=name%3Dci", 1),
        ("q=name%3Drobot%24ci", 1),
        ("q=name%3D~ight", 1),
        ("q=Level%3Dsystem", 2),
        ("q=name%3D%7Bci%20nightly%7D", 2),
    ] {
        let (s, b) = send(site.admin(Method::GET, &format!("/robots?{q}"))).await;
        assert_eq!(s, 200, "{q}: {b}");
        assert_eq!(b.as_array().unwrap().len(), n, "{q}: {b}");
    }
    let (_, b) = send(site.admin(Method::GET, "/robots?sort=-name&page_size=1")).await;
    assert_eq!(b[0]["name"], "robot$nightly");

    // Refreshing: the old secret stops working at once (even if cached).
    let old = secret.clone();
    assert_eq!(robot_status(&site, &name, &old).await, 200);
    let (s, b) = send(
        site.admin(Method::PATCH, &format!("/robots/{id}"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let fresh = b["secret"].as_str().unwrap().to_owned();
    assert_ne!(fresh, old);
    assert_eq!(robot_status(&site, &name, &old).await, 401);
    assert_eq!(robot_status(&site, &name, &fresh).await, 200);
    // A chosen secret must meet the policy, and is not echoed.
    let (s, b) = send(
        site.admin(Method::PATCH, &format!("/robots/{id}"))
            .json(&json!({"secret": "weak"})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = send(
        site.admin(Method::PATCH, &format!("/robots/{id}"))
            .json(&json!({"secret": "Chosen1234"})),
    )
    .await;
    assert_eq!((s, b), (StatusCode::OK, json!({"secret": ""})));
    assert_eq!(robot_status(&site, &name, &fresh).await, 401);
    assert_eq!(robot_status(&site, &name, "Chosen1234").await, 200);

    // Disable, then enable again (Harbor clients send the whole robot back).
    let (_, mut whole) = send(site.admin(Method::GET, &format!("/robots/{id}"))).await;
    whole["disable"] = json!(true);
    let (s, b) = send(
        site.admin(Method::PUT, &format!("/robots/{id}"))
            .json(&whole),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(robot_status(&site, &name, "Chosen1234").await, 401);
    let (s, _) = send(
        site.admin(Method::PUT, &format!("/robots/{id}"))
            .json(&json!({"disable": false})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(robot_status(&site, &name, "Chosen1234").await, 200);

    // Updates: permissions, description, duration; never level or name.
    let (s, _) = send(site.admin(Method::PUT, &format!("/robots/{id}")).json(&json!({
        "description": "now pushes", "duration": 2,
        "permissions": [{"kind": "project", "namespace": "*", "access": [
            {"resource": "repository", "action": "pull"}, {"resource": "repository", "action": "push"}]}]}))).await;
    assert_eq!(s, 200);
    let (_, r) = send(site.admin(Method::GET, &format!("/robots/{id}"))).await;
    assert_eq!(r["description"], "now pushes");
    assert_eq!(r["duration"], 2);
    assert_eq!(
        r["expires_at"].as_i64().unwrap(),
        created.timestamp() + 2 * 86_400
    );
    assert_eq!(r["permissions"][0]["access"].as_array().unwrap().len(), 2);
    assert_eq!(r["permissions"].as_array().unwrap().len(), 1);
    for body in [
        json!({"name": "renamed"}),
        json!({"level": "project"}),
        json!({"permissions": []}),
        json!({"duration": -7}),
    ] {
        let (s, b) = send(
            site.admin(Method::PUT, &format!("/robots/{id}"))
                .json(&body),
        )
        .await;
        assert_eq!(s, 400, "{body}: {b}");
    }

    // Users who are not admins see nothing of system robots.
    create_user(&site, "frank").await;
    let (s, _) = send(site.as_user(Method::GET, &format!("/robots/{id}"), "frank", PW)).await;
    assert_eq!(s, 403);
    let (s, _) = send(site.as_user(Method::GET, "/robots", "frank", PW)).await;
    assert_eq!(s, 403);
    let (s, _) = send(
        site.as_user(Method::PATCH, &format!("/robots/{id}"), "frank", PW)
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(site.http.get(site.api(&format!("/robots/{id}")))).await;
    assert_eq!(s, 401);

    // Delete.
    let (s, _) = send(site.as_user(Method::DELETE, &format!("/robots/{id}"), "frank", PW)).await;
    assert_eq!(s, 403);
    let (s, _) = send(site.admin(Method::DELETE, &format!("/robots/{id}"))).await;
    assert_eq!(s, 200);
    assert_eq!(robot_status(&site, &name, "Chosen1234").await, 401);
    let (s, _) = send(site.admin(Method::GET, &format!("/robots/{id}"))).await;
    assert_eq!(s, 404);
    let (s, _) = send(site.admin(Method::DELETE, &format!("/robots/{id}"))).await;
    assert_eq!(s, 404);

    let log = audit(&site).await;
    let robot_log: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e.1 == "robot" && e.2 == "robot$ci")
        .map(|e| (e.0.as_str(), e.3.as_str()))
        .collect();
    // create, refresh, refresh, disable, enable, update, delete.
    assert_eq!(
        robot_log,
        [
            ("create", "admin"),
            ("update", "admin"),
            ("update", "admin"),
            ("update", "admin"),
            ("update", "admin"),
            ("update", "admin"),
            ("delete", "admin")
        ]
    );
}

#[tokio::test]
async fn disabled_and_expired_robots_cannot_authenticate() {
    let site = Site::start().await;
    let (_, name, secret) = create_robot(
        &site,
        json!({"name": "off", "level": "system", "disable": true, "permissions": pull_all()}),
    )
    .await;
    assert_eq!(robot_status(&site, &name, &secret).await, 401);

    let (id, name, secret) = create_robot(
        &site,
        json!({"name": "short-lived", "level": "system", "duration": 1, "permissions": pull_all()}),
    )
    .await;
    assert_eq!(robot_status(&site, &name, &secret).await, 200);
    // A day later (the clock is moved by rewriting the expiry).
    let db = site.db.connect().await;
    sqlx::query(
        "UPDATE robot SET expires_at = extract(epoch from now())::bigint - 1 WHERE id = $1",
    )
    .bind(id)
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    assert_eq!(robot_status(&site, &name, &secret).await, 401);
    let r = site
        .http
        .get(format!(
            "{}/service/token?service=harbor-registry&scope=repository:library/x:pull",
            site.core
        ))
        .basic_auth(&name, Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "nor at the token service");
}

#[tokio::test]
async fn bad_robot_requests() {
    let site = Site::start().await;
    let pull = pull_all();
    for (body, needle) in [
        (json!({"level": "system", "permissions": pull}), "name"),
        (
            json!({"name": "Bad+Name", "level": "system", "permissions": pull}),
            "name",
        ),
        (
            json!({"name": "UPPER", "level": "system", "permissions": pull}),
            "name",
        ),
        (json!({"name": "ok", "permissions": pull}), "level"),
        (
            json!({"name": "ok", "level": "galaxy", "permissions": pull}),
            "level",
        ),
        (
            json!({"name": "ok", "level": "system", "duration": -5, "permissions": pull}),
            "duration",
        ),
        (json!({"name": "ok", "level": "system"}), "permissions"),
        (
            json!({"name": "ok", "level": "system", "permissions": []}),
            "permissions",
        ),
        (
            json!({"name": "ok", "level": "system", "permissions": [{"kind": "project", "namespace": "*", "access": []}]}),
            "access",
        ),
        (
            json!({"name": "ok", "level": "system", "permissions": [{"kind": "project", "namespace": "*",
            "access": [{"resource": "repository", "action": "fly"}]}]}),
            "unknown",
        ),
        (
            json!({"name": "ok", "level": "system", "permissions": [{"kind": "system", "namespace": "/",
            "access": [{"resource": "repository", "action": "pull"}]}]}),
            "unknown",
        ),
        (
            json!({"name": "ok", "level": "system", "permissions": [{"kind": "galaxy", "namespace": "*",
            "access": [{"resource": "repository", "action": "pull"}]}]}),
            "kind",
        ),
        (
            json!({"name": "ok", "level": "project", "permissions": pull}),
            "namespace",
        ),
        (
            json!({"name": "ok", "level": "system", "secret": "weak", "permissions": pull}),
            "password",
        ),
        (
            json!({"name": "ok", "level": "system", "duration": "forever", "permissions": pull}),
            "invalid request body",
        ),
    ] {
        let (s, b) = send(site.admin(Method::POST, "/robots").json(&body)).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert!(message(&b).contains(needle), "{body}: {b}");
    }
    let (s, b) = send(site.admin(Method::POST, "/robots").json(&json!({"name": "ok", "level": "system",
        "permissions": [{"kind": "project", "namespace": "nope", "access": [{"resource": "repository", "action": "pull"}]}]}))).await;
    assert_eq!(s, 404, "{b}");
    let (s, _) = send(site.admin(Method::POST, "/robots").json(&json!({"name": "ok", "level": "project",
        "permissions": [{"kind": "project", "namespace": "nope", "access": [{"resource": "repository", "action": "pull"}]}]}))).await;
    assert_eq!(s, 404);
    let (s, _) = send(site.http.post(site.api("/robots")).json(&json!({}))).await;
    assert_eq!(s, 401);

    for m in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        let (s, _) = send(site.admin(m.clone(), "/robots/abc").json(&json!({}))).await;
        assert_eq!(s, 400, "{m}");
        let (s, _) = send(site.admin(m.clone(), "/robots/999999").json(&json!({}))).await;
        assert_eq!(s, 404, "{m}");
    }
    let r = site
        .admin(Method::PATCH, "/robots/1")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for q in [
        "q=Level%3Dgalaxy",
        "q=Level%3Dproject",
        "q=Level%3Dproject,ProjectID%3Dx",
        "q=color%3Dred",
        "sort=secret",
    ] {
        let (s, b) = send(site.admin(Method::GET, &format!("/robots?{q}"))).await;
        assert_eq!(s, 400, "{q}: {b}");
    }
    let (s, _) = send(site.admin(Method::GET, "/robots?q=Level%3Dproject,ProjectID%3D99999")).await;
    assert_eq!(s, 404);
    // Nothing was written by any of it.
    assert!(audit(&site).await.iter().all(|e| e.1 != "robot"));
}

#[tokio::test]
async fn project_robots_and_their_managers() {
    let site = Site::start().await;
    let p1 = project(&site, "p1", false).await;
    project(&site, "p2", false).await;
    project(&site, "open", true).await;
    for u in ["alice", "dan", "carol"] {
        create_user(&site, u).await;
    }
    member(&site, "p1", "alice", 1).await; // projectAdmin
    member(&site, "p1", "dan", 2).await; // developer
    let body = |name: &str, ns: &str| {
        json!({"name": name, "level": "project", "duration": 7,
               "permissions": [{"kind": "project", "namespace": ns, "access": [
                   {"resource": "repository", "action": "push"}, {"resource": "repository", "action": "pull"}]}]})
    };

    // A project admin creates robots for their project.
    let r = site
        .as_user(Method::POST, "/robots", "alice", PW)
        .json(&body("builder", "p1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["name"], "robot$p1+builder");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let in_a_week = chrono::Utc::now().timestamp() + 7 * 86_400;
    assert!((created["expires_at"].as_i64().unwrap() - in_a_week).abs() < 60);
    assert_eq!(robot_status(&site, "robot$p1+builder", &secret).await, 200);

    // Others may not: a developer (403), an outsider to a private project
    // (404: it does not exist for them), an outsider to a public one (403).
    let (s, _) = send(
        site.as_user(Method::POST, "/robots", "dan", PW)
            .json(&body("dev", "p1")),
    )
    .await;
    assert_eq!(s, 403);
    let (s, b) = send(
        site.as_user(Method::POST, "/robots", "carol", PW)
            .json(&body("x", "p1")),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    let (s, _) = send(
        site.as_user(Method::POST, "/robots", "carol", PW)
            .json(&body("x", "open")),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(
        site.as_user(Method::POST, "/robots", "alice", PW)
            .json(&body("x", "p2")),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = send(
        site.as_user(Method::POST, "/robots", "alice", PW)
            .json(&json!({"name": "sys", "level": "system", "permissions": pull_all()})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(
        site.as_user(Method::POST, "/robots", "alice", PW)
            .json(&body("builder", "p1")),
    )
    .await;
    assert_eq!(s, 409);
    // A project robot has one permission entry, for its own project.
    let (s, _) = send(site.as_user(Method::POST, "/robots", "alice", PW).json(&json!({"name": "two", "level": "project",
        "permissions": [
            {"kind": "project", "namespace": "p1", "access": [{"resource": "repository", "action": "pull"}]},
            {"kind": "project", "namespace": "p2", "access": [{"resource": "repository", "action": "pull"}]}]}))).await;
    assert_eq!(s, 400);

    // Listing a project's robots: members from guest up; outsiders get 404.
    let q = format!("/robots?q=Level%3Dproject,ProjectID%3D{p1}");
    for who in ["alice", "dan"] {
        let r = site.as_user(Method::GET, &q, who, PW).send().await.unwrap();
        assert_eq!(r.status(), 200, "{who}");
        assert_eq!(r.headers()["x-total-count"], "1");
        let list: Vec<Value> = r.json().await.unwrap();
        assert_eq!(list[0]["name"], "robot$p1+builder");
        assert_eq!(list[0]["level"], "project");
    }
    let (s, b) = send(site.admin(Method::GET, &format!("{q},name%3Dbuilder"))).await;
    assert_eq!((s, b.as_array().unwrap().len()), (StatusCode::OK, 1));
    let (s, _) = send(site.as_user(Method::GET, &q, "carol", PW)).await;
    assert_eq!(s, 404);
    let (s, _) = send(site.as_user(Method::GET, "/robots", "alice", PW)).await;
    assert_eq!(s, 403, "system robots are for system admins");
    let (_, sys) = send(site.admin(Method::GET, "/robots")).await;
    assert_eq!(sys, json!([]), "project robots are not system robots");
    let (s, r) = send(site.as_user(Method::GET, &format!("/robots/{id}"), "dan", PW)).await;
    assert_eq!(s, 200);
    assert_eq!(r["permissions"][0]["namespace"], "p1");
    let (s, _) = send(site.as_user(Method::GET, &format!("/robots/{id}"), "carol", PW)).await;
    assert_eq!(s, 404);

    // Managing it: the project admin, not the developer.
    let (s, _) = send(
        site.as_user(Method::PATCH, &format!("/robots/{id}"), "dan", PW)
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, b) = send(
        site.as_user(Method::PATCH, &format!("/robots/{id}"), "alice", PW)
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 200);
    let secret = b["secret"].as_str().unwrap().to_owned();
    assert_eq!(robot_status(&site, "robot$p1+builder", &secret).await, 200);
    let (s, b) = send(
        site.as_user(Method::PUT, &format!("/robots/{id}"), "alice", PW)
            .json(&body("builder", "p2")),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = send(site.as_user(Method::PUT, &format!("/robots/{id}"), "alice", PW)
        .json(&json!({"name": "robot$p1+builder", "level": "project", "description": "pushes p1"}))).await;
    assert_eq!(s, 200);
    let (s, _) = send(
        site.as_user(Method::PUT, &format!("/robots/{id}"), "dan", PW)
            .json(&json!({"disable": true})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(site.as_user(Method::DELETE, &format!("/robots/{id}"), "dan", PW)).await;
    assert_eq!(s, 403);
    let (s, _) = send(site.as_user(Method::DELETE, &format!("/robots/{id}"), "alice", PW)).await;
    assert_eq!(s, 200);
    assert_eq!(robot_status(&site, "robot$p1+builder", &secret).await, 401);

    // The audit entries belong to the project.
    let db = site.db.connect().await;
    let rows: Vec<(Option<i64>, String, String)> = sqlx::query_as(
        "SELECT project_id, operation, username FROM audit_log WHERE resource = 'robot$p1+builder' ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    let expect: Vec<(Option<i64>, String, String)> = ["create", "update", "update", "delete"]
        .iter()
        .map(|op| (Some(p1), (*op).to_owned(), "alice".to_owned()))
        .collect();
    assert_eq!(rows, expect);
}
