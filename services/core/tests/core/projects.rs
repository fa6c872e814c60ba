//! Projects, their metadata, members and summary through the API.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::json;

use crate::support::*;
use crate::tenants::*;

#[tokio::test]
async fn library_at_first_start_and_project_lifecycle() {
    let mut site = Site::start().await;
    // Harbor's public `library`, owned by admin, visible to anyone.
    let (status, lib) = get_json(site.http.get(site.api("/projects/library"))).await;
    assert_eq!(status, 200, "{lib}");
    assert_eq!(lib["name"], "library");
    assert_eq!(lib["owner_name"], "admin");
    assert_eq!(lib["metadata"]["public"], "true");
    assert_eq!(lib["repo_count"], 0);

    let r = site
        .admin(Method::POST, "/projects")
        .json(&json!({"project_name": "team-a", "metadata": {"public": "false", "auto_scan": "true"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let id = id_from_location(&r);
    assert_eq!(loc, format!("/api/v2.0/projects/{id}"));
    let r = site
        .admin(Method::POST, "/projects")
        .header("X-Resource-Name-In-Location", "true")
        .json(&json!({"project_name": "team-b", "public": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/api/v2.0/projects/team-b");

    // Duplicates and bad names.
    let (status, body) = get_json(
        site.admin(Method::POST, "/projects")
            .json(&json!({"project_name": "team-a"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["code"], "CONFLICT");
    for bad in ["Team", "-x", "x-", "a..b", "a/b", "", &"a".repeat(256)] {
        let (status, body) = get_json(
            site.admin(Method::POST, "/projects")
                .json(&json!({"project_name": bad})),
        )
        .await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["errors"][0]["code"], "BAD_REQUEST");
    }
    let (status, body) = get_json(
        site.admin(Method::POST, "/projects")
            .json(&json!({"project_name": "x", "metadata": {"prevent_vul": "true"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("prevent_vul"), "{body}");
    let (status, _) = get_json(
        site.admin(Method::POST, "/projects")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, 400);
    // Anonymous callers cannot create.
    let r = site
        .http
        .post(site.api("/projects"))
        .json(&json!({"project_name": "anon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // HEAD by name.
    let head = |name: &str| {
        site.admin(Method::HEAD, &format!("/projects?project_name={name}"))
            .send()
    };
    assert_eq!(head("team-a").await.unwrap().status(), 200);
    assert_eq!(head("nothere").await.unwrap().status(), 404);

    // Get by id, by name; a numeric name needs X-Is-Resource-Name.
    let (status, p) = get_json(site.admin(Method::GET, &format!("/projects/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(p["name"], "team-a");
    assert_eq!(p["project_id"], id);
    assert_eq!(
        p["metadata"],
        json!({"public": "false", "auto_scan": "true"})
    );
    assert_eq!(p["current_user_role_id"], 1, "the creator is projectAdmin");
    assert_eq!(p["current_user_role_ids"], json!([1]));
    assert!(p["creation_time"].as_str().unwrap().ends_with('Z'));
    let (status, _) = get_json(site.admin(Method::GET, "/projects/team-a")).await;
    assert_eq!(status, 200);
    project(&site, "4242", false).await;
    let (status, _) = get_json(site.admin(Method::GET, "/projects/4242")).await;
    assert_eq!(status, 404, "numeric means an id");
    let (status, p) = get_json(
        site.admin(Method::GET, "/projects/4242")
            .header("X-Is-Resource-Name", "true"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(p["name"], "4242");

    // Update metadata the way Harbor's portal does: every key, features Wharf
    // lacks switched off.
    let r = site
        .admin(Method::PUT, &format!("/projects/{id}"))
        .json(
            &json!({"metadata": {"public": "true", "enable_content_trust": "false",
            "enable_content_trust_cosign": "false", "prevent_vul": "false", "severity": "low",
            "auto_scan": "false", "reuse_sys_cve_allowlist": "true"},
            "cve_allowlist": {"items": [], "expires_at": null}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (_, p) = get_json(site.http.get(site.api(&format!("/projects/{id}")))).await;
    assert_eq!(
        p["metadata"],
        json!({"public": "true", "auto_scan": "false"})
    );
    let (status, body) = get_json(
        site.admin(Method::PUT, &format!("/projects/{id}"))
            .json(&json!({"metadata": {"colour": "blue"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let (status, body) = get_json(
        site.admin(Method::PUT, &format!("/projects/{id}"))
            .json(&json!({"metadata": {"public": "maybe"}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // /metadatas.
    let base = format!("/projects/{id}/metadatas");
    let (status, md) = get_json(site.admin(Method::GET, &format!("{base}/"))).await;
    assert_eq!(status, 200);
    assert_eq!(md, json!({"public": "true", "auto_scan": "false"}));
    let (status, _) = get_json(
        site.admin(Method::POST, &format!("{base}/"))
            .json(&json!({"auto_scan": "true"})),
    )
    .await;
    assert_eq!(status, 409, "exists already");
    let r = site
        .admin(Method::PUT, &format!("{base}/public"))
        .json(&json!({"public": "false"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, md) = get_json(site.admin(Method::GET, &format!("{base}/public"))).await;
    assert_eq!((status, md), (200, json!({"public": "false"})));
    let (status, _) = get_json(
        site.admin(Method::PUT, &format!("{base}/public"))
            .json(&json!({"auto_scan": "false"})),
    )
    .await;
    assert_eq!(status, 400, "the key must match the path");
    let r = site
        .admin(Method::DELETE, &format!("{base}/auto_scan"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = get_json(site.admin(Method::GET, &format!("{base}/auto_scan"))).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(
        site.admin(Method::POST, &base)
            .json(&json!({"auto_scan": "true"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = get_json(site.admin(Method::DELETE, &format!("{base}/public"))).await;
    assert_eq!(status, 400);

    // Summary.
    let (status, s) = get_json(site.admin(Method::GET, &format!("/projects/{id}/summary"))).await;
    assert_eq!(status, 200);
    assert_eq!(s["repo_count"], 0);
    assert_eq!(s["project_admin_count"], 1);
    assert_eq!(s["developer_count"], 0);
    assert_eq!(
        s["quota"],
        json!({"hard": {"storage": -1}, "used": {"storage": 0}})
    );

    // Delete; then it is gone, and a restart does not bring it (or a
    // deleted library) back.
    let r = site
        .admin(Method::DELETE, &format!("/projects/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = get_json(site.admin(Method::GET, &format!("/projects/{id}"))).await;
    assert_eq!(status, 404);
    let r = site
        .admin(Method::DELETE, "/projects/library")
        .header("X-Is-Resource-Name", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    site.restart_core().await;
    let (status, _) = get_json(site.admin(Method::GET, "/projects/library")).await;
    assert_eq!(status, 404, "library is created at the first start only");
}

#[tokio::test]
async fn private_projects_are_invisible_to_outsiders() {
    let site = Site::start().await;
    project(&site, "secret", false).await;
    project(&site, "open", true).await;
    user(&site, "insider").await;
    user(&site, "outsider").await;
    member(&site, "secret", "insider", DEVELOPER).await;

    let get = |who: Option<&str>, path: &str| {
        let req = site.http.get(site.api(path));
        match who {
            Some(u) => req.basic_auth(u, Some(PASSWORD)),
            None => req,
        }
    };
    for who in [None, Some("outsider")] {
        let (status, body) = get_json(get(who, "/projects/secret")).await;
        assert_eq!(status, 404, "{who:?}: {body}");
        assert_eq!(body["errors"][0]["code"], "NOT_FOUND");
        let (status, _) = get_json(get(who, "/projects/secret/summary")).await;
        assert_eq!(status, 404);
        let (status, _) = get_json(get(who, "/projects/secret/members")).await;
        assert_eq!(status, 404);
        let (_, list) = get_json(get(who, "/projects?page_size=100")).await;
        let names: BTreeSet<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, BTreeSet::from(["library", "open"]), "{who:?}");
    }
    let (status, p) = get_json(get(Some("insider"), "/projects/secret")).await;
    assert_eq!(status, 200);
    assert_eq!(p["current_user_role_id"], DEVELOPER);
    let (_, list) = get_json(get(Some("insider"), "/projects?page_size=100")).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    // An outsider's change is a 404, a member without the right a 403.
    let put = |u: &str| {
        site.as_user(Method::PUT, "/projects/secret", u, PASSWORD)
            .json(&json!({"metadata": {"public": "true"}}))
    };
    assert_eq!(get_json(put("outsider")).await.0, 404);
    assert_eq!(get_json(put("insider")).await.0, 403);
    // The owner filter and the public filter.
    let (_, list) = get_json(site.admin(Method::GET, "/projects?owner=admin&public=false")).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["secret"]);
}

#[tokio::test]
async fn members_lifecycle() {
    let site = Site::start().await;
    let pid = project(&site, "crew", false).await;
    let dev = user(&site, "dev").await;
    user(&site, "ops").await;
    user(&site, "other").await;
    let base = format!("/projects/{pid}/members");

    let r = site
        .admin(Method::POST, &base)
        .json(&json!({"role_id": DEVELOPER, "member_user": {"user_id": dev}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mid = id_from_location(&r);
    member(&site, "crew", "ops", MAINTAINER).await;
    let (status, body) = get_json(
        site.admin(Method::POST, &base)
            .json(&json!({"role_id": GUEST, "member_user": {"username": "dev"}})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = get_json(
        site.admin(Method::POST, &base)
            .json(&json!({"role_id": GUEST, "member_user": {"username": "ghost"}})),
    )
    .await;
    assert_eq!(status, 404);
    for bad in [
        json!({"role_id": 9, "member_user": {"username": "other"}}),
        json!({"member_user": {"username": "other"}}),
        json!({"role_id": 3}),
        json!({"role_id": 3, "member_group": {"group_name": "g"}}),
    ] {
        let (status, body) = get_json(site.admin(Method::POST, &base).json(&bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    let (status, m) = get_json(site.admin(Method::GET, &format!("{base}/{mid}"))).await;
    assert_eq!(status, 200);
    assert_eq!(m["entity_name"], "dev");
    assert_eq!(m["entity_type"], "u");
    assert_eq!(m["entity_id"], dev);
    assert_eq!(m["role_id"], DEVELOPER);
    assert_eq!(m["role_name"], "developer");
    assert_eq!(m["project_id"], pid);

    let r = site
        .admin(Method::GET, &format!("{base}?entityname=o&page_size=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], "1");
    let list: serde_json::Value = r.json().await.unwrap();
    assert_eq!(list[0]["entity_name"], "ops");
    let r = site.admin(Method::GET, &base).send().await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "3", "admin, dev, ops");

    // A developer may read members but not manage them; the project admin may.
    let (status, _) = get_json(site.as_user(Method::GET, &base, "dev", PASSWORD)).await;
    assert_eq!(status, 200);
    let (status, _) = get_json(
        site.as_user(Method::POST, &base, "dev", PASSWORD)
            .json(&json!({"role_id": 3, "member_user": {"username": "other"}})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = get_json(
        site.as_user(Method::PUT, &format!("{base}/{mid}"), "ops", PASSWORD)
            .json(&json!({"role_id": 1})),
    )
    .await;
    assert_eq!(status, 403, "a maintainer cannot change roles");

    let r = site
        .admin(Method::PUT, &format!("{base}/{mid}"))
        .json(&json!({"role_id": GUEST}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, m) = get_json(site.admin(Method::GET, &format!("{base}/{mid}"))).await;
    assert_eq!(m["role_name"], "guest");
    let (status, _) = get_json(
        site.admin(Method::PUT, &format!("{base}/{mid}"))
            .json(&json!({"role_id": 0})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, s) = get_json(site.as_user(
        Method::GET,
        &format!("/projects/{pid}/summary"),
        "dev",
        PASSWORD,
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            s["project_admin_count"].as_i64(),
            s["maintainer_count"].as_i64(),
            s["guest_count"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );

    let r = site
        .admin(Method::DELETE, &format!("{base}/{mid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = get_json(site.admin(Method::GET, &format!("{base}/{mid}"))).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(site.admin(Method::DELETE, &format!("{base}/{mid}"))).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(site.admin(Method::GET, &format!("{base}/abc"))).await;
    assert_eq!(status, 400);
    // Removed, dev no longer sees the private project.
    let (status, _) =
        get_json(site.as_user(Method::GET, &format!("/projects/{pid}"), "dev", PASSWORD)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn pagination_sort_and_q_on_hundreds_of_projects() {
    let site = Site::start().await;
    const N: usize = 260;
    let mut results = Vec::new();
    for chunk in (0..N).collect::<Vec<_>>().chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for i in chunk {
            let req = site.admin(Method::POST, "/projects").json(&json!({
                "project_name": format!("p-{i:03}"),
                "metadata": {"public": (i % 2 == 0).to_string()},
            }));
            set.spawn(async move { req.send().await.unwrap().status().as_u16() });
        }
        while let Some(s) = set.join_next().await {
            results.push(s.unwrap());
        }
    }
    assert!(results.iter().all(|s| *s == 201), "{results:?}");

    // Every page of 100, in name order, with the total and the links.
    let total = N + 1; // and library
    let mut seen = Vec::new();
    let mut path = "/projects?page=1&page_size=100".to_owned();
    loop {
        let r = site.admin(Method::GET, &path).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-total-count"], total.to_string().as_str());
        let link = r
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_owned());
        let page: serde_json::Value = r.json().await.unwrap();
        seen.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned()),
        );
        let next = link.as_deref().and_then(|l| {
            l.split(',').find(|p| p.contains("rel=\"next\"")).map(|p| {
                let url = p.trim().split(';').next().unwrap();
                url.trim_matches(|c| c == '<' || c == '>').to_owned()
            })
        });
        match next {
            Some(n) => {
                assert!(n.starts_with("/api/v2.0/projects?"), "{n}");
                path = n.trim_start_matches("/api/v2.0").to_owned();
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), total);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "name order by default");
    let r = site
        .admin(Method::GET, "/projects?page=2&page_size=100")
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains("rel=\"prev\"") && link.contains("rel=\"next\""),
        "{link}"
    );
    let r = site
        .admin(Method::GET, "/projects?page=9&page_size=100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], total.to_string().as_str());
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), json!([]));

    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let count = |r: &reqwest::Response| {
        r.headers()["x-total-count"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    // Fuzzy, exact and any-of names; sort descending; the `name` parameter.
    let r = site
        .admin(Method::GET, "/projects?q=name%3D~p-01&page_size=100")
        .send()
        .await
        .unwrap();
    assert_eq!(count(&r), 10);
    let r = site
        .admin(Method::GET, "/projects?q=name%3Dp-007")
        .send()
        .await
        .unwrap();
    assert_eq!(names(&r.json().await.unwrap()), ["p-007"]);
    let r = site
        .admin(Method::GET, "/projects?q=name%3D%7Bp-001%20p-200%20nope%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(names(&r.json().await.unwrap()), ["p-001", "p-200"]);
    let r = site
        .admin(Method::GET, "/projects?sort=-name&page_size=3")
        .send()
        .await
        .unwrap();
    assert_eq!(names(&r.json().await.unwrap()), ["p-259", "p-258", "p-257"]);
    let r = site
        .admin(Method::GET, "/projects?name=p-25&page_size=100")
        .send()
        .await
        .unwrap();
    assert_eq!(count(&r), 10);
    // Public filter in q and as a parameter.
    let r = site
        .admin(Method::GET, "/projects?q=public%3Dtrue")
        .send()
        .await
        .unwrap();
    assert_eq!(count(&r), N / 2 + 1);
    let r = site
        .admin(Method::GET, "/projects?public=false")
        .send()
        .await
        .unwrap();
    assert_eq!(count(&r), N / 2);
    // Project id ranges.
    let (_, first) = get_json(site.admin(Method::GET, "/projects?q=name%3Dp-000")).await;
    let lo = first[0]["project_id"].as_i64().unwrap();
    let r = site
        .admin(
            Method::GET,
            &format!("/projects?q=project_id%3D%5B{lo}~{}%5D", lo + 4),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(count(&r), 5);
    // Without detail: no counts and roles.
    let (_, plain) =
        get_json(site.admin(Method::GET, "/projects?with_detail=false&page_size=1")).await;
    assert!(plain[0].get("repo_count").is_none());
    assert!(plain[0].get("metadata").is_some());

    // Bad input.
    for bad in [
        "/projects?page=0",
        "/projects?page_size=101",
        "/projects?sort=owner_id",
        "/projects?q=colour%3Dred",
        "/projects?q=nonsense",
        "/projects?public=perhaps",
        "/projects?q=project_id%3Dabc",
    ] {
        let (status, body) = get_json(site.admin(Method::GET, bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // A user sees the public ones and their own private ones only.
    user(&site, "viewer").await;
    member(&site, "p-001", "viewer", GUEST).await;
    let r = site
        .as_user(
            Method::GET,
            "/projects?page_size=100&page=2",
            "viewer",
            PASSWORD,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(count(&r), N / 2 + 2);
    let r = site
        .http
        .get(site.api("/projects?q=name%3D~p-00"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        names(&r.json().await.unwrap()),
        ["p-000", "p-002", "p-004", "p-006", "p-008"]
    );
}
