//! Garbage collection through Harbor's API: core records and enqueues,
//! the real jobservice runs the collector, the real registry unlinks.

use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};

use crate::content::*;
use crate::support::*;
use crate::tenants::{self, PASSWORD};

const DEV: &str = "dev";

/// Creates a private project through the API (which also proves core has
/// finished its first-start bootstrap).
async fn project(site: &Site, name: &str) {
    let (s, v, _) = call(
        site.admin(Method::POST, "/projects")
            .json(&json!({"project_name": name, "metadata": {"public": "false"}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
}

/// Starts a manual GC; returns its id from the `Location` header.
async fn start_gc(site: &Site, params: Value) -> i64 {
    let (s, v, h) = call(
        site.admin(Method::POST, "/system/gc/schedule")
            .json(&json!({"schedule": {"type": "Manual"}, "parameters": params})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let loc = h["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with("/api/v2.0/system/gc/"), "{loc}");
    loc.rsplit('/').next().unwrap().parse().unwrap()
}

/// Polls the GC until it reaches one of `statuses`.
async fn wait_gc(site: &Site, id: i64, statuses: &[&str]) -> Value {
    eventually(90, "the GC to finish", || async {
        let (s, v) = admin_json(site, &format!("/system/gc/{id}")).await;
        assert_eq!(s, 200, "{v}");
        statuses
            .contains(&v["job_status"].as_str().unwrap_or(""))
            .then_some(v)
    })
    .await
}

fn params_of(v: &Value) -> Value {
    serde_json::from_str(v["job_parameters"].as_str().unwrap()).unwrap()
}

async fn blob_status(site: &Site, pusher: &Pusher<'_>, digest: &str) -> u16 {
    let token = mint(
        site,
        "admin",
        &[&format!("repository:{}:pull", pusher.repo)],
    );
    site.http
        .head(format!(
            "{}/v2/{}/blobs/{digest}",
            site.registry, pusher.repo
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn gc_through_the_api_reclaims_deleted_images_and_reports_what_it_freed() {
    let site = Site::start().await;
    project(&site, "gc").await;
    let p = Pusher::new(&site, "admin", "gc/app");
    let (kept, kept_manifest) = p.image(Some("keep"), "amd64", "kept").await;
    let (gone, gone_manifest) = p.image(Some("gone"), "amd64", "gone").await;
    let gone_layer = sha256(b"layer of gone");
    let (untagged, _) = p.image(None, "arm64", "untagged").await;
    p.delete_manifest(&gone).await;
    let stray = p.blob(b"a blob no manifest references").await;

    // A dry run reports and deletes nothing.
    let dry = start_gc(&site, json!({"delete_untagged": true, "dry_run": true})).await;
    let v = wait_gc(&site, dry, &["Success", "Error"]).await;
    assert_eq!(v["job_status"], "Success", "{v}");
    let attrs = params_of(&v);
    assert_eq!(attrs["dry_run"], true);
    assert!(attrs["purged_blobs"].as_i64().unwrap() >= 4, "{v}");
    assert_eq!(attrs["purged_manifests"], 1, "{v}");
    assert_eq!(blob_status(&site, &p, &stray).await, 200);
    assert_eq!(p.manifest_status(&untagged).await, 200);

    let id = start_gc(&site, json!({"delete_untagged": true, "workers": 2})).await;
    let v = wait_gc(&site, id, &["Success", "Error", "Stopped"]).await;
    assert_eq!(v["job_status"], "Success", "{v}");
    assert_eq!(v["job_name"], "GARBAGE_COLLECTION");
    assert_eq!(v["job_kind"], "MANUAL");
    let attrs = params_of(&v);
    assert_eq!(attrs["delete_untagged"], true);
    assert_eq!(attrs["purged_manifests"], 1, "{v}");
    // The deleted image's manifest, config and layer, the untagged image's
    // three (its manifest went in this run), and the stray blob.
    assert_eq!(attrs["purged_blobs"], 7, "{v}");
    let freed = attrs["freed_space"].as_i64().unwrap();
    assert!(freed >= gone_manifest.len() as i64, "{v}");

    assert_eq!(blob_status(&site, &p, &stray).await, 404);
    assert_eq!(blob_status(&site, &p, &gone_layer).await, 404);
    assert_eq!(p.manifest_status(&untagged).await, 404);
    assert_eq!(p.manifest_status("keep").await, 200);
    assert_eq!(p.manifest_status(&kept).await, 200);
    assert_eq!(blob_status(&site, &p, &sha256(b"layer of kept")).await, 200);

    // Quota usage agrees with what is left: the kept image's manifest,
    // config and layer.
    let m: Value = serde_json::from_slice(&kept_manifest).unwrap();
    let expected = kept_manifest.len() as i64
        + m["config"]["size"].as_i64().unwrap()
        + m["layers"][0]["size"].as_i64().unwrap();
    let (_, proj) = admin_json(&site, "/projects/gc").await;
    let pid = proj["project_id"].as_i64().unwrap();
    let (s, q) = admin_json(
        &site,
        &format!("/quotas?reference=project&reference_id={pid}"),
    )
    .await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q[0]["used"]["storage"], expected, "{q}");

    // History, newest first, paginated as Harbor's lists are.
    let (s, list, h) = call(
        site.admin(Method::GET, "/system/gc")
            .query(&[("page_size", "1")]),
    )
    .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(h["x-total-count"], "2");
    assert_eq!(list[0]["id"], id);
    assert!(h["link"].to_str().unwrap().contains("rel=\"next\""));

    // The job's log is readable as text and says what it did.
    let r = site
        .admin(Method::GET, &format!("/system/gc/{id}/log"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let log = r.text().await.unwrap();
    assert!(log.contains("purged 1 manifests and 7 blobs"), "{log}");
    let (s, _) = admin_json(&site, "/system/gc/999999").await;
    assert_eq!(s, 404);
    let (s, _) = admin_json(&site, "/system/gc/999999/log").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn only_administrators_run_gc_and_bad_schedules_are_refused() {
    let site = Site::start().await;
    tenants::user(&site, DEV).await;
    let body = json!({"schedule": {"type": "Manual"}, "parameters": {}});
    let (s, v, _) = call(site.http.post(site.api("/system/gc/schedule")).json(&body)).await;
    assert_eq!(s, 401, "{v}");
    let (s, v, _) = call(
        site.as_user(Method::POST, "/system/gc/schedule", DEV, PASSWORD)
            .json(&body),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["errors"][0]["code"], "FORBIDDEN");
    let (s, _, _) = call(site.as_user(Method::GET, "/system/gc", DEV, PASSWORD)).await;
    assert_eq!(s, 403);

    for (body, needle) in [
        (
            json!({"schedule": {"type": "Custom", "cron": "every day"}}),
            "cron",
        ),
        (
            json!({"schedule": {"type": "Custom", "cron": "0 0 * * *"}}),
            "6 fields",
        ),
        (json!({"schedule": {"type": "Custom"}}), "empty cron"),
        (json!({"schedule": {"type": "Sometimes"}}), "Sometimes"),
        (
            json!({"schedule": {"type": "Manual"}, "parameters": {"workers": 0}}),
            "workers",
        ),
        (
            json!({"schedule": {"type": "Manual"}, "parameters": {"dry_run": "yes"}}),
            "dry_run",
        ),
        (json!({"parameters": {}}), "schedule"),
    ] {
        let (s, v, _) = call(site.admin(Method::PUT, "/system/gc/schedule").json(&body)).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["errors"][0]["code"], "BAD_REQUEST");
        assert!(
            v["errors"][0]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }
}

#[tokio::test]
async fn a_gc_schedule_is_kept_updated_and_removed() {
    let site = Site::start().await;
    let (s, v) = admin_json(&site, "/system/gc/schedule").await;
    assert_eq!(s, 200);
    assert_eq!(v["schedule"]["type"], "None", "{v}");

    let (s, v, _) = call(
        site.admin(Method::POST, "/system/gc/schedule")
            .json(&json!({
                "schedule": {"type": "Custom", "cron": "0 30 2 * * 1-5"},
                "parameters": {"delete_untagged": true, "workers": 3}
            })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = admin_json(&site, "/system/gc/schedule").await;
    assert_eq!(v["schedule"]["type"], "Custom", "{v}");
    assert_eq!(v["schedule"]["cron"], "0 30 2 * * 1-5");
    let next = chrono::DateTime::parse_from_rfc3339(
        v["schedule"]["next_scheduled_time"].as_str().unwrap(),
    )
    .unwrap();
    use chrono::{Datelike, Timelike};
    assert_eq!((next.hour(), next.minute(), next.second()), (2, 30, 0));
    assert!(next.weekday().number_from_monday() <= 5, "{next}");
    assert_eq!(params_of(&v)["workers"], 3);

    let (s, _, _) = call(site.admin(Method::PUT, "/system/gc/schedule").json(&json!({
        "schedule": {"type": "Daily"}, "parameters": {"delete_untagged": false}
    })))
    .await;
    assert_eq!(s, 200);
    let (_, v) = admin_json(&site, "/system/gc/schedule").await;
    assert_eq!(v["schedule"]["type"], "Daily");
    assert_eq!(v["schedule"]["cron"], "0 0 0 * * *");

    let (s, _, _) = call(
        site.admin(Method::PUT, "/system/gc/schedule")
            .json(&json!({"schedule": {"type": "None"}})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = admin_json(&site, "/system/gc/schedule").await;
    assert_eq!(v["schedule"]["type"], "None", "{v}");
}

#[tokio::test]
async fn a_scheduled_gc_fires_and_shows_in_the_history() {
    let site = Site::start().await;
    project(&site, "sched").await;
    let p = Pusher::new(&site, "admin", "sched/app");
    let stray = p.blob(b"scheduled garbage").await;
    let (s, v, _) = call(site.admin(Method::PUT, "/system/gc/schedule").json(&json!({
        "schedule": {"type": "Custom", "cron": "*/2 * * * * *"},
        "parameters": {"delete_untagged": true}
    })))
    .await;
    assert_eq!(s, 200, "{v}");
    let v = eventually(60, "a scheduled GC to succeed", || async {
        let (_, list) = admin_json(&site, "/system/gc?page_size=100").await;
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["job_status"] == "Success")
            .cloned()
    })
    .await;
    assert_eq!(v["job_kind"], "SCHEDULE", "{v}");
    assert_eq!(v["schedule"]["type"], "Schedule");
    // Stop the schedule before asserting, so no run races the checks below.
    let (s, _, _) = call(
        site.admin(Method::PUT, "/system/gc/schedule")
            .json(&json!({"schedule": {"type": "None"}})),
    )
    .await;
    assert_eq!(s, 200);
    eventually(30, "the stray blob to be collected", || async {
        (blob_status(&site, &p, &stray).await == 404).then_some(())
    })
    .await;
}

fn arm(dir: &Path, name: &str) {
    std::fs::write(dir.join(format!("{name}.pause")), b"").unwrap();
}

fn release(dir: &Path, name: &str) {
    let _ = std::fs::remove_file(dir.join(format!("{name}.pause")));
}

#[tokio::test]
async fn a_running_gc_stops_on_request_and_the_next_run_finishes_the_work() {
    let site = Site::start().await;
    project(&site, "stop").await;
    let p = Pusher::new(&site, "admin", "stop/app");
    let mut strays = Vec::new();
    for i in 0..5 {
        strays.push(p.blob(format!("stray {i}").as_bytes()).await);
    }
    let fp = site.failpoints();
    // Pause the collector after its first step A: the run is in the middle.
    arm(&fp, "G1");
    let id = start_gc(&site, json!({"workers": 1})).await;
    eventually(60, "the collector to reach G1", || async {
        fp.join("G1.hit").exists().then_some(())
    })
    .await;
    let (_, v) = admin_json(&site, &format!("/system/gc/{id}")).await;
    assert_eq!(v["job_status"], "Running", "{v}");
    // A second manual GC is refused while one runs.
    let (s, v, _) = call(
        site.admin(Method::POST, "/system/gc/schedule")
            .json(&json!({"schedule": {"type": "Manual"}})),
    )
    .await;
    assert_eq!(s, 409, "{v}");

    let (s, v, _) = call(site.admin(Method::PUT, &format!("/system/gc/{id}"))).await;
    assert_eq!(s, 200, "{v}");
    release(&fp, "G1");
    let v = wait_gc(&site, id, &["Stopped", "Success", "Error"]).await;
    assert_eq!(v["job_status"], "Stopped", "{v}");
    // Stopping a finished GC is refused with a reason.
    let (s, v, _) = call(site.admin(Method::PUT, &format!("/system/gc/{id}"))).await;
    assert_eq!(s, 412, "{v}");

    // Nothing is left half-deleted: the next run finishes the work.
    let next = start_gc(&site, json!({})).await;
    let v = wait_gc(&site, next, &["Success", "Error", "Stopped"]).await;
    assert_eq!(v["job_status"], "Success", "{v}");
    for d in &strays {
        assert_eq!(blob_status(&site, &p, d).await, 404, "{d}");
    }
}
