//! The queue's promises: a job whose jobservice is killed is finished by the
//! next one; flushing Redis loses no job and no schedule; a tick fires once
//! however many jobservices run, and a missed tick fires once on return.

use std::time::Duration;

use chrono::{Duration as Span, Utc};
use serde_json::json;
use wharf_catalog::jobs;

use crate::support::*;

/// `kill -9` of the jobservice whose worker runs a GC paused at `failpoint`
/// (G1: after step A; G2: inside step B, in the registry, after an unlink;
/// G3: after step B commits); a new jobservice must finish the job.
async fn gc_killed_at(failpoint: &str) {
    let mut site = Site::start().await;
    let mut garbage = Vec::new();
    for i in 0..6 {
        garbage.push(site.garbage(format!("garbage {i}").as_bytes()).await);
    }
    let (pause, hit) = site.failpoint(failpoint);
    std::fs::write(&pause, b"").unwrap();
    let (first, _) = site.start_jobservice().await;
    let id = site
        .enqueue_gc(json!({"delete_untagged": true, "workers": 1}))
        .await;
    until(
        60,
        &format!("the collector to pause at {failpoint}"),
        || async { hit.exists() },
    )
    .await;
    assert_eq!(site.execution(id).await.status, "Running");

    // The worker dies holding the task, with the chunk marked `deleting`.
    site.kill_jobservice(first).await;
    std::fs::remove_file(&pause).unwrap();
    let (_, _) = site.start_jobservice().await;
    let e = site.wait_ended(id, 90).await;
    assert_eq!(e.status, "Success", "{e:?}");
    if failpoint == "G1" {
        // Step B never ran before the kill: the new run purged everything.
        assert_eq!(e.extra_attrs["purged_blobs"], 6, "{e:?}");
    }
    for d in &garbage {
        assert!(!site.blob_file(d).exists(), "{d} is still on disk");
        let row: i64 =
            sqlx::query_scalar("SELECT count(*) FROM blob WHERE encode(digest, 'hex') = $1")
                .bind(&d[7..])
                .fetch_one(&site.pool)
                .await
                .unwrap();
        assert_eq!(row, 0, "{d} still has a row");
    }
    let tasks = jobs::tasks_of(&site.pool, id).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].attempts, 2, "taken over once: {tasks:?}");
    let log = jobs::execution_log(&site.pool, id).await.unwrap();
    assert!(log.contains("lost its worker"), "{log}");
    // Nothing is left half-deleted.
    let deleting: i64 = sqlx::query_scalar("SELECT count(*) FROM blob WHERE state = 'deleting'")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    assert_eq!(deleting, 0);
    assert!(site.registry_alive());
}

#[tokio::test]
async fn a_gc_killed_after_step_a_is_finished_by_the_restarted_jobservice() {
    gc_killed_at("G1").await;
}

#[tokio::test]
async fn a_gc_killed_inside_step_b_is_finished_by_the_restarted_jobservice() {
    gc_killed_at("G2").await;
}

#[tokio::test]
async fn a_gc_killed_after_step_b_is_finished_by_the_restarted_jobservice() {
    gc_killed_at("G3").await;
}

#[tokio::test]
async fn flushing_redis_loses_no_job_and_schedules_still_fire() {
    let mut site = Site::start().await;
    let stray = site.garbage(b"flushed garbage").await;
    // Enqueued while no jobservice runs, then Redis loses the queue.
    let id = site.enqueue_gc(json!({})).await;
    assert_eq!(site.queue.depth().await.unwrap(), 1);
    site.flush_redis().await;
    assert_eq!(site.queue.depth().await.unwrap(), 0);
    let (_, addr) = site.start_jobservice().await;
    let e = site.wait_ended(id, 60).await;
    assert_eq!(e.status, "Success", "{e:?}");
    assert!(!site.blob_file(&stray).exists());

    // A schedule lives in Postgres: flushing Redis does not stop it.
    let payload = json!({"delete_untagged": true});
    jobs::upsert_schedule(
        &site.pool,
        &jobs::NewSchedule {
            vendor_type: wharf_jobs::GARBAGE_COLLECTION,
            vendor_id: 0,
            kind: "Custom",
            cron: "*/2 * * * * *",
            job_name: wharf_jobs::GARBAGE_COLLECTION,
            payload: &payload,
            next_run: Utc::now(),
        },
    )
    .await
    .unwrap();
    let scheduled = |site: &Site| {
        let pool = site.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM execution WHERE trigger = 'SCHEDULE' AND status = 'Success'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    until(30, "a scheduled run", || async {
        scheduled(&site).await >= 1
    })
    .await;
    site.flush_redis().await;
    let before = scheduled(&site).await;
    until(30, "a scheduled run after the flush", || async {
        scheduled(&site).await > before
    })
    .await;
    // The health endpoint reports the queue.
    let h: serde_json::Value = site
        .http
        .get(format!("{addr}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "healthy", "{h}");
    assert!(h["queue"]["depth"].as_i64().unwrap() >= 0, "{h}");
}

#[tokio::test]
async fn a_missed_tick_fires_once_with_two_jobservices_running() {
    let mut site = Site::start().await;
    let payload = json!({});
    // Due since an hour ago: missed ticks while jobservice was down.
    let s = jobs::upsert_schedule(
        &site.pool,
        &jobs::NewSchedule {
            vendor_type: wharf_jobs::GARBAGE_COLLECTION,
            vendor_id: 0,
            kind: "Custom",
            cron: "0 0 3 1 1 *",
            job_name: wharf_jobs::GARBAGE_COLLECTION,
            payload: &payload,
            next_run: Utc::now() - Span::hours(1),
        },
    )
    .await
    .unwrap();
    site.start_jobservice().await;
    site.start_jobservice().await;
    let count = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM execution WHERE trigger = 'SCHEDULE'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    until(20, "the missed tick to fire", || {
        let c = count(site.pool.clone());
        async move { c.await >= 1 }
    })
    .await;
    // Both schedulers tick every second; give them several chances to double-fire.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(count(site.pool.clone()).await, 1);
    let after = jobs::get_schedule(&site.pool, wharf_jobs::GARBAGE_COLLECTION, 0)
        .await
        .unwrap()
        .unwrap();
    let next = after.next_run.unwrap();
    assert!(next > Utc::now(), "next run moved to the future: {next}");
    assert_eq!(next.format("%m-%d %H:%M:%S").to_string(), "01-01 03:00:00");
    assert_eq!(after.id, s.id);
}

#[tokio::test]
async fn a_stop_before_the_job_starts_stops_it_and_an_unknown_job_fails_cleanly() {
    let mut site = Site::start().await;
    let id = site.enqueue_gc(json!({})).await;
    let mut tx = site.pool.begin().await.unwrap();
    assert!(jobs::request_stop(&mut tx, id).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(site.execution(id).await.status, "Stopped");

    let mut tx = site.pool.begin().await.unwrap();
    let payload = json!({});
    let (bogus, task) = jobs::create(
        &mut tx,
        &jobs::NewJob {
            vendor_type: "NO_SUCH_JOB",
            vendor_id: None,
            trigger: "MANUAL",
            extra_attrs: &payload,
            job_name: "NO_SUCH_JOB",
            payload: &payload,
            max_attempts: 1,
            deadline_secs: 60,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    site.queue.push(&[task]).await.unwrap();
    site.start_jobservice().await;
    let e = site.wait_ended(bogus, 30).await;
    assert_eq!(e.status, "Error");
    assert!(e.status_message.unwrap().contains("no job is registered"));
    // The stopped GC never ran.
    assert!(jobs::execution_log(&site.pool, id)
        .await
        .unwrap()
        .is_empty());
}
