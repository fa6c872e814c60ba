//! `/health`, `/statistics` and `/search`.

use reqwest::Method;
use serde_json::Value;

use crate::content::*;
use crate::support::*;
use crate::tenants::{self, DEVELOPER, PASSWORD};

fn component<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {v}"))
}

#[tokio::test]
async fn health_reports_every_component() {
    let mut site = Site::start().await;
    let (s, v, _) = call(site.http.get(site.api("/health"))).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "healthy", "{v}");
    for name in ["core", "database", "redis", "registry", "jobservice"] {
        assert_eq!(component(&v, name)["status"], "healthy", "{v}");
    }
    site.kill_registry().await;
    let (s, v, _) = call(site.http.get(site.api("/health"))).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "unhealthy", "{v}");
    let r = component(&v, "registry");
    assert_eq!(r["status"], "unhealthy");
    assert!(!r["error"].as_str().unwrap().is_empty());
    assert_eq!(component(&v, "database")["status"], "healthy");
    site.kill_jobservice().await;
    let (_, v, _) = call(site.http.get(site.api("/health"))).await;
    let j = component(&v, "jobservice");
    assert_eq!(j["status"], "unhealthy", "{v}");
    assert!(j["error"].as_str().unwrap().contains("jobservice"), "{v}");
}

#[tokio::test]
async fn statistics_and_search_show_what_the_caller_may_see() {
    let site = Site::start().await;
    tenants::project(&site, "open-a", true).await;
    tenants::project(&site, "secret-a", false).await;
    tenants::user(&site, "dev").await;
    tenants::member(&site, "secret-a", "dev", DEVELOPER).await;
    tenants::user(&site, "outsider").await;
    for repo in ["open-a/web", "open-a/api", "secret-a/api"] {
        Pusher::new(&site, "admin", repo)
            .image(Some("1"), "amd64", repo)
            .await;
    }
    let stats = |user: Option<&str>| {
        let req = match user {
            Some(u) => site.as_user(Method::GET, "/statistics", u, PASSWORD),
            None => site.http.get(site.api("/statistics")),
        };
        async move { call(req).await }
    };
    let (s, v, _) = call(site.admin(Method::GET, "/statistics")).await;
    assert_eq!(s, 200, "{v}");
    // `library` is public and empty.
    assert_eq!(v["public_project_count"], 2);
    assert_eq!(v["private_project_count"], 1);
    assert_eq!(v["public_repo_count"], 2);
    assert_eq!(v["private_repo_count"], 1);
    assert_eq!(v["total_project_count"], 3);
    assert_eq!(v["total_repo_count"], 3);
    assert!(v["total_storage_consumption"].as_i64().unwrap() > 0);
    let (_, v, _) = stats(Some("dev")).await;
    assert_eq!(
        (
            v["private_project_count"].as_i64(),
            v["private_repo_count"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let (_, v, _) = stats(Some("outsider")).await;
    assert_eq!(
        (
            v["private_project_count"].as_i64(),
            v["private_repo_count"].as_i64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(v["public_repo_count"], 2);
    assert_eq!(v["total_repo_count"], 2);
    let (s, _, _) = stats(None).await;
    assert_eq!(s, 401);

    let search = |user: Option<&str>, q: &str| {
        let path = format!("/search?q={q}");
        let req = match user {
            Some(u) => site.as_user(Method::GET, &path, u, PASSWORD),
            None => site.http.get(site.api(&path)),
        };
        async move {
            let (s, v, _) = call(req).await;
            assert_eq!(s, 200, "{v}");
            let names = |k: &str, field: &str| -> Vec<String> {
                let mut n: Vec<String> = v[k]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x[field].as_str().unwrap().to_owned())
                    .collect();
                n.sort();
                n
            };
            (
                names("project", "name"),
                names("repository", "repository_name"),
                v,
            )
        }
    };
    let (projects, repos, v) = search(None, "api").await;
    assert!(projects.is_empty());
    assert_eq!(repos, ["open-a/api"]);
    assert_eq!(v["repository"][0]["project_public"], true);
    assert_eq!(v["repository"][0]["artifact_count"], 1);
    let (projects, repos, _) = search(Some("dev"), "-a").await;
    assert_eq!(projects, ["open-a", "secret-a"]);
    assert_eq!(repos, ["open-a/api", "open-a/web", "secret-a/api"]);
    let (projects, _, v) = search(Some("outsider"), "secret").await;
    assert!(projects.is_empty(), "{v}");
    let (s, _, _) = call(site.http.get(site.api("/search"))).await;
    assert_eq!(s, 400);
}
