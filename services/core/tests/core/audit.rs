//! The audit log from the registry's outbox: every push and delete once,
//! also when core was down while it happened, and never an event skipped
//! because a transaction committed late.

use reqwest::Method;
use serde_json::Value;

use crate::content::*;
use crate::support::*;
use crate::tenants::{self, GUEST, LIMITED_GUEST, PASSWORD};

async fn once(site: &Site, operation: &str, resource: &str) -> Value {
    let entries = eventually(
        30,
        &format!("{operation} {resource} in the audit log"),
        || async {
            let e = audit_entries(site, operation, resource).await;
            (!e.is_empty()).then_some(e)
        },
    )
    .await;
    assert_eq!(entries.len(), 1, "{operation} {resource}: {entries:?}");
    entries[0].clone()
}

#[tokio::test]
async fn pushes_and_deletes_are_audited_once_even_while_core_is_down() {
    let mut site = Site::start().await;
    tenants::project(&site, "aud", false).await;
    tenants::user(&site, "watcher").await;
    tenants::member(&site, "aud", "watcher", GUEST).await;
    tenants::user(&site, "limited").await;
    tenants::member(&site, "aud", "limited", LIMITED_GUEST).await;
    tenants::user(&site, "outsider").await;

    let d1 = skopeo_push(&site, "admin", "aud/app", "v1").await;
    let e = once(&site, "create", "aud/app:v1").await;
    assert_eq!(e["username"], "admin");
    assert_eq!(e["resource_type"], "artifact");
    assert!(e["op_time"].as_str().unwrap().ends_with('Z'));

    // Core is down while content changes in the registry.
    site.kill_core().await;
    let d2 = skopeo_push(&site, "alice", "aud/app", "v2").await;
    let registry = Pusher::new(&site, "bob", "aud/app");
    registry.delete_manifest("v2").await;
    registry.delete_manifest(&d1).await;
    site.restart_core().await;
    let e = once(&site, "create", "aud/app:v2").await;
    assert_eq!(e["username"], "alice");
    let e = once(&site, "delete", "aud/app:v2").await;
    assert_eq!(
        (e["username"].as_str(), e["resource_type"].as_str()),
        (Some("bob"), Some("tag"))
    );
    let e = once(&site, "delete", &format!("aud/app@{d1}")).await;
    assert_eq!(e["username"], "bob");
    assert_ne!(d1, d2);

    // Another restart replays nothing.
    site.restart_core().await;
    let d3 = skopeo_push(&site, "admin", "aud/app", "v3").await;
    once(&site, "create", "aud/app:v3").await;
    for (op, res) in [
        ("create", "aud/app:v1".to_owned()),
        ("create", "aud/app:v2".to_owned()),
        ("delete", "aud/app:v2".to_owned()),
        ("delete", format!("aud/app@{d1}")),
    ] {
        assert_eq!(audit_entries(&site, op, &res).await.len(), 1, "{op} {res}");
    }
    // Every audited outbox event has exactly one entry.
    let db = site.db.connect().await;
    let (events, entries, dupes): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox WHERE event_type IN ('push', 'delete', 'delete_tag')), \
                (SELECT count(*) FROM audit_log WHERE outbox_id IS NOT NULL), \
                (SELECT count(*) FROM (SELECT outbox_id FROM audit_log WHERE outbox_id IS NOT NULL GROUP BY outbox_id HAVING count(*) > 1) d)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(dupes, 0);
    assert!(entries >= events, "{entries} entries for {events} events");

    // A deletion through the API is audited under the caller's name.
    let (s, v, _) = call(site.admin(
        Method::DELETE,
        &format!("/projects/aud/repositories/app/artifacts/{d3}"),
    ))
    .await;
    assert_eq!(s, 200, "{v}");
    let e = once(&site, "delete", &format!("aud/app@{d3}")).await;
    assert_eq!(e["username"], "admin");

    // Who reads which logs.
    let (s, v, h) =
        call(site.as_user(Method::GET, "/projects/aud/logs", "watcher", PASSWORD)).await;
    assert_eq!(s, 200, "{v}");
    assert!(h["x-total-count"].to_str().unwrap().parse::<i64>().unwrap() >= 5);
    let (s, _, _) =
        call(site.as_user(Method::GET, "/projects/aud/logs", "limited", PASSWORD)).await;
    assert_eq!(s, 403);
    let (s, _, _) =
        call(site.as_user(Method::GET, "/projects/aud/logs", "outsider", PASSWORD)).await;
    assert_eq!(s, 404);
    let (s, _, _) = call(site.http.get(site.api("/audit-logs"))).await;
    assert_eq!(s, 401);
    let (_, v, _) = call(site.as_user(
        Method::GET,
        "/audit-logs?page_size=100",
        "outsider",
        PASSWORD,
    ))
    .await;
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|e| !e["resource"].as_str().unwrap().starts_with("aud/")),
        "{v}"
    );
    let (_, v, _) = call(site.as_user(
        Method::GET,
        "/audit-logs?q=resource%3D~aud/app",
        "watcher",
        PASSWORD,
    ))
    .await;
    assert!(!v.as_array().unwrap().is_empty());

    // q: time ranges, usernames, sort.
    let (_, v, h) = call(site.admin(Method::GET, "/audit-logs").query(&[(
        "q",
        "op_time=[2000-01-01 00:00:00~2999-01-01 00:00:00],username=~ali",
    )]))
    .await;
    assert_eq!(h["x-total-count"], "1", "{v}");
    let (_, _, h) = call(
        site.admin(Method::GET, "/audit-logs")
            .query(&[("q", "op_time=[2999-01-01~]")]),
    )
    .await;
    assert_eq!(h["x-total-count"], "0");
    let (_, asc, _) = call(
        site.admin(Method::GET, "/audit-logs")
            .query(&[("q", "resource=~aud/app"), ("sort", "op_time")]),
    )
    .await;
    let (_, desc, _) = call(
        site.admin(Method::GET, "/audit-logs")
            .query(&[("q", "resource=~aud/app")]),
    )
    .await;
    assert_eq!(asc[0]["id"], desc.as_array().unwrap().last().unwrap()["id"]);
    for bad in ["op_time=yesterday", "colour=red", "op_time=[nope~]"] {
        let (s, _, _) = call(site.admin(Method::GET, "/audit-logs").query(&[("q", bad)])).await;
        assert_eq!(s, 400, "q={bad}");
    }
}

/// An event whose transaction commits after a later one's must not be
/// skipped: the consumer reads only below the oldest running transaction.
#[tokio::test]
async fn an_event_committed_late_is_not_skipped() {
    let site = Site::start().await;
    tenants::project(&site, "late", false).await;
    let db = site.db.connect().await;
    let insert = "INSERT INTO outbox (event_type, repository, digest, tag, actor) VALUES ('push', 'late/app', 'sha256:00', $1, 'tester')";
    // The early transaction takes its id (and xid) first and stays open.
    let mut early = db.begin().await.unwrap();
    sqlx::query(insert)
        .bind("early")
        .execute(&mut *early)
        .await
        .unwrap();
    let mut later = db.begin().await.unwrap();
    sqlx::query(insert)
        .bind("later")
        .execute(&mut *later)
        .await
        .unwrap();
    later.commit().await.unwrap();
    // Give the consumer time to go round a few times.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        audit_entries(&site, "create", "late/app:later")
            .await
            .is_empty(),
        "the later event waits for the early transaction"
    );
    early.commit().await.unwrap();
    let a = once(&site, "create", "late/app:early").await;
    let b = once(&site, "create", "late/app:later").await;
    assert_eq!(a["username"], "tester");
    assert_eq!(b["username"], "tester");
}
