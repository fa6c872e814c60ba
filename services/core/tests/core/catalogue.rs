//! The catalogue API: repositories, artifacts and tags read from the storage
//! index, and changed through the registry's internal API.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::content::*;
use crate::support::*;
use crate::tenants::{self, DEVELOPER, GUEST, PASSWORD};

const ADMIN: &str = "admin:Harbor12345";

fn names(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn browse_tag_copy_and_delete_through_the_api() {
    let site = Site::start().await;
    tenants::project(&site, "cat", false).await;
    tenants::project(&site, "dest", false).await;
    for (user, project, role) in [("dev", "cat", DEVELOPER), ("guest", "cat", GUEST)] {
        tenants::user(&site, user).await;
        tenants::member(&site, project, user, role).await;
    }
    tenants::member(&site, "dest", "dev", DEVELOPER).await;
    tenants::user(&site, "outsider").await;
    let as_user = |m: Method, path: &str, user: &str| site.as_user(m, path, user, PASSWORD);

    // Two images pushed by skopeo through the token flow.
    let mut digests = vec![];
    for tag in ["v1", "v2"] {
        let dir = tempfile::tempdir().unwrap();
        let d = tenants::image(dir.path(), tag, 2, 4096);
        let (ok, out) = tenants::push(
            &site,
            dir.path(),
            tag,
            &format!("cat/app:{tag}"),
            Some(ADMIN),
        )
        .await;
        assert!(ok, "push {tag}: {out}");
        digests.push(d);
    }
    let (d1, d2) = (digests[0].clone(), digests[1].clone());

    // Repositories: members see the private project's, outsiders nothing.
    let (s, v, h) = call(as_user(Method::GET, "/projects/cat/repositories", "guest")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(names(&v, "name"), ["cat/app"]);
    assert_eq!(v[0]["artifact_count"], 2);
    assert_eq!(v[0]["pull_count"], 0);
    assert!(v[0]["project_id"].as_i64().unwrap() > 0);
    assert_eq!(h["x-total-count"], "1");
    let (s, _, _) = call(as_user(
        Method::GET,
        "/projects/cat/repositories",
        "outsider",
    ))
    .await;
    assert_eq!(s, 404);
    let (s, _, _) = call(site.http.get(site.api("/projects/cat/repositories"))).await;
    assert_eq!(s, 404);
    let (_, v, _) = call(as_user(Method::GET, "/repositories", "outsider")).await;
    assert!(!names(&v, "name").contains(&"cat/app".to_owned()));
    let (_, v, _) = call(as_user(Method::GET, "/repositories", "dev")).await;
    assert!(names(&v, "name").contains(&"cat/app".to_owned()));

    // One repository, and its description.
    let (s, v, _) = call(as_user(
        Method::GET,
        "/projects/cat/repositories/app",
        "dev",
    ))
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "cat/app");
    let r = as_user(Method::PUT, "/projects/cat/repositories/app", "guest")
        .json(&json!({"description": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = as_user(Method::PUT, "/projects/cat/repositories/app", "dev")
        .json(&json!({"description": "the app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = admin_json(&site, "/projects/cat/repositories/app").await;
    assert_eq!(v["description"], "the app");

    // Artifacts, newest first, in Harbor's shape.
    let (s, v, h) = call(as_user(
        Method::GET,
        "/projects/cat/repositories/app/artifacts",
        "guest",
    ))
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(h["x-total-count"], "2");
    assert_eq!(names(&v, "digest"), [d2.clone(), d1.clone()]);
    let a = &v[0];
    assert_eq!(a["type"], "IMAGE");
    assert_eq!(a["media_type"], "application/vnd.oci.image.config.v1+json");
    assert_eq!(a["manifest_media_type"], OCI_MANIFEST);
    assert_eq!(a["repository_name"], "cat/app");
    assert_eq!(a["pull_time"], "0001-01-01T00:00:00.000Z");
    assert!(a["size"].as_i64().unwrap() > 8192, "{a}");
    assert_eq!(names(&a["tags"], "name"), ["v2"]);
    assert_eq!(a["tags"][0]["artifact_id"], a["id"]);
    assert_eq!(a["tags"][0]["immutable"], false);
    let (_, v, _) = call(as_user(
        Method::GET,
        "/projects/cat/repositories/app/artifacts?with_tag=false",
        "guest",
    ))
    .await;
    assert!(v[0].get("tags").is_none());

    // One artifact by tag and by digest; its config is read for extra_attrs.
    let (s, by_tag, _) = call(as_user(
        Method::GET,
        "/projects/cat/repositories/app/artifacts/v1",
        "guest",
    ))
    .await;
    assert_eq!(s, 200, "{by_tag}");
    assert_eq!(by_tag["digest"], d1);
    assert_eq!(by_tag["extra_attrs"]["architecture"], "amd64");
    assert_eq!(by_tag["extra_attrs"]["os"], "linux");
    let (_, by_digest, _) = call(as_user(
        Method::GET,
        &format!("/projects/cat/repositories/app/artifacts/{d1}"),
        "guest",
    ))
    .await;
    assert_eq!(by_digest["id"], by_tag["id"]);
    let (s, _, _) = call(as_user(
        Method::GET,
        "/projects/cat/repositories/app/artifacts/nope",
        "guest",
    ))
    .await;
    assert_eq!(s, 404);
    let (s, _, _) = call(as_user(
        Method::GET,
        "/projects/cat/repositories/app/artifacts/sha256:00",
        "guest",
    ))
    .await;
    assert_eq!(s, 400);

    // Tags: add (through the registry), conflicts, bad names, list, delete.
    let tags_path = "/projects/cat/repositories/app/artifacts/v1/tags";
    let post = |user: &str, name: &str| {
        as_user(Method::POST, tags_path, user).json(&json!({"name": name}))
    };
    let (s, _, _) = call(post("guest", "stable")).await;
    assert_eq!(s, 403);
    let (s, v, h) = call(post("dev", "stable")).await;
    assert_eq!(s, 201, "{v}");
    assert!(h["location"].to_str().unwrap().ends_with("/tags/stable"));
    let (s, _, _) = call(post("dev", "stable")).await;
    assert_eq!(s, 409);
    let (s, _, _) = call(post("dev", "v2")).await;
    assert_eq!(s, 409, "a tag of another artifact is not moved");
    let (s, v, _) = call(post("dev", "bad tag!")).await;
    assert_eq!(s, 400, "{v}");
    let registry = Pusher::new(&site, "admin", "cat/app");
    assert_eq!(registry.manifest_status("stable").await, 200);
    let (s, v, h) = call(as_user(Method::GET, tags_path, "guest")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(h["x-total-count"], "2");
    let mut got = names(&v, "name");
    got.sort();
    assert_eq!(got, ["stable", "v1"]);
    let (_, v, _) = call(as_user(
        Method::GET,
        &format!("{tags_path}?q=name%3Dstable"),
        "guest",
    ))
    .await;
    assert_eq!(names(&v, "name"), ["stable"]);
    let (_, v, _) = call(as_user(
        Method::GET,
        &format!("{tags_path}?sort=name"),
        "guest",
    ))
    .await;
    assert_eq!(names(&v, "name"), ["stable", "v1"]);
    let (s, _, _) = call(as_user(
        Method::DELETE,
        &format!("{tags_path}/stable"),
        "dev",
    ))
    .await;
    assert_eq!(s, 403, "developers may not delete tags");
    let (s, _, _) = call(site.admin(Method::DELETE, &format!("{tags_path}/v2"))).await;
    assert_eq!(s, 404, "v2 is not on this artifact");
    let (s, _, _) = call(site.admin(Method::DELETE, &format!("{tags_path}/stable"))).await;
    assert_eq!(s, 200);
    assert_eq!(registry.manifest_status("stable").await, 404);
    assert_eq!(registry.manifest_status("v1").await, 200);

    // A nested repository name, encoded twice in the path.
    let tool = Pusher::new(&site, "admin", "cat/team/tool");
    tool.image(Some("1"), "arm64", "tool").await;
    let (s, v, _) = call(site.admin(Method::GET, "/projects/cat/repositories/team%252Ftool")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "cat/team/tool");
    let (s, v, _) = call(site.admin(
        Method::GET,
        "/projects/cat/repositories/team%252Ftool/artifacts/1",
    ))
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["extra_attrs"]["architecture"], "arm64");

    // Copy: the artifact and its tags, its blobs linked into the target.
    let (s, v, h) = call(site.admin(
        Method::POST,
        "/projects/dest/repositories/copied/artifacts?from=cat/app:v1",
    ))
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(h["location"].to_str().unwrap().ends_with(&format!(
        "/projects/dest/repositories/copied/artifacts/{d1}"
    )));
    let (s, v) = admin_json(&site, "/projects/dest/repositories/copied/artifacts/v1").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["digest"], d1);
    let (ok, out) = tenants::pull(&site, "dest/copied:v1", Some(ADMIN)).await;
    assert!(ok, "pulling the copy: {out}");
    let (s, _, _) = call(site.admin(
        Method::POST,
        "/projects/dest/repositories/copied/artifacts?from=cat/app:v1",
    ))
    .await;
    assert_eq!(s, 409);
    let (s, _, _) = call(site.admin(
        Method::POST,
        "/projects/dest/repositories/copied/artifacts?from=cat/app:nope",
    ))
    .await;
    assert_eq!(s, 404);
    let (s, _, _) = call(site.admin(
        Method::POST,
        "/projects/dest/repositories/copied/artifacts?from=nonsense",
    ))
    .await;
    assert_eq!(s, 400);
    let (s, _, _) = call(as_user(
        Method::POST,
        &format!("/projects/dest/repositories/two/artifacts?from=cat/app@{d2}"),
        "guest",
    ))
    .await;
    assert_eq!(s, 404, "guest is not in dest");
    let (s, v, _) = call(as_user(
        Method::POST,
        &format!("/projects/dest/repositories/two/artifacts?from=cat/app@{d2}"),
        "dev",
    ))
    .await;
    assert_eq!(s, 201, "{v}");

    // Delete: developers may not; then the registry forgets the artifact.
    let art = format!("/projects/cat/repositories/app/artifacts/{d1}");
    let (s, _, _) = call(as_user(Method::DELETE, &art, "dev")).await;
    assert_eq!(s, 403);
    let (s, v, _) = call(site.admin(Method::DELETE, &art)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(registry.manifest_status(&d1).await, 404);
    assert_eq!(registry.manifest_status("v1").await, 404);
    let (s, _) = admin_json(&site, &art).await;
    assert_eq!(s, 404);
    let (_, v) = admin_json(&site, "/projects/cat/repositories/app/artifacts").await;
    assert_eq!(names(&v, "digest"), std::slice::from_ref(&d2));
    // The copy in the other repository is untouched.
    assert_eq!(
        Pusher::new(&site, "admin", "dest/copied")
            .manifest_status(&d1)
            .await,
        200
    );

    // Deleting the repository deletes what is left in it.
    let (s, _, _) = call(as_user(
        Method::DELETE,
        "/projects/cat/repositories/app",
        "dev",
    ))
    .await;
    assert_eq!(s, 403);
    let (s, v, _) = call(site.admin(Method::DELETE, "/projects/cat/repositories/app")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(registry.manifest_status(&d2).await, 404);
    let (s, _) = admin_json(&site, "/projects/cat/repositories/app").await;
    assert_eq!(s, 404);
    let (_, v) = admin_json(&site, "/projects/cat/repositories").await;
    assert_eq!(names(&v, "name"), ["cat/team/tool"]);
    let e = audit_entries(&site, "delete", "cat/app").await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["resource_type"], "repository");
    assert_eq!(e[0]["username"], "admin");
}

#[tokio::test]
async fn indexes_list_their_children_as_references() {
    let site = Site::start().await;
    tenants::project(&site, "multi", true).await;
    let p = Pusher::new(&site, "admin", "multi/app");
    let (a, am) = p.image(None, "amd64", "a").await;
    let (b, bm) = p.image(None, "arm64", "b").await;
    let idx = p
        .index(
            "latest",
            &[(a.clone(), am, "amd64"), (b.clone(), bm, "arm64")],
        )
        .await;

    // Anonymous callers see a public project's artifacts.
    let path = "/projects/multi/repositories/app/artifacts";
    let (s, one, _) = call(site.http.get(site.api(&format!("{path}/latest")))).await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(one["digest"], idx);
    assert_eq!(one["type"], "IMAGE");
    assert_eq!(one["manifest_media_type"], OCI_INDEX);
    let refs = one["references"].as_array().unwrap();
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0]["child_digest"], a);
    assert_eq!(refs[0]["platform"]["architecture"], "amd64");
    assert_eq!(refs[1]["child_digest"], b);
    assert_eq!(refs[1]["platform"]["architecture"], "arm64");
    assert_eq!(refs[0]["parent_id"], one["id"]);
    assert!(refs[0]["child_id"].as_i64().unwrap() > 0);

    // The children are not top-level artifacts, unless base=* asks for all.
    let (_, v, h) = call(site.http.get(site.api(path))).await;
    assert_eq!(h["x-total-count"], "1");
    assert_eq!(names(&v, "digest"), std::slice::from_ref(&idx));
    let child_sizes: i64 = {
        let (_, all, h) = call(site.http.get(site.api(&format!("{path}?q=base%3D*")))).await;
        assert_eq!(h["x-total-count"], "3");
        all.as_array()
            .unwrap()
            .iter()
            .filter(|x| x["digest"] != idx)
            .map(|x| x["size"].as_i64().unwrap())
            .sum()
    };
    assert!(v[0]["size"].as_i64().unwrap() > child_sizes);
    let (_, v) = admin_json(&site, "/projects/multi/repositories").await;
    assert_eq!(v[0]["artifact_count"], 1);

    // A child cannot go while its index lists it; the index can, and takes
    // its untagged children along (a tagged one stays).
    let (s, v, _) = call(site.admin(Method::DELETE, &format!("{path}/{a}"))).await;
    assert_eq!(s, 412, "{v}");
    let (s, _, _) = call(site.http.delete(site.api(&format!("{path}/latest")))).await;
    assert_eq!(s, 401, "anonymous callers are asked to sign in");
    let (s, v, _) = call(
        site.admin(Method::POST, &format!("{path}/{b}/tags"))
            .json(&json!({"name": "arm"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v, _) = call(site.admin(Method::DELETE, &format!("{path}/latest"))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(p.manifest_status(&idx).await, 404);
    assert_eq!(p.manifest_status(&a).await, 404);
    assert_eq!(p.manifest_status(&b).await, 200);
    let (_, v, _) = call(site.http.get(site.api(path))).await;
    assert_eq!(names(&v, "digest"), [b]);
}

#[tokio::test]
async fn pagination_and_q_over_hundreds_of_artifacts() {
    let site = Site::start().await;
    tenants::project(&site, "many", false).await;
    let p = Pusher::new(&site, "admin", "many/app");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = p.blob(config).await;
    let layer = b"one shared layer".to_vec();
    let ld = p.blob(&layer).await;
    const N: usize = 300;
    let mut by_tag = std::collections::HashMap::new();
    for i in 0..N {
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
            "annotations": {"n": i.to_string()},
        }))
        .unwrap();
        // Every 30th artifact is pushed by digest only: untagged.
        let reference = if i % 30 == 0 {
            sha256(&m)
        } else {
            format!("t-{i:03}")
        };
        by_tag.insert(i, p.manifest(&reference, &m, OCI_MANIFEST).await);
    }
    let path = "/projects/many/repositories/app/artifacts";

    // Every artifact exactly once over the pages, newest first, with Links.
    let mut seen = HashSet::new();
    let mut last_time = String::from("9999");
    for page in 1..=6 {
        let (s, v, h) = call(
            site.admin(Method::GET, path)
                .query(&[("page", page), ("page_size", 50)]),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(h["x-total-count"], "300");
        let link = h
            .get("link")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert_eq!(
            link.contains("rel=\"next\""),
            page < 6,
            "page {page}: {link}"
        );
        assert_eq!(
            link.contains("rel=\"prev\""),
            page > 1,
            "page {page}: {link}"
        );
        if page < 6 {
            assert!(
                link.contains(&format!("/api/v2.0{path}?page={}&page_size=50", page + 1)),
                "{link}"
            );
        }
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 50);
        for a in items {
            assert!(seen.insert(a["id"].as_i64().unwrap()));
            let t = a["push_time"].as_str().unwrap().to_owned();
            assert!(t <= last_time, "newest first");
            last_time = t;
        }
    }
    assert_eq!(seen.len(), N);
    let (s, v, h) = call(
        site.admin(Method::GET, path)
            .query(&[("page", 7), ("page_size", 50)]),
    )
    .await;
    assert_eq!((s, v.as_array().unwrap().len()), (200, 0));
    assert_eq!(h["x-total-count"], "300");
    let (_, newest, _) = call(site.admin(Method::GET, path).query(&[("page_size", "1")])).await;
    let (_, oldest, _) = call(
        site.admin(Method::GET, path)
            .query(&[("page_size", "1"), ("sort", "push_time")]),
    )
    .await;
    assert_eq!(newest[0]["digest"], by_tag[&(N - 1)]);
    assert_eq!(oldest[0]["digest"], by_tag[&0]);

    // q: tags (fuzzy, exact, any, none), digest.
    let count = |q: &'static str| {
        let req = site
            .admin(Method::GET, path)
            .query(&[("q", q), ("page_size", "100")]);
        async move {
            let (s, v, h) = call(req).await;
            assert_eq!(s, 200, "q={q}: {v}");
            let total: usize = h["x-total-count"].to_str().unwrap().parse().unwrap();
            (total, v)
        }
    };
    let (n, v) = count("tags=~t-01").await;
    assert_eq!(n, 10);
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["tags"][0]["name"].as_str().unwrap().starts_with("t-01")));
    assert_eq!(count("tags=nil").await.0, 10);
    assert_eq!(count("tags=*").await.0, 290);
    assert_eq!(count("tags={t-001 t-002 t-999}").await.0, 2);
    let (n, v) = count("tags=t-123").await;
    assert_eq!(n, 1);
    assert_eq!(v[0]["digest"], by_tag[&123]);
    let q = format!("digest={}", by_tag[&42]);
    let (s, v, h) = call(site.admin(Method::GET, path).query(&[("q", q.as_str())])).await;
    assert_eq!((s, h["x-total-count"].to_str().unwrap()), (200, "1"));
    assert_eq!(v[0]["digest"], by_tag[&42]);
    assert_eq!(
        count("media_type=application/vnd.oci.image.config.v1+json")
            .await
            .0,
        300
    );
    for bad in ["nope=1", "digest=sha256:00", "digest=~x"] {
        let (s, v, _) = call(site.admin(Method::GET, path).query(&[("q", bad)])).await;
        assert_eq!(s, 400, "q={bad}: {v}");
        assert_eq!(v["errors"][0]["code"], "BAD_REQUEST");
    }
    for (k, val) in [("page_size", "101"), ("page", "0"), ("sort", "size")] {
        let (s, _, _) = call(site.admin(Method::GET, path).query(&[(k, val)])).await;
        assert_eq!(s, 400, "{k}={val}");
    }

    // The repository list pages and filters too.
    for i in 0..15 {
        let r = Pusher::new(&site, "admin", &format!("many/repo-{i}"));
        r.image(Some("x"), "amd64", &format!("repo {i}")).await;
    }
    let mut repos = HashSet::new();
    for page in 1..=4 {
        let (s, v, h) = call(
            site.admin(Method::GET, "/projects/many/repositories")
                .query(&[("page", page), ("page_size", 4)]),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(h["x-total-count"], "16");
        repos.extend(names(&v, "name"));
    }
    assert_eq!(repos.len(), 16);
    let (_, v, h) = call(
        site.admin(Method::GET, "/projects/many/repositories")
            .query(&[("q", "name=~repo-1"), ("sort", "name")]),
    )
    .await;
    assert_eq!(h["x-total-count"], "6");
    assert_eq!(names(&v, "name")[..2], ["many/repo-1", "many/repo-10"]);
    let (_, v, _) = call(
        site.admin(Method::GET, "/projects/many/repositories")
            .query(&[("q", "name=many/app")]),
    )
    .await;
    assert_eq!(v[0]["artifact_count"], 300);

    // The audit log has every push once and pages over them.
    let total = eventually(60, "300 audited pushes", || async {
        let (_, _, h) = call(
            site.admin(Method::GET, "/audit-logs")
                .query(&[("q", "operation=create,resource=~many/app")]),
        )
        .await;
        let n: usize = h["x-total-count"].to_str().unwrap().parse().unwrap();
        (n >= N).then_some(n)
    })
    .await;
    assert_eq!(total, N);
    let mut ids = HashSet::new();
    for page in 1..=3 {
        let (_, v, _) = call(site.admin(Method::GET, "/audit-logs").query(&[
            ("q", "operation=create,resource=~many/app"),
            ("page", &page.to_string()),
            ("page_size", "100"),
        ]))
        .await;
        for e in v.as_array().unwrap() {
            assert_eq!(e["username"], "admin");
            assert_eq!(e["resource_type"], "artifact");
            assert!(ids.insert(e["id"].as_i64().unwrap()));
        }
    }
    assert_eq!(ids.len(), N);
    let (_, _, h) = call(
        site.admin(Method::GET, "/audit-logs")
            .query(&[("q", "resource=~many/app:t-01")]),
    )
    .await;
    assert_eq!(h["x-total-count"], "10");
}
